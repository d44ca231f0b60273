"""Fuzz the daemon's streaming server with what broken or hostile clients send (issue 17).

Garbage request heads, SPDY frames that are truncated, corrupted or claim
16 MiB, WebSocket handshakes that are wrong and frames with bad opcodes,
lengths, masks and channels, replayed tokens, and clients that send half a
request and stop. Every connection must end in a clean HTTP error or a
hang-up within its deadline (never a 5xx, never a hang), a session opened
before the fuzzing must keep working, and at the end the daemon holds no
more threads or fds than before and no exec'd process is left in the container.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import cri_fuzz
import pytest
import stream_client as sc
import stream_fuzz as sfz
from container_e2e import Pod, pod_config
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from fuzz_budget import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from streaming_e2e import streaming_daemon

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

IDLE = 3  # seconds: [api] stream_idle_timeout of this daemon
DEADLINE = 15.0  # a connection still open this long after the client is done: a hang


@pytest.fixture(scope="module")
def sd(
    tmp_path_factory: pytest.TempPathFactory, registry: Any, images: Any
) -> Iterator[DaemonProcess]:
    api = f"stream_token_ttl = '60s'\nstream_idle_timeout = '{IDLE}s'\n"
    with streaming_daemon(
        tmp_path_factory.mktemp("sfuzz"), registry.host, images.busybox.name, None, api
    ) as d:
        yield d


class Stage:
    """The pod, its container, a session that must survive, and the daemon's usage before."""

    def __init__(self, d: DaemonProcess, image: str, logs: Any) -> None:
        self.d = d
        self.pod = Pod(d, pod_config("stream-fuzz", logs))
        self.cid = self.pod.run("sleeper", image, command=cri_fuzz.SLEEPER)
        self.bystander = sc.remote_command("spdy", self.url(["cat"], stdin=True), stdin=True)
        self.bystander.write_stdin(b"before\n")
        self.bystander.read_until(b"before\n", timeout=10)
        # a live session has traffic: the idle timeout must not be what ends it
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()
        self.procs = self.process_count()
        self.usage = cri_fuzz.threads_and_fds(d.proc.pid)

    def _tick(self) -> None:
        while not self._stop.wait(IDLE / 3):
            self.bystander.write_stdin(b".")

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)
        self.bystander.close()
        self.pod.remove()

    def url(self, cmd: list[str], **streams: bool) -> str:
        streams = {"stdout": True, "stderr": True, **streams}
        req = api_pb2.ExecRequest(container_id=self.cid, cmd=cmd, **streams)
        return self.pod.rt.Exec(req, timeout=10).url

    def process_count(self) -> int:
        """Live processes in the container's cgroup, read from the host.

        The sleeper loop's short-lived ``sleep 1`` does not count, nor do
        zombies: an orphan of a killed exec is reparented to the pod's PID 1,
        whose reaping is not the streaming server's business.
        """
        return len(cri_fuzz.live_processes_of(self.cid))


@pytest.fixture(scope="module")
def stage(
    sd: DaemonProcess, images: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stage]:
    s = Stage(sd, images.busybox.name, tmp_path_factory.mktemp("sfuzz-logs"))
    yield s
    s.close()


def _check(answer: sfz.Answer, allowed: set[int], what: bytes) -> None:
    assert answer.closed, (
        f"no hang-up within {DEADLINE}s after {what[:300]!r}: {answer.data[:300]!r}"
    )
    assert answer.status in allowed, f"answered {answer.data[:300]!r} to {what[:300]!r}"


CLIENT_ERRORS = set(range(400, 500))


@fuzz_settings(30)
@given(data=st.data())
def test_garbage_request_heads(stage: Stage, data: st.DataObject) -> None:
    host, port, path = sfz.target_of(stage.url(["true"]))
    head = data.draw(sfz.request_heads(path), label="head")
    answer = sfz.exchange(host, port, head, DEADLINE)
    # a hang-up without an answer is fine for a head the server never got whole
    _check(answer, CLIENT_ERRORS | {0, 101}, head)


