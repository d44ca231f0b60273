"""Exec, attach and port-forward through the daemon's streaming server, as kubectl uses it.

The RPCs return URLs; the tests drive them over SPDY/3.1 (the project's client in
tests/support/stream_client.py, built on the core's sans-IO connection) and over
WebSocket (websocket-client). Everything runs in real containers (runc, conmon);
port forwarding goes to busybox httpd in a pod with its own network namespace
(a CNI bridge), dialled inside that namespace.

One daemon serves the module. Its tokens live ``TOKEN_TTL``: long enough for a
client that connects right after the RPC, short enough to test expiry.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import container_checks
import grpc
import psutil
import pytest
import registry_env
import runtime_mode
import stream_client as sc
import websocket
from container_e2e import (
    Pod,
    assert_nothing_left,
    pod_config,
    rpc_error,
    wait_until,
)
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from streaming_e2e import (
    CNI_BRIDGE,
    BridgeNetwork,
    attach_url,
    await_size,
    bridge_network,
    check_url,
    exec_url,
    is_success,
    open_exec,
    run_exec,
    streaming_daemon,
)

pytestmark = pytest.mark.e2e

Images = registry_env.TestImages
TOKEN_TTL = 2.0
TRANSPORTS = ["spdy", "ws"]

# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeNetwork | None]:
    with bridge_network(tmp_path_factory.mktemp("cni"), "pycrs", (100, 199)) as net:
        yield net


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory,
    registry: Any,
    images: Images,
    network: BridgeNetwork | None,
) -> Iterator[DaemonProcess]:
    api = f"stream_token_ttl = '{int(TOKEN_TTL)}s'\nstream_idle_timeout = '4h'\n"
    with streaming_daemon(
        tmp_path_factory.mktemp("crio"),
        registry.host,
        images.busybox.name,
        network,
        api,
        check_sigterm=True,
    ) as d:
        yield d


@pytest.fixture
def busybox(images: Images) -> str:
    return images.busybox.name


def _pod_name(request: pytest.FixtureRequest) -> str:
    return request.node.name.split("[")[0].replace("_", "-")[:40].strip("-")


@pytest.fixture
def pod(crio: DaemonProcess, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pod]:
    p = Pod(crio, pod_config(_pod_name(request), tmp_path / "logs"))
    yield p
    p.remove()
    assert_nothing_left(crio, p.containers)


@pytest.fixture(scope="module")
def target(
    crio: DaemonProcess, tmp_path_factory: pytest.TempPathFactory, images: Images
) -> Iterator[tuple[Pod, str]]:
    """A pod with a long-running container that the exec tests share."""
    p = Pod(crio, pod_config("stream-exec", tmp_path_factory.mktemp("exec-logs")))
    try:
        cid = p.run("sleeper", images.busybox.name, command=["sleep", "3600"])
        yield p, cid
    finally:
        p.remove()
    assert_nothing_left(crio, p.containers)


INDEX = b"pycrio port-forward index\n"
OTHER = b"the other port\n"
#: a large deterministic file: `seq 1 200000` (about 1.3 MB)
BIG = "".join(f"{i}\n" for i in range(1, 200001)).encode()
HTTPD = (
    "mkdir -p /www /www2 && echo 'pycrio port-forward index' > /www/index.html"
    " && busybox seq 1 200000 > /www/big && echo 'the other port' > /www2/index.html"
    " && busybox httpd -p 8080 -h /www2 && exec busybox httpd -f -p 80 -h /www"
)


@pytest.fixture(scope="module")
def web(
    crio: DaemonProcess,
    network: BridgeNetwork | None,
    tmp_path_factory: pytest.TempPathFactory,
    images: Images,
) -> Iterator[Pod]:
    """A pod on the CNI network with busybox httpd on ports 80 and 8080 (localhost only
    reachable from inside its network namespace)."""
    if network is None:
        pytest.skip(f"no CNI plugins ({CNI_BRIDGE} missing)")
    config = pod_config("stream-web", tmp_path_factory.mktemp("web-logs"))
    config.linux.security_context.namespace_options.network = api_pb2.POD
    p = Pod(crio, config)
    try:
        cid = p.run("httpd", images.busybox.name, command=["sh", "-c", HTTPD])

        def serving() -> bool:
            for url, body in (
                ("127.0.0.1:8080/index.html", OTHER),
                ("127.0.0.1/index.html", INDEX),
            ):
                r = p.exec(cid, "wget", "-q", "-O", "-", f"http://{url}")
                if r.exit_code != 0 or r.stdout != body:
                    return False
            return True

        wait_until(serving, 15, "httpd in the pod")
        yield p
    finally:
        p.remove()
    assert_nothing_left(crio, p.containers)


# --- helpers -------------------------------------------------------------------------------


def refused_status(transport: str, url: str) -> int:
    """The HTTP status with which the server refuses ``url`` over ``transport``."""
    try:
        if transport == "spdy":
            sc.SpdyRemoteCommand(url, stdout=True, stderr=False).close()
        else:
            sc.WsRemoteCommand(url).close()
    except sc.UpgradeRefused as exc:
        return exc.status
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    raise AssertionError(f"{url} was accepted")


# --- exec ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_echo(target: tuple[Pod, str], transport: str) -> None:
    pod, cid = target
    with open_exec(transport, pod.rt, cid, ["echo", "hello", "stream"]) as s:
        r = s.wait()
    assert (r.stdout, r.stderr) == (b"hello stream\n", b"")
    # the newest protocol each transport offers wins; v4+ ends with a JSON Success
    assert r.protocol == ("v4.channel.k8s.io" if transport == "spdy" else "v5.channel.k8s.io")
    assert json.loads(r.error) == {"metadata": {}, "status": "Success"}
    if transport == "ws":
        # before anything else: one empty message on the lowest writable channel (stdout)
        assert s.messages[0] == (1, b"")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_cat_stdin_until_eof(target: tuple[Pod, str], transport: str) -> None:
    pod, cid = target
    data = b"".join(b"line %06d of the input\n" % i for i in range(8000))  # ~190 KiB
    # over WebSocket, EOF is v5's close signal for stdin
    r = run_exec(transport, pod.rt, cid, ["cat"], stdin_data=data)
    assert len(r.stdout) == len(data) and r.stdout == data
    assert r.stderr == b"" and is_success(r), r


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_exit_code_and_separate_stderr(target: tuple[Pod, str], transport: str) -> None:
    pod, cid = target
    script = "echo to-out; echo to-err >&2; echo more-out; exit 3"
    r = run_exec(transport, pod.rt, cid, ["sh", "-c", script])
    assert r.stdout == b"to-out\nmore-out\n"
    assert r.stderr == b"to-err\n"
    doc = json.loads(r.error)
    assert doc["status"] == "Failure" and doc["reason"] == "NonZeroExitCode"
    assert doc["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert r.exit_code == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_only_requested_streams(target: tuple[Pod, str], transport: str) -> None:
    """stdout only: stderr output goes nowhere; stderr only: stdout goes nowhere."""
    pod, cid = target
    script = ["sh", "-c", "echo out; echo err >&2"]
    r = run_exec(transport, pod.rt, cid, script, stdout=True, stderr=False)
    assert (r.stdout, r.stderr) == (b"out\n", b"") and is_success(r)
    with open_exec(transport, pod.rt, cid, script, stdout=False, stderr=True) as s:
        r = s.wait()
    assert (r.stdout, r.stderr) == (b"", b"err\n") and is_success(r)
    if transport == "ws":
        assert s.messages[0] == (2, b"")  # the ready message goes to stderr now


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_with_resize(target: tuple[Pod, str], transport: str) -> None:
    pod, cid = target
    script = (
        "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; "
        + await_size("40 100")
        + '; read x; echo "got $x"; '
        + await_size("50 120")
        + "; echo to-err >&2; exit 0"
    )
    s = open_exec(
        transport,
        pod.rt,
        cid,
        ["sh", "-c", script],
        stdin=True,
        stdout=True,
        stderr=False,
        tty=True,
    )
    with s:
        s.resize(100, 40)
        s.read_until(b"size=40 100")
        s.resize(120, 50)
        s.write_stdin(b"hello\r")
        r = s.wait()
    out = r.stdout
    assert b"got hello" in out and b"size=40 100\r\n" in out and b"size=50 120\r\n" in out
    assert b"to-err" in out and r.stderr == b""  # a TTY merges stderr into stdout
    assert is_success(r), r
    # one terminal between the process and the client: its output processing turns
    # each \n into \r\n once (a second, cooked terminal in the path would add another \r)
    assert b"on-a-tty\r\n" in out and b"\r\r\n" not in out, out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_exit_codes(target: tuple[Pod, str], transport: str) -> None:
    """A TTY exec's own status: the daemon reaps the process itself, including one
    that ends at once (possibly before the runtime that started it has exited)."""
    pod, cid = target
    cases = [(["sh", "-c", "echo bye; exit 7"], 7), (["sh", "-c", "kill -9 $$"], 137)]
    cases += [(["true"], 0), (["false"], 1)] * 3
    for cmd, code in cases:
        r = run_exec(transport, pod.rt, cid, cmd, stderr=False, tty=True)
        if code == 0:
            assert is_success(r), (cmd, r)
        else:
            assert r.exit_code == code, (cmd, r)
    r = run_exec(transport, pod.rt, cid, ["/no/such/command"], stderr=False, tty=True)
    if runtime_mode.shimv2():
        # a shim v2 refuses to start it: the session fails naming it (containerd's answer)
        assert r.exit_code is None and not r.status.success and b"/no/such/command" in r.error, r
    else:
        # conmon runs `runc exec` on the terminal: runc's error is the process's output
        assert r.exit_code not in (None, 0) and b"/no/such/command" in r.stdout, r
    _assert_no_zombie_children(pod.d.proc.pid)


def _assert_no_zombie_children(pid: int) -> None:
    """Every exec'd process was reaped: none is left a zombie of the daemon's
    (orphans of others are reaped within a second)."""
    deadline = time.monotonic() + 5
    while zombies := _zombie_children(pid):
        assert time.monotonic() < deadline, zombies
        time.sleep(0.1)


def _zombie_children(pid: int) -> list[int]:
    zombies = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child.pid)
    return zombies


def _cmdlines(pod: Pod, cid: str) -> bytes:
    return pod.exec(cid, "sh", "-c", "cat /proc/[0-9]*/cmdline").stdout


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_killed_when_the_client_goes_away(target: tuple[Pod, str], transport: str) -> None:
    """The exec'd process and what it started in its group die with the session."""
    pod, cid = target
    script = "sleep 4343 & echo started; sleep 4242"
    with open_exec(
        transport, pod.rt, cid, ["sh", "-c", script], stdin=True, stderr=False, tty=True
    ) as s:
        s.read_until(b"started")
        assert b"sleep\x004242" in _cmdlines(pod, cid)
    deadline = time.monotonic() + 15
    while (left := _cmdlines(pod, cid)) and (b"4242" in left or b"4343" in left):
        assert time.monotonic() < deadline, left
        time.sleep(0.1)
    _assert_no_zombie_children(pod.d.proc.pid)


