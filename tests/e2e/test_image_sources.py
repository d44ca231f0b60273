"""Where pulls may come from, through the daemon's socket: mirrors, blocked registries,
signature policy, credentials (Basic, auth.json, bearer tokens) and TLS with certs.d.
"""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import registry_env
from cri_api.v1 import api_pb2
from image_e2e import (
    Storage,
    image_daemon,
    insecure,
    list_images,
    pull,
    pull_error,
    status,
    toml_str,
    wait_for,
)

pytestmark = pytest.mark.e2e

Images = registry_env.TestImages
REJECT = {"default": [{"type": "reject"}]}


def busybox_id(images: Images) -> str:
    assert images.busybox.built is not None
    return images.busybox.built.config.digest


# --- mirrors and blocked registries ---------------------------------------------------------


def test_dead_mirror_falls_back_to_the_registry(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    dead = f"127.0.0.1:{registry_env.closed_port()}"
    conf = (
        f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
        f'[[registry.mirror]]\nlocation = "{dead}"\ninsecure = true\n'
    )
    d = image_daemon(start_daemon, tmp_path, registries=conf)
    assert pull(d, images.busybox.name) == busybox_id(images)
    # Names are the ones asked for, not the mirror's.
    assert list(status(d, images.busybox.name).image.repo_tags) == [images.busybox.name]
    assert f"mirror {dead} failed" in d.stderr()


def test_digest_only_mirror_serves_digest_pulls_only(
    start_daemon, tmp_path: Path, images: Images, mirror_registry
) -> None:
    # The registry itself is down; its mirror has the image but is for digests only.
    down = f"127.0.0.1:{registry_env.closed_port()}"
    conf = (
        f'[[registry]]\nlocation = "{down}"\ninsecure = true\n'
        f'[[registry.mirror]]\nlocation = "{mirror_registry.host}"\ninsecure = true\n'
        'pull-from-mirror = "digest-only"\n'
    )
    d = image_daemon(start_daemon, tmp_path, registries=conf)
    bb = images.busybox
    uri = f"/v2/{bb.repo}/manifests/{bb.digest}"
    tag_uri = f"/v2/{bb.repo}/manifests/latest"
    before, tag_before = (mirror_registry.count_requests("GET", u) for u in (uri, tag_uri))

    err = pull_error(d, f"{down}/{bb.repo}:latest")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert f"cannot reach registry {down}" in err.details()
    assert mirror_registry.count_requests("GET", tag_uri) == tag_before  # not asked

    by_digest = f"{down}/{bb.repo}@{bb.digest}"
    assert pull(d, by_digest) == busybox_id(images)
    wait_for(lambda: mirror_registry.count_requests("GET", uri) > before, 5, "the mirror's log")
    assert mirror_registry.count_requests("GET", uri) == before + 1
    img = status(d, by_digest).image
    assert list(img.repo_digests) == [by_digest]
    assert list(img.repo_tags) == []


def test_blocked_registry_is_permission_denied(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    conf = (
        f'[[registry]]\nprefix = "{registry.host}/pycrio-test/busybox"\n'
        f'location = "{registry.host}/pycrio-test/busybox"\ninsecure = true\nblocked = true\n\n'
        + insecure(registry.host)
    )
    d = image_daemon(start_daemon, tmp_path, registries=conf)
    uri = f"/v2/{images.busybox.repo}/manifests/{images.busybox.tag}"
    before = registry.count_requests("GET", uri)
    err = pull_error(d, images.busybox.name)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "is blocked" in err.details()
    assert str(tmp_path / "registries.conf") in err.details()
    assert registry.count_requests("GET", uri) == before  # never asked
    # Other repositories of that registry are not blocked.
    pull(d, images.zstd.name)
    assert [i.repo_tags[0] for i in list_images(d)] == [images.zstd.name]


# --- signature policy -----------------------------------------------------------------------


def test_policy_reject_is_permission_denied(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    policy = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {f"{registry.host}/pycrio-test/busybox": [{"type": "reject"}]}},
    }
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host), policy=policy)
    err = pull_error(d, images.busybox.name)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "rejected by signature policy" in err.details()
    assert str(tmp_path / "policy.json") in err.details()
    pull(d, images.zstd.name)  # another scope: accepted
    assert len(list_images(d)) == 1


def test_policy_signed_by_with_a_missing_key_is_refused(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    policy = {
        "default": [
            {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/key.gpg"},
        ]
    }
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host), policy=policy)
    err = pull_error(d, images.busybox.name)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details().startswith("SignatureValidationFailed: ")
    assert "cannot read GPG keyring /etc/pki/key.gpg" in err.details()
    assert list_images(d) == []


