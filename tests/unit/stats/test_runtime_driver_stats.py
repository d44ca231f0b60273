"""Container stats come from the runtime driver when the core cannot read the cgroup."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pycrio.config.load import defaults
from pycrio.container.record import RUNNING, ContainerRecord
from pycrio.errors import NotFound, Unimplemented
from pycrio.kernel.interfaces import CgroupStats
from pycrio.stats.server import StatsServer


class _Driver:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.asked: list[str] = []

    def stats(self, container_id: str) -> CgroupStats:
        self.asked.append(container_id)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class _Cgroups:
    def stats(self, path: str) -> CgroupStats:
        if path == "/visible":
            return CgroupStats(cpu_usage_ns=1, memory_usage_bytes=7, memory_working_set_bytes=7)
        raise NotFound(f"no cgroup {path}")


def _server(driver: _Driver) -> StatsServer:
    kernel = SimpleNamespace(
        config=defaults(),
        cgroup_driver=_Cgroups(),
        runtime_driver=lambda handler: driver if handler == "vm" else None,
    )
    containers = SimpleNamespace(rootfs=None)
    return StatsServer(kernel, None, containers)  # type: ignore[arg-type]


def _record(cgroups_path: str) -> ContainerRecord:
    return ContainerRecord(
        id="c1",
        name="app",
        attempt=0,
        sandbox_id="p1",
        reservation="r",
        image="i",
        image_id="sha256:x",
        image_ref="sha256:x",
        runtime_handler="vm",
        created_at=1,
        cgroups_path=cgroups_path,
        state=RUNNING,
    )


def test_a_container_in_a_vm_gets_its_drivers_stats() -> None:
    driver = _Driver(CgroupStats(cpu_usage_ns=5, memory_usage_bytes=9, memory_working_set_bytes=8))
    stats = _server(driver)._read_container_stats(_record("/in-the-guest"))
    assert driver.asked == ["c1"]
    assert stats.memory.working_set_bytes.value == 8
    assert stats.cpu.usage_core_nano_seconds.value == 5


def test_a_visible_cgroup_is_read_by_the_core() -> None:
    driver = _Driver(CgroupStats(memory_working_set_bytes=8))
    stats = _server(driver)._read_container_stats(_record("/visible"))
    assert driver.asked == []
    assert stats.memory.working_set_bytes.value == 7


def test_a_driver_without_stats_leaves_them_unset() -> None:
    stats = _server(_Driver(Unimplemented("no")))._read_container_stats(_record("/gone"))
    assert not stats.HasField("memory") and not stats.HasField("cpu")
