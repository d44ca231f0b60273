"""Error-stream status payloads (v4+ JSON metav1.Status, v1-v3 plain text)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycrio.streaming import status as s


def test_success_json_exact():
    assert s.encode_success() == b'{"metadata":{},"status":"Success"}'
    assert s.encode_exit_code(0) == b'{"metadata":{},"status":"Success"}'


def test_exit_code_json_exact():
    assert s.encode_exit_code(3) == (
        b'{"metadata":{},"status":"Failure",'
        b'"message":"command terminated with non-zero exit code: exit status 3",'
        b'"reason":"NonZeroExitCode",'
        b'"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}'
    )


def test_failure_json_exact():
    assert s.encode_failure("boom <x> & y") == (
        b'{"metadata":{},"status":"Failure",'
        b'"message":"Internal error occurred: boom \\u003cx\\u003e \\u0026 y",'
        b'"reason":"InternalError",'
        b'"details":{"causes":[{"message":"boom \\u003cx\\u003e \\u0026 y"}]},"code":500}'
    )


def test_non_ascii_kept_as_utf8():
    out = s.encode_failure("héllo")
    assert "héllo".encode() in out
    assert json.loads(out)["details"]["causes"][0]["message"] == "héllo"


@pytest.mark.parametrize(
    ("payload", "json_status", "success", "exit_code", "reason"),
    [
        (s.encode_success(), True, True, 0, ""),
        (s.encode_exit_code(3), True, False, 3, "NonZeroExitCode"),
        (s.encode_exit_code(255, detail="x"), True, False, 255, "NonZeroExitCode"),
        (s.encode_failure("nope"), True, False, None, "InternalError"),
        (b"", False, True, 0, ""),
        (s.encode_success(json_status=False), False, True, 0, ""),
        (s.encode_exit_code(0, json_status=False), False, True, 0, ""),
    ],
)
def test_parse_table(payload, json_status, success, exit_code, reason):
    parsed = s.parse_status(payload, json_status)
    assert (parsed.success, parsed.exit_code, parsed.reason) == (success, exit_code, reason)


def test_v1_plain_text():
    assert s.encode_success(json_status=False) == b""
    assert s.encode_exit_code(3, json_status=False) == (
        b"command terminated with non-zero exit code: exit status 3"
    )
    assert s.encode_failure("boom", json_status=False) == b"Internal error occurred: boom"
    parsed = s.parse_status(b"Internal error occurred: boom", json_status=False)
    assert not parsed.success and parsed.message == "Internal error occurred: boom"


def test_custom_detail():
    doc = json.loads(s.encode_exit_code(2, detail="error executing command [ls], exit code 2"))
    assert doc["message"] == (
        "command terminated with non-zero exit code: error executing command [ls], exit code 2"
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"status":"Weird"}',
        b'{"status":"Failure","reason":"NonZeroExitCode",'
        b'"details":{"causes":[{"reason":"ExitCode","message":"x"}]}}',
    ],
)
def test_parse_errors(payload):
    with pytest.raises(ValueError):
        s.parse_status(payload)


@given(st.integers(1, 255), st.text(max_size=40))
def test_exit_code_round_trip(code, detail):
    parsed = s.parse_status(s.encode_exit_code(code, detail=detail))
    assert parsed.exit_code == code and not parsed.success
    assert parsed.message == f"command terminated with non-zero exit code: {detail}"


@given(st.text(max_size=80))
def test_failure_round_trip(msg):
    doc = json.loads(s.encode_failure(msg))
    assert doc["details"]["causes"][0]["message"] == msg
    assert s.parse_status(s.encode_failure(msg)).exit_code is None
