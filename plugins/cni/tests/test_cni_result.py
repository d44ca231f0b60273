"""Reading plugin output: results of every version, errors, VERSION (pure)."""

from __future__ import annotations

import json

import pytest

from pycrio_cni.result import ResultInvalid, parse_error, parse_result, parse_versions

RESULT_100 = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "00:11:22:33:44:55"},
        {"name": "veth1", "mac": "55:44:33:22:11:11"},
        {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/run/netns/x"},
    ],
    "ips": [
        {"address": "fd89::5/64", "gateway": "fd89::1", "interface": 2},
        {"address": "10.89.0.5/24", "gateway": "10.89.0.1", "interface": 2},
        {"address": "10.89.0.1/24", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {"nameservers": ["10.89.0.1"]},
}


def test_result_100_ipv4_first_sandbox_only() -> None:
    res = parse_result(json.dumps(RESULT_100).encode())
    assert res.cni_version == "1.0.0"
    assert res.pod_ips() == ["10.89.0.5", "fd89::5"]
    assert res.interfaces[2]["name"] == "eth0"
    assert res.routes == [{"dst": "0.0.0.0/0"}]
    assert res.dns == {"nameservers": ["10.89.0.1"]}
    assert res.raw == RESULT_100


def test_result_040_with_version_fields() -> None:
    doc = {
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"version": "4", "address": "10.89.0.7/24", "interface": 0}],
    }
    assert parse_result(json.dumps(doc)).pod_ips() == ["10.89.0.7"]


def test_result_without_interface_indexes_takes_all() -> None:
    doc = {"cniVersion": "1.0.0", "ips": [{"address": "10.89.0.9/24"}, {"address": "::1/128"}]}
    assert parse_result(doc).pod_ips() == ["10.89.0.9", "::1"]


def test_result_020_shape() -> None:
    doc = {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.89.0.3/24", "gateway": "10.89.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "ip6": {"ip": "fd89::3/64"},
    }
    res = parse_result(doc)
    assert res.pod_ips() == ["10.89.0.3", "fd89::3"]
    assert res.routes == [{"dst": "0.0.0.0/0"}]


def test_duplicate_addresses_are_reported_once() -> None:
    doc = {"cniVersion": "1.0.0", "ips": [{"address": "10.89.0.9/24"}, {"address": "10.89.0.9/16"}]}
    assert parse_result(doc).pod_ips() == ["10.89.0.9"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1]",
        b'{"ips": [{"address": "nonsense"}]}',
        b'{"ips": [{"gateway": "10.0.0.1"}]}',
        b'{"ips": "x"}',
        b'{"ips": [{"address": "10.0.0.2/8", "interface": "0"}]}',
        b'{"interfaces": [1]}',
    ],
)
def test_invalid_results(data: bytes) -> None:
    with pytest.raises(ResultInvalid):
        parse_result(data)


def test_error_json() -> None:
    out = b'{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no subnet"}'
    info = parse_error(out, b"", 1)
    assert (info.code, info.msg, info.details) == (7, "invalid config", "no subnet")
    assert info.text() == "invalid config; no subnet (code 7: invalid network config)"


def test_error_plugin_specific_code() -> None:
    info = parse_error(b'{"code": 999, "msg": "boom"}')
    assert info.text() == "boom (code 999)"


def test_error_text_on_stderr() -> None:
    info = parse_error(b"", b"panic: runtime error\n", 2)
    assert info.code == 0
    assert info.text() == "panic: runtime error"


def test_error_nothing_at_all() -> None:
    assert "status 2" in parse_error(b"", b"", 2).text()


def test_error_long_text_is_truncated() -> None:
    info = parse_error(b"x" * 10000)
    assert len(info.msg) < 2100 and info.msg.startswith("...")


def test_versions() -> None:
    out = b'{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'
    assert parse_versions(out) == ["0.4.0", "1.0.0"]
    with pytest.raises(ResultInvalid):
        parse_versions(b'{"cniVersion":"1.0.0"}')
