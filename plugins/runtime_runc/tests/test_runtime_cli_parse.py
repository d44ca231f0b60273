"""Parsing the runtime's state JSON and error output; option defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycrio_runtime_runc import OCIRuntimeCLI, parse_state, runtime_message

from pycrio.config.load import defaults
from pycrio.errors import Internal, Unavailable
from pycrio.kernel.interfaces import DriverContext


def test_parse_state_runc() -> None:
    doc = {
        "ociVersion": "1.0.2-dev",
        "id": "c1",
        "pid": 4242,
        "status": "running",
        "bundle": "/b",
        "rootfs": "/b/rootfs",
        "created": "2024-01-01T00:00:00Z",
        "annotations": {"a": "b"},
        "owner": "",
    }
    st = parse_state(json.dumps(doc).encode())
    assert (st.id, st.status, st.pid, st.bundle, st.annotations) == (
        "c1",
        "running",
        4242,
        "/b",
        {"a": "b"},
    )


def test_parse_state_stopped_without_pid() -> None:
    st = parse_state(b'{"id": "c", "status": "stopped", "pid": 0, "bundle": "/b"}')
    assert st.status == "stopped" and st.pid == 0 and st.annotations == {}


def test_parse_state_garbage() -> None:
    with pytest.raises(Internal):
        parse_state(b"{")


def test_runtime_message_unwraps_logrus() -> None:
    err = b'time="2024-01-01T00:00:00Z" level=error msg="container does not exist"\n'
    assert runtime_message(err) == "container does not exist"
    assert runtime_message(b"plain failure\n") == "plain failure"


def _driver(tmp_path: Path, **options: object) -> OCIRuntimeCLI:
    ctx = DriverContext("t", defaults(), dict(options), str(tmp_path / "s"), str(tmp_path / "r"))
    return OCIRuntimeCLI(ctx)


def test_defaults_under_run_dir(tmp_path: Path) -> None:
    d = _driver(tmp_path, runtime_path="", runtime_root="", monitor_path="")
    assert d.runtime_root == str(tmp_path / "r" / "root")
    assert d.socket_dir == "/run/pycrio/attach"  # [runtime] container_attach_socket_dir
    assert d.command_timeout == 30 and d.create_timeout == 120
    assert d._argv("state", "x")[1:] == ["--root", d.runtime_root, "state", "x"]


def test_missing_binary_is_not_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    class Nope(OCIRuntimeCLI):
        default_binary = "no-such-runtime"

    d = Nope(DriverContext("t", defaults(), {}, str(tmp_path), str(tmp_path)))
    ready, reason, message = d.ready()
    assert not ready and reason == "RuntimeNotFound" and "no-such-runtime" in message
    with pytest.raises(Unavailable):
        d.state("x")


def test_runtime_message_keeps_only_errors_when_there_are_some() -> None:
    err = (
        b'time="t" level=warning msg="cannot toggle freezer: cgroups not configured"\n'
        b'time="t" level=warning msg="lstat : no such file or directory"\n'
        b'time="t" level=error msg="runc create failed: exec: \\"/x\\": stat /x: no such file"\n'
    )
    assert runtime_message(err) == 'runc create failed: exec: "/x": stat /x: no such file'
    only_warnings = b'time="t" level=warning msg="odd"\n'
    assert runtime_message(only_warnings) == "odd"
