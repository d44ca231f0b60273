"""The handler-table options of the OCI runtime drivers (runc, and crun, which takes
runc's command line): what ``[runtime.runtimes.<handler>]`` may hold beyond the
core's keys when its ``driver`` is one of them.

Declared through the ``pycrio.options`` entry point so the loader validates
them, ``pycrio config --default`` prints them and docs/configuration.md
lists them. The names and meanings are CRI-O's where it has them.
"""

from __future__ import annotations

from pycrio.kernel.options import BOOL, HANDLER_TABLE, NUMBER, STR, STR_LIST, Option

OPTIONS: tuple[Option, ...] = (
    Option(
        HANDLER_TABLE,
        "attach_socket_dir",
        STR,
        "",
        "Where conmon creates this handler's attach sockets; empty means [runtime]"
        " container_attach_socket_dir.",
    ),
    Option(
        HANDLER_TABLE,
        "runtime_args",
        STR_LIST,
        [],
        "Extra global flags passed to the OCI runtime on every call (e.g. --debug).",
    ),
    Option(
        HANDLER_TABLE,
        "systemd_cgroup",
        BOOL,
        None,
        "Pass --systemd-cgroup to the runtime and -s to conmon: cgroupsPath is a systemd"
        " slice:prefix:name. Unset: true exactly when [runtime] cgroup_manager is systemd.",
    ),
    Option(
        HANDLER_TABLE,
        "monitor_log_level",
        STR,
        "info",
        "conmon's --log-level (error, warn, info, debug or trace).",
    ),
    Option(
        HANDLER_TABLE,
        "monitor_syslog",
        BOOL,
        False,
        "conmon also logs to syslog (--syslog).",
    ),
    Option(
        HANDLER_TABLE,
        "no_pivot",
        BOOL,
        False,
        "Create containers with --no-pivot (for a rootfs on a ramdisk, where pivot_root fails).",
    ),
    Option(
        HANDLER_TABLE,
        "command_timeout",
        NUMBER,
        30,
        "Seconds the runtime's state, start, kill, delete, update, pause and resume may take.",
    ),
    Option(
        HANDLER_TABLE,
        "create_timeout",
        NUMBER,
        120,
        "Seconds a container create through conmon may take.",
    ),
)
