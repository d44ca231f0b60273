"""Signature verification through the daemon's socket (issue 16).

Images are pushed to the session registry and signed with real tools where
Debian has them: GPG signatures by ``skopeo copy --sign-by`` into a file://
lookaside store (served over http on 127.0.0.1 too). Debian 12's skopeo
refuses to make sigstore signatures ("Debian-local change: sigstore
disabled"; see test_skopeo_sigstore_signing), so sigstore signatures are
made here exactly as cosign makes them (ECDSA P-256 over the payload, or a
Fulcio certificate with a Rekor bundle) and pushed with skopeo as the
``sha256-<hex>.sig`` attachment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import registry_env
import signing
from image_e2e import (
    Storage,
    image_daemon,
    insecure,
    list_images,
    pull,
    pull_error,
    status,
    toml_str,
)

pytestmark = pytest.mark.e2e

EMAIL, ISSUER = "release@example.test", "https://oidc.example.test"


@dataclass
class Signed:
    """Images in the session registry with their signatures, and the keys."""

    registry: registry_env.RegistryServer
    workdir: Path
    gpg: signing.GPGKey
    other_gpg: signing.GPGKey
    staging: Path  # the file:// lookaside store skopeo wrote GPG signatures into
    signer: signing.SigstoreSigner
    other_signer: signing.SigstoreSigner
    fulcio: signing.Fulcio
    rekor: signing.Rekor
    digests: dict[str, str]  # repo -> manifest digest
    config_digest: str
    multiarch_config: str = ""  # the linux/amd64 image of trust/multiarch

    def name(self, repo: str) -> str:
        return f"{self.registry.host}/trust/{repo}:v1"

    def key_file(self, name: str, data: bytes) -> Path:
        path = self.workdir / "keys" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def signed(registry, images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    reason = signing.missing_gpg_reason()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("trust")
    skopeo = signing.SigningSkopeo(workdir / "skopeo")
    layout = registry_env.OCILayout(workdir / "layout")
    base = registry_env.compress_layer(registry_env.busybox_rootfs_tar())
    built = layout.build_image([base], tag="busybox", config={"Labels": {"trust": "1"}})
    gpg, other_gpg = signing.GPGKey(workdir / "gpg-a"), signing.GPGKey(workdir / "gpg-b", "b")
    src = f"oci:{layout.path}:busybox"
    try:
        skopeo.copy_signed(src, registry.docker_ref("trust/gpg", "v1"), gpg=gpg)
        skopeo.copy_signed(src, registry.docker_ref("trust/gpg-other", "v1"), gpg=other_gpg)
        for repo in (
            "unsigned", "cosign", "cosign-tampered", "cosign-otherdigest", "cosign-identity",
            "cosign-repo", "keyless", "keyless-expired",
        ):  # fmt: skip
            skopeo.copy(src, registry.docker_ref(f"trust/{repo}", "v1"))
    finally:
        gpg.stop_agent()
        other_gpg.stop_agent()
    digest = (
        "sha256:"
        + hashlib.sha256(skopeo.inspect_raw(registry.docker_ref("trust/gpg", "v1"))).hexdigest()
    )
    s = Signed(
        registry, workdir, gpg, other_gpg, skopeo.staging,
        signing.SigstoreSigner(), signing.SigstoreSigner(), signing.Fulcio(), signing.Rekor(),
        {}, built.config.digest,
    )  # fmt: skip

    def attach(repo: str, *sigs: signing.Signature) -> None:
        signing.push_attachment(skopeo, layout, registry, f"trust/{repo}", digest, list(sigs))

    def payload(repo: str, **kw: Any) -> bytes:
        return signing.cosign_payload(kw.get("digest", digest), kw.get("identity", s.name(repo)))

    attach("cosign", signing.signed(s.signer, payload("cosign")))
    good = signing.signed(s.signer, payload("cosign-tampered"))
    tampered = payload("cosign-tampered").replace(
        b"trust/cosign-tampered", b"trust/cosign-tamperex"
    )
    attach("cosign-tampered", signing.Signature(tampered, good.annotations))
    other = "sha256:" + hashlib.sha256(b"another manifest").hexdigest()
    attach(
        "cosign-otherdigest",
        signing.signed(s.signer, payload("x", digest=other, identity=s.name("cosign-otherdigest"))),
    )
    attach("cosign-identity", signing.signed(s.signer, payload("x", identity=s.name("cosign"))))
    # cosign itself signs the repository only, without a tag.
    attach(
        "cosign-repo",
        signing.signed(s.signer, payload("x", identity=f"{registry.host}/trust/cosign-repo")),
    )
    now = int(time.time())
    attach(
        "keyless",
        signing.keyless(
            s.fulcio, s.rekor, payload("keyless"), email=EMAIL, issuer=ISSUER, signed_at=now - 3600
        ),
    )
    attach(
        "keyless-expired",
        signing.keyless(
            s.fulcio, s.rekor, payload("keyless-expired"), email=EMAIL, issuer=ISSUER,
            signed_at=now - 7200, logged_at=now - 3600,
        ),
    )  # fmt: skip
    for repo in ("gpg", "gpg-other", "unsigned", "cosign", "keyless"):
        s.digests[repo] = digest
    # A multi-platform index, signed (as cosign signs one) at the index digest.
    multiarch = registry.docker_ref("trust/multiarch", "v1")
    registry_env._run(
        skopeo._argv(
            "copy", "--quiet", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
            f"docker://{images.multiarch.name}", multiarch,
        ),
        env=skopeo.env,
    )  # fmt: skip
    index_digest = "sha256:" + hashlib.sha256(skopeo.inspect_raw(multiarch)).hexdigest()
    signing.push_attachment(
        skopeo, layout, registry, "trust/multiarch", index_digest,
        [signing.signed(s.signer, signing.cosign_payload(index_digest, s.name("multiarch")))],
    )  # fmt: skip
    s.digests["multiarch"] = index_digest
    s.multiarch_config = images.multiarch.index_of[0].config.digest
    yield s


def daemon(start_daemon, tmp: Path, s: Signed, policy: dict, *, lookaside: str = "") -> Any:
    rd = tmp / "registries.d"
    rd.mkdir(exist_ok=True)
    (rd / "default.yaml").write_text(
        "default-docker:\n"
        f"  lookaside: {lookaside or f'file://{s.staging}'}\n"
        "  use-sigstore-attachments: true\n"
    )
    return image_daemon(
        start_daemon,
        tmp,
        registries=insecure(s.registry.host),
        policy=policy,
        image=f"registries_d = {toml_str(rd)}",
    )


def scoped(s: Signed, *requirements: dict) -> dict:
    return {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {f"{s.registry.host}/trust": list(requirements)}},
    }


def gpg_requirement(s: Signed, key: signing.GPGKey, **extra: Any) -> dict:
    path = s.key_file(f"{key.fingerprint}.gpg", key.public)
    return {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(path), **extra}


def sigstore_requirement(s: Signed, signer: signing.SigstoreSigner, **extra: Any) -> dict:
    path = s.key_file(f"cosign-{id(signer)}.pub", signer.public_pem)
    return {"type": "sigstoreSigned", "keyPath": str(path), **extra}


def assert_refused(d: Any, s: Signed, tmp: Path, repo: str, *fragments: str, **kw: Any) -> str:
    err = pull_error(d, s.name(repo), **kw)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
    message = err.details()
    assert message.startswith("SignatureValidationFailed: "), message
    assert s.name(repo) in message
    assert f"transports.docker['{s.registry.host}/trust']" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def assert_nothing_stored(d: Any, tmp: Path) -> None:
    assert list_images(d) == []
    storage = Storage(tmp)
    assert storage.layer_names() == set()
    blobs = storage.root / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))


# --- signedBy: GPG signatures made by skopeo --sign-by -------------------------------------


def test_gpg_signature_by_skopeo_is_accepted(start_daemon, tmp_path: Path, signed: Signed) -> None:
    policy = scoped(signed, gpg_requirement(signed, signed.gpg))
    d = daemon(start_daemon, tmp_path, signed, policy)
    assert pull(d, signed.name("gpg")) == signed.config_digest
    # What was verified is what is stored and runs.
    st = status(d, signed.name("gpg"), verbose=True)
    assert json.loads(st.info["info"])["manifestDigest"] == signed.digests["gpg"]
    assert f"{signed.registry.host}/trust/gpg@{signed.digests['gpg']}" in st.image.repo_digests
    assert f"GPG key {signed.gpg.fingerprint}" in d.stderr()


def test_gpg_refusals_leave_nothing_behind(start_daemon, tmp_path: Path, signed: Signed) -> None:
    policy_path = tmp_path / "policy.json"
    d = daemon(start_daemon, tmp_path, signed, scoped(signed, gpg_requirement(signed, signed.gpg)))
    msg = assert_refused(d, signed, tmp_path, "gpg-other", "not one of the policy's keys")
    assert str(policy_path) in msg and "requirement signedBy" in msg
    assert_refused(
        d, signed, tmp_path, "unsigned", "no GPG signature found", f"file://{signed.staging}"
    )
    assert_nothing_stored(d, tmp_path)


def test_gpg_identity_rules(start_daemon, tmp_path: Path, signed: Signed) -> None:
    # The signature names trust/gpg:v1; exactReference on another name refuses it.
    other = {"type": "exactReference", "dockerReference": signed.name("elsewhere")}
    req = gpg_requirement(signed, signed.gpg, signedIdentity=other)
    d = daemon(start_daemon, tmp_path, signed, scoped(signed, req))
    assert_refused(d, signed, tmp_path, "gpg", "does not match", "exactReference")
    # By digest, matchRepoDigestOrExact (the default) needs only the repository.
    (tmp_path / "policy.json").write_text(
        json.dumps(scoped(signed, gpg_requirement(signed, signed.gpg)))
    )
    by_digest = f"{signed.registry.host}/trust/gpg@{signed.digests['gpg']}"
    assert pull(d, by_digest) == signed.config_digest


def test_gpg_lookaside_over_http(start_daemon, tmp_path: Path, signed: Signed) -> None:
    server = signing.StaticServer(signed.staging)
    try:
        d = daemon(
            start_daemon, tmp_path, signed,
            scoped(signed, gpg_requirement(signed, signed.gpg)), lookaside=server.url,
        )  # fmt: skip
        assert pull(d, signed.name("gpg")) == signed.config_digest
        hex_part = signed.digests["gpg"].split(":", 1)[1]
        assert f"/trust/gpg@sha256={hex_part}/signature-1" in server.requests
        msg = assert_refused(d, signed, tmp_path, "unsigned", "no GPG signature found")
        assert server.url in msg
    finally:
        server.stop()


# --- sigstoreSigned ------------------------------------------------------------------------


def test_sigstore_signature_is_accepted(start_daemon, tmp_path: Path, signed: Signed) -> None:
    d = daemon(
        start_daemon, tmp_path, signed, scoped(signed, sigstore_requirement(signed, signed.signer))
    )
    assert pull(d, signed.name("cosign")) == signed.config_digest
    st = status(d, signed.name("cosign"), verbose=True)
    assert json.loads(st.info["info"])["manifestDigest"] == signed.digests["cosign"]
    # keyData works the same, and both kinds of requirement can apply at once.
    key_data = base64.b64encode(signed.signer.public_pem).decode()
    (tmp_path / "policy.json").write_text(
        json.dumps(scoped(signed, {"type": "sigstoreSigned", "keyData": key_data}))
    )
    assert pull(d, signed.name("cosign")) == signed.config_digest


def test_sigstore_refusals_leave_nothing_behind(
    start_daemon, tmp_path: Path, signed: Signed
) -> None:
    d = daemon(
        start_daemon,
        tmp_path,
        signed,
        scoped(signed, sigstore_requirement(signed, signed.other_signer)),
    )
    assert_refused(d, signed, tmp_path, "cosign", "does not verify with the policy's key")
    (tmp_path / "policy.json").write_text(
        json.dumps(scoped(signed, sigstore_requirement(signed, signed.signer)))
    )
    assert_refused(d, signed, tmp_path, "cosign-tampered", "does not verify")
    assert_refused(
        d, signed, tmp_path, "cosign-otherdigest", "the signature is for manifest sha256:"
    )
    assert_refused(
        d, signed, tmp_path, "cosign-identity", f"the signature is for {signed.name('cosign')}"
    )
    assert_refused(
        d, signed, tmp_path, "unsigned", "no sigstore signature found", ".sig does not exist"
    )
    # cosign's repository-only identity needs matchRepository.
    assert_refused(d, signed, tmp_path, "cosign-repo", "matchRepoDigestOrExact")
    assert_nothing_stored(d, tmp_path)
    req = sigstore_requirement(signed, signed.signer, signedIdentity={"type": "matchRepository"})
    (tmp_path / "policy.json").write_text(json.dumps(scoped(signed, req)))
    assert pull(d, signed.name("cosign-repo")) == signed.config_digest


def test_signed_index_covers_the_instance_pulled(
    start_daemon, tmp_path: Path, signed: Signed
) -> None:
    d = daemon(
        start_daemon, tmp_path, signed, scoped(signed, sigstore_requirement(signed, signed.signer))
    )
    assert pull(d, signed.name("multiarch")) == signed.multiarch_config
    st = status(d, signed.name("multiarch"))
    assert f"{signed.registry.host}/trust/multiarch@{signed.digests['multiarch']}" in list(
        st.image.repo_digests
    )


def test_sigstore_needs_use_sigstore_attachments(
    start_daemon, tmp_path: Path, signed: Signed
) -> None:
    d = daemon(
        start_daemon, tmp_path, signed, scoped(signed, sigstore_requirement(signed, signed.signer))
    )
    (tmp_path / "registries.d" / "default.yaml").write_text(
        "default-docker:\n  use-sigstore-attachments: false\n"
    )
    assert_refused(
        d,
        signed,
        tmp_path,
        "cosign",
        "use-sigstore-attachments is not enabled",
        str(tmp_path / "registries.d"),
    )


def test_keyless_fulcio_and_rekor(start_daemon, tmp_path: Path, signed: Signed) -> None:
    ca = signed.key_file("fulcio.pem", signed.fulcio.root_pem)
    rekor = signed.key_file("rekor.pub", signed.rekor.public_pem)
    req = {
        "type": "sigstoreSigned",
        "fulcio": {"caPath": str(ca), "oidcIssuer": ISSUER, "subjectEmail": EMAIL},
        "rekorPublicKeyPath": str(rekor),
    }
    d = daemon(start_daemon, tmp_path, signed, scoped(signed, req))
    # The certificate expired an hour ago; Rekor proves it was valid when used.
    assert pull(d, signed.name("keyless")) == signed.config_digest
    assert_refused(d, signed, tmp_path, "keyless-expired", "expired or was not yet valid")
    req["fulcio"]["subjectEmail"] = "someone-else@example.test"
    (tmp_path / "policy.json").write_text(json.dumps(scoped(signed, req)))
    assert_refused(d, signed, tmp_path, "keyless", "someone-else@example.test")


# --- per-namespace policies, reloaded without a restart ------------------------------------


def test_per_namespace_policy_applies_to_signatures_and_reloads(
    start_daemon, tmp_path: Path, signed: Signed
) -> None:
    d = daemon(start_daemon, tmp_path, signed, {"default": [{"type": "insecureAcceptAnything"}]})
    ns_policy = tmp_path / "policies" / "secure.json"
    ns_policy.write_text(json.dumps(scoped(signed, sigstore_requirement(signed, signed.signer))))
    msg = assert_refused(
        d, signed, tmp_path, "unsigned", "no sigstore signature", namespace="secure"
    )
    assert str(ns_policy) in msg
    assert pull(d, signed.name("unsigned"), namespace="open") == signed.config_digest
    assert pull(d, signed.name("cosign"), namespace="secure") == signed.config_digest
    # A key rotation in the namespace's policy takes effect at the next pull.
    ns_policy.write_text(
        json.dumps(scoped(signed, sigstore_requirement(signed, signed.other_signer)))
    )
    assert_refused(d, signed, tmp_path, "cosign", "does not verify", namespace="secure")


# --- skopeo's own sigstore signing -----------------------------------------------------------


def test_skopeo_sigstore_signing(start_daemon, tmp_path: Path, signed: Signed) -> None:
    """A signature made by skopeo --sign-by-sigstore-private-key with a cosign-format key."""
    key = signing.CosignKey.generate(tmp_path / "cosign")
    skopeo = signing.SigningSkopeo(tmp_path / "skopeo")
    layout = registry_env.OCILayout(tmp_path / "layout")
    base = registry_env.compress_layer(registry_env.busybox_rootfs_tar())
    layout.build_image([base], tag="busybox", config={"Labels": {"trust": "1"}})
    try:
        skopeo.copy_signed(
            f"oci:{layout.path}:busybox",
            signed.registry.docker_ref("trust/skopeo-sigstore", "v1"),
            cosign=key,
        )
    except RuntimeError as exc:
        if "sigstore disabled" in str(exc):
            pytest.skip(f"this skopeo cannot make sigstore signatures: {exc}")
        raise
    path = signed.key_file("skopeo-cosign.pub", key.public_pem)
    d = daemon(
        start_daemon,
        tmp_path,
        signed,
        scoped(signed, {"type": "sigstoreSigned", "keyPath": str(path)}),
    )
    assert pull(d, signed.name("skopeo-sigstore")) == signed.config_digest
