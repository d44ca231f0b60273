"""Run ``<runtime> exec`` to completion: capped output, a deadline that really kills.

Why not ``communicate()``: it buffers without bound (a chatty command could
exhaust the daemon's memory) and on timeout kills only the runtime, leaving
the process in the container running. Here both pipes are read together
with a selector (no deadlock when one fills), bytes past ``max_output`` are
read and dropped (so the writer never blocks on a full pipe), and on the
deadline the exec'd process is killed through its pid file: runc's nsexec
makes it a session leader, so its process group is everything it started
that did not leave the group. Then the runtime itself is killed.
"""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import time

from pycrio import reaper
from pycrio.errors import Internal
from pycrio.kernel.interfaces import ExecResult
from pycrio_runtime_runc.exec_process import exit_code, kill_exec, kill_group, reap_if_ours

log = logging.getLogger("pycrio.runc")

CHUNK = 65536
#: How long to keep draining pipes once the process was killed: a grandchild
#: that escaped the process group may hold them open forever.
DRAIN_AFTER_KILL = 2.0


def _pump(
    proc: subprocess.Popen, deadline: float | None, max_output: int
) -> tuple[bytearray, bytearray, bool]:
    """Read stdout and stderr until both close or the deadline passes."""
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    sel = selectors.DefaultSelector()
    for stream in bufs:
        sel.register(stream, selectors.EVENT_READ)
    try:
        while sel.get_map():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return bufs[proc.stdout], bufs[proc.stderr], False
            for key, _ in sel.select(wait):
                chunk = os.read(key.fd, CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.fileobj]
                room = max_output - len(buf)
                if room > 0:
                    buf += chunk[:room]
        return bufs[proc.stdout], bufs[proc.stderr], True
    finally:
        sel.close()


def run(
    argv: list[str], *, timeout: float, max_output: int, pid_file: str, wait_timeout: float = 10.0
) -> ExecResult:
    """Run the runtime's exec command ``argv`` (which writes ``pid_file``) to completion.

    ``timeout`` 0 means no deadline. When the deadline passes the result has
    ``timed_out`` True and ``exit_code`` is what the runtime reported after
    the kill (usually 137). ``wait_timeout`` bounds the wait for the runtime
    to exit after its output closed.
    """
    try:
        proc = reaper.popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise Internal(f"cannot run {argv[0]!r}: {e.strerror}") from e
    deadline = time.monotonic() + timeout if timeout > 0 else None
    timed_out = False
    exec_pid: int | None = None
    try:
        out, err, finished = _pump(proc, deadline, max_output)
        if not finished:
            timed_out = True
            exec_pid = kill_exec(proc, pid_file)
            more_out, more_err, _ = _pump(proc, time.monotonic() + DRAIN_AFTER_KILL, max_output)
            out += more_out[: max(0, max_output - len(out))]
            err += more_err[: max(0, max_output - len(err))]
        try:
            proc.wait(timeout=wait_timeout)
        except subprocess.TimeoutExpired:
            exec_pid = kill_exec(proc, pid_file) or exec_pid
            proc.wait(timeout=wait_timeout)
        if exec_pid is not None:
            reap_if_ours(exec_pid)
    finally:
        if proc.returncode is None:
            kill_group(proc.pid)
            try:
                proc.wait(timeout=wait_timeout)
            except subprocess.TimeoutExpired:
                # released below: the daemon's reaper collects it when it finally dies
                log.warning("runtime exec %d survived SIGKILL for %ss", proc.pid, wait_timeout)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        reaper.release(proc.pid)
    return ExecResult(
        exit_code=exit_code(proc.returncode if proc.returncode is not None else -9),
        stdout=bytes(out),
        stderr=bytes(err),
        timed_out=timed_out,
    )
