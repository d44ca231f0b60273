"""End to end: a hook injected by the plugin is run by real runc at its stages.

The container's rootfs is an empty directory with the host's /usr bind-mounted
read-only, which is enough for /bin/true on a merged-/usr host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from pycrio_oci_hooks.plugin import OCIHooksPlugin

RUNC = shutil.which("runc")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(RUNC is None, reason="runc is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root"),
    pytest.mark.skipif(not os.path.islink("/bin"), reason="needs a merged-/usr host"),
]


def test_injected_hook_runs_at_its_stages_with_the_state_on_stdin(tmp_path: Path, write_hook):
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "record-hook"
    script.write_text(f'#!/bin/sh\ncat > {out}/"$1".json\necho "$GREETING" > {out}/"$1".env\n')
    script.chmod(0o755)
    hooks_dir = tmp_path / "hooks.d"
    for stage in ("createRuntime", "poststop"):
        write_hook(
            hooks_dir,
            f"{stage}.json",
            {
                "version": "1.0.0",
                "hook": {
                    "path": str(script),
                    "args": ["record-hook", stage],
                    "env": ["GREETING=hello"],
                    "timeout": 10,
                },
                "when": {"commands": ["^/bin/true$"]},
                "stages": [stage],
            },
        )
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            os.symlink(os.readlink(f"/{name}"), bundle / "rootfs" / name)
    subprocess.run([RUNC, "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    spec["root"] = {"path": "rootfs", "readonly": True}
    spec["mounts"].append(
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}
    )

    plugin = OCIHooksPlugin([str(hooks_dir)])
    plugin.pycrio_adjust_container_spec(
        spec=spec, container=SimpleNamespace(id="c"), sandbox=SimpleNamespace(id="p")
    )
    assert set(spec["hooks"]) == {"createRuntime", "poststop"}
    (bundle / "config.json").write_text(json.dumps(spec))

    name = f"pycrio-oci-hooks-{os.getpid()}"
    root = tmp_path / "runc-root"
    try:
        result = subprocess.run(
            [RUNC, "--root", str(root), "run", "--bundle", str(bundle), name],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run([RUNC, "--root", str(root), "delete", "--force", name], capture_output=True)
    assert result.returncode == 0, result.stderr
    created = json.loads((out / "createRuntime.json").read_text())
    assert created["id"] == name and created["status"] == "creating"
    assert created["bundle"] == str(bundle)
    stopped = json.loads((out / "poststop.json").read_text())
    assert stopped["id"] == name and stopped["status"] == "stopped"
    assert (out / "createRuntime.env").read_text() == "hello\n"
