"""Look-ahead scheduling on the embedded runtime (real LocalHost, SQLite queue, run store and
Durable store, the app's own function_app.py): with a scan far rarer than the crons, every
occurrence starts on time and exactly once; an edit after enqueue supersedes the old jobs
and the new schedule takes over at once."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from datasync import operations
from datasync.app import App
from datasync.config import Settings
from datasync.names import format_utc, parse_instance_id, utcnow
from datasync.runtime.host import LocalHost
from datasync.schedule import occurrences

pytestmark = pytest.mark.e2e

FLOW = """
from datasync import Page, flow


@flow("tick")
class Tick:
    def pull(self, ctx, cursor):
        return Page(records=[{"id": 1}], cursor=1, has_more=False)

    def push(self, ctx, records):
        pass
"""


@pytest.fixture
def project(tmp_path: Path) -> Settings:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "tick.py").write_text(FLOW)
    return Settings.from_env(
        {
            "DATASYNC_HOME": str(tmp_path / "home"),
            "DATASYNC_FLOWS_DIR": str(flows),
            "DATASYNC_SCAN_SCHEDULE": "0 0 * * * *",  # hourly: only the look-ahead can help
            "DATASYNC_LOG_LEVEL": "WARNING",
        }
    )


def docs(cron: str = "*/2 * * * * *", tenants: int = 3) -> list[dict[str, Any]]:
    return [
        {"id": f"t{n}", "flows": [{"name": "tick", "cron": cron, "overlap": "allow"}]}
        for n in range(tenants)
    ]


class Running:
    """The host serving in a thread (``run`` without ``--once``)."""

    def __init__(self, settings: Settings) -> None:
        self.host = LocalHost(settings)
        self.thread = threading.Thread(target=self.host.run, kwargs={"once": False}, daemon=True)

    def __enter__(self) -> LocalHost:
        self.thread.start()
        return self.host

    def __exit__(self, *exc: object) -> None:
        self.host.stopping.set()
        self.thread.join(timeout=30)


def created(settings: Settings) -> dict[str, float]:
    """Durable instances by id, with the precise time start_new created each."""
    con = sqlite3.connect(settings.home / "durable.db")
    try:
        return dict(con.execute("SELECT instance_id, created_at FROM instances").fetchall())
    finally:
        con.close()


@pytest.fixture
def app(project: Settings) -> Iterator[App]:
    with App.from_settings(project) as app:
        yield app


@pytest.mark.timeout(90)
def test_every_occurrence_starts_on_time_once_with_an_hourly_scan(
    project: Settings, app: App
) -> None:
    start = datetime.now(UTC)
    operations.apply(app, docs(), utcnow())  # apply enqueues the window at once
    with Running(project):
        time.sleep(9)
    end = datetime.now(UTC)
    instances = created(project)
    lo, hi = start + timedelta(seconds=1), end - timedelta(seconds=2)
    expected = {
        (f"t{n}", at) for n in range(3) for at in occurrences("*/2 * * * * *", "UTC", lo, hi)
    }
    seen: dict[tuple[str, datetime], int] = {}
    late: list[float] = []
    for instance, at in instances.items():
        tenant, _, when, _ = parse_instance_id(instance)
        seen[(tenant, when)] = seen.get((tenant, when), 0) + 1
        if (tenant, when) in expected:
            late.append(at - when.timestamp())
    assert len(expected) >= 3 * 3
    assert expected <= set(seen)  # none missed
    assert max(seen.values()) == 1  # none twice
    assert max(late) < 2.0 and min(late) > -0.5  # on time, never early
    records = [r for r in app.runs.recent(limit=1000) if (r.tenant_id, r.scheduled_for)]
    assert all(r.status in ("Completed", "Running") for r in records)


@pytest.mark.timeout(90)
def test_an_edit_after_enqueue_supersedes_the_old_window(project: Settings, app: App) -> None:
    operations.apply(app, docs("*/2 * * * * *", tenants=1), utcnow())
    queued = len(app.queues.queue("flow-jobs").peek_all())
    assert queued > 10  # the window: hidden jobs, one per occurrence
    with Running(project):
        time.sleep(3)
        edited = utcnow()
        operations.apply(app, docs("*/3 * * * * *", tenants=1), edited)
        time.sleep(7)
    runs = app.runs.recent(tenant="t0", limit=1000)
    superseded = [r for r in runs if r.status == "Superseded"]
    ran = [r for r in runs if r.status in ("Completed", "Running")]
    assert superseded, "old-cron jobs that came due after the edit are recorded Superseded"
    assert all("schedule changed" in (r.error or "") for r in superseded)
    later = [r for r in ran if r.scheduled_for > format_utc(edited + timedelta(seconds=1))]
    assert later and all(int(r.scheduled_for[17:19]) % 3 == 0 for r in later)
