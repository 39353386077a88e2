"""Admission: what the starter does with one job — start it, skip it, or defer it.

:func:`decide` is the policy, pure (no I/O): given the job, its tenant document and the
tenant's active runs it returns :class:`Start`, :class:`Skip` or :class:`Defer`.

:class:`Admission` applies it over the app's ports, and makes the start itself the dedupe:
a run record keyed by the instance id (tenant, flow, ``scheduledFor``) is created with a
conditional insert before ``start_new``; whoever creates it starts the run, everyone else
skips — on every host, whatever the Durable backend does with an existing instance id.
That insert is also the overlap and ``maxConcurrentRuns`` check: ``RunStore.admit`` makes
both in one atomic step (a SQLite write transaction, the memory store's lock, an
etag-guarded admission gate on Cosmos), so jobs of one flow or tenant admitted at the same
time never all start. A rerun's record names the run it reruns (``rerun_of``).
A starter that died between the insert and ``start_new`` leaves a Pending record without
an instance: a redelivery of the job takes it over once it is older than
``Settings.start_claim_seconds`` (an atomic compare-and-set, so one redelivery wins); a
redelivery that comes sooner is deferred until then, so the job is never dropped.

Run records are reconciled with their Durable instances (:func:`settle` is the pure rule,
:meth:`Admission.reconcile` applies it): when the store's check holds a job back, each
active record it names is checked against ``get_status``; one whose instance has ended
(terminated through the Durable API, or its history lost) is ended first, as its instance
ended, with the reason, and the job is admitted again.

A job never runs under a document that no longer allows it: a tenant document that no
longer parses, a stored schedule that is invalid or not the job's revision, or a flow no
flow file defines any more — the job is recorded ``Superseded`` (a rerun or hand-queued
job: ``Skipped``) with the validation message, not retried into the poison queue, and
other tenants' jobs are untouched. A flow whose file is broken or ambiguous is a code
problem a deploy fixes: its jobs are retried and then poisoned with the reason, so
``poison replay`` runs them once the file is fixed (nothing is lost).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from . import telemetry
from .contracts import RunInput
from .exceptions import InvalidDocument, NotFound, ValidationError
from .functions.bindings import ORCHESTRATOR
from .models import FlowEntry, Job, RunRecord, Tenant, parse_schedule_options
from .names import format_utc, parse_utc, utcnow
from .names import instance_id as instance_id_of
from .ports import FLOW_JOBS, DueFlow
from .registry import UnknownFlow
from .schedule import (
    jitter_offset,
    next_occurrence,
    revision,
    validate_cron,
    validate_timezone,
)

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "Admission",
    "Decision",
    "Defer",
    "DurableStarter",
    "Ending",
    "Skip",
    "Start",
    "Supersede",
    "decide",
    "runtime_status",
    "settle",
    "superseded_reason",
]

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


@dataclass(frozen=True, slots=True)
class Supersede:
    """The job was enqueued under a schedule that has changed since: record it
    ``Superseded`` with ``reason`` and do not run it."""

    reason: str


Decision = Start | Skip | Defer | Supersede


def superseded_reason(job: Job, tenant: Tenant | None, entry: FlowEntry | None) -> str | None:
    """Why a job that carries a schedule revision no longer matches its flow (None: it
    matches, or it carries none). ``tenant``/``entry`` None: deleted."""
    if job.revision is None or job.rerun is not None:
        return None
    if tenant is None:
        return f"tenant {job.tenant_id} was deleted after the job was enqueued"
    if entry is None:
        return f"flow {job.flow_name} was removed after the job was enqueued"
    current = entry.revision(tenant)
    if current == job.revision:
        return None
    if tenant.paused:
        return "tenant was paused after the job was enqueued"
    if not entry.enabled:
        return "flow was disabled after the job was enqueued"
    return (
        f"the flow's schedule changed after the job was enqueued "
        f"(revision {job.revision} → {current})"
    )


def _newer_due(job: Job, tenant: Tenant, entry: FlowEntry, now: datetime) -> datetime | None:
    """The flow's next occurrence after ``job``'s when its job is due by ``now`` (visible,
    jitter included) and allowed by the flow's options; else None."""
    try:
        newer = next_occurrence(entry.cron, tenant.timezone, job.scheduled_for)
    except Exception:  # noqa: BLE001 - a cron that never fires again: nothing newer
        return None
    options = entry.schedule_options()
    visible = newer + timedelta(seconds=jitter_offset(job.tenant_id, job.flow_name, options.jitter))
    return newer if visible <= now and options.allows(newer) else None


