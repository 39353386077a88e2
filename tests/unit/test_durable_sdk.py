"""Each use of azure-functions-durable internals (``datasync.runtime.durable.sdk``), checked
against the installed SDK: when an upgrade breaks one, this says which."""

from __future__ import annotations

import asyncio
import datetime
import json
from importlib.metadata import version

import azure.durable_functions as df
import pytest
from azure.durable_functions.models.DurableOrchestrationContext import (
    DurableOrchestrationContext,
)
from azure.durable_functions.models.ReplaySchema import ReplaySchema as SdkReplaySchema
from azure.durable_functions.orchestrator import Orchestrator
from dateutil import parser as dateutil_parser

from datasync.runtime.durable import sdk
from datasync.runtime.durable.events import (
    EXECUTION_STARTED,
    ORCHESTRATOR_STARTED,
    event,
)

T0 = 1_790_000_000.0


def test_the_installed_sdk_is_the_version_the_module_was_checked_against():
    assert version("azure-functions-durable") == sdk.SDK_VERSION


def test_replay_schema_values_match_the_sdk():
    assert [s.value for s in SdkReplaySchema] == [
        sdk.ReplaySchema.V1,
        sdk.ReplaySchema.V2,
        sdk.ReplaySchema.V3,
    ]


def _rows(*events):
    return [json.dumps(e) for e in events]


START = _rows(
    event(ORCHESTRATOR_STARTED, T0),
    event(EXECUTION_STARTED, T0, Name="o", Version="", Input="null"),
)


def test_the_context_asks_for_v3_with_the_extensions_timer_settings():
    ctx = DurableOrchestrationContext.from_json(
        sdk.orchestration_context(START, '{"a": 1}', "inst", sdk.ReplaySchema.V3)
    )
    assert ctx._replay_schema is SdkReplaySchema.V3
    assert ctx._maximum_short_timer_duration == datetime.timedelta(days=6)
    assert ctx._long_timer_interval_duration == datetime.timedelta(days=3)
    assert ctx.instance_id == "inst" and ctx.get_input() == {"a": 1}
    v1 = DurableOrchestrationContext.from_json(
        sdk.orchestration_context(START, None, "inst", sdk.ReplaySchema.V1)
    )
    assert v1._replay_schema is SdkReplaySchema.V1


def test_fast_timestamps_parse_as_dateutil_does():
    sdk.install_fast_timestamps()
    sdk.install_fast_timestamps()  # idempotent
    import sys

    from azure.durable_functions.models.history import HistoryEvent

    parse = sys.modules["azure.durable_functions.models.history.HistoryEvent"].dt_parse
    assert getattr(parse, "_datasync_fast", False)
    for text in ("2026-03-29T01:30:00.123456Z", "2026-01-01T00:00:00.000000Z"):
        assert parse(text) == dateutil_parser.parse(text)
        assert parse(text).tzinfo is not None
    assert parse("2026-01-01T00:00:00+02:00") == dateutil_parser.parse("2026-01-01T00:00:00+02:00")
    assert HistoryEvent is not None


def _probe(context):
    opts = df.RetryOptions(10, 3)
    yield context.task_all(
        [context.call_activity("A", 0), context.call_activity_with_retry("B", opts, 1)]
    )
    yield context.task_any(
        [
            context.call_activity("C", 2),
            context.create_timer(context.current_utc_datetime + datetime.timedelta(seconds=5)),
        ]
    )


def test_v3_compound_actions_unwrap_to_leaves_in_id_order():
    rows = START + _rows(
        event(4, T0, 0, Name="A"),
        event(4, T0, 1, Name="B"),
        event(13, T0),
        event(12, T0 + 1),
        event(5, T0 + 1, TaskScheduledId=0, Result="1"),
        event(5, T0 + 1, TaskScheduledId=1, Result="1"),
    )
    out = sdk.invoke_orchestrator(
        Orchestrator.create(_probe), sdk.orchestration_context(rows, None, "i")
    )
    raw = json.loads(Orchestrator.create(_probe)(sdk.orchestration_context(rows, None, "i")))
    assert raw["schemaVersion"] == 2 and len(raw["actions"]) == 1  # one flat list
    assert [a["actionType"] for a in raw["actions"][0]] == [12, 11]
    assert [(a["actionType"], a.get("functionName")) for a in out.actions] == [
        (0, "A"),
        (1, "B"),
        (0, "C"),
        (5, None),
    ]
    assert all(sdk.takes_an_id(a) for a in out.actions)
    assert not out.done and out.error is None


def _raises(context):
    yield context.call_activity("A", 0)
    raise KeyError("no such page")


def test_a_raising_orchestrator_gives_the_sdks_error_text():
    rows = START + _rows(
        event(4, T0, 0, Name="A"),
        event(13, T0),
        event(12, T0 + 1),
        event(5, T0 + 1, TaskScheduledId=0, Result="1"),
    )
    out = sdk.invoke_orchestrator(
        Orchestrator.create(_raises), sdk.orchestration_context(rows, None, "i")
    )
    assert out.error == str(KeyError("no such page")) == "'no such page'"
    assert [a["functionName"] for a in out.actions] == ["A"]


def test_a_handle_failing_without_state_still_gives_an_error():
    def broken(_context):
        raise RuntimeError("not an orchestrator")

    assert sdk.invoke_orchestrator(broken, "{}").error == "not an orchestrator"


def _exits(context):
    yield context.call_activity("A", 0)
    raise SystemExit("bye")


def test_an_orchestrator_raising_system_exit_fails_instead_of_ending_the_worker():
    rows = START + _rows(
        event(4, T0, 0, Name="A"),
        event(13, T0),
        event(12, T0 + 1),
        event(5, T0 + 1, TaskScheduledId=0, Result="1"),
    )
    out = sdk.invoke_orchestrator(
        Orchestrator.create(_exits), sdk.orchestration_context(rows, None, "i")
    )
    assert out.error == "bye" and not out.done


@pytest.mark.parametrize("loops", [2])
def test_the_client_session_can_be_reset_for_each_new_event_loop(loops):
    from azure.durable_functions.models.utils import http_utils

    async def use():
        sdk.fresh_durable_client_session()
        session = await http_utils._get_session()
        assert not session.closed
        await sdk.close_durable_client_session()
        assert session.closed and http_utils._client_session is None

    for _ in range(loops):  # a second loop fails without the reset
        asyncio.run(use())
