"""The verifier's decisions, on bytes: signatures are handed to it by a local source.

End-to-end fetching (registry attachments, lookaside stores, gpg) is in
tests/e2e/test_image_trust.py; here the rules combining requirements, keys,
Rekor and claims are exercised case by case.
"""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
import signing

from pycrio.errors import FailedPrecondition
from pycrio.image.policy import Policy
from pycrio.image.reference import parse
from pycrio.image.registries_d import RegistriesD
from pycrio.image.signature import verifier
from pycrio.image.signature.sigstore import SigstoreSignature

MANIFEST = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
IMAGE = parse("quay.io/org/app:1")


class LocalSource:
    """Stands in for SignatureSource: the signatures are given, not fetched."""

    def __init__(self, *sigstore: signing.Signature) -> None:
        self._sigstore = [
            SigstoreSignature(
                s.payload,
                s.annotations[signing.SIGNATURE_ANNOTATION],
                _b(s.annotations.get(signing.CERTIFICATE_ANNOTATION)),
                _b(s.annotations.get(signing.CHAIN_ANNOTATION)),
                _b(s.annotations.get(signing.BUNDLE_ANNOTATION)),
            )
            for s in sigstore
        ]
        self.sigstore_where = "quay.io/org/app:sha256-x.sig"
        self.gpg_where = "nowhere"
        self.registries_d = RegistriesD(directory="/etc/containers/registries.d")

    def sigstore(self) -> list[SigstoreSignature]:
        return self._sigstore

    def gpg(self) -> list[bytes]:
        return []


