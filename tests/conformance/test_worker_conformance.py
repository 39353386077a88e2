"""DataSync's Functions app through the REAL Python worker library (``azure-functions-runtime``).

A bridge process in the Python 3.13 worker venv plays the host: it sends the worker the
requests the Functions host sends (init → indexing and the worker's own load-time
validation, functions metadata, invocations with TypedData as the host and the Durable
extension build it) and hands back what the host would receive. Nothing here mocks the
worker, the SDK or the app; the backends are the embedded ones, in a throw-away
DATASYNC_HOME filled through the project's own CLI.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from .conftest import APP, Bridge, run_cli

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(600)]  # first run builds the venv

TENANT = "acme"
OK_FLOW, LEAKY_FLOW = "conformance-ok", "conformance-leaky"
SECRET = 'Zq7 s3cr3t/{k}+9f=2e&x"q\\'
"""Space, slash, braces, plus, quote, backslash: its percent-encoded and JSON-escaped forms
all differ from the raw value, so each is checked on its own."""
SCHEDULED_FOR = "2026-01-01T00:00:00Z"
STARTER_TENANTS = {"string": "starter-s", "bytes": "starter-b"}
"""The starter tests get tenants of their own: the runs begun by the activity tests count
against a tenant's ``maxConcurrentRuns`` (the starter would defer the job)."""

FLOW_FILES = {
    "conformance_ok.py": f'''
from datasync import Page, flow


@flow("{OK_FLOW}")
class Ok:
    def pull(self, ctx, cursor):
        return Page(records=[{{"id": "1"}}], cursor="c1", has_more=False)

    def push(self, ctx, records):
        pass
''',
    "conformance_leaky.py": f'''
from datasync import flow


@flow("{LEAKY_FLOW}")
class Leaky:
    def pull(self, ctx, cursor):
        raise RuntimeError("upstream said token=" + ctx.secret("api", "token"))

    def push(self, ctx, records):
        pass
''',
}


def expected_instance_id(tenant: str, flow: str, scheduled_for: str) -> str:
    """DESIGN.md: ``Workflow-<tenantId>--<flowName>-<scheduledFor as yyyyMMddTHHmmssZ>``."""
    compact = scheduled_for.replace("-", "").replace(":", "")
    return f"Workflow-{tenant}--{flow}-{compact}"


INSTANCE = expected_instance_id(TENANT, OK_FLOW, SCHEDULED_FOR)
JOB = {"tenantId": TENANT, "flowName": OK_FLOW, "scheduledFor": SCHEDULED_FOR}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict[str, str]:
    """DATASYNC_HOME + flows dir with two flows, a tenant and a secret — set through the CLI."""
    base = tmp_path_factory.mktemp("conformance")
    flows = base / "flows"
    flows.mkdir()
    for name, code in FLOW_FILES.items():
        (flows / name).write_text(code)
    env = {
        "DATASYNC_HOME": str(base / "home"),
        "DATASYNC_FLOWS_DIR": str(flows),
        "DATASYNC_SCAN_SCHEDULE": "0 0 0 1 1 *",
        "DATASYNC_HTTP_BACKOFF_BASE": "0.01",
    }
    flow_entries = [
        {"name": OK_FLOW, "cron": "0 0 0 1 1 *", "config": {}},
        {"name": LEAKY_FLOW, "cron": "0 0 0 1 1 *", "config": {}},
    ]
    tenants = [
        {"id": t, "type": "Tenant", "tenantId": t, "name": t, "flows": flow_entries}
        for t in (TENANT, *STARTER_TENANTS.values())
    ]
    doc = base / "tenants.json"
    doc.write_text(json.dumps(tenants))
    run_cli(["tenants", "apply", str(doc)], env)
    run_cli(["secrets", "set", TENANT, "api", "token"], env, stdin=SECRET + "\n")
    return env


@pytest.fixture(scope="module")
def worker(bridge_factory, project) -> Bridge:
    """One worker process for the whole module, initialised on the app under test."""
    bridge = bridge_factory(APP, project)
    bridge.init_reply = bridge.call("init", app_dir=str(APP))
    return bridge


@pytest.fixture(scope="module")
def indexed(worker) -> dict[str, dict[str, Any]]:
    """The functions metadata the host receives, by function name (the app must index)."""
    assert worker.init_reply["status"] == "Success", "the worker refused the app: " + (
        worker.init_reply["exception"] or {}
    ).get("message", "?")
    reply = worker.call("metadata")
    return {fn["name"]: fn for fn in reply["functions"]}


