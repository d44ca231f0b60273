"""The pure OCI resources -> cgroup file translation, for v1 and v2."""

from __future__ import annotations

import pytest
from pycrio_cgroup_fs.resources import (
    Write,
    blkio_weight_to_io_weight,
    controllers_of,
    memory_swap_to_v2,
    shares_to_weight,
    v1_writes,
    v2_writes,
)

from pycrio.errors import InvalidArgument
from pycrio.kernel.cgroup_stats import weight_to_shares

MiB = 1 << 20


def files(writes: list[Write]) -> dict[str, str]:
    return {w.file: w.value for w in writes}


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(0, 0), (1, 1), (2, 1), (1024, 39), (512, 20), (262144, 10000), (10**7, 10000)],
)
def test_shares_to_weight_matches_runc(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


def test_weight_to_shares_round_trips() -> None:
    assert weight_to_shares(0) == 0
    assert weight_to_shares(1) == 2
    assert weight_to_shares(10000) == 262144
    for weight in range(1, 10001):
        shares = weight_to_shares(weight)
        assert shares_to_weight(shares) == weight
        assert shares == 2 or shares_to_weight(shares - 1) == weight - 1  # the smallest one


def test_blkio_weight_conversion() -> None:
    assert blkio_weight_to_io_weight(0) == 0
    assert blkio_weight_to_io_weight(10) == 1
    assert blkio_weight_to_io_weight(1000) == 10000
    assert blkio_weight_to_io_weight(500) == 1 + (490 * 9999) // 990


def test_memory_swap_to_v2() -> None:
    assert memory_swap_to_v2(0, -1) == -1
    assert memory_swap_to_v2(-1, 100) == -1
    assert memory_swap_to_v2(0, 100) == 0
    assert memory_swap_to_v2(300, 100) == 200
    with pytest.raises(InvalidArgument):
        memory_swap_to_v2(50, 100)
    with pytest.raises(InvalidArgument):
        memory_swap_to_v2(50, 0)


FULL = {
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
    "memory": {"limit": 256 * MiB, "swap": 512 * MiB, "reservation": 128 * MiB},
    "pids": {"limit": 100},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "1GB", "limit": 1 << 30}],
}


def test_v1_mapping() -> None:
    writes = v1_writes(FULL)
    assert files(writes) == {
        "cpuset.cpus": "0-1",
        "cpuset.mems": "0",
        "cpu.shares": "512",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "50000",
        "memory.limit_in_bytes": str(256 * MiB),
        "memory.memsw.limit_in_bytes": str(512 * MiB),
        "memory.soft_limit_in_bytes": str(128 * MiB),
        "pids.max": "100",
        "hugetlb.2MB.limit_in_bytes": "0",
        "hugetlb.2MB.rsvd.limit_in_bytes": "0",
        "hugetlb.1GB.limit_in_bytes": str(1 << 30),
        "hugetlb.1GB.rsvd.limit_in_bytes": str(1 << 30),
    }
    by_file = {w.file: w for w in writes}
    assert by_file["cpu.shares"].controller == "cpu"
    assert by_file["memory.memsw.limit_in_bytes"].optional
    assert by_file["hugetlb.2MB.rsvd.limit_in_bytes"].optional
    assert not by_file["memory.limit_in_bytes"].optional
    # The period is written before the quota, as runc does.
    order = [w.file for w in writes]
    assert order.index("cpu.cfs_period_us") < order.index("cpu.cfs_quota_us")
    assert controllers_of(writes) == {"cpuset", "cpu", "memory", "pids", "hugetlb"}


def test_v2_mapping() -> None:
    writes = v2_writes(FULL)
    assert files(writes) == {
        "cpuset.cpus": "0-1",
        "cpuset.mems": "0",
        "cpu.weight": "20",
        "cpu.max": "50000 100000",
        "memory.swap.max": str(256 * MiB),  # memory+swap 512Mi minus memory 256Mi
        "memory.max": str(256 * MiB),
        "memory.low": str(128 * MiB),
        "pids.max": "100",
        "hugetlb.2MB.max": "0",
        "hugetlb.2MB.rsvd.max": "0",
        "hugetlb.1GB.max": str(1 << 30),
        "hugetlb.1GB.rsvd.max": str(1 << 30),
    }