def test_per_namespace_policy(start_daemon, tmp_path: Path, registry, images: Images) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    (tmp_path / "policies" / "locked-down.json").write_text(json.dumps(REJECT))
    err = pull_error(d, images.busybox.name, namespace="locked-down")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert str(tmp_path / "policies" / "locked-down.json") in err.details()
    # Another namespace (no file of its own) and no namespace use the default policy.
    assert pull(d, images.busybox.name, namespace="open") == busybox_id(images)
    assert pull(d, images.zstd.name) == images.zstd.built.config.digest
    err = pull_error(d, images.busybox.name, namespace="../etc")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "namespace" in err.details()


def test_missing_policy_file_is_failed_precondition(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    (tmp_path / "policy.json").unlink()
    err = pull_error(d, images.busybox.name)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "does not exist" in err.details()


# --- credentials -----------------------------------------------------------------------------


def test_basic_auth_from_the_pull_request(
    start_daemon, tmp_path: Path, auth_registry, auth_images: registry_env.PushedImage
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(auth_registry.host))
    reg, img = auth_registry, auth_images
    assert img.built is not None
    image_id = img.built.config.digest

    err = pull_error(d, img.name)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reg.host in err.details() and "needs credentials and none were given" in err.details()

    bad = api_pb2.AuthConfig(username=reg.username, password="wrong-password-123")
    err = pull_error(d, img.name, auth=bad)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reg.host in err.details() and "401" in err.details()
    assert "credentials were rejected" in err.details()
    assert "wrong-password-123" not in err.details()
    assert list_images(d) == []

    good = api_pb2.AuthConfig(username=reg.username, password=reg.password)
    assert pull(d, img.name, auth=good) == image_id
    assert list(status(d, image_id).image.repo_tags) == [img.name]


def test_basic_auth_from_the_auth_field(
    start_daemon, tmp_path: Path, auth_registry, auth_images: registry_env.PushedImage
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(auth_registry.host))
    token = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode())
    assert pull(d, auth_images.name, auth=api_pb2.AuthConfig(auth=token.decode())) == (
        auth_images.built.config.digest
    )
    wrong = base64.b64encode(f"{auth_registry.username}:nope-nope".encode()).decode()
    store = Storage(tmp_path)
    layers = store.layer_names()
    err = pull_error(d, auth_images.by_digest, auth=api_pb2.AuthConfig(auth=wrong))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert store.layer_names() == layers
    err = pull_error(d, auth_images.name, auth=api_pb2.AuthConfig(auth="not base64!"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'auth' is not base64 of 'user:password'" in err.details()


def test_global_auth_file(
    start_daemon, tmp_path: Path, auth_registry, auth_images: registry_env.PushedImage
) -> None:
    auth_json = tmp_path / "auth.json"
    secret = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode())
    auth_json.write_text(json.dumps({"auths": {auth_registry.host: {"auth": secret.decode()}}}))
    d = image_daemon(
        start_daemon,
        tmp_path,
        registries=insecure(auth_registry.host),
        image=f"global_auth_file = {toml_str(auth_json)}",
    )
    assert pull(d, auth_images.name) == auth_images.built.config.digest
    # Credentials in the request win over the file.
    err = pull_error(
        d, auth_images.by_digest, auth=api_pb2.AuthConfig(username="x", password="wrong-pw")
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bearer_token_auth(start_daemon, tmp_path: Path, token_registry) -> None:
    reg, img = token_registry
    ts = reg.token_server
    assert ts is not None and img.built is not None
    d = image_daemon(start_daemon, tmp_path, registries=insecure(reg.host))

    err = pull_error(d, img.name)  # anonymous: a token without access
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reg.host in err.details()

    err = pull_error(d, img.name, auth=api_pb2.AuthConfig(username=reg.username, password="bad"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "token service" in err.details() and "401" in err.details()

    ts.reset_log()
    good = api_pb2.AuthConfig(username=reg.username, password=reg.password)
    assert pull(d, img.name, auth=good) == img.built.config.digest
    assert {r["user"] for r in ts.requests} == {reg.username}
    assert {s for r in ts.requests for s in r["query"]["scope"]} == {"repository:private/bb:pull"}

    # identity_token: an OAuth2 refresh token exchanged by POST.
    ts.reset_log()
    refresh = api_pb2.AuthConfig(identity_token=ts.refresh_token)
    assert pull(d, img.by_digest, auth=refresh) == img.built.config.digest
    assert [r["method"] for r in ts.requests] == ["POST"]
    assert ts.requests[0]["form"]["grant_type"] == ["refresh_token"]

    # registry_token: sent as the bearer as is, the token service is not asked.
    ts.reset_log()
    token = ts.sign(reg.username, [{"type": "repository", "name": img.repo, "actions": ["pull"]}])
    bearer = api_pb2.AuthConfig(registry_token=token)
    assert pull(d, f"{img.name}@{img.digest}", auth=bearer) == img.built.config.digest
    assert ts.requests == []


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[registry_env.RegistryServer, registry_env.PushedImage]]:
    """A TLS registry with a self-signed certificate for 127.0.0.1, holding busybox."""
    if registry_env.missing_tools_reason():
        pytest.skip(registry_env.missing_tools_reason() or "")
    workdir = tmp_path_factory.mktemp("tls-registry")
    try:
        with registry_env.running_registry(workdir / "reg", tls=True) as reg:
            layout = registry_env.OCILayout(workdir / "layout")
            built = layout.build_image(
                [registry_env.compress_layer(registry_env.busybox_rootfs_tar())], tag="bb"
            )
            img = registry_env.push(
                registry_env.Skopeo(workdir / "skopeo"), layout, "bb", reg, "secure/bb", "1",
                built=built,
            )  # fmt: skip
            yield reg, img
    except registry_env.Unsupported as exc:
        pytest.skip(str(exc))


def test_tls_registry_trusted_through_certs_d(start_daemon, tmp_path: Path, tls_registry) -> None:
    reg, img = tls_registry
    assert reg.ca_cert is not None and img.built is not None
    certs = tmp_path / "certs.d" / reg.host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(reg.ca_cert.read_bytes())
    d = image_daemon(start_daemon, tmp_path)  # no insecure entry: TLS must verify
    assert pull(d, img.name) == img.built.config.digest


def test_tls_registry_untrusted_without_ca(start_daemon, tmp_path: Path, tls_registry) -> None:
    reg, img = tls_registry
    d = image_daemon(start_daemon, tmp_path)
    err = pull_error(d, img.name)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert reg.host in err.details()
    assert "certificate verify failed" in err.details().lower()
    assert list_images(d) == []


def test_sighup_rereads_registries_conf(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    d = image_daemon(start_daemon, tmp_path)  # the plain-HTTP registry is not insecure yet
    err = pull_error(d, images.busybox.name)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "needs insecure" in err.details()

    def reload(conf: str) -> None:
        (tmp_path / "registries.conf").write_text(conf)
        done = "image settings reloaded"
        count = d.stderr().count(done)
        d.signal(signal.SIGHUP)
        wait_for(lambda: d.stderr().count(done) > count, 10, "the image settings to reload")

    reload(insecure(registry.host))
    assert pull(d, images.busybox.name) == busybox_id(images)
    reload(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\nblocked = true\n')
    err = pull_error(d, images.zstd.name)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    # A broken file is reported and the running settings stay.
    (tmp_path / "registries.conf").write_text("[[registry]\nbroken")
    d.signal(signal.SIGHUP)
    wait_for(lambda: "image settings not reloaded" in d.stderr(), 10, "the failed reload")
    assert pull_error(d, images.zstd.name).code() == grpc.StatusCode.PERMISSION_DENIED


def test_tls_registry_requiring_a_client_certificate(
    start_daemon, tmp_path: Path, extra_images
) -> None:
    work = tmp_path / "mtls"
    work.mkdir()
    try:
        cert, key = registry_env.make_self_signed_cert(work, "client", cn="pycrio", ip=None)
    except registry_env.Unsupported as exc:
        pytest.skip(str(exc))
    with registry_env.running_registry(work / "reg", tls=True, client_ca=cert) as reg:
        assert reg.ca_cert is not None
        certs = tmp_path / "certs.d" / reg.host
        certs.mkdir(parents=True)
        (certs / "ca.crt").write_bytes(reg.ca_cert.read_bytes())
        push_dir = work / "push-certs"
        push_dir.mkdir()
        (push_dir / "client.cert").write_bytes(cert.read_bytes())
        (push_dir / "client.key").write_bytes(key.read_bytes())
        extra_images.skopeo.copy(
            f"oci:{extra_images.layout.path}:nobody",
            reg.docker_ref("mtls/nobody", "v1"),
            cert_dir=push_dir,
        )
        name = f"{reg.host}/mtls/nobody:v1"
        d = image_daemon(start_daemon, tmp_path)
        err = pull_error(d, name)  # the CA alone: the registry refuses the handshake
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert reg.host in err.details()
        d.stop()

        (certs / "client.cert").write_bytes(cert.read_bytes())
        (certs / "client.key").write_bytes(key.read_bytes())
        d = image_daemon(start_daemon, tmp_path)
        assert pull(d, name) == extra_images.nobody.built.config.digest
        assert status(d, name).image.username == "nobody"
