"""RunStore contract, run detail: lateness and duration, page-by-page records (attempts,
errors, folding beyond the kept pages), masking, the history queries, the audit log,
annotations and retention — the same on memory, SQLite and Cosmos."""

from __future__ import annotations

from datetime import timedelta

import pytest

from datasync.exceptions import ValidationError
from datasync.models import RunRecord
from datasync.ports import Checkpoint
from datasync.records import AuditEntry, StepWrite, run_token
from datasync.redact import register_secret
from tests.contract.conftest import Backend

ID = "Workflow-acme--contacts-20261123T140000Z"


def run(instance: str = ID, *, when: str = "2026-11-23T14:00:00Z", **kw: str) -> RunRecord:
    return RunRecord(
        instance_id=instance,
        tenant_id=kw.get("tenant", "acme"),
        flow_name=kw.get("flow", "contacts"),
        scheduled_for=when,
        status=kw.get("status", "Pending"),
    )


def step(page: int, name: str, *, error: str | None = None, **known: object) -> StepWrite:
    return StepWrite(
        instance_id=ID,
        tenant_id="acme",
        page=page,
        step=name,
        started_at="2026-11-23T14:00:02Z",
        duration_seconds=0.25,
        error=error,
        **known,  # type: ignore[arg-type]
    )


def push_page(b: Backend, page: int, keep: int) -> None:
    b.runs.write_step(
        step(page, "pull", cursor_before=page - 1, knows_cursor_before=True, records_in=10),
        keep_pages=keep,
    )
    b.runs.checkpoint(
        ID,
        "acme",
        "contacts",
        Checkpoint(cursor=page),
        pages=page,
        records_in=10 * page,
        records_out=10 * page,
        detail=step(page, "push", cursor_after=page, records_out=10),
        keep_pages=keep,
    )


def test_lateness_at_begin_and_duration_at_finish(backend: Backend) -> None:
    b = backend
    assert b.runs.create(run())
    b.clock.advance(1.5)
    began = b.runs.begin(run(status="Running"))
    assert began.lateness_seconds == pytest.approx(1.5, abs=0.001)
    b.clock.advance(10)
    assert b.runs.finish(
        ID, "Failed", "Activity function 'pull_page' failed: boom\nat x"
    ).outcome == ("applied")
    done = b.runs.get(ID)
    assert done.duration_seconds == pytest.approx(10.0, abs=0.001)
    assert done.reason == "Activity function 'pull_page' failed: boom"
    keys = list(done.to_json())
    assert keys[:12] == [
        "instanceId", "tenantId", "flowName", "scheduledFor", "status", "startedAt",
        "finishedAt", "pages", "recordsIn", "recordsOut", "resumes", "error",
    ]  # fmt: skip
    assert keys[12:] == ["latenessSeconds", "reason", "rerunOf", "traceId", "durationSeconds"]
    # a record from before these fields still loads
    assert RunRecord.from_json({k: v for k, v in done.to_json().items() if k in keys[:12]})


def test_pages_record_each_step_with_attempts_and_errors(backend: Backend) -> None:
    b = backend
    b.runs.begin(run(status="Running"))
    b.runs.write_step(step(1, "pull", error="TransientError: 503"), keep_pages=500)
    b.runs.write_step(
        step(1, "pull", cursor_before=None, knows_cursor_before=True, cursor_after="c1",
             records_in=3),
        keep_pages=500,
    )  # fmt: skip
    b.runs.write_step(step(1, "transform", records_out=2), keep_pages=500)
    b.runs.checkpoint(
        ID, "acme", "contacts", Checkpoint(cursor="c1"), pages=1, records_in=3, records_out=2,
        detail=step(1, "push", cursor_after="c1", records_out=2),
    )  # fmt: skip
    b.runs.write_step(
        step(2, "pull", cursor_before="c1", knows_cursor_before=True, error="ValueError: x"),
        keep_pages=500,
    )
    pages = b.runs.pages(ID)
    assert [p.page for p in pages] == [1, 2]
    first = pages[0]
    assert (first.cursor_before, first.cursor_after, first.records_in, first.records_out) == (
        None, "c1", 3, 2,
    )  # fmt: skip
    pull = first.step("pull")
    assert pull is not None and pull.attempts == 2 and pull.error is None
    assert [s.step for s in first.steps] == ["pull", "transform", "push"]
    assert first.duration_seconds == pytest.approx(0.75)
    second = pages[1].step("pull")
    assert second is not None and second.error == "ValueError: x" and second.attempts == 1
    assert [p.page for p in b.runs.pages(ID, after=1)] == [2]
    assert [p.page for p in b.runs.pages(ID, limit=1)] == [1]
    assert b.runs.page_summary(ID) is None
    assert b.runs.pages("Workflow-none--x-20261123T140000Z") == []


def test_pages_beyond_the_kept_ones_are_summarised(backend: Backend) -> None:
    b = backend
    b.runs.begin(run(status="Running"))
    for page in range(1, 11):
        push_page(b, page, keep=4)
    push_page(b, 10, keep=4)  # a retried push folds nothing twice
    assert [p.page for p in b.runs.pages(ID)] == [1, 2, 9, 10]
    summary = b.runs.page_summary(ID)
    assert summary is not None
    assert (summary.pages, summary.first_page, summary.last_page) == (6, 3, 8)
    assert (summary.records_in, summary.records_out, summary.attempts) == (60, 60, 12)
    assert summary.min_duration_seconds == summary.max_duration_seconds == pytest.approx(0.5)
    assert summary.total_duration_seconds == pytest.approx(3.0)


