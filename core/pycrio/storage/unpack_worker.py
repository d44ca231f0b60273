"""Decompress, verify and unpack a layer in a process of its own.

Why: a pull is CPU-bound (two hashes, inflate, file creation) and the layers
of an image come in parallel. In one process their threads take turns at the
GIL thousands of times per layer, and the handoffs cost more CPU than the
work they interleave (futex wake-ups and context switches were a third of the
daemon's kernel time). Each layer therefore goes to a worker forked from a
forkserver (started once, with this module preloaded, so a worker starts in a
few milliseconds): the daemon's thread reads the registry, checks the blob's
digest and passes the compressed bytes over a socket pair; the worker does the
rest with its own interpreter, and answers with a summary or the error.

The security properties are unpack_layer's: the worker runs the same code.
If the daemon dies, the socket closes, the worker sees a truncated stream,
and the forkserver leaves with its parent.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import socket
import threading
from collections.abc import Iterator
from multiprocessing import forkserver
from typing import Any, BinaryIO

from pycrio import errors, reaper
from pycrio.storage.compression import open_decompressed
from pycrio.storage.digest_reader import DigestReader
from pycrio.storage.layer_unpack import LayerSummary, WhiteoutMode, unpack_layer

log = logging.getLogger("pycrio.storage")

CHUNK = 1 << 20
#: How long the daemon waits for a worker to take data or to answer.
WORKER_TIMEOUT = 600.0
_lock = threading.Lock()
_ctx: Any = None


class _SocketReader:
    """The compressed stream as a file: what the daemon sends until it shuts its side."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        try:
            return self.sock.recv(min(size, CHUNK))
        except ConnectionResetError:
            raise errors.DataLoss("the layer stream broke off (the daemon went away)") from None

    def readable(self) -> bool:
        return True


class _Collect(logging.Handler):
    """The worker's warnings, handed back to the daemon's log with the result."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _work(sock: socket.socket, diff_dir: str, media_type: str, diff_id: str, mode: str) -> None:
    """The worker's body: unpack what arrives, then report.

    The daemon only learns that the blob was cut short from its own side (the
    registry's stream and the blob digest), so a worker that stops early
    still reads to the end: the daemon never blocks on a full socket.
    """
    warnings = _Collect()
    logging.getLogger("pycrio").addHandler(warnings)
    stream = _SocketReader(sock)
    try:
        tar = DigestReader(open_decompressed(stream, media_type), diff_id)  # type: ignore[arg-type]
        summary = unpack_layer(tar, diff_dir, WhiteoutMode(mode))
        tar.verify()
        result: list = ["ok", summary.entries, summary.bytes]
    except errors.CRIError as e:
        result = ["error", _public_kind(e), e.message]
    except Exception as e:  # noqa: BLE001 - reported to the daemon, which raises it
        result = ["error", "Internal", f"unpacking failed: {type(e).__name__}: {e}"]
    try:
        while stream.read(CHUNK):  # the rest of the blob, unused
            pass
    except errors.DataLoss as e:
        result = ["error", "DataLoss", e.message]
    try:
        sock.sendall(json.dumps([*result, warnings.messages]).encode())
    finally:
        sock.close()


def _public_kind(error: errors.CRIError) -> str:
    """The pycrio.errors class an error is (UnsafeLayer travels as InvalidArgument)."""
    for cls in type(error).__mro__:
        if getattr(errors, cls.__name__, None) is cls:
            return cls.__name__
    return "Internal"


def _context() -> Any:
    """The forkserver context, its server running (started at the first pull).

    The server is the daemon's child but multiprocessing waits for it itself
    (to notice it died), so the daemon's reaper is told to keep off it.
    """
    global _ctx
    with _lock:
        if _ctx is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            _ctx = ctx
        forkserver.ensure_running()
        pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # noqa: SLF001
        if pid:
            reaper.keep_off(pid)
        return _ctx


def _error(kind: str, message: str) -> errors.CRIError:
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.CRIError)):
        cls = errors.Internal
    return cls(message)


def unpack(
    chunks: Iterator[bytes], diff_dir: str, media_type: str, diff_id: str, mode: WhiteoutMode
) -> LayerSummary:
    """Unpack the compressed ``chunks`` into ``diff_dir`` in a worker process.

    Raises what unpacking in this process would raise (InvalidArgument for a
    bad layer, DataLoss for a diff ID mismatch, ...). Errors from ``chunks``
    itself (the registry, the blob digest) propagate after the worker is
    stopped.
    """
    ours, theirs = socket.socketpair()
    proc = _context().Process(
        target=_work,
        args=(theirs, diff_dir, media_type, diff_id, str(mode)),
        name="pycrio-unpack",
        daemon=True,
    )
    try:
        proc.start()
    except OSError as e:
        ours.close()
        raise errors.Internal(f"cannot start a layer unpacking process: {e}") from e
    finally:
        theirs.close()
    # a worker stuck on a stalled disk must not hold the pull thread forever,
    # whether it stops taking data or stops answering
    ours.settimeout(WORKER_TIMEOUT)
    try:
        try:
            for chunk in chunks:
                ours.sendall(chunk)
            ours.shutdown(socket.SHUT_WR)
        except TimeoutError:
            raise errors.DeadlineExceeded(
                f"unpacking into {diff_dir} made no progress for {WORKER_TIMEOUT:g}s"
            ) from None
        except (BrokenPipeError, ConnectionResetError):
            log.debug("the unpacking process of %s stopped reading early", diff_dir)
        try:
            answer = b"".join(iter(lambda: ours.recv(65536), b""))
        except TimeoutError:
            raise errors.DeadlineExceeded(
                f"unpacking into {diff_dir} made no progress for {WORKER_TIMEOUT:g}s"
            ) from None
        if not answer:
            proc.join(5)
            raise errors.Internal(f"the layer unpacking process died (exit code {proc.exitcode})")
        result = json.loads(answer)
    finally:
        ours.close()
        if proc.is_alive():
            proc.kill()
        proc.join(10)
    *outcome, warnings = result
    for message in warnings:
        log.warning("%s", message)
    if outcome[0] == "ok":
        return LayerSummary(entries=outcome[1], bytes=outcome[2])
    raise _error(outcome[1], outcome[2])


def read_chunks(stream: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk
