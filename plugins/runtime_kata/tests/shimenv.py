"""Test helpers: a ShimV2Driver on containerd-shim-runc-v2 with busybox bundles.

Runs as the daemon does: a child subreaper, so each shim is re-parented to
the test process and its exit reaped here (reaper.reap_orphans).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cgroups
import image_e2e
from container_e2e import alive
from leaks import cmdlines
from pycrio_runtime_kata import ShimV2Driver

from pycrio import reaper
from pycrio.config.load import defaults
from pycrio.kernel.interfaces import CreateRequest, DriverContext, ExitStatus, PodInfo

SHIM = "/usr/bin/containerd-shim-runc-v2"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "sleep", "cat", "true", "false", "head", "kill", "yes", "tr", "dd")
CGROUP_ROOT = "/sys/fs/cgroup"
SANDBOX_ID_KEY = "io.kubernetes.cri.sandbox-id"
CONTAINER_TYPE_KEY = "io.kubernetes.cri.container-type"


def skip_reason() -> str:
    if os.geteuid() != 0:
        return "needs root"
    if not os.access(SHIM, os.X_OK):
        return f"needs {SHIM} (Debian's containerd package)"
    if not shutil.which("runc"):
        return "needs runc"
    if not os.path.exists(BUSYBOX):
        return "needs a static busybox at /bin/busybox"
    return ""


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    image_e2e.wait_for(lambda: bool(cond()), timeout, what)


def set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(reaper.PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0


def remove_cgroup_tree(rel: str) -> None:
    for h in cgroups.mounts():
        top = h / rel.lstrip("/")
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
            with contextlib.suppress(FileNotFoundError, OSError):
                os.rmdir(dirpath)


def oci_config(
    args: list[str], cgroups_path: str, annotations: dict[str, str], rootfs: str
) -> dict[str, Any]:
    caps = ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_DAC_OVERRIDE"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "HOME=/"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": False},  # absolute, as the core writes it
        "hostname": "pycrio-test",
        "annotations": annotations,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
        },
    }


class ShimEnv:
    """One test's driver(s), bundles and the containers to clean up."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cgroup_parent = f"/pycrio-kata-test-{secrets.token_hex(4)}"
        # the events socket lives in run_dir: keep it short for sun_path
        self.run_dir = f"/tmp/pkt-{secrets.token_hex(4)}"
        self.state_dir = str(tmp / "driver-state")
        # the runc shim keeps its containers in /run/containerd/runc/<namespace>: one per test
        self.namespace = f"pycrio-test-{secrets.token_hex(4)}"
        self.exits: dict[str, ExitStatus] = {}
        self.exit_seen = threading.Condition()
        self.driver = self.new_driver()
        self.ids: list[str] = []
        self.drivers = [self.driver]

    def new_driver(self, listen: bool = True) -> ShimV2Driver:
        """A driver on this test's directories; ``listen=False`` as pycrio check builds it."""
        ctx = DriverContext(
            "vm",
            defaults(),
            {
                "runtime_path": SHIM,
                "shim_namespace": self.namespace,
                "command_timeout": 20,
                "create_timeout": 30,
            },
            self.state_dir,
            self.run_dir,
        )
        driver = ShimV2Driver(ctx)
        if listen:
            driver.set_exit_listener(self._on_exit)
        return driver

    def restart(self) -> ShimV2Driver:
        """A new driver instance on the same directories (a daemon restart)."""
        self.driver.close()
        self.driver = self.new_driver()
        self.drivers.append(self.driver)
        return self.driver

    def _on_exit(self, cid: str, status: ExitStatus) -> None:
        with self.exit_seen:
            self.exits.setdefault(cid, status)
            self.exit_seen.notify_all()

    def wait_exit(self, cid: str, timeout: float = 15.0) -> ExitStatus:
        with self.exit_seen:
            if not self.exit_seen.wait_for(lambda: cid in self.exits, timeout):
                raise AssertionError(f"no exit pushed for {cid} within {timeout}s")
            return self.exits[cid]

    def bundle(
        self,
        cid: str,
        args: list[str],
        pod_id: str,
        ctype: str = "container",
        memory: int = 0,
    ) -> str:
        bundle = self.tmp / cid / "bundle"  # as the core lays bundles out
        rootfs = bundle / "rootfs"
        for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in APPLETS:
            os.symlink("busybox", rootfs / "bin" / applet)
        annotations = {
            SANDBOX_ID_KEY: pod_id,
            CONTAINER_TYPE_KEY: ctype,
            "io.kubernetes.cri-o.SandboxID": pod_id,
            "io.kubernetes.cri-o.ContainerType": ctype,
        }
        config = oci_config(args, f"{self.cgroup_parent}/{cid}", annotations, str(rootfs))
        if memory:
            mem = {"limit": memory}
            if os.path.exists(f"{CGROUP_ROOT}/memory/memory.memsw.limit_in_bytes"):
                mem["swap"] = memory
            config["linux"]["resources"]["memory"] = mem
        (bundle / "config.json").write_text(json.dumps(config))
        return str(bundle)

    def create(
        self,
        args: list[str],
        pod_id: str = "",
        ctype: str = "container",
        memory: int = 0,
        **kw: Any,
    ) -> tuple[str, int]:
        cid = "k" + secrets.token_hex(8)
        pod_id = pod_id or "pod" + secrets.token_hex(8)
        self.ids.append(cid)
        (self.tmp / "logs").mkdir(exist_ok=True)  # the core makes the log's directory
        req = CreateRequest(
            container_id=cid,
            bundle=self.bundle(cid, args, pod_id, ctype, memory),
            log_path=str(self.tmp / "logs" / f"{cid}.log"),
            pod=PodInfo(id=pod_id),
            **kw,
        )
        pid = self.driver.create(req)
        return cid, pid

    def run(self, args: list[str], pod_id: str = "", **kw: Any) -> tuple[str, int]:
        cid, pid = self.create(args, pod_id, **kw)
        self.driver.start(cid)
        return cid, pid

    def cleanup(self) -> None:
        reaper.reap_orphans()
        for cid in self.ids:
            for call in (
                lambda c=cid: self.driver.kill(c, signal.SIGKILL, all_processes=True),
                lambda c=cid: self.driver.delete(c, force=True),
            ):
                try:
                    call()
                except Exception:  # noqa: BLE001,S110 - best effort, keep cleaning
                    pass
        for driver in self.drivers:
            driver.close()
        reaper.reap_orphans()
        remove_cgroup_tree(self.cgroup_parent)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(self.runc_state_dir)  # fails, and stays for a look, if anything is left

    @property
    def runc_state_dir(self) -> str:
        return f"/run/containerd/runc/{self.namespace}"


def shim_pids_of(run_dir: str) -> set[int]:
    """Live shims started by the driver with this run dir (their -address names it)."""
    return {
        pid
        for pid, cmd in cmdlines().items()
        if cmd.startswith(SHIM + " ") and f" {run_dir}/" in cmd and alive(pid)
    }
