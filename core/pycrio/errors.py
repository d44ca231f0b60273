"""Typed errors that the gRPC layer maps to status codes in one place.

Core logic and plugins raise these instead of touching gRPC: a driver can be
unit-tested without a server, and the status code a kubelet sees for a given
failure is decided by the kind of failure, never by where it was noticed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc


class _StatusCode:
    """A class attribute naming a grpc.StatusCode, resolved when read.

    So that importing the errors does not import grpc: a layer-unpacking
    worker process (pycrio.storage.unpack_worker) raises these and must start fast.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> grpc.StatusCode:
        import grpc

        return getattr(grpc.StatusCode, self.name)


class CRIError(Exception):
    """Base of every error that reaches the kubelet with a specific status code."""

    code: Any = _StatusCode("INTERNAL")

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(CRIError):
    code = _StatusCode("INVALID_ARGUMENT")


class NotFound(CRIError):
    code = _StatusCode("NOT_FOUND")


class AlreadyExists(CRIError):
    code = _StatusCode("ALREADY_EXISTS")


class FailedPrecondition(CRIError):
    code = _StatusCode("FAILED_PRECONDITION")


class Unimplemented(CRIError):
    code = _StatusCode("UNIMPLEMENTED")


class Unavailable(CRIError):
    code = _StatusCode("UNAVAILABLE")


class Unauthenticated(CRIError):
    code = _StatusCode("UNAUTHENTICATED")


class PermissionDenied(CRIError):
    code = _StatusCode("PERMISSION_DENIED")


class DeadlineExceeded(CRIError):
    code = _StatusCode("DEADLINE_EXCEEDED")


class ResourceExhausted(CRIError):
    code = _StatusCode("RESOURCE_EXHAUSTED")


class Internal(CRIError):
    code = _StatusCode("INTERNAL")


class DataLoss(CRIError):
    """Bytes that do not match their digest or size: corrupt or tampered content."""

    code = _StatusCode("DATA_LOSS")
