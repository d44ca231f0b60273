"""Fixtures of the fuzz tier: a daemon per module with a real pod and running container."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cri_fuzz
import pytest
from container_e2e import module_daemon
from daemon import DaemonProcess


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory, registry: Any, images: Any
) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("fuzz"), registry.host, [images.busybox.name]) as d:
        yield d


@pytest.fixture(scope="module")
def target(
    crio: DaemonProcess, images: Any, tmp_path_factory: pytest.TempPathFactory
) -> cri_fuzz.Target:
    t = cri_fuzz.Target(crio, images.busybox.name, tmp_path_factory.mktemp("fuzz-logs"))
    t.ensure()
    # what the daemon holds once its first pod and container run, before fuzzing
    t.baseline_usage = cri_fuzz.threads_and_fds(crio.proc.pid, t.registry_port)
    return t
