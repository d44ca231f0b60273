"""Containers' root filesystems: the image's layers plus a writable layer.

With the overlay driver the rootfs is an overlay mount whose lower dirs are
the image's layer diffs (top first) and whose upper dir is the container's
own; with vfs it is a full copy of the image's top layer. Either way the
container's changes live under ``<storage>/<driver>-containers/<id>/`` and go
away with the container, never touching the shared image layers.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil

from pycrio import reaper
from pycrio.errors import Internal
from pycrio.storage.layer_store import LayerStore

log = logging.getLogger("pycrio.storage")

MNT_DETACH = 2
#: The kernel copies at most one page of mount options.
MOUNT_DATA_MAX = 4096
COPY_TIMEOUT = 3600
_libc = ctypes.CDLL(None, use_errno=True)


class ContainerLayers:
    def __init__(self, storage_root: str, layers: LayerStore) -> None:
        self.layers = layers
        self.driver = layers.driver
        self.dir = os.path.join(storage_root, f"{self.driver}-containers")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def _paths(self, container_id: str) -> tuple[str, str, str, str]:
        base = os.path.join(self.dir, container_id)
        return (
            base,
            os.path.join(base, "upper"),
            os.path.join(base, "work"),
            os.path.join(base, "merged"),
        )

    def rootfs(self, container_id: str) -> str:
        return self._paths(container_id)[3]

    def create(self, container_id: str, image_layers: list[str]) -> str:
        """Create and mount the container's rootfs; return its path."""
        base, upper, work, merged = self._paths(container_id)
        os.makedirs(base, mode=0o700, exist_ok=True)
        if self.driver == "vfs":
            if image_layers:
                src = self.layers.diff_dir(image_layers[-1])
                result = reaper.run(
                    ["cp", "-a", "--", src, merged], timeout=COPY_TIMEOUT, capture_output=True
                )
                if result.returncode != 0:
                    raise Internal(
                        "copying the image into the container's rootfs failed: "
                        + result.stderr.decode(errors="replace")
                    )
            else:
                os.makedirs(merged, mode=0o755, exist_ok=True)
            return merged
        for path in (upper, work, merged):
            os.makedirs(path, mode=0o755, exist_ok=True)
        self.mount(container_id, image_layers)
        return merged

    def mount(self, container_id: str, image_layers: list[str]) -> None:
        """Mount the overlay (again, e.g. after a reboot); a mounted rootfs is left alone."""
        if self.driver == "vfs":
            return
        base, upper, work, merged = self._paths(container_id)
        if os.path.ismount(merged):
            return
        lowers = [self.layers.diff_dir(c) for c in reversed(image_layers)]
        if not lowers:
            empty = os.path.join(base, "empty")
            os.makedirs(empty, mode=0o755, exist_ok=True)
            lowers = [empty]
        fds: list[int] = []
        try:
            options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
            if len(options) >= MOUNT_DATA_MAX:
                # Too long for the one page of mount data (~40 layers under a usual
                # root): name each layer by a descriptor of ours, ~17 bytes whatever
                # its path, which takes images to Docker's limit of 127 layers.
                fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in lowers]
                short = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
                options = f"lowerdir={short},upperdir={upper},workdir={work}"
            if len(options) >= MOUNT_DATA_MAX:
                raise Internal(
                    f"the image has too many layers ({len(image_layers)}) for one overlay mount"
                )
            if _libc.mount(b"overlay", merged.encode(), b"overlay", 0, options.encode()) != 0:
                err = ctypes.get_errno()
                raise Internal(f"mounting the container's rootfs at {merged}: {os.strerror(err)}")
        finally:
            for fd in fds:
                os.close(fd)

    def unmount(self, container_id: str) -> None:
        merged = self._paths(container_id)[3]
        if self.driver == "vfs" or not os.path.exists(merged):
            return
        if _libc.umount2(merged.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                raise Internal(f"unmounting {merged}: {os.strerror(err)}")

    def remove(self, container_id: str) -> None:
        """Unmount and delete the container's layer; a missing one is fine."""
        self.unmount(container_id)
        base = self._paths(container_id)[0]
        if os.path.isdir(base):
            shutil.rmtree(base)

    def usage(self, container_id: str) -> tuple[int, int]:
        """(bytes, inodes) of what the container wrote: its upper dir (vfs: its copy)."""
        _, upper, _, merged = self._paths(container_id)
        top = merged if self.driver == "vfs" else upper
        used = inodes = 0
        for dirpath, dirnames, filenames in os.walk(top):
            for name in filenames + dirnames:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                inodes += 1
                used += st.st_blocks * 512
        return used, inodes
