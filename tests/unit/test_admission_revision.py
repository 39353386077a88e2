"""Edits after enqueue: the starter drops a job whose flow's schedule revision changed as a
``Superseded`` run record with the reason; ``bufferOne`` keeps at most one occurrence
waiting; a deferred job goes back with its reason as ``note``. Real in-memory stores, the
real scanner, the real admission; the Durable client is the tests' recording client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from datasync.admission import Defer, Skip, decide
from datasync.app import App
from datasync.config import Settings
from datasync.models import Job, RunRecord, parse_tenant
from datasync.scanner import scan_and_enqueue
from tests.unit.test_admission import FakeDurable

NOW = datetime(2026, 11, 23, 14, 0, 30, tzinfo=UTC)


def doc(**flow: Any) -> dict[str, Any]:
    paused = flow.pop("paused", False)
    tz = flow.pop("timezone", "UTC")
    entry = {"name": "contacts", "cron": "0 */15 * * * *", **flow}
    return {"id": "acme", "paused": paused, "timezone": tz, "flows": [entry]}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "contacts.py").write_text(
        "from datasync import Page, flow\n\n@flow('contacts')\nclass C:\n"
        "    def pull(self, ctx, cursor):\n        return Page([], None, False)\n\n"
        "    def push(self, ctx, records):\n        pass\n"
    )
    with App.in_memory(Settings(flows_dir=flows, start_claim_seconds=0)) as app:
        app.tenants.upsert_many([parse_tenant(doc())])
        yield app


def enqueued(app: App) -> list[Job]:
    """Tick with a look-ahead, return the jobs it put on the queue (and empty it)."""
    queue = app.queues.queue("flow-jobs")
    scan_and_enqueue(app.tenants, queue, NOW, lookahead=3600)
    jobs = [Job.from_message(i.body) for i in queue.peek_all()]
    for item in queue.peek_all():
        queue.remove(item.id)
    return sorted(jobs, key=lambda j: j.scheduled_for)


def admit(app: App, job: Job, durable: FakeDurable | None = None) -> str:
    return asyncio.run(app.admission.admit(job, durable or FakeDurable()))


def edit(app: App, **flow: Any) -> None:
    """Change keys of the flow entry (as `tenants apply` of an edited document would)."""
    current = app.tenants.get("acme").to_doc()
    current["flows"][0].update(flow)
    app.tenants.upsert_many([parse_tenant(current)])


def test_a_job_of_an_unchanged_flow_starts(app: App) -> None:
    job = enqueued(app)[0]
    assert job.revision is not None
    assert admit(app, job) == "started"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"cron": "0 0 * * * *"}, "the flow's schedule changed after the job was enqueued"),
        ({"timezone": "Europe/Amsterdam"}, "the flow's schedule changed"),
        ({"jitter": 30}, "the flow's schedule changed"),
        ({"enabled": False}, "flow was disabled after the job was enqueued"),
        ({"paused": True}, "tenant was paused after the job was enqueued"),
    ],
)
def test_an_edit_after_enqueue_supersedes_the_job(
    app: App, change: dict[str, Any], reason: str
) -> None:
    job = enqueued(app)[0]
    current = app.tenants.get("acme").to_doc()
    top = {k: change.pop(k) for k in ("paused", "timezone") if k in change}
    current["flows"][0].update(change)
    app.tenants.upsert_many([parse_tenant({**current, **top})])
    durable = FakeDurable()
    assert admit(app, job, durable) == "superseded"
    assert durable.started == []
    record = app.runs.get(job.instance_id)
    assert record.status == "Superseded" and reason in (record.error or "")
    assert admit(app, job, durable) == "superseded"  # redelivered: the record stays as it is
    assert app.runs.get(job.instance_id).status == "Superseded"


def test_a_trigger_does_not_supersede_the_window(app: App) -> None:
    job = enqueued(app)[0]
    edit(app, nextRunUtc="2026-11-23T14:00:30Z")  # what `trigger` writes
    assert admit(app, job) == "started"


def test_deleted_flow_and_tenant_supersede(app: App) -> None:
    job = enqueued(app)[0]
    current = app.tenants.get("acme").to_doc()
    app.tenants.upsert_many([parse_tenant({**current, "flows": []})])
    assert admit(app, job) == "superseded"
    assert "flow contacts was removed" in (app.runs.get(job.instance_id).error or "")
    later = Job("acme", "contacts", job.scheduled_for + timedelta(minutes=15), job.revision)
    app.tenants.delete("acme")  # type: ignore[attr-defined]
    assert admit(app, later) == "superseded"
    assert "tenant acme was deleted" in (app.runs.get(later.instance_id).error or "")


def test_a_job_without_revision_is_not_checked(app: App) -> None:
    edit(app, cron="0 0 * * * *")
    assert admit(app, Job("acme", "contacts", NOW)) == "started"  # queue put / old message


def test_a_rerun_is_not_revision_checked(app: App) -> None:
    job = enqueued(app)[0]
    edit(app, cron="0 0 * * * *")
    rerun = Job("acme", "contacts", job.scheduled_for, job.revision, rerun=1)
    durable = FakeDurable()
    assert admit(app, rerun, durable) == "started"
    assert durable.started[0][0] == job.instance_id + "-rerun1"


def test_a_deferred_job_carries_its_reason_as_note(app: App) -> None:
    edit(app, overlap="queue")
    running = RunRecord(
        instance_id="Workflow-acme--contacts-20261123T134500Z",
        tenant_id="acme",
        flow_name="contacts",
        scheduled_for="2026-11-23T13:45:00Z",
        status="Running",
        started_at="2026-11-23T13:45:00Z",
    )
    app.runs.create(running)
    app.runs.begin(running)
    durable = FakeDurable()
    durable.status[running.instance_id] = ("Running", None)
    assert admit(app, Job("acme", "contacts", NOW), durable) == "deferred"
    (item,) = app.queues.queue("flow-jobs").peek_all()
    assert '"note":"Workflow-acme--contacts-20261123T134500Z is still running' in item.body
    assert Job.from_message(item.body).note is not None


def tenant_buffer_one() -> Any:
    return parse_tenant(doc(overlap="bufferOne"))


ACTIVE = [
    RunRecord(
        instance_id="Workflow-acme--contacts-20261123T134500Z",
        tenant_id="acme",
        flow_name="contacts",
        scheduled_for="2026-11-23T13:45:00Z",
        status="Running",
    )
]


def test_buffer_one_keeps_the_newest_due_occurrence_waiting() -> None:
    t = tenant_buffer_one()
    entry = t.flow("contacts")
    at_1400 = Job("acme", "contacts", datetime(2026, 11, 23, 14, 0, tzinfo=UTC))
    at_1415 = Job("acme", "contacts", datetime(2026, 11, 23, 14, 15, tzinfo=UTC))
    # 14:05: the 14:00 occurrence is the newest due: it waits
    got = decide(at_1400, t, entry, ACTIVE, requeue_delay=30, now=NOW + timedelta(minutes=5))
    assert isinstance(got, Defer) and "bufferOne" in got.reason
    # 14:16: 14:15 is due too; 14:00 is dropped (recorded), 14:15 waits
    later = NOW + timedelta(minutes=16)
    dropped = decide(at_1400, t, entry, ACTIVE, requeue_delay=30, now=later)
    assert isinstance(dropped, Skip) and dropped.record
    assert "a newer occurrence (2026-11-23T14:15:00Z) is due" in dropped.reason
    assert isinstance(decide(at_1415, t, entry, ACTIVE, requeue_delay=30, now=later), Defer)


def test_buffer_one_over_many_redeliveries_leaves_one_waiting(app: App) -> None:
    """A run that takes an hour: of the four occurrences that come due meanwhile, only the
    newest is still waiting after each has been redelivered."""
    edit(app, overlap="bufferOne")
    t = app.tenants.get("acme")
    entry = t.flow("contacts")
    waiting = []
    for minutes in (0, 15, 30, 45):
        waiting.append(Job("acme", "contacts", datetime(2026, 11, 23, 14, minutes, tzinfo=UTC)))
    now = datetime(2026, 11, 23, 14, 50, tzinfo=UTC)
    decisions = [decide(j, t, entry, ACTIVE, requeue_delay=30, now=now) for j in waiting]
    assert [type(d).__name__ for d in decisions] == ["Skip", "Skip", "Skip", "Defer"]


TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_traceparent_reaches_the_orchestration_input(app: App) -> None:
    edit(app, overlap="allow")
    durable = FakeDurable()
    job = Job("acme", "contacts", NOW)
    assert asyncio.run(app.admission.admit(job, durable, traceparent=TRACE)) == "started"
    assert durable.started[0][1]["traceparent"] == TRACE
    carried = Job("acme", "contacts", NOW + timedelta(minutes=15), traceparent=TRACE)
    assert admit(app, carried, durable) == "started"  # from the job message when not passed
    assert durable.started[1][1]["traceparent"] == TRACE
