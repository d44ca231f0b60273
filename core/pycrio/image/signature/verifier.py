"""Enforce a policy's signature requirements on one manifest, before anything is stored.

The puller fetches the manifest the tag points at once, computes its digest
from those bytes, and hands both here. Every requirement of the scope must
be met by at least one signature that (1) verifies cryptographically with a
key the requirement trusts, (2) claims exactly this manifest digest and (3)
claims an identity the requirement's signedIdentity accepts. The same bytes
are then what the puller uses: a tag moved during the pull cannot swap in an
unsigned manifest. Failures are FailedPrecondition messages that begin with
``SignatureValidationFailed`` (the reason CRI-O gives and the kubelet shows)
and name the image, the policy file, the scope and why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pycrio.errors import FailedPrecondition, InvalidArgument
from pycrio.image.manifest import compute_digest, parse_digest
from pycrio.image.policy import Decision
from pycrio.image.reference import Reference
from pycrio.image.signature import fulcio, gpg, identity, rekor, sigstore
from pycrio.image.signature.payload import ATOMIC_TYPE, COSIGN_TYPE, InvalidSignature, parse_payload
from pycrio.image.signature.requirements import (
    KeySource,
    SignatureRequirement,
    SignedBy,
    SigstoreSigned,
)
from pycrio.image.signature.sources import SignatureSource

log = logging.getLogger("pycrio.image")

MAX_KEY_FILE = 1024 * 1024
MAX_REASONS = 5
PREFIX = "SignatureValidationFailed"


@dataclass(frozen=True)
class Accepted:
    """What accepted the image, for the log."""

    requirement: str
    signer: str


def verify(
    decision: Decision,
    ref: Reference,
    manifest: bytes,
    manifest_digest: str,
    source: SignatureSource,
) -> list[Accepted]:
    """Raise FailedPrecondition unless every signature requirement is met."""
    accepted = []
    for n, requirement in enumerate(decision.signatures, 1):
        label = f"requirement {requirement.type}" + (
            f" #{n}" if len(decision.signatures) > 1 else ""
        )
        started = time.monotonic()
        try:
            signer = _meets(requirement, ref, manifest, manifest_digest, source)
        except _Refused as e:
            raise FailedPrecondition(
                f"{PREFIX}: image {ref} ({manifest_digest}) is rejected by signature policy "
                f"{decision.source}, scope {decision.scope}, {label}: {e}"
            ) from None
        log.info(
            "signature of %s (%s) accepted by %s of %s in %.1f ms: %s",
            ref, manifest_digest, label, decision.source,
            (time.monotonic() - started) * 1000, signer,
        )  # fmt: skip
        accepted.append(Accepted(label, signer))
    return accepted


class _Refused(Exception):
    """Why a requirement is not met, as the end of the error message."""


def _meets(
    requirement: SignatureRequirement,
    ref: Reference,
    manifest: bytes,
    manifest_digest: str,
    source: SignatureSource,
) -> str:
    if isinstance(requirement, SignedBy):
        return _signed_by(requirement, ref, manifest, source)
    return _sigstore_signed(requirement, ref, manifest, source)


def _signed_by(req: SignedBy, ref: Reference, manifest: bytes, source: SignatureSource) -> str:
    keyrings = _read_keys(req.keys, "GPG keyring")
    signatures = _fetch(source.gpg)
    if not signatures:
        raise _Refused(f"no GPG signature found (looked in {source.gpg_where})")
    reasons = []
    for i, signature in enumerate(signatures, 1):
        try:
            verified = gpg.verify(keyrings, signature)
            _check_claims(verified.payload, ATOMIC_TYPE, req.identity, ref, manifest)
            return f"GPG key {verified.fingerprint}"
        except InvalidSignature as e:
            reasons.append(f"signature {i}: {e}")
        except gpg.GPGUnavailable as e:
            raise _Refused(f"cannot verify GPG signatures: {e}") from e
    raise _Refused(_summary(reasons, len(signatures), source.gpg_where))


def _sigstore_signed(
    req: SigstoreSigned, ref: Reference, manifest: bytes, source: SignatureSource
) -> str:
    keys = _public_keys(req.keys, "public key") if req.keys is not None else []
    rekor_keys = _public_keys(req.rekor, "Rekor public key") if req.rekor is not None else []
    roots = []
    if req.fulcio is not None:
        for blob, name in _key_blobs(req.fulcio.ca, "Fulcio CA"):
            try:
                roots += fulcio.load_certificates(blob, name)
            except ValueError as e:
                raise _Refused(str(e)) from e
    signatures = _fetch(source.sigstore)
    if not signatures:
        if not source.registries_d.use_sigstore_attachments(ref):
            raise _Refused(
                f"no sigstore signature read: use-sigstore-attachments is not enabled for "
                f"{ref.name} "
                f"in registries.d ({source.registries_d.directory or 'not configured'})"
            )
        raise _Refused(
            f"no sigstore signature found ({source.sigstore_where} does not exist or is empty)"
        )
    reasons = []
    for i, sig in enumerate(signatures, 1):
        try:
            signer = _sigstore_one(req, sig, keys, rekor_keys, roots)
            _check_claims(sig.payload, COSIGN_TYPE, req.identity, ref, manifest)
            return signer
        except InvalidSignature as e:
            reasons.append(f"signature {i}: {e}")
    raise _Refused(_summary(reasons, len(signatures), source.sigstore_where))


def _sigstore_one(
    req: SigstoreSigned,
    sig: sigstore.SigstoreSignature,
    keys: list[sigstore.PublicKey],
    rekor_keys: list[sigstore.PublicKey],
    roots: list,
) -> str:
    if req.fulcio is not None:
        if sig.certificate is None:
            raise InvalidSignature("the signature carries no Fulcio certificate")
        if sig.bundle is None:
            raise InvalidSignature("the signature carries no Rekor bundle")
        logged_at = rekor.verify_set(
            rekor_keys, sig.bundle, sig.certificate, sig.signature, sig.payload
        )
        key = fulcio.verify_certificate(
            sig.certificate, sig.chain, roots, logged_at,
            req.fulcio.oidc_issuer, req.fulcio.subject_email,
        )  # fmt: skip
        sigstore.verify_signature(key, sig.payload, sig.signature)
        return f"Fulcio certificate for {req.fulcio.subject_email}"
    failures = 0
    for key in keys:
        try:
            sigstore.verify_signature(key, sig.payload, sig.signature)
        except InvalidSignature:
            failures += 1
            continue
        if rekor_keys:
            if sig.bundle is None:
                raise InvalidSignature("the policy requires a Rekor entry; the signature has none")
            rekor.verify_set(
                rekor_keys, sig.bundle, sigstore.key_pem(key), sig.signature, sig.payload
            )
        return f"public key {req.keys.describe() if req.keys else ''}".strip()
    raise InvalidSignature(
        "the cryptographic signature does not verify with "
        + ("the policy's key" if failures == 1 else f"any of the policy's {failures} keys")
    )


def _check_claims(
    payload: bytes,
    kind: str,
    rule: identity.IdentityRule,
    ref: Reference,
    manifest: bytes,
) -> None:
    claims = parse_payload(payload, kind)
    try:
        algorithm, _ = parse_digest(claims.manifest_digest)
    except InvalidArgument as e:
        raise InvalidSignature(f"the signed digest {claims.manifest_digest!r} is invalid") from e
    if compute_digest(manifest, algorithm) != claims.manifest_digest:
        raise InvalidSignature(
            f"the signature is for manifest {claims.manifest_digest}, not this one"
        )
    try:
        identity.check(rule, ref, claims.docker_reference)
    except ValueError as e:
        raise InvalidSignature(str(e)) from e


def _fetch(get):  # type: ignore[no-untyped-def]
    try:
        return get()
    except InvalidSignature as e:
        raise _Refused(str(e)) from e


def _summary(reasons: list[str], count: int, where: str) -> str:
    shown = "; ".join(reasons[:MAX_REASONS])
    more = f" (and {len(reasons) - MAX_REASONS} more)" if len(reasons) > MAX_REASONS else ""
    noun = "the signature" if count == 1 else f"the {count} signatures"
    return f"no accepted signature among {noun} from {where}: {shown}{more}"


def _key_blobs(keys: KeySource, what: str) -> list[tuple[bytes, str]]:
    if keys.data:
        return [(d, f"{what} from keyData") for d in keys.data]
    blobs = []
    for path in keys.paths:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_KEY_FILE + 1)
        except OSError as e:
            raise _Refused(f"cannot read {what} {path}: {e.strerror or e}") from e
        if len(data) > MAX_KEY_FILE:
            raise _Refused(f"{what} {path} is larger than {MAX_KEY_FILE} bytes")
        blobs.append((data, f"{what} {Path(path)}"))
    return blobs


def _read_keys(keys: KeySource, what: str) -> list[bytes]:
    return [blob for blob, _ in _key_blobs(keys, what)]


def _public_keys(keys: KeySource, what: str) -> list[sigstore.PublicKey]:
    result = []
    for blob, name in _key_blobs(keys, what):
        try:
            result += sigstore.load_public_keys(blob, name)
        except ValueError as e:
            raise _Refused(str(e)) from e
    return result
