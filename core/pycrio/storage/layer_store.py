"""Unpacked image layers, keyed by chain ID.

A layer is built in a private temporary directory and appears under its
chain ID by one rename, so a daemon killed mid-unpack leaves nothing visible:
only a temporary directory, removed at the next start.

Two drivers, as in containers/storage:

- ``overlay``: ``diff/`` holds this layer's changes alone, with OCI whiteouts
  turned into overlayfs whiteouts; a container's rootfs is an overlay mount
  of the chain's diffs. Layers are independent, so they unpack in parallel.
- ``vfs``: ``diff/`` holds the full filesystem up to this layer (a copy of
  the parent with this layer applied): costly in space, but needs no
  overlayfs from the kernel.
"""

from __future__ import annotations

import array
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pycrio import reaper
from pycrio.errors import Internal
from pycrio.storage.atomic import fsync_dir, write_atomic
from pycrio.storage.layer_unpack import LayerSummary, WhiteoutMode

log = logging.getLogger("pycrio.storage")

COPY_TIMEOUT = 3600

# linux/fs.h: FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (the kernel reads an int) and
# FS_TOPDIR_FL ("top of directory hierarchies", chattr +T).
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI image-spec chain IDs: ChainID(L0) = DiffID(L0), then sha256("<parent> <diff>")."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            joined = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(joined).hexdigest())
    return chains


@dataclass(frozen=True)
class Layer:
    chain_id: str
    parent: str
    diff_id: str
    compressed_digest: str
    size: int  # bytes of regular files in this layer
    entries: int  # tar entries, an upper bound of the inodes it adds


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


class LayerStore:
    def __init__(self, storage_root: str, driver: str) -> None:
        if driver not in ("overlay", "vfs"):
            raise ValueError(f"unknown storage driver {driver!r}")
        self.driver = driver
        self.mode = WhiteoutMode.OVERLAY if driver == "overlay" else WhiteoutMode.APPLY
        self.layers_dir = os.path.join(storage_root, driver, "layers")
        self.tmp_dir = os.path.join(storage_root, "tmp")
        os.makedirs(self.layers_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        mark_top_directory(self.tmp_dir)

    def clean_tmp(self) -> list[str]:
        """Remove what interrupted pulls left behind; call before serving."""
        removed = []
        for name in os.listdir(self.tmp_dir):
            path = os.path.join(self.tmp_dir, name)
            _remove_tree(path)
            removed.append(name)
        if removed:
            log.info("removed %d temporary files left by interrupted pulls", len(removed))
        return removed

    def dir_of(self, chain_id: str) -> str:
        return os.path.join(self.layers_dir, _hex(chain_id))

    def diff_dir(self, chain_id: str) -> str:
        return os.path.join(self.dir_of(chain_id), "diff")

    def get(self, chain_id: str) -> Layer | None:
        try:
            with open(os.path.join(self.dir_of(chain_id), "layer.json")) as f:
                return Layer(**json.load(f))
        except FileNotFoundError:
            return None

    def has(self, chain_id: str) -> bool:
        return os.path.exists(os.path.join(self.dir_of(chain_id), "layer.json"))

    def all(self) -> list[Layer]:
        layers = []
        for name in os.listdir(self.layers_dir):
            layer = self.get("sha256:" + name)
            if layer is not None:
                layers.append(layer)
        return layers

    def create(
        self,
        chain_id: str,
        parent: str,
        diff_id: str,
        compressed_digest: str,
        unpack: Callable[[str, WhiteoutMode], LayerSummary],
    ) -> Layer:
        """Build a layer with ``unpack(diff_dir, mode)`` and publish it atomically."""
        existing = self.get(chain_id)
        if existing is not None:
            return existing
        work = tempfile.mkdtemp(dir=self.tmp_dir, prefix="layer-")
        try:
            diff = os.path.join(work, "diff")
            if self.mode is WhiteoutMode.APPLY and parent:
                _copy_tree(self.diff_dir(parent), diff)
            else:
                os.mkdir(diff, 0o755)
            summary = unpack(diff, self.mode)
            layer = Layer(
                chain_id, parent, diff_id, compressed_digest, summary.bytes, summary.entries
            )
            write_atomic(os.path.join(work, "layer.json"), json.dumps(asdict(layer)).encode())
            try:
                os.rename(work, self.dir_of(chain_id))
            except OSError as e:
                if self.has(chain_id):  # another pull published it first
                    _remove_tree(work)
                    return self.get(chain_id)  # type: ignore[return-value]
                raise Internal(f"cannot publish layer {chain_id}: {e}") from e
            fsync_dir(self.layers_dir)
            return layer
        except BaseException:
            _remove_tree(work)
            raise

    def remove(self, chain_id: str) -> None:
        """Remove a layer: it disappears by a rename, then its files are deleted."""
        src = self.dir_of(chain_id)
        if not os.path.exists(src):
            return
        dst = tempfile.mkdtemp(dir=self.tmp_dir, prefix="removing-")
        os.rename(src, os.path.join(dst, "layer"))
        _remove_tree(dst)

    def usage(self) -> tuple[int, int]:
        """(bytes, inodes) used by all layers, from their records."""
        layers = self.all()
        return sum(x.size for x in layers), sum(x.entries for x in layers)


def mark_top_directory(path: str) -> bool:
    """Ask ext4 to spread the directories made in ``path`` over its block groups.

    Layers are built in directories under the tmp dir. ext4's Orlov allocator
    normally puts a new subdirectory, and then the files in it, in its
    parent's block group; on ext4 without a journal it then skips every inode
    of that group freed in the last minutes, scanning them again for each new
    file. After removing an image, pulling one with thousands of files cost
    about 0.7 ms per file that way (40 times more than usual), all of it CPU
    in the kernel. With the TOPDIR flag (what ``chattr +T`` sets) each new
    layer directory goes to a lightly used group instead. Only a placement
    hint: filesystems that do not know it are left alone.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        log.debug("cannot open %s to set its TOPDIR flag: %s", path, exc)
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if flags[0] & _FS_TOPDIR_FL:
            return True
        flags[0] |= _FS_TOPDIR_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM):
            log.warning("cannot set the TOPDIR flag on %s: %s", path, exc)
        return False
    finally:
        os.close(fd)


def _copy_tree(src: str, dst: str) -> None:
    # cp -a keeps owners, modes, times, xattrs, device nodes and hard links,
    # which shutil.copytree does not all do.
    result = reaper.run(["cp", "-a", "--", src, dst], timeout=COPY_TIMEOUT, capture_output=True)
    if result.returncode != 0:
        raise Internal(f"copying parent layer failed: {result.stderr.decode(errors='replace')}")


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
