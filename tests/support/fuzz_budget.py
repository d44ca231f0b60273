"""How long the fuzz tier runs: bounded in ``make test``, long for nightly runs.

``PYCRIO_FUZZ=nightly`` multiplies every test's example count by 20 and
draws fresh random examples each run (the seed is printed on failure, and
``--hypothesis-seed`` replays it); ``PYCRIO_FUZZ_EXAMPLES=N`` sets every
count to N. By default examples are derandomized: ``make test`` tries the
same inputs on every run, so a failure there reproduces by rerunning.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

NIGHTLY = os.environ.get("PYCRIO_FUZZ", "") == "nightly"
NIGHTLY_FACTOR = 20


def examples(ci: int) -> int:
    explicit = os.environ.get("PYCRIO_FUZZ_EXAMPLES", "")
    if explicit:
        return int(explicit)
    return ci * NIGHTLY_FACTOR if NIGHTLY else ci


def fuzz_settings(ci_examples: int) -> settings:
    """Settings for one fuzz test; no example database (nothing written to the tree)."""
    return settings(
        max_examples=examples(ci_examples),
        deadline=None,
        database=None,
        derandomize=not NIGHTLY,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
