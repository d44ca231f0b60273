"""Layout detection from sample mountinfo text, path checks and stats parsing (pure)."""

from __future__ import annotations

import os

import pytest
from pycrio_cgroup_fs.layout import MODE_HYBRID, MODE_NONE, MODE_V1, MODE_V2, parse_mountinfo
from pycrio_cgroup_fs.paths import ancestors, check_id, clean_path

from pycrio.errors import InvalidArgument
from pycrio.kernel.cgroup_stats import (
    parse_blkio_v1,
    parse_int,
    parse_io_stat,
    parse_keyed,
    parse_pressure,
    stats_v1,
    stats_v2,
)
from pycrio.kernel.interfaces import BlkioDevice, PressureTotals

# This machine's shape: each v1 controller on its own, cgroup2 beside them.
HYBRID = """\
23 1 8:1 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""

# A classic systemd v1 host: cpu and cpuacct co-mounted, no cgroup2.
V1 = """\
25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb
32 25 0:28 /sub /mnt/hugetlb\\040copy rw - cgroup cgroup rw,hugetlb
"""

V2 = """\
30 23 0:26 / /sys/fs/cgroup rw,relatime shared:4 - cgroup2 cgroup2 rw,memory_recursiveprot
40 23 0:30 / /mnt/odd\\040dir rw - ext4 /dev/x rw
"""


def test_hybrid() -> None:
    layout = parse_mountinfo(HYBRID, frozenset({"hugetlb"}))
    assert layout.mode == MODE_HYBRID
    assert not layout.uses_v2
    assert layout.v1_mount("cpu") == "/sys/fs/cgroup/cpu"
    assert layout.v1_mount("cpuacct") == "/sys/fs/cgroup/cpuacct"
    assert layout.v1_mount("hugetlb") is None  # only on the unified side: not used on hybrid
    assert layout.unified is not None and layout.unified.mountpoint == "/sys/fs/cgroup/unified"
    assert layout.unified_controllers == {"hugetlb"}
    systemd = next(h for h in layout.v1 if h.name)
    assert (systemd.name, systemd.controllers) == ("systemd", frozenset())
    assert "/sys/fs/cgroup/systemd" in layout.managed_mounts()
    assert layout.managed_mounts()[-1] == "/sys/fs/cgroup/unified"
    assert len(layout.all_mounts()) == 7


def test_v1_comounted_and_duplicates() -> None:
    layout = parse_mountinfo(V1)
    assert layout.mode == MODE_V1
    assert layout.unified is None
    assert layout.v1_mount("cpu") == layout.v1_mount("cpuacct") == "/sys/fs/cgroup/cpu,cpuacct"
    # The hugetlb hierarchy is mounted twice; the mount of its root wins.
    assert layout.v1_mount("hugetlb") == "/sys/fs/cgroup/hugetlb"
    assert len(layout.v1) == 4  # systemd, cpu+cpuacct, memory, hugetlb


def test_duplicate_prefers_root_mount_and_unescapes() -> None:
    text = "\n".join(reversed(V1.splitlines()))  # the /sub bind mount comes first
    assert parse_mountinfo(text).v1_mount("hugetlb") == "/sys/fs/cgroup/hugetlb"
    only_sub = "32 25 0:28 /sub /mnt/hugetlb\\040copy rw - cgroup cgroup rw,hugetlb\n"
    h = parse_mountinfo(only_sub).v1[0]
    assert (h.mountpoint, h.root) == ("/mnt/hugetlb copy", "/sub")


def test_v2() -> None:
    layout = parse_mountinfo(V2, frozenset({"cpu", "memory", "pids"}))
    assert layout.mode == MODE_V2 and layout.uses_v2
    assert layout.managed_mounts() == ["/sys/fs/cgroup"]
    assert layout.v1 == ()


def test_v2_with_legacy_named_hierarchy_is_v2() -> None:
    text = V2 + "50 30 0:40 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
    layout = parse_mountinfo(text)
    assert layout.mode == MODE_V2
    assert layout.managed_mounts() == ["/sys/fs/cgroup"]
    assert "/sys/fs/cgroup/systemd" in layout.all_mounts()  # still cleaned on remove


def test_none_and_garbage() -> None:
    assert parse_mountinfo("").mode == MODE_NONE
    assert parse_mountinfo("garbage\n1 2 3 - cgroup\n").mode == MODE_NONE


@pytest.mark.parametrize(
    ("given", "clean"),
    [("/kubepods", "/kubepods"), ("//kubepods//besteffort/pod1/", "/kubepods/besteffort/pod1")],
)
def test_clean_path(given: str, clean: str) -> None:
    assert clean_path(given) == clean


@pytest.mark.parametrize(
    "bad", ["", "/", "//", "kubepods", "kubepods.slice", "/a/../b", "/a/./b", "/..", "/a\nb", None]
)
def test_clean_path_refuses(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        clean_path(bad)


def test_slice_hint() -> None:
    with pytest.raises(InvalidArgument, match="cgroup_manager"):
        clean_path("kubepods-besteffort.slice", "cgroup_parent")


def test_ids_and_ancestors() -> None:
    assert check_id("abc123", "pod id") == "abc123"
    for bad in ("", "a/b", "..", ".x", "a b", 5):
        with pytest.raises(InvalidArgument):
            check_id(bad, "pod id")
    assert ancestors("/a/b/c") == ["/a", "/a/b", "/a/b/c"]


def test_parsers() -> None:
    assert parse_keyed("a 1\nb 2\nbad\nc x\n") == {"a": 1, "b": 2}
    assert parse_int("max\n") == 0
    assert parse_int("42\n") == 42
    assert parse_int(None) == 0
    assert parse_int("50000 100000") == 50000


def reader(files: dict[str, str]):
    return lambda _controller, file: files.get(file)


def test_stats_v1_working_set() -> None:
    stats = stats_v1(
        reader(
            {
                "cpuacct.usage": "123456789\n",
                "memory.usage_in_bytes": "10000\n",
                "memory.limit_in_bytes": "50000\n",
                "memory.stat": "inactive_file 1\ntotal_inactive_file 3000\ntotal_rss 5000\n"
                "total_pgfault 77\ntotal_pgmajfault 2\n",
                "pids.current": "3\n",
                "pids.max": "100\n",
            }
        )
    )
    assert stats.cpu_usage_ns == 123456789
    assert stats.memory_usage_bytes == 10000
    assert stats.memory_working_set_bytes == 7000
    assert stats.memory_available_bytes == 43000
    assert stats.memory_rss_bytes == 5000
    assert (stats.memory_page_faults, stats.memory_major_page_faults) == (77, 2)
    assert (stats.pids, stats.pids_limit) == (3, 100)


def test_stats_v1_unlimited_and_missing() -> None:
    stats = stats_v1(
        reader(
            {
                "memory.usage_in_bytes": "100\n",
                "memory.limit_in_bytes": "9223372036854771712\n",
                "memory.stat": "total_inactive_file 500\n",
                "pids.max": "max\n",
            }
        )
    )
    assert stats.memory_working_set_bytes == 0  # never negative
    assert stats.memory_available_bytes is None  # no limit: the kubelet leaves it unset
    assert stats.memory_limit_bytes == 0
    assert stats.cpu_usage_ns == 0 and stats.pids_limit == 0
    assert stats.blkio == [] and stats.pressure == {} and stats.hugetlb == {}


def test_stats_v2() -> None:
    stats = stats_v2(
        reader(
            {
                "cpu.stat": "usage_usec 2500\nuser_usec 2000\n",
                "memory.current": "8192\n",
                "memory.max": "max\n",
                "memory.stat": "anon 4096\ninactive_file 1024\npgfault 9\npgmajfault 1\n",
                "pids.current": "1\n",
                "pids.max": "10\n",
            }
        )
    )
    assert stats.cpu_usage_ns == 2_500_000
    assert (stats.memory_usage_bytes, stats.memory_working_set_bytes) == (8192, 7168)
    assert stats.memory_available_bytes is None
    assert stats.memory_rss_bytes == 4096
    assert (stats.memory_page_faults, stats.memory_major_page_faults) == (9, 1)
    assert (stats.pids, stats.pids_limit) == (1, 10)


PSI = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=1570\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=851\n"
)


def test_stats_v1_cadvisor_counters_and_limits() -> None:
    files = {
        "cpuacct.stat": "user 250\nsystem 100\n",
        "cpu.stat": "nr_periods 40\nnr_throttled 3\nthrottled_time 5000000000\n",
        "cpu.shares": "512\n",
        "cpu.cfs_quota_us": "-1\n",
        "cpu.cfs_period_us": "100000\n",
        "memory.max_usage_in_bytes": "90000\n",
        "memory.stat": "total_cache 100\ntotal_mapped_file 30\ntotal_swap 0\n",
        "memory.kmem.usage_in_bytes": "4096\n",
        "memory.failcnt": "6\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "memory.soft_limit_in_bytes": "9223372036854771712\n",
        "memory.memsw.limit_in_bytes": "9223372036854771712\n",
        "blkio.io_service_bytes_recursive": "Total 0\n",
        "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n"
        "8:0 Total 12288\nTotal 12288\n",
        "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
        "hugetlb.2MB.usage_in_bytes": "2097152\n",
        "hugetlb.2MB.max_usage_in_bytes": "4194304\n",
        "cpu.pressure": PSI,
        "memory.pressure": PSI,
        "io.pressure": PSI,
    }
    stats = stats_v1(reader(files), ["2MB", "1GB"])
    ticks = os.sysconf("SC_CLK_TCK")
    assert stats.cpu_user_ns == 250 * 1_000_000_000 // ticks
    assert (stats.cpu_periods, stats.cpu_throttled_periods) == (40, 3)
    assert stats.cpu_throttled_ns == 5_000_000_000
    assert (stats.cpu_shares, stats.cpu_quota_us, stats.cpu_period_us) == (512, 0, 100000)
    assert (stats.memory_cache_bytes, stats.memory_mapped_file_bytes) == (100, 30)
    assert (stats.memory_max_usage_bytes, stats.memory_kernel_bytes) == (90000, 4096)
    assert (stats.memory_failcnt, stats.memory_oom_kills) == (6, 2)
    assert (stats.memory_reservation_bytes, stats.memory_swap_limit_bytes) == (0, 0)
    assert stats.blkio == [BlkioDevice(8, 0, {"Read": 4096, "Write": 8192, "Total": 12288},
                                       {"Read": 1, "Write": 2})]  # fmt: skip
    assert stats.hugetlb == {"2MB": (2097152, 4194304)}  # 1GB has no file: not reported
    assert stats.pressure["cpu"] == PressureTotals(1570, 851)


def test_stats_v2_cadvisor_counters_and_limits() -> None:
    files = {
        "cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\n"
        "nr_throttled 1\nthrottled_usec 700\n",
        "cpu.weight": "39\n",
        "cpu.max": "50000 100000\n",
        "memory.max": "1048576\n",
        "memory.low": "524288\n",
        "memory.swap.max": "max\n",
        "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        "memory.stat": "anon 1\nfile 2\nfile_mapped 3\nkernel 4\n",
        "io.stat": "253:1 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        "cpu.pressure": PSI,
        "memory.pressure": PSI,
    }
    stats = stats_v2(reader(files))
    assert (stats.cpu_user_ns, stats.cpu_system_ns, stats.cpu_throttled_ns) == (6000, 4000, 700000)
    # weight 39 is what 1024 shares (one CPU) become; back, the smallest shares giving 39
    assert (stats.cpu_shares, stats.cpu_quota_us, stats.cpu_period_us) == (999, 50000, 100000)
    assert stats.memory_available_bytes == 1048576
    assert (stats.memory_reservation_bytes, stats.memory_swap_limit_bytes) == (524288, 0)
    assert (stats.memory_failcnt, stats.memory_oom_kills) == (4, 1)
    assert (stats.memory_cache_bytes, stats.memory_kernel_bytes) == (2, 4)
    assert stats.blkio[0].bytes == {"Read": 10, "Write": 20, "Discard": 0, "Total": 30}
    assert stats.pressure == {}  # io.pressure missing: all three or none


def test_parsers_skip_what_they_do_not_know() -> None:
    assert parse_pressure(None) is None
    assert parse_pressure("some avg10=1.00 total=x\n") == PressureTotals(0, 0)
    assert parse_blkio_v1("junk\n8:x Read 1\nTotal 5\n", None) == []
    assert parse_io_stat("nodev\n1:2 rbytes=q\n")[0].bytes == {"Total": 0}
