"""Fixtures of the e2e tier: a container daemon and its pods, extra registry images.

``crio`` is a daemon per test module with the standard busybox and multilayer
images pulled, and ``pod`` a host-network pod per test in it, removed after
the test with a check that nothing of its containers is left. A module that
needs another daemon defines its own ``crio``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import image_e2e
import pytest
import registry_env
import runtime_mode
from container_e2e import Pod, module_daemon, pod_per_test
from daemon import DaemonProcess

#: Static in Debian's catatonit package; pycrio runs it as its pods' init too.
CATATONIT = "/usr/bin/catatonit"


@pytest.fixture(scope="session")
def pause_image(
    registry: registry_env.RegistryServer, tmp_path_factory: pytest.TempPathFactory
) -> registry_env.PushedImage:
    """A pause image of our own: the host's static catatonit as /pause, run as ``/pause -P``.

    For pods with an infra container (those of a VM handler always have one).
    Like registry.k8s.io/pause it only waits, and shows as ``pause`` in the
    pod's shared PID namespace (a busybox ``sleep`` would trip tests and pgrep).
    """
    catatonit = Path(CATATONIT)
    if not catatonit.is_file():
        pytest.skip(f"{CATATONIT} is missing (Debian package catatonit)")
    work = tmp_path_factory.mktemp("pause")
    layout = registry_env.OCILayout(work / "layout")
    base = registry_env.compress_layer(registry_env.busybox_rootfs_tar())
    pause = registry_env.compress_layer(
        registry_env.make_tar({"pause": catatonit.read_bytes()}, modes={"pause": 0o755})
    )
    built = layout.build_image(
        [base, pause], tag="pause", config={"Entrypoint": ["/pause", "-P"], "Cmd": None}
    )
    return registry_env.push(
        registry_env.Skopeo(work / "skopeo"), layout, "pause", registry,
        "pycrio-test/pause", "1", built=built,
    )  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def shimv2_mode(request: pytest.FixtureRequest) -> None:
    """PYCRIO_TEST_RUNTIME=shimv2: every daemon names the pause image (see runtime_mode.py).

    Skips the whole e2e tier, with the reason, when the shim or the ``vm``
    driver is missing: the mode was asked for and cannot be given.
    """
    if not runtime_mode.shimv2():
        return
    reason = runtime_mode.shim_missing_reason()
    if reason:
        pytest.skip(f"{runtime_mode.ENV}=shimv2 but {reason}")
    registry = request.getfixturevalue("registry")
    runtime_mode.pause_image = request.getfixturevalue("pause_image").name
    runtime_mode.registries_conf = image_e2e.insecure(registry.host)


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory, registry: Any, images: Any
) -> Iterator[DaemonProcess]:
    with module_daemon(
        tmp_path_factory.mktemp("crio"),
        registry.host,
        [images.busybox.name, images.multilayer.name],
    ) as d:
        yield d


@pytest.fixture
def pod(crio: DaemonProcess, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pod]:
    with pod_per_test(crio, tmp_path, request.node.name) as p:
        yield p


@pytest.fixture(scope="session")
def extra_images(
    registry: registry_env.RegistryServer,
    images: registry_env.TestImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> image_e2e.ExtraImages:
    """Whiteout and user-name images, plus the layout and skopeo to push more."""
    return image_e2e.build_extra_images(tmp_path_factory.mktemp("extra-images"), registry)


@pytest.fixture(scope="session")
def mirror_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[registry_env.RegistryServer]:
    """A second plain-HTTP registry holding only ``pycrio-test/busybox:latest``.

    The same bytes as the standard busybox image, so it can serve as a mirror
    of ``registry`` for that image (and lacks every other one).
    """
    if registry_env.missing_tools_reason():
        pytest.skip(registry_env.missing_tools_reason() or "")
    workdir = tmp_path_factory.mktemp("mirror-registry")
    with registry_env.running_registry(workdir / "reg") as reg:
        layout = registry_env.OCILayout(workdir / "layout")
        base = registry_env.compress_layer(registry_env.busybox_rootfs_tar())
        built = layout.build_image([base], tag="busybox")
        registry_env.push(
            registry_env.Skopeo(workdir / "skopeo"), layout, "busybox", reg,
            "pycrio-test/busybox", "latest", built=built,
        )  # fmt: skip
        yield reg
