"""The kernel: the plugin manager plus the drivers the configuration chose.

It is the one object handed to plugins at startup. Building it imports the
drivers the configuration names (no other) and the plugins
(:mod:`pycrio.kernel.plugin_loading`); a broken optional plugin is recorded
and skipped, while a broken driver that the configuration requires stops the
daemon with a message naming the driver, its distribution and the error.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from pycrio.config import Config
from pycrio.kernel.discovery import Found, discover, load
from pycrio.kernel.hookspecs import PROJECT, CRISpecs, ExtensionSpecs
from pycrio.kernel.interfaces import (
    GROUP_CGROUP,
    GROUP_HOSTPORT,
    GROUP_NETWORK,
    GROUP_RUNTIME,
    INTERFACE_OF_GROUP,
    CgroupDriver,
    Driver,
    DriverContext,
    HostportDriver,
    NetworkDriver,
    RuntimeDriver,
)
from pycrio.kernel.plugin_loading import load_plugins

log = logging.getLogger("pycrio.kernel")


class DriverLoadError(Exception):
    """A driver the configuration requires cannot be used; the daemon must not start."""


@dataclass
class DriverSlot:
    """A driver the configuration asks for, and what became of it."""

    group: str
    name: str
    role: str  # e.g. "runtime handler 'runc'", "cgroup manager"
    handler: str = ""  # the RuntimeClass handler, for runtime drivers
    driver: Driver | None = None
    found: Found | None = None

    @property
    def missing(self) -> bool:
        return self.found is None


@dataclass
class Kernel:
    config: Config
    pm: pluggy.PluginManager
    found: list[Found]
    runtimes: dict[str, DriverSlot] = field(default_factory=dict)
    cgroup: DriverSlot | None = None
    network: DriverSlot | None = None
    hostport: DriverSlot | None = None
    plugin_failures: list[str] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def runtime_driver(self, handler: str) -> RuntimeDriver | None:
        slot = self.runtimes.get(handler)
        return slot.driver if slot else None  # type: ignore[return-value]

    @property
    def cgroup_driver(self) -> CgroupDriver | None:
        return self.cgroup.driver if self.cgroup else None  # type: ignore[return-value]

    @property
    def network_driver(self) -> NetworkDriver | None:
        return self.network.driver if self.network else None  # type: ignore[return-value]

    @property
    def hostport_driver(self) -> HostportDriver | None:
        return self.hostport.driver if self.hostport else None  # type: ignore[return-value]

    def slots(self) -> list[DriverSlot]:
        return [s for s in (*self.runtimes.values(), self.cgroup, self.network, self.hostport) if s]

    def close(self) -> None:
        for slot in self.slots():
            if slot.driver is not None:
                try:
                    slot.driver.close()
                except Exception:  # noqa: BLE001 - one bad driver must not block the others
                    log.exception("closing %s driver %r failed", slot.role, slot.name)


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(CRISpecs)
    pm.add_hookspecs(ExtensionSpecs)
    return pm


def configured_drivers(config: Config) -> list[tuple[str, str, str]]:
    """(group, driver name, role) of every driver the configuration requires."""
    drivers = [
        (GROUP_RUNTIME, table["driver"], f"runtime handler {handler!r}")
        for handler, table in config.runtimes.items()
    ]
    drivers.append((GROUP_CGROUP, config.get("runtime.cgroup_manager"), "cgroup manager"))
    drivers.append((GROUP_NETWORK, config.get("network.driver"), "network driver"))
    hostport = config.get("network.hostport_manager")
    if hostport != "none":
        drivers.append((GROUP_HOSTPORT, hostport, "hostport manager"))
    return drivers


def _required_slots(config: Config) -> list[DriverSlot]:
    handlers = iter(config.runtimes)
    return [
        DriverSlot(group, name, role, next(handlers) if group == GROUP_RUNTIME else "")
        for group, name, role in configured_drivers(config)
    ]


def _instantiate(slot: DriverSlot, config: Config, options: dict[str, Any]) -> None:
    item = slot.found
    assert item is not None
    where = (
        f"{slot.role}: driver {slot.name!r} ({slot.group}) from distribution"
        f" {item.distribution} {item.version}"
    )
    if not item.loaded:
        raise DriverLoadError(f"{where} failed to import: {item.error}")
    interface = INTERFACE_OF_GROUP[slot.group]
    if not (inspect.isclass(item.obj) and issubclass(item.obj, interface)):
        raise DriverLoadError(
            f"{where} is not a subclass of {interface.__module__}.{interface.__name__}"
        )
    state_dir = os.path.join(config.root, "drivers", slot.name)
    run_dir = os.path.join(config.runroot, "drivers", slot.name)
    ctx = DriverContext(slot.name, config, options, state_dir, run_dir)
    try:
        slot.driver = item.obj(ctx)
    except Exception as e:
        raise DriverLoadError(f"{where} failed to initialise: {type(e).__name__}: {e}") from e


def build_kernel(
    config: Config,
    core_plugins: Callable[[Kernel], list[object]],
    found: list[Found] | None = None,
    *,
    instantiate_drivers: bool = True,
) -> Kernel:
    """Load the configured drivers and the plugins.

    ``core_plugins`` makes the core's own hook implementations for a kernel;
    they are registered first so that any third-party plugin registered later
    is called before them and can replace or wrap them. Only the drivers the
    configuration names are imported. Without ``instantiate_drivers`` (for
    `pycrio plugins`) drivers are imported and checked but not started.
    """
    pm = new_plugin_manager()
    found = discover() if found is None else found
    kernel = Kernel(config=config, pm=pm, found=found)
    for plugin in core_plugins(kernel):
        pm.register(plugin, name=f"{CORE_PREFIX}{type(plugin).__name__}")
    _load_drivers(kernel, instantiate_drivers)
    load_plugins(kernel)
    return kernel


def _load_drivers(kernel: Kernel, instantiate: bool) -> None:
    config = kernel.config
    by_key = {(f.group, f.name): f for f in kernel.found}
    slots = _required_slots(config)
    load(by_key[(s.group, s.name)] for s in slots if (s.group, s.name) in by_key)
    for slot in slots:
        slot.found = by_key.get((slot.group, slot.name))
        if slot.missing:
            log.warning(
                "%s: no driver %r is installed in the %s entry-point group; "
                "calls that need it will fail until it is installed",
                slot.role,
                slot.name,
                slot.group,
            )
        elif instantiate:
            options = (
                config.runtimes[slot.handler]
                if slot.group == GROUP_RUNTIME
                else config.plugin_table(slot.name)
            )
            _instantiate(slot, config, options)
        if slot.group == GROUP_RUNTIME:
            kernel.runtimes[slot.handler] = slot
        elif slot.group == GROUP_CGROUP:
            kernel.cgroup = slot
        elif slot.group == GROUP_NETWORK:
            kernel.network = slot
        else:
            kernel.hostport = slot


def offline_drivers(
    config: Config, groups: tuple[str, ...], found: list[Found] | None = None
) -> tuple[list[DriverSlot], list[str]]:
    """The configured drivers of ``groups``, constructed but never started.

    For the offline maintenance commands (``pycrio check``, ``pycrio wipe``):
    no plugin is registered and no driver hears of an exit listener or
    ``recover``. A driver that is missing or cannot be built is not fatal
    here; it comes back as a line in the second list, with its slot's
    ``driver`` left None, so the commands can do the rest and say what they
    could not check.
    """
    found = discover() if found is None else found
    by_key = {(f.group, f.name): f for f in found}
    slots = [s for s in _required_slots(config) if s.group in groups]
    load(by_key[(s.group, s.name)] for s in slots if (s.group, s.name) in by_key)
    problems: list[str] = []
    for slot in slots:
        slot.found = by_key.get((slot.group, slot.name))
        if slot.missing:
            problems.append(f"{slot.role}: driver {slot.name!r} is not installed")
            continue
        options = (
            config.runtimes[slot.handler]
            if slot.group == GROUP_RUNTIME
            else config.plugin_table(slot.name)
        )
        try:
            _instantiate(slot, config, options)
        except DriverLoadError as e:
            problems.append(str(e))
    return slots, problems


CORE_PREFIX = "pycrio.core:"


@dataclass(frozen=True)
class HookFailure:
    plugin: str
    message: str
    error: Exception | None = None

    @property
    def core(self) -> bool:
        return self.plugin.startswith(CORE_PREFIX)


@dataclass
class HookResults:
    """What each implementation of an extension hook returned, and who failed."""

    #: (plugin name, returned value) of every implementation that returned normally
    results: list[tuple[str, Any]] = field(default_factory=list)
    failures: list[HookFailure] = field(default_factory=list)

    def values(self) -> list[Any]:
        return [value for _plugin, value in self.results]


def call_each_results(
    kernel: Kernel,
    hook_name: str,
    /,
    *,
    reverse: bool = False,
    expected: tuple[type[Exception], ...] = (),
    **kwargs: Any,
) -> HookResults:
    """Call every implementation of an extension hook on its own; collect results and failures.

    pluggy stops at the first exception; one plugin's bug must not starve the
    others or fail the core's work, so each implementation is called alone
    and a failure is logged with the plugin's name. Exceptions of the
    ``expected`` types (a plugin refusing on purpose with a pycrio.errors
    error) are logged without a traceback. Implementations run in
    registration order (the core first), or the reverse for teardown.
    """
    out = HookResults()
    impls = getattr(kernel.pm.hook, hook_name).get_hookimpls()
    for impl in reversed(impls) if reverse else impls:
        if impl.wrapper or impl.hookwrapper:
            continue
        try:
            value = impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as e:  # noqa: BLE001 - isolated and reported
            msg = f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(e).__name__}: {e}"
            if isinstance(e, expected):
                log.error("%s", msg)
            else:
                log.exception("%s", msg)
            out.failures.append(HookFailure(impl.plugin_name, msg, e))
        else:
            out.results.append((impl.plugin_name, value))
    return out


def call_each(
    kernel: Kernel, hook_name: str, /, *, reverse: bool = False, **kwargs: Any
) -> list[HookFailure]:
    """Call every implementation of an extension hook, isolating failures (see above)."""
    return call_each_results(kernel, hook_name, reverse=reverse, **kwargs).failures
