"""signedIdentity rules of containers-policy.json(5), on strings."""

from __future__ import annotations

import pytest

from pycrio.errors import InvalidArgument
from pycrio.image.reference import parse
from pycrio.image.signature.identity import DEFAULT_RULE, check, parse_rule

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def accepts(rule: dict | None, image: str, signed: str) -> bool:
    try:
        check(parse_rule(rule, "test"), parse(image), signed)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("rule", "image", "signed", "expected"),
    [
        # matchRepoDigestOrExact (the default): a tag must match exactly...
        (None, "quay.io/org/app:1", "quay.io/org/app:1", True),
        (None, "quay.io/org/app:1", "quay.io/org/app:2", False),
        (None, "quay.io/org/app:1", "quay.io/org/app", False),
        (None, "quay.io/org/app:1", "quay.io/org/other:1", False),
        # ... a digest pull needs only the repository.
        (None, f"quay.io/org/app@{D1}", "quay.io/org/app:1", True),
        (None, f"quay.io/org/app@{D1}", "quay.io/org/app", True),
        (None, f"quay.io/org/app@{D1}", "quay.io/org/other:1", False),
        # Signed names are normalized like pulled ones.
        (None, "docker.io/library/busybox:latest", "busybox:latest", True),
        (None, "docker.io/library/busybox:latest", "busybox", False),
        ({"type": "matchExact"}, "quay.io/org/app:1", "quay.io/org/app:1", True),
        ({"type": "matchExact"}, f"quay.io/org/app@{D1}", "quay.io/org/app:1", False),
        ({"type": "matchExact"}, f"quay.io/org/app@{D1}", f"quay.io/org/app@{D1}", True),
        ({"type": "matchExact"}, f"quay.io/org/app@{D1}", f"quay.io/org/app@{D2}", False),
        ({"type": "matchRepository"}, "quay.io/org/app:latest", "quay.io/org/app:1.0", True),
        ({"type": "matchRepository"}, "quay.io/org/app:latest", "quay.io/org/app", True),
        ({"type": "matchRepository"}, "quay.io/org/app:1", "quay.io/org/app2:1", False),
        (
            {"type": "exactReference", "dockerReference": "vendor.io/p/app:1"},
            "mirror.local/p/app:1",
            "vendor.io/p/app:1",
            True,
        ),
        (
            {"type": "exactReference", "dockerReference": "vendor.io/p/app:1"},
            "mirror.local/p/app:1",
            "vendor.io/p/app:2",
            False,
        ),
        (
            {"type": "exactRepository", "dockerRepository": "vendor.io/p/app"},
            "mirror.local/p/app:9",
            "vendor.io/p/app:1",
            True,
        ),
        (
            {"type": "exactRepository", "dockerRepository": "vendor.io/p/app"},
            "mirror.local/p/app:9",
            "vendor.io/p/other:1",
            False,
        ),
    ],
)
def test_rules(rule, image, signed, expected):
    assert accepts(rule, image, signed) is expected


REMAP = {
    "type": "remapIdentity",
    "prefix": "private-mirror:5000/vendor-mirror",
    "signedPrefix": "vendor.example.com",
}


@pytest.mark.parametrize(
    ("image", "signed", "expected"),
    [
        (
            "private-mirror:5000/vendor-mirror/product/image1:latest",
            "vendor.example.com/product/image1:latest",
            True,
        ),
        (
            "private-mirror:5000/vendor-mirror/product/image1:latest",
            "vendor.example.com/product/image1:other",
            False,
        ),
        # The prefix ends at a path boundary: vendor-mirror2 is not remapped.
        (
            "private-mirror:5000/vendor-mirror2/product/image1:latest",
            "vendor.example.com2/product/image1:latest",
            False,
        ),
        # Outside the prefix the identity is matched unchanged.
        ("other.io/product/image1:latest", "other.io/product/image1:latest", True),
        (
            f"private-mirror:5000/vendor-mirror/product/image1@{D1}",
            "vendor.example.com/product/image1:3",
            True,
        ),
    ],
)
def test_remap_identity(image, signed, expected):
    assert accepts(REMAP, image, signed) is expected


def test_remap_host_prefix_does_not_match_another_port():
    rule = {"type": "remapIdentity", "prefix": "example.com", "signedPrefix": "signed.io"}
    assert accepts(rule, "example.com/a/b:1", "signed.io/a/b:1")
    assert not accepts(rule, "example.com:5000/a/b:1", "signed.io/a/b:1")
    assert accepts(rule, "example.com:5000/a/b:1", "example.com:5000/a/b:1")


def test_mismatch_message_names_both_identities_and_the_rule():
    with pytest.raises(ValueError) as info:
        check(DEFAULT_RULE, parse("quay.io/org/app:1"), "quay.io/org/app:2")
    message = str(info.value)
    assert "quay.io/org/app:2" in message and "quay.io/org/app:1" in message
    assert "matchRepoDigestOrExact" in message


def test_invalid_signed_identity_is_a_mismatch_not_a_crash():
    with pytest.raises(ValueError, match="invalid"):
        check(DEFAULT_RULE, parse("quay.io/org/app:1"), "Not A Reference")


@pytest.mark.parametrize(
    "rule",
    [
        {"type": "matchExact", "extra": 1},
        {"type": "exactReference"},
        {"type": "exactReference", "dockerReference": "quay.io/a/b"},
        {"type": "exactRepository", "dockerRepository": "quay.io/a/b:1"},
        {"type": "remapIdentity", "prefix": "", "signedPrefix": "x.io"},
        {"type": "remapIdentity", "prefix": "docker.io/busybox", "signedPrefix": "x.io"},
        {"kind": "matchExact"},
        "matchExact",
    ],
)
def test_invalid_rules(rule):
    with pytest.raises(InvalidArgument, match="test"):
        parse_rule(rule, "test")
