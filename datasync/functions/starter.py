"""The queue-triggered starter: one ``sync_flow`` orchestration per job.

The policy (paused, disabled, overlap, ``maxConcurrentRuns``) and the dedupe (an atomic
run-record create before ``start_new``) are :mod:`datasync.admission`'s. Bad messages raise,
so the host retries them and moves them to ``flow-jobs-poison`` after ``maxDequeueCount``
attempts, with the reason.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from ..models import Job
from .bindings import JOB_QUEUE, STORAGE_CONNECTION
from .guard import guarded
from .provider import AppProvider

__all__ = ["blueprint"]


def blueprint(app: AppProvider) -> df.Blueprint:
    bp = df.Blueprint()

    @bp.queue_trigger(arg_name="msg", queue_name=JOB_QUEUE, connection=STORAGE_CONNECTION)
    @bp.durable_client_input(client_name="client")
    @guarded
    async def start_flow(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
        await app().admission.admit(Job.from_message(msg.get_body()), client)

    return bp
