"""Start a pre-installed NRI plugin with its socket as file descriptor 3.

NRI hands a launched plugin one end of a socket pair as fd 3 and says so in
NRI_PLUGIN_SOCKET=3. posix_spawn's dup2 file action puts it there without
running Python between fork and exec (unsafe in a threaded daemon); every
other descriptor of ours is close-on-exec. A pidfd, when the kernel has
them, keeps signals from reaching a recycled pid after the plugin is gone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


class Launched:
    def __init__(self, path: str, sock: socket.socket, env: dict[str, str]) -> None:
        self.path = path
        self.pid = os.posix_spawn(
            path,
            [path],
            env,
            file_actions=[(os.POSIX_SPAWN_DUP2, sock.fileno(), 3)],
        )
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (the daemon's reaper)
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        if self.returncode is not None and self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return self.returncode

    def _signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired([self.path], timeout)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode
