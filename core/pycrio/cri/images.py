"""The ImageService: PullImage, ListImages, ImageStatus, RemoveImage, ImageFsInfo."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
import time
from typing import Any

from cri_api.v1 import api_pb2

from pycrio.config import Config
from pycrio.errors import CRIError, FailedPrecondition, InvalidArgument, Unavailable
from pycrio.image.auth import credentials_from_cri
from pycrio.image.image_store import ImageRecord, ImageStore
from pycrio.image.manifest import ImageConfig, parse_image_config
from pycrio.image.puller import Puller, PullReport, PullSettings, candidates
from pycrio.image.reference import is_short_name, parse, parse_image_id
from pycrio.image.registries_conf import RegistriesConfig
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.kernel import Kernel, call_each, call_each_results
from pycrio.storage.layer_store import LayerStore

log = logging.getLogger("pycrio.image")

MIN_ID_PREFIX = 3


def pull_settings(config: Config) -> PullSettings:
    image = config.data["image"]
    return PullSettings(
        registries=RegistriesConfig.load(image["registries_conf"], image["registries_conf_dir"]),
        signature_policy=image["signature_policy"],
        signature_policy_dir=image["signature_policy_dir"],
        registries_d=image["registries_d"],
        auth_files=[image["global_auth_file"]] if image["global_auth_file"] else [],
        certs_dirs=list(image["certs_dirs"]),
        max_parallel_downloads=image["max_parallel_downloads"],
        progress_timeout=config.seconds("image.pull_progress_timeout"),
    )


def split_user(user: str) -> tuple[int | None, str]:
    """The image config's User as the CRI wants it: a uid, or a user name."""
    name = user.split(":", 1)[0]
    if not name:
        return None, ""
    if name.isdigit():
        return int(name), ""
    return None, name


def is_pinned(record: ImageRecord, patterns: list[str]) -> bool:
    """CRI-O's pinned_images: exact names, or globs with a leading or trailing *."""
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in record.names())


