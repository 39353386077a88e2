"""The operator commands (runs show, rerun, reset, backfill, schedule show, queue list,
poison delete, --version, console) through click's runner, on embedded SQLite backends
under a throwaway DATASYNC_HOME."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from datasync import __version__
from datasync.app import App
from datasync.cli import cli
from datasync.models import Job
from datasync.names import format_utc, instance_id
from datasync.ports import FLOW_JOBS, FLOW_JOBS_POISON, Checkpoint
from datasync.records import RunRecord, StepWrite

FLOW = """
from datasync import Page, flow


@flow("contacts-to-erp")
class ContactsToErp:
    def pull(self, ctx, cursor):
        return Page(records=[], cursor=None, has_more=False)

    def push(self, ctx, records):
        pass
"""
NAME = "contacts-to-erp"


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A project root with flows/contacts.py, a fresh home, embedded backends only."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "contacts.py").write_text(FLOW)
    monkeypatch.setenv("DATASYNC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASYNC_FLOWS_DIR", str(flows))
    monkeypatch.setenv("DATASYNC_PROJECT_ROOT", str(tmp_path))
    for name in ("COSMOS_ENDPOINT", "AzureWebJobsStorage", "KEYVAULT_URL"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path


@pytest.fixture
def app(root):
    with App.from_settings() as app:
        yield app


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def ok(*args: str, input: str | None = None):
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def usage_error(*args: str) -> str:
    """click's own usage error (exit 2, ``Error: …``, no traceback); the error text."""
    result = run(*args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Error: " in result.stderr and "Traceback" not in result.output
    return result.stderr


def as_json(*args: str):
    return json.loads(ok(*args, "--json").stdout)


def refused(*args: str, input: str | None = None) -> str:
    """Exit 2 with one clear ``error:`` line and no traceback; the error text."""
    result = run(*args, input=input)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def apply(root, **flow) -> None:
    entry = {"name": NAME, "cron": "0 0 * * * *", **flow}
    doc = {"id": "acme", "tenantId": "acme", "timezone": "Europe/Amsterdam", "flows": [entry]}
    path = root / "tenants.json"
    path.write_text(json.dumps(doc))
    ok("tenants", "apply", str(path))


AT = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def add_run(app: App, status: str, when: datetime = AT, **fields) -> RunRecord:
    iid = fields.pop("instance", None) or instance_id("acme", NAME, when)
    record = RunRecord(
        instance_id=iid,
        tenant_id="acme",
        flow_name=NAME,
        scheduled_for=format_utc(when),
        status=status,
        started_at=format_utc(when + timedelta(seconds=3)),
        finished_at=format_utc(when + timedelta(seconds=9)) if status != "Running" else None,
        **fields,
    )
    app.runs.record(record)
    return record


def queued_jobs(app: App) -> list[Job]:
    return [Job.from_message(i.body) for i in app.queues.queue(FLOW_JOBS).peek_all()]


# -- version / console -----------------------------------------------------------------------
def test_version(root):
    result = ok("--version")
    assert result.stdout.strip() == f"datasync, version {__version__}"
    assert not (root / "home").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["runs", "show"],
        ["rerun"],
        ["reset"],
        ["backfill"],
        ["schedule", "show"],
        ["queue", "list"],
        ["poison", "delete"],
        ["console"],
    ],
)
def test_help_of_the_new_commands_does_not_touch_storage(root, command):
    result = ok(*command, "--help")
    assert "Usage:" in result.stdout
    assert not (root / "home").exists()


