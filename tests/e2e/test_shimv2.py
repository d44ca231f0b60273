"""Pods of a shim v2 handler through the CRI socket (issue 12, plugins/runtime_kata).

The handler ``shimv2`` has ``runtime_type = "vm"`` and Debian's real
``containerd-shim-runc-v2`` as its shim: it speaks the same containerd
``task.v2`` ttrpc API as ``containerd-shim-kata-v2``, so everything pycrio
does with a Kata handler is exercised here, except what happens inside the
VM (see docs/runtimes.md for what differs on a Kata node). Pods name the
handler in ``runtime_handler`` as the kubelet does for a RuntimeClass; the
default handler stays runc unless PYCRIO_TEST_RUNTIME=shimv2.

Skips with the reason when the shim binary or the ``vm`` driver is missing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cgroups
import container_checks
import grpc
import pytest
import registry_env
import runtime_mode
import stream_client as sc
from container_e2e import (
    CREATED,
    EXITED,
    RUNNING,
    Pod,
    alive,
    assert_nothing_left,
    daemon_config,
    module_daemon,
    parent_pid,
    parse_log,
    pod_config,
    rpc_error,
    texts,
    wait_until,
)
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from image_e2e import pull
from shim_e2e import ShimSnapshot
from streaming_e2e import attach_url, await_size, is_success, open_exec, run_exec

MISSING = runtime_mode.shim_missing_reason()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]

HANDLER = runtime_mode.HANDLER
MiB = 1 << 20
TRANSPORTS = ["spdy", "ws"]
STREAMING = "[api]\nstream_address = '127.0.0.1'\nstream_port = '0'\n"


def handler_config(pause: registry_env.PushedImage) -> tuple[str, str]:
    """(top-level TOML, [image] keys) of a daemon with the shim v2 handler (not the default)."""
    return runtime_mode.handler_table(), f"pause_image = '{pause.name}'\npause_command = ''\n"


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory,
    registry: Any,
    images: registry_env.TestImages,
    pause_image: registry_env.PushedImage,
) -> Iterator[DaemonProcess]:
    top, image = handler_config(pause_image)
    with module_daemon(
        tmp_path_factory.mktemp("shimv2"),
        registry.host,
        [images.busybox.name],
        extra=top + STREAMING,
        image=image,
    ) as d:
        yield d


@pytest.fixture
def busybox(images: registry_env.TestImages) -> str:
    return images.busybox.name


def shim_pod(d: DaemonProcess, name: str, logs: Path) -> Pod:
    return Pod(d, pod_config(name, logs), runtime_handler=HANDLER)


def remove_and_check(pod: Pod, snapshot: ShimSnapshot) -> None:
    """RemovePodSandbox, then nothing of the pod may be left: shim, socket, mount, FIFO."""
    pod.remove()
    assert_nothing_left(pod.d, pod.containers)
    rt = pod.d.runtime()
    has_pods = bool(rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items)
    leftovers: list[str] = []

    def clean() -> bool:
        leftovers[:] = snapshot.leftovers(pod.d, daemon_has_pods=has_pods)
        return not leftovers

    try:
        wait_until(clean, 10, "the pod's shim and its state to go")
    except AssertionError:
        raise AssertionError("left after RemovePodSandbox:\n" + "\n".join(leftovers)) from None


@pytest.fixture
def pod(crio: DaemonProcess, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pod]:
    """A host-network pod of the shim v2 handler; removed after the test, leaving nothing."""
    name = request.node.name.split("[")[0].replace("_", "-")[:40].strip("-")
    p = shim_pod(crio, name, tmp_path / "logs")
    snapshot = ShimSnapshot.of(p)
    yield p
    try:
        later = ShimSnapshot.of(p)  # the containers the test started, with their shim
    except grpc.RpcError:
        later = snapshot  # the test removed the pod itself
    later.ids |= snapshot.ids
    later.shims |= snapshot.shims
    later.sockets |= snapshot.sockets
    remove_and_check(p, later)


def the_shim(pod: Pod) -> int:
    shims = pod.shims()
    assert len(shims) == 1, f"pod {pod.id} has shims {shims}"
    return next(iter(shims))


# --- lifecycle, exit codes, logs ------------------------------------------------------------


def test_pod_and_container_lifecycle_exit_codes_and_logs(pod: Pod, busybox: str) -> None:
    rt = pod.rt
    status = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod.id)).status
    assert status.runtime_handler == HANDLER and status.state == api_pb2.SANDBOX_READY
    # the sandbox of a VM handler is its infra container: the shim is started for it
    infra = pod.pod_info()["infra_id"]
    assert infra and pod.shims(), "a VM pod has an infra container served by a shim"

    before = time.time_ns()
    script = "echo out-1; echo err-1 >&2; printf 'no newline'; sleep 0.3; exit 3"
    cid = pod.create(pod.container_config("main", busybox, command=["sh", "-c", script]))
    s = pod.status(cid).status
    assert s.state == CREATED and s.created_at >= before and s.started_at == 0
    rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=30)
    assert pod.status(cid).status.state == RUNNING
    pid = int(pod.info(cid)["pid"])
    shim = the_shim(pod)
    assert parent_pid(pid) == shim  # the shim is the container's parent, not conmon
    ok = pod.run("ok", busybox, command=["true"])

    s = pod.wait_exit(cid)
    assert (s.exit_code, s.reason, s.message) == (3, "Error", "")
    assert s.created_at <= s.started_at <= s.finished_at
    assert s.finished_at - s.started_at >= 200_000_000  # the sleep ran
    assert not alive(pid)
    s = pod.wait_exit(ok)
    assert (s.exit_code, s.reason) == (0, "Completed")

    lines = parse_log(Path(pod.status(cid).status.log_path))
    assert [(tag, t) for _, st, tag, t in lines if st == "stdout"] == [
        ("F", "out-1"),
        ("P", "no newline"),
    ]
    assert [(tag, t) for _, st, tag, t in lines if st == "stderr"] == [("F", "err-1")]

    listed = rt.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=pod.id))
    ).containers
    assert {c.id for c in listed} == {cid, ok}  # not the infra container
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    assert rpc_error(lambda: pod.status(cid)).code() == grpc.StatusCode.NOT_FOUND
    assert_nothing_left(pod.d, [cid])
    assert alive(shim)  # the pod's shim serves on


def test_oom_is_reported_as_oomkilled(pod: Pod, busybox: str) -> None:
    container_checks.oom_killed(pod, busybox)


# --- two containers, one shim; teardown -------------------------------------------------------


def test_containers_of_a_pod_share_one_shim_and_teardown_leaves_nothing(
    crio: DaemonProcess, busybox: str, tmp_path: Path
) -> None:
    a = shim_pod(crio, "shim-a", tmp_path / "a")
    b = shim_pod(crio, "shim-b", tmp_path / "b")
    try:
        a1 = a.run("one", busybox, command=["sleep", "300"])
        a2 = a.run("two", busybox, command=["sleep", "300"])
        b1 = b.run("one", busybox, command=["sleep", "300"])
        shim_a, shim_b = the_shim(a), the_shim(b)
        assert shim_a != shim_b  # one shim per pod, as Kata's one VM per pod needs
        for cid in (a1, a2, a.pod_info()["infra_id"]):
            assert parent_pid(int(a.info(cid)["pid"])) == shim_a
        assert parent_pid(int(b.info(b1)["pid"])) == shim_b
        snap_a = ShimSnapshot.of(a)
        assert snap_a.sockets, f"shim {shim_a} listens on no socket"

        a.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=a.id), timeout=60)
        for cid in (a1, a2):
            s = a.status(cid).status
            assert (s.state, s.exit_code) == (EXITED, 137), s
        status = a.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=a.id))
        assert status.status.state == api_pb2.SANDBOX_NOTREADY
        # stopping again is fine, as the kubelet expects
        a.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=a.id), timeout=60)
        remove_and_check(a, snap_a)
        # the other pod's shim and container were left alone
        assert alive(shim_b) and b.status(b1).status.state == RUNNING
        assert b.out(b1, "echo", "still") == "still\n"
    finally:
        snap_b = ShimSnapshot.of(b)
        remove_and_check(b, snap_b)


# --- ExecSync, streaming ----------------------------------------------------------------------


def test_exec_sync_and_its_timeout(pod: Pod, busybox: str) -> None:
    cid = container_checks.exec_sync_outputs(pod, busybox)
    try:  # runc's error as a non-zero exit (as conmon reports it) or as the call's error
        r = pod.exec(cid, "/no/such/binary")
        assert r.exit_code != 0, r
    except grpc.RpcError as e:
        assert "/no/such/binary" in e.details(), e

    container_checks.exec_sync_timeout_kills(pod, cid)
    # the container itself is untouched, and more execs work
    assert pod.status(cid).status.state == RUNNING
    assert pod.out(cid, "cat", "/etc/hostname").strip() == pod.config.hostname

    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=30)
    err = rpc_error(lambda: pod.exec(cid, "echo"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and cid in err.details()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_streaming_with_and_without_a_tty(pod: Pod, busybox: str, transport: str) -> None:
    cid = pod.run("target", busybox, command=["sleep", "300"])
    script = "echo to-out; echo to-err >&2; exit 3"
    r = run_exec(transport, pod.rt, cid, ["sh", "-c", script])
    assert (r.stdout, r.stderr, r.exit_code) == (b"to-out\n", b"to-err\n", 3)
    data = b"".join(b"line %05d\n" % i for i in range(5000))
    r = run_exec(transport, pod.rt, cid, ["cat"], stdin_data=data)
    assert r.stdout == data and is_success(r), r

    tty_script = (
        "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; " + await_size("40 100") + "; read line; "
        'echo "got $line"; echo to-err >&2; exit 6'
    )
    with open_exec(
        transport, pod.rt, cid, ["sh", "-c", tty_script], stdin=True, stderr=False, tty=True
    ) as s:
        s.resize(100, 40)
        s.read_until(b"size=40 100")
        s.write_stdin(b"hello\r")
        r = s.wait()
    assert b"on-a-tty\r\n" in r.stdout and b"got hello" in r.stdout
    assert b"to-err" in r.stdout and r.stderr == b""  # a TTY merges stderr into stdout
    assert r.exit_code == 6, r


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_with_a_tty(pod: Pod, busybox: str, transport: str) -> None:
    container_checks.attach_tty(pod, busybox, transport)


def test_attach_without_a_tty_streams_the_output(pod: Pod, busybox: str) -> None:
    cid = pod.run(
        "ticker", busybox, stdin=True,
        command=["sh", "-c", "echo ready; read line; echo \"got $line\"; echo err >&2; exit 2"],
    )  # fmt: skip
    wait_until(lambda: "ready" in texts(pod.log_lines("ticker")), 5, "the container to start")
    url = attach_url(pod.rt, cid, stdin=True, stdout=True, stderr=True)
    with sc.remote_command("spdy", url, stdin=True, stderr=True) as s:
        s.write_stdin(b"line-1\n")
        s.read_until(b"got line-1")
        s.wait()
    assert pod.wait_exit(cid).exit_code == 2
    assert texts(pod.log_lines("ticker")) == ["ready", "got line-1"]
    assert texts(pod.log_lines("ticker"), "stderr") == ["err"]


# --- logs ------------------------------------------------------------------------------------


def test_reopen_container_log(pod: Pod, busybox: str) -> None:
    container_checks.reopen_log(pod, busybox)


def test_long_lines_and_binary_output_are_logged_whole(pod: Pod, busybox: str) -> None:
    # 40000 bytes in one line: split into partial lines, joined back to the same text
    cid = pod.run(
        "long",
        busybox,
        command=["sh", "-c", "head -c 40000 /dev/zero | tr '\\000' x; echo; echo end"],
    )
    assert pod.wait_exit(cid).exit_code == 0
    lines = pod.log_lines("long")
    joined, current = [], ""
    for _, stream, tag, text in lines:
        assert stream == "stdout"
        current += text
        if tag == "F":
            joined.append(current)
            current = ""
    assert joined == ["x" * 40000, "end"] and current == ""


# --- stats and resources ---------------------------------------------------------------------


def test_stats_and_update_container_resources(pod: Pod, busybox: str) -> None:
    cid = pod.run(
        "res", busybox, command=["sleep", "300"],
        linux=api_pb2.LinuxContainerConfig(resources=api_pb2.LinuxContainerResources(
            cpu_shares=512, cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=64 * MiB)),
    )  # fmt: skip
    limit_file = cgroups.memory_limit_file_in_container()
    assert pod.out(cid, "cat", limit_file).strip() == str(64 * MiB)

    def stats() -> api_pb2.ContainerStats:
        return pod.rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid)).stats

    s1 = stats()
    assert s1.attributes.id == cid and s1.attributes.metadata.name == "res"
    assert s1.cpu.timestamp > 0 and s1.memory.working_set_bytes.value > 0
    pod.exec(cid, "sh", "-c", "head -c 3000000 /dev/zero > /root/blob; i=0; "
             "while [ $i -lt 30000 ]; do i=$((i+1)); done")  # fmt: skip
    s2 = stats()
    assert s2.cpu.usage_core_nano_seconds.value > s1.cpu.usage_core_nano_seconds.value
    assert s2.writable_layer.used_bytes.value >= s1.writable_layer.used_bytes.value + 3_000_000
    listed = pod.rt.ListContainerStats(
        api_pb2.ListContainerStatsRequest(
            filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=pod.id)
        )
    ).stats
    assert [s.attributes.id for s in listed] == [cid]

    pod.rt.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(
            container_id=cid,
            linux=api_pb2.LinuxContainerResources(
                cpu_shares=256, cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=32 * MiB
            ),
        ),
        timeout=30,
    )
    assert pod.out(cid, "cat", limit_file).strip() == str(32 * MiB)  # the shim applied it
    r = pod.status(cid).status.resources.linux
    assert (r.cpu_shares, r.memory_limit_in_bytes) == (256, 32 * MiB)
    bad = rpc_error(
        lambda: pod.rt.UpdateContainerResources(
            api_pb2.UpdateContainerResourcesRequest(
                container_id=cid, linux=api_pb2.LinuxContainerResources(cpu_period=-1)
            )
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert pod.out(cid, "cat", limit_file).strip() == str(32 * MiB)  # nothing half-applied


# --- the daemon killed, the shim killed ------------------------------------------------------


def test_daemon_killed_and_restarted_reconnects_to_the_shim(
    start_daemon,
    tmp_path: Path,
    registry: Any,
    images: registry_env.TestImages,
    pause_image: registry_env.PushedImage,
) -> None:
    top, image = handler_config(pause_image)
    d = start_daemon(config=daemon_config(tmp_path / "conf", registry.host, top, image))
    pull(d, images.busybox.name)
    pod = shim_pod(d, "restart", tmp_path / "logs")
    keeps = pod.run("keeps", images.busybox.name, command=["sleep", "300"])
    ends = pod.run(
        "ends", images.busybox.name,
        command=["sh", "-c", "echo started; sleep 2; echo bye; exit 4"],
    )  # fmt: skip
    never = pod.create(pod.container_config("never", images.busybox.name, command=["true"]))
    keeps_pid, ends_pid = int(pod.info(keeps)["pid"]), int(pod.info(ends)["pid"])
    shim = the_shim(pod)
    snapshot = ShimSnapshot.of(pod)

    d.proc.kill()
    d.wait(timeout=30)
    d.stop()
    down_at = time.time_ns()
    # while the daemon is down the shim keeps the containers; one ends meanwhile
    assert alive(shim) and alive(keeps_pid)
    wait_until(lambda: not alive(ends_pid), 10, "the short container to exit")
    time.sleep(0.3)
    assert alive(keeps_pid) and alive(shim)

    d.start()
    s = pod.status(keeps).status
    assert s.state == RUNNING and int(pod.info(keeps)["pid"]) == keeps_pid
    s = pod.wait_exit(ends, timeout=15)
    assert (s.state, s.exit_code, s.reason) == (EXITED, 4, "Error")
    assert down_at < s.finished_at < time.time_ns()
    wait_until(
        lambda: texts(pod.log_lines("ends")) == ["started", "bye"], 10, "the log of the exit"
    )
    assert pod.status(never).status.state == CREATED

    # the daemon drives the shim again: exec, stats, a new container, start, stop
    assert pod.out(keeps, "echo", "still here") == "still here\n"
    assert pod.rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=keeps)).stats
    pod.rt.StartContainer(api_pb2.StartContainerRequest(container_id=never), timeout=30)
    assert pod.wait_exit(never).exit_code == 0
    late = pod.run("late", images.busybox.name, command=["sleep", "300"])
    assert parent_pid(int(pod.info(late)["pid"])) == shim  # the same shim, reconnected
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=keeps, timeout=1), timeout=30)
    assert pod.status(keeps).status.state == EXITED and not alive(keeps_pid)
    remove_and_check(pod, snapshot)


def test_a_killed_shim_reports_its_containers_exited_and_nothing_hangs(
    pod: Pod, busybox: str
) -> None:
    victim = pod.run("victim", busybox, command=["sleep", "300"])
    created = pod.create(pod.container_config("created", busybox, command=["true"]))
    pid = int(pod.info(victim)["pid"])
    shim = the_shim(pod)
    os.kill(shim, signal.SIGKILL)

    t0 = time.monotonic()
    s = pod.wait_exit(victim, timeout=30)
    assert s.state == EXITED and s.exit_code != 0 and s.reason, s
    assert s.finished_at >= s.started_at > 0
    print(f"killed shim: exit {s.exit_code} reason {s.reason!r} message {s.message!r}"
          f" after {time.monotonic() - t0:.1f}s")  # fmt: skip
    wait_until(lambda: not alive(pid), 15, "the container's process to be cleaned up")
    # every call answers promptly, and clearly
    err = rpc_error(lambda: pod.exec(victim, "echo"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    t0 = time.monotonic()
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=victim, timeout=5), timeout=30)
    pod.rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=created), timeout=10)
    pod.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=30)
    assert time.monotonic() - t0 < 20
    # the fixture removes the pod and checks nothing is left (socket, state, FIFOs)