def decide(
    job: Job,
    tenant: Tenant,
    entry: FlowEntry,
    active: list[RunRecord],
    *,
    requeue_delay: float,
    now: datetime | None = None,
) -> Decision:
    """The admission policy for ``job``.

    ``active`` are the tenant's Pending/Running runs. Paused tenant or disabled flow →
    skip. Another run of the same flow active → by the flow's ``overlap``: ``skip``
    (recorded), ``queue`` (defer), ``bufferOne`` (defer only the newest due occurrence:
    an older waiting one is skipped, recorded, once a newer one is due — so at most one
    waits), ``allow`` (start). More than the tenant's ``maxConcurrentRuns`` active →
    defer."""
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
    if same_flow and entry.overlap == "bufferOne":
        newer = _newer_due(job, tenant, entry, now or utcnow())
        if newer is not None:
            return Skip(
                f"overlap=bufferOne: {same_flow[0].instance_id} was still running and a newer "
                f"occurrence ({format_utc(newer)}) is due; only the newest waits",
                record=True,
            )
        return Defer(
            requeue_delay, f"{same_flow[0].instance_id} is still running (overlap=bufferOne)"
        )
    if len(others) >= tenant.max_concurrent_runs:
        return Defer(
            requeue_delay,
            f"{len(others)} runs active for tenant {job.tenant_id} "
            f"(maxConcurrentRuns={tenant.max_concurrent_runs})",
        )
    return Start()


_RUN_INPUT_FIELDS = frozenset(f.name for f in dataclasses.fields(RunInput))

ENDED_INSTANCE = ("Completed", "Failed", "Terminated")
"""Durable runtime statuses of an instance that will not run again."""
_RUN_ACTIVE = ("Pending", "Running")
_MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class Ending:
    """How to end a run record whose orchestration is no longer running."""

    status: str  # Completed | Failed | Terminated
    error: str | None


def runtime_status(status: Any) -> str | None:
    """The runtime status (``"Running"``, ``"Terminated"`` …) of what ``get_status``
    returned: a ``DurableOrchestrationStatus`` (its enum or a plain string). None when the
    instance does not exist (the SDK's status is falsy then); ``"Unknown"`` when it exists
    but shows no status."""
    if not status:
        return None
    value = getattr(status, "runtime_status", None)
    value = getattr(value, "value", value)
    return value if isinstance(value, str) and value else "Unknown"


def _output(output: Any) -> str:
    if output is None:
        return ""
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return " ".join(text.split())[:_MAX_REASON]


def settle(record: RunRecord, instance: str | None, output: Any, *, stale: bool) -> Ending | None:
    """The rule that keeps an active run record true to its Durable instance.

    ``instance`` is the instance's runtime status (None: it does not exist), ``output``
    its output (a terminated instance's reason, a failed one's error); ``stale``: the
    record is older than the start claim, so a missing instance is not merely about to be
    started. Returns how to end the record, or None while it may still be running."""
    text = _output(output)
    if instance == "Terminated":
        return Ending("Terminated", f"terminated: {text}" if text else "terminated")
    if instance == "Failed":
        return Ending("Failed", text or "its orchestration failed without an error text")
    if instance == "Completed":
        return Ending("Completed", None)
    if instance is None and stale:
        if record.status == "Pending":
            return Ending(
                "Failed", "its orchestration was never started (the starter stopped before it)"
            )
        return Ending("Failed", "its orchestration instance no longer exists (history lost)")
    return None


_END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


def _one_line(exc: Exception) -> str:
    return "; ".join(line for line in str(exc).splitlines() if line)


def _cannot_run(job: Job, reason: str) -> Decision:
    """A job whose document no longer allows it to run: a scheduled job is superseded,
    another (rerun, hand-queued) skipped; recorded either way."""
    if job.revision is not None and job.rerun is None:
        return Supersede(reason)
    return Skip(reason, record=True)


