"""The command line, through click's runner, on a throwaway DATASYNC_HOME and flows dir."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from datasync.app import App
from datasync.cli import cli

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
    nxt = utc(flow["nextRunUtc"])
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
    assert stored["acme"]["flows"][0]["nextRunUtc"] == "2026-11-23T14:00:00Z"
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
    assert run("trigger", "acme", "no-such-flow").exit_code == 2
    assert run("trigger", "nobody", "contacts-to-erp").exit_code == 2


def test_pause_and_resume_a_flow(root):
    apply(root, tenant_doc(nextRunUtc="2020-01-01T00:00:00Z"))
    result = run("pause", "acme", "contacts-to-erp")
    assert result.exit_code == 0, result.output
    flow = listed("tenants", "list")[0]["flows"][0]
    assert flow["enabled"] is False

    before = datetime.now(UTC)
    assert run("resume", "acme", "contacts-to-erp").exit_code == 0
    flow = listed("tenants", "list")[0]["flows"][0]
    assert flow["enabled"] is True
    assert before < utc(flow["nextRunUtc"]) <= before + timedelta(hours=1, seconds=1)
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
