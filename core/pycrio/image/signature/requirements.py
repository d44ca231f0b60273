"""The signedBy and sigstoreSigned requirements of containers-policy.json(5), validated.

Parsing is strict, as containers/image's is: a misspelt key or two key
sources at once would otherwise quietly change what is trusted. Key files
are named here and read at each pull, so a rotated key or CA takes effect
without a restart, like the policy file itself.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from pycrio.errors import InvalidArgument
from pycrio.image.signature.identity import IdentityRule, parse_rule

SIGNED_BY = "signedBy"
SIGSTORE_SIGNED = "sigstoreSigned"
GPG_KEYS = "GPGKeys"


@dataclass(frozen=True)
class KeySource:
    """Key material named by a requirement: files to read, or inline bytes."""

    paths: tuple[str, ...] = ()
    data: tuple[bytes, ...] = ()

    def describe(self) -> str:
        if self.paths:
            return ", ".join(self.paths)
        return "keyData"


@dataclass(frozen=True)
class Fulcio:
    ca: KeySource
    oidc_issuer: str
    subject_email: str


@dataclass(frozen=True)
class SignedBy:
    keys: KeySource
    identity: IdentityRule
    type: str = SIGNED_BY


@dataclass(frozen=True)
class SigstoreSigned:
    keys: KeySource | None
    fulcio: Fulcio | None
    rekor: KeySource | None
    identity: IdentityRule
    type: str = SIGSTORE_SIGNED


SignatureRequirement = SignedBy | SigstoreSigned


def parse_requirement(kind: str, fields: dict[str, Any], where: str) -> SignatureRequirement:
    """Parse the fields (without "type") of a signedBy or sigstoreSigned requirement."""
    if kind == SIGNED_BY:
        _only(fields, ("keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"), where)
        key_type = fields.get("keyType", GPG_KEYS)
        if key_type != GPG_KEYS:
            raise InvalidArgument(
                f"{where}: keyType {key_type!r} is not supported; the only keyType is {GPG_KEYS!r}"
            )
        keys = _keys(fields, ("keyPath", "keyPaths", "keyData"), where, required=True)
        assert keys is not None
        return SignedBy(keys, parse_rule(fields.get("signedIdentity"), where))
    if kind == SIGSTORE_SIGNED:
        allowed = (
            "keyPath", "keyPaths", "keyData", "keyDatas", "fulcio",
            "rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
            "rekorPublicKeyDatas", "signedIdentity",
        )  # fmt: skip
        if "pki" in fields:
            raise InvalidArgument(f'{where}: sigstoreSigned "pki" is not supported by pycrio')
        _only(fields, allowed, where)
        sources = [
            k for k in ("keyPath", "keyPaths", "keyData", "keyDatas", "fulcio") if k in fields
        ]
        if len(sources) != 1:
            raise InvalidArgument(
                f"{where}: sigstoreSigned needs exactly one of keyPath, keyPaths, keyData, "
                f"keyDatas and fulcio, got {sources or 'none'}"
            )
        keys = _keys(fields, ("keyPath", "keyPaths", "keyData", "keyDatas"), where, required=False)
        fulcio = _fulcio(fields["fulcio"], f"{where}.fulcio") if "fulcio" in fields else None
        rekor = _keys(
            fields,
            (
                "rekorPublicKeyPath",
                "rekorPublicKeyPaths",
                "rekorPublicKeyData",
                "rekorPublicKeyDatas",
            ),
            where,
            required=False,
        )
        if fulcio is not None and rekor is None:
            raise InvalidArgument(
                f"{where}: sigstoreSigned with fulcio needs rekorPublicKeyPath or "
                "rekorPublicKeyData: a Fulcio certificate lives minutes, and only a Rekor "
                "entry proves it was valid when the image was signed"
            )
        return SigstoreSigned(keys, fulcio, rekor, parse_rule(fields.get("signedIdentity"), where))
    raise ValueError(f"not a signature requirement: {kind!r}")


def _only(fields: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(set(fields) - set(allowed))
    if extra:
        raise InvalidArgument(
            f"{where}: unknown key {extra[0]!r}; expected some of {list(allowed)}"
        )


def _keys(
    fields: dict[str, Any], names: tuple[str, ...], where: str, *, required: bool
) -> KeySource | None:
    present = [n for n in names if n in fields]
    if len(present) > 1:
        raise InvalidArgument(f"{where}: give only one of {', '.join(present)}")
    if not present:
        if required:
            raise InvalidArgument(f"{where}: needs one of {', '.join(names)}")
        return None
    name = present[0]
    value = fields[name]
    plural = name.endswith("s")
    values = value if plural else [value]
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and v for v in values)
    ):
        shape = "a non-empty array of strings" if plural else "a non-empty string"
        raise InvalidArgument(f"{where}: {name} must be {shape}")
    if "Path" in name:
        for path in values:
            if not path.startswith("/"):
                raise InvalidArgument(f"{where}: {name} {path!r} must be an absolute path")
        return KeySource(paths=tuple(values))
    decoded = []
    for v in values:
        try:
            decoded.append(base64.b64decode(v, validate=True))
        except (binascii.Error, ValueError) as e:
            raise InvalidArgument(f"{where}: {name} is not valid base64: {e}") from e
    return KeySource(data=tuple(decoded))


def _fulcio(value: Any, where: str) -> Fulcio:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: must be an object")
    _only(value, ("caPath", "caData", "oidcIssuer", "subjectEmail"), where)
    ca = _keys(value, ("caPath", "caData"), where, required=True)
    assert ca is not None
    for key in ("oidcIssuer", "subjectEmail"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise InvalidArgument(f"{where}: {key} is required (a non-empty string)")
    return Fulcio(ca, value["oidcIssuer"], value["subjectEmail"])
