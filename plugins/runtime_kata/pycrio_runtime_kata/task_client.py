"""A typed client of one shim's ``containerd.task.v2.Task`` service, over ttrpc.

Each method is one rpc with a timeout; a ttrpc error becomes the
:mod:`pycrio.errors` error of its gRPC code (the shim's NOT_FOUND is ours),
a dropped connection :class:`ShimGone`. :class:`TaskClient` implements
:class:`~pycrio_runtime_kata.exec_io.TaskOps` (exec, start, wait, kill,
resize_pty, close_io, delete), the seam the IO modules program against; the
driver uses the rest.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from pycrio.errors import (
    AlreadyExists,
    CRIError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unimplemented,
)
from pycrio.ttrpc import Client, TtrpcError
from pycrio.ttrpc.errors import ConnectionClosed
from pycrio_runtime_kata import api
from pycrio_runtime_kata.exec_io import TaskOps

__all__ = ["ShimGone", "TaskClient", "TaskOps", "error_of"]


class ShimGone(Unavailable):
    """The shim's connection is closed: it exited or was killed."""


_ERRORS: dict[grpc.StatusCode, type[CRIError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def error_of(method: str, task_id: str, err: TtrpcError) -> CRIError:
    """The pycrio error for a failed rpc, naming the call and the shim's message."""
    if isinstance(err, ConnectionClosed):
        return ShimGone(f"shim {method} {task_id}: the shim is gone ({err.message})")
    cls = _ERRORS.get(err.code, Internal)
    return cls(f"shim {method} {task_id}: {err.message}")


class TaskClient:
    """The Task service of one shim (one connection, shared by a pod's containers)."""

    def __init__(self, client: Client, timeout: float = 30.0) -> None:
        self.client = client
        self.timeout = timeout

    def call(self, method: str, task_id: str, timeout: float | None = -1.0, **fields: Any) -> Any:
        """One rpc; ``timeout`` None waits for ever (Wait), -1 means the default."""
        req_cls, resp_cls = api.TASK_METHODS[method]
        limit = self.timeout if timeout == -1.0 else timeout
        try:
            payload = self.client.call(
                api.TASK_SERVICE, method, req_cls(**fields).SerializeToString(), limit
            )
        except TtrpcError as e:
            raise error_of(method, task_id, e) from None
        resp = resp_cls()
        resp.ParseFromString(payload)
        return resp

    @property
    def closed(self) -> bool:
        return self.client.closed

    def close(self) -> None:
        self.client.close()

    # --- the driver's calls -------------------------------------------------

    def connect(self, task_id: str) -> tuple[int, int, str]:
        """(shim pid, task pid, shim version)."""
        resp = self.call("Connect", task_id, id=task_id)
        return resp.shim_pid, resp.task_pid, resp.version

    def create(
        self,
        task_id: str,
        bundle: str,
        *,
        terminal: bool,
        stdin: str,
        stdout: str,
        stderr: str,
        options: Any = None,
        timeout: float | None = -1.0,
    ) -> int:
        fields: dict[str, Any] = dict(
            id=task_id,
            bundle=bundle,
            terminal=terminal,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
        if options is not None:
            fields["options"] = options
        return self.call("Create", task_id, timeout, **fields).pid

    def state(self, task_id: str, exec_id: str = "") -> Any:
        return self.call("State", task_id, id=task_id, exec_id=exec_id)

    def pause(self, task_id: str) -> None:
        self.call("Pause", task_id, id=task_id)

    def resume(self, task_id: str) -> None:
        self.call("Resume", task_id, id=task_id)

    def update(self, task_id: str, resources: dict[str, Any]) -> None:
        self.call("Update", task_id, id=task_id, resources=api.oci_any("LinuxResources", resources))

    def stats(self, task_id: str) -> Any:
        """The Any the shim answers (cgroup metrics of the task)."""
        return self.call("Stats", task_id, id=task_id).stats

    def pids(self, task_id: str) -> list[int]:
        return [p.pid for p in self.call("Pids", task_id, id=task_id).processes]

    def shutdown(self, task_id: str, now: bool = False) -> None:
        self.call("Shutdown", task_id, id=task_id, now=now)

    # --- TaskOps --------------------------------------------------------------

    def exec(
        self,
        container_id: str,
        exec_id: str,
        *,
        spec: dict,
        terminal: bool,
        stdin: str,
        stdout: str,
        stderr: str,
    ) -> None:
        self.call(
            "Exec",
            container_id,
            id=container_id,
            exec_id=exec_id,
            terminal=terminal,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            spec=api.oci_any("Process", json.loads(json.dumps(spec))),
        )

    def start(self, container_id: str, exec_id: str = "") -> int:
        return self.call("Start", container_id, id=container_id, exec_id=exec_id).pid

    def wait(self, container_id: str, exec_id: str = "") -> tuple[int, int]:
        resp = self.call("Wait", container_id, None, id=container_id, exec_id=exec_id)
        return resp.exit_status, api.timestamp_ns(resp.exited_at)

    def kill(self, container_id: str, exec_id: str, signal: int, all: bool = False) -> None:
        self.call("Kill", container_id, id=container_id, exec_id=exec_id, signal=signal, all=all)

    def resize_pty(self, container_id: str, exec_id: str, width: int, height: int) -> None:
        self.call(
            "ResizePty",
            container_id,
            id=container_id,
            exec_id=exec_id,
            width=width,
            height=height,
        )

    def close_io(self, container_id: str, exec_id: str) -> None:
        self.call("CloseIO", container_id, id=container_id, exec_id=exec_id, stdin=True)

    def delete(self, container_id: str, exec_id: str = "") -> tuple[int, int]:
        resp = self.call("Delete", container_id, id=container_id, exec_id=exec_id)
        return resp.exit_status, api.timestamp_ns(resp.exited_at)
