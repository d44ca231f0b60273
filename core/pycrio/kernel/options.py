"""Options declared by plugins and drivers, found through ``pycrio.options`` entry points.

A plugin or driver declares its options with the same :class:`Option`
records the core uses, in a module of their own, named by an entry point in
the ``pycrio.options`` group whose name is the plugin's (or driver's)
entry-point name::

    [project.entry-points."pycrio.options"]
    cgroupfs = "pycrio_cgroup_fs.options:OPTIONS"

The loader then validates the owner's tables, fills in their defaults,
`pycrio config --default` prints them and docs/configuration.md lists them.
A separate small module (not an attribute of the plugin class) means that
checking a configuration imports no driver: drivers are imported only when
the configuration names them.

Where an option may live:

- ``plugins.<name>``: the owner's own table (the usual place);
- ``runtime.runtimes.<handler>`` (:data:`HANDLER_TABLE`): a runtime driver's
  key in each handler table whose ``driver`` is that driver;
- a core table (``runtime``, ``network``, ...): a key CRI-O has there whose
  meaning the plugin implements (``[runtime] hooks_dir``), if the core does
  not have it already.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Iterable

from stevedore import ExtensionManager

from pycrio.config.declared import Declarations, Owner
from pycrio.config.schema import (
    BOOL,
    DURATION,
    HANDLER_TABLE,
    INT,
    NUMBER,
    OPTIONS,
    SECONDS,
    STR,
    STR_LIST,
    STR_OR_LIST,
    TABLES,
    Option,
)
from pycrio.kernel.interfaces import DRIVER_GROUPS, GROUP_PLUGINS, GROUP_RUNTIME

GROUP_OPTIONS = "pycrio.options"
OWNER_GROUPS = (GROUP_PLUGINS, *DRIVER_GROUPS)

__all__ = [
    "BOOL",
    "DURATION",
    "GROUP_OPTIONS",
    "HANDLER_TABLE",
    "INT",
    "NUMBER",
    "SECONDS",
    "STR",
    "STR_LIST",
    "STR_OR_LIST",
    "Option",
    "declarations",
    "installed_owners",
]

_CORE_KEYS = {o.dotted for o in OPTIONS}


def installed_owners() -> dict[str, Owner]:
    """Every plugin and driver installed, from the distributions' metadata (nothing imported)."""
    groups: dict[str, list[str]] = {}
    dists: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group in OWNER_GROUPS:
                if ep.group not in groups.setdefault(ep.name, []):
                    groups[ep.name].append(ep.group)
                dists.setdefault(ep.name, (dist.metadata["Name"] or "?", dist.version or "?"))
    return {name: Owner(name, tuple(g), *dists[name]) for name, g in sorted(groups.items())}


def _check(owner: Owner, declared: object, taken: dict[str, str]) -> list[Option]:
    """The owner's options with ``owner`` filled in; ValueError when the declaration is wrong."""
    if not isinstance(declared, Iterable) or isinstance(declared, str | bytes):
        raise ValueError(f"{GROUP_OPTIONS} entry point must name a sequence of Option records")
    out = []
    for opt in declared:
        if not isinstance(opt, Option):
            raise ValueError(f"{opt!r} is not a pycrio Option")
        if opt.table == f"plugins.{owner.name}":
            pass
        elif opt.table == HANDLER_TABLE:
            if GROUP_RUNTIME not in owner.groups:
                raise ValueError(f"{opt.key}: only runtime drivers declare handler-table options")
        elif opt.table in TABLES and opt.table != "plugins":
            if opt.dotted in _CORE_KEYS:
                raise ValueError(f"{opt.dotted} is a core option")
            if taken.get(opt.dotted, owner.name) != owner.name:
                raise ValueError(f"{opt.dotted} is declared by {taken[opt.dotted]!r} already")
            taken[opt.dotted] = owner.name
        else:
            raise ValueError(
                f"{opt.dotted}: options go in [plugins.{owner.name}], the handler tables"
                " (runtime drivers) or a core table"
            )
        out.append(dataclasses.replace(opt, owner=owner.name))
    return out


def declarations(owners: dict[str, Owner] | None = None) -> Declarations:
    """Import every ``pycrio.options`` entry point and check what it declares.

    Never raises for a broken declaration: it is recorded in ``broken``, and
    the loader refuses only a configuration that uses that owner's tables.
    """
    decl = Declarations(owners=installed_owners() if owners is None else owners)
    failures: dict[str, str] = {}

    def failed(_mgr: object, ep: importlib.metadata.EntryPoint, err: BaseException) -> None:
        failures[ep.name] = f"{type(err).__name__}: {err}"

    manager = ExtensionManager(
        namespace=GROUP_OPTIONS, invoke_on_load=False, on_load_failure_callback=failed
    )
    taken: dict[str, str] = {}
    for ext in sorted(manager.extensions, key=lambda e: e.name):
        owner = decl.owners.get(ext.name)
        if owner is None:
            continue  # options of a plugin whose entry point is gone: nothing uses them
        try:
            decl.options += _check(owner, ext.plugin, taken)
        except ValueError as e:
            decl.broken[ext.name] = f"bad option declaration: {e}"
    for name, error in failures.items():
        if name in decl.owners:
            decl.broken[name] = f"its options cannot be imported: {error}"
    return decl
