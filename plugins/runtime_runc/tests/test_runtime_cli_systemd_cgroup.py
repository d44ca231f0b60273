"""--systemd-cgroup follows [runtime] cgroup_manager unless the handler sets systemd_cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest
from pycrio_runtime_runc.driver import OCIRuntimeCLI

from pycrio.config import defaults
from pycrio.kernel.interfaces import DriverContext


@pytest.mark.parametrize(
    ("manager", "option", "expected"),
    [
        ("systemd", None, True),
        ("cgroupfs", None, False),
        ("systemd", False, False),
        ("cgroupfs", True, True),
    ],
)
def test_systemd_cgroup_default(
    tmp_path: Path, manager: str, option: bool | None, expected: bool
) -> None:
    config = defaults()
    config.data["runtime"]["cgroup_manager"] = manager
    options = {} if option is None else {"systemd_cgroup": option}
    ctx = DriverContext("runc", config, options, str(tmp_path), str(tmp_path))
    driver = OCIRuntimeCLI(ctx)
    assert driver.systemd_cgroup is expected
    assert ("--systemd-cgroup" in driver._argv("state", "x")) is expected
