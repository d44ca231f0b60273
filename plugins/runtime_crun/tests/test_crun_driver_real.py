"""The crun driver against real crun and conmon, when crun can run containers here.

A probe container is created first. crun refuses a cgroup "hybrid" layout
whose cgroup2 hierarchy holds controllers; on such a machine, and only for
that refusal, every test skips with crun's own message. Any other failure
of the probe is a failure: a regression in create() must not look like a
machine that cannot run crun.
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
from pycrio_cgroup_fs.layout import MODE_HYBRID, MODE_V2, detect
from pycrio_runtime_crun import CrunDriver

from pycrio.config.load import defaults
from pycrio.errors import CRIError, NotFound
from pycrio.kernel.interfaces import CreateRequest, DriverContext, PodInfo

pytestmark = pytest.mark.integration

BUSYBOX = "/bin/busybox"
SKIP_REASON = "crun cannot run containers on this machine's hybrid cgroup setup"
#: crun's refusal of a hybrid layout (libcrun/cgroup-setup.c), the one known reason to skip.
HYBRID_REFUSAL = "cgroups in hybrid mode not supported"

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
            pod=PodInfo(id="pod-" + cid),
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
        for h in map(Path, detect().all_mounts()):
            top = h / "pycrio-test-crun"
            if top.is_dir():
                for sub in sorted(top.glob("**/"), key=lambda p: -len(str(p))):
                    try:
                        sub.rmdir()
                    except OSError:
                        pass


def known_refusal(cgroup_mode: str, message: str) -> bool:
    """Whether a failed create is crun refusing this machine's hybrid cgroup layout."""
    return cgroup_mode == MODE_HYBRID and HYBRID_REFUSAL in message


def test_only_the_hybrid_refusal_is_a_reason_to_skip() -> None:
    refusal = f"runtime create failed: {HYBRID_REFUSAL}, drop all controllers from cgroupv2"
    assert known_refusal(MODE_HYBRID, refusal)
    assert not known_refusal(MODE_V2, refusal)
    assert not known_refusal(MODE_HYBRID, "runtime create failed: executable file not found")
    assert not known_refusal(MODE_HYBRID, "conmon: container create timed out")


@pytest.fixture
def crun_env(tmp_path: Path) -> Iterator[CrunEnv]:
    sock_dir = tempfile.mkdtemp(prefix="pcc", dir="/tmp")
    env = CrunEnv(tmp_path, sock_dir)
    try:
        try:
            env.run(["echo", "probe"])
        except CRIError as e:
            if not known_refusal(detect().mode, e.message):
                raise
            pytest.skip(f"{SKIP_REASON} ({e.message[:200]})")
        yield env
    finally:
        env.cleanup()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_crun_lifecycle_and_exec(crun_env: CrunEnv) -> None:
    req = crun_env.run(["sh", "-c", "echo hello; exit 3"])
    deadline = time.monotonic() + 10
    while (status := crun_env.driver.exit_status(req.container_id)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status.exit_code == 3
    assert Path(req.log_path).read_bytes().rstrip().endswith(b" stdout F hello")
    long = crun_env.run(["sleep", "1000"])
    r = crun_env.driver.exec_sync(long.container_id, ["echo", "hi"], 10)
    assert (r.stdout, r.exit_code) == (b"hi\n", 0)
    crun_env.driver.delete(req.container_id)
    with pytest.raises(NotFound):
        crun_env.driver.state(req.container_id)
