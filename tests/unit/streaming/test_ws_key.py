"""The WebSocket handshake's key check (RFC 6455 4.2.1), found missing by the fuzzer (issue 17)."""

from __future__ import annotations

import base64
import os

import pytest

from pycrio.streaming.ws_transport import valid_key


def test_a_16_byte_nonce_is_valid() -> None:
    assert valid_key(base64.b64encode(os.urandom(16)).decode())
    assert valid_key("dGhlIHNhbXBsZSBub25jZQ==")  # the RFC's own example


@pytest.mark.parametrize(
    "key",
    ["", "short", "dGhlIHNhbXBsZSBub25jZQ", base64.b64encode(b"x" * 17).decode(), "\u00e9" * 24,
     "dGhlIHNhbXBsZSBub25jZQ==\x00"],
)  # fmt: skip
def test_anything_else_is_refused(key: str) -> None:
    assert not valid_key(key)
