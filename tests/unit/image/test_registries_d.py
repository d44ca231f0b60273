"""containers-registries.d(5): lookaside and use-sigstore-attachments per scope."""

from __future__ import annotations

import pytest

from pycrio.errors import InvalidArgument
from pycrio.image.reference import parse
from pycrio.image.registries_d import BUILTIN_LOOKASIDE, RegistriesD, lookaside_url


def load(tmp_path, **files: str) -> RegistriesD:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return RegistriesD.load(tmp_path)


def test_most_specific_scope_that_sets_a_field_wins(tmp_path):
    rd = load(
        tmp_path,
        a="default-docker:\n  lookaside: https://sigs.example/default\n",
        b=(
            "docker:\n"
            "  quay.io:\n"
            "    use-sigstore-attachments: true\n"
            "  quay.io/org:\n"
            "    lookaside: file:///srv/org\n"
            "  quay.io/org/app:1:\n"
            "    use-sigstore-attachments: false\n"
        ),
    )
    app1, app2 = parse("quay.io/org/app:1"), parse("quay.io/org/app:2")
    assert rd.lookaside(app1) == "file:///srv/org"  # from the namespace
    assert rd.use_sigstore_attachments(app1) is False  # the exact reference sets it
    assert rd.use_sigstore_attachments(app2) is True  # from the host
    assert rd.lookaside(parse("quay.io/other/x:1")) == "https://sigs.example/default"
    assert rd.use_sigstore_attachments(parse("docker.io/library/busybox")) is False


def test_old_sigstore_key_and_builtin_default(tmp_path):
    rd = load(tmp_path, a="docker:\n  example.com:\n    sigstore: http://127.0.0.1:1/s\n")
    assert rd.lookaside(parse("example.com/a/b:1")) == "http://127.0.0.1:1/s"
    assert rd.lookaside(parse("other.com/a:1")) == BUILTIN_LOOKASIDE
    assert RegistriesD.load(tmp_path / "missing").lookaside(parse("a.io/b")) == BUILTIN_LOOKASIDE


def test_staging_is_for_writers_only(tmp_path):
    rd = load(tmp_path, a="default-docker:\n  lookaside-staging: file:///srv/staging\n")
    assert rd.lookaside(parse("quay.io/a/b:1")) == BUILTIN_LOOKASIDE


def test_lookaside_url_uses_the_path_without_host():
    digest = "sha256:" + "0f" * 32
    url = lookaside_url("https://s.example/sigs/", parse("docker.io/library/busybox"), digest, 2)
    assert url == "https://s.example/sigs/library/busybox@sha256=" + "0f" * 32 + "/signature-2"


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"a": "default-docker: [\n"}, "invalid YAML"),
        ({"a": "- a\n"}, "must be a mapping"),
        ({"a": "dockr: {}\n"}, "unknown key 'dockr'"),
        ({"a": "docker:\n  quay.io:\n    lookside: file:///x\n"}, "unknown key 'lookside'"),
        ({"a": "default-docker:\n  lookaside: /srv/sigs\n"}, "file:///absolute/path"),
        ({"a": "default-docker:\n  lookaside: ftp://x/y\n"}, "http(s)://"),
        ({"a": "default-docker:\n  use-sigstore-attachments: yes please\n"}, "true or false"),
        (
            {"a": "default-docker:\n  lookaside: file:///a\n", "b": "default-docker: {}\n"},
            "default-docker is set in both",
        ),
        (
            {"a": "docker:\n  quay.io: {}\n", "b": "docker:\n  quay.io: {}\n"},
            "'quay.io' is set in both",
        ),
    ],
)
def test_invalid_files(tmp_path, files, fragment):
    with pytest.raises(InvalidArgument, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load(tmp_path, **files)


def test_only_yaml_files_count(tmp_path):
    (tmp_path / "notes.txt").write_text("not: [yaml\n")
    rd = load(tmp_path, a="default-docker:\n  use-sigstore-attachments: true\n")
    assert rd.use_sigstore_attachments(parse("a.io/b:1")) is True
