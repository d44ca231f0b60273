"""containerd's ttrpc: a sans-IO protocol core plus a thin threaded client and server.

ttrpc is gRPC's request/response model without HTTP/2: 10-byte frame headers
on a stream socket, protobuf ``Request``/``Response`` envelopes, gRPC status
codes. NRI plugins and shim v2 runtimes speak it. The protocol logic
(:mod:`.frames`, :mod:`.protocol`) never touches a socket, so it is tested on
bytes; :mod:`.client` and :mod:`.server` only move bytes between a transport
and that logic.
"""

from pycrio.ttrpc.client import Client
from pycrio.ttrpc.errors import TtrpcError
from pycrio.ttrpc.server import Server

__all__ = ["Client", "Server", "TtrpcError"]
