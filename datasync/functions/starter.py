"""The queue-triggered starter: one ``sync_flow`` orchestration per job.

The instance id ``Workflow-<tenant>-<flow>-<scheduledFor>`` is the dedupe: an instance
that is pending, running or completed means this job already ran (or runs) — skip. Bad
messages raise, so the host retries them and moves them to ``flow-jobs-poison`` after
``maxDequeueCount`` attempts, with the reason.
"""
from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from ..config import env_seconds, fault_point
from ..models import Job, RunRecord
from ..names import format_utc, utcnow
from ..services import get_services
from . import names

bp = df.Blueprint()
log = logging.getLogger("datasync.starter")

ALREADY = ("Pending", "Running", "Completed", "ContinuedAsNew")
REQUEUE_DELAY = 30.0
"""Seconds a deferred job (overlap=queue, maxConcurrentRuns) waits before it is tried again;
``DATASYNC_REQUEUE_DELAY`` overrides it."""


@bp.queue_trigger(arg_name="msg", queue_name=names.JOB_QUEUE,
                  connection=names.STORAGE_CONNECTION)
@bp.durable_client_input(client_name="client")
async def start_flow(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    job = Job.from_message(msg.get_body())
    svc = get_services()
    tenant = svc.tenants.get(job.tenant_id)
    entry = tenant.flow(job.flow_name)
    svc.registry.get(job.flow_name)              # unknown or broken flow: raise → poison
    if tenant.paused or not entry.enabled:
        log.info("skipping %s: %s", job.instance_id,
                 "tenant is paused" if tenant.paused else "flow is disabled")
        return
    instance_id = job.instance_id
    status = await client.get_status(instance_id)
    if status and status.runtime_status and status.runtime_status.value in ALREADY:
        log.info("skipping %s: already %s", instance_id, status.runtime_status.value)
        return
    others = [r for r in svc.runs.active(job.tenant_id) if r.instance_id != instance_id]
    same_flow = [r for r in others if r.flow_name == job.flow_name]
    run = RunRecord(instance_id=instance_id, tenant_id=job.tenant_id,
                    flow_name=job.flow_name, scheduled_for=format_utc(job.scheduled_for),
                    status="Pending")
    if same_flow and entry.overlap == "skip":
        log.info("skipping %s: %s is still running (overlap=skip)", instance_id,
                 same_flow[0].instance_id)
        run.status, run.finished_at = "Skipped", format_utc(utcnow())
        run.error = f"overlap: {same_flow[0].instance_id} was still running"
        svc.runs.record(run)
        return
    if (same_flow and entry.overlap == "queue") or len(others) >= tenant.max_concurrent_runs:
        delay = env_seconds("DATASYNC_REQUEUE_DELAY", REQUEUE_DELAY)
        log.info("deferring %s by %ss: %d runs active for tenant %s", instance_id,
                 delay, len(others), job.tenant_id)
        svc.queues.queue(names.JOB_QUEUE).send(job.to_message(), visibility_delay=delay)
        return
    svc.runs.mark_pending(run)
    fault_point("starter-before-start")          # test hook (tests/faults), off by default
    try:
        await client.start_new(names.ORCHESTRATOR, instance_id,
                               {**_job_input(job), "pagesPerGeneration":
                                svc.settings.pages_per_generation})
    except Exception as exc:
        if "already exists" in str(exc):
            log.info("skipping %s: started concurrently by another worker", instance_id)
            return
        raise
    log.info("started %s", instance_id)


def _job_input(job: Job) -> dict[str, str]:
    return {"tenantId": job.tenant_id, "flowName": job.flow_name,
            "scheduledFor": format_utc(job.scheduled_for)}
