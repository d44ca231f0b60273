"""Checked access to an OCI ``linux.resources`` object, shared by the cgroup drivers.

Why here: every cgroup driver receives the same dict (see
:data:`pycrio.kernel.interfaces.Resources`) and must refuse the same
malformed input with the same INVALID_ARGUMENT, naming the field.
"""

from __future__ import annotations

from typing import Any

from pycrio.errors import InvalidArgument


def section(resources: dict[str, Any], key: str) -> dict[str, Any]:
    """A sub-object such as ``cpu`` or ``memory``; absent or None is empty."""
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"linux.resources.{key} must be an object, not {value!r}")
    return value


def integer(part: dict[str, Any], key: str, where: str) -> int:
    """An integer field; absent or None is 0, anything else not an int is refused."""
    value = part.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"linux.resources.{where}.{key} must be an integer, not {value!r}")
    return value
