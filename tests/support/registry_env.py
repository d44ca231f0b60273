"""Test infrastructure: a real distribution registry on 127.0.0.1 and test images.

Reused by every integration and e2e test that pulls images. Nothing here
mocks the registry: ``docker-registry serve`` (the CNCF distribution registry)
runs as a child process on a free loopback port, and images are built from
busybox-static as OCI image layouts in Python (no Docker daemon) and pushed
with ``skopeo copy``, so what a test pulls is exactly what a real push makes.

Optional features and what they need:
- htpasswd (Basic) auth: a bcrypt line from ``htpasswd`` (apache2-utils) or
  Python's ``crypt`` module (glibc/libxcrypt bcrypt);
- TLS and token auth: the ``openssl`` CLI (self-signed certificates; token
  signatures with ``openssl dgst``).
Each helper raises ``Unsupported`` with the reason when its tool is missing,
so fixtures can ``pytest.skip`` with that reason.

Network rule: every address here is 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
REGISTRY_BIN = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"
SUBPROCESS_TIMEOUT = 120

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"

BUSYBOX_APPLETS = (
    "sh", "ls", "cat", "echo", "sleep", "true", "false", "env", "id", "mkdir",
    "touch", "rm", "ps", "grep", "head", "tail", "wc", "hostname", "mount", "kill",
    "printf", "test", "[", "date", "uname", "top", "nc", "wget", "ip", "ifconfig",
)  # fmt: skip

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "testuser:x:1000:1000:pycrio test user:/home/testuser:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\ntestgroup:x:1000:testuser\nnogroup:x:65534:\n"


class Unsupported(RuntimeError):
    """A tool this helper needs is missing; the message says which."""


# --- tools -------------------------------------------------------------------


def missing_tools_reason() -> str | None:
    """Why registry tests cannot run here, or None when they can."""
    missing = [
        path
        for path, found in (
            (REGISTRY_BIN, os.access(REGISTRY_BIN, os.X_OK)),
            ("skopeo", shutil.which("skopeo") is not None),
            (BUSYBOX, os.path.isfile(BUSYBOX)),
        )
        if not found
    ]
    if not missing:
        return None
    return (
        "registry tests need docker-registry, skopeo and busybox-static "
        f"(Debian packages); missing: {', '.join(missing)}"
    )


def _run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, input: bytes | None = None,
         timeout: float = SUBPROCESS_TIMEOUT) -> bytes:  # fmt: skip
    proc = subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed with exit code {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout


def free_port() -> int:
    """A loopback port that was free a moment ago (the registry retries on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on, for "registry unreachable" tests."""
    return free_port()


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file (the only scheme distribution accepts)."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        out = _run([htpasswd, "-nbB", "u", password]).decode().strip()
        return out.split(":", 1)[1]
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13; htpasswd covers later versions
    except ImportError as exc:
        raise Unsupported(
            "htpasswd auth needs a bcrypt hash: install apache2-utils (htpasswd)"
        ) from exc
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        raise Unsupported("libcrypt has no bcrypt here: install apache2-utils (htpasswd)")
    return hashed


def make_self_signed_cert(
    directory: Path, name: str, *, cn: str = LOOPBACK, ip: str | None = LOOPBACK
) -> tuple[Path, Path]:
    """(cert, key) PEM files made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise Unsupported("TLS and token tests need the openssl CLI (Debian package openssl)")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    argv = [
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}",
    ]  # fmt: skip
    if ip:
        argv += ["-addext", f"subjectAltName=IP:{ip}"]
    _run(argv)
    return cert, key


