"""The ``sync_flow`` orchestrator: deterministic, replayed — no I/O, clock or randomness.

Input: :class:`~datasync.contracts.RunInput` (the job; after a ``continue_as_new`` also
the carried cursor, state, page number and counters).
"""

from __future__ import annotations

import re
from collections.abc import Generator
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

__all__ = ["STEP_RETRY", "blueprint", "sync_flow"]

STEP_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=3)
"""Activity-level retries (on top of ``ctx.http``'s own per-request retries)."""

MAX_ERROR = 2000


def _error_text(exc: Exception) -> str:
    """The failure's own text, without the SDK's ``Reason \\n Details`` framing, and with
    the extension's ``failed:  `` (two spaces) tidied to one — the same on every host."""
    reason = str(exc).split(" \n ", 1)[0].strip()
    return re.sub(r"^(Activity function '[^']*' failed:)\s+", r"\1 ", reason)[:MAX_ERROR]


def sync_flow(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Pull → transform → push page by page, checkpointing after each push;
    ``continue_as_new`` every ``pagesPerGeneration`` pages keeps the history short."""
    job = RunInput.from_json(context.get_input())
    ref = {"tenant_id": job.tenant_id, "flow_name": job.flow_name, "run_id": context.instance_id}
    carry = job.carry
    try:
        if carry is None:
            carry = Carry.from_json(
                (
                    yield context.call_activity_with_retry(
                        BEGIN_RUN,
                        STEP_RETRY,
                        BeginInput(**ref, scheduled_for=job.scheduled_for).to_json(),
                    )
                )
            )
        for _ in range(job.pages_per_generation):
            page_no = carry.pages + 1
            key = page_key(context.instance_id, page_no)
            pulled = PullOutput.from_json(
                (
                    yield context.call_activity_with_retry(
                        PULL_PAGE,
                        STEP_RETRY,
                        PullInput(
                            **ref, page_key=key, cursor=carry.cursor, state=carry.state
                        ).to_json(),
                    )
                )
            )
            out = TransformOutput(key=None, count=0, state=pulled.state)
            if pulled.count and pulled.key is not None:
                out = TransformOutput.from_json(
                    (
                        yield context.call_activity_with_retry(
                            TRANSFORM_PAGE,
                            STEP_RETRY,
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
                    yield context.call_activity_with_retry(
                        PUSH_PAGE,
                        STEP_RETRY,
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
            stuck = not pulled.count and pulled.has_more and pulled.cursor == carry.cursor
            carry = Carry(**counters, cursor=pulled.cursor, state=pushed.state)
            if stuck:
                raise ValueError(
                    "flow returned an empty page with has_more=True and an "
                    "unchanged cursor; stopping instead of looping forever"
                )
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
