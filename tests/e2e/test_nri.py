"""NRI end to end: plugins written here speak NRI's wire protocol to the daemon's socket.

Each test drives the daemon over its CRI socket as the kubelet would and
checks what the plugins saw (events, their order and metadata) and what
their answers did to real containers run by runc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import registry_env
from container_e2e import (
    EXITED,
    RUNNING,
    Pod,
    assert_nothing_left,
    daemon_config,
    pod_config,
    rpc_error,
    wait_until,
)
from cri_api.v1 import api_pb2
from image_e2e import pull
from nri_stub import NRIStub, Refuse, mask
from pycrio_nri import api

pytestmark = pytest.mark.e2e
SUPPORT = Path(__file__).parent.parent / "support"


def nri_config(request_timeout: str = "2s", **extra: str) -> str:
    """[nri] on top of the harness's drop-in, which points the socket and dirs into tmp."""
    lines = [
        "[nri]",
        "enable_nri = true",
        f'nri_plugin_request_timeout = "{request_timeout}"',
        *[f"{k} = {v}" for k, v in extra.items()],
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def nri_daemon(start_daemon, tmp_path: Path, registry, images: registry_env.TestImages):
    def start(**kw: str):
        conf = daemon_config(tmp_path / "conf", registry.host, nri_config(**kw))
        d = start_daemon(config=conf)
        pull(d, images.busybox.name)
        return d

    return start


def sock(tmp_path: Path) -> str:
    return str(tmp_path / "nri.sock")


def nri_condition(d) -> api_pb2.RuntimeCondition:
    status = d.runtime().Status(api_pb2.StatusRequest(), timeout=10).status
    (cond,) = [c for c in status.conditions if c.type == "NRIPlugins"]
    return cond


def wait_connected(d, name: str, present: bool = True) -> None:
    wait_until(
        lambda: (name in nri_condition(d).message) == present,
        10,
        f"NRI plugin {name} to be {'connected' if present else 'gone'}",
    )


def test_lifecycle_events_in_order_with_metadata_and_adjustments(
    nri_daemon, tmp_path: Path, images: registry_env.TestImages
) -> None:
    d = nri_daemon()

    def adjust(req):
        if req.container.name != "adjusted":
            return None
        return api.CreateContainerResponse(
            adjust=api.ContainerAdjustment(
                annotations={"nri.test/seen": "yes"},
                env=[api.KeyValue(key="FROM_NRI", value="hello")],
                args=["sleep", "300"],
                mounts=[
                    api.Mount(
                        destination="/nri",
                        type="bind",
                        source=str(tmp_path),
                        options=["rbind", "ro"],
                    )
                ],
                rlimits=[api.POSIXRlimit(type="RLIMIT_NOFILE", hard=321, soft=321)],
                linux=api.LinuxContainerAdjustment(
                    oom_score_adj=api.OptionalInt(value=456),
                    resources=api.LinuxResources(
                        memory=api.LinuxMemory(limit=api.OptionalInt64(value=64 << 20))
                    ),
                ),
            )
        )

    stub = NRIStub("recorder", "10", handlers={"CreateContainer": adjust}).connect(sock(tmp_path))
    only_create = NRIStub("creates", "20", events=mask("CREATE_CONTAINER")).connect(sock(tmp_path))
    wait_connected(d, "10-recorder")
    wait_connected(d, "20-creates")
    assert stub.configure_request.runtime_name == "pycrio"
    assert stub.configure_request.request_timeout == 2000

    pod = Pod(d, pod_config("nri-pod", tmp_path / "logs"))
    cid = pod.run("adjusted", images.busybox.name, command=["sleep", "1"])
    exits = pod.run("exits", images.busybox.name, command=["sh", "-c", "exit 3"])

    # the adjustments are in the real container
    assert pod.out(cid, "sh", "-c", "echo $FROM_NRI") == "hello\n"
    with open(f"/proc/{pod.info(cid)['pid']}/cmdline") as f:
        assert f.read().split("\0") == ["sleep", "300", ""]
    assert pod.out(cid, "sh", "-c", "ulimit -n") == "321\n"
    assert pod.out(cid, "cat", "/proc/self/oom_score_adj") == "456\n"
    assert pod.exec(cid, "test", "-d", "/nri").exit_code == 0
    status = pod.status(cid)
    spec = json.loads((Path(pod.info(cid)["bundle"]) / "config.json").read_text())
    assert spec["annotations"]["nri.test/seen"] == "yes"
    assert status.status.resources.linux.memory_limit_in_bytes == 64 << 20

    # a container that exits by itself gets StopContainer with its exit code
    stub.wait_for(lambda got: any(m == "StopContainer" for m, _ in got))
    (stopped,) = stub.of("StopContainer")
    assert (stopped.container.id, stopped.container.exit_code) == (exits, 3)
    assert stopped.container.state == api.ContainerState.Value("CONTAINER_STOPPED")

    pod.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
    pod.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
    pod.remove()
    stub.wait_for(lambda got: got[-1][0] == "RemovePodSandbox")

    def seq(name: str) -> list[str]:
        out = []
        for m, msg in stub.received:
            if m in ("Configure", "Synchronize"):
                continue
            if "container" in msg.DESCRIPTOR.fields_by_name and msg.container.name != name:
                continue
            out.append(m)
        return out

    assert seq("adjusted") == [
        "RunPodSandbox",
        "CreateContainer",
        "ValidateContainerAdjustment",  # subscribing to everything makes it a validator too
        "PostCreateContainer",
        "StartContainer",
        "PostStartContainer",
        "StopContainer",
        "StopPodSandbox",
        "RemoveContainer",
        "RemovePodSandbox",
    ]
    assert stub.methods().count("StopPodSandbox") == 1  # idempotent Stop: one event
    (run,) = stub.of("RunPodSandbox")
    assert (run.pod.name, run.pod.namespace, run.pod.uid) == ("nri-pod", "ctr", "uid-nri-pod")
    assert run.pod.id == pod.id and run.pod.labels["pod"] == "nri-pod"
    (started,) = [m for m in stub.of("PostStartContainer") if m.container.name == "adjusted"]
    assert started.container.pid > 0 and started.container.id == cid
    assert started.container.state == api.ContainerState.Value("CONTAINER_RUNNING")
    assert started.container.pod_sandbox_id == pod.id
    # the subscription mask: only CreateContainer
    assert set(only_create.methods()) == {"Configure", "Synchronize", "CreateContainer"}
    assert len(only_create.of("CreateContainer")) == 2
    stub.close()
    only_create.close()


def test_refusals_undo_everything_and_hooks_see_the_promised_state(
    nri_daemon, tmp_path: Path, images: registry_env.TestImages
) -> None:
    d = nri_daemon()
    rt = d.runtime()
    seen: dict[str, object] = {}
    refuse = {"pod": True, "ctr": True}

    def run_pod(req):
        listed = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        seen["pod listed while RunPodSandbox runs"] = any(p.id == req.pod.id for p in listed)
        err = rpc_error(
            lambda: rt.CreateContainer(
                api_pb2.CreateContainerRequest(
                    pod_sandbox_id=req.pod.id,
                    config=api_pb2.ContainerConfig(
                        metadata=api_pb2.ContainerMetadata(name="early"),
                        image=api_pb2.ImageSpec(image=images.busybox.name),
                    ),
                ),
                timeout=10,
            )
        )
        seen["create during RunPodSandbox"] = err.code()
        if refuse["pod"]:
            raise Refuse("pods are refused today")

    def create(req):
        listed = rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
        seen["container listed while CreateContainer runs"] = any(
            c.id == req.container.id for c in listed
        )
        if refuse["ctr"] and req.container.name == "refused":
            seen["refused id"] = req.container.id
            raise Refuse("this container is refused")

    def stop_pod(req):
        listed = rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
        seen["container states at StopPodSandbox"] = {
            c.metadata.name: c.state for c in listed if c.pod_sandbox_id == req.pod.id
        }
        seen["pod listed at StopPodSandbox"] = any(
            p.id == req.pod.id
            for p in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        )

    stub = NRIStub(
        "policy",
        "10",
        handlers={"RunPodSandbox": run_pod, "CreateContainer": create, "StopPodSandbox": stop_pod},
    ).connect(sock(tmp_path))
    wait_connected(d, "10-policy")
    config = pod_config("refused-pod", tmp_path / "logs")

    err = rpc_error(lambda: Pod(d, config))
    assert "pods are refused today" in err.details() and "10-policy" in err.details()
    assert seen["pod listed while RunPodSandbox runs"] is False
    assert seen["create during RunPodSandbox"] == grpc.StatusCode.FAILED_PRECONDITION
    assert rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items == []
    assert "RemovePodSandbox" in stub.methods()  # it heard that the refused pod is gone

    refuse["pod"] = False
    pod = Pod(d, config)  # the same config: nothing of the first attempt is in the way
    err = rpc_error(lambda: pod.create(pod.container_config("refused", images.busybox.name)))
    assert "this container is refused" in err.details()
    assert seen["container listed while CreateContainer runs"] is False
    assert rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers == []
    infra = pod.pod_info().get("infra_id", "")  # a VM handler's pod has one, and keeps it
    assert [p for p in (d.tmp / "runroot" / "containers").iterdir() if p.name != infra] == []
    assert_nothing_left(d, [seen["refused id"]])  # no monitor, mount, runtime state, cgroup
    # plugins that heard of the refused container hear that it is gone
    undone = [
        m
        for m, msg in stub.received
        if m.endswith("Container") and msg.container.id == seen["refused id"]
    ]
    assert undone == ["CreateContainer", "StopContainer", "RemoveContainer"]
    refuse["ctr"] = False
    cid = pod.run("refused", images.busybox.name, command=["sleep", "300"])
    assert pod.status(cid).status.state == RUNNING

    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
    assert seen["container states at StopPodSandbox"] == {"refused": EXITED}
    assert seen["pod listed at StopPodSandbox"] is True
    err = rpc_error(lambda: pod.create(pod.container_config("late", images.busybox.name)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION  # a stopped pod is not reused
    pod.remove()

    # two plugins setting the same field: the creation fails naming both
    other = NRIStub(
        "other",
        "20",
        events=mask("CREATE_CONTAINER"),
        handlers={
            "CreateContainer": lambda req: api.CreateContainerResponse(
                adjust=api.ContainerAdjustment(env=[api.KeyValue(key="OWNED", value="b")])
            )
        },
    ).connect(sock(tmp_path))
    stub.handlers["CreateContainer"] = lambda req: api.CreateContainerResponse(
        adjust=api.ContainerAdjustment(env=[api.KeyValue(key="OWNED", value="a")])
    )
    wait_connected(d, "20-other")
    pod = Pod(d, pod_config("conflict", tmp_path / "logs"))
    err = rpc_error(lambda: pod.create(pod.container_config("c", images.busybox.name)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "10-policy" in err.details() and "20-other" in err.details() and "OWNED" in err.details()

    # a validator sees the combined adjustment and may reject it
    other.close()
    wait_connected(d, "20-other", present=False)

    def validate(req):
        if any(kv.key == "OWNED" for kv in req.adjust.env):
            return api.ValidateContainerAdjustmentResponse(reject=True, reason="no OWNED here")
        return None

    validator = NRIStub(
        "validator",
        "99",
        events=mask("VALIDATE_CONTAINER_ADJUSTMENT"),
        handlers={"ValidateContainerAdjustment": validate},
    ).connect(sock(tmp_path))
    wait_connected(d, "99-validator")
    err = rpc_error(lambda: pod.create(pod.container_config("v", images.busybox.name)))
    assert "99-validator" in err.details() and "no OWNED here" in err.details()
    (vreq,) = validator.of("ValidateContainerAdjustment")
    assert vreq.container.name == "v" and vreq.pod.id == pod.id
    assert [(p.index, p.name) for p in vreq.plugins] == [("10", "policy")]
    env_owners = vreq.owners.owners[vreq.container.id].compound[api.Field.Value("Env")]
    assert env_owners.owners["OWNED"] == "10-policy"
    assert not any(e.startswith("OWNED=") for e in vreq.container.env)  # pristine
    stub.handlers.pop("CreateContainer")
    cid = pod.run("v", images.busybox.name, command=["sleep", "300"])
    assert pod.status(cid).status.state == RUNNING
    validator.close()
    pod.remove()


def test_a_late_plugin_is_synchronized_and_misses_nothing(
    nri_daemon, tmp_path: Path, images: registry_env.TestImages
) -> None:
    d = nri_daemon()
    pod = Pod(d, pod_config("early", tmp_path / "logs"))
    first = pod.run("first", images.busybox.name, command=["sleep", "300"])
    created: dict[str, str] = {}

    def sync(req):
        # while Synchronize runs, a container is created: it must still be reported
        def make() -> None:
            created["id"] = pod.run("during-sync", images.busybox.name, command=["sleep", "300"])

        threading.Thread(target=make).start()
        time.sleep(1)
        return api.SynchronizeResponse(more=req.more)

    stub = NRIStub("late", "30", handlers={"Synchronize": sync}).connect(sock(tmp_path))
    wait_connected(d, "30-late")
    (sync_req,) = stub.of("Synchronize")
    assert [p.id for p in sync_req.pods] == [pod.id]
    assert [(c.id, c.state) for c in sync_req.containers] == [
        (first, api.ContainerState.Value("CONTAINER_RUNNING"))
    ]
    assert sync_req.pods[0].name == "early" and sync_req.containers[0].name == "first"
    stub.wait_for(lambda got: any(m == "PostStartContainer" for m, _ in got))
    wait_until(lambda: "id" in created, 30, "the container created during sync")
    after = [m for m, msg in stub.received if m not in ("Configure", "Synchronize")]
    assert after == [
        "CreateContainer",
        "ValidateContainerAdjustment",
        "PostCreateContainer",
        "StartContainer",
        "PostStartContainer",
    ]
    assert {msg.container.id for m, msg in stub.received if m == "CreateContainer"} == {
        created["id"]
    }
    pod.remove()


def test_hanging_crashing_and_garbage_plugins_do_not_stop_the_daemon(
    nri_daemon, tmp_path: Path, images: registry_env.TestImages
) -> None:
    d = nri_daemon(request_timeout="1s")
    hang = threading.Event()

    def stuck(req):
        hang.wait(30)

    hanging = NRIStub("hangs", "10", handlers={"CreateContainer": stuck}).connect(sock(tmp_path))
    crashing = NRIStub("crashes", "20")
    crashing.handlers["RunPodSandbox"] = lambda req: crashing.close()
    crashing.connect(sock(tmp_path))
    wait_connected(d, "10-hangs")
    wait_connected(d, "20-crashes")
    healthy = NRIStub("healthy", "90").connect(sock(tmp_path))
    wait_connected(d, "90-healthy")

    # garbage: a peer that is not NRI at all
    garbage = __import__("socket").socket(__import__("socket").AF_UNIX)
    garbage.connect(sock(tmp_path))
    garbage.sendall(b"\xff" * 64 + b"GET / HTTP/1.1\r\n\r\n")

    pod = Pod(d, pod_config("survives", tmp_path / "logs"))  # the crashing plugin goes away
    started = time.monotonic()
    cid = pod.run("c", images.busybox.name, command=["sleep", "300"])
    assert time.monotonic() - started < 15  # the hanging plugin cost about one timeout
    assert pod.status(cid).status.state == RUNNING
    wait_connected(d, "10-hangs", present=False)
    wait_connected(d, "20-crashes", present=False)
    assert "90-healthy" in nri_condition(d).message
    log = d.stderr()
    assert "hangs" in log and "CreateContainer" in log
    # the healthy plugin saw the whole sequence despite its neighbours
    healthy.wait_for(lambda got: any(m == "PostStartContainer" for m, _ in got))
    assert d.runtime().Version(api_pb2.VersionRequest(), timeout=5).runtime_name == "pycrio"
    hang.set()
    hanging.close()
    garbage.close()
    pod.remove()  # without a Stop first: plugins still hear StopPodSandbox before removal
    healthy.wait_for(lambda got: got[-1][0] == "RemovePodSandbox")
    tail = [m for m in healthy.methods() if m.endswith("PodSandbox")]
    assert tail == ["RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"]
    healthy.close()


def test_preinstalled_plugin_is_started_configured_and_shut_down(
    nri_daemon, tmp_path: Path, images: registry_env.TestImages
) -> None:
    plugins = tmp_path / "nri-plugins"
    plugins.mkdir()
    script = plugins / "05-recorder"
    script.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(SUPPORT)!r})\n"
        "runpy.run_path(sys.path[0] + '/nri_stub.py', run_name='__main__')\n"
    )
    script.chmod(0o755)
    (plugins / "not-a-plugin").write_text("x")  # no NN- index: skipped
    conf = tmp_path / "nri-conf"
    conf.mkdir()
    events_log = tmp_path / "recorder.jsonl"
    (conf / "05-recorder.conf").write_text(
        json.dumps(
            {
                "log": str(events_log),
                "events": ["CREATE_CONTAINER", "POST_START_CONTAINER", "REMOVE_POD_SANDBOX"],
                "env": {"PREINSTALLED": "yes"},
            }
        )
    )
    d = nri_daemon()
    message = nri_condition(d).message
    assert "05-recorder (pre-installed" in message
    listing = subprocess.run(
        [sys.executable, "-m", "pycrio", "plugins", "--config", str(d.config),
         "--config-dir", str(d.config_dir), "--listen", d.socket],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "pycrio-nri" in listing and "NRIPlugins: 05-recorder (pre-installed" in listing
    pod = Pod(d, pod_config("pre", tmp_path / "logs"))
    cid = pod.run("c", images.busybox.name, command=["sleep", "300"])
    assert pod.out(cid, "sh", "-c", "echo $PREINSTALLED") == "yes\n"
    pod.remove()

    def entries() -> list[dict]:
        return [json.loads(line) for line in events_log.read_text().splitlines()]

    wait_until(lambda: entries()[-1]["method"] == "RemovePodSandbox", 10, "RemovePodSandbox")
    assert [e["method"] for e in entries()] == [
        "Configure",
        "Synchronize",
        "CreateContainer",
        "PostStartContainer",
        "RemovePodSandbox",
    ]
    assert entries()[0]["runtime"] == "pycrio"
    pid = int(message.split("pid ")[1].split(")")[0])
    d.stop()
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10, "the plugin to exit")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_updates_from_plugins_reach_the_running_container(
    nri_daemon, tmp_path: Path, images: registry_env.TestImages
) -> None:
    d = nri_daemon()
    stub = NRIStub("updater", "10").connect(sock(tmp_path))
    wait_connected(d, "10-updater")
    pod = Pod(d, pod_config("upd", tmp_path / "logs"))
    cid = pod.run("c", images.busybox.name, command=["sleep", "300"])

    # unsolicited: the plugin asks the runtime to change a running container
    update = api.ContainerUpdate(
        container_id=cid,
        linux=api.LinuxContainerUpdate(
            resources=api.LinuxResources(
                memory=api.LinuxMemory(limit=api.OptionalInt64(value=96 << 20))
            )
        ),
    )
    resp = stub.call_runtime(
        "UpdateContainers",
        api.UpdateContainersRequest(update=[update]),
        api.UpdateContainersResponse,
    )
    assert list(resp.failed) == []
    assert pod.status(cid).status.resources.linux.memory_limit_in_bytes == 96 << 20
    cgroup = pod.out(cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert int(cgroup) == 96 << 20
    victim = pod.run("victim", images.busybox.name, command=["sleep", "300"])
    stub.call_runtime(
        "UpdateContainers",
        api.UpdateContainersRequest(
            evict=[api.ContainerEviction(container_id=victim, reason="make room")]
        ),
        api.UpdateContainersResponse,
    )
    assert pod.status(victim).status.state == EXITED
    assert "make room" in d.stderr()
    bad = api.ContainerUpdate(container_id="nonexistent", linux=update.linux)
    resp = stub.call_runtime(
        "UpdateContainers", api.UpdateContainersRequest(update=[bad]), api.UpdateContainersResponse
    )
    assert [u.container_id for u in resp.failed] == ["nonexistent"]

    # solicited: the kubelet's update goes through UpdateContainer, which may amend it
    stub.handlers["UpdateContainer"] = lambda req: api.UpdateContainerResponse(
        update=[
            api.ContainerUpdate(
                container_id=req.container.id,
                linux=api.LinuxContainerUpdate(
                    resources=api.LinuxResources(
                        cpu=api.LinuxCPU(shares=api.OptionalUInt64(value=300))
                    )
                ),
            )
        ]
    )
    pod.rt.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(
            container_id=cid,
            linux=api_pb2.LinuxContainerResources(memory_limit_in_bytes=128 << 20, cpu_shares=100),
        ),
        timeout=30,
    )
    linux = pod.status(cid).status.resources.linux
    assert (linux.memory_limit_in_bytes, linux.cpu_shares) == (128 << 20, 300)
    (req,) = stub.of("UpdateContainer")
    assert req.linux_resources.memory.limit.value == 128 << 20
    stub.wait_for(lambda got: any(m == "PostUpdateContainer" for m, _ in got))

    pod.rt.UpdatePodSandboxResources(
        api_pb2.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=pod.id,
            resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=512 << 20),
        ),
        timeout=30,
    )
    (upd,) = stub.of("UpdatePodSandbox")
    assert upd.pod.id == pod.id and upd.linux_resources.memory.limit.value == 512 << 20
    stub.wait_for(lambda got: got[-1][0] == "PostUpdatePodSandbox")
    pod.remove()


