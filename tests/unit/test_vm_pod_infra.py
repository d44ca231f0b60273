"""A runtime driver that builds the pod's sandbox from its first container (a VM) gets
the pod's infra container even with drop_infra_ctr, as CRI-O does for runtime_type vm."""

from __future__ import annotations

from types import SimpleNamespace

from pycrio.config.load import defaults
from pycrio.cri.sandboxes import SandboxService


def _service(drop_infra: bool, driver: object) -> SandboxService:
    config = defaults()
    config.data["runtime"]["drop_infra_ctr"] = drop_infra
    kernel = SimpleNamespace(config=config, runtime_driver=lambda handler: driver)
    return SandboxService(kernel)  # type: ignore[arg-type]


def test_infra_container_when_the_driver_needs_one() -> None:
    pod = SimpleNamespace(runtime_handler="kata")
    vm = SimpleNamespace(needs_pod_sandbox_container=True)
    oci = SimpleNamespace(needs_pod_sandbox_container=False)
    assert _service(True, vm)._needs_infra(pod)  # type: ignore[arg-type]
    assert not _service(True, oci)._needs_infra(pod)  # type: ignore[arg-type]
    assert not _service(True, None)._needs_infra(pod)  # type: ignore[arg-type]
    assert _service(False, oci)._needs_infra(pod)  # type: ignore[arg-type]


def test_runtime_drivers_need_none_by_default() -> None:
    from pycrio.kernel.interfaces import RuntimeDriver

    assert RuntimeDriver.needs_pod_sandbox_container is False
