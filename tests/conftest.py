"""Shared fixtures: an isolated DATASYNC_HOME per test."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh DATASYNC_HOME (apps built by the test read it from the environment)."""
    path = tmp_path / "home"
    monkeypatch.setenv("DATASYNC_HOME", str(path))
    monkeypatch.setenv("DATASYNC_HTTP_BACKOFF_BASE", "0.01")
    return path