def test_after_a_restart_plugins_are_synchronized_with_restored_pods(
    nri_daemon, tmp_path: Path, images: registry_env.TestImages
) -> None:
    d = nri_daemon()
    pod = Pod(d, pod_config("restored", tmp_path / "logs"))
    cid = pod.run("kept", images.busybox.name, command=["sleep", "300"])
    done = pod.run("done", images.busybox.name, command=["sh", "-c", "exit 7"])
    pod.wait_exit(done)
    d.stop()
    d.start()
    stub = NRIStub("after", "10").connect(sock(tmp_path))
    wait_connected(d, "10-after")
    (sync,) = stub.of("Synchronize")
    (p,) = sync.pods
    assert (p.id, p.name, p.namespace, p.uid) == (pod.id, "restored", "ctr", "uid-restored")
    assert p.labels["pod"] == "restored"
    got = {c.name: c for c in sync.containers}
    assert set(got) == {"kept", "done"}
    assert got["kept"].id == cid and got["kept"].pod_sandbox_id == pod.id
    assert got["kept"].state == api.ContainerState.Value("CONTAINER_RUNNING")
    assert got["done"].state == api.ContainerState.Value("CONTAINER_STOPPED")
    assert got["done"].exit_code == 7 and got["done"].finished_at > 0
    # live events for restored objects carry their metadata too
    pod.rt.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=30)
    stub.wait_for(lambda got: any(m == "StopContainer" for m, _ in got))
    (stop,) = stub.of("StopContainer")
    assert (stop.container.id, stop.container.name, stop.pod.name) == (cid, "kept", "restored")
    pod.remove()
    stub.wait_for(lambda got: got[-1][0] == "RemovePodSandbox")
    stub.close()
