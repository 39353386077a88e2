"""History events and action types of the Durable out-of-proc protocol (pure data).

Event shapes are those ``azure-functions-durable`` 1.7.0 reads in
``models/history/HistoryEvent.py`` (``shared/notes/durable-local.md`` §C12-13); action
types are ``models/actions/ActionType.py`` (§B11).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# History event types (azure.durable_functions.models.history.HistoryEventType)
EXECUTION_STARTED, EXECUTION_TERMINATED = 0, 3
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
TIMER_CREATED, TIMER_FIRED, ORCHESTRATOR_STARTED, ORCHESTRATOR_COMPLETED = 10, 11, 12, 13

# Action types (azure.durable_functions.models.actions.ActionType)
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, CONTINUE_AS_NEW, CREATE_TIMER = 0, 1, 4, 5
WAIT_FOR_EXTERNAL_EVENT, WHEN_ANY, WHEN_ALL = 6, 11, 12

ACTIVE_STATUSES = ("Pending", "Running", "ContinuedAsNew")
"""Statuses the engine still works on (it never suspends an instance)."""

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(t: float) -> str:
    """Epoch seconds → the history's timestamp text (always UTC, microseconds, ``Z``).

    Always timezone-aware on the SDK side: it rejects mixing naive and aware times.
    (``isoformat`` gives the same text as ``strftime(TIME_FORMAT)``, without its per-call
    format parsing: this runs for every event.)"""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(text: str) -> float:
    """An action's ``fireAt`` (``%Y-%m-%dT%H:%M:%S.%fZ``) → epoch seconds."""
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def event(event_type: int, now: float, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    """One history event as the SDK's ``HistoryEvent(**e)`` takes it."""
    return {
        "EventType": event_type,
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": iso(now),
        **fields,
    }


def execution_started(
    name: str,
    input_json: str | None,
    now: float,
    instance_id: str | None = None,
    execution_id: str | None = None,
) -> dict[str, Any]:
    """``ExecutionStarted`` (the SDK needs its ``Version`` key, null or not)."""
    fields: dict[str, Any] = {"Name": name, "Version": "", "Input": input_json}
    if instance_id is not None:
        fields["OrchestrationInstance"] = {"InstanceId": instance_id, "ExecutionId": execution_id}
    return event(EXECUTION_STARTED, now, **fields)
