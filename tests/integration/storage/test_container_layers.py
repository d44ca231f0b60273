"""Overlay root filesystems on the real kernel: many layers, long paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pycrio.storage.container_layers import ContainerLayers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs needs root")


class Layers:
    """The two things ContainerLayers asks of a layer store, over real directories."""

    driver = "overlay"

    def __init__(self, root: Path) -> None:
        self.root = root

    def diff_dir(self, chain_id: str) -> str:
        return str(self.root / chain_id / "diff")


def test_an_image_of_120_layers_under_a_long_root_mounts(tmp_path: Path) -> None:
    # a root like /var/lib/containers/storage/overlay/layers/<64 hex>/diff, and deeper
    root = tmp_path / ("deep-" * 12) / "storage"
    layers = Layers(root / "overlay" / "layers")
    chain = [f"{i:064x}" for i in range(120)]
    for i, chain_id in enumerate(chain):
        diff = Path(layers.diff_dir(chain_id))
        diff.mkdir(parents=True)
        (diff / f"file{i}").write_text(str(i))
        (diff / "same").write_text(str(i))
    assert len(":".join(layers.diff_dir(c) for c in chain)) > 4096
    store = ContainerLayers(str(root), layers)  # type: ignore[arg-type]
    open_fds = len(os.listdir("/proc/self/fd"))
    merged = Path(store.create("c1", chain))
    try:
        assert os.path.ismount(merged)
        names = set(os.listdir(merged))
        assert {f"file{i}" for i in range(120)} <= names
        assert (merged / "same").read_text() == "119"  # the top layer wins
        (merged / "new").write_text("x")
        assert (root / "overlay-containers" / "c1" / "upper" / "new").read_text() == "x"
        assert len(os.listdir("/proc/self/fd")) == open_fds  # the layer descriptors are closed
    finally:
        store.remove("c1")
    assert not merged.exists()


def test_a_short_image_keeps_readable_mount_options(tmp_path: Path) -> None:
    layers = Layers(tmp_path / "layers")
    chain = ["a" * 64, "b" * 64]
    for chain_id in chain:
        Path(layers.diff_dir(chain_id)).mkdir(parents=True)
    store = ContainerLayers(str(tmp_path), layers)  # type: ignore[arg-type]
    merged = store.create("c2", chain)
    try:
        with open("/proc/self/mountinfo") as f:
            line = next(line for line in f if f" {merged} " in line)
        assert layers.diff_dir(chain[1]) in line  # real paths, top layer first
        assert "/proc/self/fd/" not in line
    finally:
        store.remove("c2")


def test_writable_layer_is_volatile_and_removed(tmp_path: Path) -> None:
    """Mounted ``volatile`` (no syncfs of the whole upper filesystem on unmount)."""
    layers = Layers(tmp_path / "layers")
    Path(layers.diff_dir("c" * 64)).mkdir(parents=True)
    store = ContainerLayers(str(tmp_path), layers)  # type: ignore[arg-type]
    merged = Path(store.create("c3", ["c" * 64]))
    try:
        with open("/proc/self/mountinfo") as f:
            options = next(line for line in f if f" {merged} " in line).split()[-1].split(",")
        # older kernels show "volatile", newer ones "fsync=volatile"
        assert store.volatile
        assert "volatile" in options or "fsync=volatile" in options, options
        (merged / "written").write_text("x")
        os.sync()  # a sync must not fail on a volatile overlay
    finally:
        store.remove("c3")
    # the layer goes, with overlay's incompat/volatile marker in its work dir
    assert not (tmp_path / "overlay-containers" / "c3").exists()


@pytest.mark.parametrize("count", [1, 3])
def test_image_volume_mount_is_read_only_and_goes_with_the_container(
    tmp_path: Path, count: int
) -> None:
    layers = Layers(tmp_path / "layers")
    chain = [f"{i:064x}" for i in range(count)]
    for i, chain_id in enumerate(chain):
        diff = Path(layers.diff_dir(chain_id))
        diff.mkdir(parents=True)
        (diff / "same").write_text(str(i))
    store = ContainerLayers(str(tmp_path), layers)  # type: ignore[arg-type]
    store.create("c3", chain)
    try:
        # one layer too: overlayfs needs two lower dirs without an upper one
        volume = Path(store.mount_image("c3", 0, chain))
        assert os.path.ismount(volume)
        assert (volume / "same").read_text() == str(count - 1)
        with pytest.raises(OSError, match="Read-only file system"):
            (volume / "new").write_text("x")
        assert store.mount_image("c3", 0, chain) == str(volume)  # mounted once
    finally:
        store.remove("c3")
    assert not volume.exists()
    assert str(volume) not in Path("/proc/self/mountinfo").read_text()
