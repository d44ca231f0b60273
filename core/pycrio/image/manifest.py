"""Sans-IO parsing of image manifests, indexes and image configs.

Everything here works on bytes already fetched, so the rules for what a valid
image is (and which entry of a multi-arch index this node runs) are tested
without a registry, and the registry client stays a thin I/O edge.

Formats follow the OCI image-spec (manifest, index, config, descriptor) and the
Docker "Image Manifest V2, Schema 2" document (manifest, manifest list).
Docker schema 1 is refused: it is deprecated, unsigned in practice, and carries
no content-addressed config, so an image pulled from it could not be verified.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pycrio.errors import DataLoss, InvalidArgument, NotFound

# --- media types -------------------------------------------------------------

MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

SCHEMA1_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_SCHEMA1, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX})
CONFIG_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_OCI_CONFIG})

#: Layer media type -> compression ("" for an uncompressed tar).
LAYER_COMPRESSION: Mapping[str, str] = {
    MEDIA_TYPE_DOCKER_LAYER_GZIP: "gzip",
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: "gzip",
    MEDIA_TYPE_OCI_LAYER: "",
    MEDIA_TYPE_OCI_LAYER_GZIP: "gzip",
    MEDIA_TYPE_OCI_LAYER_ZSTD: "zstd",
    MEDIA_TYPE_OCI_LAYER_NONDIST: "",
    MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP: "gzip",
    MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD: "zstd",
}

#: What a puller sends as Accept, most preferred first. Schema 1 is left out on
#: purpose so that registries able to convert never answer with it.
MANIFEST_ACCEPT: tuple[str, ...] = (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
)

#: containers/image refuses manifests and configs larger than this; a bigger
#: body is an attack or a mistake, and it would otherwise be held in memory.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_CONFIG_SIZE = 4 * 1024 * 1024

# --- digests -----------------------------------------------------------------

_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}


class DigestMismatch(DataLoss):
    """Content did not hash to the digest it was fetched by.

    DATA_LOSS rather than a retryable error: whatever served the bytes
    (a registry, a mirror, a proxy) is broken or hostile, and retrying the
    same source blindly would hide that.
    """


def parse_digest(digest: str) -> tuple[str, str]:
    """Split and validate ``algorithm:hex`` so no unchecked string becomes a path or URL."""
    if not isinstance(digest, str):
        raise InvalidArgument(f"digest must be a string, got {type(digest).__name__}")
    m = _DIGEST_RE.match(digest)
    if m is None:
        raise InvalidArgument(f"invalid digest {digest!r}: expected 'sha256:<64 hex digits>'")
    algorithm, encoded = m.group(1), m.group(2)
    length = _HEX_LENGTH.get(algorithm)
    if length is None:
        raise InvalidArgument(
            f"unsupported digest algorithm {algorithm!r} in {digest!r}: only sha256 and sha512"
        )
    if len(encoded) != length or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise InvalidArgument(
            f"invalid digest {digest!r}: {algorithm} needs {length} lowercase hex digits"
        )
    return algorithm, encoded


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """Digest of bytes in the ``algorithm:hex`` form registries and the OCI spec use."""
    if algorithm not in _HEX_LENGTH:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_digest(data: bytes, expected: str, what: str = "content") -> None:
    """Refuse bytes that are not what was asked for (content addressing is the trust anchor)."""
    algorithm, _ = parse_digest(expected)
    actual = compute_digest(data, algorithm)
    if actual != expected:
        raise DigestMismatch(f"{what}: digest mismatch, expected {expected}, got {actual}")


class DigestVerifier:
    """Incremental digest check, so a blob is verified while it streams to disk."""

    def __init__(self, expected: str, what: str = "blob") -> None:
        self.expected = expected
        self.what = what
        self.algorithm, _ = parse_digest(expected)
        self._hash = hashlib.new(self.algorithm)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self._hash.hexdigest()}"

    def verify(self) -> None:
        actual = self.digest
        if actual != self.expected:
            raise DigestMismatch(
                f"{self.what}: digest mismatch after {self.size} bytes, "
                f"expected {self.expected}, got {actual}"
            )


# --- data model --------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    """What a node can run; field names follow the OCI index ``platform`` object."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str = ""


