"""Fixtures shared by every test tier.

tests/support holds the harness (a daemon process, a registry, test images);
it is put on sys.path here because the test directories are not packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import registry_env  # noqa: E402
from daemon import DaemonProcess  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
TEST_DISTS = ("pycrio-test-good", "pycrio-test-bad", "pycrio-test-driver")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the test plugin distributions are really installed.

    Installed with pip (dist-info, entry_points.txt and all) so discovery is
    exercised exactly as for a wheel on a node, but outside the project's
    virtualenv; put it on PYTHONPATH or sys.path to make them visible.
    """
    site = tmp_path_factory.mktemp("plugin-site")
    dists = [str(FIXTURES / "dists" / name) for name in TEST_DISTS]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            *dists,
        ],
        check=True,
        timeout=300,
    )
    return site


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator:
    """Factory: start_daemon(*args, env=None, wait=True, config="", dropins=None)."""
    started: list[DaemonProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        config: str = "",
        dropins: dict[str, str] | None = None,
    ) -> DaemonProcess:
        full_env = {**os.environ, **(env or {})}
        d = DaemonProcess(tmp_path, list(args), full_env)
        d.config.write_text(config)
        for name, text in (dropins or {}).items():
            (d.config_dir / name).write_text(text)
        started.append(d)
        return d.start(wait=wait)

    yield start
    # a teardown that fails still stops every daemon (or they leak, mounts and all);
    # the first failure is raised once all are stopped
    failures: list[BaseException] = []
    for d in started:
        try:
            if d.proc is not None and d.proc.poll() is None:
                d.remove_all_pods()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the stops
            failures.append(e)
        d.stop()
    if failures:
        raise failures[0]


def _require_tools() -> None:
    reason = registry_env.missing_tools_reason()
    if reason:
        pytest.skip(reason)


def _start(workdir: Path, **kwargs: object) -> registry_env.RegistryServer:
    try:
        return registry_env.RegistryServer(workdir, **kwargs).start()  # type: ignore[arg-type]
    except registry_env.Unsupported as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registry_env.RegistryServer]:
    """A plain-HTTP registry without auth (clients need ``insecure=True``)."""
    _require_tools()
    reg = _start(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop_all()


@pytest.fixture(scope="session")
def auth_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[registry_env.RegistryServer]:
    """A plain-HTTP registry with htpasswd (Basic) auth; ``.username`` / ``.password``."""
    _require_tools()
    reg = _start(tmp_path_factory.mktemp("auth-registry"), auth="htpasswd")
    yield reg
    reg.stop_all()


@pytest.fixture(scope="session")
def images(
    registry: registry_env.RegistryServer, tmp_path_factory: pytest.TempPathFactory
) -> registry_env.TestImages:
    """The standard image set (see ``registry_env.TestImages``) pushed to ``registry``."""
    return registry_env.build_and_push_standard_images(tmp_path_factory.mktemp("images"), registry)


@pytest.fixture(scope="session")
def auth_images(
    auth_registry: registry_env.RegistryServer, tmp_path_factory: pytest.TempPathFactory
) -> registry_env.PushedImage:
    """The busybox image pushed to ``auth_registry`` (as ``pycrio-test/busybox:latest``)."""
    workdir = tmp_path_factory.mktemp("auth-images")
    layout = registry_env.OCILayout(workdir / "layout")
    base = registry_env.compress_layer(registry_env.busybox_rootfs_tar())
    built = layout.build_image([base], tag="busybox")
    return registry_env.push(
        registry_env.Skopeo(workdir / "skopeo"),
        layout,
        "busybox",
        auth_registry,
        "pycrio-test/busybox",
        "latest",
        built=built,
    )


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[registry_env.RegistryServer, registry_env.PushedImage]]:
    """A registry with token auth (a TokenServer on 127.0.0.1) holding busybox."""
    _require_tools()
    workdir = tmp_path_factory.mktemp("token-registry")
    try:
        with registry_env.running_registry(workdir / "reg", auth="token") as reg:
            layout = registry_env.OCILayout(workdir / "layout")
            built = layout.build_image(
                [registry_env.compress_layer(registry_env.busybox_rootfs_tar())], tag="bb"
            )
            img = registry_env.push(
                registry_env.Skopeo(workdir / "skopeo"), layout, "bb", reg, "private/bb", "1",
                built=built,
            )  # fmt: skip
            yield reg, img
    except registry_env.Unsupported as exc:
        pytest.skip(str(exc))
