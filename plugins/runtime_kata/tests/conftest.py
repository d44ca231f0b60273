from __future__ import annotations

import sys
from pathlib import Path

# the helpers module next to the tests (plugins' tests are not packages)
sys.path.insert(0, str(Path(__file__).parent))