def test_console_says_when_it_is_not_available(root, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasync.console", None)  # import fails
    assert "the console is not available" in refused("console", "--port", "8799")


# -- runs show -------------------------------------------------------------------------------
def test_runs_show_the_run_detail(root, app):
    apply(root)
    add_run(app, "Failed", pages=2, records_in=20, records_out=19, error="HTTPStatusError: 500")
    iid = instance_id("acme", NAME, AT)
    text = ok("runs", "show", iid).stdout
    assert f"run            {iid}" in text
    assert "scheduled for  2026-11-23T13:00:00Z" in text
    assert "lateness       3.000 s" in text
    assert "duration       6.000 s" in text
    assert "status         Failed" in text
    assert "pages          2  (records 20 in, 19 out)" in text
    assert "HTTPStatusError: 500" in text
    data = as_json("runs", "show", iid)
    assert data["instanceId"] == iid and data["status"] == "Failed"
    assert data["latenessSeconds"] == 3.0 and data["durationSeconds"] == 6.0
    assert data["rerunOf"] is None and data["reruns"] == []
    assert data["pageRecords"] == [] and data["morePages"] is False


def test_runs_show_an_unknown_id_is_one_clear_error(root):
    err = refused("runs", "show", "Workflow-acme--contacts-to-erp-20261123T130000Z")
    assert (
        err
        == "error: no run 'Workflow-acme--contacts-to-erp-20261123T130000Z' (see: datasync runs)\n"
    )
    assert "--pages" in usage_error("runs", "show", "x", "--pages", "0")


def test_runs_list_still_works_with_the_group(root, app):
    add_run(app, "Completed")
    rows = as_json("runs", "--status", "Completed")
    assert [r["status"] for r in rows] == ["Completed"]
    refused("runs", "--status", "Bogus")
    refused("runs", "--watch", "--json")


# -- rerun -----------------------------------------------------------------------------------
def test_rerun_queues_a_new_instance_that_keeps_scheduled_for(root, app):
    apply(root)
    failed = add_run(app, "Failed", error="boom")
    result = ok("rerun", failed.instance_id)
    assert f"queued {failed.instance_id}-rerun1: rerun 1 of {failed.instance_id}" in result.stdout
    jobs = [j for j in queued_jobs(app) if j.rerun]
    assert [(j.instance_id, j.scheduled_for, j.rerun) for j in jobs] == [
        (f"{failed.instance_id}-rerun1", AT, 1)
    ]
    again = as_json("rerun", failed.instance_id)  # the first is still queued: N = 2
    assert again["instanceId"] == f"{failed.instance_id}-rerun2"
    assert again["rerunOf"] == failed.instance_id and again["scheduledFor"] == format_utc(AT)

    listed = [j for j in as_json("queue", "list") if j["rerun"]]
    assert [j["rerun"] for j in listed] == [1, 2]


def test_rerun_of_a_rerun_takes_the_next_number_of_the_original(root, app):
    apply(root)
    base = add_run(app, "Failed")
    add_run(app, "Terminated", instance=f"{base.instance_id}-rerun1")
    data = as_json("rerun", f"{base.instance_id}-rerun1")
    assert data["instanceId"] == f"{base.instance_id}-rerun2"
    detail = as_json("runs", "show", base.instance_id)
    assert detail["reruns"] == [f"{base.instance_id}-rerun1"]
    assert as_json("runs", "show", f"{base.instance_id}-rerun1")["rerunOf"] == base.instance_id


@pytest.mark.parametrize(
    "status, why",
    [
        ("Completed", "is Completed: it completed"),
        ("Running", "is Running: it is still running"),
        ("Skipped", "is Skipped: only a Failed or Terminated run can be rerun"),
    ],
)
def test_rerun_refuses_other_statuses_and_says_why(root, app, status, why):
    apply(root)
    record = add_run(app, status)
    assert why in refused("rerun", record.instance_id)
    assert queued_jobs(app) == [] or all(not j.rerun for j in queued_jobs(app))


def test_rerun_of_an_unknown_run(root):
    assert "no run 'Workflow-nope'" in refused("rerun", "Workflow-nope")


# -- reset -----------------------------------------------------------------------------------
def save_checkpoint(app: App, cursor: str) -> None:
    app.runs.reset_checkpoint("acme", NAME, Checkpoint(cursor=cursor, state={"seen": 3}))


def test_reset_asks_first_and_forgets_the_cursor_and_state(root, app):
    apply(root)
    save_checkpoint(app, "c-42")
    result = run("reset", "acme", NAME, input="n\n")
    assert result.exit_code == 2
    assert 'cursor "c-42", state with 1 key' in result.stderr
    assert "reset cancelled: nothing changed" in result.stderr
    assert app.runs.load_checkpoint("acme", NAME).cursor == "c-42"

    ok("reset", "acme", NAME, input="y\n")
    cp = app.runs.load_checkpoint("acme", NAME)
    assert (cp.cursor, cp.state) == (None, {})


def test_reset_sets_a_cursor_with_yes(root, app):
    apply(root)
    save_checkpoint(app, "c-42")
    data = as_json("reset", "acme", NAME, "--cursor", "c-7", "--yes")
    assert data == {"tenantId": "acme", "flowName": NAME, "cursor": "c-7", "state": {}}
    cp = app.runs.load_checkpoint("acme", NAME)
    assert (cp.cursor, cp.state) == ("c-7", {})


def test_reset_is_refused_while_a_run_is_active(root, app):
    apply(root)
    save_checkpoint(app, "c-42")
    active = add_run(app, "Running")
    err = refused("reset", "acme", NAME, "--yes")
    assert f"has an active run ({active.instance_id})" in err
    assert app.runs.load_checkpoint("acme", NAME).cursor == "c-42"
    refused("reset", "acme", "no-such-flow", "--yes")
    refused("reset", "nobody", NAME, "--yes")


# -- backfill --------------------------------------------------------------------------------
def test_backfill_dry_run_lists_and_queues_nothing(root, app):
    apply(root, cron="0 0 */6 * * *", overlap="queue")  # 00, 06, 12, 18 Amsterdam time
    data = as_json(
        "backfill", "acme", NAME, "--from", "2026-11-20T00:00:00+01:00",
        "--to", "2026-11-20T23:59:59+01:00", "--dry-run",
    )  # fmt: skip
    times = [o["scheduledFor"] for o in data["occurrences"]]
    assert times == [
        "2026-11-19T23:00:00Z",
        "2026-11-20T05:00:00Z",
        "2026-11-20T11:00:00Z",
        "2026-11-20T17:00:00Z",
    ]
    assert data["dryRun"] is True and not any(o["queued"] for o in data["occurrences"])
    assert queued_jobs(app) == [] or all(j.scheduled_for > AT for j in queued_jobs(app))


def test_backfill_queues_one_job_per_occurrence_not_the_ones_that_ran(root, app):
    apply(root, cron="0 0 */6 * * *", overlap="queue")
    add_run(app, "Completed", datetime(2026, 11, 20, 5, tzinfo=UTC))
    before = {j.instance_id for j in queued_jobs(app)}
    result = ok(
        "backfill", "acme", NAME, "--from", "2026-11-19T23:00:00Z", "--to", "2026-11-20T17:00:00Z"
    )
    assert "4 occurrence(s) in range; queued 3, 1 already ran" in result.stdout
    assert "has a run (Completed)" in result.stdout
    new = sorted(j.scheduled_for for j in queued_jobs(app) if j.instance_id not in before)
    assert [format_utc(t) for t in new] == [
        "2026-11-19T23:00:00Z",
        "2026-11-20T11:00:00Z",
        "2026-11-20T17:00:00Z",
    ]
    assert all(
        j.revision is None and j.rerun is None for j in queued_jobs(app) if j.scheduled_for in new
    )


def test_backfill_says_what_overlap_skip_does(root, app):
    apply(root, cron="0 0 */6 * * *")
    result = ok(
        "backfill", "acme", NAME, "--from", "2026-11-19T23:00:00Z", "--to", "2026-11-20T17:00:00Z",
        "--dry-run",
    )  # fmt: skip
    assert "note: flow contacts-to-erp has overlap 'skip'" in result.stdout


def test_backfill_refuses_bad_ranges(root):
    apply(root, cron="0 * * * * *")  # every minute
    args = ("backfill", "acme", NAME)
    assert "more than 1000 occurrences" in refused(
        *args, "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z"
    )
    assert "is after --to" in refused(
        *args, "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"
    )
    future = format_utc(datetime.now(UTC) + timedelta(days=2))
    assert "is in the future" in refused(*args, "--from", "2026-01-01T00:00:00Z", "--to", future)
    assert "no UTC offset" in usage_error(
        *args, "--from", "2026-01-01T00:00:00", "--to", "2026-01-01T01:00:00Z"
    )
    assert "--to" in usage_error(*args, "--from", "2026-01-01T00:00:00Z")
    refused(
        "backfill", "acme", "nope", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z"
    )


# -- schedule show ---------------------------------------------------------------------------
def test_schedule_show_next_occurrences_in_both_zones_and_last_runs(root, app):
    apply(root, cron="0 30 9 * * *")  # 09:30 Amsterdam
    add_run(app, "Completed", datetime(2026, 11, 22, 8, 30, tzinfo=UTC))
    add_run(app, "Failed", datetime(2026, 11, 23, 8, 30, tzinfo=UTC))
    data = as_json("schedule", "show", "acme", NAME)
    assert data["timezone"] == "Europe/Amsterdam" and data["cron"] == "0 30 9 * * *"
    assert len(data["upcoming"]) == 10
    for occ in data["upcoming"]:
        assert "T09:30:00+0" in occ["local"]  # +01:00 in winter, +02:00 in summer
        assert occ["due"] == occ["scheduledFor"]  # no jitter
    assert [r["status"] for r in data["recent"]] == ["Failed", "Completed"]
    assert data["recent"][0]["latenessSeconds"] == 3.0

    text = ok("schedule", "show", "acme", NAME).stdout
    assert "next occurrences" in text and "last runs" in text
    assert "Europe/Amsterdam" in text and "3.000 s" in text
    refused("schedule", "show", "acme", "nope")
    refused("schedule", "show", "nobody", NAME)


def test_schedule_show_includes_the_jitter(root):
    apply(root, cron="0 0 * * * *", jitter=600)
    data = as_json("schedule", "show", "acme", NAME)
    offset = data["jitterSeconds"]
    assert 0 <= offset <= 600
    for occ in data["upcoming"]:
        due = datetime.fromisoformat(occ["due"].replace("Z", "+00:00"))
        at = datetime.fromisoformat(occ["scheduledFor"].replace("Z", "+00:00"))
        assert (due - at).total_seconds() == offset


# -- queue list / poison delete --------------------------------------------------------------
def test_queue_list_shows_due_waiting_deferred_and_invalid(root, app):
    q = app.queues.queue(FLOW_JOBS)
    due = q.send(Job("acme", NAME, AT).to_message())
    later = q.send(Job("acme", NAME, AT + timedelta(hours=1)).to_message(), visibility_delay=600)
    deferred = q.send(
        Job("acme", NAME, AT + timedelta(hours=2), note="maxConcurrentRuns 2 reached").to_message(),
        visibility_delay=30,
    )
    bad = q.send("not json")
    rows = {r["id"]: r for r in as_json("queue", "list")}
    assert rows[due]["state"] == "due" and rows[due]["scheduledFor"] == format_utc(AT)
    assert rows[later]["state"] == "waiting" and rows[later]["visibleAt"] > format_utc(AT)
    assert rows[deferred]["state"] == "deferred"
    assert rows[deferred]["note"] == "maxConcurrentRuns 2 reached"
    assert rows[bad]["state"] == "invalid" and rows[bad]["tenantId"] is None
    text = ok("queue", "list").stdout
    assert "deferred" in text and "maxConcurrentRuns 2 reached" in text


def test_trigger_pause_resume_print_the_document_with_json(root):
    apply(root)
    assert as_json("pause", "acme", NAME)["flows"][0]["enabled"] is False
    assert as_json("resume", "acme", NAME)["flows"][0]["enabled"] is True
    assert as_json("trigger", "acme", NAME)["tenantId"] == "acme"


def test_queue_list_empty(root):
    assert ok("queue", "list").stdout == "no jobs waiting on flow-jobs\n"


def test_poison_delete(root, app):
    poison = app.queues.queue(FLOW_JOBS_POISON)
    message = poison.send(Job("acme", NAME, AT).to_message())
    assert ok("poison", "delete", message).stdout == f"deleted poison message {message}\n"
    assert poison.peek_all() == []
    other = poison.send("junk")
    assert as_json("poison", "delete", other)["body"] == "junk"
    replayed = poison.send("junk again")
    assert as_json("poison", "replay", replayed)["id"] == replayed
    assert "no message" in refused("poison", "delete", message)


# -- audit -----------------------------------------------------------------------------------
def test_every_action_is_in_the_audit_log_with_the_os_user(root, app):
    apply(root, overlap="queue")
    failed = add_run(app, "Failed")
    poison = app.queues.queue(FLOW_JOBS_POISON)
    replay_id = poison.send(Job("acme", NAME, AT + timedelta(days=1)).to_message())
    drop_id = poison.send("junk")
    ok("trigger", "acme", NAME)
    ok("pause", "acme", NAME)
    ok("resume", "acme", NAME)
    ok("rerun", failed.instance_id)
    ok("backfill", "acme", NAME, "--from", "2026-11-20T00:00:00Z", "--to", "2026-11-20T01:00:00Z")
    ok("poison", "replay", replay_id)
    ok("poison", "delete", drop_id)
    entries = app.runs.audit_log(limit=50)
    actions = [e.action for e in reversed(entries)]
    assert actions == [
        "trigger",
        "pause",
        "resume",
        "rerun",
        "backfill",
        "poison replay",
        "poison delete",
    ]
    assert {e.actor for e in entries} == {f"os:{getpass.getuser()}"}
    assert all(e.at for e in entries)
    rerun = next(e for e in entries if e.action == "rerun")
    assert rerun.instance_id == failed.instance_id
    assert rerun.detail == f"queued as {failed.instance_id}-rerun1"
    assert entries[-1].action == "trigger" and entries[-1].target == f"acme/{NAME}"
    assert [e.action for e in app.runs.audit_log(tenant="acme", flow=NAME)][-1] == "trigger"
    shown = as_json("runs", "show", failed.instance_id)
    assert [a["action"] for a in shown["audit"]] == ["rerun"]
    assert "rerun by os:" in ok("runs", "show", failed.instance_id).stdout


def test_reset_is_in_the_audit_log(root, app):
    apply(root)
    ok("reset", "acme", NAME, "--yes")
    [entry] = app.runs.audit_log(tenant="acme")
    assert (entry.action, entry.target, entry.detail) == (
        "reset",
        f"acme/{NAME}",
        "cursor and state forgotten",
    )


def test_a_failed_audit_write_does_not_undo_the_action(root, app, monkeypatch, caplog):
    from datasync import operations

    apply(root)

    def broken(entry):
        raise OSError("disk on fire")

    monkeypatch.setattr(app.runs, "audit", broken)
    operations.pause(app, "acme", NAME, actor="aad:ops@example.com")
    assert app.tenants.get("acme").flow(NAME).enabled is False
    assert (
        "audit log: pause acme/contacts-to-erp by aad:ops@example.com not recorded" in caplog.text
    )


# -- the page table --------------------------------------------------------------------------
def write_pages(app: App, iid: str, pages: int) -> None:
    for page in range(1, pages + 1):
        start = format_utc(AT + timedelta(seconds=page))
        app.runs.write_step(
            StepWrite(iid, "acme", page, "pull", start, 0.25, cursor_before=f"c{page - 1}",
                      cursor_after=f"c{page}", records_in=10, knows_cursor_before=True),
            keep_pages=4,
        )  # fmt: skip
        app.runs.write_step(
            StepWrite(iid, "acme", page, "push", start, 0.5,
                      error="HTTP 503" if page == 6 else None, records_out=10),
            keep_pages=4,
        )  # fmt: skip


def page_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("page "))
    assert lines[header].split()[:6] == ["page", "cursor", "before", "→", "after", "in"]
    rows = []
    for line in lines[header + 1 :]:
        if not line[:1].isdigit():
            break
        rows.append(line.split())
    return rows


