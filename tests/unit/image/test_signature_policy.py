"""containers-policy.json loading, scope precedence and requirement evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pycrio.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from pycrio.image.policy import DEFAULT_POLICY_PATH, Policy, policy_path_for_namespace
from pycrio.image.reference import parse

DIGEST = "sha256:" + "b" * 64
ACCEPT = [{"type": "insecureAcceptAnything"}]
REJECT = [{"type": "reject"}]


def write_policy(tmp_path: Path, data: object, name: str = "policy.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_accept_anything(tmp_path):
    policy = Policy.load(write_policy(tmp_path, {"default": ACCEPT}))
    assert policy.check(parse("busybox")).signatures == ()
    assert policy.source == str(tmp_path / "policy.json")


def test_default_reject_names_image_and_scope(tmp_path):
    policy = Policy.load(write_policy(tmp_path, {"default": REJECT}))
    with pytest.raises(PermissionDenied) as info:
        policy.check(parse("busybox"))
    message = info.value.message
    assert "docker.io/library/busybox:latest" in message
    assert "default" in message
    assert str(tmp_path / "policy.json") in message


# Scope precedence: each scope rejects, so the message tells which one applied.
SCOPES = [
    "docker.io/library/busybox:1.36",
    f"docker.io/library/busybox@{DIGEST}",
    "docker.io/library/busybox",
    "docker.io/library",
    "docker.io",
    "quay.io/org/team/app",
    "quay.io/org",
    "localhost:5000",
    "reg.dept.example.com",
    "*.dept.example.com",
    "*.example.com",
    "*.org",
]


@pytest.mark.parametrize(
    ("ref", "scope"),
    [
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        # with both, the digest identifies the image
        (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        ("busybox:1.35", "docker.io/library/busybox"),
        ("alpine", "docker.io/library"),
        ("someone/app", "docker.io"),
        ("quay.io/org/team/app:1", "quay.io/org/team/app"),
        ("quay.io/org/team/app/sub:1", "quay.io/org/team/app"),
        ("quay.io/org/other:1", "quay.io/org"),
        ("localhost:5000/a/b:1", "localhost:5000"),
        ("reg.dept.example.com/app:1", "reg.dept.example.com"),
        ("other.dept.example.com/app:1", "*.dept.example.com"),
        # the port is dropped before wildcard matching
        ("other.dept.example.com:8443/app:1", "*.dept.example.com"),
        ("a.example.com/app:1", "*.example.com"),
        ("a.b.example.org/app:1", "*.org"),
        ("quay.io/other:1", ""),
        ("[::1]:5000/app:1", ""),
    ],
)
def test_most_specific_scope_applies(ref, scope):
    transports = {"docker": {s: REJECT for s in [*SCOPES, ""]}}
    policy = Policy.from_dict({"default": ACCEPT, "transports": transports}, source="p.json")
    assert policy.requirements_for(parse(ref))[0] == scope
    with pytest.raises(PermissionDenied) as info:
        policy.check(parse(ref))
    assert repr(scope) in info.value.message


def test_scope_accept_overrides_default_reject():
    policy = Policy.from_dict(
        {"default": REJECT, "transports": {"docker": {"quay.io/trusted": ACCEPT}}}
    )
    assert policy.check(parse("quay.io/trusted/app:1")).signatures == ()
    with pytest.raises(PermissionDenied):
        policy.check(parse("quay.io/untrusted/app:1"))


def test_wildcard_does_not_match_the_bare_domain():
    policy = Policy.from_dict(
        {"default": ACCEPT, "transports": {"docker": {"*.example.com": REJECT}}}
    )
    assert policy.check(parse("example.com/app:1")).signatures == ()
    with pytest.raises(PermissionDenied):
        policy.check(parse("x.example.com/app:1"))


def test_other_transports_do_not_apply_to_docker():
    policy = Policy.from_dict(
        {
            "default": ACCEPT,
            "transports": {"docker-daemon": {"": REJECT}, "atomic": {"docker.io": REJECT}},
        }
    )
    assert policy.check(parse("busybox")).signatures == ()
    with pytest.raises(PermissionDenied):
        policy.check(parse("busybox"), transport="docker-daemon")


def test_unknown_requirements_deny_instead_of_accepting():
    policy = Policy.from_dict(
        {"default": ACCEPT, "transports": {"docker": {"quay.io": [{"type": "somethingNew"}]}}},
        source="p.json",
    )
    with pytest.raises(PermissionDenied) as info:
        policy.check(parse("quay.io/org/app:1"))
    message = info.value.message
    assert "unknown requirement type 'somethingNew'" in message
    assert "not support" in message
    assert "quay.io/org/app:1" in message


def test_signature_requirements_are_handed_back_with_their_scope():
    signed_by = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}
    sigstore = {"type": "sigstoreSigned", "keyPath": "/k.pub"}
    policy = Policy.from_dict(
        {"default": ACCEPT, "transports": {"docker": {"quay.io": [signed_by, sigstore, *ACCEPT]}}},
        source="p.json",
    )
    decision = policy.check(parse("quay.io/org/app:1"))
    assert decision.scope == "transports.docker['quay.io']"
    assert decision.source == "p.json"
    assert [r.type for r in decision.signatures] == ["signedBy", "sigstoreSigned"]
    assert decision.signatures[0].keys.paths == ("/k.gpg",)
    assert policy.check(parse("docker.io/library/busybox:1")).signatures == ()


def test_reject_wins_over_signature_requirements():
    policy = Policy.from_dict(
        {"default": [{"type": "sigstoreSigned", "keyPath": "/k.pub"}, *REJECT]}
    )
    with pytest.raises(PermissionDenied, match="rejected"):
        policy.check(parse("busybox"))


def test_every_requirement_must_accept():
    policy = Policy.from_dict(
        {
            "default": [*ACCEPT, *ACCEPT],
            "transports": {"docker": {"quay.io": [*ACCEPT, *REJECT]}},
        }
    )
    assert policy.check(parse("busybox")).signatures == ()
    with pytest.raises(PermissionDenied, match="rejected"):
        policy.check(parse("quay.io/org/app:1"))


def test_requirement_fields_are_kept():
    policy = Policy.from_dict({"default": [{"type": "signedBy", "keyPath": "/k"}]})
    assert policy.default[0].type == "signedBy"
    assert dict(policy.default[0].fields) == {"keyPath": "/k"}
    assert policy.default[0].signature is not None


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([], "JSON object"),
        ({}, "default"),
        ({"transports": {}}, "default"),
        ({"default": []}, "non-empty"),
        ({"default": {"type": "reject"}}, "non-empty array"),
        ({"default": [{"keyPath": "/k"}]}, "default[0]"),
        ({"default": ["reject"]}, "default[0]"),
        ({"default": [{"type": "reject", "extra": 1}]}, "takes no other fields"),
        ({"default": ACCEPT, "transport": {}}, "unknown key"),
        ({"default": ACCEPT, "transports": []}, "transports"),
        ({"default": ACCEPT, "transports": {"docker": []}}, "transports.docker"),
        ({"default": ACCEPT, "transports": {"docker": {"quay.io": []}}}, "'quay.io'"),
        # signedBy and sigstoreSigned are parsed as strictly as containers/image does.
        ({"default": [{"type": "signedBy"}]}, "needs one of keyPath"),
        ({"default": [{"type": "signedBy", "keyPath": "/a", "keyData": "eA=="}]}, "only one"),
        ({"default": [{"type": "signedBy", "keyType": "X509", "keyPath": "/a"}]}, "keyType"),
        ({"default": [{"type": "signedBy", "keyPath": "rel/key.gpg"}]}, "absolute"),
        ({"default": [{"type": "signedBy", "keyPaths": []}]}, "non-empty array"),
        ({"default": [{"type": "signedBy", "keyData": "not base64!"}]}, "base64"),
        ({"default": [{"type": "signedBy", "keyPath": "/a", "keyPth": "/b"}]}, "'keyPth'"),
        ({"default": [{"type": "sigstoreSigned"}]}, "exactly one of keyPath"),
        (
            {"default": [{"type": "sigstoreSigned", "keyPath": "/a", "fulcio": {}}]},
            "exactly one of keyPath",
        ),
        (
            {
                "default": [
                    {
                        "type": "sigstoreSigned",
                        "fulcio": {"caPath": "/ca", "oidcIssuer": "i", "subjectEmail": "e"},
                    }
                ]
            },
            "rekorPublicKeyPath",
        ),
        (
            {
                "default": [
                    {
                        "type": "sigstoreSigned",
                        "fulcio": {"caPath": "/ca", "oidcIssuer": "i"},
                        "rekorPublicKeyPath": "/r",
                    }
                ]
            },
            "subjectEmail",
        ),
        ({"default": [{"type": "sigstoreSigned", "keyPath": "/a", "pki": {}}]}, "pki"),
        (
            {
                "default": [
                    {"type": "sigstoreSigned", "keyPath": "/a", "signedIdentity": {"type": "x"}}
                ]
            },
            "unknown signedIdentity type",
        ),
        (
            {
                "default": [
                    {
                        "type": "sigstoreSigned",
                        "keyPath": "/a",
                        "signedIdentity": {"type": "exactReference", "dockerReference": "a/b"},
                    }
                ]
            },
            "tag or a digest",
        ),
        (
            {
                "default": [
                    {
                        "type": "signedBy",
                        "keyPath": "/a",
                        "signedIdentity": {"type": "remapIdentity", "prefix": "quay.io"},
                    }
                ]
            },
            "'signedPrefix'",
        ),
        (
            {
                "default": [
                    {
                        "type": "signedBy",
                        "keyPath": "/a",
                        "signedIdentity": {
                            "type": "remapIdentity",
                            "prefix": "quay.io/org:1",
                            "signedPrefix": "quay.io",
                        },
                    }
                ]
            },
            "takes no tag or digest",
        ),
    ],
)
def test_invalid_policy_names_file_and_key(tmp_path, data, fragment):
    path = write_policy(tmp_path, data)
    with pytest.raises(InvalidArgument) as info:
        Policy.load(path)
    assert str(path) in info.value.message
    assert fragment in info.value.message


def test_invalid_json_names_file(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text('{"default": [')
    with pytest.raises(InvalidArgument) as info:
        Policy.load(path)
    assert str(path) in info.value.message
    assert "invalid JSON" in info.value.message


def test_missing_policy_file_is_an_error(tmp_path):
    with pytest.raises(FailedPrecondition, match="does not exist"):
        Policy.load(tmp_path / "missing.json")


# Per-namespace policy (CRI-O's signature_policy_dir)


def test_namespace_policy_used_when_it_exists(tmp_path):
    (tmp_path / "policies").mkdir()
    ns_policy = write_policy(tmp_path / "policies", {"default": REJECT}, "team-a.json")
    default = tmp_path / "policy.json"
    assert policy_path_for_namespace(default, tmp_path / "policies", "team-a") == ns_policy
    assert policy_path_for_namespace(default, tmp_path / "policies", "team-b") == default


@pytest.mark.parametrize(
    ("policy", "directory", "namespace", "expected"),
    [
        ("/etc/p.json", "", "team-a", "/etc/p.json"),
        ("/etc/p.json", "/nonexistent", "", "/etc/p.json"),
        ("", "/nonexistent", "team-a", DEFAULT_POLICY_PATH),
        ("", "", "", DEFAULT_POLICY_PATH),
    ],
)
def test_namespace_policy_fallbacks(policy, directory, namespace, expected):
    assert policy_path_for_namespace(policy, directory, namespace) == Path(expected)


@pytest.mark.parametrize("namespace", ["../etc", "a/b", "Team", "-a", "a" * 64, "."])
def test_namespace_must_be_a_kubernetes_namespace(tmp_path, namespace):
    with pytest.raises(InvalidArgument, match="namespace"):
        policy_path_for_namespace(tmp_path / "p.json", tmp_path, namespace)
