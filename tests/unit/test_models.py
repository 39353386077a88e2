from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from datasync.exceptions import InvalidDocument, NotFound, ValidationError
from datasync.models import (
    RUN_STATUSES,
    FlowEntry,
    InvalidDocuments,
    Job,
    RunRecord,
    Tenant,
    parse_tenant,
    parse_tenants,
)

UTC = UTC

DOC = {
    "id": "acme",
    "type": "Tenant",
    "tenantId": "acme",
    "name": "Acme Ltd",
    "timezone": "Europe/Amsterdam",
    "paused": False,
    "flows": [
        {
            "name": "contacts-to-erp",
            "enabled": True,
            "cron": "0 0 * * * *",
            "nextRunUtc": "2026-11-23T14:00:00Z",
            "config": {"source_url": "http://x"},
        }
    ],
}


def doc(**changes):
    d = copy.deepcopy(DOC)
    d.update(changes)
    return d


def flow_doc(**changes):
    d = doc()
    d["flows"][0].update(changes)
    return d


def problems(obj, **kw) -> list[str]:
    with pytest.raises(InvalidDocument) as exc:
        parse_tenant(obj, **kw)
    text = str(exc.value)
    assert "pydantic" not in text and "For further information" not in text
    assert "Input should be" not in text
    return text.splitlines()


def test_parse_design_example():
    t = parse_tenant(DOC)
    assert (t.id, t.tenant_id, t.name, t.timezone, t.paused) == (
        "acme",
        "acme",
        "Acme Ltd",
        "Europe/Amsterdam",
        False,
    )
    assert t.max_concurrent_runs == 2
    entry = t.flow("contacts-to-erp")
    assert entry.enabled and entry.cron == "0 0 * * * *" and entry.overlap == "skip"
    assert entry.next_run_utc == datetime(2026, 11, 23, 14, tzinfo=UTC)
    assert entry.config == {"source_url": "http://x"}


def test_to_doc_round_trips():
    d = doc()
    d["flows"].append({"name": "second", "cron": "0 30 2 * * *"})
    out = parse_tenant(d).to_doc()
    assert out["flows"][0]["nextRunUtc"] == "2026-11-23T14:00:00Z"
    assert "nextRunUtc" not in out["flows"][1]  # unset: omitted, not null
    assert out["maxConcurrentRuns"] == 2 and out["flows"][1]["overlap"] == "skip"
    assert json.loads(json.dumps(out)) == out
    assert parse_tenant(out).to_doc() == out


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"pasued": True}, "tenant acme: pasued: unknown key; did you mean 'paused'?"),
        (
            {"maxConcurrentRun": 3},
            "tenant acme: maxConcurrentRun: unknown key; did you mean 'maxConcurrentRuns'?",
        ),
        ({"timeZone": "UTC"}, "tenant acme: timeZone: unknown key; did you mean 'timezone'?"),
        (
            {"owner": {"team": "sync"}},
            (
                "tenant acme: owner: unknown key (known keys: flows, id, maxConcurrentRuns, "
                "name, paused, tenantId, timezone, type)"
            ),
        ),
    ],
)
def test_unknown_tenant_keys_are_errors_with_a_suggestion(change, line):
    assert problems(doc(**change)) == [line]


@pytest.mark.parametrize(
    ("key", "line"),
    [
        (
            "cr\u043e\u043d",
            "tenant acme: flows[0].cr\u043e\u043d: unknown key; did you mean 'cron'?",
        ),
        ("nextrunutc", "tenant acme: flows[0].nextrunutc: unknown key; did you mean 'nextRunUtc'?"),
        ("enabeld", "tenant acme: flows[0].enabeld: unknown key; did you mean 'enabled'?"),
        ("Config", "tenant acme: flows[0].Config: unknown key; did you mean 'config'?"),
        ("n\u00e4me", "tenant acme: flows[0].n\u00e4me: unknown key; did you mean 'name'?"),
    ],
)
def test_unknown_flow_keys_are_errors_with_a_suggestion(key, line):
    assert problems(flow_doc(**{key: "x"})) == [line]


def test_unknown_keys_are_reported_with_every_other_problem():
    d = flow_doc(cron="0 * * * *", note="keep me")
    d["flows"].append({"name": "second", "cron": "0 30 2 * * *", "overlapp": "queue"})
    lines = problems(d)
    assert lines[0].startswith("tenant acme: flows[0].cron: cron '0 * * * *' has 5 fields")
    assert lines[1].startswith(
        "tenant acme: flows[0].note: unknown key (known keys: catchUp, catchUpWindow, config, "
    )
    assert lines[2] == "tenant acme: flows[1].overlapp: unknown key; did you mean 'overlap'?"
    assert len(lines) == 3


def test_config_keeps_any_keys():
    t = parse_tenant(flow_doc(config={"anything": {"nested": [1, 2]}, "Pasued": True}))
    assert t.flows[0].config == {"anything": {"nested": [1, 2]}, "Pasued": True}


def test_text_no_store_can_keep_is_reported_by_path():
    lines = problems(doc(name="Acme \ud800"))
    assert lines == ["tenant acme: name: text is not valid Unicode (a lone surrogate)"]
    lines = problems(flow_doc(config={"bad\udcff\n": 1}))
    assert lines == ["tenant acme: flows[0].config.bad\\udcff\\u000a: key is not valid Unicode"]


def test_documents_nested_too_deeply_are_refused_without_recursion_errors():
    deep: dict = {}
    node = deep
    for _ in range(100_000):
        node["a"] = {}
        node = node["a"]
    [line] = problems(flow_doc(config=deep))
    assert line.startswith("tenant acme: flows[0].config.a.a.")
    assert line.endswith(": nested more than 32 levels deep")
    assert parse_tenant(flow_doc(config={"a": {"b": {"c": [[{"d": 1}]]}}}))


def test_next_run_is_normalised_to_utc_seconds():
    t = parse_tenant(flow_doc(nextRunUtc="2026-11-23T15:00:00.750+01:00"))
    assert t.flows[0].next_run_utc == datetime(2026, 11, 23, 14, tzinfo=UTC)
    assert t.to_doc()["flows"][0]["nextRunUtc"] == "2026-11-23T14:00:00Z"
    entry = FlowEntry(
        name="f",
        cron="0 0 * * * *",
        next_run_utc=datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    )
    assert entry.next_run_utc == datetime(2026, 1, 1, tzinfo=UTC)


def test_assignment_keeps_times_normalised():
    t = parse_tenant(DOC)
    t.flow("contacts-to-erp").next_run_utc = datetime(
        2026, 12, 1, 10, 0, 0, 123, tzinfo=timezone(timedelta(hours=2))
    )
    assert t.to_doc()["flows"][0]["nextRunUtc"] == "2026-12-01T08:00:00Z"


def test_ids_fill_each_other():
    d = doc()
    del d["tenantId"]
    assert parse_tenant(d).tenant_id == "acme"
    d = doc()
    del d["id"]
    t = parse_tenant(d)
    assert t.id == "acme" and t.to_doc()["id"] == "acme"
    assert problems(doc(tenantId="other")) == [
        "tenant acme: tenantId: must equal id ('acme'), got 'other'"
    ]


def test_defaults():
    t = parse_tenant({"id": "beta"})
    assert (t.type, t.name, t.timezone, t.paused, t.max_concurrent_runs, t.flows) == (
        "Tenant",
        "",
        "UTC",
        False,
        2,
        [],
    )


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"timezone": "Mars/Base"}, "tenant acme: timezone: unknown timezone 'Mars/Base'"),
        ({"paused": "yes"}, "tenant acme: paused: expected true or false, got 'yes'"),
        ({"paused": 1}, "tenant acme: paused: expected true or false, got 1"),
        ({"maxConcurrentRuns": 0}, "tenant acme: maxConcurrentRuns: must be at least 1, got 0"),
        (
            {"maxConcurrentRuns": True},
            "tenant acme: maxConcurrentRuns: expected an integer, got true",
        ),
        (
            {"maxConcurrentRuns": "3"},
            "tenant acme: maxConcurrentRuns: expected an integer, got '3'",
        ),
        ({"name": 5}, "tenant acme: name: expected a string, got 5"),
        ({"type": "Flow"}, "tenant acme: type: expected 'Tenant', got 'Flow'"),
        ({"flows": {}}, "tenant acme: flows: expected a list, got an object"),
    ],
)
def test_tenant_field_errors(change, expected):
    assert problems(doc(**change)) == [expected]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"enabled": "yes"}, "flows[0].enabled: expected true or false, got 'yes'"),
        ({"name": 5}, "flows[0].name: expected a string, got 5"),
        ({"name": "Bad_Name"}, "flows[0].name: flow name 'Bad_Name' must be 1–40 of a-z, 0-9"),
        (
            {"cron": "0 * * * *"},
            "flows[0].cron: cron '0 * * * *' has 5 fields; expected six fields, seconds first",
        ),
        ({"cron": "0 0 25 * * *"}, "flows[0].cron: cron '0 0 25 * * *' is not a valid"),
        ({"cron": None}, "flows[0].cron: expected a string, got null"),
        (
            {"nextRunUtc": "2026-11-23T14:00:00"},
            "flows[0].nextRunUtc: time '2026-11-23T14:00:00' has no UTC offset",
        ),
        (
            {"nextRunUtc": 1764000000},
            "flows[0].nextRunUtc: expected an ISO 8601 time with an offset, got 1764000000",
        ),
        ({"nextRunUtc": "soon"}, "flows[0].nextRunUtc: not an ISO 8601 time: 'soon'"),
        ({"config": "x=1"}, "flows[0].config: expected a JSON object, got 'x=1'"),
        (
            {"overlap": "never"},
            "flows[0].overlap: expected 'skip', 'queue', 'bufferOne' or 'allow', got 'never'",
        ),
    ],
)
def test_flow_field_errors(change, expected):
    lines = problems(flow_doc(**change))
    assert len(lines) == 1
    assert lines[0].startswith("tenant acme: " + expected)


def test_missing_fields_and_non_objects():
    d = flow_doc()
    del d["flows"][0]["cron"]
    assert problems(d) == ["tenant acme: flows[0].cron: required"]
    assert problems(doc(flows=[7])) == ["tenant acme: flows[0]: expected a JSON object, got 7"]
    assert problems({"name": "no id"}, label="#2") == ["tenant #2: id: required (id or tenantId)"]
    assert problems(["acme"], label="#3") == ["tenant #3: expected a JSON object, got a list"]
    with pytest.raises(InvalidDocument) as exc:
        parse_tenant("acme")
    assert exc.value.errors[0][0] == ""


def test_every_problem_is_reported_at_once_with_paths():
    bad = doc(timezone="Mars/Base", paused="yes")
    bad["flows"].append({"name": "nope", "cron": "0 * * * *", "enabled": "no"})
    with pytest.raises(InvalidDocument) as exc:
        parse_tenant(bad, known_flows={"contacts-to-erp", "other"})
    err = exc.value
    assert err.tenant == "acme"
    assert [p for p, _ in err.errors] == [
        "timezone",
        "paused",
        "flows[1].enabled",
        "flows[1].cron",
        "flows[1].name",
    ]
    assert str(err).splitlines()[-1] == (
        "tenant acme: flows[1].name: unknown flow 'nope' (registered: contacts-to-erp, other)"
    )


def test_bad_id_is_reported_once_and_used_as_label():
    lines = problems({"id": "x y"})
    assert len(lines) == 1 and lines[0].startswith("tenant 'x y': id: tenant id 'x y' must be")


def test_duplicate_flow_names():
    d = doc()
    d["flows"].append({"name": "contacts-to-erp", "cron": "0 0 1 * * *"})
    assert problems(d) == ["tenant acme: flows[1].name: duplicate flow name 'contacts-to-erp'"]


def test_known_flows_accepts_registered_names():
    assert parse_tenant(DOC, known_flows=["contacts-to-erp"]).flows[0].name == "contacts-to-erp"
    assert problems(DOC, known_flows=[]) == [
        "tenant acme: flows[0].name: unknown flow 'contacts-to-erp' (registered: none)"
    ]


def test_flow_lookup():
    t = parse_tenant(DOC)
    with pytest.raises(NotFound, match="tenant acme has no flow 'x'"):
        t.flow("x")


def test_models_are_usable_directly():
    t = Tenant(id="beta", flows=[FlowEntry(name="f", cron="0 0 * * * *")])
    assert t.tenant_id == "beta" and t.to_doc()["flows"][0]["name"] == "f"


def test_parse_tenants_one_or_many():
    assert [t.id for t in parse_tenants(DOC)] == ["acme"]
    assert [t.id for t in parse_tenants([DOC, doc(id="beta", tenantId="beta")])] == ["acme", "beta"]
    assert parse_tenants([]) == []


def test_parse_tenants_reports_all_documents():
    with pytest.raises(InvalidDocuments) as exc:
        parse_tenants(
            [
                DOC,
                doc(id="beta", tenantId="beta", paused="yes"),
                3,
                flow_doc(cron="bad"),
                {"tenantId": "gamma", "timezone": "Nowhere/X"},
            ],
            known_flows={"contacts-to-erp"},
        )
    err = exc.value
    assert isinstance(err, InvalidDocument) and isinstance(err, ValidationError)
    assert [d.tenant for d in err.documents] == ["beta", "#3", "acme", "gamma"]
    lines = str(err).splitlines()
    assert lines[0] == "tenant beta: paused: expected true or false, got 'yes'"
    assert lines[1] == "tenant #3: expected a JSON object, got 3"
    assert lines[2].startswith("tenant acme: flows[0].cron: cron 'bad' has 1 field;")
    assert lines[3] == "tenant gamma: timezone: unknown timezone 'Nowhere/X'"


