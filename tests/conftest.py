"""Fixtures shared by every test tier."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TEST_DISTS = ("pycrio-test-good", "pycrio-test-bad", "pycrio-test-driver")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the test plugin distributions are really installed.

    Installed with pip (dist-info, entry_points.txt and all) so discovery is
    exercised exactly as for a wheel on a node, but outside the project's
    virtualenv; put it on PYTHONPATH or sys.path to make them visible.
    """
    site = tmp_path_factory.mktemp("plugin-site")
    dists = [str(FIXTURES / "dists" / name) for name in TEST_DISTS]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            *dists,
        ],
        check=True,
        timeout=300,
    )
    return site