def test_unlimited_values() -> None:
    res = {"cpu": {"quota": -1, "period": 100000}, "memory": {"limit": -1}, "pids": {"limit": -1}}
    assert files(v1_writes(res)) == {
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "memory.limit_in_bytes": "-1",
        "memory.memsw.limit_in_bytes": "-1",  # runc: unlimited memory lifts swap too
        "pids.max": "max",
    }
    v2 = files(v2_writes(res))
    assert v2 == {
        "cpu.max": "max 100000",
        "memory.swap.max": "max",
        "memory.max": "max",
        "pids.max": "max",
    }
    assert next(w for w in v2_writes(res) if w.file == "memory.swap.max").optional


def test_zero_means_unchanged() -> None:
    res = {"cpu": {"shares": 0, "quota": 0, "period": 0}, "memory": {"limit": 0}, "pids": {}}
    assert v1_writes(res) == []
    assert v2_writes(res) == []
    assert v1_writes({}) == []


def test_quota_without_period_on_v2_keeps_the_period() -> None:
    assert files(v2_writes({"cpu": {"quota": 20000}})) == {"cpu.max": "20000"}


def test_swappiness_range_on_v1() -> None:
    with pytest.raises(InvalidArgument, match="swappiness"):
        v1_writes({"memory": {"swappiness": 101}})


def test_v1_memory_extras_and_blkio() -> None:
    res = {
        "memory": {"swappiness": 10, "disableOOMKiller": True, "kernelTCP": 4096},
        "cpu": {"idle": 0, "burst": 1000, "realtimePeriod": 1000000, "realtimeRuntime": 950000},
        "blockIO": {
            "weight": 300,
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        },
    }
    writes = v1_writes(res)
    got = files(writes)
    assert got["memory.swappiness"] == "10"
    assert got["memory.oom_control"] == "1"
    assert got["memory.kmem.tcp.limit_in_bytes"] == "4096"
    assert got["cpu.idle"] == "0"
    assert got["cpu.cfs_burst_us"] == "1000"
    assert got["cpu.rt_runtime_us"] == "950000"
    assert got["blkio.throttle.read_bps_device"] == "8:0 1048576"
    weight = next(w for w in writes if w.controller == "blkio" and "weight" in w.file)
    assert (weight.file, weight.alt, weight.value) == ("blkio.bfq.weight", "blkio.weight", "300")


def test_v2_blockio_and_unsupported() -> None:
    res = {
        "blockIO": {
            "weight": 1000,
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}],
        },
        "memory": {"swappiness": 10, "kernelTCP": 1},
    }
    assert files(v2_writes(res)) == {"io.weight": "default 10000", "io.max": "8:16 wiops=max"}
    with pytest.raises(InvalidArgument, match="realtime"):
        v2_writes({"cpu": {"realtimeRuntime": 1000}})


def test_unified_on_v2_comes_last_and_is_checked() -> None:
    writes = v2_writes(
        {"memory": {"limit": 100 * MiB}, "unified": {"memory.high": "50000000", "cgroup.type": "x"}}
    )
    assert [w.file for w in writes] == ["memory.max", "memory.high", "cgroup.type"]
    assert writes[-1].controller == ""
    for bad in ("../memory.max", "memory/../../x", "nodot", "memory..max/x", ""):
        with pytest.raises(InvalidArgument):
            v2_writes({"unified": {bad: "1"}})
    with pytest.raises(InvalidArgument):
        v2_writes({"unified": {"memory.high": 5}})


def test_unified_refused_on_v1() -> None:
    with pytest.raises(InvalidArgument, match="cgroup v1"):
        v1_writes({"unified": {"memory.high": "1"}})
    assert v1_writes({"unified": {}}) == []


@pytest.mark.parametrize(
    "res",
    [
        {"cpu": {"shares": "512"}},
        {"cpu": {"shares": True}},
        {"cpu": {"cpus": 3}},
        {"cpu": {"cpus": "0\n1"}},
        {"memory": 5},
        {"hugepageLimits": [{"pageSize": "2M", "limit": 0}]},
        {"hugepageLimits": [{"pageSize": "../2MB", "limit": 0}]},
        {"hugepageLimits": [{"pageSize": "2MB", "limit": -5}]},
        {"hugepageLimits": {"pageSize": "2MB"}},
        {"blockIO": {"weightDevice": [{"major": "8", "minor": 0, "weight": 10}]}},
    ],
)
def test_bad_input_is_invalid_argument(res: dict) -> None:
    for translate in (v1_writes, v2_writes):
        with pytest.raises(InvalidArgument):
            translate(res)
