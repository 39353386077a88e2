"""Bad documents and bad flow files are reported by name and field; nothing good is
overwritten, and everything else still runs."""

from __future__ import annotations

import copy
import json

import pytest

from tests.faults.harness import gated_flow, setup_gated, tenant_doc

pytestmark = pytest.mark.faults


def _set(path: str, value):
    def change(doc):
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return change


_DELETE = object()

INVALID = [  # (what is wrong, change to the acme document, field the message must name)
    ("five-field cron", _set("flows.0.cron", "0 * * * *"), "flows[0].cron"),
    ("out-of-range cron", _set("flows.0.cron", "61 * * * * *"), "flows[0].cron"),
    ("unknown timezone", _set("timezone", "Mars/Olympus"), "timezone"),
    ("unknown flow", _set("flows.0.name", "no-such-flow"), "flows[0].name"),
    ("bad flow name", _set("flows.0.name", "Bad_Name"), "flows[0].name"),
    ("yes for true", _set("flows.0.enabled", "yes"), "flows[0].enabled"),
    ("number for bool", _set("paused", 1), "paused"),
    ("number for string", _set("name", 42), "name"),
    (
        "time without offset",
        _set("flows.0.nextRunUtc", "2026-01-01T00:00:00"),
        "flows[0].nextRunUtc",
    ),
    ("not a time", _set("flows.0.nextRunUtc", "tomorrow"), "flows[0].nextRunUtc"),
    ("unknown overlap", _set("flows.0.overlap", "sometimes"), "flows[0].overlap"),
    ("zero concurrency", _set("maxConcurrentRuns", 0), "maxConcurrentRuns"),
    ("string concurrency", _set("maxConcurrentRuns", "2"), "maxConcurrentRuns"),
    ("config not an object", _set("flows.0.config", "x"), "flows[0].config"),
    ("flows not a list", _set("flows", {"name": "gated"}), "flows"),
    ("missing cron", _set("flows.0.cron", _DELETE), "flows[0].cron"),
    ("tenantId differs from id", _set("tenantId", "other"), "tenantId"),
    ("wrong type", _set("type", "Customer"), "type"),
    # unknown keys are errors, with the closest known key, never silently dropped
    ("typo in a tenant key", _set("pasued", True), "pasued: unknown key; did you mean 'paused'?"),
    (
        "look-alike letters in a flow key",
        _set("flows.0.cr\u043e\u043d", "0 0 * * * *"),
        "flows[0].cr\u043e\u043d: unknown key; did you mean 'cron'?",
    ),
    ("unknown flow option", _set("flows.0.retries", 3), "flows[0].retries: unknown key (known"),
    (
        "lone surrogate in a name",
        _set("name", "Acme \ud800"),
        "name: text is not valid Unicode",
    ),
    (
        "config nested too deeply",
        _set("flows.0.config", json.loads('{"a":' * 40 + "1" + "}" * 40)),
        "flows[0].config.a.a.a",
    ),
]


def test_every_invalid_document_is_rejected_and_nothing_is_overwritten(project, apis):
    acme = setup_gated(project, apis, "acme", 5)
    beta = setup_gated(project, apis, "beta", 5)
    before = project.cli("tenants", "list", "--json").stdout
    good_acme = tenant_doc("acme", acme)
    changed_beta = tenant_doc("beta", {**beta, "enabled": False}, name="Changed")
    for what, change, field in INVALID:
        doc = copy.deepcopy(good_acme)
        doc["name"] = "Overwritten"
        change(doc)
        proc = project.apply(changed_beta, doc, check=2)
        assert f"tenant acme: {field}" in proc.stderr, (what, proc.stderr)
        assert "Traceback" not in proc.stderr
    # not an id at all, the same tenant twice, not JSON, not a document
    proc = project.apply(
        changed_beta, {**good_acme, "id": "acme--x", "tenantId": "acme--x"}, check=2
    )
    assert "acme--x" in proc.stderr and "id" in proc.stderr
    proc = project.apply(good_acme, good_acme, check=2)
    assert "tenant acme: id: duplicate tenant id" in proc.stderr
    (project.tmp / "bad.json").write_text('{"id": "acme",')
    proc = project.cli("tenants", "apply", str(project.tmp / "bad.json"), check=2)
    assert "invalid JSON" in proc.stderr
    proc = project.apply("acme", check=2)  # type: ignore[arg-type]
    assert "expected a JSON object" in proc.stderr
    assert project.cli("tenants", "list", "--json").stdout == before


