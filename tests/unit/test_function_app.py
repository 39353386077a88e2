"""The app as the Functions host indexes it: every function, trigger and binding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasync.runtime.host import index_functions, load_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def functions():
    app = load_app(ROOT).app
    return {f.get_function_name(): f for f in (b._function for b in app._function_builders)}


def _binding(fn, type_):
    return next(b for b in fn.get_bindings() if b.type == type_)


def test_every_function_is_registered(functions):
    assert set(functions) == {
        "schedule_flows",
        "start_flow",
        "sync_flow",
        "begin_run",
        "pull_page",
        "transform_page",
        "push_page",
        "finish_run",
        "console",
    }


def test_scheduler_timer_uses_the_setting(functions):
    trigger = functions["schedule_flows"].get_trigger()
    assert trigger.type == "timerTrigger"
    assert trigger.schedule == "%DATASYNC_SCAN_SCHEDULE%"
    assert trigger.run_on_startup is False


def test_starter_reads_flow_jobs_with_a_durable_client(functions):
    fn = functions["start_flow"]
    trigger = fn.get_trigger()
    assert (trigger.type, trigger.queue_name, trigger.connection) == (
        "queueTrigger",
        "flow-jobs",
        "AzureWebJobsStorage",
    )
    assert _binding(fn, "durableClient").name == "client"
    assert trigger.name == "msg"


def test_orchestrator_and_activities(functions):
    assert functions["sync_flow"].get_trigger().type == "orchestrationTrigger"
    for name in ("begin_run", "pull_page", "transform_page", "push_page", "finish_run"):
        trigger = functions[name].get_trigger()
        assert trigger.type == "activityTrigger" and trigger.activity == name


def test_local_runtime_indexes_the_same_functions():
    found = index_functions(load_app(ROOT).app)
    assert "sync_flow" in found.orchestrators
    assert {"pull_page", "push_page"} <= set(found.activities)
    assert [t.queue_name for _, t, _ in found.queues] == ["flow-jobs"]
    assert [t.schedule for _, t in found.timers] == ["%DATASYNC_SCAN_SCHEDULE%"]


def test_host_json_has_the_durable_bundle_and_queue_settings():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["extensionBundle"]["version"].startswith("[4.")
    assert host["extensions"]["queues"]["maxDequeueCount"] == 5
    assert host["extensions"]["durableTask"]["hubName"]
