"""The episode planner on its own: pure, with the clock passed in (no sleeping for retries).

SDK outcomes come from the real ``Orchestrator.create`` handle where the orchestrator's
answer matters; retry bookkeeping is driven by the events DTFx would deliver."""

from __future__ import annotations

import json

import azure.durable_functions as df
import pytest

from datasync.runtime.durable.events import (
    EXECUTION_STARTED,
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_SCHEDULED,
    TIMER_CREATED,
    TIMER_FIRED,
    event,
    iso,
    parse_iso,
)
from datasync.runtime.durable.planner import (
    InstanceBook,
    opening_events,
    plan_episode,
    start_decision,
)
from datasync.runtime.durable.sdk import (
    OrchestratorOutcome,
    ReplaySchema,
    invoke_orchestrator,
    orchestration_context,
)
from datasync.runtime.durable.wording import InstanceExistsError

T0 = 1_790_000_000.0  # the injected clock


@pytest.mark.parametrize(
    "status, decision",
    [
        (None, "create"),
        ("Completed", "replace"),
        ("Failed", "replace"),
        ("Terminated", "replace"),
        ("Pending", "Pending"),
        ("Running", "Running"),
        ("ContinuedAsNew", "ContinuedAsNew"),
        ("Suspended", "Suspended"),
    ],
)
def test_start_semantics_per_existing_status(status, decision):
    if decision in ("create", "replace"):
        assert start_decision(status) == decision
        return
    with pytest.raises(InstanceExistsError) as err:
        start_decision(status)
    assert err.value.status == status
    assert str(err.value) == f"An Orchestration instance with the status {status} already exists."


RETRY_3 = {"firstRetryIntervalInMilliseconds": 5000, "maxNumberOfAttempts": 3}
WITH_RETRY = {"actionType": 1, "functionName": "pull", "input": '{"n": 1}', "retryOptions": RETRY_3}


def _failed(task_id: int) -> dict:
    return event(TASK_FAILED, T0, TaskScheduledId=task_id, Reason="r", Details="d")


def _fired(timer_id: int, at: float) -> dict:
    return event(TIMER_FIRED, at, TimerId=timer_id, FireAt=iso(at))


def _kinds(plan):
    return [(e["EventType"], e["EventId"]) for e in plan.events]


def test_a_with_retry_call_is_scheduled_with_its_retry_state():
    plan = plan_episode(
        InstanceBook("o"),
        event(EXECUTION_STARTED, T0),
        OrchestratorOutcome(actions=[WITH_RETRY]),
        T0,
    )
    assert plan.status == "Running"
    assert plan.activities == [(0, "pull", '{"n": 1}')]
    assert _kinds(plan)[0] == (TASK_SCHEDULED, 0)
    assert plan.retry == {
        "0": {"name": "pull", "input": '{"n": 1}', "attempt": 1, "max": 3, "first_ms": 5000}
    }
    assert (plan.next_event_id, plan.actions_seen) == (1, 1)


def test_retry_timers_fire_after_the_first_interval_then_exhaust():
    """TaskFailed → TimerCreated at now + firstRetryInterval → TimerFired → next attempt,
    ids from one counter (§C18); after the last attempt the timer fires at once and no
    attempt follows."""
    book = InstanceBook("o")
    actions = [WITH_RETRY]
    first = plan_episode(
        book, event(EXECUTION_STARTED, T0), OrchestratorOutcome(actions=actions), T0
    )
    ids_seen, now, task_id = [], T0, 0
    for attempt in (1, 2, 3):
        book = InstanceBook("o", first.next_event_id, first.actions_seen, first.retry)
        now += 1.0
        failed = plan_episode(book, _failed(task_id), OrchestratorOutcome(actions=actions), now)
        ((timer, fire_at),) = failed.timers
        timer_id = timer["TimerId"]
        assert _kinds(failed)[0] == (TIMER_CREATED, timer_id)
        assert fire_at == (now + 5.0 if attempt < 3 else now)
        assert parse_iso(timer["FireAt"]) == pytest.approx(fire_at)
        assert failed.activities == []
        book = InstanceBook("o", failed.next_event_id, failed.actions_seen, failed.retry)
        fired = plan_episode(
            book, _fired(timer_id, fire_at), OrchestratorOutcome(actions=actions), fire_at
        )
        ids_seen += [task_id, timer_id]
        if attempt < 3:
            ((task_id, name, payload),) = fired.activities
            assert (name, payload) == ("pull", '{"n": 1}')
            assert fired.retry[str(task_id)]["attempt"] == attempt + 1
            assert _kinds(fired)[0] == (TASK_SCHEDULED, task_id)
        else:
            assert fired.activities == [] and fired.retry == {}
        first = fired
    assert ids_seen == [0, 1, 2, 3, 4, 5]


