"""Layout detection from sample mountinfo text, path checks and stats parsing (pure)."""

from __future__ import annotations

import pytest
from pycrio_cgroup_fs.layout import MODE_HYBRID, MODE_NONE, MODE_V1, MODE_V2, parse_mountinfo
from pycrio_cgroup_fs.paths import ancestors, check_id, clean_path
from pycrio_cgroup_fs.stats import parse_int, parse_keyed, stats_v1, stats_v2

from pycrio.errors import InvalidArgument

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
    assert stats.memory_available_bytes == 0  # no limit, nothing to report
    assert stats.cpu_usage_ns == 0 and stats.pids_limit == 0


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
    assert stats.memory_available_bytes == 0
    assert stats.memory_rss_bytes == 4096
    assert (stats.memory_page_faults, stats.memory_major_page_faults) == (9, 1)
    assert (stats.pids, stats.pids_limit) == (1, 10)
