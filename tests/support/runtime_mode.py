"""Which runtime the e2e daemons run containers with: runc (the default) or a shim v2.

``PYCRIO_TEST_RUNTIME=shimv2`` makes every test daemon (``daemon.DaemonProcess``)
configure a handler named ``shimv2`` for the ``vm`` driver (plugins/runtime_kata)
with Debian's ``containerd-shim-runc-v2`` as its shim, and make it the
``default_runtime``; so the e2e container suite, unchanged, drives the shim v2
path (issue 12: "the whole e2e container suite with the shim v2 handler as the
default passes as it does with runc"). ``make test-shimv2`` runs it so.

The settings go into a drop-in (``00-test-runtime.conf``) written when the
daemon starts, holding only the keys the test's own configuration does not
set: a test that names its own default runtime, pause image or registries
keeps them. Pods of a VM handler always have an infra (pause) container, so
the drop-in also names a pause image (pushed to the session registry by
tests/e2e/conftest.py) and, for daemons whose test configured no registry,
a registries.conf and policy.json that let it be pulled.

No test of the container suite needs skipping in this mode: tests that read
runc's own files ask the CRI instead (the pid from ContainerStatus, a pause
through the cgroup freezer), and the one answer that differs by design (a
TTY exec of a missing command) is asserted per mode with :func:`shimv2`.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ENV = "PYCRIO_TEST_RUNTIME"
MODES = ("runc", "shimv2")
#: The handler name the shim v2 mode configures (a RuntimeClass handler).
HANDLER = "shimv2"
#: The driver (entry point in ``pycrio.runtime``) of VM / shim v2 handlers.
VM_DRIVER = "vm"
#: A real shim v2: Debian's containerd package ships it (see DESIGN.md).
SHIM_BINARY = os.environ.get("PYCRIO_TEST_SHIM", "/usr/bin/containerd-shim-runc-v2")
DROPIN = "00-test-runtime.conf"

#: The pause image the shim v2 mode gives its daemons, set by the e2e session fixture.
pause_image: str = ""
#: registries.conf text marking the session registry insecure, set with ``pause_image``.
registries_conf: str = ""


def mode() -> str:
    value = os.environ.get(ENV, "runc") or "runc"
    if value not in MODES:
        raise pytest.UsageError(f"{ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


def shimv2() -> bool:
    """True when the e2e daemons run containers through the shim v2 handler by default."""
    return mode() == "shimv2"


def vm_driver_installed() -> bool:
    return any(ep.name == VM_DRIVER for ep in metadata.entry_points(group="pycrio.runtime"))


def shim_missing_reason() -> str | None:
    """Why shim v2 tests cannot run here, or None when they can."""
    if not os.access(SHIM_BINARY, os.X_OK):
        return f"no shim v2 binary at {SHIM_BINARY} (Debian package containerd)"
    if not vm_driver_installed():
        return (
            f"the {VM_DRIVER!r} runtime driver is not installed (no entry point"
            f" {VM_DRIVER!r} in pycrio.runtime: plugins/runtime_kata)"
        )
    if shutil.which("runc") is None:
        return "containerd-shim-runc-v2 needs runc in $PATH"
    return None


def handler_table(name: str = HANDLER, **extra: Any) -> str:
    """The ``[runtime.runtimes.<name>]`` TOML of a shim v2 handler with ``extra`` keys."""
    keys = {"runtime_type": "vm", "runtime_path": SHIM_BINARY, **extra}
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    return f"[runtime.runtimes.{name}]\n{body}"


def _configured(config: Path, config_dir: Path) -> dict[str, Any]:
    """The test's own configuration: main file and drop-ins merged (ours left out)."""
    merged: dict[str, Any] = {}
    files = [config]
    if config_dir.is_dir():
        files += sorted(p for p in config_dir.iterdir() if p.suffix == ".conf" and p.name != DROPIN)
    for path in files:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue  # a test of a broken file: the daemon reports it, not us
        for table, value in data.items():
            if isinstance(value, dict) and isinstance(merged.get(table), dict):
                merged[table].update(value)
            else:
                merged[table] = value
    return merged


def write_dropin(config: Path, config_dir: Path, workdir: Path) -> None:
    """In the shim v2 mode, write the drop-in that makes ``shimv2`` the default handler.

    Called by the daemon harness before each start; does nothing with runc.
    """
    target = config_dir / DROPIN
    if not shimv2():
        target.unlink(missing_ok=True)
        return
    own = _configured(config, config_dir)
    runtime = own.get("runtime", {}) if isinstance(own.get("runtime"), dict) else {}
    image = own.get("image", {}) if isinstance(own.get("image"), dict) else {}
    lines = ["# written by tests/support/runtime_mode.py (PYCRIO_TEST_RUNTIME=shimv2)", "[runtime]"]
    if "default_runtime" not in runtime:
        lines.append(f"default_runtime = {json.dumps(HANDLER)}")
    image_lines = []
    if pause_image and "pause_image" not in image:
        image_lines += [
            f"pause_image = {json.dumps(pause_image)}",
            'pause_command = ""',
        ]
    if pause_image and "registries_conf" not in image:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "registries.conf").write_text(registries_conf)
        (workdir / "registries.conf.d").mkdir(exist_ok=True)
        image_lines += [
            f"registries_conf = {json.dumps(str(workdir / 'registries.conf'))}",
            f"registries_conf_dir = {json.dumps(str(workdir / 'registries.conf.d'))}",
        ]
    if pause_image and "signature_policy" not in image:
        workdir.mkdir(parents=True, exist_ok=True)
        policy = {"default": [{"type": "insecureAcceptAnything"}]}
        (workdir / "policy.json").write_text(json.dumps(policy))
        image_lines.append(f"signature_policy = {json.dumps(str(workdir / 'policy.json'))}")
    text = "\n".join(lines) + "\n"
    if HANDLER not in runtime.get("runtimes", {}):
        text += handler_table() + "\n"
    if image_lines:
        text += "[image]\n" + "\n".join(image_lines) + "\n"
    target.write_text(text)


def default_handler() -> str:
    """The handler a pod that names none gets from a test daemon."""
    return HANDLER if shimv2() else "runc"


def handlers() -> list[str]:
    """The handlers a test daemon that configures none of its own has, sorted."""
    return sorted({"runc", HANDLER} if shimv2() else {"runc"})
