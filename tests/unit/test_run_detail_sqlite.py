"""The embedded run store's detail on real SQLite: a database made before the detail
columns is migrated in place, and the run list stays fast (indexed) with 100k runs."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from datasync.adapters.local import LocalBackend
from datasync.records import run_token

OLD_RUNS = """
CREATE TABLE runs (
    instance_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, flow_name TEXT NOT NULL,
    scheduled_for TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    pages INTEGER NOT NULL DEFAULT 0, records_in INTEGER NOT NULL DEFAULT 0,
    records_out INTEGER NOT NULL DEFAULT 0, resumes INTEGER NOT NULL DEFAULT 0, error TEXT,
    created_at TEXT NOT NULL, claimed_at TEXT);
INSERT INTO runs VALUES ('Workflow-acme--f-20261123T140000Z', 'acme', 'f',
    '2026-11-23T14:00:00Z', 'Completed', '2026-11-23T14:00:01Z', '2026-11-23T14:00:09Z',
    3, 30, 30, 0, NULL, '2026-11-23T14:00:00Z', NULL);
"""


def test_an_old_database_gains_the_detail_columns(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    con = sqlite3.connect(home / "datasync.db")
    con.executescript(OLD_RUNS)
    con.close()
    b = LocalBackend(home)
    try:
        run = b.runs.get("Workflow-acme--f-20261123T140000Z")
        assert (run.pages, run.lateness_seconds, run.reason) == (3, None, None)
        b.runs.annotate(run.instance_id, trace_id="abc")
        assert b.runs.get(run.instance_id).trace_id == "abc"
        assert [r.instance_id for r in b.runs.query()] == [run.instance_id]
    finally:
        b.close()


@pytest.mark.timeout(120)
def test_run_list_pages_fast_with_100k_runs(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "home")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = ("Completed", "Completed", "Completed", "Failed", "Skipped")
    rows = [
        (
            f"Workflow-t{i % 100}--f{i % 7}-{i:06d}",
            f"t{i % 100}",
            f"f{i % 7}",
            (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            statuses[i % 5],
            "2026-01-01T00:00:00Z",
        )
        for i in range(100_000)
    ]
    with b.db.write() as con:
        con.executemany(
            "INSERT INTO runs (instance_id, tenant_id, flow_name, scheduled_for, status, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    try:
        b.runs.query(limit=1)  # warm the connection
        began = time.perf_counter()
        first = b.runs.query(limit=50)
        deep = b.runs.query(limit=50, before=run_token(first[-1]))
        flow = b.runs.query(tenant="t7", flow="f0", limit=50)
        failed = b.runs.query(status="Failed", limit=50)
        window = b.runs.query(since=start + timedelta(days=30), until=start + timedelta(days=31))
        n = b.runs.count(status="Failed")
        took = time.perf_counter() - began
        assert len(first) == len(deep) == len(failed) == len(window) == 50 and len(flow) > 0
        assert first[0].scheduled_for > deep[0].scheduled_for and n == 20_000
        assert took < 1.0, f"six list reads over 100k runs took {took:.3f} s"
    finally:
        b.close()


def test_lateness_is_measured_below_the_second_on_the_real_clock(tmp_path: Path) -> None:
    """Run times are stored to the second, but lateness is not rounded with them: the
    lateness benchmark's p99 ≤ 2 s target needs sub-second figures."""
    from datasync.names import format_utc
    from datasync.records import RunRecord

    b = LocalBackend(tmp_path / "home")
    try:
        scheduled = datetime.now(UTC).replace(microsecond=0)
        time.sleep(0.25)
        before = (datetime.now(UTC) - scheduled).total_seconds()
        run = RunRecord(
            instance_id="Workflow-acme--f-20261123T140000Z",
            tenant_id="acme",
            flow_name="f",
            scheduled_for=format_utc(scheduled),
            status="Pending",
        )
        b.runs.create(run)
        began = b.runs.begin(run)
        after = (datetime.now(UTC) - scheduled).total_seconds()
        assert began.lateness_seconds is not None
        assert before <= began.lateness_seconds <= after
        assert began.lateness_seconds != int(began.lateness_seconds)
    finally:
        b.close()
