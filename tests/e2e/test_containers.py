"""Containers through the daemon's socket: real runc, conmon and registry images.

One daemon serves the whole module (a pod per test, removed through the CRI
afterwards); tests that restart the daemon or change its configuration are in
test_containers_daemon.py. Pods use the node's network, so no CNI is
involved. The ``crio`` and ``pod`` fixtures are in conftest.py.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path

import cgroups
import container_checks
import grpc
import pytest
import registry_env
from container_e2e import (
    CREATED,
    EXITED,
    RUNNING,
    Pod,
    assert_nothing_left,
    host_mounts,
    is_shim,
    parse_log,
    pod_config,
    processes_mentioning,
    rpc_error,
    texts,
    wait_until,
)
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from image_e2e import pull

pytestmark = pytest.mark.e2e

Images = registry_env.TestImages
MiB = 1 << 20


@pytest.fixture
def busybox(images: Images) -> str:
    return images.busybox.name


# --- lifecycle ----------------------------------------------------------------------------


def test_lifecycle_logs_status_and_list(pod: Pod, images: Images, busybox: str) -> None:
    rt = pod.rt
    before = time.time_ns()
    config = pod.container_config(
        "main",
        busybox,
        command=["sh", "-c"],
        args=["echo out-1; echo err-1 >&2; printf 'no newline'; sleep 0.3"],
        labels={"app": "main", "tier": "a"},
    )
    cid = pod.create(config)
    assert len(cid) == 64
    s = pod.status(cid[:12]).status
    assert s.state == CREATED and s.created_at >= before and s.started_at == 0
    rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
    assert pod.status(cid).status.state == RUNNING

    # the image's Entrypoint and Cmd: args replace Cmd, no command keeps Entrypoint (cat)
    cat = pod.run("cat", images.multilayer.name, args=["/etc/pycrio-test/layer", "/etc/hostname"],
                  labels={"app": "cat"})  # fmt: skip
    default = pod.run("default", images.multilayer.name, labels={"app": "default"})

    s = pod.wait_exit(cid)
    assert (s.exit_code, s.reason, s.message) == (0, "Completed", "")
    assert s.created_at <= s.started_at <= s.finished_at
    assert s.finished_at - s.started_at >= 200_000_000  # the sleep ran
    assert s.image.image == busybox
    assert s.image_id == images.busybox.built.config.digest
    assert s.image_ref == images.busybox.by_digest
    assert s.log_path == str(pod.log_dir / "main_0.log")
    assert s.metadata.name == "main" and s.labels["app"] == "main"
    assert (s.user.linux.uid, s.user.linux.gid) == (0, 0)
    assert list(s.mounts) == []

    lines = parse_log(Path(s.log_path))
    # two pipes: the order between the streams is not kept, the order within each is
    assert [(tag, t) for _, st, tag, t in lines if st == "stdout"] == [
        ("F", "out-1"),
        ("P", "no newline"),  # the last line without a newline is a partial one
    ]
    assert [(tag, t) for _, st, tag, t in lines if st == "stderr"] == [("F", "err-1")]
    assert texts(pod.log_lines("cat")) == ["layer 3", pod.config.hostname]  # the pod's file
    assert pod.wait_exit(cat).exit_code == 0
    assert texts(pod.log_lines("default")) == ["layer 3"]

    # ListContainers and its filters
    long_runner = pod.run("sleeper", busybox, command=["sleep", "300"], labels={"app": "sleeper"})

    def ids(**f) -> set[str]:
        req = api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(**f))
        return {c.id for c in rt.ListContainers(req).containers}

    everything = {cid, cat, default, long_runner}
    assert ids(pod_sandbox_id=pod.id) == everything
    assert ids(pod_sandbox_id=pod.id[:10]) == everything
    assert ids(id=cid[:8]) == {cid}
    assert ids(pod_sandbox_id=pod.id, state=api_pb2.ContainerStateValue(state=RUNNING)) == {
        long_runner
    }
    assert ids(pod_sandbox_id=pod.id, state=api_pb2.ContainerStateValue(state=EXITED)) == {
        cid, cat, default,
    }  # fmt: skip
    assert ids(label_selector={"app": "cat"}) == {cat}
    assert ids(label_selector={"app": "main", "tier": "b"}) == set()
    assert ids(id="f" * 64) == set()
    (c,) = rt.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(id=cid))
    ).containers
    assert c.pod_sandbox_id == pod.id and c.image_ref == images.busybox.by_digest
    assert c.metadata.name == "main" and c.state == EXITED

    # RemoveContainer: idempotent, and the id is gone
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid))
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid))
    err = rpc_error(lambda: pod.status(cid))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert_nothing_left(pod.d, [cid])

    # StopPodSandbox stops what runs; RemovePodSandbox removes every container
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=30)
    s = pod.status(long_runner).status
    assert s.state == EXITED and s.exit_code == 137 and s.reason == "Error"
    pod.remove()
    listed = rt.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=pod.id))
    )
    assert listed.containers == []
    assert_nothing_left(pod.d, pod.containers)
    # the fixture's RemovePodSandbox is then a no-op


def test_exit_codes_and_oom_kill(pod: Pod, busybox: str) -> None:
    ok = pod.run("ok", busybox, command=["sh", "-c", "exit 0"])
    bad = pod.run("bad", busybox, command=["sh", "-c", "exit 3"])
    assert (pod.wait_exit(ok).exit_code, pod.wait_exit(ok).reason) == (0, "Completed")
    s = pod.wait_exit(bad)
    assert (s.exit_code, s.reason) == (3, "Error")
    container_checks.oom_killed(pod, busybox)


def test_stop_signal_of_the_image_then_kill_at_timeout(
    pod: Pod, images: Images, busybox: str
) -> None:
    # multilayer's image config says STOPSIGNAL SIGUSR1
    trap = pod.run(
        "trap",
        images.multilayer.name,
        command=["sh", "-c", "trap 'echo got-usr1; exit 7' USR1; echo ready; "
                 "while :; do sleep 0.1; done"],
        linux=api_pb2.LinuxContainerConfig(
            security_context=api_pb2.LinuxContainerSecurityContext(
                run_as_user=api_pb2.Int64Value(value=0)
            )
        ),
    )  # fmt: skip
    ignore_term = "trap '' TERM; echo ready; while :; do sleep 0.1; done"
    stubborn = pod.run("stubborn", busybox, command=["sh", "-c", ignore_term])
    wait_until(lambda: "ready" in texts(pod.log_lines("trap")), 5, "trap to be set")
    wait_until(lambda: "ready" in texts(pod.log_lines("stubborn")), 5, "stubborn to be set")
    assert pod.exec(trap, "test", "-d", "/data").exit_code == 0  # the image's VOLUME /data

    t0 = time.monotonic()
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=trap, timeout=10), timeout=30)
    assert time.monotonic() - t0 < 5
    s = pod.status(trap).status
    assert (s.state, s.exit_code, s.reason) == (EXITED, 7, "Error")
    assert "got-usr1" in texts(pod.log_lines("trap"))

    t0 = time.monotonic()
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=stubborn, timeout=2), timeout=30)
    elapsed = time.monotonic() - t0
    assert 1.8 <= elapsed < 6, elapsed
    s = pod.status(stubborn).status
    assert (s.state, s.exit_code) == (EXITED, 128 + signal.SIGKILL)
    # stopping again, or a container that never started: fine
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=stubborn, timeout=2))


# --- ExecSync ---------------------------------------------------------------------------


def test_exec_sync(pod: Pod, busybox: str) -> None:
    cid = container_checks.exec_sync_outputs(pod, busybox)

    # the deadline kills the command, and quickly
    container_checks.exec_sync_timeout_kills(pod, cid)

    # huge output is capped so that the reply fits the kubelet's 16 MiB messages
    import grpc as _grpc
    from cri_api.v1 import api_pb2_grpc

    kubelet_like = [("grpc.max_receive_message_length", 16 * MiB)]
    with _grpc.insecure_channel(f"unix:{pod.d.socket}", options=kubelet_like) as ch:
        big = api_pb2_grpc.RuntimeServiceStub(ch).ExecSync(
            api_pb2.ExecSyncRequest(
                container_id=cid, cmd=["head", "-c", str(40 * MiB), "/dev/zero"], timeout=30
            ),
            timeout=60,
        )
    assert big.exit_code == 0
    assert len(big.stdout) == 8 * MiB - 32 * 1024

    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0))
    err = rpc_error(lambda: pod.exec(cid, "echo"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert cid in err.details()


# --- the OCI spec: user, env, security --------------------------------------------------


def _sc(**kw) -> api_pb2.LinuxContainerConfig:
    return api_pb2.LinuxContainerConfig(
        security_context=api_pb2.LinuxContainerSecurityContext(**kw)
    )


def test_users_from_the_cri_and_the_image(pod: Pod, busybox: str) -> None:
    by_id = pod.run(
        "byid", busybox, command=["sleep", "300"],
        linux=_sc(run_as_user=api_pb2.Int64Value(value=1000),
                  run_as_group=api_pb2.Int64Value(value=2000), supplemental_groups=[3000]),
    )  # fmt: skip
    # the Merge policy (the default) adds the groups the image's /etc/group lists uid 1000 in
    assert pod.out(by_id, "id").split() == [
        "uid=1000(testuser)", "gid=2000", "groups=1000(testgroup),2000,3000",
    ]  # fmt: skip
    u = pod.status(by_id).status.user.linux
    assert (u.uid, u.gid, sorted(u.supplemental_groups)) == (1000, 2000, [1000, 2000, 3000])

    by_name = pod.run(
        "byname", busybox, command=["sleep", "300"], linux=_sc(run_as_username="testuser")
    )
    assert pod.out(by_name, "id").split() == [
        "uid=1000(testuser)", "gid=1000(testgroup)", "groups=1000(testgroup)",
    ]  # fmt: skip
    assert pod.out(by_name, "sh", "-c", "echo $HOME") == "/home/testuser\n"
    u = pod.status(by_name).status.user.linux
    assert (u.uid, u.gid) == (1000, 1000)

    ghost = pod.container_config(
        "ghost", busybox, command=["true"], linux=_sc(run_as_username="ghost")
    )
    err = rpc_error(lambda: pod.create(ghost))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'ghost'" in err.details() and "/etc/passwd" in err.details()


def _cap_eff(pod: Pod, cid: str) -> int:
    for line in pod.out(cid, "cat", "/proc/self/status").splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


CAP_CHOWN, CAP_KILL, CAP_NET_ADMIN, CAP_SYS_ADMIN = 0, 5, 12, 21


def test_env_workdir_readonly_rootfs_and_capabilities(
    crio: DaemonProcess, pod: Pod, busybox: str, tmp_path: Path
) -> None:
    cid = pod.run(
        "spec", busybox, command=["sleep", "300"], working_dir="/tmp",
        envs=[api_pb2.KeyValue(key="GREETING", value="hi there"),
              api_pb2.KeyValue(key="PATH", value="/bin")],
        linux=_sc(readonly_rootfs=True, capabilities=api_pb2.Capability(
            add_capabilities=["NET_ADMIN"], drop_capabilities=["CHOWN"])),
    )  # fmt: skip
    env = pod.out(cid, "env").splitlines()
    assert "GREETING=hi there" in env and "PATH=/bin" in env
    # a host-network pod's containers have the node's UTS namespace: no HOSTNAME of the pod
    assert not [e for e in env if e.startswith("HOSTNAME=")]
    assert pod.out(cid, "sh", "-c", "pwd") == "/tmp\n"
    r = pod.exec(cid, "touch", "/tmp/x")
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr
    assert pod.exec(cid, "touch", "/dev/shm/x").exit_code == 0  # the pod's shm stays writable
    caps = _cap_eff(pod, cid)
    assert caps & (1 << CAP_NET_ADMIN) and caps & (1 << CAP_KILL)
    assert not caps & (1 << CAP_CHOWN) and not caps & (1 << CAP_SYS_ADMIN)

    err = rpc_error(
        lambda: pod.create(pod.container_config(
            "badcap", busybox, command=["true"],
            linux=_sc(capabilities=api_pb2.Capability(add_capabilities=["CAP_FLY"])),
        ))
    )  # fmt: skip
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CAP_FLY" in err.details()

    # privileged: every capability and a writable /sys, only in a privileged pod
    priv_config = pod.container_config(
        "priv", busybox, command=["true"], linux=_sc(privileged=True)
    )
    err = rpc_error(lambda: pod.create(priv_config))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    ppod = Pod(crio, pod_config("privpod", tmp_path / "plogs", privileged=True))
    try:
        priv = ppod.run("priv", busybox, command=["sleep", "300"], linux=_sc(privileged=True))
        # every capability the daemon (and so runc) has: its bounding set
        with open(f"/proc/{crio.proc.pid}/status") as f:
            bounding = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapBnd:"))
        assert _cap_eff(ppod, priv) == bounding
        assert " /sys sysfs rw" in ppod.out(priv, "cat", "/proc/mounts")
    finally:
        ppod.remove()
    assert_nothing_left(crio, ppod.containers)


def test_mounts(pod: Pod, busybox: str, tmp_path: Path) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "file").write_text("read me\n")
    cid = pod.run(
        "mounts", busybox, command=["sleep", "300"],
        mounts=[api_pb2.Mount(container_path="/data", host_path=str(rw)),
                api_pb2.Mount(container_path="/config", host_path=str(ro), readonly=True)],
    )  # fmt: skip
    assert pod.exec(cid, "sh", "-c", "echo written > /data/out").exit_code == 0
    assert (rw / "out").read_text() == "written\n"
    assert pod.out(cid, "cat", "/config/file") == "read me\n"
    r = pod.exec(cid, "touch", "/config/new")
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr
    assert not (ro / "new").exists()
    s = pod.status(cid).status
    assert [(m.container_path, m.host_path, m.readonly) for m in s.mounts] == [
        ("/data", str(rw), False), ("/config", str(ro), True),
    ]  # fmt: skip

    # the pod's files and its /dev/shm
    mounts = {
        line.split()[1]: line.split() for line in pod.out(cid, "cat", "/proc/mounts").splitlines()
    }
    for path in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev/shm"):
        assert path in mounts, path
    assert pod.out(cid, "cat", "/etc/hostname").strip() == pod.config.hostname
    # the pod is on the node's network, so its containers have the node's UTS namespace
    assert pod.out(cid, "hostname").strip() == socket.gethostname()

    missing = tmp_path / "not-there"
    err = rpc_error(
        lambda: pod.create(pod.container_config(
            "missing", busybox, command=["true"],
            mounts=[api_pb2.Mount(container_path="/x", host_path=str(missing))],
        ))
    )  # fmt: skip
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(missing) in err.details()


# --- resources and stats ----------------------------------------------------------------


def _resources(pod: Pod, cid: str) -> dict[str, int]:
    return cgroups.resources(pod.info(cid)["cgroups_path"])


def test_resources_and_update(pod: Pod, busybox: str) -> None:
    cid = pod.run(
        "res", busybox, command=["sleep", "300"],
        linux=api_pb2.LinuxContainerConfig(resources=api_pb2.LinuxContainerResources(
            cpu_shares=512, cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=64 * MiB)),
    )  # fmt: skip
    assert _resources(pod, cid) == {
        "cpu_share": cgroups.cpu_share(512),
        "cpu_quota": 50000,
        "cpu_period": 100000,
        "memory_limit": 64 * MiB,
    }
    # the container sees its own cgroup's limit too
    limit_file = cgroups.memory_limit_file_in_container()
    assert pod.out(cid, "cat", limit_file).strip() == str(64 * MiB)
    r = pod.status(cid).status.resources.linux
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes) == (512, 50000, 64 * MiB)

    pod.rt.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(
            container_id=cid,
            linux=api_pb2.LinuxContainerResources(
                cpu_shares=256, cpu_quota=50000, cpu_period=100000, memory_limit_in_bytes=32 * MiB
            ),
        )
    )
    after = _resources(pod, cid)
    assert (after["memory_limit"], after["cpu_share"]) == (32 * MiB, cgroups.cpu_share(256))
    r = pod.status(cid).status.resources.linux
    assert (r.cpu_shares, r.memory_limit_in_bytes) == (256, 32 * MiB)


def test_stats_move_when_the_container_works(pod: Pod, busybox: str) -> None:
    cid = pod.run("stats", busybox, command=["sleep", "300"])
    other = pod.run("other", busybox, command=["sleep", "300"], labels={"app": "other"})

    def stats() -> api_pb2.ContainerStats:
        return pod.rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid)).stats

    s1 = stats()
    assert s1.attributes.id == cid and s1.attributes.metadata.name == "stats"
    assert s1.cpu.timestamp > 0 and s1.memory.timestamp > 0
    assert s1.memory.working_set_bytes.value > 0
    assert s1.writable_layer.fs_id.mountpoint
    pod.exec(cid, "sh", "-c", "head -c 3000000 /dev/zero > /root/blob; i=0; "
             "while [ $i -lt 30000 ]; do i=$((i+1)); done")  # fmt: skip
    s2 = stats()
    assert s2.writable_layer.used_bytes.value >= s1.writable_layer.used_bytes.value + 3_000_000
    assert s2.writable_layer.inodes_used.value > s1.writable_layer.inodes_used.value
    assert s2.cpu.usage_core_nano_seconds.value > s1.cpu.usage_core_nano_seconds.value
    assert s2.cpu.timestamp > s1.cpu.timestamp

    listed = pod.rt.ListContainerStats(
        api_pb2.ListContainerStatsRequest(
            filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=pod.id)
        )
    ).stats
    assert {s.attributes.id for s in listed} == {cid, other}
    listed = pod.rt.ListContainerStats(
        api_pb2.ListContainerStatsRequest(
            filter=api_pb2.ContainerStatsFilter(label_selector={"app": "other"})
        )
    ).stats
    assert [s.attributes.id for s in listed] == [other]


def test_reopen_container_log(pod: Pod, busybox: str) -> None:
    container_checks.reopen_log(pod, busybox)


# --- names, images, failures ----------------------------------------------------------------


def test_name_reservation_and_image_in_use(
    crio: DaemonProcess, pod: Pod, images: Images, busybox: str, registry, tmp_path: Path
) -> None:
    first = pod.create(pod.container_config("dup", busybox, command=["true"]))
    err = rpc_error(lambda: pod.create(pod.container_config("dup", busybox, command=["true"])))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first in err.details()
    second = pod.create(pod.container_config("dup", busybox, command=["true"], attempt=1))
    assert second != first

    # an image a container uses cannot be removed: pull a private copy under another name
    workdir = tmp_path / "img"
    layout = registry_env.OCILayout(workdir / "layout")
    base = registry_env.compress_layer(registry_env.busybox_rootfs_tar())
    built = layout.build_image([base], tag="inuse", config={"Labels": {"in-use": "yes"}})
    inuse = registry_env.push(
        registry_env.Skopeo(workdir / "skopeo"), layout, "inuse", registry,
        "pycrio-test/inuse", "v1", built=built,
    )  # fmt: skip
    pull(crio, inuse.name)
    user = pod.create(pod.container_config("user", inuse.name, command=["true"]))
    err = rpc_error(
        lambda: crio.images().RemoveImage(
            api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=inuse.name))
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "user" in err.details() and user[:12] in err.details()
    pod.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=user))
    crio.images().RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=inuse.name)))


def test_unknown_container_ids(pod: Pod) -> None:
    rt, unknown = pod.rt, "0123456789abcdef" * 4
    for call in (
        lambda: rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=unknown)),
        lambda: rt.StartContainer(api_pb2.StartContainerRequest(container_id=unknown)),
        lambda: rt.ExecSync(api_pb2.ExecSyncRequest(container_id=unknown, cmd=["true"])),
        lambda: rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=unknown)),
    ):
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND, err
        assert unknown in err.details()
    rt.StopContainer(api_pb2.StopContainerRequest(container_id=unknown, timeout=1))
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=unknown))


def test_a_missing_command_is_a_clear_error_and_leaves_nothing(
    crio: DaemonProcess, pod: Pod, busybox: str
) -> None:
    def daemon_mounts() -> list[str]:  # this daemon's only: other tests may run meanwhile
        return [line for line in host_mounts().splitlines() if str(crio.tmp) in line]

    mounts_before = daemon_mounts()
    err = rpc_error(
        lambda: pod.create(pod.container_config("nocmd", busybox, command=["/no/such/binary"]))
    )
    # runc resolves the command at create: the error names it
    assert err.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert "/no/such/binary" in err.details()
    assert "no such file or directory" in err.details().lower()
    assert "warning" not in err.details() and "freezer" not in err.details()  # only the error
    listed = pod.rt.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=pod.id))
    )
    assert listed.containers == []
    assert daemon_mounts() == mounts_before
    # nothing but the pod's own infra container, when it has one (always with a VM handler)
    infra = pod.pod_info().get("infra_id", "")

    def others(paths: Iterable[Path]) -> list[Path]:
        return [p for p in paths if not infra or infra not in str(p)]

    root = crio.tmp / "root" / "storage"
    assert others((root / "overlay-containers").iterdir()) == []
    assert others((crio.tmp / "root" / "containers").glob("*.json")) == []
    # nothing of the container; the pod's monitor cgroup (conmon_cgroup = "pod") may
    # stay for the pod's next containers, but its conmon is gone (a pod's shim v2 stays)
    left = others(cgroups.matching(f"*{pod.id}*/pycrio-*"))
    assert [p.name for p in left if p.name != "pycrio-conmon"] == []

    def monitors_gone(leaf: Path) -> bool:
        pids = (leaf / "cgroup.procs").read_text().split()
        return not [pid for pid in pids if not is_shim(int(pid))]

    for leaf in left:
        wait_until(lambda leaf=leaf: monitors_gone(leaf), 5, "conmon")
    state = crio.tmp / "runroot" / "containers"
    assert not state.exists() or others(state.iterdir()) == []
    monitors = processes_mentioning("conmon", "runc", all_of=str(crio.tmp))
    assert [(p, cmd) for p, cmd in monitors if not is_shim(p)] == []  # the pod's shim serves on
    # the name is free for the kubelet's retry
    ok = pod.run("nocmd", busybox, command=["true"])
    assert pod.wait_exit(ok).exit_code == 0
