"""The shim v2 driver's tests use tests/support's helpers (read-only) and shimenv.py."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUPPORT = HERE.parents[2] / "tests" / "support"
for path in (str(HERE), str(SUPPORT)):
    if path not in sys.path:
        sys.path.insert(0, path)

from collections.abc import Iterator  # noqa: E402 - after the path set-up above

import pytest  # noqa: E402


@pytest.fixture
def env(tmp_path: Path) -> Iterator[object]:
    """A ShimV2Driver on the real containerd-shim-runc-v2, run as the daemon runs it:
    a child subreaper, so each shim is re-parented to the test and reaped here."""
    from shimenv import ShimEnv, set_subreaper

    set_subreaper(True)
    e = ShimEnv(tmp_path)
    try:
        yield e
    finally:
        try:
            e.cleanup()
        finally:
            set_subreaper(False)