def test_parse_tenants_rejects_duplicate_ids_and_non_lists():
    with pytest.raises(
        InvalidDocuments,
        match=r"tenant acme: id: duplicate tenant id "
        r"\(also document #1\)",
    ):
        parse_tenants([DOC, DOC])
    with pytest.raises(InvalidDocuments, match="expected a JSON object or a list"):
        parse_tenants("acme")


# -- Job ------------------------------------------------------------------------------------


def test_job_message_round_trip():
    when = datetime(2026, 11, 23, 14, tzinfo=UTC)
    job = Job("acme", "contacts-to-erp", when)
    msg = job.to_message()
    assert json.loads(msg) == {
        "tenantId": "acme",
        "flowName": "contacts-to-erp",
        "scheduledFor": "2026-11-23T14:00:00Z",
    }
    assert Job.from_message(msg) == job
    assert Job.from_message(msg.encode()) == job
    assert job.instance_id == "Workflow-acme--contacts-to-erp-20261123T140000Z"
    offset = '{"tenantId":"acme","flowName":"f","scheduledFor":"2026-11-23T15:00:00+01:00"}'
    assert Job.from_message(offset).scheduled_for == when


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "must be a JSON object, got a list"),
        ('{"tenantId": "acme", "flowName": "f"}', "missing 'scheduledFor'"),
        ('{"scheduledFor": "2026-11-23T14:00:00Z"}', "missing 'tenantId', 'flowName'"),
        (
            '{"tenantId": "ac me", "flowName": "f", "scheduledFor": "2026-11-23T14:00:00Z"}',
            "job message: tenant id 'ac me'",
        ),
        (
            '{"tenantId": "acme", "flowName": "F", "scheduledFor": "2026-11-23T14:00:00Z"}',
            "job message: flow name 'F'",
        ),
        (
            '{"tenantId": "acme", "flowName": 5, "scheduledFor": "2026-11-23T14:00:00Z"}',
            "job message: flow name must be a string",
        ),
        (
            '{"tenantId": "acme", "flowName": "f", "scheduledFor": "2026-11-23T14:00:00"}',
            "job message: time '2026-11-23T14:00:00' has no UTC offset",
        ),
        (
            '{"tenantId": "acme", "flowName": "f", "scheduledFor": "later"}',
            "job message: not an ISO 8601 time",
        ),
    ],
)
def test_job_from_message_errors(text, fragment):
    with pytest.raises(ValidationError) as exc:
        Job.from_message(text)
    assert fragment in str(exc.value)


def test_job_is_frozen():
    job = Job("acme", "f", datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(AttributeError):
        job.tenant_id = "other"  # type: ignore[misc]


# -- RunRecord ------------------------------------------------------------------------------


def test_run_record_json_keys_and_round_trip():
    run = RunRecord(
        instance_id="Workflow-acme-f-20261123T140000Z",
        tenant_id="acme",
        flow_name="f",
        scheduled_for="2026-11-23T14:00:00Z",
        status="Completed",
        started_at="2026-11-23T14:00:01Z",
        finished_at="2026-11-23T14:00:09Z",
        pages=3,
        records_in=250,
        records_out=240,
        resumes=1,
    )
    d = run.to_json()
    assert list(d)[:12] == [
        "instanceId",
        "tenantId",
        "flowName",
        "scheduledFor",
        "status",
        "startedAt",
        "finishedAt",
        "pages",
        "recordsIn",
        "recordsOut",
        "resumes",
        "error",
    ]
    assert d["recordsIn"] == 250 and d["error"] is None
    assert RunRecord.from_json(d) == run
    assert RunRecord.from_json(json.loads(json.dumps(d))) == run


def test_run_record_defaults_and_errors():
    run = RunRecord.from_json(
        {
            "instanceId": "i",
            "tenantId": "t",
            "flowName": "f",
            "scheduledFor": "2026-11-23T14:00:00Z",
            "status": "Pending",
        }
    )
    assert (run.pages, run.records_in, run.started_at, run.error) == (0, 0, None, None)
    with pytest.raises(ValidationError, match="missing 'status'"):
        RunRecord.from_json(
            {"instanceId": "i", "tenantId": "t", "flowName": "f", "scheduledFor": "x"}
        )
    assert RUN_STATUSES == (
        "Pending",
        "Running",
        "Completed",
        "Failed",
        "Skipped",
        "Superseded",
        "Terminated",
    )
