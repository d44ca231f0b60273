"""OCI linux.resources -> systemd unit properties, v1 and v2 (pure)."""

from __future__ import annotations

import pytest
from pycrio_cgroup_systemd.properties import (
    INFINITY,
    FileWrite,
    cpu_mask,
    quota_per_sec,
    shares_to_weight,
    translate,
)

from pycrio.errors import InvalidArgument


def props(resources: dict, v2: bool) -> dict:
    return dict(translate(resources, v2).properties)


POD = {
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1"},
    "memory": {"limit": 256 << 20},
    "pids": {"limit": 100},
}


def test_v2_properties() -> None:
    got = props(POD, v2=True)
    assert got == {
        "CPUWeight": ("t", 39),
        "CPUQuotaPeriodUSec": ("t", 100000),
        "CPUQuotaPerSecUSec": ("t", 500000),
        "AllowedCPUs": ("ay", b"\x03"),
        "MemoryMax": ("t", 256 << 20),
        "TasksMax": ("t", 100),
    }


def test_v1_properties_and_files() -> None:
    resources = {
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
        "memory": {"limit": 256 << 20, "swap": 512 << 20},
        "pids": {"limit": 100},
    }
    tr = translate(resources, v2=False)
    assert dict(tr.properties) == {
        "CPUShares": ("t", 1024),
        "CPUQuotaPeriodUSec": ("t", 100000),
        "CPUQuotaPerSecUSec": ("t", 500000),
        "MemoryLimit": ("t", 256 << 20),
        "TasksMax": ("t", 100),
    }
    # no property for memory+swap on v1: the file, skipped without swap accounting
    assert tr.files == [
        FileWrite("memory", "memory.memsw.limit_in_bytes", str(512 << 20), optional=True)
    ]
    # systemd has no cpuset on v1: refused for a pod slice before anything is made
    with pytest.raises(InvalidArgument) as e:
        translate(POD, v2=False)
    assert "cgroup v2" in e.value.message


def test_unlimited_and_unchanged() -> None:
    got = props({"cpu": {"quota": -1}, "memory": {"limit": -1}, "pids": {"limit": -1}}, True)
    assert got == {
        "CPUQuotaPerSecUSec": ("t", INFINITY),
        "MemoryMax": ("t", INFINITY),
        "TasksMax": ("t", INFINITY),
    }
    assert props({"cpu": {"shares": 0, "quota": 0}, "memory": {"limit": 0}}, True) == {}
    assert translate(None, True).properties == []


def test_conversions() -> None:
    assert shares_to_weight(2) == 1 and shares_to_weight(262144) == 10000
    assert quota_per_sec(12345, 100000) == 130000  # rounded up to systemd's 10ms step
    assert quota_per_sec(200000, 100000) == 2000000
    assert cpu_mask("0,9-10", "cpu.cpus") == bytes([0b1, 0b110])


def test_swap_hugepages_and_unified_on_v2() -> None:
    tr = translate(
        {
            "memory": {"limit": 100 << 20, "swap": 150 << 20, "reservation": 10 << 20},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            "unified": {"memory.high": "max", "memory.oom.group": "1"},
            "blockIO": {"weight": 500},
        },
        v2=True,
    )
    got = dict(tr.properties)
    assert got["MemorySwapMax"] == ("t", 50 << 20)
    assert got["MemoryLow"] == ("t", 10 << 20)
    assert got["MemoryHigh"] == ("t", INFINITY)
    assert got["IOWeight"] == ("t", 1 + (490 * 9999) // 990)
    assert FileWrite("hugetlb", "hugetlb.2MB.max", "0") in tr.files
    assert FileWrite("memory", "memory.oom.group", "1") in tr.files


@pytest.mark.parametrize(
    ("resources", "v2", "needle"),
    [
        ({"unified": {"memory.high": "1"}}, False, "cgroup v2"),
        ({"memory": {"limit": 10, "swap": 5}}, True, "lower than"),
        ({"memory": {"swap": 5}}, True, "needs memory.limit"),
        ({"cpu": {"cpus": "0-"}}, True, "cpu.cpus"),
        ({"cpu": {"shares": "1"}}, True, "integer"),
        ({"pids": {"limit": -5}}, True, "-1 or more"),
        ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, True, "pageSize"),
        ({"unified": {"memory.max": "lots"}}, True, "number or max"),
        ({"cpu": []}, True, "object"),
    ],
)
def test_bad_resources_are_invalid_argument(resources: dict, v2: bool, needle: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        translate(resources, v2)
    assert needle in e.value.message