def _row_problem(job: Job, row: DueFlow) -> str | None:
    """The stored schedule row's problem for ``job`` (see ``Admission._stored_problem``)."""
    where = f"tenant {row.tenant_id}: flows[{row.flow_index}]"
    try:
        validate_cron(row.cron)
    except ValidationError as exc:
        return f"{where}.cron: {exc}"
    try:
        validate_timezone(row.timezone)
    except ValidationError as exc:
        return f"tenant {row.tenant_id}: timezone: {exc}"
    try:
        options = parse_schedule_options(row.options, where)
    except ValidationError as exc:
        return str(exc)
    current = revision(row.cron, row.timezone, options)
    if current == job.revision:
        return None
    return (
        f"the flow's stored schedule changed after the job was enqueued "
        f"(revision {job.revision} → {current})"
    )


class DurableStarter(Protocol):
    """The part of ``DurableOrchestrationClient`` the starter uses."""

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any | None = None,
    ) -> str: ...

    async def get_status(self, instance_id: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Facts:
    tenant: Tenant
    entry: FlowEntry


_ADMIT_ROUNDS = 4
"""Admission attempts per delivery when active records that held a job back had ended."""


class Admission:
    """Applies :func:`decide` to a job and starts its orchestration through a durable client.

    Store calls are synchronous; they run in a worker thread (``asyncio.to_thread``) so the
    Functions worker's event loop is never blocked."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def admit(
        self, job: Job, client: DurableStarter, *, traceparent: str | None = None
    ) -> str:
        """Handle one job; returns what happened (``started``/``skipped``/``deferred``/
        ``superseded``).

        A job that carries a schedule revision its flow no longer has (paused, disabled,
        deleted, cron or options changed, or its stored schedule invalid) is recorded
        ``Superseded`` and not run; so is one whose tenant document no longer parses or
        whose flow file is missing or broken (see :meth:`_check`). Raises for a job without
        a revision of an unknown tenant or flow, so the host retries it and finally moves
        it to the poison queue with the reason. A deferred job
        goes back on the queue with the reason as its ``note``. ``traceparent`` (W3C) is
        handed to the orchestration input where the contract has the field.

        The overlap and ``maxConcurrentRuns`` checks are made by the run store in the same
        atomic step that creates the run record (``RunStore.admit``), so jobs of one flow
        or tenant admitted at the same time — a backfill, look-ahead windows, several
        starter instances — never all start."""
        instance_id = job.instance_id
        checked = await asyncio.to_thread(self._check, job)
        if isinstance(checked, _Facts):
            decision = self._decide(job, checked, [])  # paused tenant or disabled flow
            if isinstance(decision, Start):
                decision = await self._claim(job, client, checked)
        else:
            decision = checked
        if isinstance(decision, Supersede):
            log.info("superseded %s: %s", instance_id, decision.reason)
            telemetry.count_skipped("superseded")
            await asyncio.to_thread(self._record_final, job, "Superseded", decision.reason)
            return "superseded"
        if isinstance(decision, Skip):
            log.info("skipping %s: %s", instance_id, decision.reason)
            telemetry.count_skipped(decision.reason)
            if decision.record:
                await asyncio.to_thread(self._record_final, job, "Skipped", decision.reason)
            return "skipped"
        if isinstance(decision, Defer):
            log.info("deferring %s by %ss: %s", instance_id, decision.delay, decision.reason)
            await asyncio.to_thread(
                self.app.queues.queue(FLOW_JOBS).send,
                dataclasses.replace(job, note=decision.reason).to_message(),
                visibility_delay=decision.delay,
            )
            return "deferred"
        fields: dict[str, Any] = {}
        trace = traceparent or job.traceparent
        if trace is not None and "traceparent" in _RUN_INPUT_FIELDS:
            fields["traceparent"] = trace
        run_input = RunInput(
            tenant_id=job.tenant_id,
            flow_name=job.flow_name,
            scheduled_for=format_utc(job.scheduled_for),
            pages_per_generation=self.app.settings.pages_per_generation,
            **fields,
        )
        try:
            await client.start_new(ORCHESTRATOR, instance_id, run_input.to_json())
        except Exception as exc:
            if "already exists" in str(exc):
                log.info("skipping %s: started concurrently by another worker", instance_id)
                return "skipped"
            raise
        log.info("started %s", instance_id)
        return "started"

    # -- what the job may run under ------------------------------------------------------
    def _check(self, job: Job) -> Decision | _Facts:
        """The job's tenant and flow, or why it does not run.

        Scheduled jobs (with a revision) are ``Superseded`` when the flow's schedule — as
        the document has it and as the scheduler's stored rows have it — is no longer the
        one they were enqueued under, or is no longer valid. A tenant document that no
        longer parses, or a flow no flow file defines, never starts a job: it is recorded
        (``Superseded``, or ``Skipped`` for a rerun or a hand-queued job) with the
        validation message; so is a scheduled job whose flow no flow file defines now.
        Raises (the host retries, then poisons the job with the reason, to be replayed once
        fixed) for a flow whose file is broken or ambiguous, and for a job of an unknown
        tenant or flow that carries no revision."""
        scheduled = job.revision is not None and job.rerun is None
        try:
            tenant = self.app.tenants.get(job.tenant_id)
        except NotFound:
            if scheduled:
                return Supersede(superseded_reason(job, None, None) or "")
            raise
        except InvalidDocument as exc:
            return _cannot_run(job, f"the tenant document is invalid: {_one_line(exc)}")
        self.app.steps.tenants.put(tenant)  # the run's first step reads it from there
        try:
            entry = tenant.flow(job.flow_name)
        except NotFound:
            if scheduled:
                return Supersede(superseded_reason(job, tenant, None) or "")
            raise
        if scheduled:
            reason = superseded_reason(job, tenant, entry) or self._stored_problem(job, tenant)
            if reason is not None:
                return Supersede(reason)
        try:
            self.app.registry.get(job.flow_name)
        except UnknownFlow as exc:
            if exc.hint or not scheduled:
                # a flow file is broken or ambiguous (a code problem a deploy fixes), or a
                # hand-queued job names a flow nothing defines: the host retries the job,
                # then poisons it with this reason; `poison replay` runs it once fixed
                raise
            index = tenant.flows.index(entry)  # the flow's file is gone: superseded
            return _cannot_run(job, f"tenant {tenant.tenant_id}: flows[{index}].name: {exc}")
        return _Facts(tenant, entry)

    def _stored_problem(self, job: Job, tenant: Tenant) -> str | None:
        """Why the schedule the scheduler stores for the job's flow (its due-query row:
        cron, timezone, options) is invalid or no longer the job's revision; None when it
        matches (or the store keeps no row for it: paused or disabled, which the document's
        revision covers)."""
        for page in self.app.tenants.due_flows(_END_OF_TIME, tenant_id=job.tenant_id):
            for row in page:
                if row.flow_name == job.flow_name:
                    return _row_problem(job, row)
        return None

    def _decide(self, job: Job, facts: _Facts, active: list[RunRecord]) -> Decision:
        return decide(
            job, facts.tenant, facts.entry, active, requeue_delay=self.app.settings.requeue_delay
        )

    def _record(self, job: Job, status: str, **fields: Any) -> RunRecord:
        base = instance_id_of(job.tenant_id, job.flow_name, job.scheduled_for)
        return RunRecord(
            instance_id=job.instance_id,
            tenant_id=job.tenant_id,
            flow_name=job.flow_name,
            scheduled_for=format_utc(job.scheduled_for),
            status=status,
            rerun_of=base if job.rerun is not None else None,
            **fields,
        )

    def _record_final(self, job: Job, status: str, reason: str) -> None:
        # a conditional insert: a redelivered job never overwrites its run's record
        self.app.runs.create(
            self._record(job, status, finished_at=format_utc(utcnow()), error=reason, reason=reason)
        )

    # -- keeping run records true -------------------------------------------------------
    async def reconcile(self, records: list[RunRecord], client: DurableStarter) -> list[RunRecord]:
        """Check each active record against its Durable instance; end those whose instance
        has ended (or is missing past the start claim). Returns the records still active.

        A record whose instance cannot be checked (the client failed) counts as active."""
        statuses = await asyncio.gather(
            *(client.get_status(r.instance_id) for r in records), return_exceptions=True
        )
        still: list[RunRecord] = []
        for record, status in zip(records, statuses, strict=True):
            if isinstance(status, Exception):
                log.warning(
                    "could not check the instance of run %s: %s", record.instance_id, status
                )
                still.append(record)
            elif isinstance(status, BaseException):
                raise status
            elif not await self.reconcile_one(record, status, client):
                still.append(record)
        return still

    async def reconcile_one(self, record: RunRecord, status: Any, client: DurableStarter) -> bool:
        """End ``record`` if ``status`` (its instance's ``get_status``) says it has ended;
        True when the record is no longer active."""
        name = runtime_status(status)
        if name is not None and name not in ENDED_INSTANCE:
            return False
        stale = False
        if name is None:
            stale = await asyncio.to_thread(self._stale, record)
            # a starter may have started it meanwhile: look once more before ending it
            if stale and await client.get_status(record.instance_id):
                return False
        ending = settle(record, name, getattr(status, "output", None), stale=stale)
        if ending is None:
            return False
        return await asyncio.to_thread(self.end, record.instance_id, ending)

    def _stale(self, record: RunRecord) -> bool:
        """A missing instance is not about to be started: a Pending record's claim is past
        the start claim (re-claimed atomically, so a redelivery of its job cannot take it
        over too), a Running record was started that long ago."""
        older_than = utcnow() - timedelta(seconds=self.app.settings.start_claim_seconds)
        if record.status == "Pending":
            return self.app.runs.take_over_pending(record.instance_id, older_than=older_than)
        try:
            started = parse_utc(record.started_at) if record.started_at else None
        except ValueError:
            started = None
        return started is None or started < older_than

    def end(self, instance_id: str, ending: Ending) -> bool:
        """End an active run record as ``ending`` says; True when it is no longer active
        (ended here, ended meanwhile by its run, or gone)."""
        try:
            current = self.app.runs.get(instance_id)
        except NotFound:
            return True
        if current.status not in _RUN_ACTIVE:
            return True  # its own run ended it meanwhile: that record is the true one
        written = self.app.runs.finish(instance_id, ending.status, ending.error)
        if getattr(written, "stale", False):  # fenced: it ended meanwhile
            return True
        log.warning(
            "run %s: its orchestration is no longer running; recorded %s%s",
            instance_id,
            ending.status,
            f" ({ending.error})" if ending.error else "",
        )
        return True

    # -- the dedupe and the overlap/concurrency check, one atomic step ----------------
    async def _claim(self, job: Job, client: DurableStarter, facts: _Facts) -> Decision:
        """Start: this starter created the run record (the store checked overlap and
        ``maxConcurrentRuns`` in the same step) or took over a stranded claim. When the
        store says the flow is busy or the tenant full, the active records that held it
        back are reconciled with their instances; if one had ended, it tries again, else
        :func:`decide` says what to do (skip recorded, defer)."""
        run = self._record(job, "Pending")
        exclusive = facts.entry.overlap != "allow"
        limit = facts.tenant.max_concurrent_runs
        for _ in range(_ADMIT_ROUNDS):
            admitted = await asyncio.to_thread(
                self.app.runs.admit, run, exclusive_flow=exclusive, max_active=limit
            )
            if admitted:
                return Start()
            if admitted.outcome == "exists":
                return await self._existing(job, client)
            holders = list(admitted.holders)
            still = await self.reconcile(holders, client)
            if len(still) < len(holders):
                continue  # one had ended: its place may be free now
            decision = self._decide(job, facts, still)
            if isinstance(decision, Start):  # the store's view moved on: ask it again
                continue
            return decision
        return Defer(
            self.app.settings.requeue_delay,
            "runs of this tenant kept ending and starting while admitting it",
        )

    async def _existing(self, job: Job, client: DurableStarter) -> Decision:
        """The job's run record exists: Skip when the run exists; Start when this starter
        took over a stranded claim; Defer for a Pending claim too young to tell a starter
        that died from one about to call ``start_new``."""
        try:
            existing = await asyncio.to_thread(self.app.runs.get, job.instance_id)
        except NotFound:  # deleted meanwhile: a later delivery retries
            return Skip("its run record vanished while starting; retrying later")
        if existing.status != "Pending":
            return Skip(f"already {existing.status}")
        if await client.get_status(job.instance_id):  # the instance exists: it was started
            return Skip("it was started by another starter")
        claim = self.app.settings.start_claim_seconds
        older_than = utcnow() - timedelta(seconds=claim)
        if await asyncio.to_thread(
            self.app.runs.take_over_pending, job.instance_id, older_than=older_than
        ):
            return Start()
        return Defer(
            max(claim, 1.0),
            "another starter claimed it and has not started it yet (checking again)",
        )
