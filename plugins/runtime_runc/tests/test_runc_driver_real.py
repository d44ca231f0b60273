"""The runc driver against real runc and conmon, with a busybox root filesystem.

Each test builds its own bundle (busybox copied in, applets as symlinks so
each runs as its own process), a hand-written OCI config and a cgroup
parent ``/pycrio-test-<rand>``; finalizers kill and delete the containers
and remove the cgroups even when a test fails.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pycrio_runtime_runc import RuncDriver, conmon

from pycrio import reaper
from pycrio.config.load import defaults
from pycrio.errors import Internal, NotFound
from pycrio.kernel.interfaces import (
    STDOUT,
    CreateRequest,
    DriverContext,
    ExitStatus,
    PodInfo,
    RuntimeFeatures,
)

pytestmark = pytest.mark.integration

BUSYBOX = "/bin/busybox"
APPLETS = (
    "sh",
    "echo",
    "sleep",
    "cat",
    "true",
    "false",
    "id",
    "head",
    "kill",
    "ps",
    "yes",
    "ls",
    "tr",
)
CGROUP_ROOT = "/sys/fs/cgroup"

if os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("conmon"):
    pytest.skip("needs root, runc and conmon", allow_module_level=True)
if not os.path.exists(BUSYBOX):
    pytest.skip("needs a static busybox at /bin/busybox", allow_module_level=True)

LOG_LINE = re.compile(
    rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) (.*)$"
)


def _hierarchies() -> list[str]:
    return sorted(
        os.path.join(CGROUP_ROOT, d)
        for d in os.listdir(CGROUP_ROOT)
        if os.path.ismount(os.path.join(CGROUP_ROOT, d))
    )


def _make_cgroup(rel: str) -> None:
    """mkdir the cgroup in every hierarchy (cpuset initialised so tasks may join)."""
    for h in _hierarchies():
        path = os.path.join(h, rel.lstrip("/"))
        os.makedirs(path, exist_ok=True)
        if os.path.exists(os.path.join(path, "cpuset.cpus")):
            for name in ("cpuset.cpus", "cpuset.mems"):
                with open(os.path.join(h, name)) as f:
                    value = f.read().strip()
                with open(os.path.join(path, name), "w") as f:
                    f.write(value)


def _remove_cgroup_tree(rel: str) -> None:
    for h in _hierarchies():
        top = os.path.join(h, rel.lstrip("/"))
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
            for _ in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _wait(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


class Env:
    """One test's driver, directories and the containers to clean up."""

    def __init__(self, tmp: Path, sock_dir: str, cgroup_parent: str) -> None:
        self.tmp = tmp
        self.cgroup_parent = cgroup_parent
        ctx = DriverContext(
            "runc",
            defaults(),
            {
                "runtime_path": shutil.which("runc"),
                "runtime_root": str(tmp / "runc-root"),
                "monitor_path": shutil.which("conmon"),
                "attach_socket_dir": sock_dir,
                "command_timeout": 20,
                "create_timeout": 30,
            },
            str(tmp / "driver-state"),
            str(tmp / "driver-run"),
        )
        self.driver = RuncDriver(ctx)
        self.ids: list[str] = []

    def bundle(self, args: list[str], cid: str, memory: int = 0) -> str:
        bundle = self.tmp / cid / "bundle"
        rootfs = bundle / "rootfs"
        for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in APPLETS:
            os.symlink("busybox", rootfs / "bin" / applet)
        config = oci_config(args, self.cgroup_parent, cid)
        if memory:
            mem = {"limit": memory}
            if os.path.exists(f"{CGROUP_ROOT}/memory/memory.memsw.limit_in_bytes"):
                mem["swap"] = memory  # memory+swap: no escaping into swap
            config["linux"]["resources"]["memory"] = mem  # type: ignore[index]
        (bundle / "config.json").write_text(json.dumps(config))
        return str(bundle)

    def create(
        self, args: list[str], memory: int = 0, cgroup_parent: str = "", **kw: object
    ) -> tuple[CreateRequest, int]:
        cid = "t" + secrets.token_hex(8)
        self.ids.append(cid)
        req = CreateRequest(
            container_id=cid,
            bundle=self.bundle(args, cid, memory),
            log_path=str(self.tmp / cid / "logs" / "0.log"),
            pod=PodInfo(id="pod-" + cid, cgroup_parent=cgroup_parent),
            **kw,  # type: ignore[arg-type]
        )
        pid = self.driver.create(req)
        return req, pid

    def run(self, args: list[str], memory: int = 0, **kw: object) -> tuple[CreateRequest, int]:
        req, pid = self.create(args, memory, **kw)
        self.driver.start(req.container_id)
        return req, pid

    def state_dir(self, req: CreateRequest) -> str:
        return self.driver.persist_dir(req.container_id)

    def exit_code(self, req: CreateRequest, timeout: float = 10) -> int:
        _wait(
            lambda: self.driver.exit_status(req.container_id) is not None,
            timeout,
            "the exit status",
        )
        status = self.driver.exit_status(req.container_id)
        assert status is not None
        return status.exit_code

    def cleanup(self) -> None:
        # a zombie of ours inside a container's pid namespace would keep its
        # init from finishing its exit; the daemon's reaper does this too
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
            pid = conmon.monitor_pid(self.driver.persist_dir(cid))
            if pid and _alive(pid):
                try:
                    _wait(lambda p=pid: not _alive(p), 5, "conmon to exit")
                except AssertionError:
                    os.kill(pid, signal.SIGKILL)  # keep cleaning; the test reports the rest


