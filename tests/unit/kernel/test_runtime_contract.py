"""The RuntimeDriver contract's defaults: what a new driver gets without writing it,
and how the offline maintenance commands treat a driver that cannot answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pycrio.config import Config
from pycrio.config.load import defaults
from pycrio.errors import Internal, Unimplemented
from pycrio.kernel.interfaces import (
    CreateRequest,
    DriverContext,
    ExecResult,
    ExitStatus,
    LeftoverProcess,
    RuntimeDriver,
    RuntimeFeatures,
    RuntimeState,
)
from pycrio.maintenance import Drivers, check, wipe


class MinimalDriver(RuntimeDriver):
    """Only the abstract methods: a driver with nothing optional."""

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.exits: dict[str, ExitStatus] = {}

    def exit_status(self, container_id: str) -> ExitStatus | None:
        return self.exits.get(container_id)

    def create(self, request: CreateRequest) -> int:
        return 1

    def start(self, container_id: str) -> None:
        return None

    def state(self, container_id: str) -> RuntimeState:
        return RuntimeState(id=container_id, status="running")

    def kill(self, container_id: str, signal: int, *, all_processes: bool = False) -> None:
        return None

    def delete(self, container_id: str, *, force: bool = False) -> None:
        return None

    def exec_sync(
        self, container_id: str, argv: list[str], timeout: float, *, max_output: int = 16 << 20
    ) -> ExecResult:
        return ExecResult(exit_code=0)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        return None


@pytest.fixture
def driver(tmp_path: Any) -> MinimalDriver:
    ctx = DriverContext("minimal", defaults(), {}, str(tmp_path / "s"), str(tmp_path / "r"))
    return MinimalDriver(ctx)


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.exec_start("c", ["true"], tty=False, stdin=False),
        lambda d: d.attach("c"),
        lambda d: d.reopen_log("c"),
        lambda d: d.pause("c"),
        lambda d: d.resume("c"),
        lambda d: d.stats("c"),
    ],
    ids=["exec_start", "attach", "reopen_log", "pause", "resume", "stats"],
)
def test_optional_operations_are_unimplemented_not_python_errors(
    driver: MinimalDriver, call: Any
) -> None:
    with pytest.raises(Unimplemented, match="MinimalDriver"):
        call(driver)


def test_exits_reach_the_listener_and_recover_reports_missed_ones(driver: MinimalDriver) -> None:
    got: list[tuple[str, ExitStatus]] = []
    done = ExitStatus(exit_code=3, finished_at=1)
    driver.notify_exit("early", done)  # before the core listens: dropped, recover covers it
    driver.set_exit_listener(lambda cid, status: got.append((cid, status)))
    driver.notify_exit("a", done)
    assert got == [("a", done)]
    driver.exits["b"] = done
    assert driver.recover(["a", "b"]) == {"b": done}
    assert driver.features() == RuntimeFeatures()


def test_offline_operations_report_nothing_by_default(driver: MinimalDriver) -> None:
    # a driver that starts no process of its own and keeps no files has nothing to add
    assert driver.leftover_processes(()) == []
    assert driver.leftover_files(()) == []
    assert driver.remove_leftovers(()) == []


# --- how pycrio check / wipe treat drivers that cannot answer offline --------------------


class Unanswering(MinimalDriver):
    def leftover_processes(self, known_ids: Any) -> list[LeftoverProcess]:
        raise Unimplemented("no process table offline")

    def leftover_files(self, known_ids: Any) -> list[str]:
        raise Internal("its state is unreadable")

    def remove_leftovers(self, known_ids: Any) -> list[str]:
        raise Unimplemented("nothing to remove with")


class Listing(MinimalDriver):
    def leftover_processes(self, known_ids: Any) -> list[LeftoverProcess]:
        return [LeftoverProcess(p, f"shim {p}") for p in (11, 12) if str(p) not in known_ids]


def _ctx(tmp_path: Path, name: str) -> DriverContext:
    return DriverContext(name, defaults(), {}, str(tmp_path / "s"), str(tmp_path / "r"))


def test_unimplemented_and_failing_operations_become_notes(tmp_path: Path) -> None:
    drivers = Drivers(
        runtimes={
            "vm": Unanswering(_ctx(tmp_path, "vm")),
            "other": Listing(_ctx(tmp_path, "other")),
        }
    )
    found = drivers.leftover_processes({"12"})
    assert found == [LeftoverProcess(11, "shim 11")]  # the other driver is still asked
    assert drivers.leftover_files(()) == {}
    assert drivers.remove_leftovers(()) == []
    assert drivers.notes == [
        "runtime handler 'vm' cannot list its leftover processes offline: no process table offline",
        "runtime handler 'vm' could not list its leftover files: its state is unreadable",
        "runtime handler 'vm' cannot remove its leftovers offline: nothing to remove with",
    ]
    assert drivers.cgroup_processes("/pycrio/pod-x") == []
    assert drivers.notes[-1] == "no cgroup driver: processes left in cgroups are not looked for"
    assert drivers.remove_cgroup("/pycrio/pod-x") == "no cgroup driver to remove it"


@pytest.fixture
def offline_config(tmp_path: Path) -> Config:
    cfg = defaults()
    cfg.data["root"] = str(tmp_path / "root")
    cfg.data["runroot"] = str(tmp_path / "runroot")
    cfg.data["runtime"]["cgroup_manager"] = "no-such-cgroup-driver"
    cfg.data["runtime"]["runtimes"] = {"vm": {"driver": "no-such-runtime-driver"}}
    return cfg


def test_check_and_wipe_without_installed_drivers(offline_config: Config) -> None:
    config = offline_config
    lines: list[str] = []
    assert check(config, out=lines.append) == 0
    assert lines == [
        "no problems found",
        "note: cannot ask: runtime handler 'vm': driver 'no-such-runtime-driver' is not installed",
        "note: cannot ask: cgroup manager: driver 'no-such-cgroup-driver' is not installed",
    ]
    lines.clear()
    assert wipe(config, lines.append) == 0
    assert lines[-2:] == [
        "note: cannot ask: runtime handler 'vm': driver 'no-such-runtime-driver' is not installed",
        "note: cannot ask: cgroup manager: driver 'no-such-cgroup-driver' is not installed",
    ]


def test_a_driver_that_cannot_be_built_is_a_note(offline_config: Config) -> None:
    config = offline_config
    config.data["runtime"]["cgroup_manager"] = "cgroupfs"
    config.data.setdefault("plugins", {})["cgroupfs"] = {"remove_timeout": "soon"}
    lines: list[str] = []
    assert check(config, out=lines.append) == 0
    assert lines[0] == "no problems found"
    assert any(
        line.startswith("note: cannot ask: cgroup manager: driver 'cgroupfs'")
        and "failed to initialise" in line
        and "remove_timeout" in line
        for line in lines
    ), lines
