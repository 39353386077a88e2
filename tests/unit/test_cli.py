"""The command line, through click's runner, on a throwaway DATASYNC_HOME and flows dir."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from datasync.app import App
from datasync.cli import cli
from datasync.models import Job

FLOW = """
from datasync import Page, flow


@flow("contacts-to-erp")
class ContactsToErp:
    def pull(self, ctx, cursor):
        return Page(records=[], cursor=None, has_more=False)

    def push(self, ctx, records):
        pass
"""

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


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


def store() -> App:
    """An app over the same home, to look at what a command wrote."""
    return App.from_settings()


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def tenant_doc(tenant_id: str = "acme", tz: str = "Europe/Amsterdam", **flow) -> dict:
    entry = {
        "name": "contacts-to-erp",
        "enabled": True,
        "cron": "0 0 * * * *",
        "config": {"source_url": "http://127.0.0.1:1"},
    }
    entry.update(flow)
    return {
        "id": tenant_id,
        "type": "Tenant",
        "tenantId": tenant_id,
        "name": "Acme Ltd",
        "timezone": tz,
        "paused": False,
        "flows": [entry],
    }


def apply(root, docs) -> None:
    path = root / "tenants.json"
    path.write_text(json.dumps(docs))
    result = run("tenants", "apply", str(path))
    assert result.exit_code == 0, result.output


def listed(*args: str):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def utc(text: str) -> datetime:
    assert TIME.match(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def queued(tenant: str = "acme", flow: str = "contacts-to-erp") -> list[datetime]:
    """scheduledFor of the jobs on flow-jobs for one tenant+flow, in order."""
    with store() as app:
        jobs = [Job.from_message(m.body) for m in app.queues.queue("flow-jobs").peek_all()]
    return sorted(j.scheduled_for for j in jobs if (j.tenant_id, j.flow_name) == (tenant, flow))


def first_run(
    after: datetime | None = None, tenant: str = "acme", flow: str = "contacts-to-erp"
) -> datetime:
    """When the flow runs next: its first queued job (after ``after``: the look-ahead window
    that apply, trigger and resume enqueue at once) or, with none queued, its stored
    nextRunUtc."""
    doc = next(d for d in listed("tenants", "list") if d["tenantId"] == tenant)
    entry = next(f for f in doc["flows"] if f["name"] == flow)
    stored = utc(entry["nextRunUtc"])
    jobs = [t for t in queued(tenant, flow) if after is None or t > after]
    if jobs:
        assert stored > jobs[-1]  # nextRunUtc moved past what is enqueued
        return jobs[0]
    return stored


# -- tenants ----------------------------------------------------------------------------------
def test_help_does_not_touch_storage(root):
    for args in (["--help"], ["tenants", "--help"], ["secrets", "set", "--help"]):
        result = run(*args)
        assert result.exit_code == 0, result.output
    assert not (root / "home").exists()


def test_apply_fills_next_run_and_list_shows_it(root):
    before = datetime.now(UTC)
    apply(root, tenant_doc())
    docs = listed("tenants", "list")
    assert [d["tenantId"] for d in docs] == ["acme"]
    flow = docs[0]["flows"][0]
    nxt = first_run()
    assert before < nxt <= before + timedelta(hours=1, seconds=1)
    assert (nxt.minute, nxt.second) == (0, 0)
    assert flow["config"] == {"source_url": "http://127.0.0.1:1"}

    human = run("tenants", "list")
    assert human.exit_code == 0
    assert "acme" in human.output and flow["nextRunUtc"] in human.output
    assert "Europe/Amsterdam" in human.output


def test_apply_keeps_a_given_next_run_and_reads_stdin(root):
    docs = [tenant_doc(nextRunUtc="2026-11-23T15:00:00+01:00"), tenant_doc("globex", "UTC")]
    result = run("tenants", "apply", "-", input=json.dumps(docs))
    assert result.exit_code == 0, result.output
    stored = {d["tenantId"]: d for d in listed("tenants", "list")}
    assert first_run() == utc("2026-11-23T14:00:00Z")  # past: queued at once
    assert set(stored) == {"acme", "globex"}


@pytest.mark.parametrize(
    "doc, field",
    [
        (tenant_doc(cron="0 0 * * *"), "flows[0].cron"),
        (tenant_doc(cron="61 * * * * *"), "flows[0].cron"),
        (tenant_doc(tz="Mars/Olympus_Mons"), "timezone"),
        (tenant_doc(enabled="yes"), "flows[0].enabled"),
        (tenant_doc(name="no-such-flow"), "flows[0].name"),
    ],
)
def test_apply_invalid_names_tenant_and_field_and_writes_nothing(root, doc, field):
    path = root / "tenants.json"
    path.write_text(json.dumps([tenant_doc("globex", "UTC"), doc]))  # one good, one bad
    result = run("tenants", "apply", str(path))
    assert result.exit_code == 2, result.output
    assert "tenant acme" in result.stderr
    assert field in result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    assert listed("tenants", "list") == []


def test_apply_invalid_json(root):
    path = root / "bad.json"
    path.write_text('{\n  "id": "acme",\n  oops\n}\n')
    result = run("tenants", "apply", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: invalid JSON: line 3 column 3: ")
    assert "Traceback" not in result.output
    assert run("tenants", "apply", "-", input="[").exit_code == 2
    assert run("tenants", "apply", str(root / "missing.json")).exit_code == 2


def test_show(root):
    apply(root, tenant_doc())
    result = run("tenants", "show", "acme", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["tenantId"] == "acme"
    human = run("tenants", "show", "acme")
    assert human.exit_code == 0 and "contacts-to-erp" in human.output

    missing = run("tenants", "show", "nobody")
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error: ") and "nobody" in missing.stderr


# -- trigger / pause / resume --------------------------------------------------------------
def test_trigger_makes_the_flow_due_now_and_says_when_paused(root):
    apply(root, tenant_doc(cron="0 0 0 1 1 *"))  # yearly: far from now
    assert run("pause", "acme").exit_code == 0
    result = run("trigger", "acme", "contacts-to-erp")
    assert result.exit_code == 0, result.output
    assert "tenant acme is paused" in result.output
    flow = listed("tenants", "list")[0]["flows"][0]
    assert abs(utc(flow["nextRunUtc"]) - datetime.now(UTC)) < timedelta(seconds=5)

    assert run("resume", "acme").exit_code == 0
    again = run("trigger", "acme", "contacts-to-erp")
    assert again.exit_code == 0 and "paused" not in again.output
    assert "due now" in again.output
    assert abs(queued()[0] - datetime.now(UTC)) < timedelta(seconds=5)  # on the queue at once
    assert run("trigger", "acme", "no-such-flow").exit_code == 2
    assert run("trigger", "nobody", "contacts-to-erp").exit_code == 2


def test_pause_and_resume_a_flow(root):
    apply(root, tenant_doc(nextRunUtc="2020-01-01T00:00:00Z"))
    result = run("pause", "acme", "contacts-to-erp")
    assert result.exit_code == 0, result.output
    flow = listed("tenants", "list")[0]["flows"][0]
    assert flow["enabled"] is False

    before = datetime.now(UTC)
    resumed = run("resume", "acme", "contacts-to-erp")
    assert resumed.exit_code == 0
    flow = listed("tenants", "list")[0]["flows"][0]
    assert flow["enabled"] is True
    nxt = first_run(after=before)
    assert before < nxt <= before + timedelta(hours=1, seconds=1)
    assert f"next run {nxt.strftime('%Y-%m-%dT%H:%M:%SZ')}" in resumed.output
    assert run("pause", "acme", "no-such-flow").exit_code == 2


def test_pause_and_resume_a_tenant(root):
    apply(root, tenant_doc(nextRunUtc="2020-01-01T00:00:00Z"))
    assert run("pause", "acme").exit_code == 0
    doc = listed("tenants", "list")[0]
    assert doc["paused"] is True and doc["flows"][0]["enabled"] is True

    before = datetime.now(UTC)
    assert run("resume", "acme").exit_code == 0
    doc = listed("tenants", "list")[0]
    assert doc["paused"] is False
    assert utc(doc["flows"][0]["nextRunUtc"]) > before
    assert run("pause", "nobody").exit_code == 2


# -- secrets -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stdin, stored",
    [
        ("s3cr3t-value\n", "s3cr3t-value"),
        ("s3cr3t-value\r\n", "s3cr3t-value"),
        ("s3cr3t-value", "s3cr3t-value"),
        ("s3cr3t-value\n\n", "s3cr3t-value\n"),
    ],
)
def test_secrets_set_reads_stdin_and_never_echoes(root, stdin, stored):
    apply(root, tenant_doc())
    result = run("secrets", "set", "acme", "crm", "token", input=stdin)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "stored secret for tenant acme, system crm, key token"
    assert "s3cr3t" not in result.output
    assert store().secrets.get("acme", "crm", "token") == stored


def test_secrets_set_rejects_unknown_tenant_bad_names_and_empty_values(root):
    from datasync.exceptions import SecretNotFound

    apply(root, tenant_doc())
    for args, stdin in [
        (("nobody", "crm", "token"), "s3cr3t-value\n"),
        (("acme", "crm--x", "token"), "s3cr3t-value\n"),
        (("acme", "crm", "token"), "\n"),
        (("acme", "crm", "token"), ""),
    ]:
        result = run("secrets", "set", *args, input=stdin)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ")
        assert "s3cr3t" not in result.output
    with pytest.raises(SecretNotFound):
        store().secrets.get("acme", "crm", "token")


# -- flows ---------------------------------------------------------------------------------
def test_flows_list(root):
    assert listed("flows", "list") == [{"name": "contacts-to-erp", "file": "flows/contacts.py"}]
    human = run("flows", "list")
    assert human.exit_code == 0 and "contacts-to-erp" in human.output


def test_flows_list_names_a_broken_file_and_still_lists_the_good_ones(root):
    (root / "flows" / "broken.py").write_text("raise RuntimeError('boom')\n")
    result = run("flows", "list", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == [{"name": "contacts-to-erp", "file": "flows/contacts.py"}]
    assert "broken.py" in result.stderr and "contacts.py" not in result.stderr
    assert "Traceback" not in result.output


# -- runs ----------------------------------------------------------------------------------
def test_runs(root):
    assert listed("runs") == []
    assert run("runs").exit_code == 0
    bad = run("runs", "--status", "Bogus")
    assert bad.exit_code == 2 and "Bogus" in bad.stderr
    assert run("runs", "--status", "Failed", "--json").exit_code == 0
    assert run("runs", "--limit", "0").exit_code == 2


# -- queues --------------------------------------------------------------------------------
def test_queue_put_and_poison_replay(root):
    result = run("queue", "put", "not even json")
    assert result.exit_code == 0, result.output
    jobs = store().queues.queue("flow-jobs")
    assert [(m.id, m.body) for m in jobs.peek_all()] == [(result.stdout.strip(), "not even json")]

    assert listed("poison", "list") == []
    body = '{"tenantId": "acme", "flowName": "contacts-to-erp", "scheduledFor": "x"}'
    poison_id = store().queues.queue("flow-jobs-poison").send(body)
    items = listed("poison", "list")
    assert len(items) == 1
    assert items[0]["id"] == poison_id and items[0]["body"] == body
    assert isinstance(items[0]["dequeueCount"], int)
    assert TIME.match(items[0]["insertedAt"])
    assert poison_id in run("poison", "list").output

    replay = run("poison", "replay", poison_id)
    assert replay.exit_code == 0, replay.output
    assert listed("poison", "list") == []
    assert [m.body for m in jobs.peek_all()] == ["not even json", body]
    assert run("poison", "replay", poison_id).exit_code == 2


def test_home_option_sets_the_data_dir(root):
    other = root / "other-home"
    result = run("--home", str(other), "tenants", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert (other / "datasync.db").exists()


# -- apply keeps what the CLI manages ------------------------------------------------------
def bare_doc(**flow) -> dict:
    """A tenant document that leaves out what the CLI manages (paused, enabled, nextRunUtc)."""
    doc = tenant_doc(**flow)
    doc.pop("paused")
    doc["flows"][0].pop("enabled")
    return doc


def apply_out(root, docs, *args: str):
    path = root / "tenants.json"
    path.write_text(json.dumps(docs))
    result = run("tenants", "apply", str(path), *args)
    assert result.exit_code == 0, result.output
    return result


def test_apply_keeps_a_paused_tenant_and_a_disabled_flow(root):
    assert "acme: added" in apply_out(root, bare_doc()).stdout
    assert run("pause", "acme").exit_code == 0
    assert run("pause", "acme", "contacts-to-erp").exit_code == 0
    out = apply_out(root, bare_doc()).stdout
    assert "acme: unchanged; kept paused, flows[contacts-to-erp].enabled (not in the file)" in out
    doc = listed("tenants", "list")[0]
    assert doc["paused"] is True and doc["flows"][0]["enabled"] is False

    apply_out(root, tenant_doc())  # says paused: false, enabled: true
    doc = listed("tenants", "list")[0]
    assert doc["paused"] is False and doc["flows"][0]["enabled"] is True


def test_apply_keeps_a_pending_trigger_even_when_the_cron_changes(root):
    apply_out(root, bare_doc(cron="0 0 0 1 1 *"))
    assert run("pause", "acme").exit_code == 0  # a paused tenant's trigger stays pending
    assert run("trigger", "acme", "contacts-to-erp").exit_code == 0
    due = listed("tenants", "list")[0]["flows"][0]["nextRunUtc"]
    out = apply_out(root, bare_doc(cron="0 30 0 1 1 *")).stdout
    assert "acme: updated flows[contacts-to-erp].cron" in out
    assert "kept paused, flows[contacts-to-erp].nextRunUtc (not in the file)" in out
    assert listed("tenants", "list")[0]["flows"][0]["nextRunUtc"] == due


def test_apply_keeps_a_stored_next_run_while_cron_and_timezone_stay(root):
    apply_out(root, tenant_doc(nextRunUtc="2030-01-01T05:00:00Z"))
    out = apply_out(root, bare_doc()).stdout
    assert "acme: unchanged" in out
    assert listed("tenants", "list")[0]["flows"][0]["nextRunUtc"] == "2030-01-01T05:00:00Z"

    before = datetime.now(UTC)
    out = apply_out(root, bare_doc(cron="0 15 * * * *")).stdout
    assert "flows[contacts-to-erp].cron, flows[contacts-to-erp].nextRunUtc" in out
    nxt = first_run(after=before)
    assert before < nxt <= before + timedelta(hours=1, seconds=1) and nxt.minute == 15

    apply_out(root, tenant_doc(cron="0 15 * * * *", nextRunUtc="2030-01-01T05:15:00Z"))
    doc = bare_doc(cron="0 15 * * * *")
    doc["timezone"] = "Asia/Kolkata"  # a half-hour zone: the next :15 moves
    out = apply_out(root, doc).stdout
    assert "acme: updated timezone, flows[contacts-to-erp].nextRunUtc" in out
    assert listed("tenants", "list")[0]["flows"][0]["nextRunUtc"] != "2030-01-01T05:15:00Z"


def test_apply_says_what_changed_and_json_is_the_stored_documents(root):
    globex = tenant_doc("globex", "UTC")
    apply_out(root, [tenant_doc(), globex])
    changed = tenant_doc()
    changed["name"] = "Acme B.V."
    result = apply_out(root, [changed, globex], "--json")
    assert json.loads(result.stdout) == listed("tenants", "list")
    assert "acme: updated name" in result.stderr and "globex: unchanged" in result.stderr
    assert "applied 2 tenants" in result.stderr


# -- terminate -----------------------------------------------------------------------------
@pytest.fixture
def engine(root):
    """The embedded Durable engine on the CLI's home, with an orchestration that waits."""
    import azure.durable_functions as df

    from datasync.runtime.durable import DurableEngine

    bp = df.Blueprint()

    @bp.orchestration_trigger(context_name="context", orchestration="sync_flow")
    def waits(context):
        return (yield context.wait_for_external_event("go"))

    fn = next(b._function for b in bp._function_builders)
    (root / "home").mkdir(exist_ok=True)
    durable = DurableEngine(
        root / "home" / "durable.db",
        orchestrators={"sync_flow": fn.get_user_function()},
        activities={},
    )
    yield durable
    durable.close()


