"""The scheduler function's housekeeping: run records past the retention are deleted by a
tick, at most once per PRUNE_EVERY, and a failing prune never costs the tick its scan."""

from __future__ import annotations

from datetime import timedelta

import azure.durable_functions as df
import pytest

from datasync.app import App
from datasync.config import Settings
from datasync.functions import scheduler
from datasync.functions.provider import AppProvider
from datasync.models import parse_tenant
from datasync.names import format_utc, utcnow
from datasync.ports import FLOW_JOBS
from datasync.records import RunRecord


def _tick_function(app: App):
    provider = AppProvider()
    provider.install(app)
    bp: df.Blueprint = scheduler.blueprint(provider)
    (builder,) = bp._function_builders
    return builder._function.get_user_function()


def _finished(app: App, instance: str, days_ago: float) -> None:
    when = format_utc(utcnow() - timedelta(days=days_ago))
    app.runs.record(
        RunRecord(
            instance_id=instance,
            tenant_id="acme",
            flow_name="contacts-to-erp",
            scheduled_for=when,
            status="Completed",
            started_at=when,
            finished_at=when,
        )
    )


@pytest.fixture
def app() -> App:
    app = App.in_memory(Settings(run_retention_days=30))
    app.tenants.upsert_many(
        [
            parse_tenant(
                {
                    "id": "acme",
                    "flows": [
                        {
                            "name": "contacts-to-erp",
                            "cron": "0 0 * * * *",
                            "nextRunUtc": "2026-01-01T00:00:00Z",
                        }
                    ],
                }
            )
        ]
    )
    return app


def test_a_tick_deletes_runs_past_the_retention_and_keeps_the_rest(app: App) -> None:
    _finished(app, "Workflow-acme--contacts-to-erp-old", days_ago=31)
    _finished(app, "Workflow-acme--contacts-to-erp-new", days_ago=29)
    _tick_function(app)(None)
    assert [r.instance_id for r in app.runs.recent()] == ["Workflow-acme--contacts-to-erp-new"]
    assert app.queues.queue(FLOW_JOBS).count() >= 1  # the scan ran as well


def test_pruning_happens_once_per_interval_not_every_tick(app: App) -> None:
    tick = _tick_function(app)
    tick(None)
    _finished(app, "Workflow-acme--contacts-to-erp-old", days_ago=40)
    tick(None)  # within PRUNE_EVERY of the first tick: no second prune
    assert [r.instance_id for r in app.runs.recent()] == ["Workflow-acme--contacts-to-erp-old"]


def test_a_failing_prune_is_logged_and_the_scan_still_runs(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_older_than: object) -> int:
        raise OSError("disk I/O error")

    monkeypatch.setattr(app.runs, "prune", broken)
    _tick_function(app)(None)
    assert "could not prune old run records: OSError: disk I/O error" in caplog.text
    assert app.queues.queue(FLOW_JOBS).count() >= 1
