"""Shim v2 wire facts on bytes: field numbers of the Task API, events and metrics;
start's address output; the driver's records. No shim needed."""

from __future__ import annotations

import json

import pytest
from pycrio_runtime_kata import api, events, records, shim_binary, stats

from pycrio.errors import Unavailable
from pycrio.protofile import ProtoSyntaxError, parse


def test_task_messages_carry_containerds_field_numbers() -> None:
    # CreateTaskRequest: id = 1, bundle = 2, terminal = 4, stdout = 6, options = 10
    req = api.task.CreateTaskRequest(id="a", bundle="/b", terminal=True, stdout="o")
    assert req.SerializeToString() == b"\x0a\x01a\x12\x02/b\x20\x01\x32\x01o"
    opts = api.task.CreateTaskRequest(options=api.Any_(type_url="t"))
    assert opts.SerializeToString() == b"\x52\x03\x0a\x01t"
    # KillRequest: id = 1, exec_id = 2, signal = 3, all = 4
    kill = api.task.KillRequest(id="c", exec_id="e", signal=9, all=True)
    assert kill.SerializeToString() == b"\x0a\x01c\x12\x01e\x18\x09\x20\x01"
    # StateResponse.status = 4 (containerd.v1.types.Status), exit_status = 9
    state = api.task.StateResponse(status=api.task_types.Status.Value("STOPPED"), exit_status=3)
    assert state.SerializeToString() == b"\x20\x03\x48\x03"
    # UpdateTaskRequest.annotations = 3 (a map)
    upd = api.task.UpdateTaskRequest(annotations={"k": "v"})
    assert upd.SerializeToString() == b"\x1a\x06\x0a\x01k\x12\x01v"
    # WaitResponse: exit_status = 1, exited_at = 2 (Timestamp seconds = 1)
    wait = api.task.WaitResponse(exit_status=7)
    wait.exited_at.seconds = 5
    assert wait.SerializeToString() == b"\x08\x07\x12\x02\x08\x05"
    assert api.TASK_SERVICE == "containerd.task.v2.Task"
    assert set(api.TASK_METHODS) == {
        "State", "Create", "Start", "Delete", "Pids", "Pause", "Resume", "Checkpoint", "Kill",
        "Exec", "ResizePty", "CloseIO", "Update", "Wait", "Stats", "Connect", "Shutdown",
    }  # fmt: skip


def test_oci_objects_travel_as_json_in_an_any() -> None:
    any_ = api.oci_any("LinuxResources", {"memory": {"limit": 5}})
    assert any_.type_url == "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
    assert json.loads(any_.value) == {"memory": {"limit": 5}}
    opts = api.message_any(api.runtimeoptions.Options(config_path="/etc/kata.toml"))
    assert opts.type_url == "runtimeoptions.v1.Options"
    assert opts.value == b"\x12\x0e/etc/kata.toml"  # config_path = 2


def _forward(topic: str, event: object) -> bytes:
    env = api.events_service.Envelope(topic=topic, namespace="k8s.io", event=api.message_any(event))
    return api.events_service.ForwardRequest(envelope=env).SerializeToString()


def test_forwarded_exit_and_oom_events_decode() -> None:
    exit_ = api.events.TaskExit(container_id="t1", id="t1", pid=42, exit_status=137)
    exit_.exited_at.seconds = 2
    exit_.exited_at.nanos = 5
    # TaskExit: container_id = 1, id = 2, pid = 3, exit_status = 4, exited_at = 5
    assert exit_.SerializeToString().startswith(b"\x0a\x02t1\x12\x02t1\x18\x2a\x20\x89\x01")
    ev = events.decode(_forward("/tasks/exit", exit_))
    assert ev == events.TaskEvent(
        "TaskExit", "/tasks/exit", "k8s.io", "t1", "t1", 42, 137, 2_000_000_005
    )
    oom = events.decode(_forward("/tasks/oom", api.events.TaskOOM(container_id="t1")))
    assert oom is not None and (oom.kind, oom.container_id) == ("TaskOOM", "t1")
    # an event type we do not know is skipped, not an error
    odd = api.events_service.ForwardRequest(
        envelope=api.events_service.Envelope(event=api.Any_(type_url="x.Other", value=b"\x01"))
    )
    assert events.decode(odd.SerializeToString()) is None


def test_go_zero_time_means_no_time() -> None:
    ts = api.Timestamp(seconds=-62135596800)
    assert api.timestamp_ns(ts) == 0


@pytest.mark.parametrize(
    ("output", "path"),
    [
        (b"unix:///run/containerd/s/abc\n", "/run/containerd/s/abc"),
        (b"/run/x.sock", "/run/x.sock"),
        (b"unix://@/containerd-shim/k8s.io/x/shim.sock\n", "\0/containerd-shim/k8s.io/x/shim.sock"),
        (b'{"version":2,"address":"unix:///run/s/1","protocol":"ttrpc"}', "/run/s/1"),
    ],
)
def test_start_output_gives_the_socket(output: bytes, path: str) -> None:
    assert shim_binary.parse_address(output) == path


