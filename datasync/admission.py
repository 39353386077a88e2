"""Admission: what the starter does with one job — start it, skip it, or defer it.

:func:`decide` is the policy, pure (no I/O): given the job, its tenant document and the
tenant's active runs it returns :class:`Start`, :class:`Skip` or :class:`Defer`.

:class:`Admission` applies it over the app's ports, and makes the start itself the dedupe:
a run record keyed by the instance id (tenant, flow, ``scheduledFor``) is created with a
conditional insert before ``start_new``; whoever creates it starts the run, everyone else
skips — on every host, whatever the Durable backend does with an existing instance id.
A starter that died between the insert and ``start_new`` leaves a Pending record without
an instance: a redelivery of the job takes it over once it is older than
``Settings.start_claim_seconds`` (an atomic compare-and-set, so one redelivery wins).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from .contracts import RunInput
from .exceptions import NotFound
from .models import FlowEntry, Job, RunRecord, Tenant
from .names import format_utc, utcnow
from .ports import FLOW_JOBS

if TYPE_CHECKING:
    from .app import App

__all__ = ["Admission", "Decision", "Defer", "DurableStarter", "Skip", "Start", "decide"]

log = logging.getLogger("datasync.starter")


@dataclass(frozen=True, slots=True)
class Start:
    """Start the run now."""


@dataclass(frozen=True, slots=True)
class Skip:
    """Do not run this job. ``record``: keep a ``Skipped`` run record saying why."""

    reason: str
    record: bool = False


@dataclass(frozen=True, slots=True)
class Defer:
    """Put the job back on the queue, visible again after ``delay`` seconds."""

    delay: float
    reason: str


Decision = Start | Skip | Defer


def decide(
    job: Job, tenant: Tenant, entry: FlowEntry, active: list[RunRecord], *, requeue_delay: float
) -> Decision:
    """The admission policy for ``job``.

    ``active`` are the tenant's Pending/Running runs. Paused tenant or disabled flow →
    skip. Another run of the same flow active → by the flow's ``overlap``: ``skip``
    (recorded), ``queue`` (defer), ``allow`` (start). More than the tenant's
    ``maxConcurrentRuns`` active → defer."""
    if tenant.paused:
        return Skip("tenant is paused")
    if not entry.enabled:
        return Skip("flow is disabled")
    others = [r for r in active if r.instance_id != job.instance_id]
    same_flow = [r for r in others if r.flow_name == job.flow_name]
    if same_flow and entry.overlap == "skip":
        return Skip(f"overlap: {same_flow[0].instance_id} was still running", record=True)
    if same_flow and entry.overlap == "queue":
        return Defer(requeue_delay, f"{same_flow[0].instance_id} is still running (overlap=queue)")
    if len(others) >= tenant.max_concurrent_runs:
        return Defer(
            requeue_delay,
            f"{len(others)} runs active for tenant {job.tenant_id} "
            f"(maxConcurrentRuns={tenant.max_concurrent_runs})",
        )
    return Start()


class DurableStarter(Protocol):
    """The part of ``DurableOrchestrationClient`` the starter uses."""

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any | None = None,
    ) -> str: ...

    async def get_status(self, instance_id: str) -> Any: ...


_ORCHESTRATOR = "sync_flow"


class Admission:
    """Applies :func:`decide` to a job and starts its orchestration through a durable client.

    Store calls are synchronous; they run in a worker thread (``asyncio.to_thread``) so the
    Functions worker's event loop is never blocked."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def admit(self, job: Job, client: DurableStarter) -> str:
        """Handle one job; returns what happened (``started``/``skipped``/``deferred``).

        Raises for a job that can never run (unknown tenant or flow, broken flow file), so
        the host retries it and finally moves it to the poison queue with the reason."""
        decision = await asyncio.to_thread(self._decide, job)
        instance_id = job.instance_id
        if isinstance(decision, Skip):
            log.info("skipping %s: %s", instance_id, decision.reason)
            return "skipped"
        if isinstance(decision, Defer):
            log.info("deferring %s by %ss: %s", instance_id, decision.delay, decision.reason)
            await asyncio.to_thread(
                self.app.queues.queue(FLOW_JOBS).send,
                job.to_message(),
                visibility_delay=decision.delay,
            )
            return "deferred"
        claimed = await asyncio.to_thread(self._claim, job)
        if claimed is not True and (claimed is not None or not await self._take_over(job, client)):
            log.info("skipping %s: %s", instance_id, claimed or "it is being started")
            return "skipped"
        run_input = RunInput(
            tenant_id=job.tenant_id,
            flow_name=job.flow_name,
            scheduled_for=format_utc(job.scheduled_for),
            pages_per_generation=self.app.settings.pages_per_generation,
        )
        try:
            await client.start_new(_ORCHESTRATOR, instance_id, run_input.to_json())
        except Exception as exc:
            if "already exists" in str(exc):
                log.info("skipping %s: started concurrently by another worker", instance_id)
                return "skipped"
            raise
        log.info("started %s", instance_id)
        return "started"

    def _decide(self, job: Job) -> Decision:
        app = self.app
        tenant = app.tenants.get(job.tenant_id)
        entry = tenant.flow(job.flow_name)
        app.registry.get(job.flow_name)  # unknown or broken flow: raise → poison
        decision = decide(
            job,
            tenant,
            entry,
            app.runs.active(job.tenant_id),
            requeue_delay=app.settings.requeue_delay,
        )
        if isinstance(decision, Skip) and decision.record:
            # a conditional insert: a redelivered job never overwrites its run's record
            app.runs.create(
                RunRecord(
                    instance_id=job.instance_id,
                    tenant_id=job.tenant_id,
                    flow_name=job.flow_name,
                    scheduled_for=format_utc(job.scheduled_for),
                    status="Skipped",
                    finished_at=format_utc(utcnow()),
                    error=decision.reason,
                )
            )
        return decision

    def _claim(self, job: Job) -> bool | str | None:
        """True: this starter created the run record and starts the run. A reason text:
        the run exists (skip). None: a Pending record nobody has started yet."""
        run = RunRecord(
            instance_id=job.instance_id,
            tenant_id=job.tenant_id,
            flow_name=job.flow_name,
            scheduled_for=format_utc(job.scheduled_for),
            status="Pending",
        )
        if self.app.runs.create(run):
            return True
        try:
            existing = self.app.runs.get(job.instance_id)
        except NotFound:  # deleted meanwhile: a later delivery retries
            return "its run record vanished while starting; retrying later"
        if existing.status != "Pending":
            return f"already {existing.status}"
        return None

    async def _take_over(self, job: Job, client: DurableStarter) -> bool:
        """A Pending record: take it over iff its instance does not exist and the claim is
        stale (the starter that made it died before ``start_new``)."""
        status = await client.get_status(job.instance_id)
        if status:  # the instance exists: it was started
            return False
        older_than = utcnow() - timedelta(seconds=self.app.settings.start_claim_seconds)
        return await asyncio.to_thread(
            self.app.runs.take_over_pending, job.instance_id, older_than=older_than
        )
