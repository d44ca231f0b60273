"""Lookups inside a rootfs never leave it, whatever symlinks the image holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycrio.container.rootfs import mkdir_in_root, read_file_in_root, secure_join
from pycrio.errors import InvalidArgument


@pytest.mark.parametrize(
    ("link", "target", "expected"),
    [
        ("etc/passwd", "/outside/secret", "outside/secret"),  # absolute: from the rootfs
        ("etc/passwd", "../../../../outside/secret", "outside/secret"),  # .. stops at root
        ("etc/passwd", "real", "etc/real"),  # relative to the link's dir
    ],
)
def test_secure_join_resolves_symlinks_inside_root(
    tmp_path: Path, link: str, target: str, expected: str
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink(target, root / link)
    assert secure_join(str(root), "/" + link) == str(root / expected)


def test_secure_join_dotdot_cannot_escape(tmp_path: Path) -> None:
    assert secure_join(str(tmp_path), "/../../etc/passwd") == str(tmp_path / "etc/passwd")


def test_secure_join_symlink_loop_is_refused(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(InvalidArgument, match="symbolic links"):
        secure_join(str(tmp_path), "/a")


def test_read_file_through_absolute_symlink_stays_in_root(tmp_path: Path) -> None:
    outside = tmp_path / "host-secret"
    outside.write_text("host")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink(str(outside), root / "etc" / "passwd")  # would be the host's file if followed
    assert read_file_in_root(str(root), "/etc/passwd") is None
    (root / str(outside).lstrip("/")).parent.mkdir(parents=True)
    (root / str(outside).lstrip("/")).write_text("image")
    assert read_file_in_root(str(root), "/etc/passwd") == "image"


def test_read_file_missing_and_not_regular(tmp_path: Path) -> None:
    assert read_file_in_root(str(tmp_path), "/etc/group") is None
    (tmp_path / "etc" / "group").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        read_file_in_root(str(tmp_path), "/etc/group")


def test_read_file_too_large(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 100)
    with pytest.raises(InvalidArgument, match="larger than"):
        read_file_in_root(str(tmp_path), "/big", max_size=10)


def test_mkdir_in_root_follows_symlinks_inside_root(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(str(host), root / "data")  # image says /data -> <host dir>
    created = mkdir_in_root(str(root), "/data/vol")
    assert created == str(root / str(host).lstrip("/") / "vol")
    assert os.path.isdir(created)
    assert not (host / "vol").exists()


def test_mkdir_in_root_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(InvalidArgument, match="/data exists in the rootfs"):
        mkdir_in_root(str(tmp_path), "/data/vol")
