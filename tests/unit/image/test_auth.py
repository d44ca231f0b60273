"""Sans-IO tests of challenges, token exchange and auth.json lookup."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest

from pycrio.errors import InvalidArgument
from pycrio.image import auth as a


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


# --- credentials -----------------------------------------------------------------


def test_credentials_repr_never_shows_secrets() -> None:
    c = a.Credentials("alice", "s3cret-pw", identity_token="id-tok-xyz", registry_token="reg-tok")
    for text in (repr(c), str(c), f"{c}", repr([c])):
        assert "alice" in text
        assert "s3cret-pw" not in text
        assert "id-tok-xyz" not in text
        assert "reg-tok" not in text
        assert "password=<redacted>" in text
    assert "password" not in repr(a.Credentials("bob"))


def test_basic_header() -> None:
    assert a.Credentials("u", "p:w").basic_header() == "Basic " + b64("u:p:w")


def test_decode_auth_field_keeps_colons_in_password() -> None:
    assert a.decode_auth_field(b64("user:pa:ss")) == ("user", "pa:ss")
    with pytest.raises(InvalidArgument, match="does not decode to 'user:password'"):
        a.decode_auth_field(b64("nocolon"))
    with pytest.raises(InvalidArgument, match="not base64"):
        a.decode_auth_field("%%%")


def test_credentials_from_cri() -> None:
    assert a.credentials_from_cri() is None
    c = a.credentials_from_cri(username="x", password="y", auth=b64("u:p"))
    assert c is not None and (c.username, c.password) == ("u", "p")
    t = a.credentials_from_cri(registry_token="tok")
    assert t is not None and t.registry_token == "tok" and not t.has_basic


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        # issue 17, found by the CRI fuzzer: these answered INTERNAL from the HTTP layer
        ({"registry_token": "\n"}, "AuthConfig.registry_token"),
        ({"registry_token": "tok\r\nX-Injected: 1"}, "AuthConfig.registry_token"),
        ({"registry_token": "t\u00e9"}, "AuthConfig.registry_token"),
        ({"registry_token": "a b"}, "AuthConfig.registry_token"),
        ({"identity_token": "x\x00"}, "AuthConfig.identity_token"),
        ({"auth": "\u00e9"}, "AuthConfig.auth"),
        ({"auth": b64("us\ner:pw")}, "AuthConfig.auth"),
        ({"username": "a\nb", "password": "p"}, "AuthConfig.username"),
        ({"username": "a:b", "password": "p"}, "AuthConfig.username"),
    ],
)
def test_credentials_that_cannot_travel_in_a_header_are_invalid(
    fields: dict[str, str], named: str
) -> None:
    with pytest.raises(InvalidArgument, match=named) as info:
        a.credentials_from_cri(**fields)
    # the secret itself is never echoed
    for value in fields.values():
        if len(value) > 1:
            assert value not in info.value.message


def test_non_ascii_user_and_password_are_fine() -> None:
    c = a.credentials_from_cri(username="j\u00e9r\u00f4me", password="p\u00e4ss\nword")
    assert c is not None
    assert c.basic_header() == "Basic " + b64("j\u00e9r\u00f4me:p\u00e4ss\nword")
    d = a.credentials_from_cri(auth=b64("\u00e9:\u00e9"))
    assert d is not None and d.username == "\u00e9"


def test_a_token_server_token_that_cannot_be_a_header_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="token server"):
        a.parse_token_response(b'{"token": "abc\\r\\nX-Evil: 1"}')


# --- WWW-Authenticate --------------------------------------------------------------


def test_docker_hub_style_bearer_with_commas_in_scope() -> None:
    (c,) = a.parse_www_authenticate(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:samalba/my-app:pull,push",error="insufficient_scope"'
    )
    assert c.scheme == "Bearer"
    assert c.realm == "https://auth.example.com/token"
    assert c.service == "registry.example.com"
    assert c.scope == "repository:samalba/my-app:pull,push"
    assert c.error == "insufficient_scope"


def test_several_challenges_in_one_header_and_across_headers() -> None:
    cs = a.parse_www_authenticate(
        ['Basic realm="Registry Realm", Bearer realm="https://t/x", service=svc', "Negotiate abc=="]
    )
    assert [c.scheme for c in cs] == ["Basic", "Bearer", "Negotiate"]
    assert cs[0].realm == "Registry Realm"
    assert cs[1].params == {"realm": "https://t/x", "service": "svc"}
    assert cs[2].token68 == "abc=="
    assert a.find_challenge(cs, "BEARER") is cs[1]
    assert a.find_challenge(cs, "digest") is None


def test_quoted_escapes_whitespace_and_case() -> None:
    (c,) = a.parse_www_authenticate(r'bearer  Realm = "a \"quoted\", realm" ,  SERVICE="s"')
    assert c.scheme == "bearer"
    assert c.realm == 'a "quoted", realm'
    assert c.service == "s"


def test_unterminated_quote_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="unterminated"):
        a.parse_www_authenticate('Bearer realm="https://x')


# --- token exchange ------------------------------------------------------------------


def test_token_request_url_repeats_scope_and_keeps_realm_query() -> None:
    ch = a.Challenge("Bearer", {"realm": "https://auth.example/token?x=1", "service": "reg"})
    url = a.token_request_url(ch, [a.pull_scope("lib/busybox"), "registry:catalog:*"], account="al")
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "auth.example", "/token")
    assert urllib.parse.parse_qsl(parts.query) == [
        ("x", "1"),
        ("service", "reg"),
        ("scope", "repository:lib/busybox:pull"),
        ("scope", "registry:catalog:*"),
        ("account", "al"),
    ]


@pytest.mark.parametrize("realm", ["", "ftp://x/token", "/relative"])
def test_token_request_url_needs_http_realm(realm: str) -> None:
    with pytest.raises(InvalidArgument, match="realm"):
        a.token_request_url(a.Challenge("Bearer", {"realm": realm}), ["s"])


def test_refresh_token_form() -> None:
    ch = a.Challenge("Bearer", {"realm": "https://x/t", "service": "svc"})
    form = a.refresh_token_form(ch, ["repository:a:pull", "repository:b:pull"], "rt")
    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": "rt",
        "client_id": "pycrio",
        "service": "svc",
        "scope": "repository:a:pull repository:b:pull",
    }


def test_parse_token_response_variants() -> None:
    t = a.parse_token_response(b'{"token": "abc", "expires_in": 300}', now=1000.0)
    assert t.token == "abc" and t.expires_at == 1300.0
    assert t.valid(now=1200.0) and not t.valid(now=1296.0)
    o = a.parse_token_response(
        b'{"access_token": "xyz", "refresh_token": "r", "expires_in": 5}', now=0.0
    )
    assert o.token == "xyz" and o.refresh_token == "r"
    assert o.expires_at == a.MIN_TOKEN_LIFETIME  # never shorter than the spec's 60 s
    d = a.parse_token_response(b'{"token": "abc"}', now=10.0)
    assert d.expires_at == 70.0
    assert "abc" not in repr(t)


@pytest.mark.parametrize(
    "body,message",
    [(b"nope", "not JSON"), (b"[1]", "not a JSON object"), (b'{"token": ""}', "neither")],
)
def test_parse_token_response_errors(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        a.parse_token_response(body)


# --- auth.json ---------------------------------------------------------------------


AUTH_JSON = {
    "auths": {
        "registry.example.com": {"auth": b64("host:hpw")},
        "registry.example.com/team": {"auth": b64("team:tpw")},
        "registry.example.com/team/app": {"auth": b64("app:apw")},
        "https://index.docker.io/v1/": {"auth": b64("hub:hubpw")},
        "idp.example.com": {"auth": b64("<token>:"), "identitytoken": "refresh-me"},
        "helper.example.com": {},
    },
    "credHelpers": {"helper.example.com": "ecr-login"},
}


def test_lookup_most_specific_first() -> None:
    f = a.parse_auth_file(json.dumps(AUTH_JSON).encode())
    assert f.lookup("registry.example.com", "team/app").username == "app"  # type: ignore[union-attr]
    assert f.lookup("registry.example.com", "team/app2").username == "team"  # type: ignore[union-attr]
    assert f.lookup("registry.example.com", "other/x").username == "host"  # type: ignore[union-attr]
    assert f.lookup("registry.example.com").username == "host"  # type: ignore[union-attr]
    assert f.lookup("other.example.com", "team/app") is None


def test_legacy_docker_hub_key_and_identity_token() -> None:
    f = a.parse_auth_file(json.dumps(AUTH_JSON).encode())
    hub = f.lookup("docker.io", "library/busybox")
    assert hub is not None and (hub.username, hub.password) == ("hub", "hubpw")
    idp = f.lookup("idp.example.com", "x")
    assert idp is not None and idp.identity_token == "refresh-me"
    assert f.lookup("helper.example.com") is None  # credential helpers are not run
    assert "hubpw" not in repr(f)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"auths": []}', "'auths' must be an object"),
        (b'{"auths": {"r": {"auth": "%%%"}}}', "not base64"),
        (b'{"auths": {"r": {"auth": 5}}}', "must be strings"),
    ],
)
def test_invalid_auth_files_name_the_file(content: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as ei:
        a.parse_auth_file(content, path="/etc/pycrio/auth.json")
    assert "/etc/pycrio/auth.json" in ei.value.message


def test_lookup_across_files_and_missing_file(tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    second = tmp_path / "second.json"
    first.write_text(json.dumps({"auths": {"r.example": {"auth": b64("one:1")}}}))
    second.write_text(
        json.dumps(
            {"auths": {"r.example/ns": {"auth": b64("two:2")}, "s.example": {"auth": b64("s:3")}}}
        )
    )
    files = [tmp_path / "missing.json", first, second]
    # The first file with any match wins, as in containers/image.
    assert a.lookup_credentials("r.example", "ns/app", files).username == "one"  # type: ignore[union-attr]
    assert a.lookup_credentials("s.example", "x", files).username == "s"  # type: ignore[union-attr]
    assert a.lookup_credentials("t.example", "x", files) is None
    assert a.load_auth_file(tmp_path / "missing.json").entries == {}


def test_default_auth_file_paths() -> None:
    assert a.default_auth_file_paths({"REGISTRY_AUTH_FILE": "/x/auth.json"}) == [
        Path("/x/auth.json")
    ]
    paths = a.default_auth_file_paths({"XDG_RUNTIME_DIR": "/run/user/0", "HOME": "/root"})
    assert paths == [
        Path("/run/user/0/containers/auth.json"),
        Path("/root/.config/containers/auth.json"),
        Path("/root/.docker/config.json"),
    ]