def test_documents_broken_after_their_jobs_were_queued_never_run_and_the_others_do(project, apis):
    """``tenants apply`` queues each tenant's due job at once; documents broken in the store
    after that (behind the CLI's back) must not run: each job is recorded Superseded with
    the validation message, nothing is poisoned, and the good tenant still runs."""
    setup_gated(project, apis, "good", 25)
    for tid in ("badcron", "badtz", "badfield", "badkey"):
        setup_gated(project, apis, tid, 5)
    setup_gated(project, apis, "noflow", 5, flow="other")
    # someone edits the store behind the CLI's back
    project.sql(
        "datasync.db", "UPDATE flow_schedule SET cron = 'every minute' WHERE tenant_id = 'badcron'"
    )
    project.sql(
        "datasync.db",
        "UPDATE flow_schedule SET timezone = 'Mars/Olympus' WHERE tenant_id = 'badtz'",
    )
    [(raw,)] = project.sql("datasync.db", "SELECT doc FROM tenants WHERE id = 'badfield'")
    doc = json.loads(raw)
    doc["flows"][0]["enabled"] = "yes"
    project.sql("datasync.db", "UPDATE tenants SET doc = ? WHERE id = 'badfield'", json.dumps(doc))
    [(raw,)] = project.sql("datasync.db", "SELECT doc FROM tenants WHERE id = 'badkey'")
    doc = json.loads(raw)
    doc["pasued"] = True  # meant to pause it: it must not run
    project.sql("datasync.db", "UPDATE tenants SET doc = ? WHERE id = 'badkey'", json.dumps(doc))
    (project.flows / "other.py").unlink()  # its flow file is gone

    runtime = project.run_once()  # exit 0: nothing poisoned
    log = runtime.stderr()
    assert "Traceback" not in log
    runs = {r["tenantId"]: r for r in project.runs()}
    assert sorted(runs) == ["badcron", "badfield", "badkey", "badtz", "good", "noflow"]
    assert runs["good"]["status"] == "Completed"
    assert apis.stats("good")["count"] == 25
    expected = {
        "badcron": "tenant badcron: flows[0].cron",
        "badtz": "tenant badtz: timezone",
        "badfield": "tenant badfield: flows[0].enabled",
        "badkey": "tenant badkey: pasued: unknown key; did you mean 'paused'?",
        "noflow": "tenant noflow: flows[0].name: unknown flow 'other'",
    }
    for tid, message in expected.items():
        assert runs[tid]["status"] == "Superseded", runs[tid]
        assert message in runs[tid]["error"], runs[tid]
        assert message in log, (tid, log[-3000:])
        assert apis.stats(tid)["count"] == 0
        shown = project.cli("runs", "show", runs[tid]["instanceId"], check=None)
        assert message in shown.stdout and "Traceback" not in shown.stderr
    assert project.poison() == []
    listed = project.cli("tenants", "list", "--json", check=None)  # the others still list
    assert "Traceback" not in listed.stderr


BROKEN_FILES = {
    "syntax_error.py": "from datasync import flow\n\n@flow('syntax')\nclass S(:\n    pass\n",
    "import_error.py": "import datasync_no_such_module\n",
    "twin_copy.py": gated_flow("twin"),
}


def test_broken_and_duplicate_flow_files_do_not_stop_the_other_flows(project, apis):
    setup_gated(project, apis, "acme", 25)
    setup_gated(project, apis, "twins", 5, flow="twin")  # applied while twin was unique
    for name, text in BROKEN_FILES.items():
        project.write_flow(name, text)
    listed = project.cli("flows", "list", "--json", check=2)
    assert {f["name"] for f in json.loads(listed.stdout)} == {"gated"}
    for name in ("syntax_error.py", "import_error.py", "twin.py", "twin_copy.py"):
        assert name in listed.stderr, (name, listed.stderr)
    assert "datasync_no_such_module" in listed.stderr

    for tid in ("acme", "twins"):  # the scheduler meets the broken files
        project.due_for_the_scheduler(tid)
    runtime = project.run_once()
    assert [(r["tenantId"], r["status"]) for r in project.runs()] == [("acme", "Completed")]
    assert apis.stats("acme")["count"] == 25 and apis.stats("twins")["count"] == 0
    assert project.poison() == []  # not queued: the tick skipped it without moving it on
    log = runtime.stderr()
    assert "syntax_error.py" in log and "import_error.py" in log and "twin" in log
    assert "Traceback" not in log

    (project.flows / "twin_copy.py").unlink()  # fixed: the skipped flow runs
    project.run_once()
    assert apis.stats("twins")["count"] == 5
