"""The configuration schema: every option, its type, default and meaning.

One declarative table drives loading, validation, `pycrio config --default`
and docs/configuration.md, so the three can never disagree. Table and key
names follow CRI-O's crio.conf (minus the `crio.` prefix) wherever the meaning
is the same, so an operator's knowledge carries over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The option types the loader understands. "runtimes" and "plugins" are
# tables of tables handled specially.
STR = "string"
INT = "integer"
BOOL = "boolean"
STR_LIST = "array of strings"
RUNTIMES = "table of runtime handlers"
PLUGINS = "table of plugin tables"

LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal", "panic")


@dataclass(frozen=True)
class Option:
    table: str  # "" for top level, "runtime", "runtime.runtimes.<handler>", ...
    key: str
    type: str
    default: Any
    doc: str
    reloadable: bool = False
    choices: tuple[str, ...] = ()

    @property
    def dotted(self) -> str:
        return f"{self.table}.{self.key}" if self.table else self.key


# Keys of one `[runtime.runtimes.<handler>]` table.
HANDLER_OPTIONS: tuple[Option, ...] = (
    Option(
        "runtime.runtimes.<handler>",
        "driver",
        STR,
        "runc",
        "Driver (entry point in the `pycrio.runtime` group) that runs this handler's containers.",
    ),
    Option(
        "runtime.runtimes.<handler>",
        "runtime_path",
        STR,
        "",
        "Path of the OCI runtime binary; empty means look the driver's default up in $PATH.",
    ),
    Option(
        "runtime.runtimes.<handler>",
        "runtime_root",
        STR,
        "",
        "State directory handed to the OCI runtime (`--root`); empty means the driver's default.",
    ),
    Option(
        "runtime.runtimes.<handler>",
        "monitor_path",
        STR,
        "",
        "Path of the container monitor (conmon); empty means look `conmon` up in $PATH.",
    ),
    Option(
        "runtime.runtimes.<handler>",
        "allowed_annotations",
        STR_LIST,
        [],
        "Annotations (or prefixes) a pod of this handler may use to ask for experimental"
        " behaviour.",
    ),
)

DEFAULT_HANDLERS: dict[str, dict[str, Any]] = {
    "runc": {o.key: o.default for o in HANDLER_OPTIONS},
}

OPTIONS: tuple[Option, ...] = (
    Option("", "root", STR, "/var/lib/pycrio", "Directory for persistent state and images."),
    Option(
        "", "runroot", STR, "/run/pycrio", "Directory for state that does not survive a reboot."
    ),
    Option(
        "api",
        "listen",
        STR,
        "/run/pycrio/pycrio.sock",
        "Path of the unix socket the CRI gRPC server listens on (mode 0660).",
    ),
    Option(
        "api",
        "grpc_max_send_msg_size",
        INT,
        83886080,
        "Largest gRPC message the server sends, in bytes.",
    ),
    Option(
        "api",
        "grpc_max_recv_msg_size",
        INT,
        83886080,
        "Largest gRPC message the server accepts, in bytes.",
    ),
    Option(
        "api",
        "grpc_workers",
        INT,
        32,
        "Threads serving CRI calls; a call beyond this many waits for a free thread.",
    ),
    Option(
        "api",
        "shutdown_timeout",
        INT,
        30,
        "Seconds in-flight calls get to finish on SIGTERM before they are cancelled.",
    ),
    Option(
        "runtime",
        "log_level",
        STR,
        "info",
        "Log verbosity; debug logs one line per CRI call. Reloaded on SIGHUP.",
        reloadable=True,
        choices=LOG_LEVELS,
    ),
    Option(
        "runtime",
        "default_runtime",
        STR,
        "runc",
        "Handler used when a pod names no RuntimeClass handler; must be a key of"
        " [runtime.runtimes].",
    ),
    Option(
        "runtime",
        "cgroup_manager",
        STR,
        "cgroupfs",
        "Cgroup driver (entry point in the `pycrio.cgroup` group); tell the kubelet the same"
        " with --cgroup-driver.",
    ),
    Option(
        "runtime",
        "runtimes",
        RUNTIMES,
        DEFAULT_HANDLERS,
        "One table per RuntimeClass handler, keyed by the handler name.",
    ),
    Option(
        "network",
        "driver",
        STR,
        "cni",
        "Pod network driver (entry point in the `pycrio.network` group).",
    ),
    Option(
        "network",
        "hostport_manager",
        STR,
        "iptables",
        "Host port driver (entry point in the `pycrio.hostport` group), used for networks"
        " without a portmap plugin; `none` disables it.",
    ),
    Option(
        "network",
        "network_dir",
        STR,
        "/etc/cni/net.d/",
        "Directory the CNI network configuration is read from.",
    ),
    Option(
        "network",
        "plugin_dirs",
        STR_LIST,
        ["/opt/cni/bin/", "/usr/lib/cni/"],
        "Directories searched for CNI plugin binaries, in order.",
    ),
    Option(
        "network",
        "cni_default_network",
        STR,
        "",
        "Name of the CNI network to use; empty means the first valid config by file name.",
    ),
    Option(
        "plugins",
        "*",
        PLUGINS,
        {},
        "A plugin's own options live in [plugins.<name>]; the plugin validates its table.",
    ),
)

TABLES: tuple[str, ...] = ("", "api", "runtime", "network", "plugins")


def options_of(table: str) -> list[Option]:
    return [o for o in OPTIONS if o.table == table]


@dataclass
class Config:
    """The effective configuration: a nested dict shaped like the TOML file.

    A dict (rather than one class per table) keeps plugin tables and runtime
    handlers, whose keys are chosen by the operator, as first-class as the
    fixed tables, and makes the TOML round trip trivial.
    """

    data: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def root(self) -> str:
        return self.data["root"]

    @property
    def runroot(self) -> str:
        return self.data["runroot"]

    @property
    def listen(self) -> str:
        return self.data["api"]["listen"]

    @property
    def log_level(self) -> str:
        return self.data["runtime"]["log_level"]

    @property
    def runtimes(self) -> dict[str, dict[str, Any]]:
        return self.data["runtime"]["runtimes"]

    def plugin_table(self, name: str) -> dict[str, Any]:
        """A plugin's own options; empty when the operator wrote none."""
        return self.data.get("plugins", {}).get(name, {})
