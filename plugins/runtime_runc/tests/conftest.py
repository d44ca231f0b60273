"""The runc plugin's tests share test_runc_driver_real's Env (a real runc + conmon driver).

Test directories are not packages and pytest imports test modules by path
(--import-mode=importlib), so this directory is put on sys.path for a test
module to import another's helpers by name.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
