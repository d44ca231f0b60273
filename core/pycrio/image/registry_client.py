"""Distribution-API v2 client: the I/O edge that fetches manifests and blobs.

One client talks to one registry (``host[:port]``) and owns one urllib3
PoolManager, so connections, the detected scheme and cached bearer tokens are
shared by every pull from that registry. The decisions (which challenge, which
manifest, what a digest means) are made in the sans-IO modules ``auth`` and
``manifest``; this module only moves bytes and turns HTTP outcomes into the
typed errors of ``pycrio.errors`` with messages that name the registry, the
image and what the registry answered.

Behaviour follows containers/image (what CRI-O uses) where it is observable:

- ``insecure=True`` tries HTTPS without certificate verification first and
  falls back to plain HTTP, so credentials go over TLS whenever the registry
  offers it.
- ``<certs_dir>/<host[:port]>/``: ``*.crt`` are extra CAs (on top of the system
  ones), ``*.cert`` + ``*.key`` a client certificate pair.
- Auth: ping ``/v2/``, then Bearer tokens from the challenge's realm (scope
  ``repository:<name>:pull``), Basic, ``registry_token`` sent as the bearer as
  is, and ``identity_token`` used as an OAuth2 refresh token.
- Redirects are followed; ``Authorization`` is dropped when one leaves the
  origin (blob storage behind a CDN must not see registry credentials).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import MaxRetryError, ReadTimeoutError

from pycrio.errors import (
    CRIError,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from pycrio.image import auth as _auth
from pycrio.image.manifest import (
    MANIFEST_ACCEPT,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    DigestMismatch,
    DigestVerifier,
    compute_digest,
    detect_media_type,
    parse_digest,
    verify_digest,
)

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "pycrio/0.1"
_REPO_RE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ERROR_BODY_LIMIT = 64 * 1024
_DEFAULT_CHUNK = 1024 * 1024
MAX_SIGNATURE_LIST_SIZE = 16 * 1024 * 1024


def _endpoint_for(registry: str) -> str:
    # Docker Hub's API lives on another host than its name.
    return "registry-1.docker.io" if registry in ("docker.io", "index.docker.io") else registry


def _describe_exc(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
    text = str(reason)
    # urllib3 prefixes messages with the connection object's repr; keep the cause.
    if ": " in text and text.startswith(("<urllib3", "HTTPConnection", "HTTPSConnection")):
        text = text.split(": ", 1)[1]
    return text


def registry_error_text(body: bytes) -> str:
    """The registry's ``{"errors": [{"code", "message"}]}`` as one line, or ''."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    errs = obj.get("errors") if isinstance(obj, dict) else None
    if not isinstance(errs, list):
        return ""
    parts = []
    for e in errs:
        if isinstance(e, dict):
            code = str(e.get("code", "")).strip()
            msg = str(e.get("message", "")).strip()
            parts.append(": ".join(p for p in (code, msg) if p))
    return "; ".join(p for p in parts if p)


def _error_codes(body: bytes) -> set[str]:
    try:
        obj = json.loads(body)
        return {str(e.get("code", "")) for e in obj.get("errors", []) if isinstance(e, dict)}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError):
        return set()


def find_cert_dir(registry: str, certs_dirs: Sequence[str | os.PathLike[str]]) -> Path | None:
    """First ``<certs_dir>/<registry>`` that exists, as containers/image picks it."""
    for base in certs_dirs:
        d = Path(base) / registry
        if d.is_dir():
            return d
    return None


