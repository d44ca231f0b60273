"""The CRI container log format, written as conmon writes it (sans-IO).

Without conmon, the driver itself turns a container's stdout and stderr into
the file the kubelet reads (``kubectl logs``). The kubelet's parser
(pkg/kubelet/kuberuntime/logs) splits each line on spaces into an RFC 3339
timestamp (parsed leniently: any fraction, ``Z`` or an offset), the stream
(``stdout`` or ``stderr``), a tag (``P`` for a partial line, ``F`` for the end
of one) and the content; for a ``P`` line it drops the newline the runtime
added and joins the pieces. So what matters is that every record ends in a
newline and a line cut anywhere is tagged ``P`` until its last piece.

We match conmon 2.1 byte for byte, so logs read the same whichever driver
ran the container:

* each chunk read from a pipe (at most :data:`BUF_SIZE` bytes, conmon's
  ``STDIO_BUF_SIZE``) is cut at newlines; every line ending in ``\\n`` is an
  ``F`` record, a remainder without one a ``P`` record (with ``\\n`` added).
  Partial output is written at once, not held back for the rest of its line:
  a prompt shows up in the log as soon as it is printed;
* all records of one chunk share one timestamp, local time with a numeric
  offset and nine fraction digits (``2026-12-07T12:00:00.000000001+00:00``);
* ``log_size_max``: before a record that would take the file past the limit,
  the file is replaced by an empty one (conmon's ``reopen_k8s_file``: the old
  content is dropped, there is no ``.1`` kept) and the record starts the new
  file; a single record longer than the limit is still written whole.

Everything here works on bytes and is unit-tested on bytes; the IO is in
:mod:`pycrio_runtime_kata.stdio`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: conmon reads a pipe this much at a time; a longer line is split in ``P`` records.
BUF_SIZE = 8192

STDOUT = b"stdout"
STDERR = b"stderr"
TAG_PARTIAL = b"P"
TAG_FULL = b"F"


def timestamp(ns: int | None = None) -> bytes:
    """``ns`` (nanoseconds since the epoch; now by default) as conmon formats it.

    Local time (the daemon's TZ) with its UTC offset as ``+hh:mm``, never
    ``Z``: the same string conmon's ``set_k8s_timestamp`` prints.
    """
    if ns is None:
        ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    tm = time.localtime(sec)
    off = tm.tm_gmtoff or 0
    sign = "+"
    if off < 0:
        sign, off = "-", -off
    return (
        f"{tm.tm_year:d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:{tm.tm_min:02d}:"
        f"{tm.tm_sec:02d}.{frac:09d}{sign}{off // 3600:02d}:{(off % 3600) // 60:02d}"
    ).encode("ascii")


def encode(stream: bytes, data: bytes, ts: bytes) -> list[bytes]:
    """The log records for ``data``, read from ``stream`` at time ``ts``.

    ``data`` is treated as successive reads of at most :data:`BUF_SIZE` bytes,
    so the records do not depend on how much one read happened to return
    beyond that. Each record is a complete line ending in ``\\n``.
    """
    if stream not in (STDOUT, STDERR):
        raise ValueError(f"unknown stream {stream!r}")
    prefix = ts + b" " + stream + b" "
    records: list[bytes] = []
    for start in range(0, len(data), BUF_SIZE):
        chunk = data[start : start + BUF_SIZE]
        pos = 0
        while pos < len(chunk):
            end = chunk.find(b"\n", pos)
            if end < 0:
                records.append(prefix + TAG_PARTIAL + b" " + chunk[pos:] + b"\n")
                break
            records.append(prefix + TAG_FULL + b" " + chunk[pos : end + 1])
            pos = end + 1
    return records


@dataclass
class SizeLimit:
    """conmon's ``log_size_max`` accounting for one log file.

    ``max_bytes`` <= 0 means no limit. ``written`` is what the current file
    already holds (0 for a new file; its size when a restarted daemon takes
    an existing file back, which conmon, never restarted, does not need).
    """

    max_bytes: int = -1
    written: int = 0

    def plan(self, records: list[bytes]) -> list[tuple[bool, bytes]]:
        """Group ``records`` into writes: ``(truncate_first, data)`` in order.

        ``truncate_first`` True means: replace the log file by an empty one,
        then write ``data`` to it. Updates :attr:`written`. Records before
        the last truncation would be dropped with the file at once, so they are
        left out (conmon writes them, then throws them away).
        """
        out: list[tuple[bool, list[bytes]]] = []
        for record in records:
            size = len(record)
            truncate = self.max_bytes > 0 and self.written + size > self.max_bytes
            if truncate:
                self.written = 0
            if truncate or not out:
                out.append((truncate, [record]))
            else:
                out[-1][1].append(record)
            self.written += size
        last = max((i for i, (truncate, _) in enumerate(out) if truncate), default=0)
        return [(truncate, b"".join(parts)) for truncate, parts in out[last:]]

    def reset(self) -> None:
        """The file was replaced by an empty one (ReopenContainerLog)."""
        self.written = 0
