"""An unset [runtime] cgroup_manager resolves to systemd on systemd nodes, else cgroupfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycrio.config import load
from pycrio.config.load import SYSTEMD_RUNTIME_DIR, resolve_cgroup_manager
from pycrio.config.schema import Config


def _config(value: str) -> Config:
    return Config(data={"runtime": {"cgroup_manager": value}})


def test_systemd_node_resolves_to_systemd(tmp_path: Path) -> None:
    marker = tmp_path / "run-systemd-system"
    marker.mkdir()
    cfg = _config("")
    resolve_cgroup_manager(cfg, str(marker))
    assert cfg.get("runtime.cgroup_manager") == "systemd"
    assert len(cfg.notes) == 1
    assert "'systemd'" in cfg.notes[0] and f"{marker} exists" in cfg.notes[0]
    assert "--cgroup-driver" in cfg.notes[0]


def test_other_node_resolves_to_cgroupfs(tmp_path: Path) -> None:
    cfg = _config("")
    resolve_cgroup_manager(cfg, str(tmp_path / "absent"))
    assert cfg.get("runtime.cgroup_manager") == "cgroupfs"
    assert "does not exist" in cfg.notes[0]


@pytest.mark.parametrize("value", ["cgroupfs", "systemd"])
def test_a_set_value_is_kept(tmp_path: Path, value: str) -> None:
    marker = tmp_path / "m"
    marker.mkdir()
    cfg = _config(value)
    resolve_cgroup_manager(cfg, str(marker) if value == "cgroupfs" else str(tmp_path / "absent"))
    assert cfg.get("runtime.cgroup_manager") == value
    assert cfg.notes == []


def test_load_resolves_for_this_node(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    conf = tmp_path / "c.conf"
    conf.write_text("")
    cfg = load(str(conf), str(tmp_path / "d"))
    expected = "systemd" if os.path.isdir(SYSTEMD_RUNTIME_DIR) else "cgroupfs"
    assert cfg.get("runtime.cgroup_manager") == expected
    assert cfg.notes and expected in cfg.notes[0]
    flagged = load(str(conf), str(tmp_path / "d"), {"cgroup_manager": "cgroupfs"})
    assert flagged.get("runtime.cgroup_manager") == "cgroupfs"
    assert flagged.notes == []
