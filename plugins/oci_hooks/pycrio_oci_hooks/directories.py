"""The hooks directories: which files count, and noticing changes without a restart.

- Only ``*.json`` files are read (oci-hooks(5)); subdirectories are ignored.
- Directories are given in increasing precedence: a file in a later directory
  overrides (masks) the file with the same name in an earlier one, so with the
  defaults ``/etc/containers/oci/hooks.d/x.json`` masks
  ``/usr/share/containers/oci/hooks.d/x.json``, as in CRI-O. Removing the
  later file brings the earlier one back.
- A file that cannot be used is logged (a warning naming the file and the
  error, once per version of the file) and skipped; like containers/common, a
  broken file does not mask a valid one of the same name in an earlier
  directory.
- A missing directory is not an error: the defaults rarely both exist.
- The effective hooks are ordered by file name (lower-cased first, as
  oci-hooks(5) says), which is the injection order.

Changes are noticed by a cheap check before each use instead of a watcher
thread: list each directory and ``stat`` each JSON file, and re-read only files
whose (mtime, ctime, size, inode) changed. That is a few syscalls per container
create, needs no thread to start or stop, and cannot miss an event the way
inotify can on a replaced directory. A file modified within the last couple of
seconds is "racy" (git's term): a second write within the filesystem's
timestamp granularity could leave its stat unchanged, so it is re-read on
every check until it has settled.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pycrio_oci_hooks.schema import HookDefinition, HookError, load_hook

log = logging.getLogger("pycrio.oci_hooks")

DEFAULT_DIRS: tuple[str, ...] = ("/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d")

# How recent a modification must be for a file's stat to be distrusted.
RACY_NS = 2_000_000_000

Signature = tuple[Any, ...]


@dataclass(frozen=True)
class Scan:
    """The effective view of the directories at one moment; immutable, safe to share."""

    hooks: tuple[HookDefinition, ...] = ()  # effective hooks, in injection order
    broken: tuple[HookError, ...] = ()  # files skipped, in directory then name order
    masked: tuple[tuple[str, str], ...] = ()  # (masked file, the file masking it)


@dataclass
class _Cached:
    signature: Signature
    result: HookDefinition | HookError
    racy: bool


def sort_key(name: str) -> tuple[str, str]:
    """oci-hooks(5): sort by the lower-cased name; the exact name breaks ties."""
    return (name.lower(), name)


class HookDirectories:
    """The hook files of an ordered list of directories, kept current on demand.

    Thread-safe: container creates call ``current()`` concurrently from the
    gRPC worker threads; one of them refreshes while the others wait for it.
    """

    def __init__(self, dirs: Sequence[str] = DEFAULT_DIRS) -> None:
        self._lock = threading.Lock()
        self._dirs: tuple[str, ...] = tuple(dirs)
        self._files: dict[str, _Cached] = {}
        self._signature: Signature | None = None
        self._racy = False
        self._scan = Scan()
        self._dir_problems: dict[str, str] = {}

    @property
    def dirs(self) -> tuple[str, ...]:
        return self._dirs

    def set_dirs(self, dirs: Sequence[str]) -> None:
        """Use other directories from the next ``current()`` on (config reload)."""
        with self._lock:
            self._dirs = tuple(dirs)
            self._signature = None

    def current(self) -> Scan:
        """The effective hooks, re-reading whatever changed since the last call."""
        with self._lock:
            listing = self._list()
            signature = (self._dirs, tuple((path, sig) for _, _, path, sig in listing))
            if signature != self._signature or self._racy:
                self._rebuild(listing)
                self._signature = signature
            return self._scan

    # --- internals --------------------------------------------------------------

    def _list(self) -> list[tuple[int, str, str, Signature]]:
        """(directory index, name, path, stat signature) of every JSON file."""
        out: list[tuple[int, str, str, Signature]] = []
        for index, directory in enumerate(self._dirs):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                self._dir_problem(directory, None)
                continue
            except OSError as e:
                self._dir_problem(directory, e.strerror or str(e))
                continue
            self._dir_problem(directory, None)
            for entry in entries:
                if not entry.name.endswith(".json"):
                    continue
                try:
                    st = entry.stat()  # follows symlinks: a hook file may be one
                except OSError as e:
                    out.append((index, entry.name, entry.path, ("error", e.strerror or str(e))))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    continue
                sig = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)
                out.append((index, entry.name, entry.path, sig))
        return out

    def _dir_problem(self, directory: str, problem: str | None) -> None:
        """Warn once when a directory becomes unreadable, not on every container."""
        if problem is None:
            self._dir_problems.pop(directory, None)
        elif self._dir_problems.get(directory) != problem:
            self._dir_problems[directory] = problem
            log.warning("OCI hooks directory %s cannot be read, skipped: %s", directory, problem)

    def _load(self, path: str, sig: Signature) -> _Cached:
        now = time.time_ns()
        if sig[0] == "error":
            result: HookDefinition | HookError = HookError(path, "", f"cannot read: {sig[1]}")
            racy = False
        else:
            result = _safe_load(path)
            racy = now - max(sig[0], sig[1]) < RACY_NS
        return _Cached(sig, result, racy)

    def _rebuild(self, listing: list[tuple[int, str, str, Signature]]) -> None:
        files: dict[str, _Cached] = {}
        for _, _, path, sig in listing:
            cached = self._files.get(path)
            if cached is None or cached.signature != sig or cached.racy:
                fresh = self._load(path, sig)
                if (
                    cached is None
                    or cached.signature != sig
                    or _outcome(cached.result) != _outcome(fresh.result)
                ):
                    _report(fresh.result)
                cached = fresh
            files[path] = cached
        for path in self._files.keys() - files.keys():
            log.info("OCI hook file %s removed", path)
        self._files = files
        self._racy = any(c.racy for c in files.values())

        effective: dict[str, HookDefinition] = {}
        broken: list[HookError] = []
        masked: list[tuple[str, str]] = []
        ordered = sorted(listing, key=lambda item: (item[0], sort_key(item[1])))
        for _, name, path, _ in ordered:
            result = files[path].result
            if isinstance(result, HookError):
                broken.append(result)
                continue
            if name in effective:
                masked.append((effective[name].file, path))
            effective[name] = result
        hooks = tuple(effective[name] for name in sorted(effective, key=sort_key))
        self._scan = Scan(hooks=hooks, broken=tuple(broken), masked=tuple(masked))


def _safe_load(path: str) -> HookDefinition | HookError:
    try:
        return load_hook(path)
    except HookError as e:
        return e


def _outcome(result: HookDefinition | HookError) -> Any:
    """What a file amounts to, to log only when that changes (not on racy re-reads)."""
    return str(result) if isinstance(result, HookError) else result


def _report(result: HookDefinition | HookError) -> None:
    if isinstance(result, HookError):
        log.warning("skipping OCI hook file %s", result)
        return
    log.info(
        "OCI hook %s: %s at %s when %s",
        result.file,
        result.path,
        ",".join(result.stages),
        result.describe_when(),
    )
    for warning in result.warnings:
        log.warning("OCI hook file %s: %s", result.file, warning)


def scan_once(dirs: Sequence[str]) -> Scan:
    """The effective hooks of some directories, read once (for the CLI)."""
    return HookDirectories(dirs).current()
