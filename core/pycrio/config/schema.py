"""The configuration schema: every option, its type, default and meaning.

One declarative table drives loading, validation, `pycrio config --default`
and docs/configuration.md, so the three can never disagree. Table and key
names follow CRI-O's crio.conf (minus the `crio.` prefix) wherever the meaning
is the same, so an operator's knowledge carries over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# The option types the loader understands. "runtimes" and "plugins" are
# tables of tables handled specially.
STR = "string"
INT = "integer"
NUMBER = "number"  # an integer or a float
BOOL = "boolean"
STR_LIST = "array of strings"
STR_OR_LIST = "string or array of strings"
DURATION = "duration"  # a Go-style duration string, as in crio.conf: "90s", "1m30s", "0s"
SECONDS = "seconds"  # a number of seconds or a duration string
RUNTIMES = "table of runtime handlers"
PLUGINS = "table of plugin tables"

LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal", "panic")

#: Entries of [stats] included_pod_metrics: CRI-O's metric groups, plus "all".
POD_METRIC_GROUPS = (
    "all",
    "cpu",
    "memory",
    "network",
    "oom",
    "process",
    "spec",
    "disk",
    "diskIO",
    "hugetlb",
    "pressure",
)


HANDLER_TABLE = "runtime.runtimes.<handler>"


@dataclass(frozen=True)
class Option:
    """One configuration option, of the core or declared by a plugin or driver.

    ``table`` is "" for the top level, "runtime", ``HANDLER_TABLE`` for a key
    of every runtime handler table, or ``plugins.<name>``. A ``default`` of
    None means the option is absent unless the operator sets it. ``owner`` is
    the entry-point name of the plugin or driver that declared the option
    ("" for the core); the kernel fills it in.
    """

    table: str
    key: str
    type: str
    default: Any
    doc: str
    reloadable: bool = False
    choices: tuple[str, ...] = ()
    owner: str = ""

    @property
    def dotted(self) -> str:
        return f"{self.table}.{self.key}" if self.table else self.key


# Keys of one `[runtime.runtimes.<handler>]` table.
HANDLER_OPTIONS: tuple[Option, ...] = (
    Option(
        HANDLER_TABLE,
        "driver",
        STR,
        "runc",
        "Driver (entry point in the `pycrio.runtime` group) that runs this handler's containers."
        ' Unset: "runc", or "vm" when runtime_type is "vm".',
    ),
    Option(
        HANDLER_TABLE,
        "runtime_type",
        STR,
        "oci",
        'CRI-O\'s runtime type: "oci" (an OCI runtime CLI such as runc) or "vm" (a'
        " containerd shim v2 runtime such as Kata Containers, run by the `vm` driver).",
        choices=("oci", "vm"),
    ),
    Option(
        HANDLER_TABLE,
        "runtime_path",
        STR,
        "",
        "Path of the OCI runtime binary (the shim v2 binary for runtime_type vm); empty means"
        " look the driver's default up in $PATH.",
    ),
    Option(
        HANDLER_TABLE,
        "privileged_without_host_devices",
        BOOL,
        False,
        "Privileged containers of this handler get none of the host's devices (as CRI-O):"
        " for VM runtimes, where host devices mean nothing inside the guest.",
    ),
    Option(
        HANDLER_TABLE,
        "runtime_root",
        STR,
        "",
        "State directory handed to the OCI runtime (`--root`); empty means the driver's default.",
    ),
    Option(
        HANDLER_TABLE,
        "monitor_path",
        STR,
        "",
        "Path of the container monitor (conmon); empty means look `conmon` up in $PATH.",
    ),
    Option(
        HANDLER_TABLE,
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
        "",
        "disabled_plugins",
        STR_LIST,
        [],
        "Plugins (entry-point names in the `pycrio.plugins` group) not to load, though"
        " installed; `pycrio plugins` shows them as disabled.",
    ),
    Option(
        "",
        "storage_driver",
        STR,
        "overlay",
        "How image layers are stored: overlay (kernel overlayfs, layers shared) or vfs"
        " (a full copy per layer, for kernels without overlayfs).",
        choices=("overlay", "vfs"),
    ),
    Option(
        "",
        "log_dir",
        STR,
        "/var/log/pycrio/pods",
        "Where container logs go when the kubelet gives a pod no log_directory.",
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
        "api",
        "status_listen",
        STR,
        "",
        "Path of the unix socket of the HTTP status API (`pycrio status`, /info, /config,"
        " /containers/<id>, /debug/...; mode 0660); empty means pycrio-status.sock next to"
        " the CRI socket.",
    ),
    Option(
        "api",
        "stream_address",
        STR,
        "127.0.0.1",
        "Address the streaming server (exec, attach, port-forward URLs) listens on.",
    ),
    Option(
        "api",
        "stream_port",
        STR,
        "0",
        'Port of the streaming server, as a string like CRI-O\'s; "0" picks a free port.',
    ),
    Option(
        "api",
        "stream_enable_tls",
        BOOL,
        False,
        "Serve the streaming URLs over HTTPS with `stream_tls_cert` and `stream_tls_key`.",
    ),
    Option(
        "api",
        "stream_tls_cert",
        STR,
        "",
        "PEM certificate (chain) of the streaming server, with `stream_enable_tls`.",
    ),
    Option(
        "api",
        "stream_tls_key",
        STR,
        "",
        "PEM private key of the streaming server, with `stream_enable_tls`.",
    ),
    Option(
        "api",
        "stream_tls_ca",
        STR,
        "",
        "PEM CA bundle; when set, streaming clients must present a certificate it signed.",
    ),
    Option(
        "api",
        "stream_idle_timeout",
        DURATION,
        "4h",
        "A stream with no traffic either way for this long is closed (the kubelet's default).",
    ),
    Option(
        "api",
        "stream_token_ttl",
        DURATION,
        "1m",
        "How long an exec/attach/port-forward URL stays valid; each works only once.",
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
        "",
        "Cgroup driver (entry point in the `pycrio.cgroup` group: systemd or cgroupfs); tell"
        " the kubelet the same with --cgroup-driver. Empty means systemd when the node runs"
        " systemd (/run/systemd/system exists), else cgroupfs.",
    ),
    Option(
        "runtime",
        "runtimes",
        RUNTIMES,
        DEFAULT_HANDLERS,
        "One table per RuntimeClass handler, keyed by the handler name.",
    ),
    Option(
        "runtime",
        "drop_infra_ctr",
        BOOL,
        True,
        "Run pods without an infra (pause) container: namespaces are pinned as files."
        " false starts one from [image] pause_image in every pod, for runtimes that need it.",
    ),
    Option(
        "runtime",
        "container_attach_socket_dir",
        STR,
        "/run/pycrio/attach",
        "Where conmon creates containers' attach sockets (kept short: socket paths are"
        " limited to 107 bytes).",
    ),
    Option(
        "runtime",
        "log_size_max",
        INT,
        -1,
        "Largest size in bytes a container log may reach before conmon truncates it;"
        " -1 means no limit (the kubelet rotates logs itself).",
    ),
    Option(
        "runtime",
        "shm_size",
        STR,
        "64Mi",
        "Size of each pod's /dev/shm tmpfs (a number with k, m, g, Ki, Mi or Gi).",
    ),
    Option(
        "runtime",
        "namespaces_dir",
        STR,
        "",
        "Directory where pod namespaces are pinned as bind-mounted files; empty means"
        " <runroot>/ns.",
    ),
    Option(
        "runtime",
        "pod_init_path",
        STR,
        "",
        "Path of catatonit, run as `pause -P`: PID 1 of each pod's shared PID namespace,"
        " which reaps the pod's orphans; empty means look `catatonit` up in $PATH, then"
        " /usr/libexec/podman.",
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
        "image",
        "pause_image",
        STR,
        "registry.k8s.io/pause:3.10",
        "Image of the infra container (with drop_infra_ctr = false); pulled when missing.",
    ),
    Option(
        "image",
        "pause_command",
        STR,
        "/pause",
        "Command the infra container runs; empty means the pause image's entrypoint.",
    ),
    Option(
        "image",
        "global_auth_file",
        STR,
        "",
        "Registry credentials in the containers auth.json format, used when a pull request"
        " carries none; empty means none.",
        reloadable=True,
    ),
    Option(
        "image",
        "signature_policy",
        STR,
        "",
        "Path of the containers-policy.json that decides which images may be pulled;"
        " empty means /etc/containers/policy.json.",
        reloadable=True,
    ),
    Option(
        "image",
        "signature_policy_dir",
        STR,
        "/etc/pycrio/policies",
        "Directory of per-namespace policies: <dir>/<pod namespace>.json overrides"
        " signature_policy for pulls of that namespace.",
        reloadable=True,
    ),
    Option(
        "image",
        "registries_d",
        STR,
        "/etc/containers/registries.d",
        "containers-registries.d directory: where signatures are looked up (lookaside,"
        " use-sigstore-attachments) for signedBy and sigstoreSigned policies; read at each pull.",
        reloadable=True,
    ),
    Option(
        "image",
        "registries_conf",
        STR,
        "/etc/containers/registries.conf",
        "containers-registries.conf v2 file: search registries, aliases, mirrors,"
        " insecure and blocked registries. Reloaded on SIGHUP.",
        reloadable=True,
    ),
    Option(
        "image",
        "registries_conf_dir",
        STR,
        "/etc/containers/registries.conf.d",
        "Drop-in directory for registries_conf, read in lexical order. Reloaded on SIGHUP.",
        reloadable=True,
    ),
    Option(
        "image",
        "certs_dirs",
        STR_LIST,
        ["/etc/containers/certs.d", "/etc/docker/certs.d"],
        "Directories holding <host[:port]>/ folders of CA certificates (*.crt) and client"
        " certificate pairs (*.cert, *.key) for registries.",
        reloadable=True,
    ),
    Option(
        "image",
        "pinned_images",
        STR_LIST,
        [],
        "Images the kubelet must never garbage-collect: exact names, or patterns ending"
        " in * (prefix) or starting with * (suffix).",
        reloadable=True,
    ),
    Option(
        "image",
        "max_parallel_downloads",
        INT,
        6,
        "Layers of one pull downloaded at the same time.",
        reloadable=True,
    ),
    Option(
        "image",
        "pull_progress_timeout",
        DURATION,
        "0s",
        "A pull whose download makes no progress for this long is aborted; 0s means"
        " only the connection's own 5-minute stall limit applies.",
        reloadable=True,
    ),
    Option(
        "metrics",
        "enable_metrics",
        BOOL,
        False,
        "Serve Prometheus metrics (CRI call counts and latencies, image pulls, OOM kills,"
        " containers and pods by state, process metrics); see docs/metrics.md.",
    ),
    Option(
        "metrics",
        "metrics_host",
        STR,
        "127.0.0.1",
        "Address the metrics endpoint listens on; the default keeps it off the network.",
    ),
    Option(
        "metrics",
        "metrics_port",
        INT,
        9090,
        "TCP port of the metrics endpoint (http://<metrics_host>:<metrics_port>/metrics).",
    ),
    Option(
        "metrics",
        "metrics_cert",
        STR,
        "",
        "PEM certificate file: with metrics_key, the endpoint serves HTTPS; empty means HTTP.",
    ),
    Option(
        "metrics",
        "metrics_key",
        STR,
        "",
        "PEM private key file for metrics_cert.",
    ),
    Option(
        "stats",
        "collection_period",
        INT,
        0,
        "Seconds between two collections of pod and container stats and pod metrics,"
        " served from that cache in between (CPU rates then span one period); 0 collects"
        " them on every call. See docs/metrics.md.",
    ),
    Option(
        "stats",
        "included_pod_metrics",
        STR_LIST,
        [],
        "Groups of cadvisor metrics ListPodSandboxMetrics collects: cpu, memory, network,"
        " oom, process, spec, disk, diskIO, hugetlb, pressure, or all; empty means all."
        " container_last_seen is always included.",
    ),
    Option(
        "tracing",
        "enable_tracing",
        BOOL,
        False,
        "Record an OpenTelemetry span for every CRI call and the work under it, and export"
        " them over OTLP; see docs/tracing.md.",
    ),
    Option(
        "tracing",
        "tracing_endpoint",
        STR,
        "127.0.0.1:4317",
        "host:port of the OTLP/gRPC collector spans are sent to (plain text, no TLS).",
    ),
    Option(
        "tracing",
        "tracing_sampling_rate_per_million",
        INT,
        0,
        "Calls per million that start a trace of their own; a call carrying a W3C"
        " traceparent follows its caller's sampling decision. 1000000 traces every call.",
    ),
    Option(
        "plugins",
        "*",
        PLUGINS,
        {},
        "A plugin's or driver's own options live in [plugins.<name>], as it declares them.",
    ),
)

TABLES: tuple[str, ...] = (
    "",
    "api",
    "runtime",
    "network",
    "image",
    "metrics",
    "stats",
    "tracing",
    "nri",
    "plugins",
)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


#: Go's longest time.Duration (2^63 ns), as CRI-O would refuse a longer one;
#: also what a timeout on a socket or a lock can hold.
MAX_DURATION = 9_223_372_036.0


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration ("1m30s"); raises ValueError when malformed."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 1m30s or 0s")
    if total > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than the longest duration, 2562047h47m16s")
    return total


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
    #: the options plugins and drivers declared, as the loader validated them
    declared: tuple[Option, ...] = ()
    #: Why a value was decided at load time (an empty cgroup_manager), for the log.
    notes: list[str] = field(default_factory=list)

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

    def seconds(self, dotted: str) -> float:
        """A duration option in seconds (validated at load time)."""
        return parse_duration(self.get(dotted))

    def plugin_table(self, name: str) -> dict[str, Any]:
        """A plugin's own options; empty when the operator wrote none."""
        return self.data.get("plugins", {}).get(name, {})
