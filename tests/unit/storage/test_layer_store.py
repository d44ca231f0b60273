from __future__ import annotations

import array
import fcntl
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from pycrio.storage import layer_store
from pycrio.storage.layer_store import LayerStore, chain_ids, mark_top_directory
from pycrio.storage.layer_unpack import LayerSummary, WhiteoutMode, unpack_layer


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unpacker(data: bytes):
    def unpack(diff_dir: str, mode: WhiteoutMode) -> LayerSummary:
        return unpack_layer(io.BytesIO(data), diff_dir, mode)

    return unpack


def test_chain_ids_follow_the_image_spec() -> None:
    a, b = digest(b"a"), digest(b"b")
    chains = chain_ids([a, b])
    assert chains[0] == a
    assert chains[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_ids([]) == []


def test_overlay_layers_hold_only_their_own_changes(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path), "overlay")
    l1, l2 = tar_of({"a": b"1"}), tar_of({".wh.a": b"", "b": b"22"})
    c1, c2 = chain_ids([digest(l1), digest(l2)])
    first = store.create(c1, "", digest(l1), "sha256:x", unpacker(l1))
    second = store.create(c2, c1, digest(l2), "sha256:y", unpacker(l2))
    assert (first.size, second.size) == (1, 2)
    assert sorted(os.listdir(store.diff_dir(c2))) == ["a", "b"]
    assert os.stat(os.path.join(store.diff_dir(c2), "a")).st_rdev == 0  # whiteout device
    assert store.usage() == (3, first.entries + second.entries)
    assert store.get(c2) == second and store.has(c1)
    assert os.listdir(store.tmp_dir) == []


def test_vfs_layers_are_full_snapshots(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path), "vfs")
    l1, l2 = tar_of({"a": b"1", "keep": b"k"}), tar_of({".wh.a": b"", "b": b"22"})
    c1, c2 = chain_ids([digest(l1), digest(l2)])
    store.create(c1, "", digest(l1), "sha256:x", unpacker(l1))
    store.create(c2, c1, digest(l2), "sha256:y", unpacker(l2))
    assert sorted(os.listdir(store.diff_dir(c2))) == ["b", "keep"]
    assert sorted(os.listdir(store.diff_dir(c1))) == ["a", "keep"]


def test_failed_unpack_leaves_nothing(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path), "overlay")

    def boom(diff_dir: str, mode: WhiteoutMode) -> LayerSummary:
        Path(diff_dir, "partial").write_text("x")
        raise ValueError("network died")

    with pytest.raises(ValueError):
        store.create("sha256:" + "a" * 64, "", "sha256:" + "a" * 64, "sha256:x", boom)
    assert store.all() == []
    assert os.listdir(store.tmp_dir) == []


def test_clean_tmp_and_remove(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path), "overlay")
    leftover = Path(store.tmp_dir, "layer-killed")
    (leftover / "diff").mkdir(parents=True)
    assert store.clean_tmp() == ["layer-killed"]
    assert os.listdir(store.tmp_dir) == []
    data = tar_of({"f": b"x"})
    chain = digest(data)
    store.create(chain, "", chain, "sha256:x", unpacker(data))
    store.remove(chain)
    store.remove(chain)  # idempotent
    assert not store.has(chain) and os.listdir(store.tmp_dir) == []


def test_unknown_driver_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown storage driver"):
        LayerStore(str(tmp_path), "btrfs")


def _inode_flags(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, layer_store._FS_IOC_GETFLAGS, flags, True)
        return flags[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def test_layers_are_built_under_a_topdir_so_ext4_spreads_them(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path), "overlay")
    flags = _inode_flags(Path(store.tmp_dir))
    if flags is None or not mark_top_directory(store.tmp_dir):
        pytest.skip("this filesystem has no inode flags (TOPDIR is an ext2/3/4 hint)")
    assert flags & layer_store._FS_TOPDIR_FL
    assert mark_top_directory(store.tmp_dir)  # idempotent
    assert not (_inode_flags(Path(store.layers_dir)) or 0) & layer_store._FS_TOPDIR_FL


def test_topdir_hint_is_ignored_where_unsupported(tmp_path: Path) -> None:
    assert mark_top_directory(str(tmp_path / "missing")) is False
    if os.path.isdir("/proc/self"):
        assert mark_top_directory("/proc/self") is False  # procfs: no inode flags