@pytest.mark.parametrize(
    "output",
    [b"", b"time=... level=error msg=failed\nmore", b"tcp://1.2.3.4:5", b'{"protocol":"grpc"}'],
)
def test_start_output_without_an_address_is_refused(output: bytes) -> None:
    with pytest.raises(ValueError):
        shim_binary.parse_address(output)


def test_start_argv_and_environment_follow_containerd() -> None:
    cmd = shim_binary.ShimCommand("/bin/shim", "k8s.io", "/run/p/c.sock", "/run/p/ev.sock")
    assert cmd.argv("c1", "start") == [
        "/bin/shim", "-namespace", "k8s.io", "-address", "/run/p/c.sock",
        "-publish-binary", "", "-id", "c1", "start",
    ]  # fmt: skip
    assert cmd.argv("c1", "delete", bundle="/b")[-3:] == ["-bundle", "/b", "delete"]
    env = cmd.env()
    assert (env["TTRPC_ADDRESS"], env["GRPC_ADDRESS"], env["NAMESPACE"]) == (
        "/run/p/ev.sock",
        "/run/p/c.sock",
        "k8s.io",
    )


def test_records_round_trip_and_survive_unknown_keys(tmp_path) -> None:
    store = records.RecordStore(str(tmp_path))
    rec = records.ContainerRecord("c1", "pod1", "pod1", "/b", address="/run/s", sandbox=True)
    store.save(rec)
    assert store.load("c1") == rec
    assert [r.container_id for r in store.all()] == ["c1"]
    doc = json.loads((tmp_path / "containers" / "c1.json").read_text())
    doc["from_a_newer_version"] = 1
    (tmp_path / "containers" / "c1.json").write_text(json.dumps(doc))
    assert store.load("c1") == rec
    (tmp_path / "containers" / "c1.json").write_text("{torn")
    assert store.load("c1") is None
    store.remove("c1")
    store.remove("c1")
    assert store.all() == []


def test_v1_metrics_become_cgroup_stats() -> None:
    m = api.cgroups.Metrics()
    m.cpu.usage.total, m.cpu.usage.user, m.cpu.usage.kernel = 300, 200, 100
    m.memory.usage.usage, m.memory.usage.limit = 10_000, 1 << 63
    m.memory.total_inactive_file, m.memory.total_rss = 4_000, 5_000
    m.pids.current, m.pids.limit = 3, 100
    m.memory_oom_control.oom_kill = 2
    m.blkio.io_service_bytes_recursive.add(op="Read", major=8, minor=0, value=512)
    s = stats.from_any(api.message_any(m))
    assert (s.cpu_usage_ns, s.cpu_user_ns, s.cpu_system_ns) == (300, 200, 100)
    assert (s.memory_usage_bytes, s.memory_working_set_bytes, s.memory_rss_bytes) == (
        10_000,
        6_000,
        5_000,
    )
    assert s.memory_limit_bytes == 0 and s.memory_available_bytes is None  # unlimited
    assert (s.pids, s.pids_limit, s.memory_oom_kills) == (3, 100, 2)
    assert s.blkio[0].bytes == {"Read": 512}
    m.memory.usage.limit = 16_000
    assert stats.from_any(api.message_any(m)).memory_available_bytes == 10_000
    with pytest.raises(Unavailable, match="io.containerd.cgroups.v3"):
        stats.from_any(api.Any_(type_url="io.containerd.cgroups.v3.Metrics"))


def test_v2_metrics_become_cgroup_stats() -> None:
    m = api.cgroups_v2.Metrics()
    m.cpu.usage_usec, m.cpu.user_usec, m.cpu.system_usec = 3, 2, 1
    m.memory.usage, m.memory.inactive_file, m.memory.usage_limit = 10_000, 4_000, 16_000
    m.memory.anon, m.memory_events.oom_kill = 5_000, 1
    m.io.usage.add(major=8, minor=0, rbytes=512, wbytes=1024)
    # Metrics.memory = 4, MemoryStat.usage = 32 (tag 0x80 0x02)
    assert (
        api.cgroups_v2.Metrics(memory={"usage": 1}).SerializeToString() == b"\x22\x03\x80\x02\x01"
    )
    s = stats.from_any(api.message_any(m))
    assert (s.cpu_usage_ns, s.cpu_user_ns, s.cpu_system_ns) == (3000, 2000, 1000)
    assert (s.memory_working_set_bytes, s.memory_available_bytes) == (6_000, 10_000)
    assert (s.memory_rss_bytes, s.memory_oom_kills) == (5_000, 1)
    assert s.blkio[0].bytes == {"Read": 512, "Write": 1024, "Total": 1536}


def test_proto_imports_resolve_against_the_pool() -> None:
    fdp = parse(
        'syntax = "proto3"; package p; import "google/protobuf/any.proto";'
        " message A { google.protobuf.Any a = 1; containerd.types.Mount m = 2; }",
        "x.proto",
        api.POOL,
    )
    assert list(fdp.dependency) == ["google/protobuf/any.proto"]
    assert [f.type_name for f in fdp.message_type[0].field] == [
        ".google.protobuf.Any",
        ".containerd.types.Mount",
    ]
    with pytest.raises(ProtoSyntaxError, match="unknown type"):
        parse('syntax = "proto3"; package p; message A { Nope n = 1; }', "y.proto", api.POOL)
