"""``[plugins.systemd]``: the systemd cgroup driver's options, declared for the loader."""

from __future__ import annotations

from pycrio.kernel.options import NUMBER, STR, Option

OPTIONS: tuple[Option, ...] = (
    Option(
        "plugins.systemd",
        "conmon_cgroup",
        STR,
        "pod",
        "Where each container's conmon goes: `pod` (a scope in the pod's slice) or a slice"
        " such as `system.slice` (CRI-O's conmon_cgroup).",
    ),
    Option(
        "plugins.systemd",
        "default_parent",
        STR,
        "pycrio.slice",
        "Slice whose children hold pods the kubelet gives no cgroup_parent (crictl users):"
        " pycrio-pod<id>.slice.",
    ),
    Option(
        "plugins.systemd",
        "scope_prefix",
        STR,
        "pycrio",
        "Prefix of container and conmon scopes: <prefix>-<id>.scope, <prefix>-conmon-<id>.scope.",
    ),
    Option(
        "plugins.systemd",
        "bus",
        STR,
        "system",
        "D-Bus to reach systemd on: `system`, or an address such as"
        " unix:path=/run/dbus/system_bus_socket.",
    ),
    Option(
        "plugins.systemd",
        "timeout",
        NUMBER,
        10.0,
        "Seconds for a D-Bus call or a unit job; calls are retried meanwhile while systemd"
        " re-executes or the bus restarts.",
    ),
    Option(
        "plugins.systemd",
        "remove_timeout",
        NUMBER,
        5.0,
        "Seconds a unit's last processes get to exit before removing it gives up"
        " (removal never kills).",
    ),
)
