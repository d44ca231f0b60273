"""Image reference parsing, checked against distribution/reference's own test tables.

The tables come from distribution/reference (reference_test.go, normalize_test.go),
run through ParseNormalizedNamed semantics: that is what the kubelet and CRI-O
apply, so every expectation below is the normalized result.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pycrio.errors import InvalidArgument
from pycrio.image.reference import (
    Reference,
    is_image_id,
    is_short_name,
    is_valid_domain,
    parse,
    parse_image_id,
    split_reference,
)

F64 = "f" * 64
SHA256_F = f"sha256:{F64}"
SHA512_F = "sha512:" + "f" * 128
REDIS_DIGEST = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
HEX_ID = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

# input, domain, path, tag, digest
VALID = [
    # reference_test.go TestReferenceParse, normalized
    ("test_com", "docker.io", "library/test_com", "latest", None),
    ("test.com:tag", "docker.io", "library/test.com", "tag", None),
    ("test.com:5000", "docker.io", "library/test.com", "5000", None),
    ("test.com/repo:tag", "test.com", "repo", "tag", None),
    ("test:5000/repo", "test:5000", "repo", "latest", None),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", None),
    (f"test:5000/repo@{SHA256_F}", "test:5000", "repo", None, SHA256_F),
    (f"test:5000/repo:tag@{SHA256_F}", "test:5000", "repo", "tag", SHA256_F),
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", "latest", None),
    (
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "sub-dom1.foo.com",
        "bar/baz/quux",
        "some-long-tag",
        None,
    ),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io",
        "test.example.com/my-app",
        "test.example.com",
        None,
    ),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
    (
        f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512_F}",
        "xn--7o8h.com",
        "myimage",
        "xn--7o8h.com",
        SHA512_F,
    ),
    ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None),
    ("192.168.1.1", "docker.io", "library/192.168.1.1", "latest", None),
    ("192.168.1.1:tag", "docker.io", "library/192.168.1.1", "tag", None),
    ("192.168.1.1:5000", "docker.io", "library/192.168.1.1", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1", "repo", "latest", None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", "latest", None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", "latest", None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", "latest", None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None),
    (f"[2001:db8::1]:5000/repo@{SHA256_F}", "[2001:db8::1]:5000", "repo", None, SHA256_F),
    (f"[2001:db8::1]:5000/repo:tag@{SHA256_F}", "[2001:db8::1]:5000", "repo", "tag", SHA256_F),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", "latest", None),
    ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", None),
    # normalize_test.go TestNormalizedSplitHostname and TestParseAnyReference
    ("test.com/foo", "test.com", "foo", "latest", None),
    ("test_com/foo", "docker.io", "test_com/foo", "latest", None),
    ("docker/migrator", "docker.io", "docker/migrator", "latest", None),
    ("test.com:8080/foo", "test.com:8080", "foo", "latest", None),
    ("test-com:8080/foo", "test-com:8080", "foo", "latest", None),
    ("foo", "docker.io", "library/foo", "latest", None),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "latest", None),
    ("docker.io/foo", "docker.io", "library/foo", "latest", None),
    ("docker.io/library/foo", "docker.io", "library/foo", "latest", None),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", "latest", None),
    ("redis", "docker.io", "library/redis", "latest", None),
    (f"redis@{REDIS_DIGEST}", "docker.io", "library/redis", None, REDIS_DIGEST),
    (f"dmcgowan/myapp@{REDIS_DIGEST}", "docker.io", "dmcgowan/myapp", None, REDIS_DIGEST),
    ("dbcc1", "docker.io", "library/dbcc1", "latest", None),
    # 63 hex characters is a name, only 64 is an ID
    (HEX_ID[:63], "docker.io", f"library/{HEX_ID[:63]}", "latest", None),
    (f"docker.io/{HEX_ID}", "docker.io", f"library/{HEX_ID}", "latest", None),
    # index.docker.io is the legacy name of docker.io
    ("index.docker.io/docker/docker", "docker.io", "docker/docker", "latest", None),
    ("index.docker.io/debian", "docker.io", "library/debian", "latest", None),
    # uppercase first component is taken as a registry (distribution's documented FIXME)
    ("Docker/docker", "Docker", "docker", "latest", None),
    ("DOCKER/docker", "DOCKER", "docker", "latest", None),
    ("Uppercase/lowercase:tag", "Uppercase", "lowercase", "tag", None),
    # localhost is a registry only when followed by a path
    ("localhost/foo", "localhost", "foo", "latest", None),
    ("localhost:5000/foo/bar:1.0", "localhost:5000", "foo/bar", "1.0", None),
    ("localhost", "docker.io", "library/localhost", "latest", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("dock__er/docker", "docker.io", "dock__er/docker", "latest", None),
    ("docker---rules/docker", "docker.io", "docker---rules/docker", "latest", None),
    ("d/docker", "docker.io", "d/docker", "latest", None),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), VALID, ids=lambda v: str(v))
def test_parse_valid(text, domain, path, tag, digest):
    ref = parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)


INVALID = [
    # reference_test.go
    "",
    ":justtag",
    f"@{SHA256_F}",
    "repo@sha256:" + "f" * 34,
    f"validname@invaliddigest:{F64}",
    "Uppercase:tag",
    "test:5000/Uppercase/lowercase:tag",
    "a/" * 128 + "a:tag",
    "aa/asdf$$^/aa",
    "[2001:db8::1]",
    "[2001:db8::1]:5000",
    "[2001:db8::1]:tag",
    "[fe80::1%eth0]:5000/repo",
    "[fe80::1%@invalidzone]:5000/repo",
    # normalize_test.go
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    HEX_ID,
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
    # tags, digests, whitespace
    "busybox:" + "t" * 129,
    "busybox:-tag",
    "busybox:.tag",
    f"busybox@sha256:{F64.upper()}",
    f"busybox@sha256:{F64}0",
    "busybox@sha256:" + "g" * 64,
    "busy box",
    "busybox\n",
    "busybox:tàg",
]


@pytest.mark.parametrize("text", INVALID, ids=lambda v: repr(v[:40]))
def test_parse_invalid(text):
    with pytest.raises(InvalidArgument):
        parse(text)


# normalize_test.go TestParseRepositoryInfo: every spelling gives the same familiar
# and full names.
# familiar, full, spellings
REPOSITORY_INFO = [
    ("fooo/bar", "docker.io/fooo/bar", ["index.docker.io/fooo/bar"]),
    ("ubuntu", "docker.io/library/ubuntu", ["library/ubuntu"]),
    ("nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", []),
    ("other/library", "docker.io/other/library", []),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", []),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", []),
    ("example.com/private/moonbase", "example.com/private/moonbase", []),
    ("example.com:8000/privatebasee", "example.com:8000/privatebasee", []),
    (
        "ubuntu-12.04-base",
        "docker.io/library/ubuntu-12.04-base",
        ["index.docker.io/library/ubuntu-12.04-base"],
    ),
    ("foo", "docker.io/library/foo", ["docker.io/foo"]),
    ("library/foo/bar", "docker.io/library/foo/bar", []),
    ("store/foo/bar", "docker.io/store/foo/bar", []),
    ("Foo/bar", "Foo/bar", []),
]


@pytest.mark.parametrize(("familiar", "full", "others"), REPOSITORY_INFO, ids=lambda v: str(v))
def test_familiar_and_full_names(familiar, full, others):
    for spelling in [familiar, full, *others]:
        ref = parse(spelling)
        assert ref.name == full
        assert ref.familiar() == f"{familiar}:latest"


def test_tag_and_digest_are_both_kept():
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse(short)
    assert str(ref) == f"docker.io/library/{short}"
    assert ref.familiar() == short


def test_latest_is_added_only_without_tag_and_digest():
    assert parse("busybox").tag == "latest"
    assert parse(f"busybox@{SHA256_F}").tag is None
    assert parse("busybox:1.36").tag == "1.36"


def test_string_forms():
    ref = parse("quay.io/org/app:1.0")
    assert ref.name == "quay.io/org/app"
    assert ref.string() == str(ref) == "quay.io/org/app:1.0"
    assert ref.familiar() == "quay.io/org/app:1.0"
    assert parse("busybox").name == "docker.io/library/busybox"


def test_with_tag_and_with_digest_validate_and_keep_the_rest():
    ref = parse(f"quay.io/org/app:1.0@{SHA256_F}")
    assert ref.with_tag("2.0") == Reference("quay.io", "org/app", "2.0", SHA256_F)
    assert ref.with_digest(REDIS_DIGEST).tag == "1.0"
    with pytest.raises(InvalidArgument, match="invalid tag"):
        ref.with_tag("-bad")
    with pytest.raises(InvalidArgument, match="digest"):
        ref.with_digest("sha256:abc")


def test_name_length_limit_counts_the_whole_normalized_name():
    domain = "a.com/"
    fits = domain + "/".join(["a"] * 125)  # 6 + 249 = 255 characters
    assert len(fits) == 255
    assert parse(fits).name == fits
    with pytest.raises(InvalidArgument, match="maximum of 255"):
        parse(fits + "b")
    # 255 characters as written, but docker.io/ makes it 265: containers/image
    # (and so CRI-O) rejects it, unlike newer distribution which counts the path.
    with pytest.raises(InvalidArgument, match="maximum of 255"):
        parse("a/" * 127 + "a:tag-puts-this-over-max")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (HEX_ID, "image ID"),
        ("docker.io/Library/busybox", "must be lowercase"),
        ("https://quay.io/org/app", "URL scheme"),
        ("busy box", "whitespace"),
        ("quay.io//app", "empty"),
        ("busybox@md5:" + "a" * 32, "unsupported algorithm 'md5'"),
        ("busybox@sha256:" + "a" * 40, "exactly 64"),
        ("busybox@sha256:" + "A" * 64, "lowercase"),
        ("x" * 2000, "longer than any valid reference"),
    ],
)
def test_error_messages_say_what_is_wrong(text, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        parse(text)


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("busybox", True),
        ("busybox:1.36", True),
        ("library/busybox", True),
        (f"busybox@{SHA256_F}", True),
        ("org/app/sub", True),
        ("localhost", True),
        ("quay.io/app", False),
        ("localhost/app:tag", False),
        ("server.org:5000/lib/image", False),
        ("myhost:5000/image", False),
        ("[::1]:5000/image", False),
        ("docker.io/library/busybox", False),
    ],
)
def test_is_short_name(text, short):
    assert is_short_name(text) is short


def test_image_ids():
    assert is_image_id(HEX_ID)
    assert parse_image_id(HEX_ID) == f"sha256:{HEX_ID}"
    assert parse_image_id(f"sha256:{HEX_ID}") == f"sha256:{HEX_ID}"
    assert not is_image_id(HEX_ID[:63])
    assert not is_image_id(HEX_ID.upper())
    assert parse_image_id(f"sha512:{HEX_ID}") is None
    assert parse_image_id("busybox") is None


def test_split_reference_does_not_normalize():
    assert split_reference("busybox") == ("busybox", None, None)
    assert split_reference(f"library/busybox:1@{SHA256_F}") == ("library/busybox", "1", SHA256_F)
    with pytest.raises(InvalidArgument):
        split_reference("Busybox")


def test_is_valid_domain():
    assert is_valid_domain("quay.io")
    assert is_valid_domain("localhost:5000")
    assert is_valid_domain("[fc00::1]:5000")
    assert not is_valid_domain("https://quay.io")
    assert not is_valid_domain("quay.io/org")


@pytest.mark.parametrize(
    "fields",
    [
        ("docker.io", "busybox", "latest", None),  # not normalized: library/ missing
        ("index.docker.io", "library/busybox", "latest", None),
        ("quay", "org/app", "latest", None),  # would read as a docker.io namespace
        ("quay.io", "Org/app", "latest", None),
        ("quay.io", "org/app", "t" * 129, None),
        ("quay.io", "org/app", None, "sha256:123"),
        ("quay.io/x", "app", "latest", None),
    ],
)
def test_constructor_rejects_what_parse_could_not_return(fields):
    with pytest.raises(InvalidArgument):
        Reference(*fields)


# Round trip: every Reference prints to a string that parses back to it.

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_separator = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def _path_components(draw):
    parts = [draw(_alnum)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(_separator), draw(_alnum)]
    return "".join(parts)


_dns_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(1, 65535).map(lambda p: f":{p}")
_domains = st.one_of(
    st.just("docker.io"),
    st.just("localhost"),
    st.builds(lambda p: f"localhost{p}", _port),
    st.builds(
        lambda labels, port: ".".join(labels) + port,
        st.lists(_dns_label, min_size=2, max_size=4),
        st.one_of(st.just(""), _port),
    ),
    st.builds(lambda label, port: label + port, _dns_label, _port),
    st.sampled_from(["[::1]", "[fc00::1]:5000", "[2001:db8:1:2:3:4:5:6]"]),
)
_tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def references(draw):
    domain = draw(_domains)
    path = "/".join(draw(st.lists(_path_components(), min_size=1, max_size=4)))
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    tag = draw(st.one_of(st.none(), _tags))
    digest = draw(st.none() if tag is None else st.one_of(st.none(), _digests))
    if tag is None:
        digest = draw(_digests)
    assume(len(domain) + 1 + len(path) <= 255)
    return Reference(domain, path, tag, digest)


@given(references())
def test_round_trip(ref):
    assert parse(str(ref)) == ref


@given(references())
def test_familiar_round_trip(ref):
    # Docker Hub namespaces cannot contain '.', which would read as a registry.
    assume(ref.domain != "docker.io" or "." not in ref.path.split("/")[0])
    assert parse(ref.familiar()) == ref


@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_raises_invalid_argument(text):
    try:
        ref = parse(text)
    except InvalidArgument as e:
        assert e.message
    else:
        assert parse(str(ref)) == ref
