"""The ``sync_flow`` orchestrator: deterministic, replayed — no I/O, clock or randomness.

Input: :class:`~datasync.contracts.RunInput` (the job; after a ``continue_as_new`` also
the carried cursor, state, page number and counters).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from ..contracts import (
    BeginInput,
    Carry,
    FinishInput,
    PullInput,
    PullOutput,
    PushInput,
    PushOutput,
    RunInput,
    TransformInput,
    TransformOutput,
)
from ..names import page_key
from .bindings import BEGIN_RUN, FINISH_RUN, ORCHESTRATOR, PULL_PAGE, PUSH_PAGE, TRANSFORM_PAGE

__all__ = [
    "PERMANENT_ERRORS",
    "STALLED_PAGES",
    "STEP_ATTEMPTS",
    "STEP_RETRY_SECONDS",
    "blueprint",
    "is_permanent",
    "sync_flow",
]

STEP_ATTEMPTS = 3
"""Tries of one step (on top of ``ctx.http``'s own per-request retries)."""
STEP_RETRY_SECONDS = 2.0
"""Wait between two tries of a step (a durable timer)."""
STALLED_PAGES = 3
"""Pages in a row whose cursor did not advance while ``has_more`` stayed true after which
the run fails (the third is not pushed)."""
PERMANENT_ERRORS = frozenset(
    {
        "PermanentError",
        "SecretNotFound",
        "ConfigError",
        "MissingConfigKey",
        "ValidationError",
        "InvalidDocument",
        "FlowNotFound",
        "UnknownFlow",
        "FlowLoadError",
        "DuplicateFlow",
        "ActivityProcessDied",  # the embedded runtime: the process died N times in the step
    }
)
"""Failures a retry will not fix, by the type name the failure reason keeps (activities
raise redacted errors with the original type name: :mod:`.guard`): the run fails at once."""

MAX_ERROR = 2000
_FAILED_TYPE = re.compile(r"Activity function '[^']*' failed:\s+([A-Za-z_]\w*): ")


def _error_text(exc: Exception) -> str:
    """The failure's own text, without the SDK's ``Reason \\n Details`` framing, and with
    the extension's ``failed:  `` (two spaces) tidied to one — the same on every host."""
    reason = str(exc).split(" \n ", 1)[0].strip()
    return re.sub(r"^(Activity function '[^']*' failed:)\s+", r"\1 ", reason)[:MAX_ERROR]


def is_permanent(exc: Exception) -> bool:
    """A failed activity whose error type is one of :data:`PERMANENT_ERRORS`."""
    match = _FAILED_TYPE.match(str(exc))
    return match is not None and match.group(1) in PERMANENT_ERRORS


def _step(
    context: df.DurableOrchestrationContext,
    name: str,
    payload: Any,
    halt: list[Exception] | None = None,
) -> Generator[Any, Any, Any]:
    """``call_activity`` tried up to :data:`STEP_ATTEMPTS` times, :data:`STEP_RETRY_SECONDS`
    apart (a durable timer: deterministic on replay), unless the failure is permanent or
    the step runs beside another that has failed (``halt`` holds its error)."""
    attempt = 1
    while True:
        try:
            return (yield context.call_activity(name, payload))
        except Exception as exc:
            if attempt >= STEP_ATTEMPTS or is_permanent(exc) or halt:
                raise
            error = exc
        attempt += 1
        yield context.create_timer(
            context.current_utc_datetime + timedelta(seconds=STEP_RETRY_SECONDS)
        )
        if halt:  # the step beside this one failed while this one waited to retry
            raise error


Steps = Generator[Any, Any, Any]


def _together(
    context: df.DurableOrchestrationContext,
    first: Steps,
    second: Steps,
    halt: list[Exception],
) -> Generator[Any, Any, tuple[Any, Any]]:
    """Run two step sequences at once (``task_any`` over their pending tasks: replayed in
    history order, so deterministic) and return both results.

    ``first`` is the earlier page's work: when ``second`` fails, ``first`` still runs to
    its end and ``second``'s error is raised after it; when ``first`` fails, ``second``'s
    in-flight activity settles, it starts no retry (``second``'s steps share ``halt``,
    which gets ``first``'s error), and ``first``'s error is raised."""
    fibers = [first, second]
    tasks: list[Any] = [None, None]
    results: list[Any] = [None, None]
    errors: list[Exception | None] = [None, None]
    running = [True, True]

    def advance(i: int, value: Any = None, error: Exception | None = None) -> None:
        try:
            tasks[i] = fibers[i].throw(error) if error is not None else fibers[i].send(value)
        except StopIteration as stop:
            running[i], results[i] = False, stop.value
        except Exception as exc:  # noqa: BLE001 - the step's final failure
            running[i], errors[i] = False, exc
            if i == 0:
                halt.append(exc)

    advance(0)
    advance(1)
    while running[0] or running[1]:
        if running[0] and running[1]:
            done = yield context.task_any([tasks[0], tasks[1]])
            i = 0 if done is tasks[0] else 1
            if isinstance(done.result, Exception):
                advance(i, error=done.result)
            else:
                advance(i, done.result)
        else:
            i = 0 if running[0] else 1
            try:
                value = yield tasks[i]
            except Exception as exc:  # noqa: BLE001 - handed to the step's own retry logic
                advance(i, error=exc)
            else:
                advance(i, value)
    if errors[0] is not None:
        raise errors[0]
    if errors[1] is not None:
        raise errors[1]
    return results[0], results[1]


def _merged(base: dict[str, Any], pulled: dict[str, Any], pushed: dict[str, Any]) -> dict[str, Any]:
    """``ctx.state`` for page N+1 when its pull ran beside page N's transform and push:
    the pull saw ``base`` (pull N's state) and left ``pulled``; its changes (top-level
    keys set or removed) are applied on top of what page N's push left, ``pushed`` — so
    a key both wrote keeps the pull's value, as in page order."""
    state = dict(pushed)
    for key, value in pulled.items():
        if key not in base or base[key] != value:
            state[key] = value
    for key in base:
        if key not in pulled:
            state.pop(key, None)
    return state


def sync_flow(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Pull → transform → push page by page, checkpointing after each push (in page
    order); the pull of page N+1 runs beside page N's transform and push unless the flow
    opted out (``pipeline = False``). ``continue_as_new`` every ``pagesPerGeneration`` pages
    keeps the history short (a page pulled by then travels in the carry; a generation runs
    on while the cursor is stalled, so the stall count needs no carry)."""
    job = RunInput.from_json(context.get_input())
    ref = {
        "tenant_id": job.tenant_id,
        "flow_name": job.flow_name,
        "run_id": context.instance_id,
        "traceparent": job.traceparent,
    }

    def pull(page_no: int, cursor: Any, state: dict[str, Any], halt: list[Exception]) -> Steps:
        payload = PullInput(
            **ref, page_key=page_key(context.instance_id, page_no), cursor=cursor, state=state
        ).to_json()
        return PullOutput.from_json((yield from _step(context, PULL_PAGE, payload, halt)))

    def page_work(page_no: int, pulled: PullOutput, before: Carry, halt: list[Exception]) -> Steps:
        """Transform (unless empty, or the flow has no ``transform``: the pulled page is
        pushed as it was staged) and push page ``page_no``; the push checkpoints it."""
        key = page_key(context.instance_id, page_no)
        out = TransformOutput(key=None, count=0, state=pulled.state)
        if pulled.count and pulled.key is not None and not before.transform:
            out = TransformOutput(key=pulled.key, count=pulled.count, state=pulled.state)
        elif pulled.count and pulled.key is not None:
            payload = TransformInput(**ref, page_key=key, key=pulled.key, state=pulled.state)
            out = TransformOutput.from_json(
                (yield from _step(context, TRANSFORM_PAGE, payload.to_json(), halt))
            )
        counters: dict[str, Any] = {
            "pages": page_no,
            "records_in": before.records_in + pulled.count,
            "records_out": before.records_out + out.count,
        }
        push = PushInput(
            **ref,
            **counters,
            page_key=key,
            key=out.key,
            count=out.count,
            cursor=pulled.cursor,
            state=out.state,
        )
        pushed = PushOutput.from_json((yield from _step(context, PUSH_PAGE, push.to_json(), halt)))
        return dataclasses.replace(
            before, **counters, cursor=pulled.cursor, state=pushed.state, prefetched=None
        )

    carry = job.carry
    try:
        if carry is None:
            carry = Carry.from_json(
                (
                    yield from _step(
                        context,
                        BEGIN_RUN,
                        BeginInput(**ref, scheduled_for=job.scheduled_for).to_json(),
                    )
                )
            )
        pulled = carry.prefetched
        carry = dataclasses.replace(carry, prefetched=None)
        if pulled is None:
            pulled = yield from pull(carry.pages + 1, carry.cursor, carry.state, [])
        generation_pages = 0
        stalled = 0
        while True:
            generation_pages += 1
            page_no = carry.pages + 1
            stalled = stalled + 1 if pulled.has_more and pulled.cursor == carry.cursor else 0
            if stalled >= STALLED_PAGES:
                raise ValueError(
                    f"flow {job.flow_name!r}: the cursor did not advance for {stalled} pages "
                    "in a row while has_more=True; stopping instead of pulling the same page "
                    "forever (pull must return the next cursor with every page that has more)"
                )
            ahead: PullOutput | None = None
            if carry.pipeline and pulled.has_more:
                halt: list[Exception] = []
                done, ahead = yield from _together(
                    context,
                    page_work(page_no, pulled, carry, []),
                    pull(page_no + 1, pulled.cursor, pulled.state, halt),
                    halt,
                )
                ahead = dataclasses.replace(
                    ahead, state=_merged(pulled.state, ahead.state, done.state)
                )
            else:
                done = yield from page_work(page_no, pulled, carry, [])
            carry = done
            if not pulled.has_more:
                yield context.call_activity(
                    FINISH_RUN, FinishInput(**ref, status="Completed").to_json()
                )
                return {
                    "status": "Completed",
                    "pages": carry.pages,
                    "recordsIn": carry.records_in,
                    "recordsOut": carry.records_out,
                }
            if generation_pages >= job.pages_per_generation and not stalled:
                break
            if ahead is None:
                ahead = yield from pull(page_no + 1, carry.cursor, carry.state, [])
            pulled = ahead
        context.continue_as_new(
            RunInput(
                tenant_id=job.tenant_id,
                flow_name=job.flow_name,
                scheduled_for=job.scheduled_for,
                pages_per_generation=job.pages_per_generation,
                carry=dataclasses.replace(carry, prefetched=ahead),
                traceparent=job.traceparent,
            ).to_json()
        )
        return None
    except Exception as exc:  # noqa: BLE001 - any failure finishes the run as Failed
        error = _error_text(exc)
        yield context.call_activity(
            FINISH_RUN, FinishInput(**ref, status="Failed", error=error).to_json()
        )
        raise RuntimeError(error) from None


def blueprint() -> df.Blueprint:
    """The orchestration trigger (it needs no app: an orchestrator does no I/O)."""
    bp = df.Blueprint()
    bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)(sync_flow)
    return bp
