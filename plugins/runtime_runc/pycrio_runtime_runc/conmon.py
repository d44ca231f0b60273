"""conmon, the container monitor: its argv, the create handshake, and its files.

Why conmon: the container's init is conmon's child, not the daemon's, so the
exit code, an OOM kill and the container's output are recorded even while
the daemon is down or restarting. This module speaks conmon 2.1's protocol
(the one CRI-O uses), checked against conmon's sources:

* **start pipe** (env ``_OCI_STARTPIPE=<fd>``): conmon blocks reading it
  before forking anything; one byte written (or the pipe closed) lets it go
  on. CRI-O moves conmon into its cgroup there; we move the monitor while
  the runtime's create runs instead, where the move's wait costs nothing.
* conmon then **double-forks**: the process we started writes the
  monitor's pid to ``-P <conmon.pid>`` and exits 0 at once; the monitor
  lives on (re-parented to the nearest subreaper), runs ``runtime create``.
* **sync pipe** (env ``_OCI_SYNCPIPE=<fd>``): with ``--api-version 1`` the
  monitor writes one JSON line, ``{"data": <container pid>}`` on success or
  ``{"data": -1, "message": "<runtime stderr>"}`` when create failed. If
  the runtime failed silently, conmon exits without writing: EOF.
* when the container ends, the decimal exit code (128+signal for a signal)
  is written to ``<exit_dir>/<container id>`` and ``<persist dir>/exit``;
  an OOM kill seen in the container's memory cgroup creates an empty file
  ``<persist dir>/oom`` (and ``oom`` in conmon's cwd, the bundle).
* conmon makes two FIFOs in the bundle: ``ctl`` takes lines
  ``"<type> <height> <width>\\n"`` (type 1 = resize, 2 = reopen the log
  files) and ``winsz``; the attach socket is ``<bundle>/attach``, reached
  through the symlink ``<socket dir>/<container id>`` -> bundle. SIGUSR1 is
  *not* a log-reopen signal in conmon (it drives its child reaping).

Paths are kept in ``state_dir`` (conmon's persist dir) so they can be found
again after a daemon restart: see :func:`read_monitor_record`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pycrio import reaper
from pycrio.errors import DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument

log = logging.getLogger("pycrio.runc.conmon")

CTL_RESIZE = 1
CTL_REOPEN_LOGS = 2
#: Longest usable unix socket path (sizeof(sun_path) - 1).
SUN_PATH_MAX = 107
MONITOR_RECORD = "monitor.json"
_LOGRUS_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_LOGRUS_LEVEL = re.compile(r"\blevel=(\w+)")
_ERROR_LEVELS = ("error", "fatal", "panic")


def _unquote(quoted: str) -> str:
    """Undo logrus' Go-style quoting (a JSON string in the common cases)."""
    try:
        return str(json.loads(f'"{quoted}"'))
    except ValueError:
        return quoted


def runtime_message(stderr: bytes | str) -> str:
    """The runtime's error text, unwrapped from logrus' ``level=error msg="..."``.

    When some lines are errors, only those are kept: runc also logs warnings
    ("cannot toggle freezer: ...") on the way to a failure, which would bury
    the reason (a missing executable) in noise.
    """
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    text = text.strip()
    levels = [(_LOGRUS_LEVEL.search(line), line) for line in text.splitlines()]
    errors = [line for m, line in levels if m and m.group(1) in _ERROR_LEVELS]
    if errors and _LOGRUS_MSG.search("\n".join(errors)):
        text = "\n".join(errors)
    msgs = _LOGRUS_MSG.findall(text)
    if msgs:
        return "; ".join(_unquote(m) for m in msgs)
    return text


@dataclass
class MonitorSpec:
    """Everything that goes on conmon's command line for one container."""

    conmon_path: str
    runtime_path: str
    container_id: str
    bundle: str
    log_path: str
    exit_dir: str
    state_dir: str
    socket_dir: str
    runtime_args: list[str] = field(default_factory=list)
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    log_size_max: int = -1
    log_level: str = "info"
    syslog: bool = False
    systemd_cgroup: bool = False
    no_pivot: bool = False
    name: str = ""


@dataclass
class MonitorRecord:
    """What a later call (possibly after a daemon restart) needs to find the monitor."""

    container_id: str
    bundle: str
    log_path: str
    ctl_path: str
    attach_path: str
    conmon_pid_file: str
    cgroups: list[str] = field(default_factory=list)


def pid_file(state_dir: str) -> str:
    """Where the runtime writes the container's init pid."""
    return os.path.join(state_dir, "pidfile")


def conmon_pid_file(state_dir: str) -> str:
    """Where conmon writes the monitor's own pid (after its double fork)."""
    return os.path.join(state_dir, "conmon.pid")


def attach_socket_path(socket_dir: str, container_id: str) -> str:
    """The attach socket as clients address it: through conmon's short symlink."""
    return os.path.join(socket_dir, container_id, "attach")