def test_no_secret_in_page_detail_reason_or_audit(backend: Backend) -> None:
    secret = "s3cr3t-" + backend.name + "-Zq9xW2"
    register_secret(secret)
    b = backend
    b.runs.begin(run(status="Running"))
    b.runs.write_step(
        step(1, "pull", cursor_before=f"after={secret}", knows_cursor_before=True,
             cursor_after=f"next:{secret}", error=f"HTTPStatusError: 401 for token {secret}"),
        keep_pages=500,
    )  # fmt: skip
    b.runs.finish(ID, "Failed", f"ValueError: bad {secret}")
    b.runs.audit(AuditEntry("os:alice", "rerun", ID, tenant_id="acme", detail=f"x {secret}"))
    stored = [p.to_json() for p in b.runs.pages(ID)]
    text = repr((stored, b.runs.get(ID).reason, [e.to_json() for e in b.runs.audit_log()]))
    assert secret not in text
    assert "***" in stored[0]["cursorBefore"] and "***" in stored[0]["steps"][0]["error"]


def test_query_newest_first_with_keyset_paging_filters_and_count(backend: Backend) -> None:
    b = backend
    times = [f"2026-11-23T{14 + h}:00:00Z" for h in range(6)]
    for i, when in enumerate(times):
        tenant = "acme" if i % 2 == 0 else "beta"
        rid = f"Workflow-{tenant}--contacts-2026112{i}"
        b.runs.record(run(rid, when=when, tenant=tenant, status="Completed" if i < 4 else "Failed"))
    b.runs.record(run("Workflow-acme--contacts-tie", when=times[5], status="Failed"))
    first = b.runs.query(limit=3)
    assert [r.scheduled_for for r in first] == [times[5], times[5], times[4]]
    assert first[0].instance_id > first[1].instance_id
    rest = b.runs.query(limit=10, before=run_token(first[-1]))
    assert [r.scheduled_for for r in rest] == times[3::-1]
    assert b.runs.count() == 7
    assert b.runs.count(tenant="acme") == 4
    assert b.runs.count(status="Failed") == 3
    since, until = b.clock() + timedelta(hours=1), b.clock() + timedelta(hours=3)
    assert [r.scheduled_for for r in b.runs.query(since=since, until=until)] == [
        times[2], times[1],
    ]  # fmt: skip
    assert b.runs.count(since=since, until=until) == 2
    assert [r.tenant_id for r in b.runs.query(tenant="beta", status="Completed")] == ["beta"] * 2
    with pytest.raises(ValidationError):
        b.runs.query(before="not a token")
    counts = b.runs.status_counts(b.clock() + timedelta(hours=4), 7200)
    assert counts == [("2026-11-23T18:00:00Z", "Failed", 3)]


def test_audit_log_newest_first_and_filtered(backend: Backend) -> None:
    b = backend
    b.runs.audit(AuditEntry("os:alice", "pause", "acme/contacts", tenant_id="acme",
                            flow_name="contacts"))  # fmt: skip
    b.clock.advance(1)
    b.runs.audit(AuditEntry("aad:bob@contoso.com", "rerun", ID, tenant_id="acme",
                            flow_name="contacts", instance_id=ID))  # fmt: skip
    b.clock.advance(1)
    b.runs.audit(AuditEntry("os:alice", "poison delete", "msg-1"))
    log = b.runs.audit_log()
    assert [e.action for e in log] == ["poison delete", "rerun", "pause"]
    assert log[1].at == "2026-11-23T14:00:01Z" and log[1].id
    assert [e.action for e in b.runs.audit_log(tenant="acme")] == ["rerun", "pause"]
    assert [e.actor for e in b.runs.audit_log(instance_id=ID)] == ["aad:bob@contoso.com"]
    assert [e.action for e in b.runs.audit_log(flow="contacts", limit=1)] == ["rerun"]


def test_annotate_and_record_reason(backend: Backend) -> None:
    b = backend
    b.runs.record(RunRecord(**{**run(status="Skipped").__dict__, "reason": "overlap=skip"}))
    b.runs.annotate(ID, trace_id="0af7651916cd43dd8448eb211c80319c", rerun_of="Workflow-x")
    b.runs.annotate("Workflow-unknown--x-20261123T140000Z", trace_id="t")  # no-op
    got = b.runs.get(ID)
    assert (got.reason, got.trace_id, got.rerun_of) == (
        "overlap=skip", "0af7651916cd43dd8448eb211c80319c", "Workflow-x",
    )  # fmt: skip


def test_prune_deletes_old_finished_runs_and_their_pages(backend: Backend) -> None:
    b = backend
    old, active = ID, "Workflow-acme--other-20261123T140000Z"
    b.runs.begin(run(old, status="Running"))
    push_page(b, 1, keep=500)
    b.runs.finish(old, "Completed")
    b.runs.begin(run(active, flow="other", status="Running"))
    b.clock.advance(86400 * 2)
    b.runs.record(run("Workflow-acme--contacts-new", status="Completed"))
    assert b.runs.prune(b.clock() - timedelta(days=1)) == 1
    assert b.runs.pages(old) == []
    assert {r.instance_id for r in b.runs.query()} == {active, "Workflow-acme--contacts-new"}