@dataclass(frozen=True)
class ImageManifest:
    """A single-platform image: one config and its ordered layers."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None


@dataclass(frozen=True)
class ImageIndex:
    """A multi-platform image (OCI index or Docker manifest list)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a runtime acts on.

    Empty values mean "not set by the image" so the container code can apply
    its defaults (CRI-O's) without telling ``[]`` from absent.
    """

    architecture: str
    os: str
    variant: str = ""
    created: str = ""
    author: str = ""
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()
    diff_ids: tuple[str, ...] = ()
    history_count: int = 0


# --- parsing -----------------------------------------------------------------


def _load_json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _get_str(obj: Mapping[str, Any], key: str, what: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidArgument(f"{what}: missing required field {key!r}")
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}: field {key!r} must be a string")
    return value


def _get_str_map(obj: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(f"{what}: field {key!r} must be a map of strings")
    return dict(value)


def _get_str_list(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if isinstance(value, str):  # Docker's strslice accepts a bare string
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{what}: field {key!r} must be a list of strings")
    return tuple(value)


def _get_set_keys(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    # ExposedPorts and Volumes are JSON objects used as sets: {"80/tcp": {}}.
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: field {key!r} must be an object")
    return tuple(sorted(value))


def _parse_platform(obj: Any, what: str) -> Platform | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: 'platform' must be an object")
    features = obj.get("os.features", obj.get("features"))
    if features is not None and (
        not isinstance(features, list) or not all(isinstance(f, str) for f in features)
    ):
        raise InvalidArgument(f"{what}: platform 'os.features' must be a list of strings")
    return Platform(
        os=_get_str(obj, "os", what, required=True),
        architecture=_get_str(obj, "architecture", what, required=True),
        variant=_get_str(obj, "variant", what),
        os_version=_get_str(obj, "os.version", what),
        os_features=tuple(features or ()),
    )


def _parse_descriptor(obj: Any, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be an object")
    digest = _get_str(obj, "digest", what, required=True)
    try:
        parse_digest(digest)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc.message}") from exc
    size = obj.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidArgument(f"{what}: 'size' must be a non-negative integer, got {size!r}")
    urls = _get_str_list(obj, "urls", what)
    return Descriptor(
        media_type=_get_str(obj, "mediaType", what, required=True),
        digest=digest,
        size=size,
        urls=urls,
        annotations=_get_str_map(obj, "annotations", what),
        platform=_parse_platform(obj.get("platform"), what),
        artifact_type=_get_str(obj, "artifactType", what),
    )


def detect_media_type(data: bytes, content_type: str | None = None) -> str:
    """Decide what a manifest body is when the server's Content-Type is not to be trusted.

    The body's own ``mediaType`` wins: registries and proxies are known to send
    ``application/json`` or ``application/octet-stream``, but a signed digest
    covers the body. Without it, the header is used if it names a manifest type;
    otherwise the structure decides, as containers/image's GuessMIMEType does.
    """
    obj = _load_json_object(data, "manifest")
    body_type = obj.get("mediaType")
    if isinstance(body_type, str) and body_type:
        return body_type
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype in IMAGE_MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES | SCHEMA1_MEDIA_TYPES:
        return ctype
    if obj.get("schemaVersion") == 1 or "fsLayers" in obj:
        return (
            MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED if "signatures" in obj else MEDIA_TYPE_DOCKER_SCHEMA1
        )
    if "manifests" in obj:
        return MEDIA_TYPE_OCI_INDEX
    if "config" in obj and "layers" in obj:
        return MEDIA_TYPE_OCI_MANIFEST
    raise InvalidArgument(
        f"cannot tell what kind of manifest this is (Content-Type {content_type!r}, "
        "no 'mediaType' field, neither 'manifests' nor 'config'+'layers')"
    )


def parse_manifest(
    data: bytes, media_type: str | None = None, *, source: str = "manifest"
) -> ImageManifest | ImageIndex:
    """Parse any supported manifest; ``source`` names the image in error messages."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise InvalidArgument(
            f"{source}: manifest is {len(data)} bytes, more than the {MAX_MANIFEST_SIZE} allowed"
        )
    kind = detect_media_type(data, media_type)
    if kind in SCHEMA1_MEDIA_TYPES:
        raise InvalidArgument(
            f"{source}: Docker schema 1 manifests are not supported; "
            "re-push the image with a current Docker/Podman/skopeo (schema 2 or OCI)"
        )
    obj = _load_json_object(data, source)
    if obj.get("schemaVersion") != 2:
        raise InvalidArgument(
            f"{source}: unsupported schemaVersion {obj.get('schemaVersion')!r}, expected 2"
        )
    body_type = obj.get("mediaType")
    header_type = (media_type or "").split(";", 1)[0].strip().lower()
    if (
        isinstance(body_type, str)
        and body_type
        and header_type in IMAGE_MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
        and header_type != body_type
    ):
        raise InvalidArgument(
            f"{source}: registry said {header_type} but the manifest says {body_type}"
        )
    annotations = _get_str_map(obj, "annotations", source)
    if kind in INDEX_MEDIA_TYPES:
        entries = obj.get("manifests")
        if not isinstance(entries, list):
            raise InvalidArgument(f"{source}: index has no 'manifests' list")
        manifests = tuple(
            _parse_descriptor(e, f"{source}: manifests[{i}]") for i, e in enumerate(entries)
        )
        return ImageIndex(media_type=kind, manifests=manifests, annotations=annotations)
    if kind in IMAGE_MANIFEST_MEDIA_TYPES:
        config = _parse_descriptor(obj.get("config"), f"{source}: config")
        if config.media_type not in CONFIG_MEDIA_TYPES:
            raise InvalidArgument(
                f"{source}: not a container image (config media type {config.media_type!r}); "
                "it is probably an OCI artifact such as a Helm chart or a signature"
            )
        raw_layers = obj.get("layers")
        if not isinstance(raw_layers, list):
            raise InvalidArgument(f"{source}: manifest has no 'layers' list")
        layers = tuple(
            _parse_descriptor(e, f"{source}: layers[{i}]") for i, e in enumerate(raw_layers)
        )
        subject = obj.get("subject")
        return ImageManifest(
            media_type=kind,
            config=config,
            layers=layers,
            annotations=annotations,
            subject=_parse_descriptor(subject, f"{source}: subject") if subject else None,
        )
    raise InvalidArgument(f"{source}: unsupported manifest media type {kind!r}")


