"""Shared fixtures: an isolated DATASYNC_HOME and flows dir per test, fresh services."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh DATASYNC_HOME; services are rebuilt from it and dropped afterwards."""
    from datasync.services import reset_services
    path = tmp_path / "home"
    monkeypatch.setenv("DATASYNC_HOME", str(path))
    monkeypatch.setenv("DATASYNC_HTTP_BACKOFF_BASE", "0.01")
    reset_services(None)
    yield path
    reset_services(None)
