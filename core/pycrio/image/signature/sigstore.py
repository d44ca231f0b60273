"""Sigstore (cosign-format) signatures: attachments, public keys, signature checks.

A cosign signature of manifest ``sha256:<hex>`` lives in the same repository
as an OCI manifest tagged ``sha256-<hex>.sig``. Each of its layers of media
type ``application/vnd.dev.cosign.simplesigning.v1+json`` is one signature:
the layer blob is the payload (see ``payload``), its annotations carry the
base64 signature and, for keyless signing, the Fulcio certificate, its chain
and the Rekor bundle. The crypto is the ``cryptography`` library's; cosign
always hashes with SHA-256 (ECDSA and RSA PKCS#1 v1.5; Ed25519 signs the
payload itself).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature as _CryptoInvalid
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from pycrio.image.signature.payload import InvalidSignature

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
MAX_SIGNATURES = 128

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def attachment_tag(manifest_digest: str) -> str:
    """The tag cosign gives the signatures of ``manifest_digest``: sha256-<hex>.sig."""
    algorithm, _, hex_part = manifest_digest.partition(":")
    return f"{algorithm}-{hex_part}.sig"


@dataclass(frozen=True)
class Layer:
    """One signature layer of an attachment manifest, before its payload is fetched."""

    digest: str
    size: int
    signature: str  # base64, as in the annotation
    certificate: bytes | None = None
    chain: bytes | None = None
    bundle: bytes | None = None


@dataclass(frozen=True)
class SigstoreSignature:
    """A signature with its payload bytes: everything verification needs."""

    payload: bytes
    signature: str
    certificate: bytes | None = None
    chain: bytes | None = None
    bundle: bytes | None = None


def attachment_layers(manifest: bytes) -> list[Layer]:
    """The signature layers of an attachment manifest; other layers are skipped.

    Raises InvalidSignature when the manifest is not one cosign could have written.
    """
    try:
        obj = json.loads(manifest)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidSignature(f"the signature attachment is not JSON: {e}") from e
    layers = obj.get("layers") if isinstance(obj, dict) else None
    if not isinstance(layers, list):
        raise InvalidSignature("the signature attachment manifest has no layers array")
    result = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLESIGNING_MEDIA_TYPE:
            continue
        annotations = layer.get("annotations") or {}
        digest, size = layer.get("digest"), layer.get("size")
        if (
            not isinstance(annotations, dict)
            or not isinstance(digest, str)
            or not isinstance(size, int)
            or isinstance(size, bool)
        ):
            raise InvalidSignature(f"signature layer {i} of the attachment is malformed")
        signature = annotations.get(SIGNATURE_ANNOTATION)
        if not isinstance(signature, str):
            raise InvalidSignature(
                f"signature layer {i} lacks the {SIGNATURE_ANNOTATION} annotation"
            )
        result.append(
            Layer(
                digest=digest,
                size=size,
                signature=signature,
                certificate=_annotation_bytes(annotations, CERTIFICATE_ANNOTATION),
                chain=_annotation_bytes(annotations, CHAIN_ANNOTATION),
                bundle=_annotation_bytes(annotations, BUNDLE_ANNOTATION),
            )
        )
        if len(result) > MAX_SIGNATURES:
            raise InvalidSignature(f"more than {MAX_SIGNATURES} signatures in one attachment")
    return result


def _annotation_bytes(annotations: dict, key: str) -> bytes | None:
    value = annotations.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidSignature(f"annotation {key} must be a string")
    return value.encode()


def load_public_keys(data: bytes, source: str) -> list[PublicKey]:
    """Every PEM public key in ``data`` (cosign.pub holds one; a file may hold several).

    Raises ValueError naming ``source`` when there is none or one cannot be read.
    """
    keys: list[PublicKey] = []
    for block in _pem_blocks(data, "PUBLIC KEY"):
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise ValueError(f"{source}: not a readable public key: {e}") from e
        if not isinstance(
            key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
        ):
            raise ValueError(f"{source}: unsupported key type {type(key).__name__}")
        keys.append(key)
    if not keys:
        raise ValueError(f"{source}: no PEM public key (-----BEGIN PUBLIC KEY-----) found")
    return keys


def _pem_blocks(data: bytes, label: str) -> list[bytes]:
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    blocks = []
    rest = data
    while (start := rest.find(begin)) != -1:
        stop = rest.find(end, start)
        if stop == -1:
            break
        blocks.append(rest[start : stop + len(end)] + b"\n")
        rest = rest[stop + len(end) :]
    return blocks


def verify_signature(key: PublicKey, payload: bytes, signature_b64: str) -> None:
    """Check a base64 signature of ``payload`` by ``key``; raise InvalidSignature."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidSignature(f"the signature is not valid base64: {e}") from e
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except _CryptoInvalid as e:
        raise InvalidSignature("the cryptographic signature does not verify with the key") from e


def key_der(key: PublicKey) -> bytes:
    """The key's SubjectPublicKeyInfo, to compare keys whatever their PEM spelling."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pem_der(data: bytes) -> bytes:
    """The DER inside exactly one PEM block (any label); raise InvalidSignature."""
    lines = data.strip().splitlines()
    if (
        len(lines) < 2
        or not lines[0].startswith(b"-----BEGIN ")
        or not lines[-1].startswith(b"-----END ")
        or any(line.startswith(b"-----") for line in lines[1:-1])
    ):
        raise InvalidSignature("expected exactly one PEM block")
    try:
        return base64.b64decode(b"".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidSignature(f"the PEM block is not valid base64: {e}") from e


def key_pem(key: PublicKey) -> bytes:
    """The key as a PEM SubjectPublicKeyInfo, the form a Rekor entry records it in."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