def layer_compression(layer: Descriptor) -> str:
    """Compression of a layer blob ("gzip", "zstd" or "" for plain tar), or refuse it early.

    Checking before download gives the operator a clear error instead of a
    failed unpack after pulling gigabytes.
    """
    try:
        return LAYER_COMPRESSION[layer.media_type]
    except KeyError:
        raise InvalidArgument(
            f"layer {layer.digest} has unsupported media type {layer.media_type!r}"
        ) from None


def parse_image_config(data: bytes, *, source: str = "image config") -> ImageConfig:
    """Parse an OCI or Docker image config (the JSON object both formats share)."""
    if len(data) > MAX_CONFIG_SIZE:
        raise InvalidArgument(f"{source}: config is {len(data)} bytes, too large")
    obj = _load_json_object(data, source)
    cfg = obj.get("config")
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise InvalidArgument(f"{source}: 'config' must be an object")
    what = f"{source}: config"
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidArgument(f"{source}: missing 'rootfs' object")
    if rootfs.get("type") != "layers":
        raise InvalidArgument(f"{source}: rootfs.type must be 'layers', got {rootfs.get('type')!r}")
    diff_ids = _get_str_list(rootfs, "diff_ids", f"{source}: rootfs")
    for d in diff_ids:
        try:
            parse_digest(d)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{source}: rootfs.diff_ids: {exc.message}") from exc
    history = obj.get("history")
    return ImageConfig(
        architecture=_get_str(obj, "architecture", source),
        os=_get_str(obj, "os", source),
        variant=_get_str(obj, "variant", source),
        created=_get_str(obj, "created", source),
        author=_get_str(obj, "author", source),
        user=_get_str(cfg, "User", what),
        env=_get_str_list(cfg, "Env", what),
        entrypoint=_get_str_list(cfg, "Entrypoint", what),
        cmd=_get_str_list(cfg, "Cmd", what),
        working_dir=_get_str(cfg, "WorkingDir", what),
        volumes=_get_set_keys(cfg, "Volumes", what),
        stop_signal=_get_str(cfg, "StopSignal", what),
        labels=_get_str_map(cfg, "Labels", what),
        exposed_ports=_get_set_keys(cfg, "ExposedPorts", what),
        diff_ids=diff_ids,
        history_count=len(history) if isinstance(history, list) else 0,
    )


