"""What a shim v2 pod leaves on the host, found from the shim itself.

A containerd shim v2 (containerd-shim-runc-v2 in the tests, containerd-shim-kata-v2
on a Kata node) is the parent of its pod's containers, listens on a ttrpc
socket of its own (``/run/containerd/s/<hash>`` for containerd's shims) and
keeps runtime state, mounts and the FIFOs of its containers' IO. These
helpers take a snapshot of that while the pod runs, so that after
StopPodSandbox/RemovePodSandbox a test can assert every piece is gone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from container_e2e import Pod, alive
from daemon import DaemonProcess
from leaks import mounts_under

#: containerd's state directory: shims put their sockets and runc state below it.
CONTAINERD_STATE = Path("/run/containerd")


def shim_sockets(pid: int) -> set[str]:
    """Paths of the unix sockets ``pid`` has bound (its ttrpc server's among them)."""
    try:
        conns = psutil.Process(pid).net_connections(kind="unix")
    except psutil.Error:
        return set()
    return {c.laddr for c in conns if isinstance(c.laddr, str) and c.laddr.startswith("/")}


def shim_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


@dataclass
class ShimSnapshot:
    """A pod's shims, their sockets and the ids of what they ran, taken while it runs."""

    pod_id: str
    ids: set[str]
    shims: set[int]
    sockets: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, pod: Pod) -> ShimSnapshot:
        info = pod.pod_info()
        ids = {pod.id, *pod.containers, info.get("infra_id", "")} - {""}
        shims = pod.shims()
        sockets = set().union(*(shim_sockets(p) for p in shims)) if shims else set()
        return cls(pod.id, ids, shims, sockets)

    def leftovers(self, d: DaemonProcess, *, daemon_has_pods: bool) -> list[str]:
        """What is left of the pod once it was removed; empty when nothing is.

        Without ``daemon_has_pods`` any FIFO under the daemon's root or runroot
        counts, whatever its name: no pod remains that could own it. Below
        /run/containerd (shared with other daemons) only what names the pod's
        ids counts.
        """
        found = [f"shim process {p} still runs: {shim_cmdline(p)}" for p in self.shims if alive(p)]
        found += [f"shim socket {s}" for s in self.sockets if os.path.exists(s)]
        own = [d.tmp / "root", d.tmp / "runroot"]
        dirs = [*own, CONTAINERD_STATE]
        found += [f"mount {m}" for m in mounts_under(*dirs) if any(i in m for i in self.ids)]
        for path, mode in walk(dirs):
            named = any(i in path for i in self.ids)
            mine = not daemon_has_pods and any(path.startswith(f"{o}/") for o in own)
            if stat.S_ISFIFO(mode) and (named or mine):
                found.append(f"FIFO {path}")
            elif named:
                found.append(f"state {path}")
        return sorted(set(found))


def walk(dirs: Iterable[Path]) -> list[tuple[str, int]]:
    """(path, st_mode) of every entry below ``dirs``, tolerating entries that vanish."""
    out = []
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                try:
                    out.append((path, os.lstat(path).st_mode))
                except OSError:
                    continue
    return out
