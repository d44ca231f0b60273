"""Pod namespaces pinned as bind-mounted files, so no infra process is needed.

This is what CRI-O's pinns does for ``drop_infra_ctr = true``: ``unshare``
creates the namespaces and bind-mounts them onto files under the run dir,
where runc joins them by path and CNI configures the network namespace. A
shared PID namespace is the exception: it dies with its first process, so a
holder process keeps it alive until the pod stops: its PID 1, ``pause``
(catatonit under ``unshare``, see :mod:`pycrio.sandbox.pause`), which also
reaps the pod's orphans.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from pycrio import reaper
from pycrio.errors import Internal
from pycrio.linux import libc, mountinfo, processes
from pycrio.sandbox import nsinit, pause

log = logging.getLogger("pycrio.sandbox")

PIN_TIMEOUT = 30
KINDS = ("net", "ipc", "uts", "pid")

_mount_lock = threading.Lock()


def ensure_private_dir(path: str) -> None:
    """Make ``path`` a private mount so pins do not propagate to other mounts.

    Serialized: two pods starting at once would otherwise each stack a bind
    mount of the directory on itself.
    """
    os.makedirs(path, mode=0o711, exist_ok=True)
    with _mount_lock:
        if is_mountpoint(path):  # os.path.ismount misses a bind mount of a dir onto itself
            return
        for argv in (["mount", "--bind", path, path], ["mount", "--make-private", path]):
            result = reaper.run(argv, timeout=PIN_TIMEOUT, capture_output=True)
            if result.returncode != 0:
                err = result.stderr.decode(errors="replace").strip()
                raise Internal(f"{' '.join(argv)}: {err}")


def release_private_dir(path: str) -> None:
    """Undo ensure_private_dir once nothing is pinned below ``path``.

    Unmounts until the directory is no longer a mount point, in case an
    older daemon stacked several bind mounts there.
    """
    with _mount_lock:
        for _ in range(16):
            if not is_mountpoint(path):
                return
            try:
                libc.umount2(path)
            except OSError as e:
                log.warning("unmounting %s: %s", path, e.strerror)
                return


def pin_paths(ns_dir: str, pod_id: str, kinds: list[str]) -> dict[str, str]:
    """Where :func:`pin` pins the pod's namespaces of ``kinds``: kind -> file.

    Known before anything is created, so the caller can record them first: a
    daemon killed while :func:`pin` runs then knows what to undo.
    """
    return {kind: os.path.join(ns_dir, kind, pod_id) for kind in kinds}


def pin(
    ns_dir: str,
    pod_id: str,
    kinds: list[str],
    hostname: str,
    sysctls: dict[str, str],
) -> dict[str, str]:
    """Create the pod's namespaces of ``kinds`` (net, ipc, uts) and pin them.

    Returns kind -> pinned file (:func:`pin_paths`). The hostname and sysctls
    are set inside the new namespaces by pycrio.sandbox.nsinit before
    ``unshare`` returns.
    """
    ensure_private_dir(ns_dir)
    files = pin_paths(ns_dir, pod_id, kinds)
    for path in files.values():
        os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
        with open(path, "w"):
            pass
    argv = ["unshare", *(f"--{k}={p}" for k, p in files.items()), "--"]
    setup = []
    if hostname and "uts" in files:
        setup += ["--hostname", hostname]
    for key, value in sysctls.items():
        setup += ["--sysctl", f"{key}={value}"]
    true = shutil.which("true")
    if not setup and true:
        argv.append(true)  # nothing to set inside: no interpreter to start (~40 ms)
    else:
        # the file itself, without site (-S) or the environment (-I): it needs
        # only the standard library, and starts ~15 ms sooner than ``-m``
        argv += [sys.executable, "-I", "-S", nsinit.__file__, *setup]
    try:
        result = reaper.run(argv, timeout=PIN_TIMEOUT, capture_output=True)
    except subprocess.TimeoutExpired as e:
        unpin(files)
        raise Internal(f"creating namespaces for pod {pod_id} timed out") from e
    if result.returncode != 0:
        unpin(files)
        raise Internal(
            f"creating namespaces for pod {pod_id} failed: "
            + result.stderr.decode(errors="replace").strip()
        )
    return files


def start_pid_holder(ns_dir: str, pod_id: str, init_dir: str) -> tuple[str, int]:
    """A shared PID namespace and the process that keeps it alive: (file, pid).

    Its PID 1 is ``pause`` from ``init_dir`` (:func:`pycrio.sandbox.pause.link`).
    """
    ensure_private_dir(ns_dir)
    path = pin_paths(ns_dir, pod_id, ["pid"])["pid"]
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    with open(path, "w"):
        pass
    init_argv, init_env = pause.command(init_dir)
    proc = subprocess.Popen(  # noqa: S603 - argv list; outlives this call on purpose
        ["unshare", "--fork", "--kill-child", f"--pid={path}", "--", *init_argv],
        env=init_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Nobody waits for it: when it ends, the daemon's reaper collects it.
    for _ in range(100):
        if is_mountpoint(path):
            return path, proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    stop_pid_holder(path, proc.pid)
    raise Internal(f"the shared PID namespace of pod {pod_id} could not be created")


def is_mountpoint(path: str) -> bool:
    """Whether ``path`` is a mount point, according to the kernel's mount table."""
    return mountinfo.is_mount_point(path)


def stop_pid_holder(path: str, pid: int) -> None:
    """Kill the holder of the PID namespace pinned at ``path`` and unpin it.

    ``pid`` 0: not recorded (the daemon was killed while starting the
    holder), so the holder is looked up by its pin argument.
    """
    if not pid:
        pid = processes.find_with_arg(f"--pid={path}")
    if pid and _holder_matches(pid, path):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    unpin({"pid": path})


def _holder_matches(pid: int, path: str) -> bool:
    """Guard against a recycled pid: the holder's argv has its pin, as a whole argument."""
    return processes.has_args(pid, f"--pid={path}")


def unpin(files: dict[str, str]) -> None:
    """Unmount and remove pinned namespace files; missing ones are fine."""
    for path in files.values():
        try:
            libc.unmount(path)
        except OSError as e:
            log.warning("unmounting %s: %s", path, e.strerror)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
