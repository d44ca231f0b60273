"""The options plugins and drivers declare, as the configuration loader sees them.

Pure data: the kernel finds the declarations (:mod:`pycrio.kernel.options`)
and hands them to the loader, which validates each table against them and
fills in their defaults, exactly as for the core's own options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pycrio.config.schema import HANDLER_TABLE, Option


@dataclass(frozen=True)
class Owner:
    """An installed plugin or driver: its entry-point name, groups and distribution."""

    name: str
    groups: tuple[str, ...]
    distribution: str
    version: str

    def describe(self) -> str:
        return f"{self.name!r} ({self.distribution} {self.version})"


@dataclass
class Declarations:
    """Every installed owner, the options they declared, and declarations that are broken."""

    owners: dict[str, Owner] = field(default_factory=dict)
    options: list[Option] = field(default_factory=list)
    #: owner name -> why its declaration cannot be used
    broken: dict[str, str] = field(default_factory=dict)

    def of_owner(self, owner: str) -> list[Option]:
        return [o for o in self.options if o.owner == owner]

    def table_options(self, table: str) -> list[Option]:
        """Declared options of a core table ("runtime") or of ``plugins.<name>``."""
        return [o for o in self.options if o.table == table]

    def handler_options(self, driver: str) -> list[Option]:
        """The handler-table options runtime driver ``driver`` declared."""
        return [o for o in self.options if o.table == HANDLER_TABLE and o.owner == driver]

    def all_handler_options(self) -> list[Option]:
        """Handler-table options of every runtime driver, one per key."""
        seen: dict[str, Option] = {}
        for o in self.options:
            if o.table == HANDLER_TABLE:
                seen.setdefault(o.key, o)
        return list(seen.values())

    def owners_with_tables(self) -> list[str]:
        """Owners that declared a ``[plugins.<name>]`` table, by name."""
        return sorted({o.owner for o in self.options if o.table == f"plugins.{o.owner}"})


#: Keys of CRI-O's crio.conf whose meaning lives in a plugin here: when the
#: plugin is not installed, the error says which one to install.
PLUGIN_KEYS: dict[str, tuple[str, str]] = {
    "runtime.hooks_dir": ("oci_hooks", "pycrio-oci-hooks"),
}
