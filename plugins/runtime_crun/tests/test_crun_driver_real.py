"""The crun driver against real crun and conmon, when crun can run containers here.

A probe container is created first; if crun refuses (it rejects some
cgroup v1 "hybrid" layouts), every test skips with that reason instead
of failing on the machine rather than on the code.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrio_runtime_crun import CrunDriver

from pycrio.config.load import defaults
from pycrio.errors import CRIError, NotFound
from pycrio.kernel.interfaces import CreateRequest, DriverContext
from pycrio.oci import conmon

pytestmark = pytest.mark.integration

BUSYBOX = "/bin/busybox"
SKIP_REASON = "crun cannot run containers on this machine's hybrid cgroup setup"

if os.geteuid() != 0 or not shutil.which("crun") or not shutil.which("conmon"):
    pytest.skip("needs root, crun and conmon", allow_module_level=True)
if not os.path.exists(BUSYBOX):
    pytest.skip("needs a static busybox at /bin/busybox", allow_module_level=True)


def test_entry_point_class() -> None:
    assert CrunDriver.default_binary == "crun"


def _config(args: list[str], cid: str) -> dict[str, object]:
    return {
        "ociVersion": "1.0.2",
        "process": {"args": args, "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "cgroupsPath": f"/pycrio-test-crun/{cid}",
        },
    }


class CrunEnv:
    def __init__(self, tmp: Path, sock_dir: str) -> None:
        self.tmp = tmp
        opts = {"runtime_root": str(tmp / "root"), "attach_socket_dir": sock_dir}
        self.driver = CrunDriver(DriverContext("crun", defaults(), opts, str(tmp), str(tmp)))
        self.ids: list[str] = []

    def run(self, args: list[str]) -> CreateRequest:
        cid = "c" + secrets.token_hex(8)
        self.ids.append(cid)
        bundle = self.tmp / cid
        (bundle / "rootfs" / "bin").mkdir(parents=True)
        for d in ("proc", "dev"):
            (bundle / "rootfs" / d).mkdir()
        shutil.copy2(BUSYBOX, bundle / "rootfs" / "bin" / "busybox")
        for applet in ("sh", "echo", "sleep"):
            os.symlink("busybox", bundle / "rootfs" / "bin" / applet)
        (bundle / "config.json").write_text(json.dumps(_config(args, cid)))
        req = CreateRequest(
            container_id=cid,
            bundle=str(bundle),
            log_path=str(bundle / "ctr.log"),
            exit_dir=str(self.tmp / "exits"),
            state_dir=str(bundle / "state"),
        )
        self.driver.create(req)
        self.driver.start(cid)
        return req

    def cleanup(self) -> None:
        for cid in self.ids:
            for fn in (
                lambda c=cid: self.driver.kill(c, signal.SIGKILL, all_processes=True),
                lambda c=cid: self.driver.delete(c, force=True),
            ):
                try:
                    fn()
                except CRIError:
                    pass
        for h in Path("/sys/fs/cgroup").iterdir():
            top = h / "pycrio-test-crun"
            if top.is_dir():
                for sub in sorted(top.glob("**/"), key=lambda p: -len(str(p))):
                    try:
                        sub.rmdir()
                    except OSError:
                        pass


@pytest.fixture
def crun_env(tmp_path: Path) -> Iterator[CrunEnv]:
    sock_dir = tempfile.mkdtemp(prefix="pcc", dir="/tmp")
    env = CrunEnv(tmp_path, sock_dir)
    try:
        try:
            env.run(["echo", "probe"])
        except CRIError as e:
            pytest.skip(f"{SKIP_REASON} ({e.message[:200]})")
        yield env
    finally:
        env.cleanup()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_crun_lifecycle_and_exec(crun_env: CrunEnv) -> None:
    req = crun_env.run(["sh", "-c", "echo hello; exit 3"])
    deadline = time.monotonic() + 10
    while conmon.read_exit_code(req.exit_dir, req.container_id) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert conmon.read_exit_code(req.exit_dir, req.container_id) == 3
    assert Path(req.log_path).read_bytes().rstrip().endswith(b" stdout F hello")
    long = crun_env.run(["sleep", "1000"])
    r = crun_env.driver.exec_sync(long.container_id, ["echo", "hi"], 10)
    assert (r.stdout, r.exit_code) == (b"hi\n", 0)
    crun_env.driver.delete(req.container_id)
    with pytest.raises(NotFound):
        crun_env.driver.state(req.container_id)
