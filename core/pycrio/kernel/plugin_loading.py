"""Loading the ``pycrio.plugins`` group: disabled, declining, failing and requiring plugins.

Every plugin that is not in ``disabled_plugins`` is imported (by name,
through stevedore), may decline to load on this node, is built and
registered, and is taken out again when something it requires is missing.
None of that can stop the daemon: each outcome is recorded on the plugin's
:class:`~pycrio.kernel.discovery.Found` for `pycrio plugins` and Status.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING

import pluggy

from pycrio.config import Config
from pycrio.kernel.discovery import DECLINED, DISABLED, FAILED, FOUND, LOADED, UNMET, Found, load
from pycrio.kernel.interfaces import GROUP_PLUGINS, INTERFACE_OF_GROUP

if TYPE_CHECKING:
    from pycrio.kernel.kernel import Kernel

log = logging.getLogger("pycrio.kernel")


def _register_plugin(pm: pluggy.PluginManager, item: Found) -> str | None:
    """Register one third-party plugin; return why it failed, or None.

    The plugin object is built inside the ``try``: a constructor that raises
    is one more broken plugin, not a daemon that cannot start.
    """
    obj = None
    try:
        obj = item.obj() if inspect.isclass(item.obj) else item.obj
        pm.register(obj, name=f"{item.group}:{item.name}")
        pm.check_pending()
    except Exception as e:  # noqa: BLE001 - a broken plugin is reported, never fatal
        if obj is not None and pm.is_registered(obj):
            pm.unregister(obj)
        return f"{type(e).__name__}: {e}"
    return None


def _declines(item: Found, config: Config) -> str:
    """Why the plugin declines to load on this node ("" when it does not).

    A plugin class may define ``decline(config) -> str | None`` (a static or
    class method): called before the plugin is built, it returns a reason
    not to load here (no device, a kernel feature missing, a setting off).
    """
    decline = getattr(item.obj, "decline", None)
    if not callable(decline):
        return ""
    reason = decline(config)
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"decline() returned {type(reason).__name__}, not a reason string")
    return reason or ""


def _requirements(item: Found) -> list[str]:
    """What the plugin declares it requires: ``requires = ("nri", "pycrio.network:cni")``."""
    reqs = getattr(item.obj, "requires", ())
    if isinstance(reqs, str) or not all(isinstance(r, str) for r in reqs):
        raise TypeError("requires must be a sequence of names")
    return list(reqs)


def _plugin_failed(kernel: Kernel, item: Found, error: str) -> None:
    msg = f"plugin {item.name!r} from {item.distribution} {item.version}: {error}"
    kernel.plugin_failures.append(msg)
    log.error("%s; continuing without it", msg)
    if item.detail:
        log.debug("%s", item.detail)


def load_plugins(kernel: Kernel) -> None:
    """Import, build and register the plugins that are neither disabled nor declining."""
    config, pm = kernel.config, kernel.pm
    plugins = [f for f in kernel.found if f.group == GROUP_PLUGINS]
    disabled = set(config.data.get("disabled_plugins") or ())
    for name in sorted(disabled - {p.name for p in plugins}):
        log.warning("disabled_plugins names %r, which is not an installed plugin", name)
    for item in plugins:
        if item.name in disabled and item.state in (FOUND, LOADED):
            item.state = DISABLED
            log.info("plugin %r is disabled (disabled_plugins)", item.name)
    load(p for p in plugins if p.state == FOUND)
    for item in plugins:
        if item.state == FAILED:
            _plugin_failed(kernel, item, item.error)
            continue
        if item.state != LOADED:
            continue
        try:
            reason = _declines(item, config)
            _requirements(item)
        except Exception as e:  # noqa: BLE001 - a broken plugin is reported, never fatal
            item.fail(e)
            _plugin_failed(kernel, item, item.error)
            continue
        if reason:
            item.state, item.reason = DECLINED, reason
            log.info("plugin %r declined to load on this node: %s", item.name, reason)
            continue
        error = _register_plugin(pm, item)
        if error:
            item.fail(error)
            _plugin_failed(kernel, item, error)
    _check_requirements(kernel, plugins)


def _requirement_problem(kernel: Kernel, requirement: str) -> str:
    """Why ``requirement`` ("name" of a plugin or "<group>:<name>") is not met; "" if it is."""
    group, _, name = requirement.rpartition(":")
    group = group or GROUP_PLUGINS
    if group == GROUP_PLUGINS:
        if kernel.pm.has_plugin(f"{GROUP_PLUGINS}:{name}"):
            return ""
        item = next((f for f in kernel.found if (f.group, f.name) == (group, name)), None)
        if item is None:
            return f"plugin {name!r} is not installed"
        return f"plugin {name!r} is not loaded ({item.status})"
    if group not in INTERFACE_OF_GROUP:
        return f"{group!r} is not an entry-point group of pycrio"
    slot = next((s for s in kernel.slots() if (s.group, s.name) == (group, name)), None)
    if slot is None:
        return f"the configuration does not use the {group} driver {name!r}"
    if slot.found is None:
        return f"the {group} driver {name!r} is not installed"
    if not slot.found.loaded:
        return f"the {group} driver {name!r} did not load ({slot.found.status})"
    return ""


def _check_requirements(kernel: Kernel, plugins: list[Found]) -> None:
    """Unregister plugins whose requirements are not met, until every remaining one's are.

    Repeated because a plugin taken out can be another one's requirement.
    """
    changed = True
    while changed:
        changed = False
        for item in plugins:
            name = f"{item.group}:{item.name}"
            if item.state != LOADED or not kernel.pm.has_plugin(name):
                continue
            for requirement in _requirements(item):
                problem = _requirement_problem(kernel, requirement)
                if problem:
                    kernel.pm.unregister(name=name)
                    item.state, item.reason = UNMET, f"requires {requirement}: {problem}"
                    _plugin_failed(kernel, item, item.status)
                    changed = True
                    break