def ctl_fifo_path(bundle: str) -> str:
    """conmon's control FIFO (resize, reopen logs); conmon makes it in the bundle."""
    return os.path.join(bundle, "ctl")


def build_argv(spec: MonitorSpec) -> list[str]:
    """conmon's argv for creating a container, in CRI-O's order and choices.

    ``--sync`` is deliberately absent: conmon must double-fork so the
    container outlives the daemon. ``--leave-stdin-open`` keeps stdin open
    after the first attach disconnects, unless the CRI asked for stdin_once.
    """
    argv = [
        spec.conmon_path,
        "--api-version",
        "1",
        "-c",
        spec.container_id,
        "-u",
        spec.container_id,
        "-r",
        spec.runtime_path,
        "-b",
        spec.bundle,
        "-p",
        pid_file(spec.state_dir),
        "-P",
        conmon_pid_file(spec.state_dir),
        "-l",
        f"k8s-file:{spec.log_path}",
        "--exit-dir",
        spec.exit_dir,
        "--persist-dir",
        spec.state_dir,
        "--socket-dir-path",
        spec.socket_dir,
        "--log-level",
        spec.log_level,
    ]
    if spec.name:
        argv += ["-n", spec.name]
    if spec.systemd_cgroup:
        argv.append("-s")
    if spec.syslog:
        argv.append("--syslog")
    for arg in spec.runtime_args:
        argv += ["--runtime-arg", arg]
    if spec.no_pivot:
        argv.append("--no-pivot")
    if spec.log_size_max >= 0:
        argv += ["--log-size-max", str(spec.log_size_max)]
    if spec.tty:
        argv.append("-t")
    if spec.stdin:
        argv.append("-i")
        if not spec.stdin_once:
            argv.append("--leave-stdin-open")
    return argv


def check_socket_dir(socket_dir: str, container_id: str) -> None:
    """Refuse a socket dir that would make conmon truncate the attach socket path.

    conmon copies the path into sun_path with strncpy: a longer one is cut
    silently and the socket lands somewhere else, or bind fails and conmon
    dies before reporting anything. Better to say so up front.
    """
    path = attach_socket_path(socket_dir, container_id)
    if len(path.encode()) > SUN_PATH_MAX:
        raise InvalidArgument(
            f"attach socket path {path!r} is {len(path.encode())} bytes, more than a unix"
            f" socket allows ({SUN_PATH_MAX}); configure a shorter attach_socket_dir"
        )


def parse_sync_message(data: bytes) -> tuple[int, str]:
    """(pid or negative error, message) from one line conmon wrote on the sync pipe."""
    line = data.strip().splitlines()[0] if data.strip() else b""
    try:
        msg = json.loads(line)
        value = int(msg["data"] if "data" in msg else msg["pid"])
    except (ValueError, KeyError, TypeError) as e:
        raise Internal(f"conmon sent an unreadable sync message {data[:200]!r}: {e}") from e
    return value, str(msg.get("message", ""))


def read_exit_code(exit_dir: str, container_id: str) -> int | None:
    """The exit code conmon recorded, or None while the container has not exited.

    conmon writes the file with g_file_set_contents (a rename), so a reader
    never sees it half written. A file that is empty or garbage (from a
    crash) reads as 255 rather than hiding that the container is gone.
    """
    path = os.path.join(exit_dir, container_id)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        log.warning("exit file %s holds %r, not a number; reporting 255", path, text[:50])
        return 255


def container_oom_killed(state_dir: str) -> bool:
    """True if conmon saw an OOM kill in the container's memory cgroup."""
    return os.path.exists(os.path.join(state_dir, "oom"))


def write_monitor_record(state_dir: str, record: MonitorRecord) -> None:
    """Persist how to reach the monitor; written atomically (rename)."""
    path = os.path.join(state_dir, MONITOR_RECORD)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(record), f)
    os.replace(tmp, path)


def read_monitor_record(state_dir: str) -> MonitorRecord | None:
    try:
        with open(os.path.join(state_dir, MONITOR_RECORD), encoding="utf-8") as f:
            return MonitorRecord(**json.load(f))
    except (FileNotFoundError, TypeError, ValueError):
        return None


def monitor_pid(state_dir: str) -> int | None:
    """The monitor's pid from its pid file, if conmon wrote one."""
    try:
        with open(conmon_pid_file(state_dir), encoding="ascii") as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def _write_ctl(state_dir: str, kind: int, height: int, width: int) -> MonitorRecord:
    """One control line to conmon; no reader on the FIFO (ENXIO) means it is gone."""
    record = read_monitor_record(state_dir)
    if record is None:
        raise FailedPrecondition(f"no container monitor recorded in {state_dir}")
    try:
        fd = os.open(record.ctl_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise FailedPrecondition(
            f"container {record.container_id}: its monitor is not running ({e.strerror})"
        ) from e
    try:
        os.write(fd, f"{kind} {height} {width}\n".encode())
    finally:
        os.close(fd)
    return record


def resize_terminal(state_dir: str, width: int, height: int) -> None:
    """Resize the container's terminal (attach with a TTY): conmon does the ioctl."""
    _write_ctl(state_dir, CTL_RESIZE, height, width)


def reopen_log(state_dir: str, *, timeout: float = 5.0) -> None:
    """Make conmon reopen the container's log file (CRI ReopenContainerLog).

    The kubelet renames the log away, then asks for this; conmon reacts to
    ``"2 0 0\\n"`` on its ``ctl`` FIFO by creating the file again. We wait
    until it exists so the kubelet's next look finds it. No reader on the
    FIFO (ENXIO) means the monitor is gone.
    """
    record = _write_ctl(state_dir, CTL_REOPEN_LOGS, 0, 0)
    deadline = time.monotonic() + timeout
    while not os.path.exists(record.log_path):
        if time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"container {record.container_id}: conmon did not reopen {record.log_path}"
                f" within {timeout:g}s"
            )
        time.sleep(0.02)


