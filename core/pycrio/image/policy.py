"""containers-policy.json(5): whether an image may be pulled at all.

CRI-O consults the signature policy before every pull, optionally per
Kubernetes namespace. pycrio reads the same file with the same scope rules.
``reject`` and unknown requirement types deny the pull before anything is
fetched; ``signedBy`` and ``sigstoreSigned`` are parsed here (strictly) and
handed back by ``check`` for ``pycrio.image.signature.verifier`` to enforce
once the manifest is known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pycrio.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from pycrio.image.reference import Reference
from pycrio.image.signature.requirements import (
    SIGNED_BY,
    SIGSTORE_SIGNED,
    SignatureRequirement,
    parse_requirement,
)

DEFAULT_POLICY_PATH = "/etc/containers/policy.json"

ACCEPT = "insecureAcceptAnything"
REJECT = "reject"
SIGNATURE_TYPES = (SIGNED_BY, SIGSTORE_SIGNED)

# A Kubernetes namespace is an RFC 1123 label; anything else could walk out of
# the policy directory.
_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

StrPath = str | PathLike[str]


@dataclass(frozen=True)
class Requirement:
    """One policy requirement; fields beyond "type" are kept for messages."""

    type: str
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    # The parsed form of a signedBy or sigstoreSigned requirement.
    signature: SignatureRequirement | None = field(default=None, hash=False, compare=False)


Requirements = tuple[Requirement, ...]


@dataclass(frozen=True)
class Decision:
    """What a policy says about one image once reject has been ruled out.

    ``signatures`` are the requirements still to be met by verified
    signatures of the manifest; empty means the image is accepted as is.
    """

    source: str
    scope: str  # as written in messages: default or transports.docker['...']
    signatures: tuple[SignatureRequirement, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A loaded policy.json."""

    default: Requirements
    transports: Mapping[str, Mapping[str, Requirements]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    source: str = ""

    @classmethod
    def load(cls, path: StrPath) -> Policy:
        """Read path; unlike registries.conf a missing policy is an error, as in CRI-O.

        Pulling with no policy at all would silently drop the operator's
        intent, so the file must exist.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise FailedPrecondition(
                f"signature policy {path} does not exist; create it, e.g. "
                '{"default": [{"type": "insecureAcceptAnything"}]} to accept every image'
            ) from e
        except (OSError, UnicodeDecodeError) as e:
            raise FailedPrecondition(f"cannot read signature policy {path}: {e}") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"invalid JSON in signature policy {path}: {e}") from e
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<policy>") -> Policy:
        """Validate the decoded JSON; errors name the file and the offending key."""
        if not isinstance(data, dict):
            raise _error(source, "", "the top level must be a JSON object")
        if "default" not in data:
            raise _error(
                source,
                "default",
                'is missing; every policy needs one, e.g. "default": [{"type": "reject"}]',
            )
        unknown = sorted(set(data) - {"default", "transports"})
        if unknown:
            # A misspelt "transports" would otherwise silently fall back to default.
            raise _error(source, unknown[0], 'unknown key; expected "default" and "transports"')
        default = _parse_requirements(source, "default", data["default"])
        transports_data = data.get("transports", {})
        if not isinstance(transports_data, dict):
            raise _error(source, "transports", "must be an object of transport names")
        transports = {}
        for transport, scopes in transports_data.items():
            if not isinstance(scopes, dict):
                raise _error(source, f"transports.{transport}", "must be an object of scopes")
            transports[transport] = MappingProxyType(
                {
                    scope: _parse_requirements(source, f"transports.{transport}[{scope!r}]", reqs)
                    for scope, reqs in scopes.items()
                }
            )
        return cls(default=default, transports=MappingProxyType(transports), source=source)

    def requirements_for(
        self, ref: Reference, transport: str = "docker"
    ) -> tuple[str, Requirements]:
        """The scope that applies to ref and its requirements, most specific scope first.

        Order, from containers/image: the full reference with tag or digest,
        the repository, each parent namespace, the host[:port], then
        *.subdomain wildcards from longest to shortest, then the transport's ""
        scope, then "default".
        """
        scopes = self.transports.get(transport, {})
        for scope in _docker_scopes(ref):
            if scope in scopes:
                return scope, scopes[scope]
        if "" in scopes:
            return "", scopes[""]
        return "default", self.default

    def check(self, ref: Reference, transport: str = "docker") -> Decision:
        """Raise PermissionDenied if ref's scope rejects it; else say which signatures it needs.

        Every requirement of the scope must accept the image; reject and
        unknown types are settled here, before any byte is fetched.
        """
        scope, requirements = self.requirements_for(ref, transport)
        where = "default" if scope == "default" else f"transports.{transport}[{scope!r}]"
        signatures = []
        for requirement in requirements:
            if requirement.type == ACCEPT:
                continue
            if requirement.type == REJECT:
                raise PermissionDenied(
                    f"image {ref} is rejected by signature policy {self.source} "
                    f"(scope {where} requires {REJECT!r})"
                )
            if requirement.signature is not None:
                signatures.append(requirement.signature)
                continue
            raise PermissionDenied(
                f"image {ref} cannot be verified: signature policy {self.source} (scope {where}) "
                f"requires unknown requirement type {requirement.type!r}, which pycrio does not "
                "support; pulling it unverified would bypass the policy, so the pull is denied"
            )
        return Decision(self.source, where, tuple(signatures))


def policy_path_for_namespace(
    signature_policy: StrPath, signature_policy_dir: StrPath, namespace: str
) -> Path:
    """CRI-O's per-namespace policy: <dir>/<namespace>.json if it exists, else the default.

    An empty signature_policy means containers/image's default path.
    """
    default = Path(signature_policy or DEFAULT_POLICY_PATH)
    if not namespace or not signature_policy_dir:
        return default
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise InvalidArgument(
            f"invalid namespace {namespace!r} for the per-namespace signature policy: "
            "expected a Kubernetes namespace (lowercase RFC 1123 label)"
        )
    candidate = Path(signature_policy_dir) / f"{namespace}.json"
    try:
        candidate.stat()
    except FileNotFoundError:
        return default
    except OSError as e:
        raise FailedPrecondition(f"cannot read signature policy {candidate}: {e}") from e
    return candidate


def _error(source: str, key: str, why: str) -> InvalidArgument:
    where = f" at {key}" if key else ""
    return InvalidArgument(f"invalid signature policy {source}{where}: {why}")


def _parse_requirements(source: str, key: str, value: Any) -> Requirements:
    if not isinstance(value, list) or not value:
        raise _error(source, key, 'must be a non-empty array such as [{"type": "reject"}]')
    requirements = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise _error(source, f"{key}[{i}]", 'must be an object with a string "type"')
        fields = {k: v for k, v in item.items() if k != "type"}
        if item["type"] in (ACCEPT, REJECT) and fields:
            raise _error(
                source,
                f"{key}[{i}]",
                f"{item['type']!r} takes no other fields, got {sorted(fields)}",
            )
        signature = None
        if item["type"] in SIGNATURE_TYPES:
            signature = parse_requirement(
                item["type"], fields, f"invalid signature policy {source} at {key}[{i}]"
            )
        requirements.append(Requirement(item["type"], MappingProxyType(fields), signature))
    return tuple(requirements)


def _docker_scopes(ref: Reference) -> list[str]:
    """Scopes for ref from most to least specific, as containers/image lists them."""
    if ref.digest is not None:
        # A digest pins the image whatever the tag says.
        scopes = [f"{ref.name}@{ref.digest}"]
    elif ref.tag is not None:
        scopes = [f"{ref.name}:{ref.tag}"]
    else:
        scopes = []
    name = ref.name
    while True:
        scopes.append(name)
        head, slash, _ = name.rpartition("/")
        if not slash:
            break
        name = head
    host = _strip_port(ref.domain)
    while "." in host:
        host = host.split(".", 1)[1]
        scopes.append(f"*.{host}")
    return scopes


def _strip_port(domain: str) -> str:
    if domain.startswith("["):
        return domain[: domain.index("]") + 1]
    return domain.split(":", 1)[0]
