"""``tenants apply`` keeps a flow's stored nextRunUtc only while its schedule revision is
unchanged: an edit of jitter or bounds re-plans from now (no window of jobs lost)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from datasync import operations
from datasync.app import App
from datasync.schedule import next_occurrence

FLOW = "contacts-to-erp"
CRON = "0 0 */6 * * *"
NOW = datetime(2026, 11, 23, 13, 0, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 18, 0, 0, tzinfo=UTC)  # as a look-ahead tick leaves it


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv("DATASYNC_FLOWS_DIR", "flows")
    with App.in_memory() as app:
        yield app


def doc(**flow) -> dict:
    entry = {"name": FLOW, "cron": CRON, **flow}
    return {"id": "acme", "tenantId": "acme", "timezone": "UTC", "flows": [entry]}


def stored_next(app: App) -> datetime | None:
    return app.tenants.get("acme").flows[0].next_run_utc


def apply(app: App, document: dict) -> None:
    operations.apply(app, document, NOW, schedule=False)


@pytest.mark.parametrize(
    "edit",
    [
        {"jitter": 120},
        {"startAt": "2026-11-23T20:00:00Z"},
        {"endAt": "2026-12-31T00:00:00Z"},
        {"catchUp": "all"},
        {"overlap": "queue", "jitter": 5},
    ],
)
def test_a_schedule_option_edit_replans_the_next_run_from_now(app, edit):
    apply(app, doc(nextRunUtc="2026-11-24T18:00:00Z"))
    assert stored_next(app) == LATER
    apply(app, doc(**edit))
    assert stored_next(app) == next_occurrence(CRON, "UTC", NOW)


@pytest.mark.parametrize("edit", [{}, {"config": {"batch": 5}}, {"overlap": "queue"}])
def test_an_edit_that_leaves_the_schedule_keeps_the_stored_next_run(app, edit):
    apply(app, doc(nextRunUtc="2026-11-24T18:00:00Z"))
    apply(app, doc(**edit))
    assert stored_next(app) == LATER


def test_a_cron_edit_replans_and_a_due_next_run_is_kept(app):
    apply(app, doc(nextRunUtc="2026-11-24T18:00:00Z"))
    apply(app, doc(cron="0 30 * * * *"))
    assert stored_next(app) == next_occurrence("0 30 * * * *", "UTC", NOW)
    apply(app, doc(nextRunUtc="2026-11-23T12:00:00Z"))  # due (a trigger): it must run
    apply(app, doc(jitter=60))
    assert stored_next(app) == datetime(2026, 11, 23, 12, tzinfo=UTC)
