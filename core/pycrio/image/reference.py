"""Image references, parsed and normalized exactly as the kubelet and CRI-O see them.

The kubelet passes whatever the pod spec says ("busybox", "quay.io/org/app:1.0",
"name:tag@sha256:...", sometimes a bare image ID). CRI-O normalizes these with
containers/image's copy of distribution's `reference.ParseNormalizedNamed`, and
every name pycrio stores, reports or matches against registries.conf and
policy.json must be that same string, or lookups silently miss. The grammar
(distribution/reference, reference.go and regexp.go):

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] remote-name
    domain           := host [":" port-number]
    host             := domain-name | IPv4address | "[" IPv6address "]"
    domain-name      := domain-component ["." domain-component]*
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    remote-name      := path-component ["/" path-component]*
    path-component   := /[a-z0-9]+/ [separator /[a-z0-9]+/]*
    separator        := /[_.]|__|[-]+/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" /[0-9a-fA-F]{32,}/

Normalization (normalize.go): the first "/"-separated component is a registry
only if it contains "." or ":", is "localhost", or has uppercase letters (paths
may not); otherwise the name is on docker.io. "index.docker.io" becomes
"docker.io", single-component docker.io names get "library/", and ":latest" is
added when there is neither a tag nor a digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pycrio.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
# containers/image (which CRI-O uses) limits the whole normalized name, domain
# included; newer distribution releases only limit the path. We follow CRI-O.
NAME_TOTAL_LENGTH_MAX = 255
# No valid reference is anywhere near this long; checking first keeps hostile
# input away from the regular expressions.
_INPUT_LENGTH_MAX = 1024

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
# Compressed or full IPv6 only: zone identifiers and IPv4-mapped forms are out.
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
# Go's \w is ASCII-only; Python's is Unicode, so spell it out.
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_REMOTE_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_DOMAIN_RE = re.compile(_DOMAIN)
_REMOTE_NAME_RE = re.compile(_REMOTE_NAME)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")

# The algorithms go-digest registers, with their hex lengths. A digest with any
# other algorithm parses under the grammar but cannot be verified, so CRI-O
# (via go-digest) rejects it, and so do we.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_FORMAT_HINT = (
    "expected [registry[:port]/]repository[:tag][@digest], where repository path "
    "components are lowercase letters and digits joined by '.', '_', '__' or '-', "
    "and a tag is 1-128 of [A-Za-z0-9_.-] not starting with '.' or '-'"
)


@dataclass(frozen=True)
class Reference:
    """A normalized, fully qualified image reference.

    Construction validates, so a Reference in hand is always one that `parse`
    could have returned: its string form parses back to an equal value.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        _validate_components(self.domain, self.path)
        if self.tag is not None and not _TAG_RE.fullmatch(self.tag):
            raise InvalidArgument(f"invalid tag {self.tag!r} for {self.name}: {_FORMAT_HINT}")
        if self.digest is not None:
            _validate_digest(self.digest, self.name)

    @property
    def name(self) -> str:
        """Registry and repository, without tag or digest: the key for storage and policy."""
        return f"{self.domain}/{self.path}"

    def string(self) -> str:
        """The canonical full form, e.g. docker.io/library/busybox:latest."""
        s = self.name
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s

    def __str__(self) -> str:
        return self.string()

    def familiar(self) -> str:
        """The short form docker and crictl show: docker.io and library/ dropped."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = self.path
            rest = name.removeprefix(OFFICIAL_REPO_PREFIX)
            if rest != name and "/" not in rest:
                name = rest
        return name + self.string()[len(self.name) :]

    def with_tag(self, tag: str) -> Reference:
        """Same repository and digest, another tag (validated)."""
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """Same repository and tag, another digest (validated)."""
        return replace(self, digest=digest)


def parse(s: str) -> Reference:
    """Parse and normalize a reference the way the kubelet and CRI-O do.

    Short names land on docker.io ("busybox" -> docker.io/library/busybox:latest);
    use the registries.conf short-name resolution instead when the operator's
    search registries should decide.
    """
    if not s:
        raise InvalidArgument(
            "image reference is empty: expected a name like 'busybox' or 'quay.io/org/app:1.0'"
        )
    if len(s) > _INPUT_LENGTH_MAX:
        raise InvalidArgument(
            f"invalid image reference {s[:64]!r}...: {len(s)} characters is longer than any "
            "valid reference"
        )
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidArgument(
            f"invalid image reference {s!r}: a 64-character hex string is an image ID, not a "
            "repository name; look it up as an image ID, or prefix it with a registry"
        )
    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidArgument(
            f"invalid image reference {s!r}: repository name {remote!r} must be lowercase"
        )
    name, tag, digest = _match(f"{domain}/{remainder}", original=s)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    path = name[len(domain) + 1 :]
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def split_reference(s: str) -> tuple[str, str | None, str | None]:
    """Split s into (name, tag, digest) without normalizing anything.

    Short-name resolution needs the name exactly as written ("busybox", not
    docker.io/library/busybox) to look up aliases and to prefix search registries.
    """
    if not s:
        raise InvalidArgument("image name is empty")
    if len(s) > _INPUT_LENGTH_MAX:
        raise InvalidArgument(f"invalid image name {s[:64]!r}...: too long")
    return _match(s, original=s)


def is_short_name(s: str) -> bool:
    """Whether s names no registry, so registries.conf must pick one.

    As in containers/image's shortnames package: the first component is a
    registry only if it contains '.' or ':' or is 'localhost'. So "busybox",
    "library/busybox" and "busybox@sha256:..." are short; "quay.io/x",
    "localhost/x" and "host:5000/x" are not. Only the shape is inspected; parse
    the name to validate it.
    """
    first, slash, _ = s.partition("/")
    if not slash:
        return True
    return not (("." in first) or (":" in first) or first == "localhost")


def is_image_id(s: str) -> bool:
    """Whether s is an image ID (64 lowercase hex, optionally with "sha256:")."""
    return parse_image_id(s) is not None


def parse_image_id(s: str) -> str | None:
    """The canonical "sha256:<hex>" form of an image ID, or None if s is not one.

    The kubelet passes image IDs where references are expected (ImageStatus,
    RemoveImage); they must be recognised before parse() rejects them.
    """
    hex_part = s.removeprefix("sha256:")
    if _IDENTIFIER_RE.fullmatch(hex_part):
        return f"sha256:{hex_part}"
    return None


def is_valid_domain(s: str) -> bool:
    """Whether s is a registry host[:port] as the reference grammar allows."""
    return bool(_DOMAIN_RE.fullmatch(s))


def _split_docker_domain(s: str) -> tuple[str, str]:
    maybe_domain, slash, rest = s.partition("/")
    if not slash:
        # A single component is always a docker.io official image, even
        # "localhost" or "example.com" (distribution's documented FIXME).
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + s
    if maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif (
        maybe_domain == "localhost"
        or "." in maybe_domain
        or ":" in maybe_domain
        or maybe_domain.lower() != maybe_domain
    ):
        domain, remainder = maybe_domain, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, s
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _match(candidate: str, *, original: str) -> tuple[str, str | None, str | None]:
    m = _REFERENCE_RE.fullmatch(candidate)
    if m is None:
        if _REFERENCE_RE.fullmatch(candidate.lower()):
            raise InvalidArgument(
                f"invalid image reference {original!r}: repository name must be lowercase"
            )
        named, at, digest = candidate.rpartition("@")
        if at and _REFERENCE_RE.fullmatch(named):
            # Only the digest is wrong (too short, bad algorithm...): say so.
            _validate_digest(digest, original)
        raise InvalidArgument(f"invalid image reference {original!r}: {_diagnose(original)}")
    name, tag, digest = m.group("name", "tag", "digest")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"invalid image reference {original!r}: repository name {name!r} is {len(name)} "
            f"characters, more than the maximum of {NAME_TOTAL_LENGTH_MAX}"
        )
    if digest is not None:
        _validate_digest(digest, original)
    return name, tag, digest


def _diagnose(s: str) -> str:
    """Name the most likely mistake, so the operator can fix the pod spec."""
    if "://" in s:
        return "remove the URL scheme; references name a registry host, not a URL"
    if any(c.isspace() for c in s):
        return "references may not contain whitespace"
    if "//" in s or s.endswith("/") or s.startswith("/"):
        return "a repository path component is empty"
    return _FORMAT_HINT


def _validate_components(domain: str, path: str) -> None:
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidArgument(f"invalid registry {domain!r}: expected host[:port]")
    if not (domain == "localhost" or "." in domain or ":" in domain or domain.lower() != domain):
        # Such a string form would parse as a docker.io namespace, not a registry.
        raise InvalidArgument(
            f"invalid registry {domain!r}: a registry needs a '.', a ':port' or to be "
            "'localhost', otherwise it reads as a docker.io namespace"
        )
    if domain == LEGACY_DEFAULT_DOMAIN or (domain == DEFAULT_DOMAIN and "/" not in path):
        raise InvalidArgument(
            f"reference {domain}/{path} is not normalized; build references with parse()"
        )
    if not _REMOTE_NAME_RE.fullmatch(path):
        raise InvalidArgument(f"invalid repository path {path!r}: {_FORMAT_HINT}")
    length = len(domain) + 1 + len(path)
    if length > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"repository name {domain}/{path} is {length} characters, more than the "
            f"maximum of {NAME_TOTAL_LENGTH_MAX}"
        )


def _validate_digest(digest: str, context: str) -> None:
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidArgument(
            f"invalid digest {digest!r} in {context!r}: expected <algorithm>:<hex>, "
            "e.g. sha256:<64 hex characters>"
        )
    algorithm, _, hex_part = digest.partition(":")
    expected = _DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        supported = ", ".join(_DIGEST_HEX_LENGTHS)
        raise InvalidArgument(
            f"invalid digest {digest!r} in {context!r}: unsupported algorithm {algorithm!r} "
            f"(supported: {supported})"
        )
    if len(hex_part) != expected:
        raise InvalidArgument(
            f"invalid digest {digest!r} in {context!r}: a {algorithm} digest has exactly "
            f"{expected} hex characters, this one has {len(hex_part)}"
        )
    if hex_part.lower() != hex_part:
        raise InvalidArgument(
            f"invalid digest {digest!r} in {context!r}: digest hex must be lowercase"
        )