@pytest.mark.parametrize("protocol", ["v4.base64.channel.k8s.io", "base64.channel.k8s.io"])
def test_ws_base64_protocols(target: tuple[Pod, str], protocol: str) -> None:
    pod, cid = target
    script = r"printf 'bin:\001\377\200:'; echo err >&2; exit 3"
    with open_exec("ws", pod.rt, cid, ["sh", "-c", script], protocols=[protocol]) as s:
        r = s.wait()
    assert r.protocol == protocol
    assert s.failure is None and s.text_messages == len(s.messages) > 0  # base64 text only
    assert r.stdout == b"bin:\x01\xff\x80:" and r.stderr == b"err\n"
    if protocol.startswith("v4"):
        assert r.exit_code == 3 and r.status.reason == "NonZeroExitCode"
    else:  # v1: the error channel carries plain text, so no exit code
        assert r.error and not r.error.startswith(b"{") and not r.status.success
        ok = run_exec("ws", pod.rt, cid, ["true"], protocols=[protocol])
        assert ok.error == b"" and ok.status.success


def test_ws_v4_has_no_close_signal_but_stdin_works(target: tuple[Pod, str]) -> None:
    pod, cid = target
    with open_exec(
        "ws", pod.rt, cid, ["head", "-n", "1"], stdin=True, protocols=["v4.channel.k8s.io"]
    ) as s:
        assert s.protocol == "v4.channel.k8s.io"
        s.write_stdin(b"first line\nsecond line\n")
        r = s.wait()
    assert r.stdout == b"first line\n" and is_success(r)


