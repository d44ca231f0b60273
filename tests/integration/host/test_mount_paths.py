"""Real mounts at awkward paths: every user of mountinfo finds and unmounts them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycrio import maintenance
from pycrio.linux import libc
from pycrio.sandbox import namespaces

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("needs root to mount", allow_module_level=True)

NAMES = ["with space", "tab\there", "new\nline", "café日本", "back\\slash é"]


def test_awkward_mount_points_are_found_and_unmounted(tmp_path: Path) -> None:
    points = [tmp_path / name for name in NAMES]
    for p in points:
        p.mkdir()
        libc.mount("tmpfs", str(p), "tmpfs", 0, "size=64k")
    try:
        for p in points:
            assert namespaces.is_mountpoint(str(p)), repr(p)
        assert sorted(maintenance.mounts_under(str(tmp_path))) == sorted(map(str, points))
        lines: list[str] = []
        assert maintenance.unmount_all([str(tmp_path)], lines.append) == []
        assert sorted(lines) == sorted(f"unmounted {p}" for p in points)
        assert not any(namespaces.is_mountpoint(str(p)) for p in points)
    finally:
        for p in points:
            libc.unmount(str(p))
