"""The handler-table options of the shim v2 (``vm``) driver.

Declared through the ``pycrio.options`` entry point so the loader validates
them and ``pycrio config --default`` prints them. ``runtime_path`` and
``runtime_type`` are the core's keys; ``runtime_config_path`` and
``privileged_without_host_devices`` are CRI-O's names (the latter is read
by the core, which owns the container's devices).
"""

from __future__ import annotations

from pycrio.kernel.options import BOOL, HANDLER_TABLE, NUMBER, STR, Option

OPTIONS: tuple[Option, ...] = (
    Option(
        HANDLER_TABLE,
        "runtime_config_path",
        STR,
        "",
        "The shim's own configuration file (Kata's configuration.toml), passed in each"
        " CreateTaskRequest's options as CRI-O does; empty lets the shim find its default."
        " Leave it empty for shims that take other options (containerd-shim-runc-v2).",
    ),
    Option(
        HANDLER_TABLE,
        "shim_namespace",
        STR,
        "k8s.io",
        "The containerd namespace the shim is started in (-namespace; the runc shim keeps"
        " its containers under /run/containerd/runc/<namespace>).",
    ),
    Option(
        HANDLER_TABLE,
        "shim_debug",
        BOOL,
        False,
        "Start shims with -debug: their debug log lines reach pycrio's log.",
    ),
    Option(
        HANDLER_TABLE,
        "command_timeout",
        NUMBER,
        30,
        "Seconds each call to the shim (state, start, kill, delete, update, ...) may take.",
    ),
    Option(
        HANDLER_TABLE,
        "create_timeout",
        NUMBER,
        120,
        "Seconds starting a shim and creating a task may take (a VM boots here).",
    ),
)