@pytest.mark.parametrize("protocol", ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"])
def test_spdy_older_protocols_report_errors_as_text(target: tuple[Pod, str], protocol: str):
    pod, cid = target
    r = run_exec("spdy", pod.rt, cid, ["sh", "-c", "echo hi; exit 3"], protocols=[protocol])
    assert r.protocol == protocol and r.stdout == b"hi\n"
    assert r.error and not r.error.startswith(b"{") and not r.status.success
    ok = run_exec("spdy", pod.rt, cid, ["echo", "fine"], protocols=[protocol])
    assert ok.stdout == b"fine\n" and ok.error == b"" and ok.status.success


def test_spdy_unsupported_protocol_is_refused(target: tuple[Pod, str]) -> None:
    pod, cid = target
    url = exec_url(pod.rt, cid, ["echo", "never"])
    with pytest.raises(sc.UpgradeRefused) as info:
        sc.SpdyRemoteCommand(url, protocols=["v9.channel.k8s.io"])
    assert info.value.status == 403  # the kubelet's answer to a failed negotiation


# --- attach --------------------------------------------------------------------------------

TICKER = "i=0; while :; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); sleep 0.1; done"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_to_a_container_that_writes(pod: Pod, busybox: str, transport: str) -> None:
    cid = pod.run("ticker", busybox, command=["sh", "-c", TICKER])
    for _ in range(2):  # detaching leaves the container running; attach again
        with sc.remote_command(transport, attach_url(pod.rt, cid)) as s:
            first = s.read_until(b"\n")
            start = int(re.search(rb"tick-(\d+)\n", first).group(1))
            out = s.read_until(b"tick-%d\n" % (start + 3))
            s.read_until(b"tock-%d\n" % (start + 3), "stderr")
        ticks = re.findall(rb"tick-(\d+)", out)
        assert [int(t) for t in ticks[:4]] == list(range(start, start + 4))
        assert b"tock" not in out and b"tick" not in s.output("stderr")
        assert pod.status(cid).status.state == api_pb2.CONTAINER_RUNNING


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_stdin_until_eof_ends_a_stdin_once_container(
    pod: Pod, busybox: str, transport: str
) -> None:
    cid = pod.run("cat", busybox, command=["cat"], stdin=True, stdin_once=True)
    with sc.remote_command(transport, attach_url(pod.rt, cid, stdin=True), stdin=True) as s:
        s.write_stdin(b"through attach\n")
        assert s.read_until(b"through attach\n") == b"through attach\n"
        s.close_stdin()  # stdin_once: the container's stdin closes, cat exits
        r = s.wait()
    assert is_success(r), r
    assert pod.wait_exit(cid).exit_code == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_tty_with_stdin_and_resize(pod: Pod, busybox: str, transport: str) -> None:
    container_checks.attach_tty(pod, busybox, transport)


def test_attach_validation(pod: Pod, busybox: str) -> None:
    cid = pod.run("short", busybox, command=["true"])
    pod.wait_exit(cid)
    rt = pod.rt

    def code(**kw: Any) -> grpc.StatusCode:
        return rpc_error(lambda: rt.Attach(api_pb2.AttachRequest(**kw), timeout=10)).code()

    assert code(container_id="f" * 64, stdout=True) == grpc.StatusCode.NOT_FOUND
    assert code(container_id=cid, stdout=True) == grpc.StatusCode.FAILED_PRECONDITION
    live = pod.run("live", busybox, command=["sleep", "3600"])
    assert code(container_id=live) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(container_id=live, stdout=True, stderr=True, tty=True) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


# --- port forward --------------------------------------------------------------------------


def pf_url(rt: Any, pod_id: str, ports: list[int]) -> str:
    url = rt.PortForward(
        api_pb2.PortForwardRequest(pod_sandbox_id=pod_id, port=ports), timeout=10
    ).url
    check_url(url, "portforward")
    return url


def test_port_forward_spdy_many_streams_at_once(web: Pod) -> None:
    wants = [
        (80, "/index.html", INDEX),
        (80, "/big", BIG),
        (8080, "/index.html", OTHER),
        (80, "/big", BIG),
        (80, "/index.html", INDEX),
        (8080, "/index.html", OTHER),
    ]
    with sc.SpdyPortForward(pf_url(web.rt, web.id, [80, 8080])) as pf:
        assert pf.protocol == "portforward.k8s.io"
        conns = [pf.connect(port) for port, _, _ in wants]  # all open before any is used
        for conn, (_, path, _) in zip(conns, wants, strict=True):
            conn.send(sc.http_get_request(path))
            conn.close_write()
        for conn, (port, path, body) in zip(conns, wants, strict=True):
            status, got = sc.http_body(conn.read_all())
            assert (status, len(got)) == (200, len(body)), (port, path)
            assert got == body
            assert conn.errors() == ""
        # a port where nothing listens: the error stream says so, and others still work
        bad = pf.connect(81)
        assert "81" in bad.wait_error()
        again = pf.connect(80)
        again.send(sc.http_get_request("/index.html"))
        again.close_write()
        assert sc.http_body(again.read_all()) == (200, INDEX)


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"])
def test_port_forward_websocket(web: Pod, protocol: str) -> None:
    url = pf_url(web.rt, web.id, [80, 8080])
    with sc.WsPortForward(url, [80, 8080], protocols=[protocol]) as pf:
        assert pf.protocol == protocol
        pf.send(0, sc.http_get_request("/big"))
        pf.send(1, sc.http_get_request("/index.html"))
        for index, body in ((0, BIG), (1, OTHER)):
            pf.wait_for(
                lambda i=index: sc.http_response_complete(pf.received(i)),
                f"the response on port index {index}",
            )
            assert sc.http_body(pf.received(index)) == (200, body)
            assert pf.errors(index) == ""
        assert pf.failure is None


def test_port_forward_websocket_sessions_in_parallel(web: Pod) -> None:
    sessions = [sc.WsPortForward(pf_url(web.rt, web.id, [80]), [80]) for _ in range(4)]
    try:
        for pf in sessions:
            pf.send(0, sc.http_get_request("/big"))
        for pf in sessions:
            pf.wait_for(lambda pf=pf: sc.http_response_complete(pf.received(0)), "a response")
            assert sc.http_body(pf.received(0)) == (200, BIG)
    finally:
        for pf in sessions:
            pf.close()


@pytest.mark.parametrize("where", ["request", "query"])
def test_port_forward_websocket_ports_from_request_or_query(web: Pod, where: str) -> None:
    """The ports come from the CRI request when it has them, else from ``?port=``."""
    url = pf_url(web.rt, web.id, [8080] if where == "request" else [])
    with sc.WsPortForward(url, [8080], query_ports=where == "query") as pf:
        pf.send(0, sc.http_get_request("/index.html"))
        pf.wait_for(lambda: sc.http_response_complete(pf.received(0)), "the response")
        assert sc.http_body(pf.received(0)) == (200, OTHER)


def test_port_forward_of_an_unknown_pod(crio: DaemonProcess) -> None:
    req = api_pb2.PortForwardRequest(pod_sandbox_id="f" * 64, port=[80])
    err = rpc_error(lambda: crio.runtime().PortForward(req, timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND


# --- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_used_token_is_refused(target: tuple[Pod, str], transport: str) -> None:
    pod, cid = target
    url = exec_url(pod.rt, cid, ["echo", "once"], stderr=False)
    with sc.remote_command(transport, url, stderr=False) as s:
        assert s.wait().stdout == b"once\n"
    assert refused_status(transport, url) == 404
    assert sc.http_status(url) == 404


def test_unknown_and_mismatched_tokens_are_refused(target: tuple[Pod, str]) -> None:
    pod, cid = target
    url = exec_url(pod.rt, cid, ["echo", "x"], stderr=False)
    base = url.rsplit("/", 2)[0]
    for kind in ("exec", "attach", "portforward"):
        assert sc.http_status(f"{base}/{kind}/no-such-token") == 404
    # an exec token is no attach token (the kubelet answers 400 for the wrong kind)
    for transport in TRANSPORTS:
        token = check_url(exec_url(pod.rt, cid, ["echo", "x"], stderr=False), "exec")
        assert 400 <= refused_status(transport, f"{base}/attach/{token}") < 500


def test_an_expired_token_is_refused(target: tuple[Pod, str]) -> None:
    pod, cid = target
    stale = {t: exec_url(pod.rt, cid, ["echo", "late"], stderr=False) for t in TRANSPORTS}
    stale_pf = pf_url(pod.rt, pod.id, [80])
    time.sleep(TOKEN_TTL + 1)  # time has to pass: nothing to wait for
    for transport, url in stale.items():
        assert refused_status(transport, url) == 404
    assert sc.http_status(stale_pf) == 404
    # fresh tokens for the same requests still work
    r = run_exec("spdy", pod.rt, cid, ["echo", "late"], stderr=False)
    assert r.stdout == b"late\n" and is_success(r)


def test_twenty_concurrent_execs(target: tuple[Pod, str]) -> None:
    """All 20 run at once (each waits on stdin until all have started) and all finish."""
    pod, cid = target
    n = 20
    sessions: list[sc.RemoteCommand] = []
    try:
        errors: list[BaseException] = []

        def start(i: int) -> None:
            try:
                transport = TRANSPORTS[i % 2]
                script = f"echo start-{i}; read x; echo end-{i}-$x; echo err-{i} >&2"
                sessions.append(open_exec(transport, pod.rt, cid, ["sh", "-c", script], stdin=True))
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(sessions) == n
        for s in sessions:  # every one has started before any gets its input
            s.read_until(b"start-")
        results = {}
        for s in sessions:
            i = int(s.output().split(b"-")[1])
            s.write_stdin(b"go%d\n" % i)
        for s in sessions:
            r = s.wait(timeout=30)
            i = int(r.stdout.split(b"\n")[0].split(b"-")[1])
            results[i] = r
    finally:
        for s in sessions:
            s.close()
    assert sorted(results) == list(range(n))
    for i, r in results.items():
        assert r.stdout == b"start-%d\nend-%d-go%d\n" % (i, i, i), r
        assert r.stderr == b"err-%d\n" % i and is_success(r), r


# --- validation ----------------------------------------------------------------------------


def test_exec_validation(pod: Pod, busybox: str) -> None:
    rt = pod.rt
    live = pod.run("live", busybox, command=["sleep", "3600"])
    done = pod.run("done", busybox, command=["true"])
    pod.wait_exit(done)

    def code(**kw: Any) -> grpc.StatusCode:
        return rpc_error(lambda: rt.Exec(api_pb2.ExecRequest(**kw), timeout=10)).code()

    assert code(container_id="f" * 64, cmd=["true"], stdout=True) == grpc.StatusCode.NOT_FOUND
    assert code(container_id=done, cmd=["true"], stdout=True) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert code(container_id=live, cmd=["true"]) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(container_id=live, cmd=["true"], stdout=True, stderr=True, tty=True) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code(container_id=live, cmd=[], stdout=True) == grpc.StatusCode.INVALID_ARGUMENT
    # a valid request still works after all that
    r = run_exec("spdy", rt, live, ["echo", "ok"])
    assert r.stdout == b"ok\n" and is_success(r)
