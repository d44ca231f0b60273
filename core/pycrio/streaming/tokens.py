"""Single-use, expiring tokens for streaming URLs (the kubelet's request cache).

Exec, Attach and PortForward store their validated request here and return a
URL ending in the token; the streaming server consumes the token when the
client connects.  A token works once, expires after ``ttl`` seconds (one
minute by default) and the cache refuses new entries beyond ``max_in_flight``
outstanding ones (1000 by default) so a client cannot grow it without bound.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

DEFAULT_TTL = 60.0
DEFAULT_MAX_IN_FLIGHT = 1000
#: Random bytes per token: 16 (128 bits), URL-safe base64 without padding.
TOKEN_BYTES = 16


class TooManyInFlightError(Exception):
    """The cache holds ``max_in_flight`` unexpired tokens (HTTP 429 territory)."""

    def __init__(self, max_in_flight: int) -> None:
        super().__init__(
            f"too many streaming requests in flight (limit {max_in_flight}); retry later"
        )
        self.max_in_flight = max_in_flight


class TokenCache:
    """Thread-safe map of single-use tokens to requests, with expiry.

    ``clock`` returns seconds (monotonic by default) and is injectable for
    tests.  Entries are kept in insertion order, which is also expiry order,
    so expired ones are dropped from the front in O(expired).
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
        token_bytes: int = TOKEN_BYTES,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if token_bytes < 8:
            raise ValueError("token_bytes must be at least 8")
        self._ttl = float(ttl)
        self._max = max_in_flight
        self._clock = clock
        self._token_bytes = token_bytes
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def ttl(self) -> float:
        return self._ttl

    def _gc(self, now: float) -> None:
        entries = self._entries
        while entries:
            token, (expires, _) = next(iter(entries.items()))
            if expires > now:
                break
            del entries[token]

    def insert(self, request: Any) -> str:
        """Store ``request``; return a fresh URL-safe token for it.

        Raises :class:`TooManyInFlightError` when the cache is full.
        """
        with self._lock:
            now = self._clock()
            self._gc(now)
            if len(self._entries) >= self._max:
                raise TooManyInFlightError(self._max)
            while True:
                token = secrets.token_urlsafe(self._token_bytes)
                if token not in self._entries:
                    break
            self._entries[token] = (now + self._ttl, request)
            return token

    def consume(self, token: str) -> Any | None:
        """Return and forget the request for ``token``; None if unknown or expired."""
        with self._lock:
            entry = self._entries.pop(token, None)
            if entry is None:
                return None
            expires, request = entry
            if self._clock() >= expires:
                return None
            return request

    def __len__(self) -> int:
        """Outstanding unexpired tokens."""
        with self._lock:
            self._gc(self._clock())
            return len(self._entries)
