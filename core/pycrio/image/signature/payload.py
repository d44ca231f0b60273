"""The "simple signing" payload: what a signature claims about an image.

Both kinds of signature carry the same JSON claim (containers-signature(5)):
the manifest digest and the docker reference the signer meant. GPG
signatures say ``"type": "atomic container signature"``, sigstore (cosign)
ones ``"cosign container image signature"``. The payload is untrusted until
its signature is verified, and parsed strictly, as containers/image does:
unknown or duplicated keys in the critical section make it invalid, so two
parsers can never read different claims from the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ATOMIC_TYPE = "atomic container signature"
COSIGN_TYPE = "cosign container image signature"
MAX_PAYLOAD_SIZE = 4 * 1024 * 1024


class InvalidSignature(Exception):
    """A signature (or its payload, certificate or Rekor entry) that does not verify.

    Its message is one reason, in words an operator can act on; the verifier
    adds which image, policy and signature it is about.
    """


@dataclass(frozen=True)
class Claims:
    """What a verified payload says: the signed manifest digest and docker reference."""

    manifest_digest: str
    docker_reference: str
    creator: str | None = None
    timestamp: int | None = None


def parse_payload(data: bytes, expected_type: str) -> Claims:
    """Parse a payload (after its signature verified) strictly; raise InvalidSignature."""
    if len(data) > MAX_PAYLOAD_SIZE:
        raise InvalidSignature(f"the signed payload is larger than {MAX_PAYLOAD_SIZE} bytes")
    try:
        obj = json.loads(data, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidSignature(f"the signed payload is not valid JSON: {e}") from e
    top = _exact(obj, ("critical", "optional"), "the signed payload")
    critical = _exact(top["critical"], ("type", "image", "identity"), "critical")
    kind = critical["type"]
    if kind != expected_type:
        raise InvalidSignature(f"the signed payload has type {kind!r}, expected {expected_type!r}")
    image = _exact(critical["image"], ("docker-manifest-digest",), "critical.image")
    identity = _exact(critical["identity"], ("docker-reference",), "critical.identity")
    digest = _string(image["docker-manifest-digest"], "critical.image.docker-manifest-digest")
    reference = _string(identity["docker-reference"], "critical.identity.docker-reference")
    creator, timestamp = _optional(top["optional"])
    return Claims(digest, reference, creator, timestamp)


def _optional(value: Any) -> tuple[str | None, int | None]:
    # cosign writes "optional": null when there are no annotations.
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise InvalidSignature("optional must be a JSON object")
    creator = value.get("creator")
    if creator is not None and not isinstance(creator, str):
        raise InvalidSignature("optional.creator must be a string")
    timestamp = value.get("timestamp")
    if timestamp is not None:
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            raise InvalidSignature("optional.timestamp must be a number")
        if int(timestamp) != timestamp:
            raise InvalidSignature("optional.timestamp is not an integer")
        timestamp = int(timestamp)
    return creator, timestamp


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidSignature(f"duplicate key {key!r} in the signed payload")
        result[key] = value
    return result


def _exact(value: Any, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidSignature(f"{what} must be a JSON object")
    missing = [k for k in keys if k not in value]
    if missing:
        raise InvalidSignature(f"{what} lacks {missing[0]!r}")
    extra = sorted(set(value) - set(keys))
    if extra:
        raise InvalidSignature(f"{what} has unexpected key {extra[0]!r}")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidSignature(f"{what} must be a non-empty string")
    return value
