"""Offline verification of a Rekor "signed entry timestamp" (SET) in a cosign bundle.

The bundle annotation is ``{"SignedEntryTimestamp": b64, "Payload": {"body",
"integratedTime", "logIndex", "logID"}}``. The SET is Rekor's ECDSA signature
over the canonical JSON (RFC 8785) of Payload; the body is a hashedrekord
entry naming the payload's SHA-256, the signature and the key or certificate.
A verified SET proves the signature was logged, and when: that time is the
one a short-lived Fulcio certificate must have been valid at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature as _CryptoInvalid
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from pycrio.image.signature.payload import InvalidSignature
from pycrio.image.signature.sigstore import PublicKey, pem_der

HASHEDREKORD_VERSION = "0.0.1"


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON for the values a SET payload holds (strings, integers).

    Floats are refused: their canonical form is the only hard part of RFC
    8785 and no SET field is one.
    """
    _refuse_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise InvalidSignature("the Rekor SET payload holds a non-integer number")
    if isinstance(value, dict):
        for v in value.values():
            _refuse_floats(v)
    elif isinstance(value, list):
        for v in value:
            _refuse_floats(v)


def verify_set(
    rekor_keys: list[PublicKey],
    bundle: bytes,
    key_or_cert_pem: bytes,
    signature_b64: str,
    payload: bytes,
) -> int:
    """Verify the bundle against Rekor's keys and the signature it vouches for.

    Returns the integrated time (Unix seconds). Raises InvalidSignature.
    """
    try:
        obj = json.loads(bundle)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidSignature(f"the Rekor bundle is not JSON: {e}") from e
    if not isinstance(obj, dict) or set(obj) != {"SignedEntryTimestamp", "Payload"}:
        raise InvalidSignature("the Rekor bundle must have exactly SignedEntryTimestamp, Payload")
    set_signature = _b64(obj["SignedEntryTimestamp"], "SignedEntryTimestamp")
    entry = obj["Payload"]
    if not isinstance(entry, dict) or set(entry) != {"body", "integratedTime", "logIndex", "logID"}:
        raise InvalidSignature(
            "the Rekor bundle Payload must have exactly body, integratedTime, logIndex, logID"
        )
    digest = hashlib.sha256(canonical_json(entry)).digest()
    if not any(_verify_prehashed(k, set_signature, digest) for k in rekor_keys):
        raise InvalidSignature("the Rekor SET is not signed by the configured Rekor key")
    integrated = entry["integratedTime"]
    if not isinstance(integrated, int) or isinstance(integrated, bool):
        raise InvalidSignature("the Rekor SET integratedTime is not an integer")
    body = _body(entry["body"])
    spec = body["spec"]
    sig = _field(spec, "signature", dict)
    logged_signature = _b64(_field(sig, "content", str), "hashedrekord signature.content")
    public_key = _field(sig, "publicKey", dict)
    logged_pem = _b64(_field(public_key, "content", str), "hashedrekord publicKey.content")
    if pem_der(logged_pem) != pem_der(key_or_cert_pem):
        raise InvalidSignature("the key or certificate in the Rekor entry is not the signer's")
    if logged_signature != _b64(signature_b64, "signature"):
        raise InvalidSignature("the signature in the Rekor entry is not this signature")
    data_hash = _field(_field(_field(spec, "data", dict), "hash", dict), "algorithm", str)
    if data_hash != "sha256":
        raise InvalidSignature(f"unsupported hashedrekord hash algorithm {data_hash!r}")
    value = spec["data"]["hash"].get("value")
    if not isinstance(value, str) or value.lower() != hashlib.sha256(payload).hexdigest():
        raise InvalidSignature("the payload hash in the Rekor entry is not this payload's")
    return integrated


def _verify_prehashed(key: PublicKey, signature: bytes, digest: bytes) -> bool:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    try:
        key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except _CryptoInvalid:
        return False
    return True


def _body(value: Any) -> dict[str, Any]:
    if not isinstance(value, str):
        raise InvalidSignature("the Rekor SET body must be a base64 string")
    try:
        body = json.loads(_b64(value, "body"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidSignature(f"the Rekor SET body is not JSON: {e}") from e
    if not isinstance(body, dict) or body.get("kind") != "hashedrekord":
        raise InvalidSignature("the Rekor entry is not a hashedrekord")
    if body.get("apiVersion") != HASHEDREKORD_VERSION:
        raise InvalidSignature(f"unsupported hashedrekord version {body.get('apiVersion')!r}")
    _field(body, "spec", dict)
    return body


def _field(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise InvalidSignature(f"the Rekor entry lacks {key!r}")
    return value


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidSignature(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidSignature(f"{what} is not valid base64: {e}") from e
