"""sd_notify: message formatting, addresses, and sending to a real datagram socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pycrio import sdnotify


def test_format_message() -> None:
    assert sdnotify.format_message(READY=1, MAINPID=42) == b"READY=1\nMAINPID=42\n"
    assert sdnotify.format_message(STOPPING=1) == b"STOPPING=1\n"
    with pytest.raises(ValueError):
        sdnotify.format_message(STATUS="two\nlines")


def test_socket_address() -> None:
    assert sdnotify.socket_address("") is None
    assert sdnotify.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert sdnotify.socket_address("@abstract/name") == b"\0abstract/name"
    assert sdnotify.socket_address("vsock:2:1234") is None


def test_monotonic_usec_is_monotonic() -> None:
    a = sdnotify.monotonic_usec()
    assert sdnotify.monotonic_usec() >= a > 0


@pytest.fixture
def listener(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_notify_sends_one_datagram(listener) -> None:
    path, sock = listener
    assert sdnotify.notify({"NOTIFY_SOCKET": path}, READY=1, MAINPID=os.getpid())
    assert sock.recv(4096) == f"READY=1\nMAINPID={os.getpid()}\n".encode()
    assert sdnotify.notify({"NOTIFY_SOCKET": path}, STOPPING=1)
    assert sock.recv(4096) == b"STOPPING=1\n"


def test_notify_reads_the_environment(listener, monkeypatch: pytest.MonkeyPatch) -> None:
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.notify(RELOADING=1)
    assert sock.recv(4096) == b"RELOADING=1\n"


def test_notify_abstract_socket() -> None:
    name = f"pycrio-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert sdnotify.notify({"NOTIFY_SOCKET": "@" + name}, READY=1)
        assert sock.recv(4096) == b"READY=1\n"


def test_notify_without_socket_or_listener(tmp_path: Path) -> None:
    assert not sdnotify.notify({}, READY=1)
    assert not sdnotify.notify({"NOTIFY_SOCKET": str(tmp_path / "nobody")}, READY=1)
