"""Pull an image: resolve, authorize, fetch, verify, unpack, record.

Order of work, and why:

1. Resolve the name (short names through registries.conf) and check the
   signature policy: reject is settled before any byte is fetched.
2. Try mirrors in order, then the registry itself; a mirror that is down or
   lacks the image is skipped, an error from the registry is final.
3. Fetch the manifest the name points at, once; when the policy asks for
   signatures, verify them against that manifest's digest before anything
   else is fetched (pycrio.image.signature.verifier). Then choose this
   node's platform from an index (by digest, so still covered) and fetch the
   config, verifying both against their digests.
4. Stream each missing layer straight from the socket through the digest
   check and the decompressor into the unpacker; a layer is never held in
   memory nor written compressed to disk. Both the compressed digest and the
   config's diff_id are verified before the layer is published.
5. Commit the image record in one transaction: until then nothing is visible.

Concurrent pulls of one image share one run of all this, and concurrent
pulls of images sharing a layer share that layer's download.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from pycrio.errors import (
    CRIError,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from pycrio.image import manifest as mf
from pycrio.image.auth import Credentials, lookup_credentials
from pycrio.image.image_store import ImageRecord, ImageStore
from pycrio.image.policy import Decision, Policy, policy_path_for_namespace
from pycrio.image.reference import Reference, is_short_name, parse
from pycrio.image.registries_conf import PullSource, RegistriesConfig
from pycrio.image.registries_d import RegistriesD
from pycrio.image.registry_client import RegistryClient
from pycrio.image.signature import verifier
from pycrio.image.signature.sources import SignatureSource
from pycrio.singleflight import SingleFlight
from pycrio.storage import unpack_worker
from pycrio.storage.layer_store import LayerStore, chain_ids
from pycrio.storage.layer_unpack import LayerSummary, WhiteoutMode

log = logging.getLogger("pycrio.image")

DEFAULT_STALL_TIMEOUT = 300.0
MAX_CLIENTS = 64
_DRAIN = 1 << 20


@dataclass
class PullSettings:
    """The configuration a pull depends on; rebuilt on SIGHUP."""

    registries: RegistriesConfig
    signature_policy: str = ""
    signature_policy_dir: str = ""
    # containers-registries.d(5): lookaside stores and use-sigstore-attachments;
    # read at each pull that needs signatures, like the policy itself.
    registries_d: str = ""
    auth_files: list[str] = field(default_factory=list)
    certs_dirs: list[str] = field(default_factory=list)
    max_parallel_downloads: int = 6
    progress_timeout: float = 0.0


def candidates(name: str, registries: RegistriesConfig) -> list[Reference]:
    """References a user-given name may mean, in the order to try them."""
    if not name:
        raise InvalidArgument("image name is empty")
    if is_short_name(name):
        return registries.resolve_short_name(name)
    return [parse(name)]


@dataclass(frozen=True)
class PullReport:
    """What one pull transferred, for metrics: reported once per pull, after commit."""

    image_id: str
    size: int
    fetched_layer_sizes: list[int]  # compressed sizes of the layers downloaded
    reused_layers: int  # layers that were already in the store


class Puller:
    def __init__(self, layers: LayerStore, images: ImageStore, settings: PullSettings) -> None:
        self.layers = layers
        self.images = images
        self.settings = settings
        # Told about every committed pull (the image service forwards it to the
        # pycrio_image_pulled hook); the puller itself stays kernel-free.
        self.on_pulled: Callable[[PullReport], None] | None = None
        self._pulls = SingleFlight()
        self._blobs = SingleFlight()
        self._clients: dict[tuple, RegistryClient] = {}
        self._clients_lock = threading.Lock()
        # Pulls and garbage collection exclude each other: a pull owns layers
        # that no image record names until it commits.
        self._activity = threading.Condition()
        self._active = 0
        self._collecting = False

    def collect_garbage(self, collect: Callable[[], None]) -> bool:
        """Run ``collect`` unless a pull is in progress; return whether it ran."""
        with self._activity:
            if self._active:
                return False
            self._collecting = True
        try:
            collect()
        finally:
            with self._activity:
                self._collecting = False
                self._activity.notify_all()
        return True

    def pull(self, name: str, credentials: Credentials | None, namespace: str = "") -> ImageRecord:
        refs = candidates(name, self.settings.registries)
        s = self.settings
        # Chosen once per pull; pulls under different policies never share a result.
        policy_path = str(
            policy_path_for_namespace(s.signature_policy, s.signature_policy_dir, namespace)
        )
        with self._activity:
            while self._collecting:
                self._activity.wait()
            self._active += 1
        try:
            return self._pull_candidates(name, refs, credentials, policy_path)
        except CRIError as e:
            # whatever failed (a connection, a header, a layer), say which image
            if name not in e.message and not any(r.path in e.message for r in refs):
                e.message = f"pulling image {name!r}: {e.message}"
            raise
        finally:
            with self._activity:
                self._active -= 1
                self._activity.notify_all()

    def _pull_candidates(
        self, name: str, refs: list[Reference], credentials: Credentials | None, policy_path: str
    ) -> ImageRecord:
        misses: list[str] = []
        for ref in refs:
            try:
                return self._pulls.do(
                    (str(ref), _identity(credentials), policy_path),
                    lambda ref=ref: self._pull_reference(ref, credentials, policy_path),
                )
            except NotFound as e:
                if len(refs) == 1:
                    raise
                misses.append(e.message)
        raise NotFound(f"image {name!r} not found in any search registry: " + "; ".join(misses))

    def _pull_reference(
        self, ref: Reference, credentials: Credentials | None, policy_path: str
    ) -> ImageRecord:
        s = self.settings
        decision = Policy.load(policy_path).check(ref)
        sources = s.registries.pull_sources(ref)
        failures: list[str] = []
        for source in sources:
            try:
                return self._pull_from(ref, source, credentials, decision)
            except (Unavailable, NotFound, DeadlineExceeded) as e:
                if not source.mirror:
                    if failures:
                        e.message += " (mirrors tried first: " + "; ".join(failures) + ")"
                    raise
                log.warning("mirror %s failed for %s: %s", source.reference.domain, ref, e.message)
                failures.append(f"{source.reference.domain}: {e.message}")
        raise Unavailable(f"no source could serve {ref}: " + "; ".join(failures))

    def _client(self, source: PullSource, credentials: Credentials | None) -> RegistryClient:
        """A client per registry, TLS setting and credentials, kept across pulls.

        Reusing it keeps the connection pool, the detected scheme and bearer
        tokens, so a second pull does not ping and authenticate again.
        """
        domain = source.reference.domain
        if credentials is None and self.settings.auth_files:
            credentials = lookup_credentials(
                domain, source.reference.path, self.settings.auth_files
            )
        key = (domain, source.insecure, _identity(credentials), id(self.settings))
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                if len(self._clients) >= MAX_CLIENTS:
                    self._clients.pop(next(iter(self._clients))).close()
                timeout = self.settings.progress_timeout or DEFAULT_STALL_TIMEOUT
                client = RegistryClient(
                    domain,
                    credentials=credentials,
                    insecure=source.insecure,
                    certs_dir=self.settings.certs_dirs,
                    timeout=timeout,
                )
                self._clients[key] = client
            return client

    def _pull_from(
        self,
        ref: Reference,
        source: PullSource,
        credentials: Credentials | None,
        decision: Decision,
    ) -> ImageRecord:
        started = time.monotonic()
        src = source.reference
        repo = src.path
        client = self._client(source, credentials)
        body, media_type, top_digest = client.get_manifest(repo, src.digest or src.tag)
        if decision.signatures:
            # top_digest is computed from body, the bytes used from here on.
            registries_d = RegistriesD.load(self.settings.registries_d)
            signatures = SignatureSource(ref, client, repo, top_digest, registries_d)
            verifier.verify(decision, ref, body, top_digest, signatures)
        parsed = mf.parse_manifest(body, media_type, source=f"manifest of {src}")
        digest = top_digest
        if isinstance(parsed, mf.ImageIndex):
            chosen = mf.select_manifest(parsed, source=f"index of {src}")
            body, media_type, digest = client.get_manifest(repo, chosen.digest)
            parsed = mf.parse_manifest(body, media_type, source=f"manifest of {src}")
        if not isinstance(parsed, mf.ImageManifest):
            raise InvalidArgument(f"{src}: the index points at another index")
        config_bytes = self._config(client, repo, parsed.config)
        config = mf.parse_image_config(config_bytes, source=f"config of {src}")
        mf.check_config_matches_manifest(parsed, config, source=f"image {src}")
        chains = chain_ids(list(config.diff_ids))
        fetched = self._fetch_layers(client, repo, parsed, list(config.diff_ids), chains)

        self.images.put_blob(digest, body)
        names = _names(ref, top_digest, digest)
        size = sum(layer.size for c in chains if (layer := self.layers.get(c)) is not None)
        record = self.images.commit(
            ImageRecord(
                id=parsed.config.digest,
                repo_tags=names[0],
                repo_digests=names[1],
                layers=chains,
                size=size,
                user=config.user,
                manifest_digest=digest,
                created=time.time(),
            )
        )
        log.info(
            "pulled %s from %s as %s in %.2fs",
            ref,
            src.domain,
            record.id,
            time.monotonic() - started,
        )
        if self.on_pulled is not None:
            sizes = [parsed.layers[i].size for i in sorted(fetched)]
            self.on_pulled(PullReport(record.id, record.size, sizes, len(chains) - len(sizes)))
        return record

    def _config(self, client: RegistryClient, repo: str, desc: mf.Descriptor) -> bytes:
        def fetch() -> bytes:
            cached = self.images.get_blob(desc.digest)
            if cached is not None:
                return cached
            data = client.get_blob_bytes(repo, desc.digest)
            self.images.put_blob(desc.digest, data)
            return data

        return self._blobs.do(desc.digest, fetch)

    def _fetch_layers(
        self,
        client: RegistryClient,
        repo: str,
        manifest: mf.ImageManifest,
        diff_ids: list[str],
        chains: list[str],
    ) -> list[int]:
        """Make sure every layer is in the store; return the indexes this pull fetched."""
        failed = threading.Event()
        fetched: list[int] = []  # list.append is atomic: the workers share it

        def one(i: int) -> None:
            if failed.is_set():
                return  # the pull has failed already: start no other download
            chain = chains[i]
            if self.layers.has(chain):
                return
            fetched.append(i)
            try:
                self._blobs.do(
                    chain,
                    lambda: self.layers.create(
                        chain,
                        chains[i - 1] if i else "",
                        diff_ids[i],
                        manifest.layers[i].digest,
                        lambda diff_dir, mode: self._unpack(
                            client, repo, manifest.layers[i], diff_ids[i], diff_dir, mode
                        ),
                    ),
                )
            except BaseException:
                failed.set()
                raise

        indexes = range(len(chains))
        if self.layers.mode is WhiteoutMode.APPLY:
            for i in indexes:  # each vfs layer starts as a copy of its parent
                one(i)
            return fetched
        workers = min(self.settings.max_parallel_downloads, len(chains)) or 1
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pull") as pool:
            futures = [pool.submit(one, i) for i in indexes]
        for future in futures:  # all have ended: report the first failed layer
            future.result()
        return fetched

    def _unpack(
        self,
        client: RegistryClient,
        repo: str,
        desc: mf.Descriptor,
        diff_id: str,
        diff_dir: str,
        mode: WhiteoutMode,
    ) -> LayerSummary:
        if desc.urls:
            raise FailedPrecondition(
                f"layer {desc.digest} is a foreign layer (non-distributable); pycrio"
                " pulls only from the registry"
            )
        with client.open_blob(repo, desc.digest, expected_size=desc.size) as blob:
            try:
                summary = unpack_worker.unpack(
                    unpack_worker.read_chunks(blob), diff_dir, desc.media_type, diff_id, mode
                )
            except InvalidArgument as e:
                _blame_the_blob(blob, e)
                e.message = f"layer {desc.digest} of {client.registry}/{repo}: {e.message}"
                raise
            while blob.read(_DRAIN):  # the end of the stream checks the digest
                pass
        return summary


def _blame_the_blob(blob: BinaryIO, error: InvalidArgument) -> None:
    """Raise the blob's digest mismatch if there is one, as the cause of ``error``.

    Bytes altered in the registry or on the way usually break the
    decompressor or the tar reader before the end of the blob, where its
    digest is checked; "corrupt gzip data" would then hide what happened.
    Reading the rest of the blob (never more than the manifest's size for it)
    settles whether it is the blob the manifest names.
    """
    try:
        while blob.read(_DRAIN):
            pass
    except DataLoss as mismatch:
        raise mismatch from error
    except CRIError as unreadable:  # the blob cannot be checked: report the first error
        log.debug("cannot verify the rest of the blob after %s: %s", error, unreadable)


def _identity(credentials: Credentials | None) -> tuple[str, ...]:
    """Pulls with different credentials must not share a result (one may be denied)."""
    if credentials is None:
        return ()
    c = credentials
    return (c.username, c.password, c.identity_token, c.registry_token)


def _names(ref: Reference, top_digest: str, instance_digest: str) -> tuple[list[str], list[str]]:
    tags = [f"{ref.name}:{ref.tag}"] if ref.tag and not ref.digest else []
    digests = [f"{ref.name}@{top_digest}"]
    if instance_digest != top_digest:
        digests.append(f"{ref.name}@{instance_digest}")
    return tags, digests
