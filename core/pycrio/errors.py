"""Typed errors that the gRPC layer maps to status codes in one place.

Core logic and plugins raise these instead of touching gRPC: a driver can be
unit-tested without a server, and the status code a kubelet sees for a given
failure is decided by the kind of failure, never by where it was noticed.
"""

from __future__ import annotations

import grpc


class CRIError(Exception):
    """Base of every error that reaches the kubelet with a specific status code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(CRIError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CRIError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CRIError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(CRIError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(CRIError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Unavailable(CRIError):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(CRIError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CRIError):
    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(CRIError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(CRIError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Internal(CRIError):
    code = grpc.StatusCode.INTERNAL


class DataLoss(CRIError):
    """Bytes that do not match their digest or size: corrupt or tampered content."""

    code = grpc.StatusCode.DATA_LOSS
