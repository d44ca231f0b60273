"""Parsing, validating and choosing CNI network configurations (pure)."""

from __future__ import annotations

import json

import pytest

from pycrio_cni.config import (
    ConfigInvalid,
    choose,
    config_files,
    parse_config,
    version_at_least,
)

BRIDGE_LIST = {
    "cniVersion": "1.0.0",
    "name": "net1",
    "plugins": [
        {"type": "bridge", "bridge": "br0", "ipam": {"type": "host-local"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


def dump(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_conflist_is_parsed() -> None:
    conf = parse_config(dump(BRIDGE_LIST), "10-a.conflist")
    assert conf.name == "net1"
    assert conf.cni_version == "1.0.0"
    assert [p["type"] for p in conf.plugins] == ["bridge", "portmap"]
    assert conf.capabilities() == {"portMappings"}
    assert conf.source == "10-a.conflist"
    assert conf.disable_check is False


def test_single_conf_becomes_a_list_of_one() -> None:
    doc = {"cniVersion": "0.4.0", "name": "one", "type": "bridge", "bridge": "br1"}
    conf = parse_config(dump(doc), "a.conf")
    assert conf.name == "one"
    assert conf.plugins == [doc]
    assert conf.raw["plugins"] == [doc]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        ({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}, "name is missing"),
        ({"name": "-bad", "cniVersion": "1.0.0", "plugins": [{"type": "x"}]}, "not a valid"),
        ({"name": "n", "plugins": [{"type": "x"}]}, "cniVersion is missing"),
        ({"name": "n", "cniVersion": "9.9.9", "plugins": [{"type": "x"}]}, "not supported"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": []}, "non-empty"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": [{}]}, "has no type"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": ["x"]}, "not an object"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "../sh"}]}, "not a plugin"),
        ({"name": "n", "cniVersion": "1.0.0", "type": "/bin/sh"}, "not a plugin name"),
        (
            {"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "x", "capabilities": 1}]},
            "capabilities",
        ),
        (
            {
                "name": "n",
                "cniVersion": "1.0.0",
                "disableCheck": "maybe",
                "plugins": [{"type": "x"}],
            },
            "disableCheck",
        ),
        ({"name": "n", "cniVersions": ["7.0.0"], "plugins": [{"type": "x"}]}, "cniVersions"),
    ],
)
def test_invalid_configs_say_why(doc: object, reason: str) -> None:
    data = doc if isinstance(doc, bytes) else dump(doc)
    with pytest.raises(ConfigInvalid, match=reason):
        parse_config(data)


def test_cni_versions_picks_the_highest_supported() -> None:
    doc = {"name": "n", "cniVersions": ["0.4.0", "1.1.0", "2.0.0"], "plugins": [{"type": "x"}]}
    assert parse_config(dump(doc)).cni_version == "1.1.0"


def test_disable_check_accepts_string_and_bool() -> None:
    for value in ("true", True):
        doc = {**BRIDGE_LIST, "disableCheck": value}
        assert parse_config(dump(doc)).disable_check is True


def test_config_files_order_and_filter() -> None:
    names = ["20-b.conf", "10-a.conflist", ".10-tmp.conflist", "README", "05-c.json", "x.conf~"]
    assert config_files(names) == ["05-c.json", "10-a.conflist", "20-b.conf"]


def test_choose_first_valid_by_file_name() -> None:
    second = {**BRIDGE_LIST, "name": "net2"}
    files = [("20-b.conflist", dump(second)), ("10-a.conflist", b"{broken")]
    sel = choose(files)
    assert sel.chosen is not None and sel.chosen.name == "net2"
    assert sel.problems and sel.problems[0].startswith("10-a.conflist: not valid JSON")


def test_choose_by_default_network_name() -> None:
    files = [
        ("10-a.conflist", dump(BRIDGE_LIST)),
        ("20-b.conflist", dump({**BRIDGE_LIST, "name": "wanted"})),
    ]
    assert choose(files, "wanted").chosen.name == "wanted"  # type: ignore[union-attr]
    assert choose(files, "absent").chosen is None


def test_choose_skips_configs_the_check_rejects() -> None:
    files = [
        ("10-a.conflist", dump(BRIDGE_LIST)),
        ("20-b.conflist", dump({**BRIDGE_LIST, "name": "ok"})),
    ]

    def check(conf):  # type: ignore[no-untyped-def]
        return "plugin 'bridge' not found" if conf.name == "net1" else None

    sel = choose(files, check=check)
    assert sel.chosen is not None and sel.chosen.name == "ok"
    assert sel.problems == ["10-a.conflist: plugin 'bridge' not found"]


def test_version_compare() -> None:
    assert version_at_least("1.1.0", "1.0.0")
    assert version_at_least("0.4.0", "0.4.0")
    assert not version_at_least("0.3.1", "0.4.0")
    assert not version_at_least("garbage", "0.1.0")


def test_to_dict_round_trips() -> None:
    conf = parse_config(dump(BRIDGE_LIST))
    again = parse_config(dump(conf.to_dict()))
    assert (again.name, again.cni_version, again.plugins) == (
        conf.name,
        conf.cni_version,
        conf.plugins,
    )


def test_contrib_default_conflist_is_valid() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "contrib" / "cni" / "10-pycrio-bridge.conflist"
    conf = parse_config(path.read_bytes(), path.name)
    assert conf.name == "pycrio"
    assert [p["type"] for p in conf.plugins] == ["bridge", "portmap"]
    assert conf.plugins[0]["bridge"] == "pycrio0"
    assert conf.plugins[0]["ipam"]["ranges"] == [[{"subnet": "10.88.0.0/16"}]]
    assert "portMappings" in conf.capabilities()
