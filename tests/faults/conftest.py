"""Fixtures of the fault-injection suite (``pytest -m faults``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasync.demo_apis import DemoApis
from tests.faults.harness import Project

FAULT_TIMEOUT = 120
"""Seconds per fault test (the default is short): each starts, kills and restarts runtimes
in subprocesses. A module or test with its own ``timeout`` mark keeps it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.resolve().parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAULT_TIMEOUT))


@pytest.fixture
def project(tmp_path):
    proj = Project(tmp_path)
    try:
        yield proj
    finally:
        proj.stop_all()


@pytest.fixture
def apis():
    with DemoApis() as server:
        yield server
