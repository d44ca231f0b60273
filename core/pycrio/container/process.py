"""The container's process: argv, environment and working directory.

The merge of the kubelet's command/args with the image's Entrypoint/Cmd is
Docker's, which Kubernetes documents: ``command`` replaces Entrypoint and
discards Cmd; ``args`` replaces Cmd; with neither, the image decides.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence

from pycrio.errors import InvalidArgument

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def merge_args(
    command: Sequence[str],
    args: Sequence[str],
    entrypoint: Sequence[str],
    cmd: Sequence[str],
) -> list[str]:
    """process.args from the CRI command/args and the image Entrypoint/Cmd."""
    if command:
        argv = [*command, *args]
    elif args:
        argv = [*entrypoint, *args]
    else:
        argv = [*entrypoint, *cmd]
    if not argv or not argv[0]:
        raise InvalidArgument(
            "command: no command specified (neither the container config nor the image has one)"
        )
    for i, arg in enumerate(argv):
        if "\x00" in arg:
            raise InvalidArgument(f"args[{i}]: {arg!r} contains a NUL byte")
    return argv


def _split(entry: str, field: str) -> tuple[str, str]:
    key, sep, value = entry.partition("=")
    if not key or "\x00" in entry:
        raise InvalidArgument(f"{field}: invalid environment entry {entry!r}")
    return key, value if sep else ""


def merge_env(
    image_env: Iterable[str],
    cri_env: Iterable[tuple[str, str]],
    defaults: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """``KEY=value`` list: defaults, then the image's, then the kubelet's, last one wins.

    PATH is added when nobody set it (a shell-less image still needs
    execvp to find binaries); the order of first appearance is kept so the
    environment reads like the image's.
    """
    merged: dict[str, str] = {}
    for key, value in defaults:
        merged[key] = value
    for index, entry in enumerate(image_env):
        key, value = _split(entry, f"image env[{index}]")
        merged[key] = value
    for index, (key, value) in enumerate(cri_env):
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise InvalidArgument(f"envs[{index}]: invalid variable {key!r}")
        merged[key] = value
    if "PATH" not in merged:
        key, _, value = DEFAULT_PATH.partition("=")
        merged = {key: value, **merged}
    return [f"{k}={v}" for k, v in merged.items()]


def working_dir(cri_dir: str, image_dir: str) -> str:
    """process.cwd: the kubelet's, else the image's, else ``/``.

    The kubelet's must be absolute; an image's relative WorkingDir is taken
    from ``/`` as Docker does.
    """
    if cri_dir:
        if not cri_dir.startswith("/") or "\x00" in cri_dir:
            raise InvalidArgument(f"working_dir: {cri_dir!r} is not an absolute path")
        return posixpath.normpath(cri_dir)
    if image_dir:
        if "\x00" in image_dir:
            raise InvalidArgument(f"image WorkingDir {image_dir!r} is invalid")
        return posixpath.normpath("/" + image_dir.lstrip("/"))
    return "/"
