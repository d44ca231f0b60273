"""The files in contrib/: a valid systemd unit and crictl configuration."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

CONTRIB = Path(__file__).parents[2] / "contrib"
UNIT = CONTRIB / "systemd" / "pycrio.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_keys() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["KillMode"] == "process"  # conmon and containers survive restarts
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["ExecStart"].split()[0] == "/opt/pycrio/bin/pycrio"  # as docs/install.md
    assert service["Delegate"] == "yes"
    assert service["TasksMax"] == "infinity"
    assert service["Restart"] == "on-failure"
    assert int(service["OOMScoreAdjust"]) == -999
    assert int(service["LimitNOFILE"]) >= 1 << 20
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_install_doc_matches_the_unit() -> None:
    install = (Path(__file__).parents[2] / "docs" / "install.md").read_text()
    assert "/opt/pycrio/bin/pycrio" in install


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The daemon is not installed under /opt here: point ExecStart at a real binary.
    text = UNIT.read_text().replace("/opt/pycrio/bin/pycrio", shutil.which("true") or "/bin/true")
    copy = tmp_path / "pycrio.service"
    copy.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pycrio.service" not in result.stderr, result.stderr


def test_crictl_yaml() -> None:
    lines = (CONTRIB / "crictl.yaml").read_text().splitlines()
    pairs = dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))
    pairs = {k.strip(): v.strip() for k, v in pairs.items()}
    assert pairs["runtime-endpoint"] == "unix:///run/pycrio/pycrio.sock"
    assert pairs["image-endpoint"] == "unix:///run/pycrio/pycrio.sock"
    assert pairs["timeout"] == "10"
