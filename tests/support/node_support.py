"""Helpers of the node tier (tests/node): a systemd + cgroup v2 machine, the VM's.

``needs_systemd_node`` skips, with the reason, anywhere systemd is not PID 1
or the cgroups are not pure v2: on the CI host these tests run inside the
VM (tests/node/vm/run.py), never against the host's own init.
"""

from __future__ import annotations

import os
import subprocess

import pytest


def systemd_node_reason() -> str:
    """Why this machine is not a systemd + cgroup v2 node, or "" when it is."""
    if os.geteuid() != 0:
        return "needs root"
    try:
        with open("/proc/1/comm") as f:
            init = f.read().strip()
    except OSError:
        init = "unknown"
    if init != "systemd" or not os.path.isdir("/run/systemd/system"):
        return f"needs systemd as PID 1 (PID 1 is {init}): runs in the node VM (make test-node)"
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "needs pure cgroup v2: runs in the node VM (make test-node)"
    return ""


needs_systemd_node = pytest.mark.skipif(bool(systemd_node_reason()), reason=systemd_node_reason())


def has_sys_resource() -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (bit 24 of CapEff)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def show(unit: str, *props: str) -> dict[str, str]:
    """``systemctl show`` of some properties (only ever called inside the node VM)."""
    out = subprocess.run(
        ["systemctl", "show", unit, *(f"--property={p}" for p in props)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def unit_gone(unit: str) -> bool:
    """The transient unit is gone (a slice may still load as a file-less stub when asked)."""
    sh = show(unit, "LoadState", "ActiveState", "Transient")
    return sh["LoadState"] == "not-found" or (
        sh["ActiveState"] == "inactive" and sh["Transient"] == "no"
    )
