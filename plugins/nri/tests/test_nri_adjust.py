"""NRI adjustments applied to an OCI spec dict, and ownership conflicts between plugins."""

from __future__ import annotations

import pytest

from pycrio.errors import FailedPrecondition, InvalidArgument
from pycrio_nri import api
from pycrio_nri.adjust import SpecAdjuster


def _spec() -> dict:
    return {
        "process": {"args": ["sh"], "env": ["PATH=/bin", "A=1"], "rlimits": []},
        "annotations": {"keep": "1", "drop": "2"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"resources": {"memory": {"limit": 100}}},
    }


def test_each_kind_of_adjustment_reaches_the_spec() -> None:
    spec = _spec()
    adj = api.ContainerAdjustment(
        annotations={"new": "v", "-drop": ""},
        env=[api.KeyValue(key="A", value="2"), api.KeyValue(key="B", value="3")],
        args=["sleep", "9"],
        mounts=[api.Mount(destination="/data", type="bind", source="/tmp", options=["rbind"])],
        hooks=api.Hooks(prestart=[api.Hook(path="/bin/true", args=["true"])]),
        rlimits=[api.POSIXRlimit(type="RLIMIT_NOFILE", hard=100, soft=50)],
        linux=api.LinuxContainerAdjustment(
            devices=[api.LinuxDevice(path="/dev/fuse", type="c", major=10, minor=229)],
            resources=api.LinuxResources(
                memory=api.LinuxMemory(limit=api.OptionalInt64(value=1 << 30)),
                cpu=api.LinuxCPU(cpus="0", shares=api.OptionalUInt64(value=512)),
                unified={"memory.high": "max"},
            ),
            oom_score_adj=api.OptionalInt(value=500),
            namespaces=[api.LinuxNamespace(type="-network")],
        ),
    )
    SpecAdjuster(spec).apply("10-a", adj)
    assert spec["annotations"] == {"keep": "1", "new": "v"}
    assert spec["process"]["env"] == ["PATH=/bin", "A=2", "B=3"]
    assert spec["process"]["args"] == ["sleep", "9"]
    assert {"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind"]} in spec[
        "mounts"
    ]
    assert spec["hooks"]["prestart"] == [{"path": "/bin/true", "args": ["true"]}]
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 100, "soft": 50}]
    assert spec["process"]["oomScoreAdj"] == 500
    linux = spec["linux"]
    assert linux["devices"] == [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    res = linux["resources"]
    assert res["memory"]["limit"] == 1 << 30
    assert res["cpu"] == {"shares": 512, "cpus": "0"}
    assert res["unified"] == {"memory.high": "max"}
    assert {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"} in res[
        "devices"
    ]


def test_two_plugins_setting_the_same_field_conflict() -> None:
    adjuster = SpecAdjuster(_spec())
    adjuster.apply("10-a", api.ContainerAdjustment(env=[api.KeyValue(key="X", value="1")]))
    adjuster.apply("20-b", api.ContainerAdjustment(env=[api.KeyValue(key="Y", value="1")]))
    with pytest.raises(InvalidArgument, match='"10-a" and "20-b".*X'):
        adjuster.apply("20-b", api.ContainerAdjustment(env=[api.KeyValue(key="X", value="2")]))
    mem = api.LinuxContainerAdjustment(
        resources=api.LinuxResources(memory=api.LinuxMemory(limit=api.OptionalInt64(value=1)))
    )
    adjuster.apply("10-a", api.ContainerAdjustment(linux=mem))
    with pytest.raises(InvalidArgument, match="memory.limit"):
        adjuster.apply("30-c", api.ContainerAdjustment(linux=mem))


def test_removal_releases_ownership() -> None:
    adjuster = SpecAdjuster(_spec())
    adjuster.apply("10-a", api.ContainerAdjustment(annotations={"k": "a"}))
    adjuster.apply("20-b", api.ContainerAdjustment(annotations={"-k": ""}))
    adjuster.apply("30-c", api.ContainerAdjustment(annotations={"k": "c"}))
    assert adjuster.spec["annotations"]["k"] == "c"


def test_what_the_node_cannot_honour_is_refused_by_name() -> None:
    with pytest.raises(FailedPrecondition, match="CDI"):
        SpecAdjuster(_spec()).apply(
            "10-a", api.ContainerAdjustment(CDI_devices=[api.CDIDevice(name="vendor.com/gpu=0")])
        )
    rdt = api.LinuxContainerAdjustment(
        resources=api.LinuxResources(rdt_class=api.OptionalString(value="gold"))
    )
    with pytest.raises(FailedPrecondition, match="RDT"):
        SpecAdjuster(_spec()).apply("10-a", api.ContainerAdjustment(linux=rdt))


def test_security_and_scheduling_adjustments() -> None:
    spec = _spec()
    policy = api.LinuxSeccomp(
        default_action="SCMP_ACT_ERRNO",
        default_errno=api.OptionalUInt32(value=1),
        architectures=["SCMP_ARCH_X86_64"],
        syscalls=[
            api.LinuxSyscall(
                names=["read", "write"],
                action="SCMP_ACT_ALLOW",
                args=[api.LinuxSeccompArg(index=0, value=1, op="SCMP_CMP_EQ")],
            )
        ],
    )
    prio = api.LinuxIOPriority(priority=4)
    setattr(prio, "class", api.IOPrioClass.Value("IOPRIO_CLASS_BE"))
    adj = api.ContainerAdjustment(
        linux=api.LinuxContainerAdjustment(
            seccomp_policy=policy,
            io_priority=prio,
            sysctl={"net.core.somaxconn": "1024"},
            namespaces=[api.LinuxNamespace(type="ipc", path="/proc/1/ns/ipc")],
            resources=api.LinuxResources(
                hugepage_limits=[api.HugepageLimit(page_size="2MB", limit=1 << 21)],
                pids=api.LinuxPids(limit=64),
            ),
        ),
        hooks=api.Hooks(poststop=[api.Hook(path="/bin/x", timeout=api.OptionalInt(value=5))]),
    )
    SpecAdjuster(spec).apply("10-a", adj)
    linux = spec["linux"]
    assert linux["seccomp"] == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {
                "names": ["read", "write"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    assert spec["process"]["ioPriority"] == {"class": "IOPRIO_CLASS_BE", "priority": 4}
    assert linux["sysctl"] == {"net.core.somaxconn": "1024"}
    assert linux["namespaces"] == [{"type": "ipc", "path": "/proc/1/ns/ipc"}]
    assert linux["resources"]["hugepageLimits"] == [{"pageSize": "2MB", "limit": 1 << 21}]
    assert linux["resources"]["pids"] == {"limit": 64}
    assert spec["hooks"]["poststop"] == [{"path": "/bin/x", "timeout": 5}]


def test_devices_and_mounts_can_be_replaced_and_removed() -> None:
    spec = _spec()
    adjuster = SpecAdjuster(spec)
    fuse = api.LinuxDevice(path="/dev/fuse", type="c", major=10, minor=229)
    adjuster.apply(
        "10-a", api.ContainerAdjustment(linux=api.LinuxContainerAdjustment(devices=[fuse]))
    )
    gone = api.LinuxDevice(path="-/dev/fuse")
    adjuster.apply(
        "20-b", api.ContainerAdjustment(linux=api.LinuxContainerAdjustment(devices=[gone]))
    )
    assert spec["linux"]["devices"] == []
    assert not any(r.get("major") == 10 for r in spec["linux"]["resources"]["devices"])
    adjuster.apply("20-b", api.ContainerAdjustment(mounts=[api.Mount(destination="-/proc")]))
    assert spec["mounts"] == []
    with pytest.raises(InvalidArgument, match="type"):
        bad = api.LinuxDevice(path="/dev/x", type="z")
        adjuster.apply(
            "30-c", api.ContainerAdjustment(linux=api.LinuxContainerAdjustment(devices=[bad]))
        )


def test_owners_are_reported_as_nri_fields() -> None:
    adjuster = SpecAdjuster(_spec())
    mem = api.LinuxContainerAdjustment(
        resources=api.LinuxResources(
            memory=api.LinuxMemory(limit=api.OptionalInt64(value=1)),
            unified={"memory.high": "max"},
        )
    )
    adjuster.apply("10-a", api.ContainerAdjustment(env=[api.KeyValue(key="X", value="1")]))
    adjuster.apply("20-b", api.ContainerAdjustment(args=["true"], linux=mem))
    owners = adjuster.field_owners()
    assert owners.compound[api.Field.Value("Env")].owners == {"X": "10-a"}
    assert owners.compound[api.Field.Value("CgroupsUnified")].owners == {"memory.high": "20-b"}
    assert dict(owners.simple) == {
        api.Field.Value("Args"): "20-b",
        api.Field.Value("MemLimit"): "20-b",
    }
