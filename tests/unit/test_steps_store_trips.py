"""Store round trips the run steps save, with what they return unchanged (real SQLite)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from datasync.adapters.local import LocalBackend
from datasync.app import App
from datasync.config import Settings
from datasync.contracts import PullInput
from datasync.models import Job, RunRecord, parse_tenant

WHEN = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
RUN = RunRecord(
    instance_id="Workflow-acme--f-20261123T140000Z",
    tenant_id="acme",
    flow_name="f",
    scheduled_for="2026-11-23T14:00:00Z",
    status="Pending",
    trace_id="0af7651916cd43dd8448eb211c80319c",
)


@pytest.fixture
def backend(tmp_path: Path) -> Any:
    b = LocalBackend(tmp_path / "home")
    yield b
    b.close()


def test_begin_returns_the_record_it_stored_on_every_path(backend: Any) -> None:
    runs = backend.runs
    # no record yet: inserted Running
    first = runs.begin(RUN)
    assert first == runs.get(RUN.instance_id)
    assert (first.status, first.trace_id, first.resumes) == ("Running", RUN.trace_id, 0)
    # begun again (a resume): resumes counted, error and finish cleared
    runs.finish(RUN.instance_id, "Failed", "boom")
    failed = runs.get(RUN.instance_id)
    assert failed.status == "Failed"
    # a Failed run does not run again, so make a started, still-active one by hand
    runs.record(replace(failed, status="Running", error="earlier", finished_at=None))
    again = runs.begin(RUN)
    assert again == runs.get(RUN.instance_id)
    assert (again.status, again.resumes, again.error) == ("Running", 1, None)
    # created Pending by the starter: Pending → Running with its lateness
    other = replace(RUN, instance_id="Workflow-acme--g-20261123T140000Z", flow_name="g")
    assert runs.create(other)
    begun = runs.begin(other)
    assert begun == runs.get(other.instance_id)
    assert begun.status == "Running" and begun.lateness_seconds is not None


def test_deleting_an_empty_prefix_takes_no_write_lock(backend: Any) -> None:
    """A run's end after its last push has no staged page left: finish's clean-up does
    not wait behind another writer for nothing."""
    pages = backend.pages
    pages.put("run-1/p1/pulled-a", [{"id": 1}])
    holder = sqlite3.connect(backend.runs.db.path, timeout=0, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.perf_counter()
        pages.delete_prefix("run-2/")  # nothing there: returns at once
        assert time.perf_counter() - started < 1.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    pages.delete_prefix("run-1/")  # something there: deleted as before
    assert backend.runs.db.read().execute("SELECT count(*) FROM pages").fetchone()[0] == 0


class _Starter:
    async def start_new(
        self, name: str, instance_id: str | None = None, client_input: Any = None
    ) -> str:
        return str(instance_id)


def test_the_first_step_uses_the_document_the_job_was_admitted_under(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "f.py").write_text(
        "from datasync import Page, flow\n\n@flow('f')\nclass F:\n"
        "    def pull(self, ctx, cursor):\n"
        "        return Page([{'n': ctx.config['n']}], 1, False)\n\n"
        "    def push(self, ctx, records):\n        pass\n"
    )
    with App.in_memory(Settings(flows_dir=flows, start_claim_seconds=0)) as app:
        doc = {"id": "acme", "flows": [{"name": "f", "cron": "0 0 * * * *", "config": {"n": 1}}]}
        app.tenants.upsert_many([parse_tenant(doc)])
        reads: list[str] = []
        real_get = app.tenants.get

        def counted(tenant_id: str) -> Any:
            reads.append(tenant_id)
            return real_get(tenant_id)

        app.tenants.get = counted  # type: ignore[method-assign]
        job = Job("acme", "f", WHEN)
        assert asyncio.run(app.admission.admit(job, _Starter())) == "started"
        assert reads == ["acme"]  # the admission's read
        out = app.steps.pull(
            PullInput(
                tenant_id="acme",
                flow_name="f",
                run_id=job.instance_id,
                page_key=job.instance_id + "/p1",
                cursor=None,
                state={},
            )
        )
        assert out.count == 1
        assert reads == ["acme"]  # the pull read no document of its own
