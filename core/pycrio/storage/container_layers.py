"""Containers' root filesystems: the image's layers plus a writable layer.

With the overlay driver the rootfs is an overlay mount whose lower dirs are
the image's layer diffs (top first) and whose upper dir is the container's
own; with vfs it is a full copy of the image's top layer. Either way the
container's changes live under ``<storage>/<driver>-containers/<id>/`` and go
away with the container, never touching the shared image layers.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil

from pycrio import reaper
from pycrio.errors import Internal
from pycrio.linux import libc
from pycrio.storage.layer_store import LayerStore

log = logging.getLogger("pycrio.storage")

MS_RDONLY = 1
#: The kernel copies at most one page of mount options.
MOUNT_DATA_MAX = 4096
COPY_TIMEOUT = 3600


class OverlayMountError(Internal):
    """mount(2) of an overlay failed; ``errno`` says why."""

    def __init__(self, message: str, errno_: int) -> None:
        super().__init__(message)
        self.errno = errno_


class ContainerLayers:
    """Each container's writable layer and its rootfs mount.

    The overlay is mounted ``volatile`` (Linux 5.10+): the kernel then skips
    every sync to the upper dir, above all the syncfs of the whole upper
    filesystem that an overlay unmount does otherwise (from ~0.5 ms to tens
    of ms when other work has written to that disk). What it gives up is a
    writable layer that survives a machine crash, which no container has:
    the kubelet never restarts one, it creates a new container with a new
    layer, and this layer is removed with its container; after a crash the
    layer is never mounted again (overlay would refuse to). The kernel's own
    reason for the option is this very use ("if node goes down, they will
    simply throw away upper layer and create a fresh one").
    """

    def __init__(self, storage_root: str, layers: LayerStore) -> None:
        self.volatile = True
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
        rest = f",upperdir={upper},workdir={work}"
        if self.volatile:
            try:
                _mount_overlay(merged, lowers, rest + ",volatile", 0)
                return
            except OverlayMountError as e:
                if e.errno != errno.EINVAL:
                    raise
                # a kernel before 5.10 has no "volatile": mount as before from now on
                log.info("overlay has no volatile option here (%s); writable layers sync", e)
                self.volatile = False
        _mount_overlay(merged, lowers, rest, 0)

    def image_volumes_dir(self, container_id: str) -> str:
        return os.path.join(self._paths(container_id)[0], "image-volumes")

    def mount_image(self, container_id: str, index: int, image_layers: list[str]) -> str:
        """An image's filesystem, read-only, for the container's image volume ``index``.

        With overlay: an overlay of the image's layers with no upper dir
        (read-only by construction, shared layers untouched) under the
        container's own directory, so removing the container unmounts it.
        With vfs: the top layer's diff, which is a full copy of the image.
        """
        if self.driver == "vfs":
            if not image_layers:
                raise Internal("the image has no layers to mount")
            return self.layers.diff_dir(image_layers[-1])
        target = os.path.join(self.image_volumes_dir(container_id), str(index))
        os.makedirs(target, mode=0o755, exist_ok=True)
        if os.path.ismount(target):
            return target
        lowers = [self.layers.diff_dir(c) for c in reversed(image_layers)]
        if len(lowers) < 2:
            # overlayfs wants two lower dirs when there is no upper one
            empty = os.path.join(self._paths(container_id)[0], "empty")
            os.makedirs(empty, mode=0o755, exist_ok=True)
            lowers.append(empty)
        _mount_overlay(target, lowers, "", MS_RDONLY)
        return target

    def unmount(self, container_id: str) -> None:
        merged = self._paths(container_id)[3]
        if self.driver == "vfs" or not os.path.exists(merged):
            return
        _unmount(merged)

    def unmount_images(self, container_id: str) -> None:
        """Unmount the container's image volumes; missing ones are fine."""
        volumes = self.image_volumes_dir(container_id)
        if self.driver == "vfs" or not os.path.isdir(volumes):
            return
        for name in os.listdir(volumes):
            _unmount(os.path.join(volumes, name))

    def remove(self, container_id: str) -> None:
        """Unmount and delete the container's layer; a missing one is fine."""
        self.unmount_images(container_id)
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


def _unmount(path: str) -> None:
    """Detach the mount at ``path``; not mounted or missing is fine."""
    try:
        libc.unmount(path)
    except OSError as e:
        raise Internal(f"unmounting {path}: {e.strerror}") from e


def _mount_overlay(target: str, lowers: list[str], rest: str, flags: int) -> None:
    """Mount an overlay of ``lowers`` (top first) at ``target``; ``rest`` adds options."""
    fds: list[int] = []
    try:
        options = f"lowerdir={':'.join(lowers)}{rest}"
        if len(options) >= MOUNT_DATA_MAX:
            # Too long for the one page of mount data (~40 layers under a usual
            # root): name each layer by a descriptor of ours, ~17 bytes whatever
            # its path, which takes images to Docker's limit of 127 layers.
            fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in lowers]
            short = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
            options = f"lowerdir={short}{rest}"
        if len(options) >= MOUNT_DATA_MAX:
            raise Internal(f"the image has too many layers ({len(lowers)}) for one overlay mount")
        try:
            libc.mount("overlay", target, "overlay", flags, options)
        except OSError as e:
            raise OverlayMountError(
                f"mounting an overlay at {target}: {e.strerror}", e.errno or 0
            ) from e
    finally:
        for fd in fds:
            os.close(fd)
