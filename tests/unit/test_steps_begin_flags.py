"""``begin_run`` reports the flow's own choices in its carry: transform and pipelining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from datasync.app import App
from datasync.config import Settings
from datasync.contracts import BeginInput
from datasync.models import parse_tenant

FLOWS = """
from datasync import Page, flow


@flow("plain")
class Plain:
    def pull(self, ctx, cursor):
        return Page(records=[], cursor=None, has_more=False)

    def push(self, ctx, records):
        pass


@flow("shaped")
class Shaped:
    pipeline = False

    def pull(self, ctx, cursor):
        return Page(records=[], cursor=None, has_more=False)

    def transform(self, ctx, records):
        return records

    def push(self, ctx, records):
        pass
"""


@pytest.fixture
def app(tmp_path: Path) -> Any:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "both.py").write_text(FLOWS)
    with App.in_memory(Settings(flows_dir=flows)) as app:
        app.tenants.upsert_many(
            [
                parse_tenant(
                    {
                        "id": "acme",
                        "flows": [
                            {"name": "plain", "cron": "0 0 * * * *"},
                            {"name": "shaped", "cron": "0 0 * * * *"},
                        ],
                    }
                )
            ]
        )
        yield app


def _begin(app: App, flow: str) -> Any:
    run = f"Workflow-acme--{flow}-20261123T140000Z"
    return app.steps.begin(
        BeginInput(
            tenant_id="acme", flow_name=flow, run_id=run, scheduled_for="2026-11-23T14:00:00Z"
        )
    )


def test_a_flow_without_transform_is_pushed_as_staged(app: App) -> None:
    carry = _begin(app, "plain")
    assert (carry.transform, carry.pipeline) == (False, True)
    # at their defaults the keys stay out of the JSON; the flag that differs is written
    assert carry.to_json()["transform"] is False
    assert "pipeline" not in carry.to_json()


def test_a_flow_that_opts_out_of_pipelining_says_so(app: App) -> None:
    carry = _begin(app, "shaped")
    assert (carry.transform, carry.pipeline) == (True, False)
