"""datasync.operations as the web console calls them: the App, plain arguments and the
signed-in principal as ``actor``; data back, project exceptions on bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from datasync import operations
from datasync.app import App
from datasync.cli import cli
from datasync.exceptions import NotFound, ValidationError
from datasync.models import Job
from datasync.names import format_utc, instance_id
from datasync.ports import FLOW_JOBS, FLOW_JOBS_POISON
from datasync.records import RunRecord
from datasync.redact import register_secret

FLOW = "contacts-to-erp"
PRINCIPAL = "aad:ops@contoso.com"


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv("DATASYNC_FLOWS_DIR", "flows")  # the project's flows (contacts-to-erp)
    with App.in_memory() as app:
        yield app


def tenant(app: App, tz: str = "Europe/Amsterdam", **flow) -> None:
    entry = {"name": FLOW, "cron": "0 0 * * * *", **flow}
    doc = {"id": "acme", "tenantId": "acme", "timezone": tz, "flows": [entry]}
    operations.apply(app, doc, datetime.now(UTC))


def add_run(app: App, status: str, when: datetime, **fields) -> RunRecord:
    record = RunRecord(
        instance_id=instance_id("acme", FLOW, when),
        tenant_id="acme",
        flow_name=FLOW,
        scheduled_for=format_utc(when),
        status=status,
        **fields,
    )
    app.runs.record(record)
    return record


def test_actions_record_the_principal_the_console_passes(app):
    tenant(app)
    failed = add_run(app, "Failed", datetime(2026, 11, 23, 13, tzinfo=UTC))
    message = app.queues.queue(FLOW_JOBS_POISON).send("junk")
    operations.trigger(app, "acme", FLOW, actor=PRINCIPAL)
    operations.pause(app, "acme", actor=PRINCIPAL)
    operations.resume(app, "acme", actor=PRINCIPAL)
    queued = operations.rerun(app, failed.instance_id, actor=PRINCIPAL)
    operations.poison_delete(app, message, actor=PRINCIPAL)
    entries = app.runs.audit_log()
    assert [e.action for e in entries] == ["poison delete", "rerun", "resume", "pause", "trigger"]
    assert {e.actor for e in entries} == {PRINCIPAL}
    assert entries[1].detail == f"queued as {queued.instance_id}"
    assert [e.action for e in app.runs.audit_log(instance_id=failed.instance_id)] == ["rerun"]


def test_the_default_actor_is_the_os_user():
    assert operations.local_actor().startswith("os:") and len(operations.local_actor()) > 3


def test_run_detail_and_errors(app):
    with pytest.raises(NotFound, match="no run 'Workflow-x'"):
        operations.run_detail(app, "Workflow-x")
    tenant(app)
    run = add_run(app, "Skipped", datetime(2026, 11, 23, 13, tzinfo=UTC), reason="overlap skip")
    detail = operations.run_detail(app, run.instance_id)
    assert detail.run.reason == "overlap skip" and detail.pages == [] and not detail.more
    assert detail.to_json()["reason"] == "overlap skip"
    with pytest.raises(ValidationError):
        operations.run_detail(app, run.instance_id, limit=0)


def test_rerun_numbers_skip_a_queued_rerun(app):
    tenant(app)
    failed = add_run(app, "Failed", datetime(2026, 11, 23, 13, tzinfo=UTC))
    first = operations.rerun(app, failed.instance_id)
    second = operations.rerun(app, failed.instance_id)
    assert (first.rerun, second.rerun) == (1, 2)
    jobs = [Job.from_message(i.body) for i in app.queues.queue(FLOW_JOBS).peek_all()]
    assert [j.instance_id for j in jobs if j.rerun] == [first.instance_id, second.instance_id]


def test_schedule_show_across_the_spring_gap(app):
    tenant(app, cron="0 30 2 * * *")  # 02:30 Amsterdam: no such time on 2027-03-28
    view = operations.schedule_show(
        app, "acme", FLOW, now=datetime(2027, 3, 26, 12, tzinfo=UTC), count=4
    )
    local = [o.local.isoformat() for o in view.upcoming]
    assert local == [
        "2027-03-27T02:30:00+01:00",
        "2027-03-28T03:00:00+02:00",  # the gap: once, at the first valid instant after it
        "2027-03-29T02:30:00+02:00",
        "2027-03-30T02:30:00+02:00",
    ]
    assert [format_utc(o.scheduled_for) for o in view.upcoming][:2] == [
        "2027-03-27T01:30:00Z",
        "2027-03-28T01:00:00Z",
    ]


def test_schedule_show_of_an_ended_schedule_lists_nothing_and_returns(app):
    tenant(app, cron="0 * * * * *", endAt="2026-01-01T00:00:00Z")
    view = operations.schedule_show(app, "acme", FLOW, now=datetime(2026, 6, 1, tzinfo=UTC))
    assert view.upcoming == []
    later = operations.schedule_show(
        app, "acme", FLOW, now=datetime(2025, 12, 31, 23, 58, tzinfo=UTC)
    )
    assert [format_utc(o.scheduled_for) for o in later.upcoming] == [
        "2025-12-31T23:59:00Z",
        "2026-01-01T00:00:00Z",
    ]


def test_backfill_follows_real_hours_on_the_autumn_day(app):
    tenant(app, cron="0 0 * * * *", overlap="queue")  # hourly: 25 runs on the fall-back day
    start = datetime(2026, 10, 24, 22, tzinfo=UTC)  # 2026-10-25 00:00 Amsterdam (CEST)
    end = datetime(2026, 10, 25, 22, 59, tzinfo=UTC)  # 2026-10-25 23:59 Amsterdam (CET)
    done = operations.backfill(app, "acme", FLOW, start, end, dry_run=True)
    assert len(done.occurrences) == 25 and done.queued == ()
    with pytest.raises(ValidationError, match="more than 10 occurrences"):
        operations.backfill(app, "acme", FLOW, start, end, limit=10)


def test_queue_list_reads_without_receiving(app):
    q = app.queues.queue(FLOW_JOBS)
    q.send(Job("acme", FLOW, datetime(2026, 11, 23, 13, tzinfo=UTC)).to_message())
    first = operations.queue_list(app)
    second = operations.queue_list(app)
    assert [j.dequeue_count for j in first] == [j.dequeue_count for j in second] == [0]
    assert first[0].to_json()["tenantId"] == "acme"


def test_a_secret_in_a_run_error_is_masked_in_runs_show(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASYNC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASYNC_FLOWS_DIR", "flows")
    secret = "tok-3f9a-never-shown-77c1"
    register_secret(secret)
    with App.from_settings() as app:
        run = add_run(
            app,
            "Failed",
            datetime(2026, 11, 23, 13, tzinfo=UTC),
            error=f"401 for Bearer {secret}",
            reason=f"pull failed: {secret}",
        )
    for args in (["runs", "show", run.instance_id], ["runs", "show", run.instance_id, "--json"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert secret not in result.output and "***" in result.output
    listed = CliRunner().invoke(cli, ["runs"])
    assert secret not in listed.output


def test_reset_refuses_while_active(app):
    tenant(app)
    add_run(app, "Running", datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(ValidationError, match="has an active run"):
        operations.reset(app, "acme", FLOW, actor=PRINCIPAL)
    with pytest.raises(NotFound):
        operations.check_reset(app, "acme", "nope")
    assert app.runs.audit_log() == []


def test_terminate_leaves_the_sdk_session_of_a_runtime_in_this_process_alone(tmp_path, monkeypatch):
    """The console inside ``run`` terminates through its own HTTP session: the Durable SDK's
    module-global one belongs to the runtime's event loop and must stay open and in place."""
    import asyncio
    import threading

    from azure.durable_functions.models.utils import http_utils

    monkeypatch.setenv("DATASYNC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASYNC_FLOWS_DIR", "flows")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(http_utils, "_client_session", None)
    monkeypatch.setattr(http_utils, "_session_lock", asyncio.Lock())
    try:
        runtime_session = asyncio.run_coroutine_threadsafe(http_utils._get_session(), loop).result()
        with App.from_settings() as app:
            tenant(app)
            run = add_run(app, "Running", datetime.now(UTC) - timedelta(minutes=1))
            [done] = operations.stop_runs(app, "acme", run.instance_id, actor=PRINCIPAL)
            assert done.outcome == "not-started" and done.run.status == "Terminated"
            assert app.runs.audit_log()[0].action == "terminate"
        assert http_utils._client_session is runtime_session
        assert not runtime_session.closed
    finally:
        asyncio.run_coroutine_threadsafe(runtime_session.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
