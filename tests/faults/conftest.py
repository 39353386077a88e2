"""Fixtures of the fault-injection suite (``pytest -m faults``)."""

from __future__ import annotations

import pytest

from datasync.demo_apis import DemoApis
from tests.faults.harness import Project


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
