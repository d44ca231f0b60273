"""Logging set-up with CRI-O's level names, and redaction of secrets.

Requests are only ever logged through :func:`redact`, which blanks every
registry credential (``AuthConfig`` messages), so no log level can leak a
password or token.
"""

from __future__ import annotations

import logging
import sys

from google.protobuf import text_format
from google.protobuf.message import Message

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str) -> None:
    """Log to stderr at ``level`` (a CRI-O level name)."""
    root = logging.getLogger()
    if not any(getattr(h, "_pycrio", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._pycrio = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(LEVELS[level])
    # Libraries' debug chatter (entry-point caches) is noise in a daemon's log.
    for noisy in ("stevedore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(LEVELS[level], logging.INFO))


# Message types whose content is secret wherever they appear in a request.
SECRET_TYPES = frozenset({"runtime.v1.AuthConfig"})


def _scrub(msg: Message) -> None:
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.full_name in SECRET_TYPES:
            msg.ClearField(field.name)
            continue
        if field.message_type.GetOptions().map_entry:
            continue
        values = value if field.is_repeated else [value]
        for item in values:
            _scrub(item)


def redact(msg: Message) -> str:
    """A one-line rendering of ``msg`` with credentials removed."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    _scrub(copy)
    return text_format.MessageToString(copy, as_one_line=True)
