"""``[plugins.cgroupfs]``: the cgroupfs driver's options, declared for the loader."""

from __future__ import annotations

from pycrio.kernel.options import NUMBER, STR, Option

OPTIONS: tuple[Option, ...] = (
    Option(
        "plugins.cgroupfs",
        "default_parent",
        STR,
        "/pycrio",
        "Parent cgroup (absolute path) of pods the kubelet gives no cgroup_parent"
        " (crictl users, tests): one cgroup per pod below it.",
    ),
    Option(
        "plugins.cgroupfs",
        "remove_timeout",
        NUMBER,
        5.0,
        "Seconds to retry removing a cgroup whose last process is still exiting.",
    ),
)
