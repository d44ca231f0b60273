"""GPG simple signing verification with the real gpg, on signatures made by skopeo.

``skopeo standalone-sign`` writes the same signature ``skopeo copy --sign-by``
puts in a lookaside store; here no registry is needed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import signing

from pycrio.image.signature import gpg
from pycrio.image.signature.payload import ATOMIC_TYPE, InvalidSignature, parse_payload

pytestmark = pytest.mark.integration

MANIFEST = b'{"schemaVersion": 2, "layers": []}'
REFERENCE = "registry.example.test/app:1"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[signing.GPGKey, ...]]:
    reason = signing.missing_gpg_reason() or (
        None if shutil.which("skopeo") else "needs skopeo (Debian package skopeo)"
    )
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("gpg")
    made = (signing.GPGKey(work / "a"), signing.GPGKey(work / "b", "other signer"))
    yield made
    for key in made:
        key.stop_agent()


def standalone_sign(key: signing.GPGKey, tmp: Path, manifest: bytes = MANIFEST) -> bytes:
    (tmp / "manifest.json").write_bytes(manifest)
    out = tmp / "signature"
    subprocess.run(
        [
            "skopeo", "standalone-sign", str(tmp / "manifest.json"), REFERENCE,
            key.fingerprint, "--output", str(out),
        ],
        env={"GNUPGHOME": str(key.home), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return out.read_bytes()


def test_good_signature_gives_the_payload_and_signer(keys, tmp_path):
    a, b = keys
    verified = gpg.verify([b.public, a.public], standalone_sign(a, tmp_path))
    assert verified.fingerprint == a.fingerprint
    claims = parse_payload(verified.payload, ATOMIC_TYPE)
    assert claims.docker_reference == REFERENCE
    assert claims.manifest_digest == "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def test_signature_by_another_key(keys, tmp_path):
    a, b = keys
    with pytest.raises(InvalidSignature, match="not one of the policy's keys"):
        gpg.verify([b.public], standalone_sign(a, tmp_path))


def test_tampered_signature(keys, tmp_path):
    a, _ = keys
    signature = bytearray(standalone_sign(a, tmp_path))
    # The message is compressed; a byte of the signature packet at its end is
    # still a byte of what was signed or of the signature itself.
    signature[-10] ^= 0x01
    with pytest.raises(InvalidSignature):
        gpg.verify([a.public], bytes(signature))


def test_not_a_signature(keys):
    a, _ = keys
    with pytest.raises(InvalidSignature):
        gpg.verify([a.public], b"just some bytes")


def test_unreadable_keyring(keys, tmp_path):
    a, _ = keys
    with pytest.raises(gpg.GPGUnavailable, match="no public key could be imported"):
        gpg.verify([b"not a key"], standalone_sign(a, tmp_path))


def test_nothing_left_behind(keys, tmp_path):
    a, _ = keys
    before = {p.name for p in Path("/tmp").glob("pycrio-gpg-*")}
    gpg.verify([a.public], standalone_sign(a, tmp_path))
    assert {p.name for p in Path("/tmp").glob("pycrio-gpg-*")} == before