# -- indexing and validation ---------------------------------------------------------------


def test_the_worker_indexes_the_app(worker):
    init = worker.init_reply
    message = (init["exception"] or {}).get("message")
    assert init["status"] == "Success", f"worker_init_request failed: {message}"
    assert init["worker_version"].startswith("1.")


PEP585_APP = """
import importlib.util
from typing import Any

import azure.durable_functions as df

# the app under test, as it is ...
_spec = importlib.util.spec_from_file_location("datasync_function_app", {app_file!r})
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)

# ... plus one activity with a PEP 585 annotation, first, so the worker checks it first
probe = df.Blueprint()


@probe.activity_trigger(input_name="args", activity="pep585_probe")
def pep585_probe(args: dict[str, Any]) -> dict[str, Any]:
    return args


app = _real.app
app._function_builders[:0] = probe._function_builders
"""


def test_the_worker_refuses_a_pep585_annotated_activity(bridge_factory, project, tmp_path):
    """The check is live: the app plus one ``dict[str, Any]`` activity is refused, with the
    worker's exact text (what the host logs as the reason no function loads)."""
    app_dir = tmp_path / "pep585"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(
        PEP585_APP.format(app_file=str(APP / "function_app.py"))
    )
    bridge = bridge_factory(app_dir, {**project, "PYTHONPATH": str(APP)})
    init = bridge.call("init", app_dir=str(app_dir))
    assert init["status"] == "Failure"
    assert init["exception"]["message"] == (
        "FunctionLoadError: cannot load the pep585_probe function: binding args has invalid "
        "non-type annotation dict[str, typing.Any]"
    )
    assert bridge.call("metadata")["functions"] == []  # the host gets no function


def _app_python(code: str) -> str:
    """Run ``code`` in this (the main, Python 3.11) venv on the app under test; its last
    line of output."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(APP),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(APP)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_the_embedded_runtimes_check_agrees_on_this_app(worker):
    """``validate_app`` (what the embedded runtime runs, Python 3.11) gives the worker's
    verdict on the app itself."""
    code = (
        "import importlib.util, json, sys\n"
        "from datasync.runtime.validation import validate_app\n"
        "spec = importlib.util.spec_from_file_location('function_app', 'function_app.py')\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['function_app'] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(json.dumps(validate_app(module.app)))\n"
    )
    ours = json.loads(_app_python(code))
    if worker.init_reply["status"] == "Success":
        assert ours == []
    else:
        message = worker.init_reply["exception"]["message"]
        assert ours and "FunctionLoadError: " + ours[0] == message


# -- raw bindings: the contract with the host ----------------------------------------------

ACTIVITIES = ("begin_run", "pull_page", "transform_page", "push_page", "finish_run")


def _raw(fn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["type"]: b for b in fn["raw_bindings"]}


def test_the_host_receives_exactly_these_functions(indexed):
    assert set(indexed) == {"schedule_flows", "start_flow", "sync_flow", "console", *ACTIVITIES}
    for fn in indexed.values():
        assert fn["script_file"] == "function_app.py" and fn["language"] == "python"
        assert fn["properties"] == {"worker_indexed": "True"}


def test_timer_binding(indexed):
    assert indexed["schedule_flows"]["raw_bindings"] == [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%DATASYNC_SCAN_SCHEDULE%",
            "runOnStartup": False,
            "useMonitor": True,
        }
    ]


def test_queue_trigger_and_durable_client_bindings(indexed):
    raw = _raw(indexed["start_flow"])
    assert set(raw) == {"queueTrigger", "durableClient"}
    assert raw["queueTrigger"] == {
        "direction": "IN",
        "type": "queueTrigger",
        "name": "msg",
        "queueName": "flow-jobs",
        "connection": "AzureWebJobsStorage",
    }
    assert raw["durableClient"]["direction"] == "IN"
    assert raw["durableClient"]["name"] == "client"


def test_orchestration_and_activity_triggers(indexed):
    assert indexed["sync_flow"]["raw_bindings"] == [
        {
            "direction": "IN",
            "type": "orchestrationTrigger",
            "name": "context",
            "orchestration": "sync_flow",
        }
    ]
    for name in ACTIVITIES:
        assert indexed[name]["raw_bindings"] == [
            {"direction": "IN", "type": "activityTrigger", "name": "args", "activity": name}
        ]


NAME_MODULES = ("datasync.functions.bindings", "datasync.functions.names")
"""Where the app defines its function, queue and setting names (the first that exists)."""


def test_the_apps_names_are_the_contract():
    """The names the code uses (one module) are the literal strings the host is bound to."""
    names = json.loads(
        _app_python(
            "import importlib, json\n"
            f"for module in {NAME_MODULES!r}:\n"
            "    try:\n"
            "        names = importlib.import_module(module)\n"
            "        break\n"
            "    except ModuleNotFoundError as exc:\n"
            "        if exc.name != module:\n"
            "            raise\n"
            "else:\n"
            "    raise SystemExit('no names module found')\n"
            "print(json.dumps({k: v for k, v in vars(names).items() if k.isupper() and "
            "isinstance(v, str)}))\n"
        )
    )
    assert {
        k: names.get(k)
        for k in ("ORCHESTRATOR", "JOB_QUEUE", "STORAGE_CONNECTION", "SCAN_SCHEDULE")
    } == {
        "ORCHESTRATOR": "sync_flow",
        "JOB_QUEUE": "flow-jobs",
        "STORAGE_CONNECTION": "AzureWebJobsStorage",
        "SCAN_SCHEDULE": "%DATASYNC_SCAN_SCHEDULE%",
    }
    assert (
        tuple(
            names.get(k)
            for k in ("BEGIN_RUN", "PULL_PAGE", "TRANSFORM_PAGE", "PUSH_PAGE", "FINISH_RUN")
        )
        == ACTIVITIES
    )


# -- activities through the worker's converters -------------------------------------------


def _activity(worker, name: str, args: dict[str, Any], kind: str = "string") -> dict[str, Any]:
    """The Durable extension hands an activity its input as the JSON text of the
    scheduled action's ``input``."""
    return worker.call(
        "invoke", function=name, input_data=[{"name": "args", "data": {kind: json.dumps(args)}}]
    )


