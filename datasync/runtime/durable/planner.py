"""The episode planner: pure functions, no I/O, the clock passed in.

An episode delivers one inbox event. Given the instance's bookkeeping, that event and what
the orchestrator returned for ``history + [OrchestratorStarted, event]``, the planner says
what to append to the history, which activities and timers to schedule and the instance's
next status. Ids and retries follow ``shared/notes/durable-local.md`` §C14/§C18 (DTFx's
``RetryInterceptor``: TaskFailed → retry timer → next attempt, ids from the SDK's counter).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .events import (
    CALL_ACTIVITY,
    CALL_ACTIVITY_WITH_RETRY,
    CONTINUE_AS_NEW,
    CREATE_TIMER,
    ORCHESTRATOR_COMPLETED,
    ORCHESTRATOR_STARTED,
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_SCHEDULED,
    TIMER_CREATED,
    TIMER_FIRED,
    WAIT_FOR_EXTERNAL_EVENT,
    event,
    iso,
    parse_iso,
)
from .sdk import OrchestratorOutcome
from .wording import DEDUPE_STATUSES, InstanceExistsError, orchestrator_failure

__all__ = ["EpisodePlan", "InstanceBook", "opening_events", "plan_episode", "start_decision"]

Activity = tuple[int, str, "str | None"]  # (task id, activity name, input JSON)
Timer = tuple[dict[str, Any], float]  # (TimerFired event, fire at, epoch s)


def start_decision(existing_status: str | None) -> str:
    """``"create"`` (no such instance), ``"replace"`` (a finished one: silently replaced by a
    new execution) or raise :class:`InstanceExistsError` (the extension's default
    ``overridableExistingInstanceStates``, see :data:`DEDUPE_STATUSES`)."""
    if existing_status is None:
        return "create"
    if existing_status in DEDUPE_STATUSES:
        raise InstanceExistsError(existing_status)
    return "replace"


@dataclass(frozen=True, slots=True)
class InstanceBook:
    """The per-execution bookkeeping an episode starts from."""

    name: str
    next_event_id: int = 0
    actions_seen: int = 0  # leaves of the SDK's cumulative action list already acted on
    retry: dict[str, Any] = field(default_factory=dict)  # task id / "timer:<id>" → attempt


@dataclass(slots=True)
class EpisodePlan:
    """What one episode does. ``status`` is Running, Completed, Failed or ContinuedAsNew."""

    status: str
    output: str | None = None  # JSON text (Completed/Failed)
    continue_input: str | None = None  # ContinuedAsNew: the next generation's input
    events: list[dict[str, Any]] = field(default_factory=list)  # after the opening events
    activities: list[Activity] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    next_event_id: int = 0
    actions_seen: int = 0
    retry: dict[str, Any] = field(default_factory=dict)


def opening_events(delivered: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The events an episode adds before replay: OrchestratorStarted, then the delivery."""
    return [event(ORCHESTRATOR_STARTED, now), delivered]


def plan_episode(
    book: InstanceBook, delivered: dict[str, Any], outcome: OrchestratorOutcome, now: float
) -> EpisodePlan:
    """Plan the episode that delivered ``delivered`` and got ``outcome`` from the SDK."""
    plan = EpisodePlan(
        "Running",
        next_event_id=book.next_event_id,
        actions_seen=len(outcome.actions),
        retry=dict(book.retry),
    )
    _retry_bookkeeping(plan, delivered, now)
    error, continued = _schedule_new_actions(plan, outcome.actions[book.actions_seen :], now)
    plan.events.append(event(ORCHESTRATOR_COMPLETED, now))
    error = outcome.error or error
    if error is not None:
        plan.status, plan.output = "Failed", json.dumps(orchestrator_failure(book.name, error))
    elif outcome.done and continued is not None:
        plan.status, plan.continue_input = "ContinuedAsNew", continued.get("input")
    elif outcome.done:
        plan.status, plan.output = "Completed", json.dumps(outcome.output)
    return plan


def _allocate(plan: EpisodePlan) -> int:
    task_id = plan.next_event_id
    plan.next_event_id += 1
    return task_id


def _retry_bookkeeping(plan: EpisodePlan, delivered: dict[str, Any], now: float) -> None:
    """What DTFx's RetryInterceptor does for a with-retry task: a failed attempt gets a retry
    timer (firing at once after the last attempt: the SDK still waits for it before it
    raises, §C18); that timer firing schedules the next attempt."""
    kind = delivered["EventType"]
    if kind == TASK_COMPLETED:
        plan.retry.pop(str(delivered["TaskScheduledId"]), None)
    elif kind == TASK_FAILED and str(delivered["TaskScheduledId"]) in plan.retry:
        state = plan.retry.pop(str(delivered["TaskScheduledId"]))
        timer_id = _allocate(plan)
        exhausted = state["attempt"] >= state["max"]
        fire_at = now + (0.0 if exhausted else state["first_ms"] / 1000.0)
        plan.events.append(event(TIMER_CREATED, now, timer_id, FireAt=iso(fire_at)))
        plan.timers.append(
            (event(TIMER_FIRED, now, TimerId=timer_id, FireAt=iso(fire_at)), fire_at)
        )
        plan.retry[f"timer:{timer_id}"] = state
    elif kind == TIMER_FIRED and f"timer:{delivered['TimerId']}" in plan.retry:
        state = plan.retry.pop(f"timer:{delivered['TimerId']}")
        if state["attempt"] < state["max"]:
            task_id = _allocate(plan)
            plan.retry[str(task_id)] = {**state, "attempt": state["attempt"] + 1}
            plan.events.append(
                event(TASK_SCHEDULED, now, task_id, Name=state["name"], Input=state["input"])
            )
            plan.activities.append((task_id, state["name"], state["input"]))


def _schedule_new_actions(
    plan: EpisodePlan, actions: list[dict[str, Any]], now: float
) -> tuple[str | None, dict[str, Any] | None]:
    """Give the actions new since the last episode their ids, in order. Returns an error
    for an action the runtime does not support, and the continue_as_new action if any
    (the SDK drops whatever follows it)."""
    for action in actions:
        kind = action.get("actionType")
        if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
            task_id = _allocate(plan)
            name, payload = action["functionName"], action.get("input")
            plan.events.append(event(TASK_SCHEDULED, now, task_id, Name=name, Input=payload))
            plan.activities.append((task_id, name, payload))
            if kind == CALL_ACTIVITY_WITH_RETRY:
                opts = action["retryOptions"]
                plan.retry[str(task_id)] = {
                    "name": name,
                    "input": payload,
                    "attempt": 1,
                    "max": opts["maxNumberOfAttempts"],
                    "first_ms": opts["firstRetryIntervalInMilliseconds"],
                }
        elif kind == CREATE_TIMER:
            timer_id = _allocate(plan)
            fire_at = action["fireAt"]
            plan.events.append(event(TIMER_CREATED, now, timer_id, FireAt=fire_at))
            plan.timers.append(
                (event(TIMER_FIRED, now, TimerId=timer_id, FireAt=fire_at), parse_iso(fire_at))
            )
        elif kind == CONTINUE_AS_NEW:
            return None, action
        elif kind != WAIT_FOR_EXTERNAL_EVENT:
            return (
                f"action type {kind} is not supported by the local runtime "
                "(activities, timers and continue_as_new are)"
            ), None
    return None, None