def check_config_matches_manifest(
    manifest: ImageManifest, config: ImageConfig, *, source: str = "image"
) -> None:
    """Each layer must have a diff_id; a mismatch means a broken image, caught before unpack."""
    if len(manifest.layers) != len(config.diff_ids):
        raise InvalidArgument(
            f"{source}: manifest lists {len(manifest.layers)} layers but the config has "
            f"{len(config.diff_ids)} rootfs.diff_ids"
        )


# --- platforms ---------------------------------------------------------------

#: Python's platform.machine() -> (GOARCH, variant), as Go and the OCI spec spell them.
_MACHINE_TO_GOARCH: Mapping[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5l": ("arm", "v5"),
    "ppc64le": ("ppc64le", ""),
    "ppc64": ("ppc64", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""),
    "mips64el": ("mips64le", ""),
    "loongarch64": ("loong64", ""),
}

#: Variants an architecture can also run, best first (containers/image's table).
_VARIANT_COMPAT: Mapping[str, tuple[str, ...]] = {
    "arm": ("v8", "v7", "v6", "v5"),
    "arm64": ("v8",),
}


def goarch_for_machine(machine: str) -> tuple[str, str]:
    """Map a uname machine string to (GOARCH, variant); images are labelled in Go's terms."""
    m = machine.strip().lower()
    if m in _MACHINE_TO_GOARCH:
        return _MACHINE_TO_GOARCH[m]
    raise InvalidArgument(f"unknown machine architecture {machine!r}: cannot choose an image")


def host_platform(machine: str | None = None, system: str | None = None) -> Platform:
    """The platform this node should pull; arguments exist so tests can pretend."""
    arch, variant = goarch_for_machine(machine if machine is not None else _platform.machine())
    os_name = (system if system is not None else _platform.system()).lower()
    return Platform(os=os_name, architecture=arch, variant=variant)


def wanted_platforms(p: Platform) -> list[Platform]:
    """Platforms acceptable for ``p``, best first.

    Same order as containers/image's WantedPlatforms: the exact variant, then
    older compatible ones, then an entry with no variant at all (most
    single-variant images leave it out). Without a wanted variant, the
    variant-less entry comes first.
    """
    variants: list[str]
    compat = _VARIANT_COMPAT.get(p.architecture, ())
    if p.variant:
        variants = list(compat[compat.index(p.variant) :]) if p.variant in compat else [p.variant]
        variants.append("")
    else:
        variants = ["", *compat]
    seen: list[Platform] = []
    for v in variants:
        cand = Platform(os=p.os, architecture=p.architecture, variant=v)
        if cand not in seen:
            seen.append(cand)
    return seen


def _matches(entry: Platform, wanted: Platform) -> bool:
    if entry.os != wanted.os or entry.architecture != wanted.architecture:
        return False
    variant = entry.variant
    # arm64 images are commonly labelled either "v8" or nothing: treat them alike.
    if entry.architecture == "arm64" and variant == "v8" and wanted.variant == "":
        return True
    return variant == wanted.variant


def select_manifest(
    index: ImageIndex, wanted: Platform | None = None, *, source: str = "image"
) -> Descriptor:
    """Pick the index entry this node runs, or say which platforms the image offers."""
    target = wanted or host_platform()
    for cand in wanted_platforms(target):
        for desc in index.manifests:
            if desc.media_type not in IMAGE_MANIFEST_MEDIA_TYPES:
                continue  # nested indexes and attestations are not runnable images
            if desc.platform is not None and _matches(desc.platform, cand):
                return desc
    offered = sorted({str(d.platform) for d in index.manifests if d.platform is not None}) or [
        "none declared"
    ]
    raise NotFound(
        f"{source}: no image for platform {target} in the index; available: {', '.join(offered)}"
    )


def descriptors_in(manifest: ImageManifest | ImageIndex) -> Sequence[Descriptor]:
    """Every blob or manifest a manifest refers to, for garbage collection and pulls."""
    if isinstance(manifest, ImageIndex):
        return manifest.manifests
    return (manifest.config, *manifest.layers)