def build_ssl_context(cert_dir: Path | None, *, verify: bool = True) -> ssl.SSLContext:
    """System CAs plus a registry's certs.d CAs and client certificate.

    A ``.cert`` without its ``.key`` (or the reverse) is an error rather than
    silently ignored, since the operator clearly meant to use it.
    """
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_dir is None:
        return ctx
    files = sorted(p for p in cert_dir.iterdir() if p.is_file())
    for f in files:
        if f.suffix == ".crt":
            try:
                ctx.load_verify_locations(cafile=str(f))
            except (ssl.SSLError, OSError) as exc:
                raise InvalidArgument(f"cannot load CA certificate {f}: {exc}") from exc
    pairs: list[tuple[Path, Path]] = []
    for f in files:
        if f.suffix == ".cert":
            key = f.with_suffix(".key")
            if not key.is_file():
                raise InvalidArgument(f"client certificate {f} has no matching key {key}")
            pairs.append((f, key))
        elif f.suffix == ".key" and not f.with_suffix(".cert").is_file():
            raise InvalidArgument(
                f"client key {f} has no matching certificate {f.with_suffix('.cert')}"
            )
    if pairs:
        # An SSLContext holds one client certificate; the first (sorted) pair is used.
        cert, key = pairs[0]
        try:
            ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (ssl.SSLError, OSError) as exc:
            raise InvalidArgument(f"cannot load client certificate {cert}: {exc}") from exc
    return ctx


class _Answer:
    """A fully read (small) response: status, headers and at most a bounded body."""

    def __init__(self, status: int, reason: str, headers: Any, data: bytes) -> None:
        self.status = status
        self.reason = reason or ""
        self.headers = headers
        self.data = data


def _slurp(resp: Any, limit: int) -> _Answer:
    try:
        data = resp.read(limit)
    finally:
        resp.release_conn()
    return _Answer(resp.status, resp.reason, resp.headers, data or b"")


#: An unread body is drained, to reuse its connection, only when it declares
#: at most this many bytes; a longer one, or one without a length (it may
#: never end: a hostile registry), closes the connection instead.
_DRAIN_LIMIT = 64 * 1024


def _discard(resp: Any) -> None:
    """Be done with a response whose body is not (fully) read, without reading forever."""
    cl = resp.headers.get("Content-Length")
    if cl is not None and cl.isdigit() and int(cl) <= _DRAIN_LIMIT:
        try:
            resp.drain_conn()
            resp.release_conn()
            return
        except (Urllib3Error, OSError):
            log.debug("discarding a connection to a registry: reading the rest failed")
    resp.close()  # closes the socket; the pool opens a new connection when needed
    resp.release_conn()