@pytest.mark.parametrize("kind", ["string", "json"])
def test_begin_run_returns_its_value_to_the_host(indexed, worker, project, kind):
    run_id = expected_instance_id(TENANT, OK_FLOW, f"2026-02-0{1 + (kind == 'json')}T00:00:00Z")
    args = {"tenantId": TENANT, "flowName": OK_FLOW, "runId": run_id, "scheduledFor": SCHEDULED_FOR}
    reply = _activity(worker, "begin_run", args, kind)
    assert reply["status"] == "Success", reply["exception"]
    assert list(reply["return_value"]) == ["json"]  # TypedData.json, as the
    assert json.loads(reply["return_value"]["json"]) == {  # extension expects
        "cursor": None,
        "state": {},
        "pages": 0,
        "recordsIn": 0,
        "recordsOut": 0,
        "transform": False,  # the flow has no transform: its pages are pushed as staged
    }
    runs = json.loads(run_cli(["runs", "--json"], project).stdout)
    assert {r["instanceId"]: r["status"] for r in runs}[run_id] == "Running"


def _forms(value: str) -> set[str]:
    return {
        value,
        quote(value, safe=""),
        quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


def test_an_activity_error_reaches_the_host_redacted(indexed, worker):
    args = {
        "tenantId": TENANT,
        "flowName": LEAKY_FLOW,
        "runId": INSTANCE,
        "pageKey": INSTANCE + "/p1",
        "cursor": None,
        "state": {},
    }
    reply = _activity(worker, "pull_page", args)
    assert reply["status"] == "Failure"
    error = reply["exception"]
    assert error["message"].startswith("RuntimeError: ")
    assert "upstream said token=***" in error["message"]
    assert "RuntimeError" in error["stack_trace"]
    for text in (error["message"], error["stack_trace"]):
        leaked = {form for form in _forms(SECRET) if form in text}
        assert not leaked, f"the secret reached the host as {leaked}"


# -- the orchestrator, with the context the Durable extension sends ------------------------


def _ts(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


class History:
    """A DTFx history as the extension serialises it (PascalCase, int event types)."""

    def __init__(self, instance_input: str) -> None:
        self.clock = 0
        self.events: list[dict[str, Any]] = []
        self.input = instance_input
        self._add(12)  # OrchestratorStarted
        self._add(
            0,
            Name="sync_flow",
            Version="",
            Input=instance_input,
            OrchestrationInstance={"InstanceId": INSTANCE, "ExecutionId": "e1"},
        )

    def _add(self, event_type: int, event_id: int = -1, **fields: Any) -> None:
        self.events.append(
            {
                "EventType": event_type,
                "EventId": event_id,
                "IsPlayed": False,
                "Timestamp": _ts(self.clock),
                **fields,
            }
        )

    def episode(self) -> None:
        """End the episode (OrchestratorCompleted) and start the next one a second later."""
        self._add(13)
        self.clock += 1
        self._add(12)

    def scheduled(self, task_id: int, name: str) -> History:
        self._add(4, task_id, Name=name, Version="")
        return self

    def completed(self, task_id: int, result: Any) -> History:
        self.episode()
        self._add(5, TaskScheduledId=task_id, Result=json.dumps(result))
        return self

    def failed(self, task_id: int, reason: str) -> History:
        self.episode()
        self._add(
            6,
            TaskScheduledId=task_id,
            Reason=reason,
            Details="Traceback (most recent call last): ...",
        )
        return self

    def retry_timer(self, timer_id: int) -> History:
        """The orchestrator's wait between two tries of a step: a durable timer."""
        self._add(10, timer_id, FireAt=_ts(self.clock + 2))
        self.episode()
        self._add(11, TimerId=timer_id, FireAt=_ts(self.clock + 1))
        return self

    def context(self) -> str:
        """The orchestration trigger's value: ``OrchestrationContextToString`` of the
        extension, schema V3 (``upperSchemaVersion`` V2, ``upperSchemaVersionNew`` V3)."""
        return json.dumps(
            {
                "history": self.events,
                "input": self.input,
                "instanceId": INSTANCE,
                "isReplaying": False,
                "parentInstanceId": None,
                "upperSchemaVersion": 1,
                "upperSchemaVersionNew": 2,
                "longRunningTimerIntervalDuration": "3.00:00:00",
                "maximumShortTimerDuration": "6.00:00:00",
                "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
            }
        )


def _orchestrate(worker, history: History, kind: str = "string") -> dict[str, Any]:
    return worker.call(
        "invoke",
        function="sync_flow",
        input_data=[{"name": "context", "data": {kind: history.context()}}],
    )


def _state(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["status"] == "Success", reply["exception"]
    assert list(reply["return_value"]) == ["json"]
    return json.loads(reply["return_value"]["json"])


def _actions(state: dict[str, Any]) -> list[dict[str, Any]]:
    """V2/V3: one flat list of actions (cumulative since ExecutionStarted)."""
    assert state["schemaVersion"] == 2
    (flat,) = state["actions"]
    return flat


BEGUN = {"cursor": None, "state": {}, "pages": 0, "recordsIn": 0, "recordsOut": 0}
BASE = {"tenantId": TENANT, "flowName": OK_FLOW, "runId": INSTANCE}


def _call(action: dict[str, Any], name: str) -> dict[str, Any]:
    """A plain CallActivity (0): the orchestrator retries steps itself (call, timer, call),
    so that a permanent failure is not retried."""
    assert action["actionType"] == 0 and action["functionName"] == name
    assert "retryOptions" not in action
    return json.loads(action["input"])


@pytest.mark.parametrize("kind", ["string", "json"])
def test_first_episode_schedules_begin_run(indexed, worker, kind):
    state = _state(_orchestrate(worker, History(json.dumps(JOB)), kind))
    assert state["isDone"] is False
    (action,) = _actions(state)
    assert _call(action, "begin_run") == {**BASE, "scheduledFor": SCHEDULED_FOR}


def test_after_begin_run_the_first_page_is_pulled(indexed, worker):
    history = History(json.dumps(JOB)).scheduled(0, "begin_run").completed(0, BEGUN)
    state = _state(_orchestrate(worker, history))
    assert state["isDone"] is False
    first, second = _actions(state)
    _call(first, "begin_run")
    assert _call(second, "pull_page") == {
        **BASE,
        "pageKey": INSTANCE + "/p1",
        "cursor": None,
        "state": {},
    }


REASON = "Activity function 'pull_page' failed: RuntimeError: boom"


def _failed_pull() -> History:
    """begin_run done; pull_page fails on all 3 attempts with a timer in between (ids:
    pull 1, timer 2, pull 3, timer 4, pull 5)."""
    history = History(json.dumps(JOB)).scheduled(0, "begin_run").completed(0, BEGUN)
    history.scheduled(1, "pull_page").failed(1, REASON).retry_timer(2)
    history.scheduled(3, "pull_page").failed(3, REASON).retry_timer(4)
    history.scheduled(5, "pull_page").failed(5, REASON)
    return history


def test_a_failed_step_is_tried_again_after_a_timer(indexed, worker):
    history = History(json.dumps(JOB)).scheduled(0, "begin_run").completed(0, BEGUN)
    history.scheduled(1, "pull_page").failed(1, REASON)
    state = _state(_orchestrate(worker, history))
    *_, timer = _actions(state)
    assert timer["actionType"] == 5 and "fireAt" in timer  # CreateTimer, 2 s on
    history.retry_timer(2)
    *_, again = _actions(_state(_orchestrate(worker, history)))
    assert _call(again, "pull_page")["pageKey"] == INSTANCE + "/p1"


def test_a_permanent_failure_is_not_tried_again(indexed, worker):
    permanent = "Activity function 'pull_page' failed:  SecretNotFound: secret not found: …"
    history = History(json.dumps(JOB)).scheduled(0, "begin_run").completed(0, BEGUN)
    history.scheduled(1, "pull_page").failed(1, permanent)
    *_, last = _actions(_state(_orchestrate(worker, history)))
    assert _call(last, "finish_run")["status"] == "Failed"


def test_a_failed_activity_takes_the_error_path(indexed, worker):
    state = _state(_orchestrate(worker, _failed_pull()))
    assert state["isDone"] is False
    *_, last = _actions(state)
    assert last["actionType"] == 0 and last["functionName"] == "finish_run"
    assert json.loads(last["input"]) == {**BASE, "status": "Failed", "error": REASON}


def test_the_orchestration_then_fails_with_the_activitys_reason(indexed, worker):
    """After finish_run the orchestrator raises: the host gets a Failure whose message
    carries the final OrchestratorState (``$OutOfProcData$``) with the error (its ``isDone``
    is not set on this path; the extension fails the instance on the Failure status)."""
    history = _failed_pull().scheduled(6, "finish_run").completed(6, {"status": "Failed"})
    reply = _orchestrate(worker, history)
    assert reply["status"] == "Failure"
    message = reply["exception"]["message"]
    assert REASON in message.split("$OutOfProcData$:")[0]
    state = json.loads(message.split("$OutOfProcData$:", 1)[1])
    assert REASON in state["error"]


# -- the starter, with the queue message and durable client the host sends -----------------


def _queue_metadata(message_id: str) -> dict[str, Any]:
    """Trigger metadata of a Storage queue message (strings; numbers and times as JSON)."""
    return {
        "Id": {"string": message_id},
        "DequeueCount": {"json": "1"},
        "PopReceipt": {"string": "AgAAAAMAAAAAAAAA"},
        "InsertionTime": {"json": '"2026-01-01T00:00:00+00:00"'},
        "ExpirationTime": {"json": '"2026-01-08T00:00:00+00:00"'},
        "NextVisibleTime": {"json": '"2026-01-01T00:00:30+00:00"'},
    }


@pytest.fixture(scope="module")
def durable_client(worker) -> dict[str, Any]:
    """The embedded engine + its Durable HTTP API, started inside the worker process (the
    SDK's aiohttp session is module-global: it lives on the worker's one event loop)."""
    return worker.call("durable_start")


@pytest.mark.parametrize("kind", ["string", "bytes"])
def test_start_flow_starts_the_orchestration_instance(indexed, worker, durable_client, kind):
    tenant, scheduled = STARTER_TENANTS[kind], "2026-03-01T10:00:00Z"
    job = {"tenantId": tenant, "flowName": OK_FLOW, "scheduledFor": scheduled}
    body = json.dumps(job)
    data = (
        {"string": body}
        if kind == "string"
        else {"bytes": base64.b64encode(body.encode()).decode()}
    )
    client_data = {"string": durable_client["binding_json"]}  # the extension's JSON, as text
    reply = worker.call(
        "invoke",
        function="start_flow",
        input_data=[{"name": "msg", "data": data}, {"name": "client", "data": client_data}],
        trigger_metadata=_queue_metadata(f"m-{kind}"),
    )
    assert reply["status"] == "Success", reply["exception"]
    assert reply["return_value"] is None  # no $return binding
    expected = expected_instance_id(tenant, OK_FLOW, scheduled)
    instance = worker.call("durable_status", instance_id=expected)["instance"]
    existing = worker.call("durable_instances")["instances"]
    assert instance is not None, (
        f"no instance {expected!r} (DESIGN.md's id rule); the engine has {existing}"
    )
    assert instance["name"] == "sync_flow" and instance["runtimeStatus"] == "Pending"
    started_with = instance["input"]  # the status API's input: JSON or text
    if isinstance(started_with, str):
        started_with = json.loads(started_with)
    assert {k: started_with[k] for k in job} == job
