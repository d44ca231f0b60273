"""Finding catatonit and naming it pause (pycrio.sandbox.pause)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycrio.errors import FailedPrecondition
from pycrio.sandbox import pause


def executable(path: Path) -> str:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_configured_path_wins_and_must_be_executable(tmp_path: Path) -> None:
    assert pause.find_init(executable(tmp_path / "init")) == str(tmp_path / "init")
    (tmp_path / "plain").write_text("")
    with pytest.raises(FailedPrecondition, match="pod_init_path .* is not an executable"):
        pause.find_init(str(tmp_path / "plain"))


def test_missing_catatonit_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(pause, "FALLBACK_PATHS", ())
    with pytest.raises(FailedPrecondition, match="install the catatonit package"):
        pause.find_init("")


def test_link_is_named_pause_and_follows_the_configuration(tmp_path: Path) -> None:
    first, second = executable(tmp_path / "a"), executable(tmp_path / "b")
    directory = pause.link(str(tmp_path / "bin"), first)
    assert os.readlink(os.path.join(directory, "pause")) == first
    pause.link(directory, second)
    assert os.readlink(os.path.join(directory, "pause")) == second
    assert sorted(os.listdir(directory)) == ["pause"]  # no temporary link left
    argv, env = pause.command(directory)
    assert argv == ["pause", "-P"]
    assert env["PATH"].split(":")[0] == directory
