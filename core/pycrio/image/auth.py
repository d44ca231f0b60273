"""Sans-IO registry authentication: challenges, token exchange, auth files.

The registry client does the HTTP; everything that decides *what* to send is
here so it is tested on bytes. Formats:

- ``WWW-Authenticate`` (RFC 7235) as registries send it: ``Bearer realm="...",
  service="...",scope="..."`` (the Docker token-auth spec) or ``Basic realm=...``.
- Token responses (Docker token spec and its OAuth2 variant): ``token`` or
  ``access_token``, ``expires_in``, ``issued_at``, ``refresh_token``.
- containers-auth.json(5) / Docker ``config.json``: an ``auths`` map keyed by
  ``registry[/namespace...]`` with ``auth`` (base64 ``user:password``) and
  ``identitytoken``.

Secrets never appear in a repr or an exception message: a pull error is logged
and shown to operators through ``crictl``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrio.errors import InvalidArgument

# --- credentials -------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What a puller can present to a registry.

    ``identity_token`` is an OAuth2 refresh token (``docker login`` to some
    registries stores one); ``registry_token`` is a bearer token to send as is
    (the CRI's ``AuthConfig.registry_token``).
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        parts = [f"username={self.username!r}"]
        for name in ("password", "identity_token", "registry_token"):
            if getattr(self, name):
                parts.append(f"{name}=<redacted>")
        return f"Credentials({', '.join(parts)})"

    __str__ = __repr__

    @property
    def has_basic(self) -> bool:
        return bool(self.username or self.password)

    @property
    def is_empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def basic_header(self) -> str:
        """``Authorization`` value for Basic auth."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def decode_auth_field(value: str, *, where: str = "auth") -> tuple[str, str]:
    """Decode ``base64(user:password)``; the password may itself contain colons."""
    try:
        text = value.strip()
        text += "=" * (-len(text) % 4)  # some tools write it without padding
        raw = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII input, bad UTF-8
        raise InvalidArgument(f"{where}: 'auth' is not base64 of 'user:password'") from exc
    user, sep, password = raw.partition(":")
    if not sep:
        raise InvalidArgument(f"{where}: 'auth' does not decode to 'user:password'")
    check_username(user, f"{where}: the user name in 'auth'")
    return user, password


def _is_token_char(c: str) -> bool:
    return "\x21" <= c <= "\x7e"


def check_token(value: str, what: str) -> None:
    """A token sent verbatim after ``Bearer``: visible ASCII only (RFC 6750 b64token, leniently).

    Anything else (a newline, a space, ``é``) cannot go into an HTTP header:
    sent, it would split or corrupt the request, so it is refused up front.
    """
    bad = next((c for c in value if not _is_token_char(c)), None)
    if bad is not None:
        # The class of character only: the value is a secret, not even one
        # character of it goes to a log or to crictl.
        kind = "a space" if bad == " " else "a non-ASCII" if bad > "\x7f" else "a control"
        raise InvalidArgument(
            f"{what} may hold only visible ASCII characters (it is sent in an HTTP "
            f"header); it contains {kind} character"
        )


def check_username(value: str, what: str) -> None:
    """A Basic-auth user name: no control characters and no ':' (RFC 7617 section 2).

    Non-ASCII is fine: user and password are sent UTF-8 and base64-encoded.
    """
    for i, c in enumerate(value):
        if c == ":" or ord(c) < 0x20 or ord(c) == 0x7F:
            raise InvalidArgument(f"{what} may not contain {c!r} (offset {i})")


def credentials_from_cri(
    *,
    username: str = "",
    password: str = "",
    auth: str = "",
    identity_token: str = "",
    registry_token: str = "",
) -> Credentials | None:
    """Credentials from a CRI ``AuthConfig`` (kubelet pull secrets); None if it is empty.

    As in CRI-O, an explicit ``auth`` field takes precedence over username/password.
    Every field is checked here, before anything is sent: a value that cannot
    travel in an HTTP header is INVALID_ARGUMENT naming the field.
    """
    if auth:
        username, password = decode_auth_field(auth, where="AuthConfig.auth")
    else:
        check_username(username, "AuthConfig.username")
    check_token(registry_token, "AuthConfig.registry_token")
    check_token(identity_token, "AuthConfig.identity_token")
    creds = Credentials(username, password, identity_token, registry_token)
    return None if creds.is_empty else creds


# --- WWW-Authenticate --------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One auth-scheme with its parameters (names lower-cased, values verbatim)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str = ""

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        return self.params.get("scope", "")

    @property
    def error(self) -> str:
        return self.params.get("error", "")


