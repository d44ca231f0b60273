"""A negative oom_score_adj is applied as asked where the daemon holds CAP_SYS_RESOURCE.

On the CI host root lacks CAP_SYS_RESOURCE, so the daemon clamps the value to
its own (tests/unit/container); in the node VM root has it, so the real
path runs there (``make test-node``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import registry_env
from container_e2e import Pod, assert_nothing_left, daemon_config, pod_config
from cri_api.v1 import api_pb2
from image_e2e import pull
from node_support import has_sys_resource

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not has_sys_resource(),
        reason="root lacks CAP_SYS_RESOURCE here: runs in the node VM (make test-node)",
    ),
]


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_negative_oom_score_adj(
    start_daemon, tmp_path: Path, registry, images: registry_env.TestImages
) -> None:
    """The guest's root holds CAP_SYS_RESOURCE, so a negative value is applied as asked."""
    d = start_daemon(config=daemon_config(tmp_path / "conf", registry.host))
    pull(d, images.busybox.name)
    pod = Pod(d, pod_config("oom", tmp_path / "logs"))
    resources = api_pb2.LinuxContainerResources(oom_score_adj=-500)
    cid = pod.run(
        "c", images.busybox.name, command=["sleep", "600"],
        linux=api_pb2.LinuxContainerConfig(resources=resources),
    )  # fmt: skip
    pid = pod.info(cid)["pid"]
    assert read(f"/proc/{pid}/oom_score_adj") == "-500"
    assert pod.out(cid, "cat", "/proc/self/oom_score_adj") == "-500\n"
    assert "below what this daemon may set" not in d.stderr()
    pod.remove()
    assert_nothing_left(d, pod.containers)
