"""signedIdentity: which docker reference a signature must claim for an image.

containers-policy.json(5) lets a requirement say how the reference inside a
verified signature must relate to the image being pulled. The rules here are
pure functions on strings, so every case is a unit test; the default,
matchRepoDigestOrExact, is what protects against a signed image being served
under another tag.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pycrio.errors import InvalidArgument
from pycrio.image.reference import Reference, is_valid_domain, parse, split_reference

MATCH_EXACT = "matchExact"
MATCH_REPO_DIGEST_OR_EXACT = "matchRepoDigestOrExact"
MATCH_REPOSITORY = "matchRepository"
EXACT_REFERENCE = "exactReference"
EXACT_REPOSITORY = "exactRepository"
REMAP_IDENTITY = "remapIdentity"

_FIELDS = {
    MATCH_EXACT: (),
    MATCH_REPO_DIGEST_OR_EXACT: (),
    MATCH_REPOSITORY: (),
    EXACT_REFERENCE: ("dockerReference",),
    EXACT_REPOSITORY: ("dockerRepository",),
    REMAP_IDENTITY: ("prefix", "signedPrefix"),
}


@dataclass(frozen=True)
class IdentityRule:
    type: str = MATCH_REPO_DIGEST_OR_EXACT
    docker_reference: Reference | None = None
    docker_repository: str = ""
    prefix: str = ""
    signed_prefix: str = ""

    def describe(self) -> str:
        if self.type == EXACT_REFERENCE:
            return f"{self.type} {self.docker_reference}"
        if self.type == EXACT_REPOSITORY:
            return f"{self.type} {self.docker_repository}"
        if self.type == REMAP_IDENTITY:
            return f"{self.type} {self.prefix} -> {self.signed_prefix}"
        return self.type


DEFAULT_RULE = IdentityRule()


def parse_rule(value: Any, where: str) -> IdentityRule:
    """Validate a signedIdentity object; raise InvalidArgument naming ``where``."""
    if value is None:
        return DEFAULT_RULE
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise InvalidArgument(f'{where}: signedIdentity must be an object with a string "type"')
    kind = value["type"]
    if kind not in _FIELDS:
        raise InvalidArgument(
            f"{where}: unknown signedIdentity type {kind!r}; expected one of {sorted(_FIELDS)}"
        )
    wanted = _FIELDS[kind]
    extra = sorted(set(value) - {"type", *wanted})
    if extra:
        raise InvalidArgument(f"{where}: signedIdentity {kind!r} does not take {extra[0]!r}")
    for key in wanted:
        if not isinstance(value.get(key), str) or not value[key]:
            raise InvalidArgument(f"{where}: signedIdentity {kind!r} needs a string {key!r}")
    try:
        if kind == EXACT_REFERENCE:
            ref = parse_signed_name(value["dockerReference"])
            if ref.tag is None and ref.digest is None:
                raise InvalidArgument("it needs a tag or a digest")
            return IdentityRule(kind, docker_reference=ref)
        if kind == EXACT_REPOSITORY:
            repo = parse_signed_name(value["dockerRepository"])
            if repo.tag is not None or repo.digest is not None:
                raise InvalidArgument("a repository takes no tag or digest")
            return IdentityRule(kind, docker_repository=repo.name)
        if kind == REMAP_IDENTITY:
            return IdentityRule(
                kind,
                prefix=_check_prefix(value["prefix"]),
                signed_prefix=_check_prefix(value["signedPrefix"]),
            )
    except InvalidArgument as e:
        raise InvalidArgument(f"{where}: signedIdentity {kind!r}: {e.message}") from e
    return IdentityRule(kind)


def parse_signed_name(text: str) -> Reference:
    """A docker reference, normalized, keeping the absence of a tag (cosign signs names).

    Unlike ``parse``, no ":latest" is added: a signed name without a tag is
    not the same claim as one with it.
    """
    _, tag, digest = split_reference(text)
    return replace(parse(text), tag=tag, digest=digest)


def image_identity(ref: Reference) -> Reference:
    """The identity of the image being pulled: a digest, when there is one, wins over a tag."""
    if ref.digest is not None:
        return replace(ref, tag=None)
    return ref


def check(rule: IdentityRule, image: Reference, signed_reference: str) -> None:
    """Raise ValueError saying why ``signed_reference`` does not satisfy ``rule`` for ``image``."""
    try:
        signed = parse_signed_name(signed_reference)
    except InvalidArgument as e:
        raise ValueError(f"the signed identity {signed_reference!r} is invalid: {e.message}") from e
    ident = image_identity(image)
    kind = rule.type
    if kind == MATCH_EXACT:
        ok = signed == ident
    elif kind == MATCH_REPO_DIGEST_OR_EXACT:
        ok = _repo_digest_or_exact(ident, signed)
    elif kind == MATCH_REPOSITORY:
        ok = signed.name == ident.name
    elif kind == EXACT_REFERENCE:
        ok = signed == rule.docker_reference
    elif kind == EXACT_REPOSITORY:
        ok = signed.name == rule.docker_repository
    elif kind == REMAP_IDENTITY:
        ok = _repo_digest_or_exact(_remap(ident, rule.prefix, rule.signed_prefix), signed)
    else:  # pragma: no cover - parse_rule admits no other type
        raise ValueError(f"unknown signedIdentity type {kind!r}")
    if not ok:
        raise ValueError(
            f"the signature is for {signed}, which does not match {ident} "
            f"under signedIdentity {rule.describe()}"
        )


def _repo_digest_or_exact(ident: Reference, signed: Reference) -> bool:
    if ident.digest is not None:
        return signed.name == ident.name
    return signed == ident


def _remap(ident: Reference, prefix: str, signed_prefix: str) -> Reference:
    """Replace ``prefix`` at a name boundary by ``signed_prefix``; unchanged otherwise."""
    name = ident.name
    # A host prefix matches only that host ("example.com" is not "example.com:5000").
    if name != prefix and not (name.startswith(prefix) and name[len(prefix)] == "/"):
        return ident
    try:
        remapped = parse_signed_name(signed_prefix + name[len(prefix) :])
    except InvalidArgument:
        return ident
    return replace(remapped, tag=ident.tag, digest=ident.digest)


def _check_prefix(value: str) -> str:
    """host[:port], a namespace or a repository, in the fully expanded form."""
    if "/" not in value:
        if not is_valid_domain(value):
            raise InvalidArgument(f"{value!r} is not a host[:port]")
        return value
    _, tag, digest = split_reference(value)
    if tag is not None or digest is not None:
        raise InvalidArgument(f"{value!r}: a prefix takes no tag or digest")
    if parse(value).name != value:
        raise InvalidArgument(
            f"{value!r} is not in the fully expanded form (it means {parse(value).name})"
        )
    return value
