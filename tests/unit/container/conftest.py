"""Fixtures for the OCI spec tests: a fake rootfs and a builder of SpecInputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from pycrio.container.spec import HostFacts, SpecInputs
from pycrio.image.manifest import ImageConfig

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
broken line
"""
GROUP = """\
root:x:0:
daemon:x:1:
alice:x:1000:
bob:x:1001:
wheel:x:10:alice,bob
audio:x:29:alice
"""

HOST = HostFacts(
    machine="x86_64",
    last_cap=40,
    cgroup_v2=False,
    swap_accounting=True,
    apparmor_enabled=False,
    oom_score_adj_floor=None,
    mountinfo="",
)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A rootfs with /etc/passwd and /etc/group only."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


def make_config(**linux_sc: Any) -> api_pb2.ContainerConfig:
    """A minimal valid ContainerConfig; security context fields from kwargs."""
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app", attempt=1),
        image=api_pb2.ImageSpec(image="busybox:latest"),
    )
    sc = config.linux.security_context
    for key, value in linux_sc.items():
        if isinstance(value, list):
            getattr(sc, key).extend(value)
        elif key in ("run_as_user", "run_as_group"):
            getattr(sc, key).value = value
        else:
            setattr(sc, key, value)
    return config


def make_sandbox(privileged: bool = False) -> api_pb2.PodSandboxConfig:
    sandbox = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="pod", namespace="ns", uid="uid-1", attempt=0),
        hostname="pod-host",
    )
    sandbox.linux.security_context.privileged = privileged
    return sandbox


@pytest.fixture
def make_inputs(rootfs: Path) -> Callable[..., SpecInputs]:
    """Factory: make_inputs(config=None, image=None, **SpecInputs overrides)."""

    def factory(
        config: api_pb2.ContainerConfig | None = None,
        image: ImageConfig | None = None,
        **overrides: Any,
    ) -> SpecInputs:
        inputs = SpecInputs(
            config=config or make_config(),
            sandbox_config=make_sandbox(),
            container_id="c0ffee",
            image_config=image or ImageConfig(architecture="amd64", os="linux", cmd=("sh",)),
            rootfs=str(rootfs),
            sandbox_id="5a4d",
            sandbox_name="k8s_POD_pod_ns_uid-1_0",
            image_name="docker.io/library/busybox:latest",
            image_id="sha256:" + "a" * 64,
            host=HOST,
            created="2024-01-01T00:00:00Z",
        )
        return dataclasses.replace(inputs, **overrides)

    return factory


@pytest.fixture
def config_factory() -> Callable[..., api_pb2.ContainerConfig]:
    return make_config


@pytest.fixture
def sandbox_factory() -> Callable[..., api_pb2.PodSandboxConfig]:
    return make_sandbox
