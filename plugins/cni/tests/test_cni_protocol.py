"""The driver's side of the CNI protocol, against small scripted plugins.

These plugins record what they were given (stdin, CNI_ variables) and act as
told by a file next to them, so the order of calls, chaining, the cache,
undo on failure, timeouts and STATUS (which no installed plugin implements
yet: the Debian plugins stop at spec 1.0.0) are checked exactly and without
root. The real plugins are exercised in test_cni_driver.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pycrio import errors
from pycrio.config import defaults
from pycrio.kernel.interfaces import DriverContext, PodNetwork, PortMapping
from pycrio_cni.driver import CNIDriver

FAKE_PLUGIN = r"""#!{python}
import json, os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
name = os.path.basename(sys.argv[0])
cmd = os.environ.get("CNI_COMMAND", "")
data = sys.stdin.read()
conf = json.loads(data) if data.strip() else {{}}
with open(os.path.join(here, "calls.log"), "a") as f:
    env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
    f.write(json.dumps({{"plugin": name, "cmd": cmd, "conf": conf, "env": env}}) + "\n")
version = conf.get("cniVersion", "1.1.0")
supported = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]
def fail(code, msg):
    err = {{"cniVersion": version, "code": code, "msg": msg, "details": "from " + name}}
    print(json.dumps(err))
    sys.exit(1)
if cmd == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": supported}}))
    sys.exit(0)
mode = ""
if os.path.exists(os.path.join(here, name + ".mode")):
    mode = open(os.path.join(here, name + ".mode")).read().strip()
if cmd == "STATUS":
    if os.path.exists(os.path.join(here, "down")):
        fail(50, "backend down")
    sys.exit(0)
if mode == "sleep:" + cmd:
    child = subprocess.Popen(["sleep", "60"])
    open(os.path.join(here, "child.pid"), "w").write(str(child.pid))
    time.sleep(60)
if mode.startswith("fail:" + cmd):
    code = int(mode.split(":")[2]) if mode.count(":") == 2 else 999
    fail(code, "boom")
if cmd == "ADD":
    prev = conf.get("prevResult")
    ifname = os.environ["CNI_IFNAME"]
    if prev is None:
        ips = [] if ifname == "lo" else [
            {{"address": "fd89::9/64", "interface": 0}},
            {{"address": "10.89.0.9/24", "interface": 0}},
        ]
        prev = {{"cniVersion": version, "ips": ips,
                "interfaces": [{{"name": ifname, "sandbox": os.environ["CNI_NETNS"]}}]}}
    print(json.dumps(prev))
"""


class Env:
    """A plugin directory of scripted plugins, a config dir and a state dir."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.netd = tmp / "net.d"
        self.state = tmp / "state"
        self.netns = tmp / "netns"
        for d in (self.bin, self.netd, self.state):
            d.mkdir()
        self.netns.write_text("")
        for name in ("loopback", "first", "second", "third"):
            path = self.bin / name
            path.write_text(FAKE_PLUGIN.format(python=sys.executable))
            path.chmod(0o755)
        self.drivers: list[CNIDriver] = []

    def write_conf(self, name: str = "net1", version: str = "1.0.0", **extra: Any) -> None:
        doc = {
            "cniVersion": version,
            "name": name,
            "plugins": [
                {"type": "first", "ipam": {"type": "none"}},
                {"type": "second", "capabilities": {"portMappings": True}},
            ],
            **extra,
        }
        path = self.netd / "10-test.conflist"
        tmp = self.netd / ".tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def driver(self, **options: Any) -> CNIDriver:
        cfg = defaults()
        cfg.data["network"]["network_dir"] = str(self.netd)
        cfg.data["network"]["plugin_dirs"] = [str(self.bin)]
        ctx = DriverContext("cni", cfg, options, str(self.state), str(self.tmp / "run"))
        drv = CNIDriver(ctx)
        self.drivers.append(drv)
        return drv

    def pod(self, pod_id: str = "pod1", **kw: Any) -> PodNetwork:
        return PodNetwork(pod_id, "web", "default", "uid-1", str(self.netns), **kw)

    def calls(self) -> list[dict[str, Any]]:
        log = self.bin / "calls.log"
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return [c for c in calls if c["cmd"] != "VERSION"]

    def steps(self) -> list[tuple[str, str]]:
        return [(c["plugin"], c["cmd"]) for c in self.calls()]

    def reset(self) -> None:
        (self.bin / "calls.log").unlink(missing_ok=True)

    def mode(self, plugin: str, mode: str | None) -> None:
        path = self.bin / f"{plugin}.mode"
        if mode is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(mode)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    for drv in e.drivers:
        drv.close()


