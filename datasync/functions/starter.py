"""The queue-triggered starter: one ``sync_flow`` orchestration per job.

The policy (paused, disabled, overlap, ``maxConcurrentRuns``) and the dedupe (an atomic
run-record create before ``start_new``) are :mod:`datasync.admission`'s. Bad messages raise,
so the host retries them and moves them to ``flow-jobs-poison`` after ``maxDequeueCount``
attempts, with the reason.

With telemetry on, the job is handled inside a ``process flow-jobs`` span that continues
the trace whose ``traceparent`` the job carries; that span's context goes into the
orchestration input, and the trace id onto the run record.
"""

from __future__ import annotations

import asyncio
import inspect
from functools import cache
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
import azure.functions as func

from .. import telemetry
from ..models import Job
from .bindings import JOB_QUEUE, STORAGE_CONNECTION
from .guard import guarded
from .provider import AppProvider

if TYPE_CHECKING:
    from ..app import App
    from ..telemetry.live import Live

__all__ = ["blueprint"]


@cache
def _takes_traceparent(admit: Any) -> bool:
    return "traceparent" in inspect.signature(admit).parameters


async def _admit_traced(
    live: Live,
    current: App,
    job: Job,
    msg: func.QueueMessage,
    client: df.DurableOrchestrationClient,
) -> None:
    message_id = getattr(msg, "id", None)
    dequeue_count = getattr(msg, "dequeue_count", None)
    with live.process(current, job, message_id, dequeue_count) as processing:
        if _takes_traceparent(type(current.admission).admit):
            outcome = await current.admission.admit(job, client, traceparent=processing.traceparent)
        else:  # pragma: no cover - until admission takes the keyword
            outcome = await current.admission.admit(job, client)
        processing.outcome = outcome
    if outcome == "started":  # this starter created the run record: it names the trace
        annotate = getattr(current.runs, "annotate", None)
        if annotate is not None:
            await asyncio.to_thread(annotate, job.instance_id, trace_id=processing.trace_id)


def blueprint(app: AppProvider) -> df.Blueprint:
    bp = df.Blueprint()

    @bp.queue_trigger(arg_name="msg", queue_name=JOB_QUEUE, connection=STORAGE_CONNECTION)
    @bp.durable_client_input(client_name="client")
    @guarded
    async def start_flow(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
        job = Job.from_message(msg.get_body())
        live = telemetry.active()
        if live is None:
            await app().admission.admit(job, client)
        else:
            await _admit_traced(live, app(), job, msg, client)

    return bp
