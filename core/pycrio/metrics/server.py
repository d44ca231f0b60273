"""The HTTP(S) endpoint Prometheus scrapes, on a thread of its own.

prometheus_client's own WSGI server is enough for a scrape every few seconds
and keeps the dependency list short; TLS is its built-in support.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger("pycrio.metrics")


class MetricsServer:
    """Serves ``registry`` on host:port until ``stop``."""

    def __init__(
        self, registry: CollectorRegistry, host: str, port: int, cert: str = "", key: str = ""
    ) -> None:
        if bool(cert) != bool(key):
            raise ValueError("[metrics] metrics_cert and metrics_key must be set together")
        self.registry = registry
        self.host, self.port = host, port
        self.cert, self.key = cert, key
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"

    def start(self) -> None:
        try:
            self._httpd, self._thread = start_http_server(
                self.port,
                addr=self.host,
                registry=self.registry,
                certfile=self.cert or None,
                keyfile=self.key or None,
            )
        except OSError as e:
            raise RuntimeError(
                f"metrics endpoint {self.host}:{self.port}: {e.strerror or e}"
            ) from e
        log.info("serving metrics on %s://%s:%d/metrics", self.scheme, self.host, self.port)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
