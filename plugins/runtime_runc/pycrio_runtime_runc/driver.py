"""The RuntimeDriver for OCI runtimes with runc's command line (runc, crun).

Why one base: runc and crun take the same commands and flags, so a driver
for either is this class with another default binary. Containers are
created through conmon (:mod:`pycrio_runtime_runc.conmon`) so they outlive
the daemon and conmon records their exits; every exit file it writes is
pushed to the core by :mod:`pycrio_runtime_runc.exit_watcher`. Every other
call runs the runtime directly, as argv lists, with a timeout, and turns its
failure into a :mod:`pycrio.errors` error carrying the runtime's stderr.

Handler options read (``[runtime.runtimes.<handler>]``; "" means default):

``runtime_path``       the runtime binary (default: ``default_binary`` in $PATH)
``runtime_root``       the runtime's ``--root`` (default: ``<run_dir>/root``)
``monitor_path``       conmon (default: ``conmon`` in $PATH)
``attach_socket_dir``  conmon's ``--socket-dir-path`` (default: ``[runtime]
                       container_attach_socket_dir``)
``runtime_args``       extra global runtime flags (list)
``systemd_cgroup``     pass ``--systemd-cgroup`` to the runtime and ``-s`` to conmon
``monitor_log_level``, ``monitor_syslog``, ``no_pivot``
``command_timeout``    seconds for state/start/kill/delete/update/pause (default 30)
``create_timeout``     seconds for a create through conmon (default 120)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Collection
from typing import Any, ClassVar

from pycrio import reaper
from pycrio.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    NotFound,
    Unavailable,
)
from pycrio.kernel.interfaces import (
    Attachment,
    CreateRequest,
    DriverContext,
    ExecProcess,
    ExecResult,
    ExitListener,
    ExitStatus,
    LeftoverProcess,
    RuntimeDriver,
    RuntimeFeatures,
    RuntimeState,
)
from pycrio_runtime_runc import attach, conmon, exec_sync, monitor_cgroup
from pycrio_runtime_runc.conmon import runtime_message
from pycrio_runtime_runc.exec_session import CLIExecProcess
from pycrio_runtime_runc.exit_watcher import ExitWatcher

log = logging.getLogger("pycrio.runc.runtime")

DEFAULT_COMMAND_TIMEOUT = 30.0
DEFAULT_CREATE_TIMEOUT = 120.0

# runc says "container does not exist"; crun "container `x` does not exist"
# or that it cannot open the container's status file. Kept narrow: an
# "executable file not found" from start must not read as NotFound.
_NOT_EXIST = re.compile(
    r"does not exist|container not found|error opening file .*status.*no such file",
    re.IGNORECASE,
)
_NOT_RUNNING = re.compile(
    r"not running|process already finished|no such process|container .* is stopped",
    re.IGNORECASE,
)
_NOT_STOPPED = re.compile(r"not stopped|is running", re.IGNORECASE)


class OCIRuntimeCLI(RuntimeDriver):
    """RuntimeDriver over a runc-compatible command line; subclasses set ``default_binary``."""

    default_binary: ClassVar[str] = "runc"

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        opts = ctx.options
        self.runtime_root: str = opts.get("runtime_root") or os.path.join(ctx.run_dir, "root")
        # conmon truncates socket paths beyond 107 bytes: keep the default short
        self.socket_dir: str = (
            opts.get("attach_socket_dir")
            or ctx.config.data.get("runtime", {}).get("container_attach_socket_dir")
            or os.path.join(ctx.run_dir, "attach")
        )
        self.runtime_args: list[str] = list(opts.get("runtime_args") or [])
        # with the systemd cgroup manager, cgroupsPath is slice:prefix:name
        cgroup_manager = ctx.config.data.get("runtime", {}).get("cgroup_manager")
        systemd_cgroup = opts.get("systemd_cgroup")
        self.systemd_cgroup = (
            cgroup_manager == "systemd" if systemd_cgroup is None else bool(systemd_cgroup)
        )
        self.monitor_log_level: str = opts.get("monitor_log_level") or "info"
        self.monitor_syslog = bool(opts.get("monitor_syslog", False))
        self.no_pivot = bool(opts.get("no_pivot", False))
        self.command_timeout = float(opts.get("command_timeout") or DEFAULT_COMMAND_TIMEOUT)
        self.create_timeout = float(opts.get("create_timeout") or DEFAULT_CREATE_TIMEOUT)
        self._runtime_path: str = opts.get("runtime_path") or ""
        self._monitor_path: str = opts.get("monitor_path") or ""
        self._features: dict[str, Any] | None = None
        self._lock = threading.Lock()
        # each container's OCI process object: an exec (a probe, say) then
        # needs no `runtime state` call to find the bundle
        self._processes: dict[str, dict[str, Any]] = {}
        # conmon writes each container's exit code here; the watcher pushes it
        self.exit_dir = os.path.join(ctx.run_dir, "exits")
        self._watcher: ExitWatcher | None = None

    # --- binaries -------------------------------------------------------------

    @property
    def runtime_path(self) -> str:
        """The runtime binary; looked up in $PATH on first use so a missing one is
        a not-ready handler rather than a daemon that cannot start."""
        if not self._runtime_path:
            found = shutil.which(self.default_binary)
            if not found:
                raise Unavailable(f"OCI runtime {self.default_binary!r} not found in $PATH")
            self._runtime_path = found
        return self._runtime_path

    @property
    def monitor_path(self) -> str:
        if not self._monitor_path:
            found = shutil.which("conmon")
            if not found:
                raise Unavailable("container monitor 'conmon' not found in $PATH")
            self._monitor_path = found
        return self._monitor_path

    def ready(self) -> tuple[bool, str, str]:
        try:
            for path in (self.runtime_path, self.monitor_path):
                if not os.access(path, os.X_OK):
                    return False, "RuntimeNotExecutable", f"{path} is not executable"
        except Unavailable as e:
            return False, "RuntimeNotFound", e.message
        return True, "", ""

    # --- running the runtime -------------------------------------------------

    def _argv(self, *args: str) -> list[str]:
        argv = [self.runtime_path, "--root", self.runtime_root]
        if self.systemd_cgroup:
            argv.append("--systemd-cgroup")
        return [*argv, *self.runtime_args, *args]

    def _run(
        self, *args: str, timeout: float | None = None, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess:
        """Run one runtime command; raise DeadlineExceeded when it overruns."""
        argv = self._argv(*args)
        limit = self.command_timeout if timeout is None else timeout
        try:
            proc = reaper.popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as e:
            raise Internal(f"cannot run {argv[0]!r}: {e.strerror}") from e
        try:
            out, err = proc.communicate(input=stdin, timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise DeadlineExceeded(
                f"{self.default_binary} {args[0]} did not finish within {limit:g}s"
            ) from None
        finally:
            reaper.release(proc.pid)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def _fail(self, what: str, container_id: str, cp: subprocess.CompletedProcess) -> Internal:
        return Internal(
            f"{self.default_binary} {what} {container_id} failed (exit {cp.returncode}):"
            f" {runtime_message(cp.stderr)}"
        )

    # --- lifecycle -----------------------------------------------------------

    def _monitor_cgroups_file(self, container_id: str) -> str:
        return os.path.join(self.ctx.run_dir, "monitor-cgroups", container_id)

    def persist_dir(self, container_id: str) -> str:
        """conmon's files for one container: pid files, ``exit``, ``oom``, the monitor record."""
        return os.path.join(self.ctx.run_dir, "containers", container_id)

    def create(self, request: CreateRequest) -> int:
        """Create through conmon; the container is left ``created`` with conmon watching it."""
        os.makedirs(self.runtime_root, mode=0o700, exist_ok=True)
        state_dir = self.persist_dir(request.container_id)
        runtime_args = [f"--root={self.runtime_root}"]
        if self.systemd_cgroup:
            runtime_args.append("--systemd-cgroup")
        runtime_args += self.runtime_args
        spec = conmon.MonitorSpec(
            conmon_path=self.monitor_path,
            runtime_path=self.runtime_path,
            container_id=request.container_id,
            bundle=request.bundle,
            log_path=request.log_path,
            exit_dir=self.exit_dir,
            state_dir=state_dir,
            socket_dir=self.socket_dir,
            runtime_args=runtime_args,
            tty=request.tty,
            stdin=request.stdin,
            stdin_once=request.stdin_once,
            log_size_max=request.log_size_max,
            log_level=self.monitor_log_level,
            syslog=self.monitor_syslog,
            systemd_cgroup=self.systemd_cgroup,
            no_pivot=self.no_pivot,
        )
        cgroups: list[str] = []

        def place(pid: int) -> None:
            if request.place_monitor is not None:
                request.place_monitor(pid)
                return
            cgroups.extend(
                monitor_cgroup.place(pid, request.pod.cgroup_parent, request.container_id)
            )

        record = conmon.MonitorRecord(
            container_id=request.container_id,
            bundle=request.bundle,
            log_path=request.log_path,
            ctl_path=conmon.ctl_fifo_path(request.bundle),
            attach_path=conmon.attach_socket_path(self.socket_dir, request.container_id),
            conmon_pid_file=conmon.conmon_pid_file(state_dir),
        )
        try:
            pid = conmon.start(spec, timeout=self.create_timeout, place=place)
        except Exception:
            # as CRI-O does: leave no half-created container in the runtime
            try:
                self.delete(request.container_id, force=True)
            except Exception as e:  # noqa: BLE001 - the create error is the one to report
                log.warning(
                    "container %s: cleanup after failed create: %s", request.container_id, e
                )
            monitor_cgroup.remove(cgroups)
            raise
        finally:
            record.cgroups = cgroups
            if cgroups:
                path = self._monitor_cgroups_file(request.container_id)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(cgroups, f)
        conmon.write_monitor_record(state_dir, record)
        return pid

    def start(self, container_id: str) -> None:
        cp = self._run("start", container_id)
        if cp.returncode != 0:
            if _NOT_EXIST.search(runtime_message(cp.stderr)):
                raise NotFound(f"container {container_id} does not exist in the runtime")
            raise self._fail("start", container_id, cp)

    def state(self, container_id: str) -> RuntimeState:
        cp = self._run("state", container_id)
        if cp.returncode != 0:
            if _NOT_EXIST.search(runtime_message(cp.stderr)):
                raise NotFound(f"container {container_id} does not exist in the runtime")
            raise self._fail("state", container_id, cp)
        return parse_state(cp.stdout)

    def kill(self, container_id: str, signal: int, *, all_processes: bool = False) -> None:
        args = ["kill"] + (["--all"] if all_processes else []) + [container_id, str(int(signal))]
        cp = self._run(*args)
        if cp.returncode == 0:
            return
        msg = runtime_message(cp.stderr)
        if _NOT_RUNNING.search(msg):
            return
        if _NOT_EXIST.search(msg):
            raise NotFound(f"container {container_id} does not exist in the runtime")
        raise self._fail("kill", container_id, cp)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        cp = self._run("delete", *(["--force"] if force else []), container_id)
        if cp.returncode != 0:
            msg = runtime_message(cp.stderr)
            if not _NOT_EXIST.search(msg):
                if _NOT_STOPPED.search(msg):
                    raise FailedPrecondition(
                        f"container {container_id} is still running; stop it first ({msg})"
                    )
                raise self._fail("delete", container_id, cp)
        self._processes.pop(container_id, None)
        self._remove_monitor_cgroups(container_id)
        shutil.rmtree(self.persist_dir(container_id), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.exit_dir, container_id))
        # conmon's link from the attach socket dir to the bundle
        link = os.path.join(self.socket_dir, container_id)
        if os.path.islink(link):
            os.unlink(link)

    def _remove_monitor_cgroups(self, container_id: str) -> None:
        path = self._monitor_cgroups_file(container_id)
        try:
            with open(path, encoding="utf-8") as f:
                cgroups = json.load(f)
        except (FileNotFoundError, ValueError):
            return
        monitor_cgroup.remove(cgroups)
        os.unlink(path)

    # --- exits ---------------------------------------------------------------

    def exit_status(self, container_id: str) -> ExitStatus | None:
        """From conmon's exit file (its mtime is the finish time) and its ``oom`` file."""
        code = conmon.read_exit_code(self.exit_dir, container_id)
        if code is None:
            return None
        try:
            finished = os.stat(os.path.join(self.exit_dir, container_id)).st_mtime_ns
        except FileNotFoundError:
            return None  # deleted meanwhile
        oom = conmon.container_oom_killed(self.persist_dir(container_id))
        return ExitStatus(exit_code=code, finished_at=finished, oom_killed=oom)

    def set_exit_listener(self, listener: ExitListener) -> None:
        """Start watching conmon's exit directory; each new exit file is pushed."""
        super().set_exit_listener(listener)
        if self._watcher is None:
            self._watcher = ExitWatcher(self.exit_dir, self._exit_file_seen)
            self._watcher.start()

    def _exit_file_seen(self, container_id: str) -> bool:
        if "." in container_id:
            # conmon writes "<id>.XXXXXX" and renames it (g_file_set_contents): the
            # temporary name is not a container; the rename reports the real one
            return True
        status = self.exit_status(container_id)
        if status is not None:
            self.notify_exit(container_id, status)
        return True

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # --- attach and logs ------------------------------------------------------

    def attach(self, container_id: str) -> Attachment:
        state_dir = self.persist_dir(container_id)
        record = conmon.read_monitor_record(state_dir)
        if record is None:
            raise FailedPrecondition(f"container {container_id} has no monitor to attach to")
        try:
            sock = attach.connect(record.attach_path)
        except OSError as e:
            raise FailedPrecondition(
                f"cannot attach to container {container_id}: its monitor is not listening ({e})"
            ) from e

        def resize(width: int, height: int) -> None:
            conmon.resize_terminal(state_dir, width, height)

        return attach.ConmonAttachment(sock, resize)

    def reopen_log(self, container_id: str) -> None:
        conmon.reopen_log(self.persist_dir(container_id))

    # --- exec ----------------------------------------------------------------

    def _exec_dir(self) -> str:
        path = os.path.join(self.ctx.run_dir, "exec")
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def _process_spec(
        self, container_id: str, argv: list[str], tty: bool = False
    ) -> dict[str, Any] | None:
        """The container's own process (env, user, cwd, caps...) with ``argv`` as args.

        As CRI-O does: an exec runs as the container's process would. None
        when the bundle's config cannot be read; then runc's argv form is used.
        """
        cached = self._processes.get(container_id)
        if cached is None:
            try:
                bundle = self.state(container_id).bundle
                with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
                    cached = dict(json.load(f)["process"])
            except (OSError, ValueError, KeyError, TypeError, NotFound):
                return None
            self._processes[container_id] = cached
        process = dict(cached)
        process["args"] = list(argv)
        process["terminal"] = tty
        process.pop("consoleSize", None)
        return process

    def exec_start(
        self, container_id: str, argv: list[str], *, tty: bool, stdin: bool
    ) -> ExecProcess:
        if not argv:
            raise FailedPrecondition("exec needs a command")
        # no `runtime state` round trip: the caller knows the container runs,
        # and the runtime refuses an exec into a stopped one anyway
        process = self._process_spec(container_id, argv, tty)
        if process is None:
            raise Internal(f"cannot read the OCI config of container {container_id}")
        base = os.path.join(self._exec_dir(), f"{container_id}-{secrets.token_hex(6)}")
        pid_file, process_file = f"{base}.pid", f"{base}.json"
        with open(process_file, "w", encoding="utf-8") as f:
            json.dump(process, f)
        argv_ = self._argv("exec", "--pid-file", pid_file, "--process", process_file, container_id)
        try:
            return CLIExecProcess(argv_, tty=tty, stdin=stdin, files=[pid_file, process_file])
        except OSError as e:
            os.unlink(process_file)
            raise Internal(f"cannot run {argv_[0]!r}: {e.strerror}") from e

    def exec_sync(
        self, container_id: str, argv: list[str], timeout: float, *, max_output: int = 16 << 20
    ) -> ExecResult:
        if not argv:
            raise FailedPrecondition("exec needs a command")
        status = self.state(container_id).status
        if status not in ("running", "created"):
            raise FailedPrecondition(f"container {container_id} is {status}; cannot exec in it")
        process = self._process_spec(container_id, argv)
        return self.exec_process(container_id, process, timeout, max_output=max_output, argv=argv)

    def exec_process(
        self,
        container_id: str,
        process: dict[str, Any] | None,
        timeout: float,
        *,
        max_output: int = 16 << 20,
        argv: list[str] | None = None,
    ) -> ExecResult:
        """Exec an OCI ``process`` object (or, without one, ``argv``) and wait for it."""
        base = os.path.join(self._exec_dir(), f"{container_id}-{secrets.token_hex(6)}")
        pid_file, process_file = f"{base}.pid", f"{base}.json"
        args = ["exec", "--pid-file", pid_file]
        if process is not None:
            with open(process_file, "w", encoding="utf-8") as f:
                json.dump(process, f)
            args += ["--process", process_file, container_id]
        elif argv:
            args += [container_id, *argv]
        else:
            raise FailedPrecondition("exec needs a command")
        try:
            return exec_sync.run(
                self._argv(*args),
                timeout=timeout,
                max_output=max_output,
                pid_file=pid_file,
                wait_timeout=self.command_timeout,
            )
        finally:
            for path in (pid_file, process_file):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    # --- resources and the rest -----------------------------------------------

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        cp = self._run(
            "update", "--resources", "-", container_id, stdin=json.dumps(resources).encode()
        )
        if cp.returncode != 0:
            if _NOT_EXIST.search(runtime_message(cp.stderr)):
                raise NotFound(f"container {container_id} does not exist in the runtime")
            raise self._fail("update", container_id, cp)

    def pause(self, container_id: str) -> None:
        cp = self._run("pause", container_id)
        if cp.returncode != 0:
            raise self._fail("pause", container_id, cp)

    def resume(self, container_id: str) -> None:
        cp = self._run("resume", container_id)
        if cp.returncode != 0:
            raise self._fail("resume", container_id, cp)

    def features(self) -> RuntimeFeatures:
        """From the runtime's OCI features document (runtime-spec features.md)."""
        doc = self.oci_features()
        linux = doc.get("linux") or {}
        namespaces = linux.get("namespaces") or []
        idmap = (linux.get("mountExtensions") or {}).get("idmap") or {}
        return RuntimeFeatures(
            recursive_read_only_mounts="rro" in (doc.get("mountOptions") or []),
            user_namespaces="user" in namespaces and bool(idmap.get("enabled")),
        )

    def oci_features(self) -> dict[str, Any]:
        """``<runtime> features`` (cached); {} when the runtime has no such command."""
        with self._lock:
            if self._features is None:
                try:
                    cp = self._run("features")
                    doc = json.loads(cp.stdout) if cp.returncode == 0 else {}
                    self._features = doc if isinstance(doc, dict) else {}
                except (ValueError, DeadlineExceeded, Internal, Unavailable) as e:
                    log.info("%s features unavailable: %s", self.default_binary, e)
                    self._features = {}
            return self._features

    # --- offline maintenance (pycrio check / wipe; the daemon never calls these) ---

    def leftover_processes(self, known_ids: Collection[str]) -> list[LeftoverProcess]:
        from pycrio_runtime_runc import leftovers  # only the offline commands need it

        return leftovers.leftover_processes(leftovers.Layout.of(self), known_ids)

    def leftover_files(self, known_ids: Collection[str]) -> list[str]:
        from pycrio_runtime_runc import leftovers

        return leftovers.leftover_files(leftovers.Layout.of(self), known_ids)

    def remove_leftovers(self, known_ids: Collection[str]) -> list[str]:
        from pycrio_runtime_runc import leftovers

        return leftovers.remove_leftovers(self, leftovers.Layout.of(self), known_ids)


def parse_state(stdout: bytes) -> RuntimeState:
    """RuntimeState from ``<runtime> state`` JSON (OCI runtime-spec state)."""
    try:
        doc = json.loads(stdout)
        return RuntimeState(
            id=str(doc["id"]),
            status=str(doc["status"]),
            pid=int(doc.get("pid") or 0),
            bundle=str(doc.get("bundle") or doc.get("bundlePath") or ""),
            annotations=dict(doc.get("annotations") or {}),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise Internal(f"cannot parse the runtime's state {stdout[:200]!r}: {e}") from e