def _read_line(fd: int, timeout: float) -> bytes | None:
    """Read up to the first newline or EOF; None if the deadline passes first."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _kill_monitor(state_dir: str) -> None:
    pid = monitor_pid(state_dir)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _place_monitor(state_dir: str, place: Callable[[int], None] | None) -> Exception | None:
    """Put the monitor (conmon after its double fork) where ``place`` says.

    Done while the runtime's create runs, not while conmon is parked on its
    start pipe: on cgroup v1 a move into a cgroup waits for an RCU grace
    period (5-20 ms here), which then costs no latency. The monitor's only
    child by then is ``runtime create``, which exits within the call; the
    container's processes join the container's own cgroup whatever conmon's.
    Returns the failure, if any, for the caller to report when create
    succeeded (a monitor that already exited cannot be moved, nor needs to).
    """
    if place is None:
        return None
    pid = monitor_pid(state_dir)
    if pid is None:
        return None  # conmon failed before forking; its stderr says why
    try:
        place(pid)
    except Exception as e:  # noqa: BLE001 - placement is best effort, as in CRI-O
        return e
    return None


def start(
    spec: MonitorSpec,
    *,
    timeout: float,
    place: Callable[[int], None] | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Run conmon for ``runtime create`` and return the container's init pid.

    ``place(pid)`` is called with the monitor's pid while the runtime's
    create runs (see :func:`_place_monitor`). Only the
    first conmon process is our child; it exits right after the double fork
    and we reap it here, so the daemon (a child subreaper) never waits on the
    long-lived monitor. Raises Internal with conmon's or the runtime's
    message, DeadlineExceeded if no pid arrives within ``timeout`` seconds.
    """
    check_socket_dir(spec.socket_dir, spec.container_id)
    for d in (spec.state_dir, spec.exit_dir, spec.socket_dir, os.path.dirname(spec.log_path)):
        if d:
            os.makedirs(d, mode=0o755, exist_ok=True)
    for stale in (pid_file(spec.state_dir), conmon_pid_file(spec.state_dir)):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    deadline = time.monotonic() + timeout
    sync_r, sync_w = os.pipe()
    start_r, start_w = os.pipe()
    child_env = dict(os.environ if env is None else env)
    child_env["_OCI_SYNCPIPE"] = str(sync_w)
    child_env["_OCI_STARTPIPE"] = str(start_r)
    try:
        try:
            proc = reaper.popen(
                build_argv(spec),
                cwd=spec.bundle,
                env=child_env,
                pass_fds=(sync_w, start_r),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise Internal(f"cannot run conmon {spec.conmon_path!r}: {e.strerror}") from e
        finally:
            os.close(sync_w)
            os.close(start_r)
        try:
            try:
                os.write(start_w, b"\0")
            except BrokenPipeError:
                pass  # conmon already died; its stderr says why
            os.close(start_w)
            start_w = -1
            _, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise DeadlineExceeded(
                f"container {spec.container_id}: conmon did not fork within {timeout:g}s"
            ) from None
        finally:
            reaper.release(proc.pid)
        stderr = err.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise Internal(
                f"container {spec.container_id}: conmon failed (exit {proc.returncode}): {stderr}"
            )
        placement_error = _place_monitor(spec.state_dir, place)
        line = _read_line(sync_r, max(0.1, deadline - time.monotonic()))
        if placement_error is not None and line and line.strip():
            log.warning("container %s: cannot place conmon: %s", spec.container_id, placement_error)
        if line is None:
            _kill_monitor(spec.state_dir)
            raise DeadlineExceeded(
                f"container {spec.container_id}: runtime create did not finish within {timeout:g}s"
            )
        if not line.strip():
            raise Internal(
                f"container {spec.container_id}: conmon exited without reporting a pid"
                f" (the runtime failed without a message){': ' + stderr if stderr else ''}"
            )
        pid, message = parse_sync_message(line)
        if pid <= 0:
            raise Internal(
                f"container {spec.container_id}: runtime create failed: {runtime_message(message)}"
            )
        return pid
    finally:
        os.close(sync_r)
        if start_w >= 0:
            os.close(start_w)