UPGRADES = {"spdy": (sfz.spdy_upgrade, sfz.spdy_garbage), "ws": (sfz.ws_upgrade, sfz.ws_garbage)}


@pytest.mark.parametrize("transport", list(UPGRADES))
@fuzz_settings(30)
@given(data=st.data())
def test_garbage_after_the_upgrade(stage: Stage, transport: str, data: st.DataObject) -> None:
    upgrade, garbage = UPGRADES[transport]
    host, port, path = sfz.target_of(stage.url(["cat"], stdin=True))
    frames = data.draw(garbage(), label="frames")
    answer = sfz.exchange(host, port, upgrade(path, f"{host}:{port}") + frames, DEADLINE)
    _check(answer, {101}, frames)


@fuzz_settings(10)
@given(headers=sfz.ws_bad_handshakes())
def test_bad_websocket_handshakes_are_refused(stage: Stage, headers: list[tuple[str, str]]) -> None:
    host, port, path = sfz.target_of(stage.url(["true"]))
    head = sfz.ws_upgrade(path, f"{host}:{port}", headers)
    answer = sfz.exchange(host, port, head, DEADLINE)
    _check(answer, CLIENT_ERRORS, head)


def test_wrong_and_replayed_tokens_are_refused(stage: Stage) -> None:
    url = stage.url(["true"])
    host, port, path = sfz.target_of(url)
    first = sfz.exchange(host, port, sfz.spdy_upgrade(path, f"{host}:{port}"), DEADLINE)
    assert first.status == 101
    for p in (path, path[:-1], path + "x", path.replace("/exec/", "/attach/"), "/exec/"):
        answer = sfz.exchange(host, port, sfz.spdy_upgrade(p, f"{host}:{port}"), DEADLINE)
        _check(answer, CLIENT_ERRORS, p.encode())


def test_slow_clients_do_not_hold_up_others(stage: Stage) -> None:
    """Clients that send half a head and stop, or never read: a new session still works."""
    host, port, path = sfz.target_of(stage.url(["true"]))
    slow = []
    try:
        for i in range(40):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET /exec/" if i % 2 else sfz.spdy_upgrade(path, f"{host}:{port}")[:30])
            slow.append(s)
        # a client that asks for lots of output and never reads it
        never_reads = socket.create_connection((host, port), timeout=5)
        big = stage.url(["sh", "-c", "yes | head -c 20000000"])
        _, _, big_path = sfz.target_of(big)
        never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        never_reads.sendall(sfz.ws_upgrade(big_path, f"{host}:{port}"))
        slow.append(never_reads)
        started = time.monotonic()
        with sc.remote_command("ws", stage.url(["echo", "still", "here"])) as other:
            r = other.wait(timeout=20)
        assert r.stdout == b"still here\n"
        assert time.monotonic() - started < 10
        stage.bystander.write_stdin(b"during\n")
        stage.bystander.read_until(b"during\n", timeout=10)
    finally:
        for s in slow:
            s.close()


def test_nothing_is_left_and_the_old_session_still_works(stage: Stage) -> None:
    """Runs last: threads, fds and exec'd processes are back to what they were."""
    stage.bystander.write_stdin(b"after\n")
    stage.bystander.read_until(b"after\n", timeout=10)
    threads0, fds0 = stage.usage
    deadline = time.monotonic() + DEADLINE + IDLE
    while True:
        threads, fds = cri_fuzz.threads_and_fds(stage.d.proc.pid)
        procs = stage.process_count()
        if (threads <= threads0 + 4 and fds <= fds0 + 4 and procs <= stage.procs) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)
    assert procs <= stage.procs, cri_fuzz.live_processes_of(stage.cid)
    assert threads <= threads0 + 4, (threads0, threads)
    assert fds <= fds0 + 4, f"{fds0} -> {fds}: " + " ".join(cri_fuzz.fd_targets(stage.d.proc.pid))
