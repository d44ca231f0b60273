"""Status messages fit in a gRPC trailer whatever the error echoes (issue 17)."""

from __future__ import annotations

import urllib.parse

import pytest

from pycrio.server.dispatch import MAX_MESSAGE_BYTES, bounded


def _encoded(message: str) -> int:
    return len(urllib.parse.quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"))


@pytest.mark.parametrize("echoed", ["x" * 70_000, "\u00e9" * 9000, "\U0001f600" * 5000, "%" * 9000])
def test_a_long_message_is_cut_to_fit(echoed: str) -> None:
    # the CRI fuzzer's example: NotFound for a 70 kB container id
    message = bounded(f"container {echoed!r} not found")
    assert _encoded(message) <= MAX_MESSAGE_BYTES
    assert message.startswith("container '")
    assert message.endswith("more characters)")


def test_a_short_message_is_kept() -> None:
    assert bounded("container 'abc' not found") == "container 'abc' not found"
