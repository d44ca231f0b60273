"""Start pycrio as a process and talk to it over its socket, as the kubelet does."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import runtime_mode
from cri_api.v1 import api_pb2, api_pb2_grpc

#: This test session's attach directories, removed when it ends.
ATTACH_ROOT = f"/run/pycrio-test/{secrets.token_hex(4)}"
atexit.register(shutil.rmtree, ATTACH_ROOT, ignore_errors=True)


def attach_dir(tmp: Path) -> str:
    """The attach socket directory of the daemon at ``tmp`` (kept short: a socket
    path below it, ``<dir>/<64-hex id>/attach``, must fit in 107 bytes)."""
    return f"{ATTACH_ROOT}/{hashlib.sha256(str(tmp).encode()).hexdigest()[:8]}"


class DaemonProcess:
    def __init__(self, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.tmp = tmp
        self.socket = str(tmp / "run" / "pycrio.sock")
        self.config = tmp / "pycrio.conf"
        self.config_dir = tmp / "pycrio.conf.d"
        self.config_dir.mkdir(exist_ok=True)
        if not self.config.exists():
            self.config.write_text("")
        # NRI is on by default: keep test daemons off the host's /var/run/nri and /opt/nri
        nri = self.config_dir / "00-test-nri.conf"
        if not nri.exists():
            nri.write_text(
                "[nri]\n"
                f"nri_listen = {json.dumps(str(tmp / 'nri.sock'))}\n"
                f"nri_plugin_dir = {json.dumps(str(tmp / 'nri-plugins'))}\n"
                f"nri_plugin_config_dir = {json.dumps(str(tmp / 'nri-conf'))}\n"
            )
        # conmon's attach links go in a directory of this daemon's own: in the shared
        # default (/run/pycrio/attach) another daemon's links would show in its checks
        attach = self.config_dir / "00-test-attach.conf"
        if not attach.exists():
            attach.write_text(
                f"[runtime]\ncontainer_attach_socket_dir = {json.dumps(attach_dir(tmp))}\n"
            )
        self.args = args
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.stderr_path = tmp / f"stderr-{time.monotonic_ns()}.log"
        self._channel: grpc.Channel | None = None

    def command(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pycrio",
            "--config",
            str(self.config),
            "--config-dir",
            str(self.config_dir),
            "--listen",
            self.socket,
            "--root",
            str(self.tmp / "root"),
            "--runroot",
            str(self.tmp / "runroot"),
            *self.args,
            *extra,
        ]

    def start(self, wait: bool = True) -> DaemonProcess:
        # PYCRIO_TEST_RUNTIME=shimv2: the shim v2 handler as the default (runtime_mode.py)
        runtime_mode.write_dropin(self.config, self.config_dir, self.tmp / "test-runtime")
        self._stderr = self.stderr_path.open("ab")  # a restart appends: the first life's log stays
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=self._stderr, env=self.env
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"pycrio exited with {self.proc.returncode}:\n{self.stderr()}")
            if os.path.exists(self.socket):
                try:
                    self.runtime().Version(api_pb2.VersionRequest(), timeout=2)
                    return
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"pycrio did not become ready:\n{self.stderr()}")

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"unix:{self.socket}")
        return self._channel

    def runtime(self) -> api_pb2_grpc.RuntimeServiceStub:
        return api_pb2_grpc.RuntimeServiceStub(self.channel())

    def images(self) -> api_pb2_grpc.ImageServiceStub:
        return api_pb2_grpc.ImageServiceStub(self.channel())

    def remove_all_pods(self) -> None:
        """Leave no pod behind: its mounts, namespaces and containers would outlive a test."""
        rt = self.runtime()
        for pod in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items:
            rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_stderr", None):
            self._stderr.close()