def running_run(engine, when: str = "20260101T000000Z", *, start: bool = True):
    from datasync.models import RunRecord

    record = RunRecord(
        instance_id=f"Workflow-acme--contacts-to-erp-{when}",
        tenant_id="acme",
        flow_name="contacts-to-erp",
        scheduled_for="2026-01-01T00:00:00Z",
        status="Running" if start else "Pending",
        started_at="2026-01-01T00:00:01Z" if start else None,
    )
    with store() as app:
        app.runs.record(record)
    if start:
        engine.start_new("sync_flow", record.instance_id, None)
        while engine.run_orchestration_once():
            pass
        assert engine.get_status(record.instance_id).runtime_status == "Running"
    return record.instance_id


def test_terminate_a_flows_running_run(root, engine):
    apply(root, tenant_doc())
    instance = running_run(engine)
    result = run("terminate", "acme", "contacts-to-erp", "--reason", "stuck on page 3")
    assert result.exit_code == 0, result.output
    assert f"{instance}: terminated; recorded Terminated" in result.stdout
    assert engine.get_status(instance).runtime_status == "Terminated"
    [rec] = listed("runs")
    assert rec["status"] == "Terminated" and rec["error"] == "terminated: stuck on page 3"
    assert TIME.match(rec["finishedAt"])
    again = run("terminate", "acme", "contacts-to-erp")
    assert again.exit_code == 2 and "no Pending or Running run" in again.stderr