def _b(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def decide(*requirements: dict):  # type: ignore[no-untyped-def]
    return Policy.from_dict({"default": list(requirements)}, source="policy.json").check(IMAGE)


def key_data(signer: signing.SigstoreSigner) -> str:
    return base64.b64encode(signer.public_pem).decode()


def payload(digest: str = DIGEST, identity: str = "quay.io/org/app:1") -> bytes:
    return signing.cosign_payload(digest, identity)


def test_every_requirement_needs_its_own_signature():
    a, b = signing.SigstoreSigner(), signing.SigstoreSigner()
    both = decide(
        {"type": "sigstoreSigned", "keyData": key_data(a)},
        {"type": "sigstoreSigned", "keyData": key_data(b)},
    )
    only_a = LocalSource(signing.signed(a, payload()))
    with pytest.raises(FailedPrecondition) as info:
        verifier.verify(both, IMAGE, MANIFEST, DIGEST, only_a)
    assert "requirement sigstoreSigned #2" in info.value.message
    source = LocalSource(signing.signed(a, payload()), signing.signed(b, payload()))
    accepted = verifier.verify(both, IMAGE, MANIFEST, DIGEST, source)
    assert len(accepted) == 2


def test_any_of_several_keys_and_signatures():
    a, b, c = (signing.SigstoreSigner() for _ in range(3))
    decision = decide(
        {"type": "sigstoreSigned", "keyDatas": [key_data(a), key_data(b)]},
    )
    source = LocalSource(signing.signed(c, payload()), signing.signed(b, payload()))
    assert verifier.verify(decision, IMAGE, MANIFEST, DIGEST, source)
    with pytest.raises(FailedPrecondition) as info:
        verifier.verify(
            decision, IMAGE, MANIFEST, DIGEST, LocalSource(signing.signed(c, payload()))
        )
    assert "any of the policy's 2 keys" in info.value.message


def test_digest_is_compared_with_the_manifest_bytes():
    a = signing.SigstoreSigner()
    decision = decide({"type": "sigstoreSigned", "keyData": key_data(a)})
    other = LocalSource(signing.signed(a, payload(digest="sha256:" + "0" * 64)))
    with pytest.raises(FailedPrecondition, match="not this one"):
        verifier.verify(decision, IMAGE, MANIFEST, DIGEST, other)
    # The digest handed in is not trusted: the bytes are hashed.
    with pytest.raises(FailedPrecondition, match="not this one"):
        verifier.verify(
            decision, IMAGE, MANIFEST + b" ", DIGEST, LocalSource(signing.signed(a, payload()))
        )


def test_key_with_rekor_requires_a_matching_bundle():
    a, log = signing.SigstoreSigner(), signing.Rekor()
    decision = decide(
        {
            "type": "sigstoreSigned",
            "keyData": key_data(a),
            "rekorPublicKeyData": base64.b64encode(log.public_pem).decode(),
        }
    )
    plain = signing.signed(a, payload())
    with pytest.raises(FailedPrecondition, match="requires a Rekor entry"):
        verifier.verify(decision, IMAGE, MANIFEST, DIGEST, LocalSource(plain))
    sig = plain.annotations[signing.SIGNATURE_ANNOTATION]
    bundle = log.bundle(plain.payload, sig, a.public_pem, int(time.time()))
    logged = signing.Signature(
        plain.payload, {**plain.annotations, signing.BUNDLE_ANNOTATION: bundle}
    )
    assert verifier.verify(decision, IMAGE, MANIFEST, DIGEST, LocalSource(logged))
    forged = signing.Rekor().bundle(plain.payload, sig, a.public_pem, int(time.time()))
    forged_sig = signing.Signature(
        plain.payload, {**plain.annotations, signing.BUNDLE_ANNOTATION: forged}
    )
    with pytest.raises(FailedPrecondition, match="Rekor key"):
        verifier.verify(decision, IMAGE, MANIFEST, DIGEST, LocalSource(forged_sig))


def test_keyless_without_certificate_is_refused():
    ca, log, a = signing.Fulcio(), signing.Rekor(), signing.SigstoreSigner()
    decision = decide(
        {
            "type": "sigstoreSigned",
            "fulcio": {
                "caData": base64.b64encode(ca.root_pem).decode(),
                "oidcIssuer": "https://i.example",
                "subjectEmail": "a@example.test",
            },
            "rekorPublicKeyData": base64.b64encode(log.public_pem).decode(),
        }
    )
    with pytest.raises(FailedPrecondition, match="no Fulcio certificate"):
        verifier.verify(
            decision, IMAGE, MANIFEST, DIGEST, LocalSource(signing.signed(a, payload()))
        )
    keyless = signing.keyless(
        ca, log, payload(), email="a@example.test", issuer="https://i.example",
        signed_at=int(time.time()),
    )  # fmt: skip
    assert verifier.verify(decision, IMAGE, MANIFEST, DIGEST, LocalSource(keyless))


def test_unreadable_key_file_is_named(tmp_path):
    decision = decide({"type": "sigstoreSigned", "keyPath": str(tmp_path / "missing.pub")})
    with pytest.raises(FailedPrecondition) as info:
        verifier.verify(decision, IMAGE, MANIFEST, DIGEST, LocalSource())
    assert info.value.message.startswith("SignatureValidationFailed: ")
    assert f"cannot read public key {tmp_path / 'missing.pub'}" in info.value.message
    (tmp_path / "bad.pub").write_text("not a key")
    decision = decide({"type": "sigstoreSigned", "keyPath": str(tmp_path / "bad.pub")})
    with pytest.raises(FailedPrecondition, match="no PEM public key"):
        verifier.verify(decision, IMAGE, MANIFEST, DIGEST, LocalSource())


def test_reasons_are_listed_and_capped():
    a, b = signing.SigstoreSigner(), signing.SigstoreSigner()
    decision = decide({"type": "sigstoreSigned", "keyData": key_data(a)})
    source = LocalSource(*(signing.signed(b, payload()) for _ in range(7)))
    with pytest.raises(FailedPrecondition) as info:
        verifier.verify(decision, IMAGE, MANIFEST, DIGEST, source)
    message = info.value.message
    assert "among the 7 signatures" in message
    assert "signature 5:" in message and "signature 6:" not in message
    assert "(and 2 more)" in message
