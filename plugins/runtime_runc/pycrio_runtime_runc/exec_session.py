"""``<runtime> exec`` for a streaming session: pipes, or a terminal with resize.

With a TTY the runtime runs on a pseudo-terminal of ours, as CRI-O does: runc
sees a console on its stdio, makes the container's own terminal, copies
between the two and, on SIGWINCH, copies our terminal's size to the
container's. So a resize is TIOCSWINSZ on our side plus SIGWINCH to runc
(sent directly: our terminal is nobody's controlling terminal, so the kernel
would not signal anyone).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import termios
import threading
import tty as tty_

from pycrio import reaper
from pycrio.kernel.interfaces import ExecProcess
from pycrio_runtime_runc import exec_sync


class CLIExecProcess(ExecProcess):
    def __init__(self, argv: list[str], *, tty: bool, stdin: bool, files: list[str]) -> None:
        """Start ``argv`` (a runtime exec command writing ``files[0]`` as its pid file)."""
        self._files = files
        self._tty_master: int | None = None
        self._lock = threading.Lock()  # close_stdin may race close
        if tty:
            master, slave = os.openpty()
            # raw from the start: runc makes it raw too, but only once it runs,
            # and output passing through before that would get \r\r\n endings
            tty_.setraw(slave)
            self._tty_master = master
            try:
                self.proc = reaper.popen(
                    argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
                )
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self.stdin = master if stdin else None
            self.stdout = master
            self.stderr = None
        else:
            self.proc = reaper.popen(
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self.stdin = self.proc.stdin.fileno() if self.proc.stdin else None
            self.stdout = self.proc.stdout.fileno() if self.proc.stdout else None
            self.stderr = self.proc.stderr.fileno() if self.proc.stderr else None

    def resize(self, width: int, height: int) -> None:
        with self._lock:
            if self._tty_master is None:
                return
            winsize = struct.pack("HHHH", height, width, 0, 0)
            fcntl.ioctl(self._tty_master, termios.TIOCSWINSZ, winsize)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGWINCH)

    def wait(self) -> int:
        code = self.proc.wait()
        return 128 - code if code < 0 else code

    def kill(self) -> None:
        if self.proc.poll() is None:
            exec_sync.kill_exec(self.proc, self._files[0])

    def close_stdin(self) -> None:
        """End of the client's input: EOF for a pipe, ^D for a terminal."""
        with self._lock:
            if self._tty_master is not None:
                with contextlib.suppress(OSError):
                    os.write(self._tty_master, b"\x04")
            elif self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
            self.proc.wait()
        reaper.release(self.proc.pid)
        with self._lock:
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            if self._tty_master is not None:
                os.close(self._tty_master)
                self._tty_master = None
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
