"""Every use of ``azure-functions-durable`` internals, in one place.

Checked against azure-functions-durable **1.7.0** (the range pinned in requirements.txt).
Each function names the SDK module it reaches into; when the SDK is upgraded, re-check
them here (``tests/unit/test_durable_sdk.py`` exercises each one against the installed SDK).

The orchestration *protocol* (context keys, action shapes, ``$OutOfProcData$``) is what the
Durable extension speaks with the SDK; the extension side was read in
Azure/azure-functions-durable-extension v2.13.7 (the DurableTask extension of extension
bundle ``[4.*, 5.0.0)``), file and line named at each use.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .events import (
    CALL_ACTIVITY,
    CALL_ACTIVITY_WITH_RETRY,
    CONTINUE_AS_NEW,
    CREATE_TIMER,
    WAIT_FOR_EXTERNAL_EVENT,
    WHEN_ALL,
    WHEN_ANY,
)

__all__ = [
    "SDK_VERSION",
    "OrchestratorOutcome",
    "ReplaySchema",
    "ReplaySession",
    "close_durable_client_session",
    "fresh_durable_client_session",
    "install_fast_timestamps",
    "invoke_orchestrator",
    "leaf_actions",
    "orchestration_context",
]

SDK_VERSION = "1.7.0"
"""The azure-functions-durable version every function below was checked against."""


class ReplaySchema:
    """``azure.durable_functions.models.ReplaySchema`` values (V1 = 0, V2 = 1, V3 = 2)."""

    V1, V2, V3 = 0, 1, 2


# What OrchestrationTriggerAttributeBindingProvider.cs (lines 230-240, v2.13.7) sends with
# every orchestrator invocation: upperSchemaVersion = SchemaVersion.V2 (1), upperSchemaVersionNew
# = V3 (2); AzureStorageDurabilityProvider.cs: MaximumDelayTime 6 days,
# LongRunningTimerIntervalLength 3 days (TimeSpan "c" format); DurableOrchestrationContext.cs:
# DefaultHttpAsyncRequestSleepTimeMillseconds 30000. The SDK's DurableOrchestrationContext
# takes the larger of upperSchemaVersion/upperSchemaVersionNew it knows (V3 in 1.7.0).
_EXTENSION_CONTEXT = {
    ReplaySchema.V3: ',"upperSchemaVersion":1,"upperSchemaVersionNew":2,'
    '"maximumShortTimerDuration":"6.00:00:00",'
    '"longRunningTimerIntervalDuration":"3.00:00:00",'
    '"defaultHttpAsyncRequestSleepTimeMillseconds":30000}',
    ReplaySchema.V1: ',"upperSchemaVersion":0}',
}


def orchestration_context(
    history_rows: list[str], input_json: str | None, instance_id: str, schema: int = ReplaySchema.V3
) -> str:
    """The orchestrator trigger's JSON, from history rows already serialized (joined as
    text: a long history is not parsed and re-dumped every episode)."""
    return (
        '{"history":['
        + ",".join(history_rows)
        + '],"input":'
        + json.dumps(input_json)
        + ',"instanceId":'
        + json.dumps(instance_id)
        + ',"isReplaying":false,"parentInstanceId":null'
        + _EXTENSION_CONTEXT[schema]
    )


@dataclass(slots=True)
class OrchestratorOutcome:
    """What one orchestrator invocation returned (``models/OrchestratorState.py``)."""

    done: bool = False
    output: Any = None
    actions: list[dict[str, Any]] = field(default_factory=list)  # id-consuming leaves etc.
    error: str | None = None  # the SDK's ``error`` (``str(exc)``), None if none


def invoke_orchestrator(handle: Callable[[str], str], context: str) -> OrchestratorOutcome:
    """Call the ``handle`` that ``Orchestrator.create(fn)`` made (``orchestrator.py``:
    one positional argument, a JSON string or an object with ``.body``; returns the state
    JSON): a full replay of the history in ``context``. See :func:`outcome_of`."""
    return outcome_of(lambda: handle(context))


def outcome_of(call: Callable[[], str]) -> OrchestratorOutcome:
    """What an orchestrator invocation (``call``, returning the SDK's state JSON) returned.

    When user code raises, the SDK raises
    ``Exception(f"{exc}\\n\\n$OutOfProcData$:{state_json}")``
    (``models/TaskOrchestrationExecutor.py``, ``get_orchestrator_state_str``); the extension
    reads that state back (OutOfProcExceptionHelpers.TryExtractOutOfProcStateJson), so do we.
    Anything else raised (BaseException included: the SDK lets SystemExit through) fails the
    instance with that exception's text; it never ends the worker thread."""
    try:
        state = json.loads(call())
    except BaseException as exc:  # noqa: BLE001 - the instance fails, the worker lives
        text = str(exc)
        head, sep, state_json = text.partition("\n\n$OutOfProcData$:")
        state = None
        if sep:
            try:
                state = json.loads(state_json)
            except ValueError:
                state = None
        if not isinstance(state, dict):
            return OrchestratorOutcome(error=text or type(exc).__name__)
        state.setdefault("error", head)
    return OrchestratorOutcome(
        done=bool(state.get("isDone")),
        output=state.get("output"),
        actions=leaf_actions(state.get("actions") or []),
        error=state.get("error") or None,
    )


class ReplaySession:
    """One instance's orchestrator kept alive between episodes (the replay cache).

    A full replay (``Orchestrator.create(fn)``'s ``handle``) builds a
    ``DurableOrchestrationContext`` from the whole history, runs the user's generator from
    the start and drops both. A session does exactly what that ``handle`` does
    (``orchestrator.py``: ``DurableOrchestrationContext.from_json``, ``_input_expected_type``
    from ``handle._df_input_type``, ``Orchestrator(fn).handle(ctx)``) for the first episode,
    then keeps the context, the ``TaskOrchestrationExecutor`` and the suspended generator,
    and for each later episode feeds only the events appended since, through the SDK's own
    ``TaskOrchestrationExecutor.process_event``, the way its ``execute`` loop does
    (``_is_processing_new_events`` false before the episode's ``OrchestratorStarted``, true
    from it; stop once the execution has completed) and reads the state with
    ``get_orchestrator_state_str``. The SDK computes everything; only its history walk is
    split across invocations. A session is used by one thread at a time and, after an
    outcome that is done or failed, not at all.
    """

    __slots__ = ("_context", "_executor", "events")

    def __init__(self, context: Any, executor: Any) -> None:
        self._context = context
        self._executor = executor
        self.events = len(context.histories)  # history events fed so far

    @staticmethod
    def supported(handle: Callable[[str], str]) -> bool:
        """Whether ``handle`` is the SDK's (``Orchestrator.create`` sets
        ``orchestrator_function``): only then can a session stand in for it."""
        return callable(getattr(handle, "orchestrator_function", None))

    @classmethod
    def start(
        cls, handle: Callable[[str], str], context_json: str
    ) -> tuple[ReplaySession, OrchestratorOutcome]:
        """A full replay of ``context_json`` (as ``handle`` does it) that keeps its state."""
        from azure.durable_functions.models.DurableOrchestrationContext import (
            DurableOrchestrationContext,
        )
        from azure.durable_functions.orchestrator import Orchestrator

        fn = handle.orchestrator_function  # type: ignore[attr-defined]
        holder: list[ReplaySession] = []

        def call() -> str:
            ctx = DurableOrchestrationContext.from_json(context_json)
            ctx._input_expected_type = getattr(handle, "_df_input_type", None)
            orchestrator = Orchestrator(fn)
            holder.append(cls(ctx, orchestrator.task_orchestration_executor))
            result: str = orchestrator.handle(ctx)
            return result

        outcome = outcome_of(call)
        if not holder:  # pragma: no cover - from_json itself failed
            raise RuntimeError(outcome.error or "the orchestration context was refused")
        return holder[0], outcome

    def resume(self, new_events: list[dict[str, Any]]) -> OrchestratorOutcome:
        """Feed the events appended to the history since the last invocation (the last
        episode's scheduled/completed events, this episode's OrchestratorStarted and
        delivery) and return the orchestrator's state, as a full replay would."""
        from azure.durable_functions.models.history.HistoryEvent import HistoryEvent
        from azure.durable_functions.models.history.HistoryEventType import HistoryEventType

        executor = self._executor
        events = [HistoryEvent(**e) for e in new_events]
        self._context.histories.extend(events)
        self.events += len(events)
        boundary = -1  # the last OrchestratorStarted: from there on, the events are new
        for i, e in enumerate(events):
            if e.event_type == HistoryEventType.ORCHESTRATOR_STARTED:
                boundary = i

        def call() -> str:
            for i, e in enumerate(events):
                executor._is_processing_new_events = i >= boundary
                executor.process_event(e)
                if executor.has_execution_completed:
                    break
            result: str = executor.get_orchestrator_state_str()
            return result

        return outcome_of(call)


def leaf_actions(actions: list[Any]) -> list[dict[str, Any]]:
    """The SDK's cumulative action list as the leaves the host acts on, in order.

    V1: one inner list per yield. V2/V3 (``schemaVersion`` 1/2): one inner list whose
    ``task_all``/``task_any`` are compound actions (types 12/11 with ``compoundActions``) and
    whose with-retry calls are a type-12 compound around the type-1 action
    (``models/Task.py`` RetryAbleTask / WhenAllTask). Compounds are unwrapped depth-first,
    which is the order the SDK drew the children's ids in."""
    leaves: list[dict[str, Any]] = []
    stack: list[Any] = list(reversed(actions))
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif item.get("actionType") in (WHEN_ALL, WHEN_ANY):
            stack.extend(reversed(item.get("compoundActions") or []))
        else:
            leaves.append(item)
    return leaves


def takes_an_id(action: dict[str, Any]) -> bool:
    """Whether the SDK drew a sequence number for this leaf (§C14: wait_for_external_event
    is keyed by name and takes none; continue_as_new ends the episode)."""
    return action.get("actionType") not in (CONTINUE_AS_NEW, WAIT_FOR_EXTERNAL_EVENT)


SUPPORTED_ACTIONS = (
    CALL_ACTIVITY,
    CALL_ACTIVITY_WITH_RETRY,
    CREATE_TIMER,
    CONTINUE_AS_NEW,
    WAIT_FOR_EXTERNAL_EVENT,
)


def install_fast_timestamps() -> None:
    """Parse history timestamps without dateutil's generic parser.

    ``models/history/HistoryEvent.py`` builds every ``HistoryEvent`` of every replay with
    its module-global ``dt_parse`` (``dateutil.parser.parse``); for the timestamps this
    engine writes (``...T..:..:..ffffffZ``) that was most of an episode's cost. This
    replaces that module global with a parser giving the same value (aware, ``tzutc()``);
    any other text still goes to dateutil. Idempotent."""
    from dateutil.tz import tzutc

    module: Any = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")
    original: Callable[..., datetime] = module.dt_parse
    if getattr(original, "_datasync_fast", False):
        return
    utc = tzutc()

    def parse(text: Any, *args: Any, **kwargs: Any) -> datetime:
        if not args and not kwargs and isinstance(text, str) and text.endswith("Z"):
            try:
                return datetime.fromisoformat(text[:-1]).replace(tzinfo=utc)
            except ValueError:
                pass
        return original(text, *args, **kwargs)

    parse._datasync_fast = True  # type: ignore[attr-defined]
    module.dt_parse = parse


def fresh_durable_client_session() -> None:
    """Forget the Durable client's aiohttp session before a new event loop uses it.

    ``models/utils/http_utils.py`` keeps one module-global ``_client_session`` and
    ``_session_lock`` (an ``asyncio.Lock``) bound to the first loop that used them; a runtime
    with a new loop fails with "Event loop is closed" unless both are reset
    (``shared/notes/durable-local.md`` §E25)."""
    from azure.durable_functions.models.utils import http_utils

    http_utils._client_session = None
    http_utils._session_lock = asyncio.Lock()


async def close_durable_client_session() -> None:
    """Close that module-global session (run it on the loop that used it)."""
    from azure.durable_functions.models.utils import http_utils

    session = http_utils._client_session
    if session is not None and not session.closed:
        await session.close()
    http_utils._client_session = None
