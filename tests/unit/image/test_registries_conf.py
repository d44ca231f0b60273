"""registries.conf v2 loading, merging, prefix matching, mirrors and short names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pycrio.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from pycrio.image.reference import Reference, parse
from pycrio.image.registries_conf import (
    DEFAULT_SHORT_NAME_MODE,
    Mirror,
    RegistriesConfig,
    Registry,
)

DIGEST = "sha256:" + "a" * 64


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, main: str = "", **drop_ins: str) -> RegistriesConfig:
    """Write main and drop-ins (name -> text) under tmp_path and load them."""
    write(tmp_path / "registries.conf", main)
    for name, text in drop_ins.items():
        write(tmp_path / "registries.conf.d" / name, text)
    return RegistriesConfig.load(tmp_path / "registries.conf", tmp_path / "registries.conf.d")


def sources(config: RegistriesConfig, ref: str) -> list[tuple[str, bool, bool]]:
    return [(str(s.reference), s.insecure, s.mirror) for s in config.pull_sources(parse(ref))]


# Loading and merging


def test_missing_files_give_defaults(tmp_path):
    config = RegistriesConfig.load(tmp_path / "nope.conf", tmp_path / "nope.d")
    assert config == RegistriesConfig()
    assert config.short_name_mode == DEFAULT_SHORT_NAME_MODE == "permissive"
    assert sources(config, "busybox") == [("docker.io/library/busybox:latest", False, False)]


def test_main_file_settings(tmp_path):
    config = load(
        tmp_path,
        """
        unqualified-search-registries = ["quay.io", "docker.io/"]
        short-name-mode = "enforcing"
        credential-helpers = ["containers-auth.json"]  # known but unused keys are fine

        [aliases]
        "fedora" = "registry.fedoraproject.org/fedora"

        [[registry]]
        prefix = "example.com/foo"
        location = "internal.example.com/bar"
        insecure = true
        mirror-by-digest-only = true

        [[registry.mirror]]
        location = "mirror.example.com:5000/"
        insecure = true
        """,
    )
    assert config.unqualified_search_registries == ("quay.io", "docker.io")
    assert config.search_registries_source == str(tmp_path / "registries.conf")
    assert config.short_name_mode == "enforcing"
    assert config.aliases["fedora"].value == Reference("registry.fedoraproject.org", "fedora")
    assert config.registries == (
        Registry(
            prefix="example.com/foo",
            location="internal.example.com/bar",
            insecure=True,
            mirror_by_digest_only=True,
            mirrors=(Mirror("mirror.example.com:5000", insecure=True),),
            source=str(tmp_path / "registries.conf"),
        ),
    )


def test_prefix_defaults_to_location(tmp_path):
    config = load(tmp_path, '[[registry]]\nlocation = "quay.io"\ninsecure = true\n')
    assert config.registries[0].prefix == "quay.io"
    assert sources(config, "quay.io/a/b:1") == [("quay.io/a/b:1", True, False)]


def test_drop_ins_load_in_lexical_order_and_override_top_level_settings(tmp_path):
    config = load(
        tmp_path,
        'unqualified-search-registries = ["main.io"]\nshort-name-mode = "enforcing"\n',
        **{
            "20-b.conf": 'unqualified-search-registries = ["b.io"]\n',
            "10-a.conf": 'unqualified-search-registries = ["a.io"]\nshort-name-mode = "disabled"',
            "30-c.conf": "# sets nothing, so keeps what earlier files set\n",
        },
    )
    assert config.unqualified_search_registries == ("b.io",)
    assert config.search_registries_source.endswith("20-b.conf")
    assert config.short_name_mode == "disabled"
    assert [Path(s).name for s in config.sources] == [
        "registries.conf",
        "10-a.conf",
        "20-b.conf",
        "30-c.conf",
    ]


def test_drop_in_empty_search_list_clears_it(tmp_path):
    config = load(
        tmp_path,
        'unqualified-search-registries = ["main.io"]',
        **{"01.conf": "unqualified-search-registries = []"},
    )
    assert config.unqualified_search_registries == ()


def test_drop_in_registry_with_same_prefix_replaces_and_new_prefix_adds(tmp_path):
    config = load(
        tmp_path,
        """
        [[registry]]
        prefix = "docker.io"
        location = "docker.io"
        [[registry.mirror]]
        location = "old-mirror.io"

        [[registry]]
        location = "quay.io"
        """,
        **{
            "50-mirror.conf": """
            [[registry]]
            prefix = "docker.io"
            location = "docker.io"
            [[registry.mirror]]
            location = "new-mirror.io"

            [[registry]]
            location = "ghcr.io"
            blocked = true
            """
        },
    )
    assert [r.prefix for r in config.registries] == ["docker.io", "ghcr.io", "quay.io"]
    assert config.registries[0].mirrors == (Mirror("new-mirror.io"),)
    assert config.registries[0].source.endswith("50-mirror.conf")


def test_first_table_wins_for_a_repeated_prefix_within_one_file(tmp_path):
    config = load(
        tmp_path,
        """
        [[registry]]
        prefix = "example.com"
        location = "first.example.com"
        [[registry]]
        prefix = "example.com"
        location = "second.example.com"
        """,
    )
    assert [r.location for r in config.registries] == ["first.example.com"]


def test_only_conf_files_directly_in_the_drop_in_dir_are_read(tmp_path):
    config = load(
        tmp_path,
        "",
        **{
            "a.conf": 'unqualified-search-registries = ["a.io"]',
            "z.conf.disabled": 'unqualified-search-registries = ["disabled.io"]',
            "README": "not toml at all [[[",
            "sub/z.conf": 'unqualified-search-registries = ["sub.io"]',
        },
    )
    assert config.unqualified_search_registries == ("a.io",)


def test_aliases_merge_by_key_and_empty_value_resets(tmp_path):
    config = load(
        tmp_path,
        """
        [aliases]
        "busybox" = "quay.io/main/busybox"
        "ubi8" = "registry.access.redhat.com/ubi8"
        "alpine" = "docker.io/library/alpine"
        """,
        **{
            "000-shortnames.conf": """
            [aliases]
            "busybox" = "docker.io/library/busybox"
            "ubi8" = ""
            """
        },
    )
    assert config.aliases["busybox"].value == Reference("docker.io", "library/busybox")
    assert config.aliases["busybox"].source.endswith("000-shortnames.conf")
    assert config.aliases["ubi8"].value is None
    assert config.aliases["alpine"].value == Reference("docker.io", "library/alpine")
    assert config.aliases["alpine"].source.endswith("registries.conf")


def test_machine_written_aliases_win(tmp_path):
    write(tmp_path / "registries.conf", '[aliases]\n"app" = "quay.io/team/app"\n')
    aliases = write(tmp_path / "short-name-aliases.conf", '[aliases]\n"app" = "ghcr.io/me/app"\n')
    config = RegistriesConfig.load(
        tmp_path / "registries.conf", None, short_name_aliases_path=aliases
    )
    assert config.resolve_short_name("app") == [parse("ghcr.io/me/app:latest")]


# Prefix matching

# prefix, reference, matches
PREFIX_CASES = [
    ("example.com/foo", "example.com/foo/bar:1", True),
    ("example.com/foo", "example.com/foo:tag", True),
    ("example.com/foo", f"example.com/foo@{DIGEST}", True),
    ("example.com/foo", "example.com/foobar:1", False),
    ("example.com/foo", "example.com/fo:1", False),
    ("example.com", "example.com/foo:1", True),
    ("example.com", "sub.example.com/foo:1", False),
    ("example.com", "example.community/foo:1", False),
    # ':' is a boundary, so a host prefix also covers its other ports: a
    # containers/image quirk that CRI-O users get, kept for compatibility.
    ("example.com", "example.com:5000/foo:1", True),
    ("example.com:5000", "example.com/foo:1", False),
    ("example.com/foo:tag", "example.com/foo:tag", True),
    ("example.com/foo:tag", "example.com/foo:tag2", False),
    ("*.example.com", "a.example.com/foo:1", True),
    ("*.example.com", "a.b.example.com/foo:1", True),
    ("*.example.com", "a.example.com:5000/foo:1", True),
    ("*.example.com", "example.com/foo:1", False),
    ("*.example.com", "a.example.com.evil.io/foo:1", False),
    ("*.example.com", "quay.io/a.example.com/foo:1", False),
    ("localhost:5000", "localhost:5000/foo:1", True),
    ("[::1]:5000", "[::1]:5000/foo:1", True),
]


@pytest.mark.parametrize(("prefix", "ref", "matches"), PREFIX_CASES, ids=lambda v: str(v))
def test_prefix_matching(tmp_path, prefix, ref, matches):
    location = "" if prefix.startswith("*.") else 'location = "dest.io"'
    config = load(tmp_path, f'[[registry]]\nprefix = "{prefix}"\n{location}\nblocked = true\n')
    found = config.find_registry(parse(ref))
    assert (found is not None) is matches
    if matches:
        with pytest.raises(PermissionDenied):
            config.pull_sources(parse(ref))
    else:
        assert sources(config, ref) == [(str(parse(ref)), False, False)]


def test_longest_prefix_wins(tmp_path):
    config = load(
        tmp_path,
        """
        [[registry]]
        location = "example.com"
        insecure = true
        [[registry]]
        prefix = "example.com/team"
        location = "team.example.com"
        [[registry]]
        prefix = "example.com/team/app"
        location = "app.example.com/x"
        [[registry]]
        prefix = "*.example.com"
        blocked = true
        """,
    )
    assert sources(config, "example.com/other:1") == [("example.com/other:1", True, False)]
    assert sources(config, "example.com/team/db:1") == [("team.example.com/db:1", False, False)]
    assert sources(config, "example.com/team/app/web:1") == [
        ("app.example.com/x/web:1", False, False)
    ]
    assert sources(config, "example.com/team/app:2") == [("app.example.com/x:2", False, False)]


# Pull sources: mirrors and rewriting

MIRRORS = """
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "all.mirror.io"
insecure = true
[[registry.mirror]]
location = "digest.mirror.io"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tag.mirror.io"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "explicit-all.mirror.io"
pull-from-mirror = "all"
"""


def test_pull_from_mirror_by_tag(tmp_path):
    config = load(tmp_path, MIRRORS)
    assert sources(config, "busybox:1") == [
        ("all.mirror.io/library/busybox:1", True, True),
        ("tag.mirror.io/library/busybox:1", False, True),
        ("explicit-all.mirror.io/library/busybox:1", False, True),
        ("docker.io/library/busybox:1", False, False),
    ]


def test_pull_from_mirror_by_digest(tmp_path):
    config = load(tmp_path, MIRRORS)
    assert sources(config, f"busybox@{DIGEST}") == [
        (f"all.mirror.io/library/busybox@{DIGEST}", True, True),
        (f"digest.mirror.io/library/busybox@{DIGEST}", False, True),
        (f"explicit-all.mirror.io/library/busybox@{DIGEST}", False, True),
        (f"docker.io/library/busybox@{DIGEST}", False, False),
    ]


def test_tag_and_digest_counts_as_a_digest_pull(tmp_path):
    config = load(tmp_path, MIRRORS)
    mirrors = [s for s in config.pull_sources(parse(f"busybox:1@{DIGEST}")) if s.mirror]
    assert [s.reference.domain for s in mirrors] == [
        "all.mirror.io",
        "digest.mirror.io",
        "explicit-all.mirror.io",
    ]


def test_mirror_by_digest_only_skips_mirrors_for_tags(tmp_path):
    config = load(
        tmp_path,
        """
        [[registry]]
        location = "quay.io"
        mirror-by-digest-only = true
        [[registry.mirror]]
        location = "mirror.io/quay"
        """,
    )
    assert sources(config, "quay.io/org/app:1") == [("quay.io/org/app:1", False, False)]
    assert sources(config, f"quay.io/org/app@{DIGEST}") == [
        (f"mirror.io/quay/org/app@{DIGEST}", False, True),
        (f"quay.io/org/app@{DIGEST}", False, False),
    ]


def test_location_rewrites_the_matched_prefix(tmp_path):
    config = load(
        tmp_path,
        """
        [[registry]]
        prefix = "example.com/foo"
        location = "internal.example.com:5000/bar"
        [[registry.mirror]]
        location = "cache.local/example"
        """,
    )
    assert sources(config, "example.com/foo/app:1") == [
        ("cache.local/example/app:1", False, True),
        ("internal.example.com:5000/bar/app:1", False, False),
    ]


def test_wildcard_prefix_without_location_pulls_from_the_matched_host(tmp_path):
    config = load(
        tmp_path,
        """
        [[registry]]
        prefix = "*.internal.io"
        insecure = true
        """,
    )
    assert sources(config, "reg.internal.io/app:1") == [("reg.internal.io/app:1", True, False)]


def test_wildcard_prefix_with_mirror(tmp_path):
    config = load(
        tmp_path,
        """
        [[registry]]
        prefix = "*.internal.io"
        [[registry.mirror]]
        location = "mirror.io"
        """,
    )
    assert sources(config, "reg.internal.io/app:1") == [
        ("mirror.io/app:1", False, True),
        ("reg.internal.io/app:1", False, False),
    ]


def test_blocked_registry_names_registry_and_file(tmp_path):
    config = load(
        tmp_path, "", **{"99-block.conf": '[[registry]]\nlocation = "evil.io"\nblocked = true\n'}
    )
    with pytest.raises(PermissionDenied) as info:
        config.pull_sources(parse("evil.io/app:1"))
    assert "evil.io" in info.value.message
    assert "99-block.conf" in info.value.message
    assert "evil.io/app:1" in info.value.message


def test_rewrite_to_a_non_normalized_name_is_an_error(tmp_path):
    config = load(tmp_path, '[[registry]]\nprefix = "example.com"\nlocation = "docker.io"\n')
    with pytest.raises(InvalidArgument, match="not a normalized name"):
        config.pull_sources(parse("example.com/app:1"))


# Short names

SEARCH = """
unqualified-search-registries = ["registry.fedoraproject.org", "quay.io", "docker.io"]
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"library/alpine" = "docker.io/library/alpine"
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fedora", ["registry.fedoraproject.org/fedora:latest"]),
        ("fedora:39", ["registry.fedoraproject.org/fedora:39"]),
        (f"fedora@{DIGEST}", [f"registry.fedoraproject.org/fedora@{DIGEST}"]),
        (f"fedora:39@{DIGEST}", [f"registry.fedoraproject.org/fedora:39@{DIGEST}"]),
        ("library/alpine:3", ["docker.io/library/alpine:3"]),
        (
            "busybox",
            [
                "registry.fedoraproject.org/busybox:latest",
                "quay.io/busybox:latest",
                "docker.io/library/busybox:latest",
            ],
        ),
        (
            "org/app:2",
            ["registry.fedoraproject.org/org/app:2", "quay.io/org/app:2", "docker.io/org/app:2"],
        ),
        ("quay.io/org/app", ["quay.io/org/app:latest"]),
        ("localhost/app:1", ["localhost/app:1"]),
    ],
)
def test_resolve_short_name(tmp_path, name, expected):
    config = load(tmp_path, SEARCH)
    assert [str(r) for r in config.resolve_short_name(name)] == expected