class BlobStream(io.RawIOBase):
    """A blob as a readable stream, hashed as it is read.

    Reaching the end checks the size and digest and raises DigestMismatch on
    a difference, so a consumer that copies it to disk never commits
    unverified bytes without being told. Network errors while reading surface
    as Unavailable.
    """

    def __init__(
        self,
        response: Any,
        digest: str,
        *,
        what: str,
        registry: str,
        expected_size: int | None = None,
        stall_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self._resp = response
        self._stall_timeout = stall_timeout
        self.digest = digest
        self.what = what
        self._registry = registry
        self._verifier = DigestVerifier(digest, what=what)
        cl = response.headers.get("Content-Length")
        self.content_length: int | None = int(cl) if cl and cl.isdigit() else None
        self.expected_size = expected_size
        self.media_type = response.headers.get("Content-Type", "")
        self._done = False

    @property
    def size(self) -> int | None:
        """Best known size: the descriptor's, else the server's Content-Length."""
        return self.expected_size if self.expected_size is not None else self.content_length

    @property
    def bytes_read(self) -> int:
        return self._verifier.size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes as urllib3 returns them.

        Overridden because RawIOBase.read goes through readinto, which copies
        every chunk twice more: on a layer download that is most of the
        Python-side cost.
        """
        if size is None or size < 0:
            return self.readall()
        if self._done or size == 0:
            return b""
        try:
            data = self._resp.read(size)
        except ReadTimeoutError as exc:
            # The read timeout is per socket read: only a registry that sends
            # nothing at all for that long ends here, a slow one does not.
            limit = f" for {self._stall_timeout:g}s" if self._stall_timeout else ""
            raise DeadlineExceeded(
                f"registry {self._registry}: downloading {self.what} stalled, no data{limit}; "
                "the pull was aborted"
            ) from exc
        except (Urllib3Error, OSError) as exc:
            raise Unavailable(
                f"registry {self._registry}: reading {self.what} failed after "
                f"{self._verifier.size} bytes: {_describe_exc(exc)}"
            ) from exc
        if not data:
            self._finish()
            return b""
        self._verifier.update(data)
        if self.expected_size is not None and self._verifier.size > self.expected_size:
            raise DigestMismatch(
                f"{self.what}: registry {self._registry} sent more than the "
                f"{self.expected_size} bytes the manifest declares"
            )
        return data

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(_DEFAULT_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def _finish(self) -> None:
        self._done = True
        got = self._verifier.size
        if self.expected_size is not None and got != self.expected_size:
            raise DigestMismatch(
                f"{self.what}: registry {self._registry} sent {got} bytes, "
                f"the manifest declares {self.expected_size}"
            )
        self._verifier.verify()

    def iter_chunks(self, chunk_size: int = _DEFAULT_CHUNK) -> Iterator[bytes]:
        """Chunks of at most ``chunk_size`` bytes; verification happens at the end."""
        while True:
            chunk = self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        if not self.closed:
            if self._done:
                self._resp.release_conn()
                self._resp.close()
            else:
                _discard(self._resp)
        super().close()


class RegistryClient:
    """Pull-side client for one registry; thread-safe, reuse it for every pull."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: _auth.Credentials | None = None,
        insecure: bool = False,
        certs_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        user_agent: str = DEFAULT_USER_AGENT,
        max_redirects: int = 5,
        connect_retries: int = 2,
    ) -> None:
        if not registry or "/" in registry or "@" in registry:
            raise InvalidArgument(f"invalid registry host {registry!r}: expected host[:port]")
        self.registry = registry
        self.endpoint = _endpoint_for(registry)
        self.insecure = insecure
        self._creds = credentials
        self._user_agent = user_agent
        self._max_redirects = max_redirects
        if certs_dir is None:
            dirs: list[str | os.PathLike[str]] = []
        elif isinstance(certs_dir, str | os.PathLike):
            dirs = [certs_dir]
        else:
            dirs = list(certs_dir)
        self._ssl_context = build_ssl_context(find_cert_dir(registry, dirs), verify=not insecure)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=timeout)
        self._retries = urllib3.Retry(
            total=connect_retries,
            connect=connect_retries,
            read=0,
            status=0,
            other=0,
            redirect=False,
            backoff_factor=0.1,
            raise_on_status=False,
        )
        pool_kw: dict[str, Any] = {"ssl_context": self._ssl_context, "maxsize": 8}
        if insecure:
            pool_kw.update(cert_reqs="CERT_NONE", assert_hostname=False)
        self._pool = urllib3.PoolManager(**pool_kw)
        self._lock = threading.Lock()
        self._scheme: str | None = None
        # Set by ping: the registry serves GPG signatures through the
        # /extensions/v2/<repo>/signatures/<digest> API (X-Registry-Supports-Signatures: 1).
        self.supports_signatures = False
        self._challenges: list[_auth.Challenge] = []
        self._tokens: dict[frozenset[str], _auth.BearerToken] = {}

    # --- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RegistryClient(registry={self.registry!r}, insecure={self.insecure}, "
            f"credentials={self._creds!r})"
        )

    # --- public API ----------------------------------------------------------

    def ping(self) -> str:
        """Find the scheme and auth challenges (once); returns the base URL."""
        with self._lock:
            if self._scheme is not None:
                return self._base_url()
            schemes = ["https", "http"] if self.insecure else ["https"]
            failures: list[str] = []
            for scheme in schemes:
                url = f"{scheme}://{self.endpoint}/v2/"
                try:
                    resp = self._raw("GET", url, {}, preload=True)
                except (Unavailable, DeadlineExceeded) as exc:
                    failures.append(f"{scheme}: {exc.message}")
                    continue
                if resp.status in (200, 401):
                    self._scheme = scheme
                    self.supports_signatures = (
                        resp.headers.get("X-Registry-Supports-Signatures", "").strip() == "1"
                    )
                    if resp.status == 401:
                        self._challenges = self._challenges_of(resp)
                    log.debug("registry %s speaks %s", self.registry, scheme)
                    return self._base_url()
                failures.append(
                    f"{scheme}: GET /v2/ answered {resp.status} {resp.reason}, "
                    "which a distribution registry never does"
                )
            raise Unavailable(
                f"cannot reach registry {self.registry}: "
                + "; ".join(failures)
                + ("" if self.insecure else " (is it an HTTP-only registry that needs insecure?)")
            )

    def get_manifest(
        self, repo: str, reference: str, accept: Sequence[str] = MANIFEST_ACCEPT
    ) -> tuple[bytes, str, str]:
        """Fetch a manifest by tag or digest: ``(body, media_type, digest)``.

        By digest, the body must hash to it. By tag, the digest returned is
        computed from the body, never taken from the registry's header.
        """
        self._check_repo(repo)
        by_digest = ":" in reference
        if by_digest:
            parse_digest(reference)
        elif not _TAG_RE.match(reference):
            raise InvalidArgument(f"invalid tag {reference!r} for {self.registry}/{repo}")
        image = f"{self.registry}/{repo}{'@' if by_digest else ':'}{reference}"
        resp = self._get(
            f"/v2/{repo}/manifests/{reference}",
            {"Accept": ", ".join(accept)},
            repo=repo,
            image=image,
            what="manifest",
        )
        try:
            body = self._read_limited(resp, MAX_MANIFEST_SIZE, f"manifest of {image}")
        finally:
            resp.release_conn()
        if by_digest:
            verify_digest(body, reference, what=f"manifest of {image} from {self.registry}")
            digest = reference
        else:
            digest = compute_digest(body)
        try:
            media_type = detect_media_type(body, resp.headers.get("Content-Type"))
        except InvalidArgument as exc:
            raise InvalidArgument(f"manifest of {image}: {exc.message}") from exc
        return body, media_type, digest

    def open_blob(self, repo: str, digest: str, *, expected_size: int | None = None) -> BlobStream:
        """Stream a blob; read it to the end (or close it) to release the connection."""
        self._check_repo(repo)
        parse_digest(digest)
        image = f"{self.registry}/{repo}@{digest}"
        resp = self._get(f"/v2/{repo}/blobs/{digest}", {}, repo=repo, image=image, what="blob")
        stream = BlobStream(
            resp,
            digest,
            what=f"blob {digest} of {self.registry}/{repo}",
            registry=self.registry,
            expected_size=expected_size,
            stall_timeout=self._timeout.read_timeout,
        )
        if (
            expected_size is not None
            and stream.content_length is not None
            and stream.content_length != expected_size
        ):
            stream.close()
            raise DigestMismatch(
                f"blob {digest} of {self.registry}/{repo}: registry announces "
                f"{stream.content_length} bytes, the manifest declares {expected_size}"
            )
        return stream

    def get_blob_bytes(self, repo: str, digest: str, *, max_size: int = MAX_CONFIG_SIZE) -> bytes:
        """A small blob (an image config) in memory, verified, refused above ``max_size``."""
        with self.open_blob(repo, digest) as stream:
            if stream.content_length is not None and stream.content_length > max_size:
                raise InvalidArgument(
                    f"blob {digest} of {self.registry}/{repo} is {stream.content_length} bytes, "
                    f"more than {max_size} allowed here"
                )
            data = stream.read(max_size + 1)
            if len(data) > max_size:
                raise InvalidArgument(
                    f"blob {digest} of {self.registry}/{repo} is larger than {max_size} bytes"
                )
            # Hit EOF to trigger verification when the blob fits exactly.
            if stream.read(1):
                raise InvalidArgument(f"blob {digest} of {self.registry}/{repo} is too large")
            return data

    def get_extension_signatures(self, repo: str, digest: str) -> bytes:
        """The body of GET /extensions/v2/<repo>/signatures/<digest> (JSON, bounded).

        Only meaningful when ``supports_signatures`` (after ``ping``).
        """
        self._check_repo(repo)
        parse_digest(digest)
        image = f"{self.registry}/{repo}@{digest}"
        resp = self._get(
            f"/extensions/v2/{repo}/signatures/{digest}",
            {"Accept": "application/json"},
            repo=repo,
            image=image,
            what="signatures",
        )
        try:
            return self._read_limited(resp, MAX_SIGNATURE_LIST_SIZE, f"signatures of {image}")
        finally:
            resp.release_conn()

    # --- internals -----------------------------------------------------------

    def _base_url(self) -> str:
        return f"{self._scheme}://{self.endpoint}"

    def _check_repo(self, repo: str) -> None:
        if not _REPO_RE.match(repo):
            raise InvalidArgument(f"invalid repository name {repo!r} for registry {self.registry}")

    def _raw(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        body: bytes | None = None,
        preload: bool = False,
    ) -> Any:
        """One request, following redirects by hand so credentials never leave the origin."""
        origin = urllib.parse.urlsplit(url)[:2]
        hdrs = {"User-Agent": self._user_agent, **headers}
        for _ in range(self._max_redirects + 1):
            try:
                resp = self._pool.request(
                    method,
                    url,
                    headers=hdrs,
                    body=body,
                    preload_content=False,
                    decode_content=False,
                    redirect=False,
                    retries=self._retries,
                    timeout=self._timeout,
                )
            except (Urllib3Error, OSError) as exc:
                host = urllib.parse.urlsplit(url).netloc
                where = self.registry if host == self.endpoint else f"{host} (for {self.registry})"
                reason = exc.reason if isinstance(exc, MaxRetryError) else exc
                if isinstance(reason, ReadTimeoutError):
                    raise DeadlineExceeded(
                        f"registry {where} did not answer {method} "
                        f"{urllib.parse.urlsplit(url).path} within "
                        f"{self._timeout.read_timeout:g}s"
                    ) from exc
                raise Unavailable(f"cannot reach registry {where}: {_describe_exc(exc)}") from exc
            location = resp.headers.get("Location")
            if resp.status in _REDIRECT_STATUSES and location:
                _discard(resp)
                url = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(url)[:2] != origin:
                    hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
                if resp.status == 303:
                    method, body = "GET", None
                continue
            if preload:
                try:
                    return _slurp(
                        resp, _ERROR_BODY_LIMIT if resp.status >= 300 else MAX_CONFIG_SIZE
                    )
                except (Urllib3Error, OSError) as exc:
                    raise Unavailable(
                        f"registry {self.registry}: reading the answer failed: {_describe_exc(exc)}"
                    ) from exc
            return resp
        raise Unavailable(
            f"registry {self.registry}: more than {self._max_redirects} redirects "
            f"for {method} {url}"
        )

    @staticmethod
    def _challenges_of(resp: Any) -> list[_auth.Challenge]:
        values = resp.headers.getlist("WWW-Authenticate")
        try:
            return _auth.parse_www_authenticate(values)
        except InvalidArgument as exc:
            log.warning("ignoring malformed WWW-Authenticate header: %s", exc.message)
            return []

    def _authorization(self, scopes: frozenset[str], *, refresh: bool) -> str | None:
        creds = self._creds
        if creds is not None and creds.registry_token:
            return "Bearer " + creds.registry_token
        with self._lock:
            challenges = list(self._challenges)
        bearer = _auth.find_challenge(challenges, "bearer")
        if bearer is not None:
            return "Bearer " + self._token(bearer, scopes, refresh=refresh).token
        basic = _auth.find_challenge(challenges, "basic")
        if basic is not None and creds is not None and creds.has_basic:
            return creds.basic_header()
        return None

    def _token(
        self, challenge: _auth.Challenge, scopes: frozenset[str], *, refresh: bool
    ) -> _auth.BearerToken:
        with self._lock:
            cached = self._tokens.get(scopes)
        if cached is not None and not refresh and cached.valid():
            return cached
        creds = self._creds
        ordered = sorted(scopes)
        realm_host = urllib.parse.urlsplit(challenge.realm).netloc or challenge.realm
        if creds is not None and creds.identity_token:
            form = _auth.refresh_token_form(challenge, ordered, creds.identity_token)
            data = urllib.parse.urlencode(form).encode()
            resp = self._raw(
                "POST",
                challenge.realm,
                {"Content-Type": "application/x-www-form-urlencoded"},
                body=data,
                preload=True,
            )
        else:
            url = _auth.token_request_url(
                challenge, ordered, account=creds.username if creds is not None else ""
            )
            headers = {}
            if creds is not None and creds.has_basic:
                headers["Authorization"] = creds.basic_header()
            resp = self._raw("GET", url, headers, preload=True)
        if resp.status != 200:
            detail = self._answer_text(resp)
            scope_text = " ".join(ordered)
            msg = (
                f"token service {realm_host} of registry {self.registry} refused a token "
                f"for {scope_text!r}: {detail}"
            )
            if resp.status in (401, 403):
                raise Unauthenticated(msg + " (check the pull credentials)")
            if resp.status == 429:
                raise ResourceExhausted(msg)
            raise Unavailable(msg)
        try:
            token = _auth.parse_token_response(resp.data)
        except InvalidArgument as exc:
            raise Unavailable(
                f"token service {realm_host} of registry {self.registry}: {exc.message}"
            ) from exc
        with self._lock:
            self._tokens[scopes] = token
        return token

    @staticmethod
    def _answer_text(resp: Any) -> str:
        body = resp.data or b""
        detail = registry_error_text(body)
        text = f"{resp.status} {resp.reason}".strip()
        return f"{text} ({detail})" if detail else text

    def _get(self, path: str, headers: dict[str, str], *, repo: str, image: str, what: str) -> Any:
        """GET with auth; retried once after a 401 with fresh credentials."""
        base = self.ping()
        scopes = frozenset({_auth.pull_scope(repo)})
        sent_auth = self._creds is not None and not self._creds.is_empty
        for attempt in range(2):
            hdrs = dict(headers)
            authz = self._authorization(scopes, refresh=attempt > 0)
            if authz is not None:
                hdrs["Authorization"] = authz
            raw = self._raw("GET", base + path, hdrs)
            if raw.status == 200:
                return raw
            try:
                resp = _slurp(raw, _ERROR_BODY_LIMIT)
            except (Urllib3Error, OSError):
                log.debug("could not read the error body from %s", self.registry)
                resp = _Answer(raw.status, raw.reason, raw.headers, b"")
            if resp.status == 401 and attempt == 0:
                fresh = self._challenges_of(resp)
                if fresh:
                    with self._lock:
                        self._challenges = fresh
                    can_answer = _auth.find_challenge(fresh, "bearer") is not None or (
                        self._creds is not None and self._creds.has_basic
                    )
                    if can_answer and not (self._creds is not None and self._creds.registry_token):
                        continue
            self._raise_for(resp, image=image, what=what, sent_auth=sent_auth)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for(self, resp: Any, *, image: str, what: str, sent_auth: bool) -> None:
        body = resp.data or b""
        codes = _error_codes(body)
        answer = self._answer_text(resp)
        status = resp.status
        prefix = f"registry {self.registry} answered {answer}"
        exc: CRIError
        if status == 404 or codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"}:
            exc = NotFound(f"{what} of image {image} not found: {prefix}")
        elif status == 401 or "UNAUTHORIZED" in codes:
            hint = (
                "the credentials were rejected (or the repository does not exist)"
                if sent_auth
                else "the registry needs credentials and none were given"
            )
            exc = Unauthenticated(f"pulling {what} of image {image}: {prefix}; {hint}")
        elif status == 403 or "DENIED" in codes:
            exc = PermissionDenied(f"pulling {what} of image {image}: {prefix}")
        elif status == 429 or "TOOMANYREQUESTS" in codes:
            exc = ResourceExhausted(f"pulling {what} of image {image}: {prefix} (rate limited)")
        elif status >= 500:
            exc = Unavailable(f"pulling {what} of image {image}: {prefix}")
        elif status == 406:
            exc = InvalidArgument(
                f"pulling {what} of image {image}: {prefix}; the registry has no manifest in "
                "a format pycrio accepts (OCI or Docker schema 2)"
            )
        elif status == 405 or "UNSUPPORTED" in codes:
            exc = Unimplemented(f"pulling {what} of image {image}: {prefix}")
        elif status == 400:
            exc = InvalidArgument(f"pulling {what} of image {image}: {prefix}")
        else:
            exc = Unavailable(f"pulling {what} of image {image}: {prefix} (unexpected answer)")
        raise exc

    @staticmethod
    def _read_limited(resp: Any, limit: int, what: str) -> bytes:
        try:
            data = resp.read(limit + 1)
        except (Urllib3Error, OSError) as exc:
            raise Unavailable(f"reading {what} failed: {_describe_exc(exc)}") from exc
        if len(data) > limit:
            raise InvalidArgument(f"{what} is larger than {limit} bytes: refused")
        return data
