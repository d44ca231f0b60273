"""The simple signing payload, parsed strictly on bytes."""

from __future__ import annotations

import json

import pytest

from pycrio.image.signature.payload import (
    ATOMIC_TYPE,
    COSIGN_TYPE,
    Claims,
    InvalidSignature,
    parse_payload,
)

DIGEST = "sha256:" + "ab" * 32


def payload(**changes) -> dict:
    doc = {
        "critical": {
            "identity": {"docker-reference": "quay.io/org/app:1"},
            "image": {"docker-manifest-digest": DIGEST},
            "type": COSIGN_TYPE,
        },
        "optional": {"creator": "skopeo", "timestamp": 1700000000},
    }
    doc.update(changes)
    return doc


def test_cosign_payload_claims():
    claims = parse_payload(json.dumps(payload()).encode(), COSIGN_TYPE)
    assert claims == Claims(DIGEST, "quay.io/org/app:1", "skopeo", 1700000000)


def test_null_optional_as_cosign_writes_it():
    claims = parse_payload(json.dumps(payload(optional=None)).encode(), COSIGN_TYPE)
    assert claims.creator is None and claims.timestamp is None


def test_atomic_payload_is_not_a_cosign_one():
    doc = payload()
    doc["critical"]["type"] = ATOMIC_TYPE
    data = json.dumps(doc).encode()
    assert parse_payload(data, ATOMIC_TYPE).manifest_digest == DIGEST
    with pytest.raises(InvalidSignature, match="has type 'atomic container signature'"):
        parse_payload(data, COSIGN_TYPE)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("optional"), "lacks 'optional'"),
        (lambda d: d.update(extra=1), "unexpected key 'extra'"),
        (lambda d: d["critical"].update(more=1), "unexpected key 'more'"),
        (lambda d: d["critical"].pop("identity"), "lacks 'identity'"),
        (lambda d: d["critical"]["image"].update(x=1), "unexpected key 'x'"),
        (lambda d: d["critical"]["identity"].update({"docker-reference": 5}), "non-empty string"),
        (lambda d: d["critical"]["image"].update({"docker-manifest-digest": ""}), "non-empty"),
        (lambda d: d["optional"].update(timestamp=1.5), "not an integer"),
        (lambda d: d["optional"].update(timestamp="now"), "must be a number"),
        (lambda d: d["optional"].update(creator=7), "creator"),
        (lambda d: d.update(critical=[]), "must be a JSON object"),
    ],
)
def test_malformed_payloads_are_invalid(mutate, fragment):
    doc = payload()
    mutate(doc)
    with pytest.raises(InvalidSignature, match=fragment):
        parse_payload(json.dumps(doc).encode(), COSIGN_TYPE)


def test_duplicate_keys_are_refused():
    # Two parsers could read different claims from this: refuse it.
    data = (
        json.dumps(payload())
        .encode()
        .replace(b'"type"', b'"type": "cosign container image signature", "type"', 1)
    )
    with pytest.raises(InvalidSignature, match="duplicate key 'type'"):
        parse_payload(data, COSIGN_TYPE)


@pytest.mark.parametrize("data", [b"", b"\xff", b"[1,", b"null", b'"x"'])
def test_non_json_payloads(data):
    with pytest.raises(InvalidSignature):
        parse_payload(data, COSIGN_TYPE)


def test_oversized_payload():
    with pytest.raises(InvalidSignature, match="larger than"):
        parse_payload(b" " * (4 * 1024 * 1024 + 1), COSIGN_TYPE)