_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_EXTRA = frozenset("-._~+/")


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def skip_ws_commas(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t,":
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def token(self) -> str:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in _TCHARS:
            self.i += 1
        return self.s[start : self.i]

    def token68(self) -> str:
        start = self.i
        while self.i < len(self.s) and (
            self.s[self.i].isalnum() or self.s[self.i] in _TOKEN68_EXTRA
        ):
            self.i += 1
        while self.i < len(self.s) and self.s[self.i] == "=":
            self.i += 1
        return self.s[start : self.i]

    def quoted(self) -> str:
        assert self.s[self.i] == '"'
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if c == '"':
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        raise InvalidArgument(f"unterminated quoted string in WWW-Authenticate: {self.s!r}")


def parse_www_authenticate(headers: str | Iterable[str]) -> list[Challenge]:
    """Parse one or more ``WWW-Authenticate`` header values into challenges.

    Handles several challenges in one header (``Bearer a="b", Basic realm="c"``)
    and commas inside quoted strings (``scope="repository:a:pull,push"``).
    Unparseable input raises InvalidArgument naming the header.
    """
    values = [headers] if isinstance(headers, str) else list(headers)
    out: list[Challenge] = []
    for value in values:
        out.extend(_parse_one_header(value))
    return out


def _parse_one_header(value: str) -> list[Challenge]:
    lx = _Lexer(value)
    challenges: list[Challenge] = []
    lx.skip_ws_commas()
    while lx.peek():
        scheme = lx.token()
        if not scheme:
            raise InvalidArgument(f"malformed WWW-Authenticate header: {value!r}")
        params: dict[str, str] = {}
        token68 = ""
        lx.skip_ws()
        # After the scheme: token68, or a comma-separated list of name=value.
        while lx.peek() and lx.peek() != ",":
            save = lx.i
            name = lx.token()
            lx.skip_ws()
            if name and lx.peek() == "=":
                # name=value, unless it is a token68 ending in '=' padding.
                lx.i += 1
                lx.skip_ws()
                if lx.peek() == '"':
                    params[name.lower()] = lx.quoted()
                elif lx.peek() and lx.peek() in _TCHARS:
                    params[name.lower()] = lx.token()
                elif not params:
                    lx.i = save
                    token68 = lx.token68()
                else:
                    raise InvalidArgument(f"malformed WWW-Authenticate header: {value!r}")
            elif not params and not token68:
                lx.i = save
                token68 = lx.token68()
                if not token68:
                    raise InvalidArgument(f"malformed WWW-Authenticate header: {value!r}")
            else:
                # A bare token after params: the start of the next challenge.
                lx.i = save
                break
            lx.skip_ws()
            if lx.peek() == ",":
                # Either the next param or the next challenge: look ahead.
                j = lx.i
                lx.i += 1
                lx.skip_ws_commas()
                look = lx.i
                nxt = lx.token()
                lx.skip_ws()
                is_param = bool(nxt) and lx.peek() == "="
                lx.i = look
                if not is_param:
                    lx.i = j
                    break
        challenges.append(Challenge(scheme=scheme, params=params, token68=token68))
        lx.skip_ws_commas()
    return challenges


def find_challenge(challenges: Iterable[Challenge], scheme: str) -> Challenge | None:
    """First challenge of a scheme (schemes are case-insensitive)."""
    for c in challenges:
        if c.scheme.lower() == scheme.lower():
            return c
    return None


# --- token exchange ----------------------------------------------------------


def pull_scope(repository: str) -> str:
    """The token-auth scope for pulling from one repository."""
    return f"repository:{repository}:pull"


def token_request_url(challenge: Challenge, scopes: Iterable[str], *, account: str = "") -> str:
    """GET URL for a token from a Bearer challenge (Docker token-auth spec).

    Scopes are separate ``scope=`` parameters, never joined, as the spec says.
    """
    realm = challenge.realm
    if not realm:
        raise InvalidArgument("Bearer challenge has no realm: cannot ask for a token")
    parsed = urllib.parse.urlsplit(realm)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidArgument(f"Bearer challenge realm {realm!r} is not an http(s) URL")
    query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    if challenge.service:
        query.append(("service", challenge.service))
    for scope in scopes:
        if scope:
            query.append(("scope", scope))
    if account:
        query.append(("account", account))
    return urllib.parse.urlunsplit(parsed._replace(query=urllib.parse.urlencode(query)))


def refresh_token_form(
    challenge: Challenge, scopes: Iterable[str], refresh_token: str, *, client_id: str = "pycrio"
) -> dict[str, str]:
    """Form fields for the OAuth2 ``grant_type=refresh_token`` POST to the realm."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client_id,
        "service": challenge.service,
    }
    scope = " ".join(s for s in scopes if s)
    if scope:
        form["scope"] = scope
    return form


#: The token spec: a token without ``expires_in`` lives 60 seconds, and none less.
MIN_TOKEN_LIFETIME = 60


@dataclass(frozen=True)
class BearerToken:
    token: str = field(repr=False)
    expires_at: float
    refresh_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"BearerToken(token=<redacted>, expires_at={self.expires_at:.0f})"

    def valid(self, now: float | None = None, *, margin: float = 5.0) -> bool:
        """Still usable, with a margin so a token does not expire mid-request."""
        return (time.time() if now is None else now) + margin < self.expires_at


def parse_token_response(data: bytes, *, now: float | None = None) -> BearerToken:
    """Parse a token-server answer; ``token`` and ``access_token`` are both accepted."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"token server answer is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidArgument("token server answer is not a JSON object")
    token = obj.get("token") or obj.get("access_token")
    if not isinstance(token, str) or not token:
        raise InvalidArgument("token server answer has neither 'token' nor 'access_token'")
    check_token(token, "the token server's token")
    expires_in = obj.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = MIN_TOKEN_LIFETIME
    expires_in = max(int(expires_in), MIN_TOKEN_LIFETIME)
    issued = time.time() if now is None else now
    refresh = obj.get("refresh_token")
    return BearerToken(
        token=token,
        expires_at=issued + expires_in,
        refresh_token=refresh if isinstance(refresh, str) else "",
    )


# --- auth.json -----------------------------------------------------------------


def _normalize_auth_key(key: str) -> str:
    # Legacy Docker keys are URLs ("https://index.docker.io/v1/"): only the host counts.
    stripped = key
    had_scheme = False
    for prefix in ("https://", "http://"):
        if stripped.startswith(prefix):
            stripped = stripped[len(prefix) :]
            had_scheme = True
            break
    if had_scheme:
        stripped = stripped.split("/", 1)[0]
    stripped = stripped.rstrip("/")
    host, sep, rest = stripped.partition("/")
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = "docker.io"
    return host + sep + rest


def _normalize_registry(host: str) -> str:
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


@dataclass(frozen=True)
class AuthFile:
    """A parsed auth.json: normalized key -> credentials."""

    entries: Mapping[str, Credentials]
    path: str = ""

    def __repr__(self) -> str:
        return f"AuthFile(path={self.path!r}, keys={sorted(self.entries)!r})"

    def lookup(self, registry: str, repository: str = "") -> Credentials | None:
        """Most specific key first: ``reg/ns/repo``, ``reg/ns``, then ``reg``.

        ``repository`` is the path inside the registry (``library/busybox``).
        """
        host = _normalize_registry(registry)
        parts = [p for p in repository.split("/") if p] if repository else []
        for n in range(len(parts), -1, -1):
            key = "/".join([host, *parts[:n]])
            creds = self.entries.get(key)
            if creds is not None:
                return creds
        return None


def parse_auth_file(data: bytes, *, path: str = "auth.json") -> AuthFile:
    """Parse containers-auth.json / Docker config.json content.

    Entries with neither ``auth`` nor ``identitytoken`` are skipped (Docker
    writes such entries for registries handled by a credential helper, which
    pycrio does not run).
    """
    try:
        obj = json.loads(data) if data.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{path}: must be a JSON object")
    auths: Any = obj.get("auths", {})
    if auths is None:
        auths = {}
    if not isinstance(auths, dict):
        raise InvalidArgument(f"{path}: 'auths' must be an object")
    entries: dict[str, Credentials] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{path}: auths[{key!r}] must be an object")
        auth = entry.get("auth") or ""
        identity = entry.get("identitytoken") or ""
        if not isinstance(auth, str) or not isinstance(identity, str):
            raise InvalidArgument(f"{path}: auths[{key!r}] fields must be strings")
        if not auth and not identity:
            continue
        user = password = ""
        if auth:
            user, password = decode_auth_field(auth, where=f"{path}: auths[{key!r}]")
        entries[_normalize_auth_key(key)] = Credentials(
            username=user, password=password, identity_token=identity
        )
    return AuthFile(entries=entries, path=path)


def load_auth_file(path: str | os.PathLike[str]) -> AuthFile:
    """Read an auth file; a missing file is an empty one (as in containers/image)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return AuthFile(entries={}, path=str(p))
    return parse_auth_file(data, path=str(p))


def default_auth_file_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where containers-auth.json(5) says to look, in order, for a daemon run as root."""
    e = os.environ if env is None else env
    if e.get("REGISTRY_AUTH_FILE"):
        return [Path(e["REGISTRY_AUTH_FILE"])]
    paths: list[Path] = []
    if e.get("XDG_RUNTIME_DIR"):
        paths.append(Path(e["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    else:
        paths.append(Path(f"/run/containers/{os.getuid()}/auth.json"))
    if e.get("HOME"):
        paths.append(Path(e["HOME"]) / ".config" / "containers" / "auth.json")
        paths.append(Path(e["HOME"]) / ".docker" / "config.json")
    return paths


def lookup_credentials(
    registry: str, repository: str, auth_files: Iterable[str | os.PathLike[str]]
) -> Credentials | None:
    """First match across files (in order), most specific key first within each."""
    for path in auth_files:
        creds = load_auth_file(path).lookup(registry, repository)
        if creds is not None:
            return creds
    return None
