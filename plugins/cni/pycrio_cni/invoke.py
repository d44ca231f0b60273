"""Running plugin binaries: lookup, one call with a deadline, VERSION probing.

Every call has a timeout: a plugin stuck on a lock or a dead DHCP server must
not hold a kubelet request (and its pod's lock) forever. A plugin is started
in its own session and the whole process group is killed on timeout, because
plugins delegate (bridge runs host-local, portmap runs iptables) and killing
only the direct child would leave the helpers behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pycrio import reaper
from pycrio_cni.result import CNIErrorInfo, ResultInvalid, parse_error, parse_versions


class PluginError(Exception):
    """A plugin call failed; carries enough to tell the operator what and why."""

    def __init__(
        self,
        plugin: str,
        command: str,
        info: CNIErrorInfo,
        *,
        timed_out: bool = False,
        missing: bool = False,
    ) -> None:
        self.plugin = plugin
        self.command = command
        self.info = info
        self.timed_out = timed_out
        self.missing = missing
        super().__init__(f"plugin {plugin!r} failed on {command}: {info.text()}")


def find_plugin(plugin_type: str, dirs: Sequence[str]) -> str | None:
    """The first executable regular file named ``plugin_type`` in ``dirs``."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        return None
    for d in dirs:
        path = os.path.join(d, plugin_type)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@dataclass
class CallOutput:
    returncode: int
    stdout: bytes
    stderr: bytes


def run_binary(
    path: str, env: Mapping[str, str], stdin: bytes, timeout: float
) -> CallOutput | None:
    """Run ``path`` with ``stdin``; None when it ran past ``timeout`` (and was killed)."""
    proc = reaper.popen(
        [path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd="/",
        start_new_session=True,
        close_fds=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return None
    finally:
        reaper.release(proc.pid)
    return CallOutput(proc.returncode, out, err)


def call(
    plugin_type: str,
    command: str,
    *,
    dirs: Sequence[str],
    env: Mapping[str, str],
    stdin: bytes,
    timeout: float,
) -> bytes:
    """Run one plugin command; its stdout on success, PluginError otherwise."""
    path = find_plugin(plugin_type, dirs)
    if path is None:
        raise PluginError(
            plugin_type,
            command,
            CNIErrorInfo(msg=f"plugin binary not found in {', '.join(dirs) or '(no plugin_dirs)'}"),
            missing=True,
        )
    try:
        out = run_binary(path, env, stdin, timeout)
    except OSError as e:
        raise PluginError(plugin_type, command, CNIErrorInfo(msg=f"cannot run {path}: {e}")) from e
    if out is None:
        raise PluginError(
            plugin_type,
            command,
            CNIErrorInfo(msg=f"timed out after {timeout:g}s and was killed"),
            timed_out=True,
        )
    if out.returncode != 0:
        raise PluginError(plugin_type, command, parse_error(out.stdout, out.stderr, out.returncode))
    return out.stdout


class VersionProbe:
    """Cached answers of ``VERSION`` per binary.

    Asked whenever the configuration is (re)chosen; keyed by the binary's
    inode, size and mtime so an upgraded plugin is asked again, and
    thread-safe because the watcher and request threads may both ask.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, int, int], list[str]] = {}

    def supported(
        self, path: str, version: str, env: Mapping[str, str], timeout: float
    ) -> list[str]:
        """The versions the binary supports; raises PluginError when it cannot say."""
        st = os.stat(path)
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        name = os.path.basename(path)
        stdin = f'{{"cniVersion":"{version}"}}'.encode()
        out = run_binary(path, env, stdin, timeout)
        if out is None:
            raise PluginError(name, "VERSION", CNIErrorInfo(msg="timed out"), timed_out=True)
        if out.returncode != 0:
            raise PluginError(name, "VERSION", parse_error(out.stdout, out.stderr, out.returncode))
        try:
            versions = parse_versions(out.stdout)
        except ResultInvalid as e:
            raise PluginError(name, "VERSION", CNIErrorInfo(msg=str(e))) from e
        with self._lock:
            self._cache[key] = versions
        return versions