def test_reset_alias_falls_back_to_search_registries(tmp_path):
    config = load(tmp_path, SEARCH, **{"01.conf": '[aliases]\n"fedora" = ""\n'})
    assert [r.domain for r in config.resolve_short_name("fedora")] == [
        "registry.fedoraproject.org",
        "quay.io",
        "docker.io",
    ]


def test_short_name_without_alias_or_search_registries_explains_the_fix(tmp_path):
    config = load(tmp_path, '[aliases]\n"other" = "quay.io/other"\n')
    with pytest.raises(InvalidArgument) as info:
        config.resolve_short_name("busybox")
    message = info.value.message
    assert "busybox" in message
    assert "unqualified-search-registries" in message
    assert "registries.conf" in message


def test_short_name_errors(tmp_path):
    config = load(tmp_path, SEARCH)
    with pytest.raises(InvalidArgument, match="image ID"):
        config.resolve_short_name("a" * 64)
    with pytest.raises(InvalidArgument):
        config.resolve_short_name("Busybox")
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        config.resolve_short_name("Org/app")


# Invalid files


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[registry]\n", "invalid TOML"),
        ('unqualified-search-registries = "docker.io"', "unqualified-search-registries"),
        ('unqualified-search-registries = ["https://docker.io"]', "docker.io"),
        ('unqualified-search-registries = ["docker.io/library"]', "host[:port]"),
        ('short-name-mode = "prompt"', "short-name-mode"),
        ('registry = "docker.io"', "[[registry]]"),
        ('[[registry]]\nlocation = "quay.io"\ninsecure = "yes"', "registry[0].insecure"),
        ('[[registry]]\nlocation = "quay.io"\nblocked = 1', "registry[0].blocked"),
        ("[[registry]]\ninsecure = true", "neither prefix nor location"),
        ('[[registry]]\nprefix = "quay.io"', "registry[0].location"),
        ('[[registry]]\nlocation = "https://quay.io"', "URI schemes"),
        ('[[registry]]\nlocation = "quay.io/Org"', "registry[0].location"),
        ('[[registry]]\nprefix = "*.example.com/foo"', "wildcard"),
        ('[[registry]]\nprefix = "*.example.com:5000"', "wildcard"),
        ('[[registry]]\nprefix = "example.*.com"\nlocation = "x.io"', "registry[0].prefix"),
        ('[[registry]]\nlocation = "quay.io"\npull-from-mirror = "all"', "registry.mirror"),
        (
            '[[registry]]\nlocation = "quay.io"\n[[registry.mirror]]\ninsecure = true',
            "registry[0].mirror[0].location",
        ),
        (
            '[[registry]]\nlocation = "quay.io"\n[[registry.mirror]]\nlocation = "m.io"\n'
            'pull-from-mirror = "sometimes"',
            "pull-from-mirror",
        ),
        (
            '[[registry]]\nlocation = "quay.io"\nmirror-by-digest-only = true\n'
            '[[registry.mirror]]\nlocation = "m.io"\npull-from-mirror = "tag-only"',
            "mirror-by-digest-only",
        ),
        (
            '[[registry]]\nprefix = "a.io"\nlocation = "quay.io"\n'
            '[[registry]]\nprefix = "b.io"\nlocation = "quay.io"\ninsecure = true',
            "conflicting 'insecure'",
        ),
        ('[registries.search]\nregistries = ["docker.io"]', "version 1"),
        ('aliases = "busybox"', "aliases"),
        ('[aliases]\n"quay.io/busybox" = "quay.io/busybox"', "short name"),
        ('[aliases]\n"busybox:1" = "quay.io/busybox"', "short name"),
        ('[aliases]\n"busybox" = "busybox"', "must name a registry"),
        ('[aliases]\n"busybox" = "quay.io/busybox:1"', "without tag"),
        ('[aliases]\n"busybox" = "quay.io/Busybox"', "not a valid image name"),
        ('[aliases]\n"busybox" = 1', 'aliases."busybox"'),
    ],
)
def test_invalid_main_file_names_file_and_key(tmp_path, text, fragment):
    with pytest.raises(InvalidArgument) as info:
        load(tmp_path, text)
    assert str(tmp_path / "registries.conf") in info.value.message
    assert fragment in info.value.message


def test_invalid_drop_in_names_the_drop_in(tmp_path):
    with pytest.raises(InvalidArgument) as info:
        load(tmp_path, "", **{"10-bad.conf": 'short-name-mode = "loud"'})
    assert "10-bad.conf" in info.value.message


def test_drop_ins_must_be_version_2(tmp_path):
    with pytest.raises(InvalidArgument, match="drop-ins must use version 2"):
        load(tmp_path, "", **{"10-v1.conf": '[registries.block]\nregistries = ["x.io"]'})


def test_unreadable_main_file_is_a_failed_precondition(tmp_path):
    (tmp_path / "registries.conf").mkdir()
    with pytest.raises(FailedPrecondition, match="cannot read"):
        RegistriesConfig.load(tmp_path / "registries.conf")
