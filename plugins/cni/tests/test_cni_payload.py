"""The exact stdin, CNI_ARGS and environment a plugin gets (pure), and the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pycrio.kernel.interfaces import PodNetwork, PortMapping
from pycrio_cni.cache import CacheEntry, ResultCache
from pycrio_cni.config import parse_config
from pycrio_cni.payload import (
    capability_args,
    cni_args,
    plugin_config,
    plugin_env,
    plugin_stdin,
)

CONF = parse_config(
    json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "net1",
            "plugins": [
                {"type": "bridge", "name": "ignored", "cniVersion": "0.3.0", "bridge": "br0"},
                {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
                {"type": "bandwidth", "capabilities": {"bandwidth": True}},
            ],
        }
    )
)


def pod(**kw: object) -> PodNetwork:
    base: dict = dict(
        pod_id="abc", name="web", namespace="default", uid="u-1", netns_path="/run/netns/x"
    )
    base.update(kw)
    return PodNetwork(**base)


def test_cni_args() -> None:
    assert cni_args(pod()) == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
        "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
    )
    with pytest.raises(ValueError):
        cni_args(pod(name="a;b"))


def test_capability_args() -> None:
    p = pod(
        port_mappings=[
            PortMapping(8080, 80),
            PortMapping(0, 81),  # no host port: documentation only
            PortMapping(5353, 53, "UDP", "127.0.0.1"),
        ],
        bandwidth={"ingressRate": 1000, "egressRate": 2000},
        dns={"servers": ["10.89.0.1"], "searches": [], "options": ["ndots:5"]},
        cgroup_path="/kubepods/pod1",
        annotations={"a": "b"},
    )
    caps = capability_args(p)
    assert caps["portMappings"] == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]
    assert caps["bandwidth"] == {"ingressRate": 1000, "egressRate": 2000}
    assert caps["dns"] == {"servers": ["10.89.0.1"], "options": ["ndots:5"]}
    assert caps["cgroupPath"] == "/kubepods/pod1"
    assert caps["io.kubernetes.cri.pod-annotations"] == {"a": "b"}
    assert capability_args(pod()) == {}


def test_stdin_first_plugin_takes_list_name_and_version() -> None:
    caps = capability_args(pod(port_mappings=[PortMapping(8080, 80)]))
    data = plugin_stdin(CONF, CONF.plugins[0], cap_args=caps)
    assert isinstance(data, bytes)
    assert json.loads(data) == {
        "type": "bridge",
        "name": "net1",
        "cniVersion": "1.0.0",
        "bridge": "br0",
    }


def test_stdin_chains_prev_result_and_only_declared_capabilities() -> None:
    caps = capability_args(pod(port_mappings=[PortMapping(8080, 80)], bandwidth={"ingressRate": 5}))
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.89.0.2/24"}]}
    conf = plugin_config(CONF, CONF.plugins[1], prev_result=prev, cap_args=caps)
    assert conf["prevResult"] == prev
    # bandwidth is false in portmap's capabilities: not sent.
    assert conf["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    }
    bw = plugin_config(CONF, CONF.plugins[2], cap_args=caps)
    assert bw["runtimeConfig"] == {"bandwidth": {"ingressRate": 5}}
    # A capability declared but not offered by the pod leaves runtimeConfig out.
    assert "runtimeConfig" not in plugin_config(CONF, CONF.plugins[1], cap_args={})


def test_stdin_never_forwards_config_supplied_runtime_config() -> None:
    conf = parse_config(
        json.dumps(
            {
                "cniVersion": "0.3.1",
                "name": "n",
                "plugins": [{"type": "x", "runtimeConfig": {"x": 1}, "prevResult": {"y": 2}}],
            }
        )
    )
    out = plugin_config(conf, conf.plugins[0])
    assert "runtimeConfig" not in out and "prevResult" not in out


def test_prev_result_dropped_before_030() -> None:
    conf = parse_config(json.dumps({"cniVersion": "0.2.0", "name": "n", "type": "x"}))
    assert "prevResult" not in plugin_config(conf, conf.plugins[0], prev_result={"a": 1})


def test_env_for_add() -> None:
    env = plugin_env(
        "ADD",
        container_id="abc",
        netns="/run/netns/x",
        ifname="eth0",
        args="IgnoreUnknown=1",
        plugin_dirs=["/opt/cni/bin", "/usr/lib/cni"],
        base={"PATH": "/usr/bin", "CNI_IFNAME": "stale", "HOME": "/root"},
    )
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "abc",
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1",
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
    }


def test_env_for_status_has_no_container_vars_and_a_path() -> None:
    env = plugin_env("STATUS", plugin_dirs=["/d"], base={})
    assert env["CNI_COMMAND"] == "STATUS" and env["CNI_PATH"] == "/d"
    assert "CNI_CONTAINERID" not in env and "CNI_NETNS" not in env
    assert "/usr/sbin" in env["PATH"]


def test_cache_round_trip_and_atomic_files(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path / "results"))
    assert cache.load("abc", "eth0") is None
    entry = CacheEntry("abc", "eth0", "net1", CONF.to_dict(), "K=V", {"portMappings": []}, "/n")
    cache.save(entry)
    entry.result = {"cniVersion": "1.0.0", "ips": []}
    cache.save(entry)
    assert cache.load("abc", "eth0") == entry
    assert os.listdir(tmp_path / "results") == ["abc-eth0.json"]  # no temporaries left
    assert cache.container_ids() == ["abc"]
    cache.delete("abc", "eth0")
    cache.delete("abc", "eth0")
    assert cache.load("abc", "eth0") is None
    with pytest.raises(ValueError):
        cache.path("../etc", "eth0")


def test_cache_ignores_corrupt_entries(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    (tmp_path / "abc-eth0.json").write_text("{garbage")
    assert cache.load("abc", "eth0") is None