def test_runs_show_pages_the_page_table_and_summarises_the_folded_pages(root, app):
    apply(root)
    run_ = add_run(app, "Completed", pages=6, records_in=60, records_out=60)
    write_pages(app, run_.instance_id, 6)  # keep 4: pages 3-4 are folded
    text = ok("runs", "show", run_.instance_id, "--pages", "2").stdout
    assert page_rows(text) == [
        ["1", "c0", "→", "c1", "10", "10", "0.250", "s", "0.500", "s"],
        ["2", "c1", "→", "c2", "10", "10", "0.250", "s", "0.500", "s"],
    ]
    assert "pages 3–4 (summarised): 2 pages, 20 records in, 20 out" in text
    assert f"more pages: datasync runs show {run_.instance_id} --after 2" in text

    rest = ok("runs", "show", run_.instance_id, "--after", "2").stdout
    assert [r[:2] for r in page_rows(rest)] == [["3–4", "…"], ["5", "c4"], ["6", "c5"]]
    assert "error: HTTP 503" in rest and "more pages" not in rest
    whole = ok("runs", "show", run_.instance_id).stdout
    assert [r[0] for r in page_rows(whole)] == ["1", "2", "3–4", "5", "6"]

    data = as_json("runs", "show", run_.instance_id, "--after", "2")
    assert [p["page"] for p in data["pageRecords"]] == [5, 6]
    assert data["pageSummary"]["pages"] == 2 and data["morePages"] is False
    push = data["pageRecords"][1]["steps"][-1]
    assert push["step"] == "push" and push["error"] == "HTTP 503" and push["attempts"] == 1
