"""Payloads for the exec/attach error stream.

From v4 (``v4.channel.k8s.io`` and later, SPDY or WebSocket) the server ends a
session by writing one JSON-encoded ``metav1.Status`` on the error stream:

* success: ``{"metadata":{},"status":"Success"}``
* non-zero exit: ``status`` Failure, ``reason`` NonZeroExitCode and one cause
  ``{"reason":"ExitCode","message":"<code>"}`` (client-go turns that into an
  exit code; ``kubectl exec`` exits with it);
* any other failure: an InternalError status (HTTP code 500) carrying the text.

Before v4 the error stream carries only the failure's message as plain text,
and nothing at all on success.

The encoder follows Go's ``encoding/json`` output for the same struct: compact,
fields in declaration order, empty optional fields omitted, ``<``, ``>`` and
``&`` escaped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

STATUS_SUCCESS = "Success"
STATUS_FAILURE = "Failure"
REASON_NON_ZERO_EXIT_CODE = "NonZeroExitCode"
REASON_INTERNAL_ERROR = "InternalError"
CAUSE_EXIT_CODE = "ExitCode"


def _go_json(obj: object) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    # Go's encoder is HTML-safe by default and escapes the JS line separators.
    for char, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, esc)
    return text.encode("utf-8")


def success_status() -> dict:
    return {"metadata": {}, "status": STATUS_SUCCESS}


def exit_code_status(exit_code: int, detail: str | None = None) -> dict:
    """The status for a process that exited with ``exit_code`` (non-zero)."""
    if detail is None:
        detail = f"exit status {exit_code}"
    return {
        "metadata": {},
        "status": STATUS_FAILURE,
        "message": f"command terminated with non-zero exit code: {detail}",
        "reason": REASON_NON_ZERO_EXIT_CODE,
        "details": {"causes": [{"reason": CAUSE_EXIT_CODE, "message": str(exit_code)}]},
    }


def failure_status(message: str) -> dict:
    """A generic failure (what ``apierrors.NewInternalError`` produces)."""
    return {
        "metadata": {},
        "status": STATUS_FAILURE,
        "message": f"Internal error occurred: {message}",
        "reason": REASON_INTERNAL_ERROR,
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def encode_status(status: dict, json_status: bool = True) -> bytes:
    """Bytes to write on the error stream for ``status``.

    With ``json_status`` (v4+) that is the JSON document; otherwise (v1-v3)
    it is the message text for a failure and ``b""`` (write nothing) for
    success.
    """
    if json_status:
        return _go_json(status)
    if status.get("status") == STATUS_SUCCESS:
        return b""
    return str(status.get("message", "")).encode("utf-8")


def encode_success(json_status: bool = True) -> bytes:
    return encode_status(success_status(), json_status)


def encode_exit_code(exit_code: int, json_status: bool = True, detail: str | None = None) -> bytes:
    """Error-stream bytes for a process exit: success for 0, NonZeroExitCode otherwise."""
    if exit_code == 0:
        return encode_success(json_status)
    return encode_status(exit_code_status(exit_code, detail), json_status)


def encode_failure(message: str, json_status: bool = True) -> bytes:
    return encode_status(failure_status(message), json_status)


@dataclass(frozen=True, slots=True)
class ParsedStatus:
    """What a client makes of the error stream (as client-go does)."""

    success: bool
    exit_code: int | None
    message: str
    reason: str


def parse_status(payload: bytes, json_status: bool = True) -> ParsedStatus:
    """Interpret error-stream bytes the way client-go's stream readers do.

    v4+: JSON Status; Success means exit 0; NonZeroExitCode with an ExitCode
    cause gives that code; other failures have no code.  v1-v3: empty means
    success, anything else is an error message.
    """
    if not json_status:
        if not payload:
            return ParsedStatus(True, 0, "", "")
        return ParsedStatus(False, None, payload.decode("utf-8", "replace"), "")
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise ValueError(f"error stream protocol error: {exc} in {payload[:64]!r}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"error stream protocol error: not an object: {payload[:64]!r}")
    status = doc.get("status")
    message = doc.get("message", "") or ""
    reason = doc.get("reason", "") or ""
    if status == STATUS_SUCCESS:
        return ParsedStatus(True, 0, message, reason)
    if status != STATUS_FAILURE:
        raise ValueError(f"error stream protocol error: unknown status {status!r}")
    exit_code = None
    if reason == REASON_NON_ZERO_EXIT_CODE:
        for cause in (doc.get("details") or {}).get("causes") or []:
            if cause.get("reason") == CAUSE_EXIT_CODE:
                try:
                    exit_code = int(cause.get("message", ""))
                except ValueError:
                    raise ValueError(
                        f"error stream protocol error: invalid exit code {cause.get('message')!r}"
                    ) from None
                break
    return ParsedStatus(False, exit_code, message, reason)
