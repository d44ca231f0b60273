"""PID 1 of a pod's shared PID namespace: a reaping init named ``pause``.

CRI-O runs the pause image's ``/pause`` there: a tiny init that reaps the
pod's orphans and does nothing else. Without one, zombies of processes whose
parent died pile up in the pod, and whatever holds the namespace shows up in
every container's ``ps`` (``pgrep sleep`` finding a ``sleep infinity`` breaks
probes). pycrio runs catatonit (podman's pause process: a static C init
of ~700 kB RSS) in pause mode, ``-P``: no child, reap every orphan, exit on
SIGTERM or SIGINT. It is started through a symlink named ``pause`` so that
both its command name (which the kernel takes from the executed file's name)
and its command line read ``pause``, as in a CRI-O pod.
"""

from __future__ import annotations

import os
import shutil

from pycrio.errors import FailedPrecondition

NAME = "pause"
#: Where Debian's and Fedora's podman packages put it when it is not in $PATH.
FALLBACK_PATHS = ("/usr/libexec/podman/catatonit", "/usr/lib/podman/catatonit")
ARGS = ("-P",)


def find_init(configured: str) -> str:
    """The catatonit binary: ``[runtime] pod_init_path``, else $PATH, else podman's dir."""
    if configured:
        if not os.access(configured, os.X_OK):
            raise FailedPrecondition(
                f"[runtime] pod_init_path {configured!r} is not an executable file"
            )
        return configured
    found = shutil.which("catatonit")
    if found:
        return found
    for path in FALLBACK_PATHS:
        if os.access(path, os.X_OK):
            return path
    raise FailedPrecondition(
        "a pod sharing its PID namespace needs catatonit as its PID 1 (pause), and it is"
        " not installed: install the catatonit package or set [runtime] pod_init_path"
    )


def link(directory: str, init_path: str) -> str:
    """Make ``<directory>/pause`` a symlink to ``init_path``; return ``directory``.

    Replaced atomically when it points elsewhere (the configuration changed),
    so a pod starting meanwhile never finds it missing.
    """
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, NAME)
    try:
        if os.readlink(path) == init_path:
            return directory
    except OSError:
        pass
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(init_path, tmp)
    os.replace(tmp, path)
    return directory


def command(directory: str) -> tuple[list[str], dict[str, str]]:
    """(argv, env) to exec ``pause`` through the symlink in ``directory``.

    argv[0] is the bare name, found through $PATH (``unshare`` uses
    execvp), so the process's command line is ``pause -P``.
    """
    return [NAME, *ARGS], {"PATH": f"{directory}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
