"""Find plugins and drivers through entry points and record how loading went.

Loading goes through stevedore so a plugin that raises on import is caught
and reported instead of taking the daemon down. stevedore's entry points do
not say which distribution they came from, so that is looked up once in the
installed distributions' metadata: an operator reading `pycrio plugins` needs
to know which wheel to fix or remove.
"""

from __future__ import annotations

import importlib.metadata
import traceback
from dataclasses import dataclass
from typing import Any

from stevedore import ExtensionManager

from pycrio.kernel.interfaces import DRIVER_GROUPS, GROUP_PLUGINS

ALL_GROUPS = (GROUP_PLUGINS, *DRIVER_GROUPS)


@dataclass
class Found:
    """One entry point and the outcome of importing it."""

    group: str
    name: str
    target: str
    distribution: str
    version: str
    obj: Any = None
    error: str = ""
    detail: str = ""  # the traceback, for logs

    @property
    def loaded(self) -> bool:
        return not self.error

    @property
    def status(self) -> str:
        return "loaded" if self.loaded else f"error: {self.error}"


def _distribution_index() -> dict[tuple[str, str, str], tuple[str, str]]:
    index: dict[tuple[str, str, str], tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group in ALL_GROUPS:
                key = (ep.group, ep.name, ep.value)
                index.setdefault(key, (dist.metadata["Name"] or "?", dist.version or "?"))
    return index


def discover(groups: tuple[str, ...] = ALL_GROUPS) -> list[Found]:
    """Import every entry point of ``groups``; never raises for a broken plugin."""
    index = _distribution_index()
    found: list[Found] = []

    def record(ep: importlib.metadata.EntryPoint, obj: Any, err: BaseException | None) -> None:
        dist, version = index.get((ep.group, ep.name, ep.value), ("?", "?"))
        item = Found(ep.group, ep.name, ep.value, dist, version, obj=obj)
        if err is not None:
            item.error = f"{type(err).__name__}: {err}"
            item.detail = "".join(traceback.format_exception(err))
        found.append(item)

    for group in groups:
        manager = ExtensionManager(
            namespace=group,
            invoke_on_load=False,
            on_load_failure_callback=lambda _mgr, ep, err: record(ep, None, err),
        )
        for ext in manager.extensions:
            record(ext.entry_point, ext.plugin, None)
    found.sort(key=lambda f: (ALL_GROUPS.index(f.group), f.name))
    return found
