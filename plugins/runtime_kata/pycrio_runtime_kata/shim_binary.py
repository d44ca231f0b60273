"""Running a shim v2 binary's own commands: ``start`` and ``delete``.

containerd's runtime v2 contract (runtime/v2/README.md and containerd 1.6's
shim.Command): the binary is run in the container's bundle directory as

    <runtime_path> -namespace <ns> -address <addr> -publish-binary <bin> -id <id> start

with ``TTRPC_ADDRESS`` (where the shim forwards its events),
``GRPC_ADDRESS`` and ``NAMESPACE`` in its environment. ``start`` starts a
shim daemon (or finds the one already serving the container's group: the
runc shim and Kata group a pod's containers by its sandbox-id annotation)
and prints its ttrpc address, ``unix:///run/containerd/s/<hash>``. The daemon
writes its log to the FIFO named ``log`` in its working directory, which the
caller must have created and opened for reading first (the shim's open for
writing would block, or fail if it is missing).

``delete`` is the cleanup command for a container whose shim is gone: it
removes the runtime's container and prints a protobuf DeleteResponse (exit
status and time) on stdout. It finds the bundle as containerd lays bundles
out, ``<dir>/<task id>``: the runc shim reads ``<dirname(cwd)>/<id>/runtime``.
pycrio's bundles are named otherwise (``<container>/bundle``), so the driver
gives each task a link named by its task id (:func:`link_bundle`) and runs
the shim there, with ``$PWD`` naming the link (Go's os.Getwd returns $PWD
when it is the working directory).
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import threading
from dataclasses import dataclass

from pycrio import reaper
from pycrio.errors import DeadlineExceeded, Internal
from pycrio_runtime_kata import api

log = logging.getLogger("pycrio.kata.shim")

LOG_FIFO = "log"


@dataclass(frozen=True)
class ShimCommand:
    """How to run one handler's shim binary."""

    runtime_path: str
    namespace: str
    #: the "containerd address" the shim is told; it only names the shim's
    #: socket (a hash of address, namespace and group), so a per-driver value
    #: keeps two pycrio instances' shims apart
    address: str
    ttrpc_address: str
    publish_binary: str = ""
    debug: bool = False

    def argv(self, container_id: str, action: str, bundle: str = "") -> list[str]:
        args = [
            self.runtime_path,
            "-namespace",
            self.namespace,
            "-address",
            self.address,
            "-publish-binary",
            self.publish_binary,
            "-id",
            container_id,
        ]
        if bundle:
            args += ["-bundle", bundle]
        if self.debug:
            args.append("-debug")
        return [*args, action]

    def env(self, cwd: str = "") -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TTRPC_ADDRESS=self.ttrpc_address,
            GRPC_ADDRESS=self.address,
            NAMESPACE=self.namespace,
        )
        if cwd:
            env["PWD"] = cwd
        else:
            env.pop("PWD", None)
        return env


def link_bundle(links_dir: str, task_id: str, bundle: str) -> str:
    """``<links_dir>/<task id>``, a symlink to ``bundle``: the bundle path the shim is given."""
    os.makedirs(links_dir, mode=0o700, exist_ok=True)
    link = os.path.join(links_dir, task_id)
    try:
        current = os.readlink(link)
    except FileNotFoundError:
        current = None
    except OSError as e:
        raise Internal(f"{link} exists and is not a link to a bundle: {e.strerror}") from e
    if current != bundle:
        if current is not None:
            os.unlink(link)
        os.symlink(bundle, link)
    return link


def unlink_bundle(link: str, bundle: str) -> None:
    """Remove the task's link if it still points at ``bundle``."""
    try:
        if os.readlink(link) == bundle:
            os.unlink(link)
    except OSError:
        pass


