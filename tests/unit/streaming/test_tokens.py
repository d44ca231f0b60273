"""Single-use, expiring streaming tokens."""

from __future__ import annotations

import re
import threading

import pytest

from pycrio.streaming.tokens import DEFAULT_TTL, TokenCache, TooManyInFlightError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_default_ttl_is_one_minute():
    assert DEFAULT_TTL == 60.0
    assert TokenCache().ttl == 60.0


def test_single_use():
    cache = TokenCache()
    req = object()
    token = cache.insert(req)
    assert cache.consume(token) is req
    assert cache.consume(token) is None


def test_tokens_are_url_safe_and_unique():
    cache = TokenCache(max_in_flight=5000)
    tokens = {cache.insert(i) for i in range(2000)}
    assert len(tokens) == 2000
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,}", token)


def test_unknown_token():
    assert TokenCache().consume("nope") is None


@pytest.mark.parametrize(
    ("elapsed", "valid"), [(0, True), (59.9, True), (60, False), (3600, False)]
)
def test_expiry(elapsed, valid):
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    token = cache.insert("req")
    clock.now += elapsed
    assert (cache.consume(token) == "req") is valid


def test_max_in_flight():
    clock = FakeClock()
    cache = TokenCache(ttl=10, max_in_flight=3, clock=clock)
    tokens = [cache.insert(i) for i in range(3)]
    with pytest.raises(TooManyInFlightError, match="limit 3") as err:
        cache.insert(3)
    assert err.value.max_in_flight == 3
    # consuming frees a slot
    assert cache.consume(tokens[0]) == 0
    cache.insert(4)
    # expiry frees all slots
    clock.now += 10
    assert len(cache) == 0
    for i in range(3):
        cache.insert(i)


def test_expired_entries_are_collected():
    clock = FakeClock()
    cache = TokenCache(ttl=5, clock=clock)
    old = cache.insert("old")
    clock.now += 3
    new = cache.insert("new")
    clock.now += 3
    assert len(cache) == 1
    assert cache.consume(old) is None
    assert cache.consume(new) == "new"


@pytest.mark.parametrize(
    "kwargs", [{"ttl": 0}, {"ttl": -1}, {"max_in_flight": 0}, {"token_bytes": 4}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        TokenCache(**kwargs)


def test_thread_safety():
    cache = TokenCache(max_in_flight=100_000)
    tokens: list[str] = []
    lock = threading.Lock()

    def producer():
        mine = [cache.insert(i) for i in range(500)]
        with lock:
            tokens.extend(mine)

    threads = [threading.Thread(target=producer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(tokens)) == 4000

    consumed = []

    def consumer():
        got = [cache.consume(t) for t in tokens]
        with lock:
            consumed.extend(g for g in got if g is not None)

    threads = [threading.Thread(target=consumer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # every token was handed out exactly once across all consumers
    assert len(consumed) == 4000
    assert len(cache) == 0