def oci_config(args: list[str], cgroup_parent: str, cid: str) -> dict[str, object]:
    """A minimal but valid runtime-spec 1.0 config for a busybox container."""
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
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "pycrio-test",
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
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
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
            "cgroupsPath": f"{cgroup_parent}/{cid}",
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
        },
    }


def _set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(reaper.PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """Runs as the daemon does: a child subreaper, so conmon is re-parented to us."""
    # conmon's attach socket path must fit in sun_path: keep it short
    sock_dir = tempfile.mkdtemp(prefix="pcs", dir="/tmp")
    parent = f"/pycrio-test-{secrets.token_hex(4)}"
    _make_cgroup(parent)
    e = Env(tmp_path, sock_dir, parent)
    _set_subreaper(True)
    try:
        yield e
    finally:
        try:
            e.cleanup()
        finally:
            reaper.reap_orphans()  # the exited monitors, as the daemon's reaper would
            _set_subreaper(False)
            _remove_cgroup_tree(parent)
            shutil.rmtree(sock_dir, ignore_errors=True)


def test_lifecycle_logs_and_exit_zero(env: Env) -> None:
    req, pid = env.create(["echo", "hello"])
    assert pid > 0
    st = env.driver.state(req.container_id)
    assert st.status == "created" and st.pid == pid and st.bundle == req.bundle
    env.driver.start(req.container_id)
    assert env.exit_code(req) == 0
    lines = Path(req.log_path).read_bytes().splitlines()
    assert len(lines) == 1, lines
    m = LOG_LINE.match(lines[0])
    assert m and m.group(3) == b"stdout" and m.group(4) == b"F" and m.group(5) == b"hello"
    assert env.driver.state(req.container_id).status == "stopped"
    assert (Path(env.state_dir(req)) / "exit").read_text() == "0"
    status = env.driver.exit_status(req.container_id)
    assert status is not None and not status.oom_killed
    assert abs(status.finished_at - time.time_ns()) < 60 * 10**9
    env.driver.delete(req.container_id)
    with pytest.raises(NotFound):
        env.driver.state(req.container_id)
    # delete forgets everything the driver kept, the exit with it
    assert env.driver.exit_status(req.container_id) is None
    assert not Path(env.state_dir(req)).exists()


def test_exit_code_three_and_stderr(env: Env) -> None:
    req, _ = env.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert env.exit_code(req) == 3
    line = Path(req.log_path).read_bytes().splitlines()[0]
    m = LOG_LINE.match(line)
    assert m and m.group(3) == b"stderr" and m.group(5) == b"oops"


def test_running_then_sigterm_handled(env: Env) -> None:
    # pid 1 of a pid namespace ignores signals it has no handler for, so
    # the shell traps TERM the way a well-behaved init does
    req, pid = env.run(["sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"])
    _wait(lambda: env.driver.state(req.container_id).status == "running", what="running")
    assert env.driver.state(req.container_id).pid == pid
    time.sleep(0.2)  # let the shell install its trap
    env.driver.kill(req.container_id, signal.SIGTERM)
    assert env.exit_code(req) == 143
    assert env.driver.state(req.container_id).status == "stopped"
    # a stopped container can be signalled again without error
    env.driver.kill(req.container_id, signal.SIGKILL)


def test_sigkill_reports_signal_form(env: Env) -> None:
    req, _ = env.run(["sleep", "1000"])
    env.driver.kill(req.container_id, signal.SIGKILL)
    assert env.exit_code(req) == 128 + signal.SIGKILL


def test_exec_sync(env: Env) -> None:
    req, _ = env.run(["sleep", "1000"])
    r = env.driver.exec_sync(req.container_id, ["echo", "hi"], 10)
    assert (r.stdout, r.exit_code, r.timed_out) == (b"hi\n", 0, False)
    r = env.driver.exec_sync(req.container_id, ["sh", "-c", "exit 5"], 10)
    assert r.exit_code == 5
    r = env.driver.exec_sync(req.container_id, ["sh", "-c", "echo err >&2; false"], 10)
    assert (r.stderr, r.exit_code) == (b"err\n", 1)
    # the exec runs as the container's process: its env comes from config.json
    r = env.driver.exec_sync(req.container_id, ["sh", "-c", "echo $HOME:$PATH"], 10)
    assert r.stdout == b"/:/bin\n"


def test_exec_sync_timeout_kills(env: Env) -> None:
    req, _ = env.run(["sleep", "1000"])
    start = time.monotonic()
    r = env.driver.exec_sync(req.container_id, ["sleep", "31337"], 1)
    assert r.timed_out
    assert time.monotonic() - start < 5

    def sleepers() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read() == b"sleep\x0031337\x00":
                        found.append(int(entry))
            except OSError:
                continue
        return found

    _wait(lambda: not sleepers(), 3, "the exec'd sleep to be gone")
    assert env.driver.state(req.container_id).status == "running"


def test_exec_sync_output_capped(env: Env) -> None:
    req, _ = env.run(["sleep", "1000"])
    r = env.driver.exec_sync(
        req.container_id, ["sh", "-c", "yes | head -c 5000000"], 20, max_output=4096
    )
    assert len(r.stdout) == 4096 and r.exit_code == 0 and not r.timed_out


def test_update_memory_limit(env: Env) -> None:
    req, _ = env.run(["sleep", "1000"])
    limit = 96 * 1024 * 1024
    env.driver.update(req.container_id, {"memory": {"limit": limit}})
    path = Path(CGROUP_ROOT, "memory", env.cgroup_parent.lstrip("/"), req.container_id)
    assert int((path / "memory.limit_in_bytes").read_text()) == limit


def test_pause_resume_and_features(env: Env) -> None:
    req, _ = env.run(["sleep", "1000"])
    env.driver.pause(req.container_id)
    assert env.driver.state(req.container_id).status == "paused"
    env.driver.resume(req.container_id)
    assert env.driver.state(req.container_id).status == "running"
    feats = env.driver.oci_features()
    assert "ociVersionMin" in feats and "hooks" in feats
    want_rro = "rro" in feats.get("mountOptions", [])
    assert env.driver.features() == RuntimeFeatures(
        recursive_read_only_mounts=want_rro, user_namespaces=env.driver.features().user_namespaces
    )


def test_container_outlives_the_create_call(env: Env) -> None:
    req, pid = env.run(["sleep", "1000"])
    mon = conmon.monitor_pid(env.state_dir(req))
    assert mon and _alive(mon)
    # the conmon we started has exited and been reaped; the monitor it forked
    # was re-parented to us (the subreaper) and is nobody's Popen
    assert mon not in reaper._own
    with open(f"/proc/{mon}/stat") as f:
        stat = f.read()
    assert int(stat[stat.rfind(")") + 2 :].split()[1]) == os.getpid()
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    assert int(stat[stat.rfind(")") + 2 :].split()[1]) == mon  # container is conmon's child
    reaper.reap_orphans()  # what the daemon's reaper does must not touch the live monitor
    time.sleep(0.5)
    assert _alive(mon)
    assert env.driver.state(req.container_id).status == "running"


def test_monitor_placed_in_pod_cgroup(env: Env) -> None:
    req, _ = env.run(["sleep", "1000"], cgroup_parent=env.cgroup_parent)
    mon = conmon.monitor_pid(env.state_dir(req))
    with open(f"/proc/{mon}/cgroup") as f:
        lines = f.read().splitlines()
    want = f"{env.cgroup_parent}/pycrio-conmon-{req.container_id}"
    assert any(line.endswith(":" + want) for line in lines), lines
    env.driver.kill(req.container_id, signal.SIGKILL)
    env.exit_code(req)
    _wait(lambda: not _alive(mon), 5, "conmon to exit")
    env.driver.delete(req.container_id)
    assert not Path(CGROUP_ROOT, "memory", want.lstrip("/")).exists()


def test_oom_kill_marked(env: Env) -> None:
    script = "a=$(head -c 268435456 /dev/zero | tr '\\000' a); echo ${#a}"
    req, _ = env.run(["sh", "-c", script], memory=16 * 1024 * 1024)
    assert env.exit_code(req, timeout=30) == 128 + signal.SIGKILL
    _wait(lambda: env.driver.exit_status(req.container_id).oom_killed, 5, "the OOM kill")


def test_reopen_log(env: Env) -> None:
    req, _ = env.run(["sh", "-c", "while true; do echo tick; sleep 0.1; done"])
    _wait(lambda: Path(req.log_path).exists() and Path(req.log_path).stat().st_size, 5, "a log")
    os.rename(req.log_path, req.log_path + ".1")
    env.driver.reopen_log(req.container_id)
    _wait(lambda: b"tick" in Path(req.log_path).read_bytes(), 5, "ticks in the new log")


def test_create_failure_reports_runtime_error(env: Env) -> None:
    with pytest.raises(Internal, match="runtime create failed.*no-such-binary") as info:
        env.create(["/bin/no-such-binary"])
    print(info.value.message)


def test_unknown_container(env: Env) -> None:
    with pytest.raises(NotFound):
        env.driver.state("no-such-container")
    env.driver.delete("no-such-container")
    env.driver.delete("no-such-container", force=True)
    with pytest.raises(NotFound):
        env.driver.kill("no-such-container", signal.SIGTERM)


def test_exits_are_pushed_to_the_listener(env: Env) -> None:
    got: dict[str, ExitStatus] = {}
    seen = threading.Event()

    def listener(cid: str, status: ExitStatus) -> None:
        got[cid] = status
        seen.set()

    env.driver.set_exit_listener(listener)
    req, _ = env.run(["sh", "-c", "exit 7"])
    assert seen.wait(5), "no exit was pushed"
    time.sleep(0.2)  # room for a (wrong) second report
    assert list(got) == [req.container_id]  # not conmon's temporary "<id>.XXXXXX" as well
    assert got[req.container_id].exit_code == 7
    assert got[req.container_id] == env.driver.exit_status(req.container_id)


def test_recover_reports_exits_missed_while_down(env: Env) -> None:
    done, _ = env.run(["true"])
    alive, _ = env.run(["sleep", "1000"])
    env.exit_code(done)
    exits = env.driver.recover([done.container_id, alive.container_id])
    assert set(exits) == {done.container_id}
    assert exits[done.container_id].exit_code == 0


def test_attach_reads_output_and_writes_input(env: Env) -> None:
    req, _ = env.run(["cat"], stdin=True, stdin_once=True)
    att = env.driver.attach(req.container_id)
    try:
        att.send(b"ping\n")
        stream, data = att.recv() or (0, b"")
        assert (stream, data) == (STDOUT, b"ping\n")
        att.close_input()
        assert env.exit_code(req) == 0  # cat saw EOF
    finally:
        att.close()
    assert att.recv() is None