def parse_address(output: bytes | str) -> str:
    """The unix socket path from ``start``'s output.

    ``unix:///run/containerd/s/<hash>`` (containerd 1.5+) or a bare path;
    an abstract socket (``unix://@name``, older shims) becomes ``\\0name``.
    Raises ValueError for anything else (a shim that printed an error).
    """
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    text = text.strip()
    if not text or "\n" in text:
        raise ValueError(f"the shim printed no single address: {text[:300]!r}")
    if text.startswith("{"):
        # containerd 2.x bootstrap parameters: {"version":2,"address":..,"protocol":"ttrpc"}
        import json

        try:
            doc = json.loads(text)
        except ValueError as e:
            raise ValueError(f"the shim printed unreadable bootstrap JSON: {e}") from e
        if doc.get("protocol", "ttrpc") != "ttrpc":
            raise ValueError(f"the shim speaks {doc.get('protocol')!r}, not ttrpc")
        text = str(doc.get("address") or "")
    if text.startswith("unix://"):
        text = text[len("unix://") :]
    if text.startswith("@"):
        return "\0" + text[1:]
    if not text.startswith("/"):
        raise ValueError(f"the shim printed no unix socket address: {text[:300]!r}")
    return text


def ensure_log_fifo(bundle: str) -> str:
    """The bundle's ``log`` FIFO, created if missing (mode 0600)."""
    path = os.path.join(bundle, LOG_FIFO)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkfifo(path, 0o600)
        return path
    if not stat.S_ISFIFO(st.st_mode):
        raise Internal(f"{path} exists and is not a FIFO; the shim would not log there")
    return path


def drain_log(path: str, container_id: str) -> threading.Thread | None:
    """Copy the shim's log FIFO into our log, on a thread, until the shim closes it.

    Opened non-blocking for reading first, so the shim's open for writing
    does not block; the thread then waits for data with the fd made blocking.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        log.warning("shim log %s cannot be opened: %s", path, e.strerror)
        return None

    def run() -> None:
        import select

        buf = b""
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            writer_seen = False
            while True:
                events = poller.poll(1000)
                if not events:
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    if writer_seen:
                        break  # the shim closed its end: it exited
                    # no writer yet (POLLHUP before the shim opened the FIFO)
                    threading.Event().wait(0.2)
                    continue
                writer_seen = True
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        log.info("shim %s: %s", container_id[:12], line.decode(errors="replace"))
        finally:
            os.close(fd)

    thread = threading.Thread(target=run, name=f"shim-log-{container_id[:12]}", daemon=True)
    thread.start()
    return thread


def _run(cmd: ShimCommand, task_id: str, action: str, cwd: str, timeout: float) -> bytes:
    """Run one binary command in ``cwd`` (with $PWD naming it); its stdout.

    No options on stdin (containerd sends the runc shim's options there; Kata
    takes its configuration from the CreateTaskRequest instead).
    """
    argv = cmd.argv(task_id, action, bundle=cwd if action == "delete" else "")
    what = f"shim {cmd.runtime_path} {action} for {task_id}"
    try:
        cp = reaper.run(
            argv,
            timeout,
            cwd=cwd,
            env=cmd.env(cwd),
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
    except subprocess.TimeoutExpired:
        raise DeadlineExceeded(f"{what} did not finish within {timeout:g}s") from None
    except OSError as e:
        raise Internal(f"cannot run shim {cmd.runtime_path!r}: {e.strerror}") from e
    if cp.returncode != 0:
        message = (cp.stderr or cp.stdout).decode(errors="replace").strip()
        raise Internal(f"{what} failed (exit {cp.returncode}): {message[-2000:]}")
    return cp.stdout


def start(cmd: ShimCommand, container_id: str, bundle: str, timeout: float) -> str:
    """Run ``start`` in ``bundle``; the shim's socket path."""
    out = _run(cmd, container_id, "start", bundle, timeout)
    try:
        return parse_address(out)
    except ValueError as e:
        raise Internal(f"shim {cmd.runtime_path} start for {container_id}: {e}") from e


@dataclass(frozen=True)
class DeleteResult:
    pid: int
    exit_status: int
    exited_at: int  # ns


def delete(cmd: ShimCommand, container_id: str, bundle: str, timeout: float) -> DeleteResult:
    """Run the binary's ``delete`` (the cleanup when the shim is gone)."""
    if not os.path.isdir(bundle):
        raise Internal(f"shim delete for {container_id}: its bundle {bundle} does not exist")
    out = _run(cmd, container_id, "delete", bundle, timeout)
    resp = api.task.DeleteResponse()
    try:
        resp.ParseFromString(out)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise Internal(f"shim delete for {container_id} printed no DeleteResponse: {e}") from e
    return DeleteResult(resp.pid, resp.exit_status, api.timestamp_ns(resp.exited_at))
