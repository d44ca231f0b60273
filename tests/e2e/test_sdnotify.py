"""The daemon tells systemd (here: a socket the test listens on) when it is ready,
reloading and stopping."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2

pytestmark = pytest.mark.e2e


def notices(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines() if line)


def test_ready_reloading_stopping(start_daemon, tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    try:
        d = start_daemon(env={"NOTIFY_SOCKET": path}, wait=False)
        ready = notices(sock)
        assert ready.get("READY") == "1", ready
        assert ready.get("MAINPID") == str(d.proc.pid)
        # READY=1 comes once the CRI socket answers
        d.runtime().Version(api_pb2.VersionRequest(), timeout=2)

        d.signal(signal.SIGHUP)
        reloading = notices(sock)
        assert reloading.get("RELOADING") == "1", reloading
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert notices(sock).get("READY") == "1"

        d.signal(signal.SIGTERM)
        assert notices(sock).get("STOPPING") == "1"
        assert d.wait(timeout=30) == 0
    finally:
        sock.close()
        os.unlink(path)
