"""What the CRI fuzzer found, as plain tests (issue 17): each failed before its fix.

Each test names the finding and the minimal example hypothesis shrank it to.
"""

from __future__ import annotations

import base64
from typing import Any

import cri_fuzz
import grpc
import pytest
from container_e2e import rpc_error
from cri_api.v1 import api_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]


def _pull(t: cri_fuzz.Target, **auth: str) -> Any:
    req = api_pb2.PullImageRequest(
        image=api_pb2.ImageSpec(image=t.image), auth=api_pb2.AuthConfig(**auth)
    )
    return t.img.PullImage(req, timeout=60)


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({"registry_token": "\n"}, "registry_token"),
        ({"registry_token": "tok\r\nX-Injected: 1"}, "registry_token"),
        ({"registry_token": "\u00e9"}, "registry_token"),
        ({"identity_token": "a b"}, "identity_token"),
        ({"auth": "\u00e9"}, "auth"),
        ({"username": "\u00e9\n", "password": "x"}, "username"),
    ],
    ids=["token-newline", "token-crlf", "token-non-ascii", "identity-space", "auth-non-ascii",
         "user-newline"],
)  # fmt: skip
def test_pull_auth_that_cannot_be_a_header_is_invalid_argument(
    target: cri_fuzz.Target, auth: dict[str, str], field: str
) -> None:
    """Finding 1 (known before fuzzing, reproduced by it): INTERNAL "Invalid header value"."""
    err = rpc_error(lambda: _pull(target, **auth))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert f"AuthConfig.{field}" in err.details()
    assert target.d.proc.poll() is None


def test_pull_with_a_non_ascii_user_still_works(target: cri_fuzz.Target) -> None:
    """Non-ASCII user names and passwords are legal (base64 in the header): not refused."""
    b64 = base64.b64encode("j\u00e9r\u00f4me:p\u00e4ss".encode()).decode()
    assert _pull(target, auth=b64).image_ref
    assert _pull(target, username="j\u00e9r\u00f4me", password="p\u00e4ss").image_ref


def test_a_huge_unknown_id_is_not_found_not_a_lost_stream(target: cri_fuzz.Target) -> None:
    """Finding 2: NOT_FOUND echoing a 70 kB id came back as RESOURCE_EXHAUSTED "Stream
    removed (received metadata size exceeds hard limit)". Minimal example:
    ContainerStats(container_id=<the running container's id> + "x" * 70_000)."""
    target.ensure()
    huge = target.container_id + "x" * 70_000
    err = rpc_error(
        lambda: target.rt.ContainerStats(
            api_pb2.ContainerStatsRequest(container_id=huge), timeout=10
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND, (err.code(), err.details()[:200])
    assert len(err.details()) < 5000 and err.details().endswith("more characters)")


def test_cpu_quota_beyond_the_kernel_maximum_is_invalid_argument(target: cri_fuzz.Target) -> None:
    """Finding 3: UpdateContainerResources(linux.cpu_quota=9007199254740993) answered
    INTERNAL from runc (the kernel's EINVAL on cpu.cfs_quota_us)."""
    target.ensure()
    req = api_pb2.UpdateContainerResourcesRequest(
        container_id=target.container_id,
        linux=api_pb2.LinuxContainerResources(cpu_quota=9007199254740993, cpu_shares=512),
    )
    err = rpc_error(lambda: target.rt.UpdateContainerResources(req, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "cpu_quota" in err.details()


def test_an_unknown_namespace_mode_is_invalid_argument(target: cri_fuzz.Target) -> None:
    """Finding 4 (random run, blob b'AEEAQQFBAUE0QQFBAA=='): CreateContainer with
    linux.security_context.namespace_options.network = -1 answered INTERNAL
    "Enum NamespaceMode has no name defined for value -1"."""
    target.ensure()
    req = cri_fuzz.baseline("CreateContainer", target)
    req.config.linux.security_context.namespace_options.network = -1
    err = rpc_error(lambda: target.rt.CreateContainer(req, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "namespace_options.network: mode -1" in err.details()


def test_a_pod_cpuset_longer_than_a_page_is_invalid_argument(target: cri_fuzz.Target) -> None:
    """Finding 5 (random run, blob b'AEEAQQFBAEE1QQJBAA=='): RunPodSandbox with
    config.linux.resources.cpuset_cpus = "x" * 70_000 answered INTERNAL: kernfs
    refuses a write longer than a page with E2BIG, which was not mapped."""
    req = cri_fuzz.baseline("RunPodSandbox", target)
    req.config.linux.resources.cpuset_cpus = "x" * 70_000
    err = rpc_error(lambda: target.rt.RunPodSandbox(req, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()[:300]
    assert "cpuset.cpus" in err.details()
    names = {
        p.metadata.name for p in target.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    }
    assert req.config.metadata.name not in names  # nothing half-made


@pytest.mark.parametrize("field", ["cpu_period", "cpu_shares"])
def test_a_negative_pod_resource_told_to_nri_is_invalid_argument(
    target: cri_fuzz.Target, field: str
) -> None:
    """Finding 14 (after NRI landed): UpdatePodSandboxResources with overhead
    cpu_period=-2**63 answered INTERNAL "Value out of range": NRI's wrapper converts
    the request to NRI's unsigned fields before the core checks it."""
    req = api_pb2.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=target.pod_id,
        overhead=api_pb2.LinuxContainerResources(**{field: -(2**63)}),
    )
    err = rpc_error(lambda: target.rt.UpdatePodSandboxResources(req, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert field in err.details()
