"""Image volumes: an image's filesystem mounted read-only into a container.

The CRI's ``Mount.image`` (Kubernetes' ImageVolume feature): the kubelet
pulls the image, then asks for it at ``container_path``, optionally only its
``image_sub_path``. pycrio mounts the image's layers read-only (an overlay
with no upper dir, see ContainerLayers.mount_image) under the container's
own storage, and bind-mounts that read-only into the container without
``noexec``, so the image's programs stay runnable. The image counts as in
use while a container mounts it (RemoveImage refuses), and the mount goes
with the container.

Status reports it as CRI-O does: ``Mount.image.image`` is the image id (the
kubelet's image garbage collector matches it), ``user_specified_image`` the
name the kubelet asked for, and the repo digest it resolved to is the
``image_ref`` (in the ImageSpec annotation :data:`IMAGE_REF_ANNOTATION`:
the CRI stubs pycrio builds on predate ImageSpec.image_ref).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.container.rootfs import secure_join
from pycrio.errors import InvalidArgument, NotFound

IMAGE_REF_ANNOTATION = "io.kubernetes.cri.image-ref"


@dataclass(frozen=True)
class ImageVolume:
    """One image mount of a CreateContainer request, its image resolved."""

    index: int  # in ContainerConfig.mounts
    container_path: str
    image: str  # as the kubelet named it
    image_id: str
    image_ref: str  # the repo digest, or the id for an image pulled without one
    sub_path: str
    layers: tuple[str, ...]

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> ImageVolume:
        """Back from ContainerRecord.image_volumes (``dataclasses.asdict``, plus ``source``)."""
        return cls(**{k: (tuple(v) if k == "layers" else v) for k, v in d.items() if k != "source"})


def is_image_mount(m: api_pb2.Mount) -> bool:
    return m.HasField("image") and bool(m.image.image)


def resolve(mounts: Iterable[api_pb2.Mount], lookup: Callable[[str], Any]) -> list[ImageVolume]:
    """Check the image mounts of a request and find their images (before creating anything).

    ``lookup`` maps a name to a stored image record (or None). A read-write
    image mount is INVALID_ARGUMENT, an image not pulled NOT_FOUND.
    """
    out = []
    for index, m in enumerate(mounts):
        if not is_image_mount(m):
            continue
        field = f"mounts[{index}]"
        if not m.readonly:
            raise InvalidArgument(
                f"{field}: image volume {m.image.image!r} must be read-only (readonly: true)"
            )
        sub = m.image_sub_path
        if "\x00" in sub or ".." in sub.split("/"):
            raise InvalidArgument(f"{field}.image_sub_path: {sub!r} is not a path inside the image")
        record = lookup(m.image.image)
        if record is None:
            raise NotFound(f"{field}.image: image {m.image.image!r} is not present; pull it first")
        out.append(
            ImageVolume(
                index=index,
                container_path=m.container_path,
                image=m.image.image,
                image_id=record.id,
                image_ref=record.repo_digests[0] if record.repo_digests else record.id,
                sub_path=sub,
                layers=tuple(record.layers),
            )
        )
    return out


def source(volume: ImageVolume, root: str) -> str:
    """The host path to bind: ``root`` (the mounted image) or its sub path, which must exist.

    The sub path is resolved as inside the image (symlinks cannot leave it).
    """
    if not volume.sub_path.strip("/"):
        return root
    path = secure_join(root, volume.sub_path)
    if not os.path.exists(path):
        raise InvalidArgument(
            f"mounts[{volume.index}].image_sub_path: {volume.sub_path!r} does not exist"
            f" in image {volume.image!r}"
        )
    return path


def to_cri(m: dict[str, Any]) -> api_pb2.Mount:
    """The ContainerStatus mount of a recorded image volume."""
    return api_pb2.Mount(
        container_path=m["container_path"],
        readonly=True,
        image=api_pb2.ImageSpec(
            image=m["image_id"],
            user_specified_image=m["image"],
            annotations={IMAGE_REF_ANNOTATION: m["image_ref"]},
        ),
        image_sub_path=m["sub_path"],
    )
