"""linux.resources from the CRI, and the oom_score_adj clamp."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from pycrio.container import resources
from pycrio.errors import InvalidArgument

MiB = 1024 * 1024


def build(v2: bool = False, swap: bool = True, **kw: Any) -> dict[str, Any]:
    hugepages = kw.pop("hugepage_limits", [])
    r = api_pb2.LinuxContainerResources(**kw)
    for size, limit in hugepages:
        r.hugepage_limits.add(page_size=size, limit=limit)
    return resources.build(r, v2, swap)


def test_empty_means_unset() -> None:
    assert build() == {}


def test_cpu_and_memory() -> None:
    out = build(
        cpu_shares=512,
        cpu_quota=50000,
        cpu_period=100000,
        cpuset_cpus="0-1,3",
        cpuset_mems="0",
        memory_limit_in_bytes=64 * MiB,
    )
    assert out["cpu"] == {
        "shares": 512,
        "quota": 50000,
        "period": 100000,
        "cpus": "0-1,3",
        "mems": "0",
    }
    assert out["memory"] == {"limit": 64 * MiB, "swap": 64 * MiB}  # no swap by default


def test_swap() -> None:
    out = build(memory_limit_in_bytes=64 * MiB, memory_swap_limit_in_bytes=128 * MiB)
    assert out["memory"]["swap"] == 128 * MiB
    assert build(swap=False, memory_limit_in_bytes=64 * MiB)["memory"] == {"limit": 64 * MiB}


def test_hugepages_and_unified() -> None:
    out = build(v2=True, hugepage_limits=[("2MB", 4 * MiB)], unified={"memory.high": "1000000"})
    assert out["hugepageLimits"] == [{"pageSize": "2MB", "limit": 4 * MiB}]
    assert out["unified"] == {"memory.high": "1000000"}
    assert "unified" not in build(v2=False, unified={"memory.high": "1"})  # v1: ignored


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cpu_shares": 1}, "cpu_shares: 1"),
        ({"cpu_quota": 10}, "cpu_quota: 10"),
        # issue 17, CRI fuzzer: runc update wrote it and the kernel said EINVAL (INTERNAL)
        ({"cpu_quota": 9007199254740993}, "cpu_quota: 9007199254740993"),
        ({"cpu_period": 10}, "cpu_period: 10"),
        ({"cpuset_cpus": "0-a"}, "cpuset_cpus: '0-a'"),
        ({"cpuset_mems": "3-1"}, "cpuset_mems: range '3-1'"),
        ({"memory_limit_in_bytes": -1}, "memory_limit_in_bytes: -1"),
        ({"memory_limit_in_bytes": 1 * MiB}, "below the minimum"),
        ({"memory_limit_in_bytes": 64 * MiB, "memory_swap_limit_in_bytes": 32 * MiB}, "lower"),
        ({"memory_swap_limit_in_bytes": 64 * MiB}, "without memory_limit_in_bytes"),
        ({"hugepage_limits": [("2M", 1)]}, "page_size: '2M'"),
        ({"hugepage_limits": [("2MB", 1), ("2MB", 2)]}, "given twice"),
        ({"unified": {"../x": "1"}}, "unified: '../x'"),
    ],
)
def test_invalid(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        build(v2=True, **kw)


@pytest.mark.parametrize(
    ("requested", "floor", "expected"),
    [(-997, None, -997), (-997, 0, 0), (500, 0, 500), (-500, -600, -500), (1000, 900, 1000)],
)
def test_clamp_oom_score_adj(requested: int, floor: int | None, expected: int) -> None:
    assert resources.clamp_oom_score_adj(requested, floor) == expected


def test_clamp_warns_and_range(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pycrio.container"):
        resources.clamp_oom_score_adj(-999, 0)
    assert "CAP_SYS_RESOURCE" in caplog.text
    with pytest.raises(InvalidArgument, match="oom_score_adj: 1001"):
        resources.clamp_oom_score_adj(1001, None)


def test_host_detection(tmp_path: Path) -> None:
    f = tmp_path / "oom"
    f.write_text("-500\n")
    assert resources.own_oom_score_adj(str(f)) == -500
    assert not resources.cgroup_v2_host(str(tmp_path))
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert resources.cgroup_v2_host(str(tmp_path))
    assert not resources.swap_accounting_host(False, str(tmp_path))
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.memsw.limit_in_bytes").write_text("0")
    assert resources.swap_accounting_host(False, str(tmp_path))