# --- a token server (Docker token-auth spec) ---------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """A minimal token service for the registry's ``auth: token`` mode.

    Issues RS256 JWTs signed with ``openssl dgst`` carrying the signing
    certificate in ``x5c``, which distribution verifies against its
    ``rootcertbundle``. Grants ``pull`` (and ``push``) on any repository to a
    known user (Basic auth on GET, or ``grant_type=password|refresh_token`` on
    POST); anonymous callers get a token with no access, as Docker Hub's
    token service does for private repositories.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        username: str,
        password: str,
        service: str = "pycrio-test-registry",
        issuer: str = "pycrio-test-issuer",
        expires_in: int = 300,
    ) -> None:
        self.workdir = workdir
        self.username = username
        self.password = password
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.refresh_token = "refresh-" + secrets.token_hex(16)
        self.cert, self.key = make_self_signed_cert(workdir, "token-signer", cn=issuer, ip=None)
        pem = self.cert.read_text()
        self._x5c = "".join(line for line in pem.splitlines() if line and "-----" not in line)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://{LOOPBACK}:{self._server.server_address[1]}/token"

    def sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = _run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode()
        )
        return signing_input + "." + _b64url(signature)

    @staticmethod
    def _access(scopes: Sequence[str]) -> list[dict[str, Any]]:
        out = []
        for scope in scopes:
            for one in scope.split(" "):
                parts = one.split(":")
                if len(parts) >= 3 and parts[0] == "repository":
                    name = ":".join(parts[1:-1])
                    actions = [a for a in parts[-1].split(",") if a in ("pull", "push")]
                    out.append({"type": "repository", "name": name, "actions": actions})
        return out

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(parsed.query)
        record: dict[str, Any] = {"method": method, "query": query}
        user: str | None = None
        scopes: list[str] = query.get("scope", [])
        authz = handler.headers.get("Authorization", "")
        if method == "POST":
            length = int(handler.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(handler.rfile.read(length).decode())
            record["form"] = {k: v for k, v in form.items() if k not in ("password",)}
            grant = form.get("grant_type", [""])[0]
            scopes = form.get("scope", [])
            if (
                grant == "refresh_token"
                and form.get("refresh_token", [""])[0] == self.refresh_token
            ):
                user = self.username
            elif (
                grant == "password"
                and form.get("username", [""])[0] == self.username
                and form.get("password", [""])[0] == self.password
            ):
                user = self.username
            else:
                return self._reply(handler, 401, {"error": "invalid_grant"}, record)
        elif authz.startswith("Basic "):
            raw = base64.b64decode(authz[6:]).decode()
            if raw != f"{self.username}:{self.password}":
                return self._reply(handler, 401, {"details": "wrong credentials"}, record)
            user = self.username
        record["user"] = user
        access = self._access(scopes) if user else []
        token = self.sign(user or "", access)
        body: dict[str, Any] = {
            "token" if method == "GET" else "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if method == "POST":
            body["refresh_token"] = self.refresh_token
        self._reply(handler, 200, body, record)

    def _reply(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        record: dict[str, Any],
    ) -> None:
        record["status"] = status
        with self._lock:
            self.requests.append(record)
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def start(self) -> TokenServer:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                outer._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()


# --- the registry ------------------------------------------------------------


@dataclass
class RegistryServer:
    """A running ``docker-registry serve`` on 127.0.0.1.

    ``auth`` is None, "htpasswd" (Basic) or "token" (Bearer via TokenServer).
    With ``tls``, ``ca_cert`` is the self-signed certificate to trust, and
    with ``client_ca`` the registry requires a client certificate signed by
    (or equal to) it.
    """

    workdir: Path
    auth: str | None = None
    tls: bool = False
    username: str = "pycrio"
    password: str = field(default_factory=lambda: "pw-" + secrets.token_hex(8))
    client_ca: Path | None = None
    port: int = 0
    ca_cert: Path | None = None
    token_server: TokenServer | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.workdir / 'storage'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.host}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.tls:
            cert, key = make_self_signed_cert(self.workdir, "registry")
            self.ca_cert = cert
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
            if self.client_ca is not None:
                lines += ["    clientcas:", f"      - {self.client_ca}"]
        if self.auth == "htpasswd":
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(f"{self.username}:{bcrypt_hash(self.password)}\n")
            lines += ["auth:", "  htpasswd:", "    realm: pycrio-test", f"    path: {htpasswd}"]
        elif self.auth == "token":
            if self.token_server is None:
                self.token_server = TokenServer(
                    self.workdir, username=self.username, password=self.password
                ).start()
            ts = self.token_server
            lines += [
                "auth:",
                "  token:",
                f"    realm: {ts.realm}",
                f"    service: {ts.service}",
                f"    issuer: {ts.issuer}",
                f"    rootcertbundle: {ts.cert}",
            ]
        elif self.auth is not None:
            raise ValueError(f"unknown auth mode {self.auth!r}")
        return "\n".join(lines) + "\n"

    def start(self, *, timeout: float = 20.0) -> RegistryServer:
        reason = missing_tools_reason()
        if reason:
            raise Unsupported(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The registry reads REGISTRY_* variables as config overrides: keep ours out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        last_error = ""
        for _attempt in range(3):
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(self._config())
            with self.log_path.open("ab") as logf:
                self._proc = subprocess.Popen(
                    [REGISTRY_BIN, "serve", str(config)],
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError as exc:
                last_error = str(exc)
                self.stop()
        raise RuntimeError(f"registry did not start: {last_error}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                status = self._get_status("/v2/")
            except ssl.SSLError:
                if self.client_ca is not None:
                    return  # listening, and refusing us for having no client certificate
                time.sleep(0.05)
                continue
            except OSError:
                time.sleep(0.05)
                continue
            if status in (200, 401):
                return
            raise RuntimeError(f"GET /v2/ answered {status}: {self.log_tail()}")
        raise RuntimeError(f"no answer on {self.host} within {timeout}s: {self.log_tail()}")

    def _get_status(self, path: str) -> int:
        conn: http.client.HTTPConnection
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(LOOPBACK, self.port, timeout=2, context=ctx)
        else:
            conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()

    def count_requests(self, method: str, path: str) -> int:
        """How many ``method path`` requests the registry has answered (from its info log).

        distribution logs one ``response completed`` line (``... with error`` for
        failures) per request, with its method and URI, at level info.
        """
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        uri = f'http.request.uri="{path}"'
        verb = f"http.request.method={method} "
        return sum(
            1
            for line in text.splitlines()
            if 'msg="response completed' in line and uri in line and verb in line
        )

    def blob_path(self, digest: str) -> Path:
        """Where the registry's filesystem storage keeps a blob's bytes (to tamper with it)."""
        hex_ = digest.split(":", 1)[1]
        return (
            self.workdir / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256"
            / hex_[:2] / hex_ / "data"
        )  # fmt: skip

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        self.stop()
        if self.token_server is not None:
            self.token_server.stop()

    # skopeo helpers bound to this registry

    def docker_ref(self, repo: str, tag: str) -> str:
        return f"docker://{self.host}/{repo}:{tag}"


# --- OCI image layouts ---------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    diff_id: str = ""  # layers only: sha256 of the uncompressed tar

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def _tarinfo(
    name: str, kind: bytes, *, mode: int, size: int = 0, link: str = ""
) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = 1_600_000_000  # fixed: same bytes, same digests, every run
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def make_tar(
    files: Mapping[str, bytes] = {},  # noqa: B006 (read-only default)
    *,
    dirs: Sequence[str] = (),
    symlinks: Mapping[str, str] = {},  # noqa: B006
    modes: Mapping[str, int] = {},  # noqa: B006
) -> bytes:
    """A deterministic tar (PAX) of dirs, files and symlinks; paths relative, no leading '/'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            tar.addfile(_tarinfo(d, tarfile.DIRTYPE, mode=modes.get(d, 0o755)))
        for name, data in files.items():
            ti = _tarinfo(name, tarfile.REGTYPE, mode=modes.get(name, 0o644), size=len(data))
            tar.addfile(ti, io.BytesIO(data))
        for name, target in symlinks.items():
            tar.addfile(_tarinfo(name, tarfile.SYMTYPE, mode=0o777, link=target))
    return buf.getvalue()


def make_tar_entries(entries: Sequence[tuple[str, str, bytes | str]]) -> bytes:
    """A deterministic tar of entries written in the given order, names taken as they are.

    Each entry is ``(kind, name, payload)``: ``("file", name, data)``,
    ``("dir", name, "")``, ``("symlink", name, target)``, ``("hardlink", name,
    target)`` or ``("chardev", name, "major:minor")``. Unlike ``make_tar`` this
    can write hostile layers (``../`` names, links out of the root) and control
    order (a symlink before the entries that go through it).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, payload in entries:
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                ti = _tarinfo(name, tarfile.REGTYPE, mode=0o644, size=len(data))
                tar.addfile(ti, io.BytesIO(data))
            elif kind == "dir":
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, mode=0o755))
            elif kind in ("symlink", "hardlink"):
                link = payload if isinstance(payload, str) else payload.decode()
                kind_byte = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                tar.addfile(_tarinfo(name, kind_byte, mode=0o777, link=link))
            elif kind == "chardev":
                ti = _tarinfo(name, tarfile.CHRTYPE, mode=0o600)
                spec = payload if isinstance(payload, str) else payload.decode()
                major, minor = spec.split(":")
                ti.devmajor, ti.devminor = int(major), int(minor)
                tar.addfile(ti)
            else:
                raise ValueError(f"unknown tar entry kind {kind!r}")
    return buf.getvalue()


def compress_layer(tar: bytes, compression: str = "gzip") -> Blob:
    """A layer blob with its diff_id; compression is "gzip", "zstd" or "" (plain tar)."""
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    if compression == "gzip":
        return Blob(MT_OCI_LAYER_GZIP, gzip.compress(tar, compresslevel=6, mtime=0), diff_id)
    if compression == "zstd":
        import zstandard

        return Blob(MT_OCI_LAYER_ZSTD, zstandard.ZstdCompressor(level=3).compress(tar), diff_id)
    if compression == "":
        return Blob(MT_OCI_LAYER_TAR, tar, diff_id)
    raise ValueError(f"unknown compression {compression!r}")


def busybox_rootfs_tar() -> bytes:
    """A tiny runnable rootfs: /bin/busybox, applet symlinks, /etc/passwd and /etc/group."""
    return make_tar(
        {
            "bin/busybox": Path(BUSYBOX).read_bytes(),
            "etc/passwd": PASSWD.encode(),
            "etc/group": GROUP.encode(),
            "etc/hostname": b"pycrio-test\n",
        },
        dirs=["bin", "etc", "tmp", "root", "home", "home/testuser", "var", "dev", "proc", "sys"],
        symlinks={f"bin/{a}": "busybox" for a in BUSYBOX_APPLETS},
        modes={"bin/busybox": 0o755, "tmp": 0o1777, "root": 0o700},
    )


DEFAULT_CONFIG: Mapping[str, Any] = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Cmd": ["/bin/sh"],
    "WorkingDir": "/",
    "Labels": {"io.pycrio.test": "true"},
}


@dataclass(frozen=True)
class BuiltImage:
    """One single-platform image written to a layout: its blobs and manifest."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    architecture: str
    variant: str = ""

    @property
    def platform(self) -> dict[str, str]:
        p = {"os": "linux", "architecture": self.architecture}
        if self.variant:
            p["variant"] = self.variant
        return p


class OCILayout:
    """Writes an OCI image layout directory that ``skopeo copy oci:<dir>:<tag>`` reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self._index: list[dict[str, Any]] = []
        self._write_index()

    def add_blob(self, blob: Blob) -> Blob:
        p = self.path / "blobs" / "sha256" / blob.digest.split(":", 1)[1]
        if not p.exists():
            p.write_bytes(blob.data)
        return blob

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": self._index}
        (self.path / "index.json").write_text(json.dumps(index, indent=2))

    def tag(self, blob: Blob, tag: str, **extra: Any) -> None:
        annotations = {"org.opencontainers.image.ref.name": tag}
        self._index = [
            d
            for d in self._index
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
        ]
        self._index.append(blob.descriptor(annotations=annotations, **extra))
        self._write_index()

    def build_image(
        self,
        layers: Sequence[Blob],
        *,
        architecture: str = "amd64",
        variant: str = "",
        config: Mapping[str, Any] | None = None,
        tag: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> BuiltImage:
        """Write config + manifest for ``layers``; ``config`` overrides DEFAULT_CONFIG keys."""
        for layer in layers:
            self.add_blob(layer)
        cfg: dict[str, Any] = {
            "created": "2020-09-13T12:26:40Z",
            "architecture": architecture,
            "os": "linux",
            "config": {**DEFAULT_CONFIG, **(config or {})},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created": "2020-09-13T12:26:40Z", "created_by": f"pycrio tests: layer {i}"}
                for i in range(len(layers))
            ],
        }
        if variant:
            cfg["variant"] = variant
        config_blob = self.add_blob(Blob(MT_OCI_CONFIG, json.dumps(cfg, sort_keys=True).encode()))
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [layer.descriptor() for layer in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        manifest_blob = self.add_blob(
            Blob(MT_OCI_MANIFEST, json.dumps(manifest, indent=2).encode())
        )
        if tag:
            self.tag(manifest_blob, tag)
        return BuiltImage(manifest_blob, config_blob, tuple(layers), architecture, variant)

    def build_index(self, images: Sequence[BuiltImage], *, tag: str | None = None) -> Blob:
        """An OCI index over single-platform images (a multi-arch image)."""
        index = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [img.manifest.descriptor(platform=img.platform) for img in images],
        }
        blob = self.add_blob(Blob(MT_OCI_INDEX, json.dumps(index, indent=2).encode()))
        if tag:
            self.tag(blob, tag)
        return blob


# --- skopeo ---------------------------------------------------------------------


class Skopeo:
    """``skopeo`` isolated from the host's /etc/containers and the user's auth files."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.policy = workdir / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_conf = workdir / "registries.conf"
        self.registries_conf.write_text("")
        self.registries_d = workdir / "registries.d"
        self.registries_d.mkdir(exist_ok=True)
        (workdir / "tmp").mkdir(exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "TMPDIR": str(workdir / "tmp"),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "REGISTRY_AUTH_FILE": str(workdir / "no-auth.json"),
        }

    def _argv(self, *args: str) -> list[str]:
        return [
            "skopeo",
            "--policy",
            str(self.policy),
            "--registries.d",
            str(self.registries_d),
            *args,
        ]

    def copy(
        self,
        src: str,
        dest: str,
        *,
        creds: str | None = None,
        all_images: bool = False,
        format: str | None = None,
        tls_verify: bool = False,
        cert_dir: Path | None = None,
    ) -> None:
        args = ["copy", "--quiet", f"--dest-tls-verify={'true' if tls_verify else 'false'}"]
        if creds:
            args += ["--dest-creds", creds]
        if all_images:
            args.append("--all")
        if format:
            args += ["--format", format]
        if cert_dir is not None:
            args += ["--dest-cert-dir", str(cert_dir)]
        _run(self._argv(*args, src, dest), env=self.env)

    def inspect_raw(self, ref: str, *, creds: str | None = None) -> bytes:
        args = ["inspect", "--raw", "--tls-verify=false"]
        if creds:
            args += ["--creds", creds]
        return _run(self._argv(*args, ref), env=self.env)


# --- the standard set of test images -------------------------------------------


@dataclass(frozen=True)
class PushedImage:
    """An image as the registry holds it, with the facts tests assert on."""

    registry: str
    repo: str
    tag: str
    manifest: bytes
    media_type: str
    built: BuiltImage | None = None
    index_of: tuple[BuiltImage, ...] = ()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def name(self) -> str:
        """``host:port/repo:tag`` as a CRI ImageSpec.image names it."""
        return f"{self.registry}/{self.repo}:{self.tag}"

    @property
    def by_digest(self) -> str:
        return f"{self.registry}/{self.repo}@{self.digest}"

    @property
    def manifest_json(self) -> dict[str, Any]:
        return json.loads(self.manifest)


def push(
    skopeo: Skopeo,
    layout: OCILayout,
    layout_tag: str,
    registry: RegistryServer,
    repo: str,
    tag: str,
    *,
    built: BuiltImage | None = None,
    index_of: Sequence[BuiltImage] = (),
    format: str | None = None,
) -> PushedImage:
    """Push a tagged layout entry and read back the manifest bytes the registry serves."""
    creds = f"{registry.username}:{registry.password}" if registry.auth else None
    dest = registry.docker_ref(repo, tag)
    skopeo.copy(
        f"oci:{layout.path}:{layout_tag}",
        dest,
        creds=creds,
        all_images=bool(index_of),
        format=format,
    )
    raw = skopeo.inspect_raw(dest, creds=creds)
    media_type = json.loads(raw).get("mediaType", "")
    return PushedImage(
        registry=registry.host,
        repo=repo,
        tag=tag,
        manifest=raw,
        media_type=media_type,
        built=built,
        index_of=tuple(index_of),
    )


@dataclass(frozen=True)
class TestImages:
    """The standard images every registry-backed test can count on.

    - ``busybox``: OCI manifest, one gzip layer (busybox + applet symlinks).
    - ``multilayer``: OCI, three gzip layers (busybox, a file, a file overwritten).
    - ``zstd``: OCI, one zstd layer.
    - ``multiarch``: OCI index with linux/amd64 and linux/arm64/v8 (the arm64 one
      carries the same busybox bytes; it is never run).
    - ``docker``: the busybox image pushed as Docker schema 2 (``--format v2s2``).
    """

    __test__ = False  # not a pytest test class despite the name

    busybox: PushedImage
    multilayer: PushedImage
    zstd: PushedImage
    multiarch: PushedImage
    docker: PushedImage


def build_and_push_standard_images(
    workdir: Path, registry: RegistryServer, *, prefix: str = "pycrio-test"
) -> TestImages:
    """Build the standard images once and push them to ``registry`` under ``prefix/``."""
    skopeo = Skopeo(workdir / "skopeo")
    layout = OCILayout(workdir / "layout")
    rootfs = busybox_rootfs_tar()
    base = compress_layer(rootfs, "gzip")
    busybox = layout.build_image([base], tag="busybox")
    extra1 = compress_layer(
        make_tar({"etc/pycrio-test/layer": b"layer 2\n"}, dirs=["etc/pycrio-test"]), "gzip"
    )
    extra2 = compress_layer(make_tar({"etc/pycrio-test/layer": b"layer 3\n"}), "gzip")
    multilayer = layout.build_image(
        [base, extra1, extra2],
        tag="multilayer",
        config={
            "Entrypoint": ["/bin/cat"],
            "Cmd": ["/etc/pycrio-test/layer"],
            "User": "1000:1000",
            "WorkingDir": "/tmp",
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/data": {}},
            "StopSignal": "SIGUSR1",
        },
    )
    zstd = layout.build_image([compress_layer(rootfs, "zstd")], tag="zstd")
    arm64 = layout.build_image([base], architecture="arm64", variant="v8")
    index = layout.build_index([busybox, arm64], tag="multiarch")
    del index
    p = prefix
    return TestImages(
        busybox=push(skopeo, layout, "busybox", registry, f"{p}/busybox", "latest", built=busybox),
        multilayer=push(
            skopeo, layout, "multilayer", registry, f"{p}/multilayer", "v1", built=multilayer
        ),
        zstd=push(skopeo, layout, "zstd", registry, f"{p}/zstd", "latest", built=zstd),
        multiarch=push(
            skopeo,
            layout,
            "multiarch",
            registry,
            f"{p}/multiarch",
            "latest",
            index_of=(busybox, arm64),
        ),
        docker=push(
            skopeo,
            layout,
            "busybox",
            registry,
            f"{p}/docker-busybox",
            "latest",
            built=busybox,
            format="v2s2",
        ),
    )


@contextlib.contextmanager
def running_registry(workdir: Path, **kwargs: Any) -> Iterator[RegistryServer]:
    """A registry for the duration of a ``with`` block, for tests that need their own."""
    reg = RegistryServer(workdir, **kwargs)
    try:
        yield reg.start()
    finally:
        reg.stop_all()


class StallingRegistry:
    """A registry that stops sending in the middle of a layer, for timeout and crash tests.

    No distribution registry can be made to stall on purpose, so this small
    HTTP server on 127.0.0.1 speaks just enough of the distribution API for a
    pull of one image: ``/v2/``, the manifest (by tag or digest) and the config
    answer normally; a layer blob gets its headers (with the full
    Content-Length) and ``stall_after`` bytes, then nothing until ``release()``,
    after which the connection is closed short. ``stalled`` is set once the
    partial layer is out. Every request is recorded in ``requests``.
    """

    def __init__(
        self, built: BuiltImage, repo: str, tag: str, *, stall_after: int | None = None
    ) -> None:
        self.built = built
        self.repo = repo
        self.tag = tag
        self.stall_after = stall_after
        self.stalled = threading.Event()
        self._release = threading.Event()
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"{LOOPBACK}:{self._server.server_address[1]}"

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"

    def release(self) -> None:
        self._release.set()

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = urllib.parse.urlsplit(handler.path).path
        with self._lock:
            self.requests.append(f"{handler.command} {path}")
        manifest, config = self.built.manifest, self.built.config
        layers = {layer.digest: layer for layer in self.built.layers}
        base = f"/v2/{self.repo}/"
        body: bytes | None = None
        content_type = "application/json"
        if path == "/v2/":
            body = b"{}"
        elif path in (base + f"manifests/{self.tag}", base + f"manifests/{manifest.digest}"):
            body, content_type = manifest.data, manifest.media_type
        elif path == base + f"blobs/{config.digest}":
            body, content_type = config.data, "application/octet-stream"
        elif path.startswith(base + "blobs/") and path[len(base) + 6 :] in layers:
            layer = layers[path[len(base) + 6 :]]
            cut = layer.size // 2 if self.stall_after is None else self.stall_after
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("Content-Length", str(layer.size))
            handler.send_header("Docker-Content-Digest", layer.digest)
            handler.end_headers()
            handler.wfile.write(layer.data[:cut])
            handler.wfile.flush()
            self.stalled.set()
            self._release.wait(120)
            handler.close_connection = True
            return
        if body is None:
            body = json.dumps({"errors": [{"code": "NAME_UNKNOWN", "message": path}]}).encode()
            handler.send_response(404)
        else:
            handler.send_response(200)
            if "manifests/" in path:
                handler.send_header("Docker-Content-Digest", manifest.digest)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def start(self) -> StallingRegistry:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer._serve(self)

            def do_HEAD(self) -> None:  # noqa: N802
                outer._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