class ImageService:
    """Core hook implementations of the image calls; storage opens at startup."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._lock = threading.Lock()
        self.storage_root = os.path.join(kernel.config.root, "storage")
        self.layers: LayerStore | None = None
        self.images: ImageStore | None = None
        self.puller: Puller | None = None

    # --- lifecycle -------------------------------------------------------------

    @hookimpl
    def pycrio_startup(self, kernel: Kernel) -> None:
        config = kernel.config
        os.makedirs(self.storage_root, mode=0o700, exist_ok=True)
        self.layers = LayerStore(self.storage_root, config.get("storage_driver"))
        self.layers.clean_tmp()
        self.images = ImageStore(self.storage_root)
        self.puller = Puller(self.layers, self.images, pull_settings(config))
        self.puller.on_pulled = self._report_pull
        self._collect_garbage()

    @hookimpl
    def pycrio_shutdown(self, kernel: Kernel) -> None:
        if self.images is not None:
            self.images.close()

    @hookimpl
    def pycrio_config_reload(self, old: Config, new: Config, changed: list[str]) -> None:
        # Always: SIGHUP is how an operator makes registries.conf and its
        # drop-ins take effect, and those files are not pycrio.conf keys.
        if self.puller is None:
            return
        try:
            settings = pull_settings(new)
        except CRIError as e:
            log.error("image settings not reloaded, keeping the running ones: %s", e.message)
            return
        self.puller.settings = settings
        log.info("image settings reloaded (registries configuration re-read)")

    def _report_pull(self, report: PullReport) -> None:
        """Forward a pull to the pycrio_image_pulled hook; a failing observer never fails it."""
        call_each(
            self.kernel,
            "pycrio_image_pulled",
            image_id=report.image_id,
            size=report.size,
            fetched_layer_sizes=report.fetched_layer_sizes,
            reused_layers=report.reused_layers,
        )

    def _ready(self) -> tuple[LayerStore, ImageStore, Puller]:
        if self.layers is None or self.images is None or self.puller is None:
            raise FailedPrecondition("the image store is not open yet")
        return self.layers, self.images, self.puller

    # --- lookups ---------------------------------------------------------------

    def resolve(self, name: str) -> ImageRecord | None:
        """Find an image by id, id prefix, name, digest or short name."""
        return self._lookup(name)[0]

    def _lookup(self, name: str) -> tuple[ImageRecord | None, str]:
        """The image ``name`` means, and the repo tag it matched ("" for an id or digest).

        A short name matches through the search registries, so the tag is
        given back fully qualified, as it is stored.
        """
        _, images, puller = self._ready()
        if not name:
            raise InvalidArgument("image is empty: give a name, a digest or an image id")
        image_id = parse_image_id(name)
        if image_id is not None:
            return images.get(image_id), ""
        if len(name) >= MIN_ID_PREFIX and all(c in "0123456789abcdef" for c in name):
            matches = images.by_id_prefix(name)
            if len(matches) == 1:
                return matches[0], ""
        if is_short_name(name):
            refs = candidates(name, puller.settings.registries)
        else:
            refs = [parse(name)]
        for ref in refs:
            key = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"
            record = images.by_name(key)
            if record is not None:
                return record, key if key in record.repo_tags else ""
        return None, ""

    def image_config(self, record: ImageRecord) -> ImageConfig:
        """The parsed config of a stored image (entrypoint, env, user, ...)."""
        _, images, _ = self._ready()
        data = images.get_blob(record.id)
        if data is None:
            raise FailedPrecondition(f"image {record.id} has lost its config blob; pull it again")
        return parse_image_config(data, source=f"config of {record.id}")

    def to_cri(self, record: ImageRecord) -> api_pb2.Image:
        uid, username = split_user(record.user)
        image = api_pb2.Image(
            id=record.id,
            repo_tags=record.repo_tags,
            repo_digests=record.repo_digests,
            size=record.size,
            username=username,
            spec=api_pb2.ImageSpec(image=record.id),
            pinned=is_pinned(record, self.kernel.config.get("image.pinned_images")),
        )
        if uid is not None:
            image.uid.value = uid
        return image

    # --- the calls -------------------------------------------------------------

    @hookimpl
    def cri_pull_image(
        self, request: api_pb2.PullImageRequest, ctx: CallContext
    ) -> api_pb2.PullImageResponse:
        _, _, puller = self._ready()
        auth = request.auth
        credentials = credentials_from_cri(
            username=auth.username,
            password=auth.password,
            auth=auth.auth,
            identity_token=auth.identity_token,
            registry_token=auth.registry_token,
        )
        namespace = request.sandbox_config.metadata.namespace
        try:
            record = puller.pull(request.image.image, credentials, namespace)
        except CRIError:
            # A failed pull stores nothing: the config blob and layers it
            # verified before failing go too (a hostile registry could
            # otherwise fill the disk with content no image uses).
            self._collect_garbage()
            raise
        return api_pb2.PullImageResponse(image_ref=record.id)

    @hookimpl
    def cri_image_status(
        self, request: api_pb2.ImageStatusRequest, ctx: CallContext
    ) -> api_pb2.ImageStatusResponse:
        record = self.resolve(request.image.image)
        if record is None:
            return api_pb2.ImageStatusResponse()
        response = api_pb2.ImageStatusResponse(image=self.to_cri(record))
        if request.verbose:
            response.info["info"] = json.dumps(self._verbose_info(record))
        return response

    def _verbose_info(self, record: ImageRecord) -> dict[str, Any]:
        _, images, _ = self._ready()
        config = images.get_blob(record.id)
        return {
            "imageSpec": json.loads(config) if config else None,
            "manifestDigest": record.manifest_digest,
            "layers": record.layers,
        }

    @hookimpl
    def cri_list_images(
        self, request: api_pb2.ListImagesRequest, ctx: CallContext
    ) -> api_pb2.ListImagesResponse:
        _, images, _ = self._ready()
        wanted = request.filter.image.image if request.HasField("filter") else ""
        if wanted:
            record = self.resolve(wanted)
            records = [record] if record else []
        else:
            records = images.all()
        return api_pb2.ListImagesResponse(images=[self.to_cri(r) for r in records])

    @hookimpl
    def cri_remove_image(
        self, request: api_pb2.RemoveImageRequest, ctx: CallContext
    ) -> api_pb2.RemoveImageResponse:
        _, images, _ = self._ready()
        name = request.image.image
        with self._lock:
            record, tag = self._lookup(name)
            if record is None:
                return api_pb2.RemoveImageResponse()
            if tag and len(record.repo_tags) > 1:
                # One of several tags: only that name goes (as for a short name).
                record.repo_tags = [t for t in record.repo_tags if t != tag]
                images.update(record)
                log.info("untagged %s from %s", tag, record.id)
                return api_pb2.RemoveImageResponse()
            in_use = call_each_results(self.kernel, "pycrio_image_in_use", image_id=record.id)
            if in_use.failures:
                # Unknown is not "unused": removing an image a container needs loses it.
                raise Unavailable(
                    f"image {name} ({record.id}) was not removed: cannot tell whether it is in"
                    " use, " + "; ".join(f.message for f in in_use.failures)
                )
            users = [user for found in in_use.values() for user in found or []]
            if users:
                raise FailedPrecondition(
                    f"image {name} ({record.id}) is in use by container(s) {', '.join(users)};"
                    " remove them first"
                )
            images.delete(record.id)
            log.info("removed image %s (%s)", record.id, ", ".join(record.names()) or "untagged")
            self._collect_garbage()
        return api_pb2.RemoveImageResponse()

    @hookimpl
    def cri_image_fs_info(
        self, request: api_pb2.ImageFsInfoRequest, ctx: CallContext
    ) -> api_pb2.ImageFsInfoResponse:
        layers, _, _ = self._ready()
        used, inodes = layers.usage()
        usage = api_pb2.FilesystemUsage(
            timestamp=time.time_ns(),
            fs_id=api_pb2.FilesystemIdentifier(mountpoint=self.storage_root),
        )
        usage.used_bytes.value = used
        usage.inodes_used.value = inodes
        return api_pb2.ImageFsInfoResponse(image_filesystems=[usage], container_filesystems=[usage])

    # --- garbage ---------------------------------------------------------------

    def _collect_garbage(self) -> None:
        """Drop layers and blobs no image refers to (after a removal or a crash)."""
        _, _, puller = self._ready()
        if not puller.collect_garbage(self._collect):
            log.debug("garbage collection postponed: a pull is in progress")

    def _collect(self) -> None:
        layers, images, _ = self._ready()
        records = images.all()
        wanted_layers = {c for r in records for c in r.layers}
        for layer in layers.all():
            if layer.chain_id not in wanted_layers:
                layers.remove(layer.chain_id)
        wanted_blobs = {r.id for r in records} | {r.manifest_digest for r in records}
        wanted_blobs |= {d.split("@", 1)[1] for r in records for d in r.repo_digests}
        for digest in images.blobs() - wanted_blobs:
            images.remove_blob(digest)
