"""A container's stdio without conmon: the FIFOs a shim v2 writes to, and the CRI log.

A shim v2 (``containerd-shim-runc-v2``, Kata's ``containerd-shim-kata-v2``)
takes paths of FIFOs in its Create request and copies the container's
stdout and stderr into them; whoever reads them writes the log. conmon does
that for runc; for shims the daemon does it here: one :class:`ContainerIO`
per container, with one copy thread.

How the ends are opened, and why
--------------------------------
* The shim opens each output FIFO ``O_WRONLY`` *blocking* during Create
  (containerd's pkg/process/io.go), so our read end must exist first: we open
  it ``O_RDONLY|O_NONBLOCK`` (an open that never waits for a writer) and keep
  it non-blocking, waiting in ``poll`` next to a wake pipe.
* We also hold a write end of each output FIFO (a *keepalive*) until the
  container has exited (:meth:`ContainerIO.finish`). Without it a reader
  sees end-of-file whenever no writer happens to be open (before the shim
  connects, between writers), and ``poll`` reports POLLHUP in a loop: a
  busy loop. With it, the read end only ever reports data; after
  :meth:`finish` drops it, end-of-file means exactly "the shim closed its
  end after copying everything", so no output is cut at the exit.
  (containerd's cio reads ``O_RDONLY`` and relies on the shim opening first;
  ``O_RDWR`` on one descriptor would work too but could never be made to
  see the end, so the two ends are separate descriptors.)
* The stdin FIFO is opened ``O_RDWR``: it never blocks and never fails with
  ENXIO before the shim opens its read end, and our writes never raise EPIPE
  while the shim is between opens. The runc shim also holds a write end of
  stdin itself (``openStdin``), so the container's stdin stays open when the
  daemon goes away; ending it takes the shim's CloseIO, which is why
  :class:`ContainerIO` takes a ``close_io`` callable from the driver.
* The shim keeps a read end of each output FIFO (so its writes never fail
  with EPIPE while we are away).

Daemon restarts
---------------
The shim outlives the daemon and keeps its FIFO ends. A new
:class:`ContainerIO` on the same directory (:meth:`ContainerIO.resume`)
opens the same FIFOs again and copies on. While no daemon reads, the
container's output waits in the pipes: 64 KiB in the FIFO plus what the
shim's own pipe from the container holds; once they are full the
container's writes block (nothing is dropped). One case needs more: a
container that *exits* while the daemon is down, because the shim then closes
both its ends and the kernel frees a FIFO's buffer when its last opener
closes. So the driver keeps a process outside the daemon holding a read end
of each output FIFO (never reading), and the unread output (at most the 64
KiB buffer per stream) waits for :meth:`ContainerIO.resume`.

Log writing
-----------
Records are formatted by :mod:`pycrio_runtime_kata.cri_log` (conmon's
format and its ``log_size_max`` rule: the file is replaced by an empty one
when a record would take it past the limit). :meth:`ContainerIO.reopen_log`
does what conmon does on ReopenContainerLog: a new empty file renamed over
``log_path``. Both happen under the log lock, between two records: a
rotation loses and duplicates nothing.

Attached clients
----------------
Every chunk copied to the log is also queued for each :class:`StdioAttachment`.
A client more than :data:`MAX_ATTACH_BACKLOG` bytes behind is disconnected
(its ``recv`` returns None): a stalled ``kubectl attach`` must neither stop
the log nor eat the daemon's memory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import stat
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from pycrio.errors import FailedPrecondition
from pycrio.kernel.interfaces import STDERR, STDOUT, Attachment

from . import cri_log

log = logging.getLogger("pycrio.kata.stdio")

STDIN_FIFO = "stdin"
STDOUT_FIFO = "stdout"
STDERR_FIFO = "stderr"
#: What a restarted daemon needs to take the container's IO back.
STATE_FILE = "io.json"

#: Bytes of output an attached client may fall behind before it is dropped.
MAX_ATTACH_BACKLOG = 4 << 20
#: How long close() waits for the copy thread.
JOIN_TIMEOUT = 10.0

_STREAM_NAMES = {STDOUT: cri_log.STDOUT, STDERR: cri_log.STDERR}


def _ensure_fifo(path: str) -> None:
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.lstat(path).st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a FIFO", path) from None
    os.chmod(path, 0o600)  # mkfifo's mode is masked by the umask


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


class ContainerIO:
    """One container's stdio: FIFOs for the shim, the CRI log, attached clients.

    ``directory`` (created 0700 if missing) holds the FIFOs and a small state
    file. The same call reopens FIFOs that exist already (a restarted
    daemon); :meth:`resume` does that from the state file alone.

    ``close_io`` is called when stdin is ended for good (stdin_once): the
    driver's ``ops.close_io(container_id, "")``, since the shim holds a write
    end of stdin itself. ``resize`` is the driver's
    ``ops.resize_pty(container_id, "", width, height)`` for attached clients
    of a TTY container. Neither is persisted: pass them again on resume.

    Threading: one copy thread per object; every method may be called from
    any thread. :meth:`close` (or :meth:`release`) must be called once.
    """

    def __init__(
        self,
        directory: str,
        log_path: str,
        *,
        tty: bool = False,
        stdin: bool = False,
        stdin_once: bool = False,
        log_size_max: int = -1,
        close_io: Callable[[], None] | None = None,
        resize: Callable[[int, int], None] | None = None,
    ) -> None:
        self.directory = directory
        self.log_path = log_path
        self.tty = tty
        self.stdin = stdin
        self.stdin_once = stdin_once
        self.log_size_max = log_size_max
        self._close_io = close_io
        self._resize = resize
        self._state_lock = threading.Lock()  # flags, attachments, fds other than the log
        self._log_lock = threading.Lock()  # the log fd and its size accounting
        self._stdin_lock = threading.Lock()  # one writer into stdin at a time
        self._attachments: list[StdioAttachment] = []
        self._readers: dict[int, int] = {}  # fd -> STDOUT/STDERR
        self._keepalive: list[int] = []
        self._stdin_fd: int | None = None
        self._log_fd: int | None = None
        self._closed = False
        self._finished = threading.Event()  # every output stream reached its end
        self._thread: threading.Thread | None = None

        os.makedirs(directory, mode=0o700, exist_ok=True)
        previous = _load_state(directory)
        self._stdin_closed = bool(previous.get("stdin_closed")) if previous else False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # level-triggered and never drained: once written, stdin is over for good
        self._stdin_cancel_r, self._stdin_cancel_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self._open(previous is not None)
        except BaseException:
            self._close_fds()
            if previous is None:
                self._remove_files()  # a failed create leaves nothing behind
            raise
        self._thread = threading.Thread(
            target=self._copy, name=f"stdio-{os.path.basename(directory)}", daemon=True
        )
        self._thread.start()

    # --- construction -----------------------------------------------------------

    @classmethod
    def resume(
        cls,
        directory: str,
        *,
        close_io: Callable[[], None] | None = None,
        resize: Callable[[int, int], None] | None = None,
    ) -> ContainerIO:
        """Take back the IO a previous daemon set up in ``directory``.

        FileNotFoundError when there is none (the state file is missing).
        """
        state = _load_state(directory)
        if state is None:
            raise FileNotFoundError(
                errno.ENOENT, "no container IO state", os.path.join(directory, STATE_FILE)
            )
        return cls(
            directory,
            str(state["log_path"]),
            tty=bool(state.get("tty")),
            stdin=bool(state.get("stdin")),
            stdin_once=bool(state.get("stdin_once")),
            log_size_max=int(state.get("log_size_max", -1)),
            close_io=close_io,
            resize=resize,
        )

    def _open(self, existing: bool) -> None:
        for path in self._fifo_paths():
            _ensure_fifo(path)
        self._save_state()
        self._log_fd = os.open(
            self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        self._limit = cri_log.SizeLimit(self.log_size_max, os.fstat(self._log_fd).st_size)
        streams = [(self.stdout_path, STDOUT)]
        if self.stderr_path:
            streams.append((self.stderr_path, STDERR))
        for path, stream in streams:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._readers[fd] = stream
            # a reader exists now, so this open cannot fail with ENXIO
            self._keepalive.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        if self.stdin and not self._stdin_closed:
            self._stdin_fd = os.open(self.stdin_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        if existing:
            log.debug("container IO in %s resumed", self.directory)

    def _fifo_paths(self) -> list[str]:
        return [p for p in (self.stdin_path, self.stdout_path, self.stderr_path) if p]

    # --- what the driver passes to the shim --------------------------------------

    @property
    def stdin_path(self) -> str:
        """The Create request's ``stdin``: the FIFO, or "" when the container has no stdin."""
        return os.path.join(self.directory, STDIN_FIFO) if self.stdin else ""

    @property
    def stdout_path(self) -> str:
        return os.path.join(self.directory, STDOUT_FIFO)

    @property
    def stderr_path(self) -> str:
        """ "" with a TTY: the terminal carries both streams, logged as stdout."""
        return "" if self.tty else os.path.join(self.directory, STDERR_FIFO)

    # --- state file ---------------------------------------------------------------

    def _save_state(self) -> None:
        state = {
            "log_path": self.log_path,
            "tty": self.tty,
            "stdin": self.stdin,
            "stdin_once": self.stdin_once,
            "log_size_max": self.log_size_max,
            "stdin_closed": self._stdin_closed,
        }
        path = os.path.join(self.directory, STATE_FILE)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, path)

    # --- the copy thread -----------------------------------------------------------

    def _copy(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for fd in self._readers:
            poller.register(fd, select.POLLIN)
        open_streams = dict(self._readers)
        while open_streams:
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    return  # close() or release(): stop now
                stream = open_streams.get(fd)
                if stream is None:
                    continue
                try:
                    data = os.read(fd, cri_log.BUF_SIZE)
                except BlockingIOError:
                    continue
                except OSError as e:
                    log.warning("container IO %s: reading %s: %s", self.directory, stream, e)
                    data = b""
                if not data:
                    poller.unregister(fd)
                    del open_streams[fd]
                    continue
                self._output(stream, data)
        self._finished.set()
        self._end_attachments()

    def _output(self, stream: int, data: bytes) -> None:
        records = cri_log.encode(_STREAM_NAMES[stream], data, cri_log.timestamp())
        with self._log_lock:
            try:
                for truncate, blob in self._limit.plan(records):
                    if truncate:
                        self._replace_log()
                    assert self._log_fd is not None
                    _write_all(self._log_fd, blob)
            except OSError as e:  # a full disk: the container must not stop for it
                log.warning("container log %s: %s", self.log_path, e)
        with self._state_lock:
            attachments = list(self._attachments)
        for attachment in attachments:
            attachment._push(stream, data)

    def _replace_log(self) -> None:
        """conmon's reopen_k8s_file: an empty file renamed over the log (log lock held)."""
        tmp = f"{self.log_path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.rename(tmp, self.log_path)
        except OSError:
            os.close(fd)
            raise
        _close(self._log_fd)
        self._log_fd = fd

    # --- driver calls --------------------------------------------------------------

    def reopen_log(self) -> None:
        """ReopenContainerLog: after this returns, ``log_path`` exists and gets the output.

        FailedPrecondition once the IO is closed or the output has ended.
        """
        with self._state_lock:
            if self._closed or self._finished.is_set():
                raise FailedPrecondition(f"the output of {self.directory} has ended")
        with self._log_lock:
            self._replace_log()
            self._limit.reset()

    def finish(self, timeout: float = 5.0) -> bool:
        """The container's process exited: copy what is left and end the output.

        Drops our write ends of the output FIFOs, so each stream ends once the
        shim closes its own (after copying all the container wrote). True when
        everything ended within ``timeout``; otherwise (a background process
        still holds the container's stdout) copying goes on until :meth:`close`.
        """
        with self._state_lock:
            keepalive, self._keepalive = self._keepalive, []
        for fd in keepalive:
            _close(fd)
        return self._finished.wait(timeout)

    def attach(self) -> StdioAttachment:
        """A new client of the container's stdio (CRI Attach)."""
        attachment = StdioAttachment(self)
        with self._state_lock:
            if self._closed or self._finished.is_set():
                raise FailedPrecondition(f"the output of {self.directory} has ended")
            self._attachments.append(attachment)
        return attachment

    def close_stdin(self) -> None:
        """End the container's stdin for good (stdin_once), here and in the shim."""
        with self._state_lock:
            if self._stdin_closed or not self.stdin:
                return
            self._stdin_closed = True
            closed = self._closed
        os.write(self._stdin_cancel_w, b"x")  # wakes a send blocked on a full pipe
        with self._stdin_lock:
            fd, self._stdin_fd = self._stdin_fd, None
        _close(fd)
        if closed:
            return
        self._save_state()
        if self._close_io is not None:
            self._close_io()

    def write_stdin(self, data: bytes) -> None:
        """Write to the container's stdin; blocks while the pipe is full.

        OSError (EPIPE) when the container has no stdin or it was closed.
        """
        with self._stdin_lock:
            view = memoryview(data)
            while view:
                fd = self._stdin_fd
                if fd is None or self._stdin_closed or self._closed:
                    raise OSError(errno.EPIPE, "the container's stdin is closed")
                try:
                    view = view[os.write(fd, view) :]
                    continue
                except BlockingIOError:
                    pass
                ready = select.poll()
                ready.register(fd, select.POLLOUT)
                ready.register(self._stdin_cancel_r, select.POLLIN)
                ready.poll()

    def resize(self, width: int, height: int) -> None:
        if self.tty and self._resize is not None:
            self._resize(width, height)

    # --- teardown ------------------------------------------------------------------

    def release(self) -> None:
        """Stop copying and let go of every end, keeping the FIFOs (daemon shutdown).

        The shim keeps writing into them; a later :meth:`resume` continues.
        """
        self._stop()

    def close(self) -> None:
        """Stop copying and remove the FIFOs and the state file (container deleted)."""
        self._stop()
        self._remove_files()

    def _remove_files(self) -> None:
        for name in (STDIN_FIFO, STDOUT_FIFO, STDERR_FIFO, STATE_FILE, f"{STATE_FILE}.tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))
        with contextlib.suppress(OSError):
            os.rmdir(self.directory)

    def _stop(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        for fd in (self._wake_w, self._stdin_cancel_w):
            with contextlib.suppress(OSError):
                os.write(fd, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                log.warning("container IO %s: copy thread did not stop", self.directory)
        self._end_attachments()
        self._close_fds()

    def _close_fds(self) -> None:
        with self._stdin_lock:
            fd, self._stdin_fd = self._stdin_fd, None
        _close(fd)
        with self._log_lock:
            fd, self._log_fd = self._log_fd, None
        _close(fd)
        with self._state_lock:
            fds = [*self._readers, *self._keepalive]
            self._readers, self._keepalive = {}, []
        for fd in (*fds, self._wake_r, self._wake_w, self._stdin_cancel_r, self._stdin_cancel_w):
            _close(fd)

    def _end_attachments(self) -> None:
        with self._state_lock:
            attachments, self._attachments = self._attachments, []
        for attachment in attachments:
            attachment._end()

    def _detach(self, attachment: StdioAttachment) -> None:
        with self._state_lock:
            with contextlib.suppress(ValueError):
                self._attachments.remove(attachment)


def _load_state(directory: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(directory, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ValueError(f"corrupt container IO state in {directory}: {e}") from e
    return state if isinstance(state, dict) else None


class StdioAttachment(Attachment):
    """A client of a :class:`ContainerIO`: queued output, input into stdin.

    With stdin_once, the container's stdin ends when a client ends its
    input (:meth:`close_input`) or goes away (:meth:`close`) after sending
    some: conmon closes it at the end of the first attach session too.
    """

    def __init__(self, owner: ContainerIO) -> None:
        self._owner = owner
        self._cond = threading.Condition()
        self._chunks: deque[tuple[int, bytes]] = deque()
        self._backlog = 0
        self._ended = False  # no more output will come; queued chunks still delivered
        self._closed = False
        self._sent = False

    def _push(self, stream: int, data: bytes) -> None:
        with self._cond:
            if self._ended or self._closed:
                return
            if self._backlog + len(data) > MAX_ATTACH_BACKLOG:
                log.warning("an attached client of %s fell behind; dropped", self._owner.directory)
                self._chunks.clear()
                self._backlog = 0
                self._ended = True
            else:
                self._chunks.append((stream, data))
                self._backlog += len(data)
            self._cond.notify_all()

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def recv(self) -> tuple[int, bytes] | None:
        with self._cond:
            while not self._chunks and not self._ended and not self._closed:
                self._cond.wait()
            if self._closed or not self._chunks:
                return None
            stream, data = self._chunks.popleft()
            self._backlog -= len(data)
            return stream, data

    def send(self, data: bytes) -> None:
        if self._closed:
            raise OSError(errno.EPIPE, "the attachment is closed")
        self._sent = True
        self._owner.write_stdin(data)

    def close_input(self) -> None:
        if self._owner.stdin_once:
            self._owner.close_stdin()

    def resize(self, width: int, height: int) -> None:
        self._owner.resize(width, height)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._chunks.clear()
            self._cond.notify_all()
        self._owner._detach(self)
        if self._sent and self._owner.stdin_once:
            self._owner.close_stdin()
