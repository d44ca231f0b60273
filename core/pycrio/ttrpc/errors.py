"""The error a ttrpc call ends with: a gRPC status code and a message."""

from __future__ import annotations

import grpc

_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def status_code(value: int) -> grpc.StatusCode:
    """The grpc.StatusCode numbered ``value``; UNKNOWN for a number gRPC does not define."""
    return _BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


class TtrpcError(Exception):
    """A call failed with ``code``: sent by the peer, or local (closed, timeout, too big)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class ConnectionClosed(TtrpcError):
    """The connection ended before the call's response arrived (ttrpc's ErrClosed)."""

    def __init__(self, message: str = "ttrpc: closed") -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, message)


class ProtocolError(Exception):
    """The peer broke the framing rules; the connection cannot continue."""