def test_a_completed_retry_task_leaves_no_retry_state():
    book = InstanceBook(
        "o", 1, 1, {"0": {"name": "pull", "input": None, "attempt": 1, "max": 3, "first_ms": 10}}
    )
    plan = plan_episode(
        book,
        event(TASK_COMPLETED, T0, TaskScheduledId=0, Result="1"),
        OrchestratorOutcome(actions=[WITH_RETRY]),
        T0,
    )
    assert plan.retry == {} and plan.activities == [] and plan.timers == []


def test_timer_actions_become_invisible_inbox_events_at_fire_at():
    fire = iso(T0 + 90)
    plan = plan_episode(
        InstanceBook("o", 3, 2),
        event(TASK_COMPLETED, T0, TaskScheduledId=2),
        OrchestratorOutcome(
            actions=[{}, {}, {"actionType": 5, "fireAt": fire, "isCanceled": False}]
        ),
        T0,
    )
    ((fired, at),) = plan.timers
    assert (fired["EventType"], fired["TimerId"], at) == (TIMER_FIRED, 3, pytest.approx(T0 + 90))
    assert plan.next_event_id == 4


bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration="loop")
def loop(context):
    n = yield context.call_activity("step", context.get_input())
    context.continue_as_new(n)


@bp.orchestration_trigger(context_name="context", orchestration="boom")
def boom(context):
    yield context.call_activity("step", 1)
    raise ValueError("bad page")


def _handle(name):
    return next(
        b._function.get_user_function()
        for b in bp._function_builders
        if b._function.get_trigger().orchestration == name
    )


def _replay(name, rows, input_json="1"):
    return invoke_orchestrator(
        _handle(name), orchestration_context(rows, input_json, "i", ReplaySchema.V3)
    )


def _episode_two(name):
    """Episode 1 (ExecutionStarted) planned, then episode 2 delivering TaskCompleted(0)."""
    started = event(EXECUTION_STARTED, T0, Name=name, Version="", Input="1")
    rows = [json.dumps(e) for e in opening_events(started, T0)]
    first = plan_episode(InstanceBook(name), started, _replay(name, rows), T0)
    assert first.activities == [(0, "step", "1")]
    rows += [json.dumps(e) for e in first.events]
    done = event(TASK_COMPLETED, T0 + 1, TaskScheduledId=0, Result="7")
    rows += [json.dumps(e) for e in opening_events(done, T0 + 1)]
    book = InstanceBook(name, first.next_event_id, first.actions_seen, first.retry)
    return plan_episode(book, done, _replay(name, rows), T0 + 1)


def test_continue_as_new_ends_the_generation_with_its_input():
    plan = _episode_two("loop")
    assert plan.status == "ContinuedAsNew"
    assert plan.continue_input == "7"
    assert plan.activities == [] and plan.output is None


def test_an_orchestrator_error_fails_the_instance_with_the_extensions_wording():
    plan = _episode_two("boom")
    assert plan.status == "Failed"
    assert json.loads(plan.output) == "Orchestrator function 'boom' failed: bad page"


def test_an_unsupported_action_fails_the_instance():
    plan = plan_episode(
        InstanceBook("o"),
        event(EXECUTION_STARTED, T0),
        OrchestratorOutcome(actions=[{"actionType": 2, "functionName": "sub"}]),
        T0,
    )
    assert plan.status == "Failed"
    assert "action type 2 is not supported" in json.loads(plan.output)
