"""The daemon's life: start, serve, reload on SIGHUP, stop cleanly on SIGTERM.

Signals reach the main thread through a wakeup pipe and are handled there, so reload and
shutdown never run inside a signal handler or race with each other.
"""

from __future__ import annotations

import copy
import fcntl
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

import pycrio
from pycrio import logs, reaper, sdnotify
from pycrio.config import Config, ConfigError
from pycrio.config.schema import OPTIONS
from pycrio.cri import core_plugins
from pycrio.kernel.kernel import DriverLoadError, Kernel, build_kernel, call_each
from pycrio.server.grpc_server import GrpcServer, SocketInUse, prepare_socket_path

log = logging.getLogger("pycrio")


class StartupError(Exception):
    """The daemon cannot start; the message tells the operator why."""


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def changed_keys(old: Config, new: Config) -> list[str]:
    a, b = _flatten(old.data), _flatten(new.data)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


RELOADABLE = {o.dotted for o in OPTIONS if o.reloadable}


def _reloadable(dotted: str, declared: dict[str, bool]) -> bool:
    """Whether a changed key takes effect on SIGHUP.

    Declared plugin and driver options say so themselves; a key of a plugin
    table that nobody declared (a Config built by hand) is handed over, as
    plugins read their tables in pycrio_config_reload.
    """
    if dotted in RELOADABLE:
        return True
    if dotted in declared:
        return declared[dotted]
    return dotted.startswith("plugins.") and ".".join(dotted.split(".")[:2]) not in {
        ".".join(k.split(".")[:2]) for k in declared
    }


def reloaded_config(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """The configuration to run with after a reload.

    Only reloadable options take the new values (the core's and those plugins
    and drivers declared reloadable); anything else keeps running as it is
    and is reported as needing a restart.
    """
    changed = changed_keys(old, new)
    declared = {o.dotted: o.reloadable for o in new.declared}
    applied = [k for k in changed if _reloadable(k, declared)]
    pending = [k for k in changed if k not in applied]
    effective = Config(data=copy.deepcopy(old.data), sources=new.sources, declared=new.declared)
    for dotted in applied:
        *tables, key = dotted.split(".")
        node = effective.data
        for part in tables:
            node = node.setdefault(part, {})
        try:
            node[key] = copy.deepcopy(new.get(dotted))
        except KeyError:  # removed from the configuration
            node.pop(key, None)
    return effective, applied, pending


class StateLock:
    """One daemon per root and per runroot: two would corrupt each other's state."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "pycrio.pid")
        self._fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(
                f"another pycrio (pid {holder}) is using {os.path.dirname(self.path)}"
            ) from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.unlink(self.path)
            os.close(self._fd)
            self._fd = None


class Daemon:
    def __init__(self, config: Config, reload: Callable[[], Config]) -> None:
        self.config = config
        self._reload = reload
        self._wakeup_r = -1
        self.kernel: Kernel | None = None

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # The signal number reaches _serve through the wakeup fd; see there.
        pass

    def _install_signal_handlers(self) -> None:
        """Route SIGTERM, SIGINT and SIGHUP through a wakeup pipe the main thread reads.

        The kernel may deliver a process signal to any thread (gRPC's, the reaper's); a
        Python handler then waits until the main thread runs bytecode again, which never
        happens while it sleeps in a lock (a queue's get, say). A read on the wakeup pipe
        returns as soon as the C-level handler writes the signal number, whichever thread
        took the signal.
        """
        r, w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(w, False)
        self._wakeup_r = r
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def run(self) -> int:
        logs.setup(self.config.log_level)
        for note in self.config.notes:
            log.info("%s", note)
        self._install_signal_handlers()
        try:
            kernel = build_kernel(self.config, core_plugins)
        except DriverLoadError as e:
            raise StartupError(str(e)) from e
        self.kernel = kernel
        # Refuse early, before touching any state, when another daemon is live.
        locks = [StateLock(self.config.runroot), StateLock(self.config.root)]
        try:
            prepare_socket_path(self.config.listen)
            for lock in locks:
                lock.acquire()
        except (SocketInUse, StartupError) as e:
            _release(locks)
            kernel.close()
            raise StartupError(str(e)) from e
        subreaper = reaper.Reaper()
        if reaper.set_subreaper():
            subreaper.start()
        server = GrpcServer(kernel)
        try:
            failures = call_each(kernel, "pycrio_startup", kernel=kernel)
            core = [f.message for f in failures if f.core]
            if core:
                raise StartupError("; ".join(core))
            kernel.plugin_failures.extend(f.message for f in failures)
            try:
                server.start()
            except SocketInUse as e:
                raise StartupError(str(e)) from e
            log.info("pycrio %s serving CRI on %s", pycrio.version(), self.config.listen)
            sdnotify.notify(READY=1, MAINPID=os.getpid())
            self._serve(kernel)
        finally:
            sdnotify.notify(STOPPING=1)
            grace = float(self.config.data["api"]["shutdown_timeout"])
            log.info("shutting down: finishing in-flight calls (up to %.0fs)", grace)
            server.stop(grace)
            call_each(kernel, "pycrio_shutdown", reverse=True, kernel=kernel)
            kernel.close()
            subreaper.stop()
            _release(locks)
            log.info("pycrio stopped")
        return 0

    def _serve(self, kernel: Kernel) -> None:
        while True:
            for signum in os.read(self._wakeup_r, 64):
                if signum not in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    continue  # another handler's signal (SIGCHLD wakes the reaper itself)
                if signum != signal.SIGHUP:
                    log.info("received %s", signal.Signals(signum).name)
                    return
                sdnotify.notify(RELOADING=1, MONOTONIC_USEC=sdnotify.monotonic_usec())
                try:
                    self.reload(kernel)
                finally:
                    sdnotify.notify(READY=1)

    def reload(self, kernel: Kernel) -> None:
        try:
            new = self._reload()
        except ConfigError as e:
            log.error("configuration reload failed, keeping the running configuration: %s", e)
            return
        old = kernel.config
        effective, applied, pending = reloaded_config(old, new)
        for key in applied:
            log.info("reloaded %s: %r -> %r", key, _get(old, key), _get(effective, key))
        for key in pending:
            log.warning("%s changed in the configuration; it takes effect after a restart", key)
        if not applied and not pending:
            log.info("configuration reloaded: nothing changed")
        logs.set_level(effective.log_level)
        kernel.config = effective
        self.config = effective
        call_each(kernel, "pycrio_config_reload", old=old, new=effective, changed=applied)


def _release(locks: list[StateLock]) -> None:
    for lock in locks:
        lock.release()


def _get(cfg: Config, dotted: str) -> Any:
    try:
        return cfg.get(dotted)
    except KeyError:
        return None
