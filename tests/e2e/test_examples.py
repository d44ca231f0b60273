"""examples/run_pod.py, run as a user would run it, against a test daemon."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from container_e2e import module_daemon
from cri_api.v1 import api_pb2
from daemon import DaemonProcess

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).parents[2] / "examples" / "run_pod.py"


@pytest.fixture(scope="module")
def crio(tmp_path_factory: pytest.TempPathFactory, registry: Any) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("examples"), registry.host, []) as d:
        yield d


def run_example(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--socket", d.socket, "--host-network", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_run_pod_prints_the_container_log(crio: DaemonProcess, images: Any) -> None:
    result = run_example(crio, "--image", images.busybox.name)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert f"pulled {images.busybox.name} ({images.busybox.built.config.digest})" in out
    assert "Hello from a container of pod example" in out  # the container's log
    assert "container exited with 0 (Completed)" in out
    assert out[-1].startswith("pod ") and out[-1].endswith(" removed")
    # it cleaned up after itself
    pods = crio.runtime().ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert list(pods) == []


def test_run_pod_with_a_command_and_its_exit_code(crio: DaemonProcess, images: Any) -> None:
    result = run_example(
        crio, "--image", images.busybox.name, "--", "sh", "-c", "echo to stderr >&2; exit 3"
    )
    assert result.returncode == 3
    assert "to stderr" in result.stderr.splitlines()
    assert "container exited with 3 (Error)" in result.stdout
