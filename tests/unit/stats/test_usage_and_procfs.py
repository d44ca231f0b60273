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


def test_rate_is_usage_over_time_since_the_previous_reading() -> None:
    rates = CpuRates()
    assert rates.rate("c1", 1_000_000_000, 5_000_000_000) is None  # first reading
    # 0.5 s of CPU in 2 s: a quarter of a core
    assert rates.rate("c1", 3_000_000_000, 5_500_000_000) == 250_000_000
    assert rates.rate("c1", 3_000_000_000, 5_600_000_000) is None  # no time passed
    assert rates.rate("c1", 4_000_000_000, 1) is None  # counter reset: no rate
    assert rates.rate("c1", 5_000_000_000, 1_000_000_001) == 1_000_000_000
    rates.rate("c2", 1, 1)
    rates.forget({"c2"})
    assert len(rates) == 1 and rates.rate("c1", 6_000_000_000, 2) is None


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