def test_add_chains_results_and_del_runs_in_reverse(env: Env) -> None:
    env.write_conf()
    drv = env.driver()
    assert drv.ready() == (True, "", "")
    assert drv.handles_port_mappings()
    pod = env.pod(port_mappings=[PortMapping(8080, 80)])
    status = drv.setup(pod)
    assert status.ips == ["10.89.0.9", "fd89::9"]
    assert status.interfaces == [{"name": "eth0", "sandbox": str(env.netns)}]
    assert env.steps() == [("loopback", "ADD"), ("first", "ADD"), ("second", "ADD")]
    lo, first, second = env.calls()
    assert lo["env"]["CNI_IFNAME"] == "lo" and lo["conf"]["name"] == "cni-loopback"
    assert first["env"] == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "pod1",
        "CNI_NETNS": str(env.netns),
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
        "K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=uid-1",
        "CNI_PATH": str(env.bin),
    }
    assert "prevResult" not in first["conf"] and "runtimeConfig" not in first["conf"]
    assert first["conf"]["name"] == "net1" and first["conf"]["cniVersion"] == "1.0.0"
    assert second["conf"]["prevResult"]["ips"][1]["address"] == "10.89.0.9/24"
    assert second["conf"]["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    }

    env.reset()
    drv.check(pod)
    assert env.steps() == [("first", "CHECK"), ("second", "CHECK")]
    assert all(c["conf"]["prevResult"]["ips"] for c in env.calls())

    env.reset()
    drv.teardown(pod)
    assert env.steps() == [("second", "DEL"), ("first", "DEL"), ("loopback", "DEL")]
    second_del, first_del, _ = env.calls()
    assert first_del["conf"]["prevResult"] == second_del["conf"]["prevResult"]
    assert second_del["conf"]["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    assert os.listdir(env.state / "results") == []


def test_teardown_after_restart_uses_the_cached_config(env: Env) -> None:
    env.write_conf()
    first = env.driver()
    first.setup(env.pod(port_mappings=[PortMapping(8080, 80)]))
    first.close()
    # The operator replaces the network; the pod must still be deleted from the old one.
    env.write_conf(name="other")
    (env.netd / "10-test.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "third"}]})
    )
    env.reset()
    second = env.driver()
    second.teardown(env.pod())  # no port mappings known after the restart
    assert env.steps() == [("second", "DEL"), ("first", "DEL"), ("loopback", "DEL")]
    del_second = env.calls()[0]
    assert del_second["conf"]["name"] == "net1"
    assert del_second["conf"]["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    assert del_second["env"]["CNI_ARGS"].endswith("K8S_POD_UID=uid-1")


def test_teardown_is_idempotent_and_works_without_netns(env: Env) -> None:
    env.write_conf()
    drv = env.driver()
    pod = env.pod()
    drv.setup(pod)
    env.netns.unlink()
    env.reset()
    drv.teardown(pod)
    # Without the namespace, CNI_NETNS is empty (the spec: release what you can)
    # and lo, which lived in the namespace, is not touched.
    assert env.steps() == [("second", "DEL"), ("first", "DEL")]
    assert all(c["env"]["CNI_NETNS"] == "" for c in env.calls())
    env.reset()
    drv.teardown(pod)  # nothing cached: DEL again with today's config, no prevResult
    assert env.steps() == [("second", "DEL"), ("first", "DEL")]
    assert all("prevResult" not in c["conf"] for c in env.calls())


def test_failed_add_is_undone_and_named(env: Env) -> None:
    env.write_conf()
    env.mode("second", "fail:ADD")
    drv = env.driver()
    with pytest.raises(errors.Internal) as exc:
        drv.setup(env.pod())
    msg = str(exc.value)
    assert "plugin 'second' failed on ADD" in msg and "boom" in msg and "net1" in msg
    assert env.steps() == [
        ("loopback", "ADD"),
        ("first", "ADD"),
        ("second", "ADD"),
        ("second", "DEL"),
        ("first", "DEL"),
        ("loopback", "DEL"),
    ]
    assert os.listdir(env.state / "results") == []


def test_failed_undo_keeps_the_cache_for_a_later_teardown(env: Env) -> None:
    env.write_conf()
    env.mode("second", "fail:ADD")
    env.mode("first", "fail:DEL")
    drv = env.driver()
    with pytest.raises(errors.Internal, match="undoing it failed too"):
        drv.setup(env.pod())
    assert os.listdir(env.state / "results") == ["pod1-eth0.json"]
    with pytest.raises(errors.Internal, match="plugin 'first' failed on DEL"):
        drv.teardown(env.pod())
    env.mode("first", None)
    drv.teardown(env.pod())
    assert os.listdir(env.state / "results") == []


def test_del_container_unknown_is_success(env: Env) -> None:
    env.write_conf()
    drv = env.driver()
    drv.setup(env.pod())
    env.mode("second", "fail:DEL:3")
    drv.teardown(env.pod())
    assert os.listdir(env.state / "results") == []


def test_every_call_has_a_deadline_and_helpers_die_too(env: Env) -> None:
    env.write_conf()
    env.mode("first", "sleep:ADD")
    drv = env.driver(timeout="1s")
    started = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded, match="timed out after 1s"):
        drv.setup(env.pod())
    assert time.monotonic() - started < 15
    child = int((env.bin / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the plugin's helper {child} outlived the timeout")
    assert ("first", "DEL") in env.steps()  # the undo ran


def test_status_feeds_ready_for_110_networks(env: Env) -> None:
    env.write_conf(version="1.1.0")
    drv = env.driver()
    drv.status_ttl = 0
    assert drv.ready() == (True, "", "")
    status_calls = [c for c in env.calls() if c["cmd"] == "STATUS"]
    assert [c["plugin"] for c in status_calls] == ["first", "second"]
    assert set(status_calls[0]["env"]) == {"CNI_COMMAND", "CNI_PATH"}
    assert "runtimeConfig" not in status_calls[1]["conf"]
    (env.bin / "down").write_text("")
    ready, reason, message = drv.ready()
    assert not ready and reason == "NetworkPluginNotReady"
    assert "plugin 'first' failed on STATUS: backend down" in message
    assert "code 50" in message


def test_status_is_cached_between_calls(env: Env) -> None:
    env.write_conf(version="1.1.0")
    drv = env.driver()
    drv.ready()
    drv.ready()
    assert len([c for c in env.calls() if c["cmd"] == "STATUS"]) == 2  # one per plugin


def test_no_status_before_110(env: Env) -> None:
    env.write_conf(version="1.0.0")
    drv = env.driver()
    drv.status_ttl = 0
    assert drv.ready()[0]
    assert not [c for c in env.calls() if c["cmd"] == "STATUS"]


def test_check_respects_disable_check_and_needs_a_record(env: Env) -> None:
    env.write_conf(disableCheck=True)
    drv = env.driver()
    with pytest.raises(errors.NotFound):
        drv.check(env.pod())
    drv.setup(env.pod())
    env.reset()
    drv.check(env.pod())
    assert env.steps() == []
    drv.teardown(env.pod())


def test_unsupported_version_is_skipped_with_reason(env: Env) -> None:
    env.write_conf(version="0.2.0")
    drv = env.driver()
    ready, _, message = drv.ready()
    assert not ready
    assert "plugin 'first' does not support CNI version 0.2.0" in message


def test_missing_binary_keeps_network_not_ready(env: Env) -> None:
    (env.netd / "10-x.conflist").write_text(
        json.dumps(
            {"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "pycrio-no-such-plugin"}]}
        )
    )
    drv = env.driver()
    ready, reason, message = drv.ready()
    assert (ready, reason) == (False, "NetworkPluginNotReady")
    assert f"no CNI configuration file in {env.netd}" in message
    assert "plugin 'pycrio-no-such-plugin' not found" in message
    with pytest.raises(errors.Unavailable, match="pycrio-no-such-plugin"):
        drv.setup(env.pod())
    assert env.steps() == []


def test_default_network_name_is_honoured(env: Env) -> None:
    env.write_conf(name="net1")
    drv = env.driver()
    assert drv.ready()[0]
    cfg = defaults()
    cfg.data["network"].update(
        network_dir=str(env.netd), plugin_dirs=[str(env.bin)], cni_default_network="wanted"
    )
    named = CNIDriver(DriverContext("cni", cfg, {}, str(env.state), str(env.tmp)))
    env.drivers.append(named)
    ready, _, message = named.ready()
    assert not ready and "for network 'wanted'" in message


def test_host_network_and_bad_ids(env: Env) -> None:
    env.write_conf()
    drv = env.driver()
    host = PodNetwork("pod2", "h", "default", "u", "")
    assert drv.setup(host).ips == []
    assert env.steps() == []
    with pytest.raises(errors.InvalidArgument):
        drv.setup(env.pod(pod_id="../../etc"))
    with pytest.raises(errors.FailedPrecondition):
        drv.setup(PodNetwork("pod3", "n", "default", "u", str(env.tmp / "gone")))


def test_bad_timeout_option_is_refused(env: Env) -> None:
    with pytest.raises(ValueError, match="duration"):
        env.driver(timeout="soon")