def test_terminate_an_instance_with_json(root, engine):
    apply(root, tenant_doc())
    first = running_run(engine)
    second = running_run(engine, "20260101T010000Z")
    result = run("terminate", "acme", second, "--json")
    assert result.exit_code == 0, result.output
    [rec] = json.loads(result.stdout)
    assert rec["instanceId"] == second and rec["status"] == "Terminated"
    assert rec["error"] == "terminated: stopped with datasync terminate"
    assert engine.get_status(first).runtime_status == "Running"  # only that one
    assert {r["instanceId"]: r["status"] for r in listed("runs")} == {
        first: "Running",
        second: "Terminated",
    }


def test_terminate_a_run_that_never_started_or_had_ended(root, engine):
    apply(root, tenant_doc())
    pending = running_run(engine, start=False)
    result = run("terminate", "acme", pending)
    assert result.exit_code == 0, result.output
    assert "had no orchestration instance; recorded Terminated" in result.stdout

    ended = running_run(engine, "20260101T010000Z")
    engine.terminate(ended, "by the Durable API")  # behind the app's back
    result = run("terminate", "acme", "contacts-to-erp")
    assert result.exit_code == 0, result.output
    assert "had already ended; recorded Terminated" in result.stdout
    assert store().runs.get(ended).error == "terminated: by the Durable API"


@pytest.mark.parametrize(
    "args, words",
    [
        (("nobody", "contacts-to-erp"), "nobody"),
        (("acme", "no-such-flow"), "no-such-flow"),
        (("acme", "Workflow-acme--contacts-to-erp-20990101T000000Z"), "has no run"),
        (("globex", "Workflow-acme--contacts-to-erp-20260101T000000Z"), "has no run"),
        (("acme", "Workflow-acme--contacts-to-erp-20260101T000000Z"), "is Completed"),
        (("bad--id", "contacts-to-erp"), "bad--id"),
    ],
)
def test_terminate_rejects_unknown_and_finished_runs(root, engine, args, words):
    apply(root, [tenant_doc(), tenant_doc("globex", "UTC")])
    instance = running_run(engine)
    with store() as app:
        app.runs.finish(instance, "Completed")
    result = run("terminate", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and words in result.stderr
    assert "Traceback" not in result.output
    assert store().runs.get(instance).status == "Completed"
