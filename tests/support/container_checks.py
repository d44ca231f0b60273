"""Checks of container behaviour that the runc tests and the shim v2 tests share.

Each takes a pod (``container_e2e.Pod``) of whatever runtime handler, runs
its containers and asserts what the kubelet must see: the same expectations
hold for runc + conmon and for a shim v2 runtime.
"""

from __future__ import annotations

import os
import time

import grpc
import stream_client as sc
from container_e2e import Pod, parse_log, processes_mentioning, rpc_error, texts, wait_until
from cri_api.v1 import api_pb2
from streaming_e2e import attach_url, await_size

MiB = 1 << 20


def oom_killed(pod: Pod, image: str) -> api_pb2.ContainerStatus:
    """A shell doubling a string until its 16 MiB memory cgroup kills it: OOMKilled, 137."""
    oom = pod.run(
        "oom", image,
        command=["sh", "-c", "a=0123456789abcdef; while :; do a=$a$a; done"],
        linux=api_pb2.LinuxContainerConfig(
            resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=16 * MiB)
        ),
    )  # fmt: skip
    s = pod.wait_exit(oom, timeout=30)
    assert (s.exit_code, s.reason) == (137, "OOMKilled")
    assert s.finished_at > s.started_at > 0
    return s


def exec_sync_outputs(pod: Pod, image: str) -> str:
    """ExecSync's stdout, stderr and exit code, in a container it starts (its id returned)."""
    cid = pod.run("exec", image, command=["sleep", "300"])
    r = pod.exec(cid, "echo", "hello")
    assert (r.stdout, r.stderr, r.exit_code) == (b"hello\n", b"", 0)
    r = pod.exec(cid, "sh", "-c", "echo to-err >&2; exit 5")
    assert (r.stdout, r.stderr, r.exit_code) == (b"", b"to-err\n", 5)
    return cid


def exec_sync_timeout_kills(pod: Pod, cid: str) -> None:
    """ExecSync's deadline kills the command, quickly, and leaves the container running."""
    t0 = time.monotonic()
    err = rpc_error(lambda: pod.exec(cid, "sleep", "37", timeout=1))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 5
    wait_until(
        lambda: not [p for p, cmd in processes_mentioning("sleep 37") if cmd.strip() == "sleep 37"],
        3,
        "the timed-out command to be killed",
    )
    assert "sleep 37" not in pod.out(cid, "ps")


def reopen_log(pod: Pod, image: str) -> None:
    """ReopenContainerLog after a rotation: nothing lost or duplicated; refused once exited."""
    cid = pod.run(
        "logger", image,
        command=["sh", "-c", "i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.05; done"],
    )  # fmt: skip
    path = pod.log_dir / "logger_0.log"
    wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= 3, 5, "output")
    rotated = path.with_name("logger_0.log.1")
    os.rename(path, rotated)
    pod.rt.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=cid), timeout=10)
    assert path.exists()
    wait_until(lambda: len(path.read_text().splitlines()) >= 3, 5, "output in the new file")
    old, new = texts(parse_log(rotated)), texts(parse_log(path))
    assert old and new
    assert [int(t.split("-")[1]) for t in old] == list(range(1, len(old) + 1))
    # one line may be cut in the middle by the rotation, none is lost or written twice
    n_old, n_new = int(old[-1].split("-")[1]), int(new[0].split("-")[1])
    assert n_new in (n_old, n_old + 1)
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=30)
    err = rpc_error(
        lambda: pod.rt.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=cid))
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


def attach_tty(pod: Pod, image: str, transport: str) -> sc.Result:
    """Attach to a shell on a TTY: resize, type, read its answer, exit 4 through it."""
    cid = pod.run("shell", image, command=["sh"], stdin=True, tty=True)
    url = attach_url(pod.rt, cid, stdin=True, stdout=True, stderr=False, tty=True)
    with sc.remote_command(transport, url, stdin=True, stderr=False, tty=True) as s:
        s.resize(100, 40)
        # the echo of the typed line reads "$((6*7))"; only the shell's output has 42
        s.write_stdin((await_size("40 100") + "; echo answer-$((6*7))\r").encode())
        out = s.read_until(b"answer-42")
        assert b"size=40 100\r\n" in out
        s.write_stdin(b"exit 4\r")
        r = s.wait()
    assert pod.wait_exit(cid).exit_code == 4
    assert r.stderr == b""
    if r.protocol.startswith(("v4", "v5")):
        assert r.status.success or r.exit_code == 4, r  # attach ends when the container does
    # what the shell printed is in the container's log too, as one TTY stream
    assert any("answer-42" in t for t in texts(pod.log_lines("shell")))
    return r
