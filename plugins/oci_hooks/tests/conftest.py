"""Fixtures for the OCI hooks tests: a runnable hook binary and hook files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def hook_bin(tmp_path: Path) -> str:
    """An executable the hooks can point at (injection skips missing binaries)."""
    path = tmp_path / "bin" / "hook"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def hook_doc(hook_bin: str) -> Callable[..., dict[str, Any]]:
    """A valid hook document, with fields overridden by keyword."""

    def make(**overrides: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": "1.0.0",
            "hook": {"path": hook_bin},
            "when": {"always": True},
            "stages": ["prestart"],
        }
        doc.update(overrides)
        return doc

    return make


@pytest.fixture
def write_hook() -> Callable[..., str]:
    """Write a hook file (a dict as JSON, or raw text) and return its path."""

    def write(directory: Path, name: str, doc: dict[str, Any] | str) -> str:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        text = doc if isinstance(doc, str) else json.dumps(doc)
        path.write_text(text)
        return os.fspath(path)

    return write
