"""The shim v2 driver's tests use tests/support's helpers (read-only) and shimenv.py."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUPPORT = HERE.parents[2] / "tests" / "support"
for path in (str(HERE), str(SUPPORT)):
    if path not in sys.path:
        sys.path.insert(0, path)
