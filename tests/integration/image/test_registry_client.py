"""RegistryClient against a real distribution registry on 127.0.0.1.

Covers plain HTTP, htpasswd (Basic), token auth (Bearer from a token service
the registry really verifies), TLS with certs.d CAs and client certificates,
and redirects. The only stand-ins are small HTTP servers on 127.0.0.1 that
play a token service or a redirecting front (a CDN in production).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import registry_env
import zstandard

from pycrio.errors import InvalidArgument, NotFound, Unauthenticated, Unavailable
from pycrio.image import manifest as m
from pycrio.image.auth import Credentials
from pycrio.image.registry_client import RegistryClient

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(registry: registry_env.RegistryServer) -> Iterator[RegistryClient]:
    with RegistryClient(registry.host, insecure=True) as c:
        yield c


# --- manifests -------------------------------------------------------------------


def test_manifest_by_tag_and_by_digest(
    client: RegistryClient, images: registry_env.TestImages
) -> None:
    img = images.busybox
    body, media_type, digest = client.get_manifest(img.repo, img.tag)
    assert media_type == m.MEDIA_TYPE_OCI_MANIFEST
    assert body == img.manifest
    assert digest == img.digest == img.built.manifest.digest  # type: ignore[union-attr]
    body2, media_type2, digest2 = client.get_manifest(img.repo, img.digest)
    assert (body2, media_type2, digest2) == (body, media_type, digest)
    parsed = m.parse_manifest(body, media_type)
    assert isinstance(parsed, m.ImageManifest)
    assert [layer.digest for layer in parsed.layers] == [
        layer.digest
        for layer in img.built.layers  # type: ignore[union-attr]
    ]


def test_docker_schema2_manifest(client: RegistryClient, images: registry_env.TestImages) -> None:
    img = images.docker
    body, media_type, digest = client.get_manifest(img.repo, img.tag)
    assert media_type == m.MEDIA_TYPE_DOCKER_MANIFEST
    assert digest == img.digest
    parsed = m.parse_manifest(body, media_type)
    assert isinstance(parsed, m.ImageManifest)
    assert parsed.config.media_type == m.MEDIA_TYPE_DOCKER_CONFIG
    config = m.parse_image_config(client.get_blob_bytes(img.repo, parsed.config.digest))
    assert config.cmd == ("/bin/sh",)
    m.check_config_matches_manifest(parsed, config)


def test_index_platform_pick_then_config(
    client: RegistryClient, images: registry_env.TestImages
) -> None:
    img = images.multiarch
    body, media_type, digest = client.get_manifest(img.repo, img.tag)
    assert media_type == m.MEDIA_TYPE_OCI_INDEX
    assert digest == img.digest
    index = m.parse_manifest(body, media_type)
    assert isinstance(index, m.ImageIndex)
    for machine, arch in (("x86_64", "amd64"), ("aarch64", "arm64")):
        entry = m.select_manifest(index, m.host_platform(machine, "Linux"))
        child_body, child_type, child_digest = client.get_manifest(img.repo, entry.digest)
        assert child_digest == entry.digest
        child = m.parse_manifest(child_body, child_type)
        assert isinstance(child, m.ImageManifest)
        cfg = m.parse_image_config(client.get_blob_bytes(img.repo, child.config.digest))
        assert cfg.architecture == arch
    with pytest.raises(NotFound, match="no image for platform linux/s390x"):
        m.select_manifest(index, m.host_platform("s390x", "Linux"))


def test_config_fields_of_multilayer_image(
    client: RegistryClient, images: registry_env.TestImages
) -> None:
    img = images.multilayer
    body, media_type, _ = client.get_manifest(img.repo, img.tag)
    parsed = m.parse_manifest(body, media_type)
    assert isinstance(parsed, m.ImageManifest) and len(parsed.layers) == 3
    cfg = m.parse_image_config(client.get_blob_bytes(img.repo, parsed.config.digest))
    assert cfg.entrypoint == ("/bin/cat",)
    assert cfg.user == "1000:1000"
    assert cfg.working_dir == "/tmp"
    assert cfg.exposed_ports == ("8080/tcp",)
    assert cfg.volumes == ("/data",)
    assert cfg.stop_signal == "SIGUSR1"
    assert cfg.diff_ids == tuple(layer.diff_id for layer in img.built.layers)  # type: ignore[union-attr]


# --- blobs ---------------------------------------------------------------------


def test_stream_gzip_layer_verifies_and_untars(
    client: RegistryClient, images: registry_env.TestImages
) -> None:
    layer = images.busybox.built.layers[0]  # type: ignore[union-attr]
    h = hashlib.sha256()
    with client.open_blob(images.busybox.repo, layer.digest, expected_size=layer.size) as s:
        assert s.size == layer.size
        for chunk in s.iter_chunks(64 * 1024):
            assert len(chunk) <= 64 * 1024
            h.update(chunk)
        assert s.bytes_read == layer.size
    assert "sha256:" + h.hexdigest() == layer.digest
    # The stream is file-like: tarfile can consume it without buffering the blob.
    with client.open_blob(images.busybox.repo, layer.digest) as s:
        with tarfile.open(fileobj=s, mode="r|gz") as tar:
            names = {ti.name: ti for ti in tar}
    assert names["bin/busybox"].isfile()
    assert names["bin/sh"].issym() and names["bin/sh"].linkname == "busybox"


def test_stream_zstd_layer_matches_diff_id(
    client: RegistryClient, images: registry_env.TestImages
) -> None:
    img = images.zstd
    body, media_type, _ = client.get_manifest(img.repo, img.tag)
    parsed = m.parse_manifest(body, media_type)
    assert isinstance(parsed, m.ImageManifest)
    layer = parsed.layers[0]
    assert m.layer_compression(layer) == "zstd"
    h = hashlib.sha256()
    with client.open_blob(img.repo, layer.digest, expected_size=layer.size) as s:
        reader = zstandard.ZstdDecompressor().stream_reader(s)
        while chunk := reader.read(1 << 16):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == img.built.layers[0].diff_id  # type: ignore[union-attr]


def test_size_disagreeing_with_manifest_is_refused(
    client: RegistryClient, images: registry_env.TestImages
) -> None:
    layer = images.busybox.built.layers[0]  # type: ignore[union-attr]
    with pytest.raises(m.DigestMismatch, match="the manifest declares 10"):
        client.open_blob(images.busybox.repo, layer.digest, expected_size=10)


# --- not found and bad input ------------------------------------------------------


def test_unknown_repository_tag_and_blob(
    client: RegistryClient, registry: registry_env.RegistryServer, images: registry_env.TestImages
) -> None:
    with pytest.raises(NotFound) as ei:
        client.get_manifest("pycrio-test/does-not-exist", "latest")
    msg = ei.value.message
    assert f"{registry.host}/pycrio-test/does-not-exist:latest" in msg
    assert "NAME_UNKNOWN" in msg or "MANIFEST_UNKNOWN" in msg
    with pytest.raises(NotFound, match="busybox:no-such-tag not found: .*MANIFEST_UNKNOWN"):
        client.get_manifest(images.busybox.repo, "no-such-tag")
    with pytest.raises(NotFound, match="blob of image .*@sha256:0{64} not found"):
        client.open_blob(images.busybox.repo, "sha256:" + "0" * 64)


@pytest.mark.parametrize(
    "repo,ref,message",
    [
        ("UPPER/case", "latest", "invalid repository name"),
        ("a/../b", "latest", "invalid repository name"),
        ("ok/repo", "bad tag", "invalid tag"),
        ("ok/repo", "sha256:1234", "invalid digest"),
    ],
)
def test_invalid_names_refused_before_any_request(repo: str, ref: str, message: str) -> None:
    # Port 9 on loopback is never contacted: validation happens first.
    c = RegistryClient(f"{registry_env.LOOPBACK}:9", insecure=True)
    with pytest.raises(InvalidArgument, match=message):
        c.get_manifest(repo, ref)


# --- unreachable ------------------------------------------------------------------------


def test_closed_port_is_unavailable() -> None:
    host = f"{registry_env.LOOPBACK}:{registry_env.closed_port()}"
    with pytest.raises(Unavailable, match=f"cannot reach registry {host}.*refused"):
        RegistryClient(host, insecure=True, connect_retries=0).get_manifest("a/b", "latest")


def test_plain_http_registry_needs_insecure(registry: registry_env.RegistryServer) -> None:
    with pytest.raises(Unavailable, match="needs insecure"):
        RegistryClient(registry.host, connect_retries=0).get_manifest("a/b", "latest")


# --- htpasswd (Basic) -------------------------------------------------------------------


def test_basic_auth(
    auth_registry: registry_env.RegistryServer, auth_images: registry_env.PushedImage
) -> None:
    img = auth_images
    good = Credentials(auth_registry.username, auth_registry.password)
    with RegistryClient(auth_registry.host, insecure=True, credentials=good) as c:
        _, _, digest = c.get_manifest(img.repo, img.tag)
        assert digest == img.digest
        layer = img.built.layers[0]  # type: ignore[union-attr]
        with c.open_blob(img.repo, layer.digest) as s:
            assert len(s.read()) == layer.size

    bad = Credentials(auth_registry.username, "wrong-password-xyz")
    with pytest.raises(Unauthenticated) as ei:
        RegistryClient(auth_registry.host, insecure=True, credentials=bad).get_manifest(
            img.repo, img.tag
        )
    assert auth_registry.host in ei.value.message
    assert "401" in ei.value.message and "credentials were rejected" in ei.value.message
    assert "wrong-password-xyz" not in ei.value.message

    with pytest.raises(Unauthenticated, match="needs credentials and none were given"):
        RegistryClient(auth_registry.host, insecure=True).get_manifest(img.repo, img.tag)


# --- token auth (Bearer) ------------------------------------------------------------------


def _token_requests(reg: registry_env.RegistryServer) -> list[dict[str, Any]]:
    assert reg.token_server is not None
    return list(reg.token_server.requests)


def test_bearer_token_flow_with_password(token_registry: Any) -> None:
    reg, img = token_registry
    reg.token_server.reset_log()
    creds = Credentials(reg.username, reg.password)
    with RegistryClient(reg.host, insecure=True, credentials=creds) as c:
        _, _, digest = c.get_manifest(img.repo, img.tag)
        assert digest == img.digest
        layer = img.built.layers[0]
        with c.open_blob(img.repo, layer.digest, expected_size=layer.size) as s:
            assert hashlib.sha256(s.read()).hexdigest() == layer.digest.split(":")[1]
    reqs = _token_requests(reg)
    # One token for both requests: it is cached per scope.
    assert len(reqs) == 1
    assert reqs[0]["method"] == "GET" and reqs[0]["user"] == reg.username
    assert reqs[0]["query"]["scope"] == ["repository:private/bb:pull"]
    assert reqs[0]["query"]["service"] == [reg.token_server.service]
    assert reqs[0]["query"]["account"] == [reg.username]


def test_bearer_identity_token_uses_oauth2_refresh(token_registry: Any) -> None:
    reg, img = token_registry
    reg.token_server.reset_log()
    creds = Credentials(identity_token=reg.token_server.refresh_token)
    _, _, digest = RegistryClient(reg.host, insecure=True, credentials=creds).get_manifest(
        img.repo, img.tag
    )
    assert digest == img.digest
    (req,) = _token_requests(reg)
    assert req["method"] == "POST"
    assert req["form"]["grant_type"] == ["refresh_token"]
    assert req["form"]["scope"] == ["repository:private/bb:pull"]


def test_registry_token_is_sent_as_is(token_registry: Any) -> None:
    reg, img = token_registry
    token = reg.token_server.sign(
        reg.username, [{"type": "repository", "name": img.repo, "actions": ["pull"]}]
    )
    reg.token_server.reset_log()
    c = RegistryClient(reg.host, insecure=True, credentials=Credentials(registry_token=token))
    assert c.get_manifest(img.repo, img.tag)[2] == img.digest
    assert _token_requests(reg) == []  # never asked the token service
    # A token for another repository is rejected by the registry itself.
    other = reg.token_server.sign(reg.username, [])
    with pytest.raises(Unauthenticated, match="401"):
        RegistryClient(
            reg.host, insecure=True, credentials=Credentials(registry_token=other)
        ).get_manifest(img.repo, img.tag)


def test_bearer_wrong_password_and_anonymous(token_registry: Any) -> None:
    reg, img = token_registry
    bad = Credentials(reg.username, "not-the-password-123")
    with pytest.raises(Unauthenticated) as ei:
        RegistryClient(reg.host, insecure=True, credentials=bad).get_manifest(img.repo, img.tag)
    msg = ei.value.message
    assert "token service" in msg and reg.host in msg and "401" in msg
    assert "not-the-password-123" not in msg
    # Anonymous: the token service hands out a token without access; the
    # registry refuses it, the client retries once with a fresh token, then gives up.
    reg.token_server.reset_log()
    with pytest.raises(Unauthenticated, match="none were given"):
        RegistryClient(reg.host, insecure=True).get_manifest(img.repo, img.tag)
    assert len(_token_requests(reg)) == 2


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[registry_env.RegistryServer]:
    if registry_env.missing_tools_reason():
        pytest.skip(registry_env.missing_tools_reason() or "")
    try:
        with registry_env.running_registry(
            tmp_path_factory.mktemp("tls-registry"), tls=True
        ) as reg:
            yield reg
    except registry_env.Unsupported as exc:
        pytest.skip(str(exc))


def test_tls_with_certs_d_ca(tls_registry: registry_env.RegistryServer, tmp_path: Path) -> None:
    certs_d = tmp_path / "certs.d"
    (certs_d / tls_registry.host).mkdir(parents=True)
    assert tls_registry.ca_cert is not None
    (certs_d / tls_registry.host / "ca.crt").write_bytes(tls_registry.ca_cert.read_bytes())
    c = RegistryClient(tls_registry.host, certs_dir=[tmp_path / "nope", certs_d])
    with pytest.raises(NotFound, match="not found"):
        c.get_manifest("some/repo", "latest")  # reached over verified TLS
    assert c.ping().startswith("https://")


def test_tls_untrusted_is_unavailable_unless_insecure(
    tls_registry: registry_env.RegistryServer,
) -> None:
    with pytest.raises(Unavailable, match="(?i)certificate verify failed"):
        RegistryClient(tls_registry.host, connect_retries=0).get_manifest("some/repo", "latest")
    c = RegistryClient(tls_registry.host, insecure=True)
    with pytest.raises(NotFound):
        c.get_manifest("some/repo", "latest")
    assert c.ping().startswith("https://")  # insecure still prefers TLS


def test_tls_client_certificate(tmp_path: Path) -> None:
    if registry_env.missing_tools_reason():
        pytest.skip(registry_env.missing_tools_reason() or "")
    try:
        client_cert, client_key = registry_env.make_self_signed_cert(
            tmp_path, "client", cn="pycrio-client", ip=None
        )
    except registry_env.Unsupported as exc:
        pytest.skip(str(exc))
    with registry_env.running_registry(tmp_path / "reg", tls=True, client_ca=client_cert) as reg:
        certs_d = tmp_path / "certs.d"
        d = certs_d / reg.host
        d.mkdir(parents=True)
        assert reg.ca_cert is not None
        (d / "ca.crt").write_bytes(reg.ca_cert.read_bytes())
        with pytest.raises(Unavailable):
            RegistryClient(reg.host, certs_dir=certs_d, connect_retries=0).get_manifest(
                "some/repo", "latest"
            )
        (d / "client.cert").write_bytes(client_cert.read_bytes())
        (d / "client.key").write_bytes(client_key.read_bytes())
        with pytest.raises(NotFound):
            RegistryClient(reg.host, certs_dir=certs_d).get_manifest("some/repo", "latest")
        (d / "client.key").unlink()
        with pytest.raises(InvalidArgument, match="has no matching key"):
            RegistryClient(reg.host, certs_dir=certs_d)


# --- redirects -----------------------------------------------------------------------------


class _Front:
    """An HTTP server on 127.0.0.1 that records requests and redirects them."""

    def __init__(self, route: Any) -> None:
        self.seen: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = route(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer((registry_env.LOOPBACK, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://{registry_env.LOOPBACK}:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_redirects_drop_authorization_across_origins(
    registry: registry_env.RegistryServer, images: registry_env.TestImages
) -> None:
    img = images.busybox
    layer = img.built.layers[0]  # type: ignore[union-attr]
    target = f"{registry.url}/v2/{img.repo}/blobs/{layer.digest}"
    cdn = _Front(lambda path: (307, {"Location": target}, b""))

    def front_route(path: str) -> tuple[int, dict[str, str], bytes]:
        if path == "/v2/":
            return 200, {"Content-Type": "application/json"}, b"{}"
        if path.startswith("/moved/"):
            return 302, {"Location": f"{cdn.base}/cdn/{layer.digest}"}, b""
        if "/blobs/" in path:
            return 307, {"Location": f"/moved/{layer.digest}"}, b""
        return 404, {}, json.dumps({"errors": [{"code": "NAME_UNKNOWN"}]}).encode()

    front = _Front(front_route)
    try:
        host = front.base.removeprefix("http://")
        creds = Credentials(registry_token="front-token")
        with RegistryClient(host, insecure=True, credentials=creds, connect_retries=0) as c:
            with c.open_blob(img.repo, layer.digest, expected_size=layer.size) as s:
                data = s.read()
        assert hashlib.sha256(data).hexdigest() == layer.digest.split(":")[1]
        blob_reqs = [(p, a) for p, a in front.seen if p != "/v2/"]
        # Same origin keeps the credentials, the other origin never sees them.
        assert blob_reqs == [
            (f"/v2/{img.repo}/blobs/{layer.digest}", "Bearer front-token"),
            (f"/moved/{layer.digest}", "Bearer front-token"),
        ]
        assert cdn.seen == [(f"/cdn/{layer.digest}", None)]
    finally:
        front.close()
        cdn.close()
