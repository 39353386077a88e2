"""The ``sync_flow`` orchestrator: deterministic, replayed — no I/O, clock or randomness.

Input: :class:`~datasync.contracts.RunInput` (the job; after a ``continue_as_new`` also
the carried cursor, state, page number and counters).
"""

from __future__ import annotations

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
    context: df.DurableOrchestrationContext, name: str, payload: Any
) -> Generator[Any, Any, Any]:
    """``call_activity`` tried up to :data:`STEP_ATTEMPTS` times, :data:`STEP_RETRY_SECONDS`
    apart (a durable timer: deterministic on replay), unless the failure is permanent."""
    attempt = 1
    while True:
        try:
            return (yield context.call_activity(name, payload))
        except Exception as exc:
            if attempt >= STEP_ATTEMPTS or is_permanent(exc):
                raise
        attempt += 1
        yield context.create_timer(
            context.current_utc_datetime + timedelta(seconds=STEP_RETRY_SECONDS)
        )


def sync_flow(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Pull → transform → push page by page, checkpointing after each push;
    ``continue_as_new`` every ``pagesPerGeneration`` pages keeps the history short (a
    generation runs on while the cursor is stalled, so the stall count needs no carry)."""
    job = RunInput.from_json(context.get_input())
    ref = {
        "tenant_id": job.tenant_id,
        "flow_name": job.flow_name,
        "run_id": context.instance_id,
        "traceparent": job.traceparent,
    }
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
        generation_pages = 0
        stalled = 0
        while generation_pages < job.pages_per_generation or stalled:
            generation_pages += 1
            page_no = carry.pages + 1
            key = page_key(context.instance_id, page_no)
            pulled = PullOutput.from_json(
                (
                    yield from _step(
                        context,
                        PULL_PAGE,
                        PullInput(
                            **ref, page_key=key, cursor=carry.cursor, state=carry.state
                        ).to_json(),
                    )
                )
            )
            stalled = stalled + 1 if pulled.has_more and pulled.cursor == carry.cursor else 0
            if stalled >= STALLED_PAGES:
                raise ValueError(
                    f"flow {job.flow_name!r}: the cursor did not advance for {stalled} pages "
                    "in a row while has_more=True; stopping instead of pulling the same page "
                    "forever (pull must return the next cursor with every page that has more)"
                )
            out = TransformOutput(key=None, count=0, state=pulled.state)
            if pulled.count and pulled.key is not None:
                out = TransformOutput.from_json(
                    (
                        yield from _step(
                            context,
                            TRANSFORM_PAGE,
                            TransformInput(
                                **ref, page_key=key, key=pulled.key, state=pulled.state
                            ).to_json(),
                        )
                    )
                )
            counters: dict[str, Any] = {
                "pages": page_no,
                "records_in": carry.records_in + pulled.count,
                "records_out": carry.records_out + out.count,
            }
            pushed = PushOutput.from_json(
                (
                    yield from _step(
                        context,
                        PUSH_PAGE,
                        PushInput(
                            **ref,
                            **counters,
                            page_key=key,
                            key=out.key,
                            count=out.count,
                            cursor=pulled.cursor,
                            state=out.state,
                        ).to_json(),
                    )
                )
            )
            carry = Carry(**counters, cursor=pulled.cursor, state=pushed.state)
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
        context.continue_as_new(
            RunInput(
                tenant_id=job.tenant_id,
                flow_name=job.flow_name,
                scheduled_for=job.scheduled_for,
                pages_per_generation=job.pages_per_generation,
                carry=carry,
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
