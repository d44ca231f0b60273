"""``<runtime> exec`` for a streaming session: pipes, or a terminal with resize.

With a TTY there is one terminal, the container's own, as with conmon and
containerd's shim: the runtime runs detached (``exec --detach
--console-socket``), hands us the terminal's master over a unix socket
(SCM_RIGHTS) and exits; we read and write the master directly. A resize is
TIOCSWINSZ on the master, and the kernel sends SIGWINCH to the process's
foreground group. The exec'd process, orphaned by the runtime, is
re-parented to the daemon (a child subreaper), which waits for it itself.

Why not run the runtime in the foreground on a terminal of ours: runc then
copies between our terminal and the container's, and clears ONLCR on the
container's only once the process already runs, so its first output can be
converted twice (``\\r\\r\\n``); no setting on our side prevents that. That
path remains only where the daemon is no subreaper (the orphan would go to
PID 1 and its exit status would be lost).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import tty as tty_

from pycrio import reaper
from pycrio.errors import Internal
from pycrio.kernel.interfaces import ExecProcess
from pycrio_runtime_runc import exec_process

#: Bound on the detached runtime's run: it only starts the process.
RUNTIME_TIMEOUT = 60.0
#: Bound on receiving the terminal once the runtime has exited successfully.
CONSOLE_TIMEOUT = 5.0
#: The most of a failed runtime's message passed on to the client.
MAX_ERROR_OUTPUT = 16 << 10


class CLIExecProcess(ExecProcess):
    def __init__(self, argv: list[str], *, tty: bool, stdin: bool, files: list[str]) -> None:
        """Start ``argv`` (a runtime exec command writing ``files[0]`` as its pid file,
        the container id last)."""
        self._files = files
        self._tty_master: int | None = None
        self._lock = threading.Lock()  # close_stdin may race close; kill may race wait
        self.proc: subprocess.Popen | None = None  # the runtime, when we wait for it
        #: detached: the exec'd process, our child until reaped, and then its exit code
        self._pid: int | None = None
        self._code: int | None = None
        self._error_out: int | None = None
        if tty and reaper.is_subreaper():
            try:
                self._start_detached(argv, stdin)
            except Internal:
                self._remove_files()
                raise
        elif tty:
            self._start_foreground_tty(argv, stdin)
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

    # --- starting ----------------------------------------------------------------

    def _start_detached(self, argv: list[str], stdin: bool) -> None:
        sock_dir = tempfile.mkdtemp(prefix="pycrio-tty-")  # 0700: only we can connect
        path = os.path.join(sock_dir, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(1)
            self._pid, out, code = self._run_detached(
                [*argv[:-1], "--detach", "--console-socket", path, argv[-1]]
            )
            if self._pid is None:
                # the runtime failed (no such command...): its message and exit
                # code reach the client as the foreground runtime's would
                read_end, write_end = os.pipe()
                os.write(write_end, out[-MAX_ERROR_OUTPUT:])
                os.close(write_end)
                self._error_out, self._code = read_end, code
                self.stdout = read_end
                return
            try:
                self._tty_master = _receive_terminal(listener)
            except BaseException:
                self._abandon()
                raise
        finally:
            listener.close()
            shutil.rmtree(sock_dir, ignore_errors=True)
        self.stdin = self._tty_master if stdin else None
        self.stdout = self._tty_master
        self.stderr = None

    def _run_detached(self, argv: list[str]) -> tuple[int | None, bytes, int]:
        """Run the runtime to its exit; the exec'd process' pid (registered as
        ours), the runtime's output and exit code.

        No orphan is reaped from before the runtime starts until the pid is
        registered: the process is re-parented to us when the runtime exits,
        and if it ended already, the reaper would take its exit status.
        """
        with reaper.holding_orphans():
            runtime = reaper.popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                out, _ = runtime.communicate(timeout=RUNTIME_TIMEOUT)
            except subprocess.TimeoutExpired:
                pid = exec_process.kill_exec(runtime, self._files[0])
                runtime.communicate()
                if pid is not None:
                    exec_process.reap_if_ours(pid)
                raise Internal(f"{argv[0]} exec did not finish in {RUNTIME_TIMEOUT:.0f}s") from None
            finally:
                reaper.release(runtime.pid)
            pid = exec_process.read_pid(self._files[0])
            if pid is not None:
                reaper.keep_off(pid)
        code = exec_process.exit_code(runtime.returncode)
        if pid is not None and code != 0:
            # started, yet the runtime failed after: do not leave it behind
            self._pid = pid
            self._abandon()
            return None, out, code
        if pid is None and code == 0:
            raise Internal(f"{argv[0]} exec succeeded but wrote no pid file")
        return pid, out, code

    def _abandon(self) -> None:
        """Kill and reap the detached process (a start that failed half-way)."""
        self.kill()
        self._reap()

    def _start_foreground_tty(self, argv: list[str], stdin: bool) -> None:
        """The runtime in the foreground on a terminal of ours; it copies between
        ours and the container's (and may double early line endings, see above)."""
        master, slave = os.openpty()
        tty_.setraw(slave)  # raw until runc, once running, sets the mode it wants on it
        self._tty_master = master
        try:
            self.proc = reaper.popen(
                argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        except BaseException:
            os.close(master)
            self._tty_master = None
            raise
        finally:
            os.close(slave)
        self.stdin = master if stdin else None
        self.stdout = master
        self.stderr = None

    # --- ExecProcess -------------------------------------------------------------

    def resize(self, width: int, height: int) -> None:
        with self._lock:
            if self._tty_master is None:
                return
            winsize = struct.pack("HHHH", height, width, 0, 0)
            fcntl.ioctl(self._tty_master, termios.TIOCSWINSZ, winsize)
        # detached, the kernel signals the terminal's foreground group; in the
        # foreground path our terminal controls nobody, so runc is told directly
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGWINCH)

    def wait(self) -> int:
        if self.proc is None:
            if self._pid is not None:
                # block until it ends without reaping: kill() must never signal a
                # pid that, once reaped, may belong to someone else
                with contextlib.suppress(ChildProcessError):
                    os.waitid(os.P_PID, self._pid, os.WEXITED | os.WNOWAIT)
                self._reap()
            assert self._code is not None
            return self._code
        return exec_process.exit_code(self.proc.wait())

    def _reap(self) -> None:
        with self._lock:
            if self._code is not None or self._pid is None:
                return
            try:
                _, status = os.waitpid(self._pid, 0)
                self._code = exec_process.exit_code(os.waitstatus_to_exitcode(status))
            except ChildProcessError:
                self._code = 255  # someone else reaped it: its status is lost
            reaper.release(self._pid)

    def kill(self) -> None:
        if self.proc is None:
            with self._lock:
                if self._pid is not None and self._code is None:
                    exec_process.kill_group(self._pid)
            return
        if self.proc.poll() is None:
            exec_process.kill_exec(self.proc, self._files[0])

    def close_stdin(self) -> None:
        """End of the client's input: EOF for a pipe, ^D for a terminal."""
        with self._lock:
            if self._tty_master is not None:
                with contextlib.suppress(OSError):
                    os.write(self._tty_master, b"\x04")
            elif self.proc is not None and self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.kill()
                self.proc.wait()
            reaper.release(self.proc.pid)
        elif self._code is None:
            self._abandon()
        with self._lock:
            if self.proc is not None:
                for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                    if stream is not None:
                        stream.close()
            for fd in (self._tty_master, self._error_out):
                if fd is not None:
                    os.close(fd)
            self._tty_master = self._error_out = None
        self._remove_files()

    def _remove_files(self) -> None:
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _receive_terminal(listener: socket.socket) -> int:
    """The terminal master the runtime sent to ``listener`` (SCM_RIGHTS)."""
    listener.settimeout(CONSOLE_TIMEOUT)
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        raise Internal("the runtime sent no terminal to the console socket") from None
    with conn:
        conn.settimeout(CONSOLE_TIMEOUT)
        _, fds, _, _ = socket.recv_fds(conn, 4096, 4)
    if not fds:
        raise Internal("the runtime's console socket message carried no terminal")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]
