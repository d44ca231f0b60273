"""Sigstore signatures on bytes: keys, attachments, Rekor SETs, Fulcio certificates.

Keys, certificates and bundles are made here with ``cryptography`` the way
cosign, Fulcio and Rekor make them (tests/support/signing.py).
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import signing
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from pycrio.image.signature import fulcio, rekor, sigstore
from pycrio.image.signature.payload import InvalidSignature
from pycrio.image.signature.sources import parse_extension_signatures

PAYLOAD = signing.cosign_payload("sha256:" + "a" * 64, "quay.io/org/app:1")
EMAIL, ISSUER = "builder@example.test", "https://issuer.example.test"


def pem(private) -> bytes:  # type: ignore[no-untyped-def]
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


KEYS = {
    "ecdsa-p256": (
        ec.generate_private_key(ec.SECP256R1()),
        lambda k, d: k.sign(d, ec.ECDSA(hashes.SHA256())),
    ),
    "ecdsa-p384": (
        ec.generate_private_key(ec.SECP384R1()),
        lambda k, d: k.sign(d, ec.ECDSA(hashes.SHA256())),
    ),
    "ed25519": (ed25519.Ed25519PrivateKey.generate(), lambda k, d: k.sign(d)),
    "rsa": (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        lambda k, d: k.sign(d, padding.PKCS1v15(), hashes.SHA256()),
    ),
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_signatures_of_each_key_type(kind):
    private, sign = KEYS[kind]
    [key] = sigstore.load_public_keys(pem(private), "k.pub")
    signature = b64(sign(private, PAYLOAD))
    sigstore.verify_signature(key, PAYLOAD, signature)
    with pytest.raises(InvalidSignature, match="does not verify"):
        sigstore.verify_signature(key, PAYLOAD.replace(b"app:1", b"app:2"), signature)
    other = KEYS["ecdsa-p256" if kind != "ecdsa-p256" else "ed25519"][0]
    [other_key] = sigstore.load_public_keys(pem(other), "other.pub")
    with pytest.raises(InvalidSignature):
        sigstore.verify_signature(other_key, PAYLOAD, signature)


def test_signature_must_be_base64():
    [key] = sigstore.load_public_keys(pem(KEYS["ed25519"][0]), "k.pub")
    with pytest.raises(InvalidSignature, match="base64"):
        sigstore.verify_signature(key, PAYLOAD, "not base64!")


def test_key_files():
    both = pem(KEYS["ed25519"][0]) + b"comment\n" + pem(KEYS["rsa"][0])
    assert len(sigstore.load_public_keys(both, "two.pub")) == 2
    with pytest.raises(ValueError, match="no PEM public key"):
        sigstore.load_public_keys(b"ssh-ed25519 AAAA", "id.pub")
    with pytest.raises(ValueError, match="bad.pub"):
        sigstore.load_public_keys(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "bad.pub"
        )


def attachment(*layers: dict) -> bytes:
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "x", "size": 2}
    return json.dumps({"schemaVersion": 2, "config": config, "layers": list(layers)}).encode()


def layer(**annotations: str) -> dict:
    return {
        "mediaType": sigstore.SIMPLESIGNING_MEDIA_TYPE,
        "digest": "sha256:" + "b" * 64,
        "size": 10,
        "annotations": annotations,
    }


def test_attachment_layers():
    other = {"mediaType": "application/vnd.in-toto+json", "digest": "d", "size": 1}
    layers = sigstore.attachment_layers(
        attachment(
            layer(**{sigstore.SIGNATURE_ANNOTATION: "c2ln"}),
            other,
            layer(
                **{
                    sigstore.SIGNATURE_ANNOTATION: "c2ln",
                    sigstore.CERTIFICATE_ANNOTATION: "CERT",
                    sigstore.BUNDLE_ANNOTATION: "{}",
                }
            ),
        )
    )
    assert [x.signature for x in layers] == ["c2ln", "c2ln"]
    assert layers[0].certificate is None and layers[1].certificate == b"CERT"
    assert layers[1].bundle == b"{}" and layers[1].chain is None
    assert sigstore.attachment_tag("sha256:" + "c" * 64) == "sha256-" + "c" * 64 + ".sig"


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        (b"{", "not JSON"),
        (b"{}", "no layers"),
        (attachment(layer()), "lacks the dev.cosignproject.cosign/signature"),
        (attachment({**layer(), "size": "10"}), "malformed"),
    ],
)
def test_bad_attachments(manifest, fragment):
    with pytest.raises(InvalidSignature, match=fragment):
        sigstore.attachment_layers(manifest)


# --- Rekor ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log() -> signing.Rekor:
    return signing.Rekor()


def rekor_keys(log: signing.Rekor) -> list:
    return sigstore.load_public_keys(log.public_pem, "rekor.pub")


def test_rekor_set_verifies_and_gives_the_time(log):
    signer = signing.SigstoreSigner()
    signature = signer.sign(PAYLOAD)
    bundle = log.bundle(PAYLOAD, signature, signer.public_pem, 1700000000).encode()
    when = rekor.verify_set(rekor_keys(log), bundle, signer.public_pem, signature, PAYLOAD)
    assert when == 1700000000


def test_rekor_set_mismatches(log):
    signer, other = signing.SigstoreSigner(), signing.SigstoreSigner()
    signature = signer.sign(PAYLOAD)
    bundle = log.bundle(PAYLOAD, signature, signer.public_pem, 1700000000).encode()
    keys = rekor_keys(log)
    with pytest.raises(InvalidSignature, match="not signed by the configured Rekor key"):
        rekor.verify_set(rekor_keys(signing.Rekor()), bundle, signer.public_pem, signature, PAYLOAD)
    with pytest.raises(InvalidSignature, match="not the signer's"):
        rekor.verify_set(keys, bundle, other.public_pem, signature, PAYLOAD)
    with pytest.raises(InvalidSignature, match="not this signature"):
        rekor.verify_set(keys, bundle, signer.public_pem, signer.sign(b"x"), PAYLOAD)
    with pytest.raises(InvalidSignature, match="not this payload"):
        rekor.verify_set(keys, bundle, signer.public_pem, signature, PAYLOAD + b" ")
    # Any change to the logged entry breaks the SET.
    doc = json.loads(bundle)
    doc["Payload"]["integratedTime"] += 1
    with pytest.raises(InvalidSignature, match="not signed"):
        rekor.verify_set(keys, json.dumps(doc).encode(), signer.public_pem, signature, PAYLOAD)
    doc = json.loads(bundle)
    doc["extra"] = 1
    with pytest.raises(InvalidSignature, match="exactly"):
        rekor.verify_set(keys, json.dumps(doc).encode(), signer.public_pem, signature, PAYLOAD)


def test_rekor_canonical_json_is_rfc8785_for_its_values():
    entry = {"logIndex": 1, "body": "é", "integratedTime": 2, "logID": "ab"}
    assert rekor.canonical_json(entry) == (
        '{"body":"é","integratedTime":2,"logID":"ab","logIndex":1}'.encode()
    )
    with pytest.raises(InvalidSignature, match="non-integer"):
        rekor.canonical_json({"x": 1.5})


# --- Fulcio -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> signing.Fulcio:
    return signing.Fulcio()


def test_fulcio_certificate_verifies_at_the_logged_time(ca):
    now = int(time.time())
    signer, cert = ca.issue(EMAIL, ISSUER, not_before=now - 3600)  # long expired now
    key = fulcio.verify_certificate(cert, ca.chain_pem, [ca.root], now - 3500, ISSUER, EMAIL)
    assert sigstore.key_der(key) == sigstore.key_der(signer.key.public_key())
    assert fulcio.certificate_issuer(fulcio.load_certificates(cert, "leaf")[0]) == ISSUER


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"at": 7200}, "expired or was not yet valid"),
        ({"at": -600}, "expired or was not yet valid"),
        ({"issuer": "https://other.example"}, "OIDC issuer"),
        ({"email": "mallory@example.test"}, "mallory@example.test"),
        ({"roots": "other"}, "does not chain"),
        ({"chain": None}, "does not chain"),
        ({"code_signing": False}, "not for code signing"),
    ],
)
def test_fulcio_certificate_refusals(ca, change, fragment):
    start = int(time.time()) - 10_000
    _, cert = ca.issue(
        EMAIL, ISSUER, not_before=start, code_signing=change.get("code_signing", True)
    )
    roots = [signing.Fulcio("other").root] if change.get("roots") else [ca.root]
    chain = ca.chain_pem if "chain" not in change else change["chain"]
    with pytest.raises(InvalidSignature, match=fragment):
        fulcio.verify_certificate(
            cert,
            chain,
            roots,
            start + change.get("at", 60),
            change.get("issuer", ISSUER),
            EMAIL if "email" not in change else change["email"],
        )
    if "email" in change:  # the certificate itself was fine
        fulcio.verify_certificate(cert, chain, roots, start + 60, ISSUER, EMAIL)


# --- the registry signature API -------------------------------------------------------


def test_extension_signature_list():
    body = json.dumps(
        {
            "signatures": [
                {"schemaVersion": 2, "type": "atomic", "name": "d@1", "content": b64(b"one")},
                {"schemaVersion": 2, "type": "other", "name": "d@2", "content": b64(b"x")},
                {"schemaVersion": 1, "type": "atomic", "name": "d@3", "content": b64(b"y")},
                {"schemaVersion": 2, "type": "atomic", "name": "d@4", "content": b64(b"two")},
            ]
        }
    ).encode()
    assert parse_extension_signatures(body) == [b"one", b"two"]
    assert parse_extension_signatures(b"{}") == []
    with pytest.raises(InvalidSignature):
        parse_extension_signatures(b"[")
    with pytest.raises(InvalidSignature, match="base64"):
        parse_extension_signatures(
            b'{"signatures": [{"schemaVersion": 2, "type": "atomic", "content": "!"}]}'
        )
