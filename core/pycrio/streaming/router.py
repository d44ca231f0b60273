"""Route a streaming request: its token to the prepared session, its upgrade to a transport.

URLs are ``/exec/<token>``, ``/attach/<token>`` and ``/portforward/<token>``;
a token is consumed on first use, whatever happens next, like the kubelet's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import portforward, remotecommand, spdy_transport, ws_transport
from . import portforward_ws as pfws
from .channels import SPDY_PROTOCOLS, V5_CHANNEL_PROTOCOL, WEBSOCKET_PROTOCOLS, SessionChannels
from .duplex import Duplex
from .server import Request, http_response
from .stdio import SessionRunner

log = logging.getLogger("pycrio.streaming")

#: The kubelet's SPDY set for exec and attach: v5 exists only over WebSocket.
SPDY_REMOTECOMMAND = tuple(p for p in SPDY_PROTOCOLS if p != V5_CHANNEL_PROTOCOL)
SPDY_PORTFORWARD = (pfws.PORTFORWARD_SPDY_PROTOCOL,)
#: kubectl 1.31+ first tries SPDY tunnelled through WebSocket, then the channel framing.
WEBSOCKET_PORTFORWARD = (pfws.PORTFORWARD_TUNNEL_PROTOCOL, *pfws.WEBSOCKET_PROTOCOLS)


@dataclass
class RemoteCommand:
    """A prepared exec or attach: which streams, and what runs on them."""

    channels: SessionChannels
    runner: SessionRunner


@dataclass
class PortForward:
    """A prepared port forward: the requested ports (may be empty) and the dialer."""

    ports: list[int]
    dial: portforward.Dialer


Target = RemoteCommand | PortForward
#: (kind, token) -> the prepared session, or None for an unknown/used/expired token.
Resolver = Callable[[str, str], "Target | None"]


class Router:
    def __init__(self, resolve: Resolver, idle_timeout: float) -> None:
        self.resolve = resolve
        self.idle_timeout = idle_timeout

    def __call__(self, request: Request, duplex: Duplex) -> None:
        parts = request.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            duplex.sendall(http_response(404, f"no such streaming endpoint {request.path!r}"))
            return
        if request.method not in ("GET", "POST"):
            duplex.sendall(http_response(405, f"method {request.method} is not allowed"))
            return
        kind, token = parts
        target = self.resolve(kind, token)
        if target is None:
            duplex.sendall(http_response(404, "unknown, used or expired streaming token"))
            return
        if request.wants_upgrade("websocket"):
            self._websocket(request, duplex, target)
        elif request.wants_upgrade(spdy_transport.UPGRADE):
            self._spdy(request, duplex, target)
        else:
            duplex.sendall(
                http_response(400, "this endpoint needs an Upgrade to SPDY/3.1 or websocket")
            )

    def _spdy(self, request: Request, duplex: Duplex, target: Target) -> None:
        if isinstance(target, PortForward):
            session = spdy_transport.accept(request, duplex, SPDY_PORTFORWARD)
            if session is not None:
                portforward.serve_spdy(session, target.dial, self.idle_timeout)
            return
        session = spdy_transport.accept(request, duplex, SPDY_REMOTECOMMAND)
        if session is not None:
            remotecommand.serve_spdy(session, target.channels, target.runner, self.idle_timeout)

    def _websocket(self, request: Request, duplex: Duplex, target: Target) -> None:
        if isinstance(target, PortForward):
            ports = target.ports
            tunnel_offered = pfws.PORTFORWARD_TUNNEL_PROTOCOL in request.header_values(
                "sec-websocket-protocol"
            )
            if not tunnel_offered:  # the channel framing needs its ports up front
                try:
                    ports = ports or pfws.parse_ports(request.query.get(pfws.PORT_PARAM, []))
                except pfws.PortForwardError as e:
                    duplex.sendall(http_response(400, str(e)))
                    return
            conn = ws_transport.accept(request, duplex, WEBSOCKET_PORTFORWARD)
            if conn is None:
                return
            if conn.protocol == pfws.PORTFORWARD_TUNNEL_PROTOCOL:
                tunnel = ws_transport.TunnelDuplex(conn, self.idle_timeout)
                session = spdy_transport.SpdySession(tunnel, pfws.PORTFORWARD_SPDY_PROTOCOL)
                portforward.serve_spdy(session, target.dial, self.idle_timeout)
            else:
                portforward.serve_websocket(conn, ports, target.dial, self.idle_timeout)
            return
        conn = ws_transport.accept(request, duplex, WEBSOCKET_PROTOCOLS)
        if conn is not None:
            remotecommand.serve_websocket(conn, target.channels, target.runner, self.idle_timeout)
