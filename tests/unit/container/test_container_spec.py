"""build_spec end to end: the pieces put together, and a spec real runc accepts."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from pycrio.container import annotations as ann
from pycrio.container.spec import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    HostFacts,
    SpecInputs,
    build_spec,
    container_name,
)
from pycrio.errors import InvalidArgument
from pycrio.image.manifest import ImageConfig

Inputs = Callable[..., SpecInputs]
Factory = Callable[..., Any]


def test_simple_spec_shape(make_inputs: Inputs, rootfs: Path) -> None:
    spec = build_spec(make_inputs())
    assert spec["ociVersion"] == "1.0.2"
    assert spec["root"] == {"path": str(rootfs), "readonly": False}
    proc = spec["process"]
    assert proc["args"] == ["sh"]
    assert proc["cwd"] == "/"
    assert proc["terminal"] is False
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576}]
    assert proc["oomScoreAdj"] == 0
    assert proc["noNewPrivileges"] is False
    assert "HOSTNAME=pod-host" in proc["env"] and "HOME=/root" in proc["env"]
    assert proc["env"][0].startswith("PATH=")
    assert "apparmorProfile" not in proc
    assert proc["capabilities"]["bounding"] == [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    ]  # fmt: skip
    assert spec["hostname"] == "pod-host"
    linux = spec["linux"]
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert linux["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert "seccomp" not in linux  # no profile asked: Unconfined
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/dev/shm",
    ]  # fmt: skip
    json.dumps(spec)  # serialisable as config.json


def test_image_and_cri_process_fields(make_inputs: Inputs, config_factory: Factory) -> None:
    config = config_factory(run_as_username="alice", no_new_privs=True)
    config.command.append("/bin/app")
    config.args.extend(["--flag"])
    config.working_dir = "/srv"
    config.tty = True
    config.envs.add(key="B", value="cri")
    image = ImageConfig(
        architecture="amd64",
        os="linux",
        env=("PATH=/img", "B=img", "C=img"),
        entrypoint=("/entry",),
        cmd=("x",),
        working_dir="/img",
    )
    proc = build_spec(make_inputs(config=config, image=image))["process"]
    assert proc["args"] == ["/bin/app", "--flag"]
    assert proc["env"] == ["HOSTNAME=pod-host", "PATH=/img", "B=cri", "C=img", "HOME=/home/alice"]
    assert proc["cwd"] == "/srv"
    assert proc["terminal"] is True
    assert proc["noNewPrivileges"] is True
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 10, 29]}


def test_readonly_rootfs_and_pod_files(make_inputs: Inputs, config_factory: Factory) -> None:
    spec = build_spec(
        make_inputs(
            config=config_factory(readonly_rootfs=True),
            hostname_path="/run/p/hostname",
            hosts_path="/run/p/hosts",
            resolv_conf_path="/run/p/resolv.conf",
            shm_path="/run/p/shm",
        )
    )
    assert spec["root"]["readonly"] is True
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    assert by_dest["/etc/hosts"]["source"] == "/run/p/hosts"
    assert "ro" in by_dest["/etc/resolv.conf"]["options"]
    assert by_dest["/dev/shm"]["source"] == "/run/p/shm"
    assert spec["annotations"][ann.RESOLV_PATH] == "/run/p/resolv.conf"


def test_cri_mount_over_pod_file_wins(
    make_inputs: Inputs, config_factory: Factory, tmp_path: Path
) -> None:
    hosts = tmp_path / "kubelet-hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    config = config_factory()
    config.mounts.add(container_path="/etc/hosts", host_path=str(hosts))
    spec = build_spec(make_inputs(config=config, hosts_path="/run/p/hosts"))
    sources = [m["source"] for m in spec["mounts"] if m["destination"] == "/etc/hosts"]
    assert sources == [str(hosts)]


def test_image_volumes_created_unless_mounted(
    make_inputs: Inputs, config_factory: Factory, rootfs: Path, tmp_path: Path
) -> None:
    config = config_factory()
    config.mounts.add(container_path="/covered", host_path=str(tmp_path))
    image = ImageConfig(
        architecture="amd64", os="linux", cmd=("sh",), volumes=("/data", "/covered")
    )
    build_spec(make_inputs(config=config, image=image))
    assert (rootfs / "data").is_dir()
    assert not (rootfs / "covered").exists()


def test_privileged(make_inputs: Inputs, config_factory: Factory, sandbox_factory: Factory) -> None:
    config = config_factory(privileged=True, masked_paths=["/proc/kcore"])
    config.linux.security_context.seccomp.profile_type = api_pb2.SecurityProfile.RuntimeDefault
    spec = build_spec(make_inputs(config=config, sandbox_config=sandbox_factory(privileged=True)))
    linux = spec["linux"]
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert "seccomp" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert len(spec["process"]["capabilities"]["bounding"]) == 41
    assert any(d["path"] == "/dev/null" for d in linux["devices"])
    assert all(not d["path"].startswith("/dev/pts/") for d in linux["devices"])


def test_privileged_needs_privileged_sandbox(make_inputs: Inputs, config_factory: Factory) -> None:
    with pytest.raises(InvalidArgument, match="privileged"):
        build_spec(make_inputs(config=config_factory(privileged=True)))


def test_masked_and_readonly_paths_given(make_inputs: Inputs, config_factory: Factory) -> None:
    config = config_factory(masked_paths=["/proc/kcore"], readonly_paths=["/proc/sys"])
    linux = build_spec(make_inputs(config=config))["linux"]
    assert linux["maskedPaths"] == ["/proc/kcore"]
    assert linux["readonlyPaths"] == ["/proc/sys"]
    with pytest.raises(InvalidArgument, match="masked_paths: 'proc'"):
        build_spec(make_inputs(config=config_factory(masked_paths=["proc"])))


def test_runtime_default_seccomp_follows_capabilities(
    make_inputs: Inputs, config_factory: Factory
) -> None:
    config = config_factory()
    sc = config.linux.security_context
    sc.seccomp.profile_type = api_pb2.SecurityProfile.RuntimeDefault
    sc.capabilities.add_capabilities.append("SYS_ADMIN")
    seccomp = build_spec(make_inputs(config=config))["linux"]["seccomp"]
    allowed = {
        n for r in seccomp["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]
    }
    assert "mount" in allowed
    assert seccomp["architectures"][0] == "SCMP_ARCH_X86_64"


def test_apparmor_when_host_has_it(make_inputs: Inputs) -> None:
    host = dataclasses.replace(
        make_inputs().host, apparmor_enabled=True, apparmor_profiles=frozenset({"pycrio-default"})
    )
    assert build_spec(make_inputs(host=host))["process"]["apparmorProfile"] == "pycrio-default"


def test_namespaces_hostname_and_host_network(make_inputs: Inputs, config_factory: Factory) -> None:
    pins = {"net": "/run/ns/net", "ipc": "/run/ns/ipc", "uts": "/run/ns/uts"}
    spec = build_spec(make_inputs(namespace_paths=pins, cgroups_path="pod.slice:crio:c0ffee"))
    assert {"type": "network", "path": "/run/ns/net"} in spec["linux"]["namespaces"]
    assert spec["linux"]["cgroupsPath"] == "pod.slice:crio:c0ffee"
    # the container's own options do not take it out of its pod's namespaces
    config = config_factory()
    config.linux.security_context.namespace_options.network = api_pb2.NODE
    config.linux.security_context.namespace_options.ipc = api_pb2.NODE
    in_pod = build_spec(make_inputs(config=config, namespace_paths=pins))
    assert {"type": "network", "path": "/run/ns/net"} in in_pod["linux"]["namespaces"]
    assert {"type": "ipc", "path": "/run/ns/ipc"} in in_pod["linux"]["namespaces"]
    assert in_pod["hostname"] == "pod-host"
    # a host-network pod: its containers are on the host's network and UTS, whatever
    # their options say (here the defaults, POD)
    host_kinds = frozenset({"net", "uts"})
    host_net = build_spec(
        make_inputs(namespace_paths={"ipc": "/run/ns/ipc"}, pod_host_namespaces=host_kinds)
    )
    assert "hostname" not in host_net
    types = {n["type"] for n in host_net["linux"]["namespaces"]}
    assert "network" not in types and "uts" not in types
    assert {"type": "ipc", "path": "/run/ns/ipc"} in host_net["linux"]["namespaces"]
    assert not any(e.startswith("HOSTNAME=") for e in host_net["process"]["env"])
    host_ipc = build_spec(make_inputs(namespace_paths=pins, pod_host_namespaces=frozenset({"ipc"})))
    assert "ipc" not in {n["type"] for n in host_ipc["linux"]["namespaces"]}


def test_rlimits_clamped_without_sys_resource(
    make_inputs: Inputs, caplog: pytest.LogCaptureFixture
) -> None:
    host = dataclasses.replace(make_inputs().host, rlimit_ceilings={"RLIMIT_NOFILE": 524288})
    spec = build_spec(make_inputs(host=host))
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 524288, "hard": 524288}]
    assert "RLIMIT_NOFILE 1048576" in caplog.text
    with pytest.raises(InvalidArgument, match="rlimit RLIMIT_NOFILE"):
        build_spec(make_inputs(rlimits=(("RLIMIT_NOFILE", 10, 5),)))


def test_resources_and_oom_clamp(make_inputs: Inputs, config_factory: Factory) -> None:
    config = config_factory()
    config.linux.resources.cpu_shares = 1024
    config.linux.resources.memory_limit_in_bytes = 128 * 1024 * 1024
    config.linux.resources.oom_score_adj = -997
    host = dataclasses.replace(make_inputs().host, oom_score_adj_floor=0)
    spec = build_spec(make_inputs(config=config, host=host))
    assert spec["process"]["oomScoreAdj"] == 0
    assert spec["linux"]["resources"]["cpu"] == {"shares": 1024}
    assert spec["linux"]["resources"]["memory"]["limit"] == 128 * 1024 * 1024


def test_devices_in_spec(make_inputs: Inputs, config_factory: Factory) -> None:
    config = config_factory()
    config.devices.add(host_path="/dev/null", container_path="/dev/mynull", permissions="rw")
    linux = build_spec(make_inputs(config=config))["linux"]
    assert linux["devices"][0]["path"] == "/dev/mynull"
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert linux["resources"]["devices"][1]["access"] == "rw"


def test_annotations(make_inputs: Inputs, config_factory: Factory) -> None:
    config = config_factory()
    config.annotations["example.com/a"] = "1"
    config.annotations[ann.SANDBOX_ID] = "spoofed"
    config.labels["io.kubernetes.container.name"] = "app"
    image = ImageConfig(architecture="amd64", os="linux", cmd=("sh",), stop_signal="SIGQUIT")
    spec = build_spec(make_inputs(config=config, image=image, log_path="/var/log/pods/x/app/1.log"))
    a = spec["annotations"]
    assert a["example.com/a"] == "1"
    assert a[ann.SANDBOX_ID] == "5a4d"  # the kubelet cannot override pycrio's keys
    assert a[ann.CONTAINER_ID] == "c0ffee"
    assert a[ann.CONTAINER_NAME] == "k8s_app_pod_ns_uid-1_1"
    assert a[ann.CONTAINER_TYPE] == "container"
    assert a[ann.SANDBOX_NAME] == "k8s_POD_pod_ns_uid-1_0"
    assert a[ann.USER_REQUESTED_IMAGE] == "busybox:latest"
    assert a[ann.IMAGE_NAME] == "docker.io/library/busybox:latest"
    assert a[ann.IMAGE_REF] == "sha256:" + "a" * 64
    assert a[ann.KUBE_POD_NAME] == "pod"
    assert a[ann.KUBE_POD_NAMESPACE] == "ns"
    assert a[ann.KUBE_POD_UID] == "uid-1"
    assert a[ann.KUBE_CONTAINER_NAME] == "app"
    assert a[ann.LOG_PATH] == "/var/log/pods/x/app/1.log"
    assert a[ann.STOP_SIGNAL] == "SIGQUIT"
    assert a[ann.SECCOMP_PROFILE_PATH] == "unconfined"
    assert json.loads(a[ann.METADATA]) == {"name": "app", "attempt": 1}
    assert json.loads(a[ann.ANNOTATIONS])[ann.SANDBOX_ID] == "spoofed"
    assert all(isinstance(v, str) for v in a.values())


def test_container_name_like_crio(config_factory: Factory, sandbox_factory: Factory) -> None:
    assert container_name(config_factory(), sandbox_factory()) == "k8s_app_pod_ns_uid-1_1"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.metadata.ClearField("name"), "metadata.name"),
        (lambda c: c.mounts.add(container_path="x", host_path="/"), "container_path: 'x'"),
        (lambda c: c.devices.add(host_path="/dev/none", container_path="/dev/n"), "/dev/none"),
        (lambda c: c.linux.security_context.capabilities.add_capabilities.append("BOGUS"),
         "unknown capability 'BOGUS'"),
        (lambda c: setattr(c.linux.resources, "oom_score_adj", -2000), "oom_score_adj"),
        (lambda c: setattr(c.linux.security_context, "run_as_username", "zed"), "'zed'"),
        (lambda c: setattr(c, "working_dir", "rel"), "working_dir"),
    ],
)  # fmt: skip
def test_invalid_fields(
    make_inputs: Inputs, config_factory: Factory, mutate: Callable[[Any], Any], message: str
) -> None:
    config = config_factory()
    mutate(config)
    with pytest.raises(InvalidArgument, match=message):
        build_spec(make_inputs(config=config))


def test_missing_rootfs(make_inputs: Inputs, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="rootfs"):
        build_spec(make_inputs(rootfs=str(tmp_path / "nope")))


def test_host_facts_detect() -> None:
    facts = HostFacts.detect()
    assert facts.last_cap >= 36
    assert facts.machine


# --- real runc ---------------------------------------------------------------

RUNC = shutil.which("runc")
BUSYBOX = shutil.which("busybox")


@pytest.mark.integration
@pytest.mark.skipif(RUNC is None or BUSYBOX is None, reason="needs runc and busybox")
@pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root")
def test_runc_runs_the_spec(tmp_path: Path, config_factory: Factory) -> None:
    """A busybox container from build_spec runs under runc with the expected identity."""
    rootfs = tmp_path / "bundle" / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")  # type: ignore[arg-type]
    for tool in ("sh", "id", "cat", "hostname", "grep"):
        os.symlink("busybox", rootfs / "bin" / tool)
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\nalice:x:1000:\nwheel:x:10:alice\n")
    config = config_factory(run_as_username="alice", readonly_rootfs=True)
    config.linux.security_context.seccomp.profile_type = api_pb2.SecurityProfile.RuntimeDefault
    script = (
        "id; hostname; grep -E '^(CapBnd|Seccomp):' /proc/self/status; "
        "(echo x > /probe) 2>/dev/null && echo writable || echo readonly"
    )
    config.command.extend(["/bin/sh", "-c", script])
    host = HostFacts.detect()
    inputs = SpecInputs(
        config=config,
        sandbox_config=api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name="p", namespace="n", uid="u"),
            hostname="spec-test",
        ),
        container_id="specrunc",
        image_config=ImageConfig(architecture="amd64", os="linux"),
        rootfs=str(rootfs),
        sandbox_id="sb",
        host=host,
    )
    spec = build_spec(inputs)
    (tmp_path / "bundle" / "config.json").write_text(json.dumps(spec))
    state = tmp_path / "state"
    runc = [RUNC, "--root", str(state)]
    try:
        result = subprocess.run(
            [*runc, "run", "--bundle", str(tmp_path / "bundle"), "specrunc"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        subprocess.run([*runc, "delete", "--force", "specrunc"], capture_output=True, timeout=30)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "uid=1000(alice) gid=1000(alice)" in out
    assert "10(wheel)" in out
    assert "spec-test" in out
    # CRI-O's 9 default capabilities: bits 0,1,3,4,5,6,7,8,10
    assert "CapBnd:\t00000000000005fb" in out
    assert "Seccomp:\t2" in out  # RuntimeDefault filter installed
    assert "readonly" in out and "writable" not in out


def test_shim_v2_runtimes_read_containerds_annotations(
    make_inputs: Inputs, config_factory: Factory
) -> None:
    """containerd's names for the pod facts (shims group by sandbox id; Kata reads both sets)."""
    config = config_factory()
    config.annotations[ann.CRI_SANDBOX_ID] = "spoofed"
    a = build_spec(make_inputs(config=config))["annotations"]
    assert (a[ann.CRI_SANDBOX_ID], a[ann.CRI_CONTAINER_TYPE]) == ("5a4d", "container")
    assert (a[ann.CRI_SANDBOX_NAME], a[ann.CRI_SANDBOX_NAMESPACE]) == ("pod", "ns")
    infra = build_spec(make_inputs(config=config_factory(), infra=True))["annotations"]
    assert infra[ann.CONTAINER_TYPE] == infra[ann.CRI_CONTAINER_TYPE] == "sandbox"


def test_privileged_without_host_devices(
    make_inputs: Inputs, config_factory: Factory, sandbox_factory: Factory
) -> None:
    config = config_factory(privileged=True)
    inputs = make_inputs(
        config=config,
        sandbox_config=sandbox_factory(privileged=True),
        privileged_without_host_devices=True,
    )
    linux = build_spec(inputs)["linux"]
    assert "devices" not in linux  # no host device nodes in the container
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
