"""CPU rates between readings, CRI usage messages, and what /proc says about processes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from cri_api.v1 import api_pb2

from pycrio.kernel.cgroup_stats import hugepage_sizes, processes
from pycrio.kernel.interfaces import CgroupStats
from pycrio.stats import procfs
from pycrio.stats.usage import CpuRates, fill_cpu, fill_memory

LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            1024                 1048576              files     
Max nice priority         0                    0                    
"""  # noqa: W291 - the kernel pads its columns with spaces


def test_rate_is_usage_over_time_since_a_reading_at_least_a_second_old() -> None:
    s = 1_000_000_000
    rates = CpuRates()
    assert rates.rate("c1", 1 * s, 5 * s) is None  # first reading
    assert rates.rate("c1", 1 * s + 5, 5 * s) is None  # still nothing a second old
    # 0.5 s of CPU in 2 s: a quarter of a core
    assert rates.rate("c1", 3 * s, 5 * s + s // 2) == 250_000_000
    # a burst of readings right after: measured against the same baseline, not each other
    # (the baseline is the reading at 1 s + 5 ns)
    burst = rates.rate("c1", 3 * s + 1000, 5 * s + s // 2 + 1000)
    assert burst == (s // 2 + 1000) * s // (2 * s + 995)
    # the baseline moved to the burst's last reading: 1.5 s of CPU in 2 s
    assert rates.rate("c1", 5 * s, 7 * s) == (3 * s // 2 - 1000) * s // (2 * s - 1000)
    assert rates.rate("c1", 7 * s, 1) is None  # counter went back: start over
    rates.rate("c2", 1, 1)
    rates.forget({"c2"})
    assert len(rates) == 1 and rates.rate("c1", 9 * s, 2) is None


def test_usage_messages_leave_unknown_values_unset() -> None:
    cpu, memory = api_pb2.CpuUsage(), api_pb2.MemoryUsage()
    fill_cpu(cpu, CgroupStats(cpu_usage_ns=7), 42, None)
    fill_memory(memory, CgroupStats(memory_working_set_bytes=3), 42)
    assert cpu.usage_core_nano_seconds.value == 7 and not cpu.HasField("usage_nano_cores")
    assert memory.working_set_bytes.value == 3 and not memory.HasField("available_bytes")
    fill_cpu(cpu, CgroupStats(cpu_usage_ns=7), 42, 0)
    fill_memory(memory, CgroupStats(memory_available_bytes=0), 42)
    assert cpu.HasField("usage_nano_cores") and memory.HasField("available_bytes")


def test_parse_limits() -> None:
    assert procfs.parse_limits(LIMITS) == {
        "max_cpu_time": procfs.UNLIMITED,
        "max_open_files": 1024,
        "max_nice_priority": 0,
    }
    assert procfs.parse_limits("") == {}
    assert procfs.parse_limits("garbage\nMax x\n") == {}


def test_usage_counts_this_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        usage = procfs.usage([os.getpid(), 2**22 + 12345])  # the second one does not exist
        assert usage.processes == 1
        assert usage.threads >= 1
        assert usage.sockets >= 1
        assert usage.file_descriptors > usage.sockets
        with open("/proc/self/limits") as f:
            assert usage.ulimits == procfs.parse_limits(f.read())


def test_hugepage_sizes_and_processes(tmp_path: Path) -> None:
    for name in ("hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB", "other"):
        (tmp_path / "mm" / name).mkdir(parents=True)
    assert hugepage_sizes(str(tmp_path / "mm")) == ("64KB", "2MB", "1GB")
    assert hugepage_sizes(str(tmp_path / "none")) == ()

    (tmp_path / "cg" / "child").mkdir(parents=True)
    (tmp_path / "cg" / "cgroup.procs").write_text("7\n3\n")
    (tmp_path / "cg" / "child" / "cgroup.procs").write_text("5\n3\n")
    files = {str(p): p.read_text() for p in tmp_path.rglob("cgroup.procs")}
    assert processes(str(tmp_path / "cg"), files.get) == [3, 5, 7]
