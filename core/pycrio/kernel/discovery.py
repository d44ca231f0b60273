"""Find plugins and drivers through entry points; import only what is used.

Listing reads the installed distributions' metadata and imports nothing, so
an installed but unused driver costs neither start time nor memory. Loading
goes through stevedore's named managers, which import exactly the entry
points named (the configured drivers, the plugins that are not disabled),
and a plugin that raises on import is caught and reported instead of taking
the daemon down. The metadata also says which distribution an entry point
came from: an operator reading `pycrio plugins` needs to know which wheel to
fix or remove.
"""

from __future__ import annotations

import importlib.metadata
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stevedore import NamedExtensionManager

from pycrio.kernel.interfaces import DRIVER_GROUPS, GROUP_PLUGINS

ALL_GROUPS = (GROUP_PLUGINS, *DRIVER_GROUPS)

# What became of an entry point (Found.state).
FOUND = "found"  # listed, not imported (a driver the configuration does not name)
LOADED = "loaded"
FAILED = "error"
DISABLED = "disabled"  # named in disabled_plugins
DECLINED = "declined"  # the plugin declined to load on this node
UNMET = "requirement not met"


@dataclass
class Found:
    """One entry point and what became of it."""

    group: str
    name: str
    target: str
    distribution: str
    version: str
    obj: Any = None
    error: str = ""
    detail: str = ""  # the traceback, for logs
    state: str = ""  # one of the states above; "" means LOADED or FAILED from obj/error
    reason: str = ""  # why it was declined or its requirement is not met

    def __post_init__(self) -> None:
        if not self.state:
            self.state = FAILED if self.error else LOADED if self.obj is not None else FOUND

    @property
    def loaded(self) -> bool:
        return self.state == LOADED

    @property
    def status(self) -> str:
        """One line for `pycrio plugins` and the verbose Status."""
        if self.state == FAILED:
            return f"error: {self.error}"
        if self.state == FOUND:
            if self.group == GROUP_PLUGINS:
                return "not loaded"
            return "not loaded (the configuration does not name it)"
        if self.state == DISABLED:
            return "disabled (disabled_plugins)"
        if self.state in (DECLINED, UNMET):
            return f"{self.state}: {self.reason}"
        return self.state

    def fail(self, error: BaseException | str) -> None:
        self.state = FAILED
        if isinstance(error, BaseException):
            self.error = f"{type(error).__name__}: {error}"
            self.detail = "".join(traceback.format_exception(error))
        else:
            self.error = error


def discover(groups: tuple[str, ...] = ALL_GROUPS) -> list[Found]:
    """Every entry point of ``groups``, from metadata only: nothing is imported."""
    found: list[Found] = []
    seen: set[tuple[str, str]] = set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group in groups and (ep.group, ep.name) not in seen:
                seen.add((ep.group, ep.name))
                found.append(
                    Found(
                        ep.group,
                        ep.name,
                        ep.value,
                        dist.metadata["Name"] or "?",
                        dist.version or "?",
                    )
                )
    found.sort(key=lambda f: (groups.index(f.group), f.name))
    return found


def load(items: Iterable[Found]) -> None:
    """Import the entry points of ``items`` that are not imported yet (never raises).

    One stevedore NamedExtensionManager per group, naming exactly these
    entry points: no other is imported.
    """
    by_group: dict[str, dict[str, Found]] = {}
    for item in items:
        if item.state == FOUND:
            by_group.setdefault(item.group, {})[item.name] = item
    for group, wanted in by_group.items():

        def failed(_mgr: object, ep: importlib.metadata.EntryPoint, err: BaseException) -> None:
            if ep.name in wanted:  # noqa: B023 - called during this iteration only
                wanted[ep.name].fail(err)  # noqa: B023

        manager = NamedExtensionManager(
            namespace=group,
            names=sorted(wanted),
            invoke_on_load=False,
            on_load_failure_callback=failed,
            on_missing_entrypoints_callback=lambda _names: None,
        )
        for ext in manager.extensions:
            item = wanted[ext.name]
            if item.state == FOUND:
                item.obj, item.state = ext.plugin, LOADED
        for item in wanted.values():
            if item.state == FOUND:
                item.fail("the entry point disappeared while pycrio was starting")
