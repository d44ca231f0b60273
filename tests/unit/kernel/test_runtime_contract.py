"""The RuntimeDriver contract's defaults: what a new driver gets without writing it."""

from __future__ import annotations

from typing import Any

import pytest

from pycrio.config.load import defaults
from pycrio.errors import Unimplemented
from pycrio.kernel.interfaces import (
    CreateRequest,
    DriverContext,
    ExecResult,
    ExitStatus,
    RuntimeDriver,
    RuntimeFeatures,
    RuntimeState,
)


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
