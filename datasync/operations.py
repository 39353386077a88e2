"""What the CLI (and later the web page) does, as plain functions over the ports.

Each function takes the :class:`~datasync.app.App` and, where time matters, ``now``;
it returns data and raises :mod:`datasync.exceptions` errors. Nothing here prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo

from .admission import ENDED_INSTANCE, Ending, runtime_status, settle
from .exceptions import ConfigError, InvalidDocument, NotFound, TransientError, ValidationError
from .models import RUN_STATUSES, FlowEntry, Job, RunRecord, Tenant, parse_tenants
from .names import format_utc, utcnow, validate_secret_part, validate_tenant_id
from .ports import FLOW_JOBS, FLOW_JOBS_POISON, Checkpoint, QueueItem
from .records import AuditEntry, PageRecord, PageSummary
from .redact import redact
from .schedule import jitter_offset, next_occurrence, occurrences

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "BACKFILL_LIMIT",
    "Applied",
    "Backfill",
    "DurableControl",
    "Occurrence",
    "QueuedJob",
    "Rerun",
    "RunDetail",
    "ScheduleView",
    "Termination",
    "apply",
    "apply_tenants",
    "backfill",
    "check_reset",
    "duration_of",
    "lateness_of",
    "list_runs",
    "list_tenants",
    "local_actor",
    "next_runs",
    "pause",
    "paused_note",
    "poison_delete",
    "poison_list",
    "poison_replay",
    "queue_depth",
    "queue_list",
    "queue_put",
    "rerun",
    "rerun_of",
    "reset",
    "resume",
    "run_detail",
    "schedule_show",
    "set_secret",
    "show_tenant",
    "stop_runs",
    "terminable",
    "terminate",
    "trigger",
]

log = logging.getLogger(__name__)

_TRIES = 3
BACKFILL_LIMIT = 1000
"""Occurrences one ``backfill`` may enqueue (more is refused with a clear error)."""


def _second(now: datetime) -> datetime:
    return now.replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``tenants apply`` did to one tenant document.

    ``fields``: the document paths it changed (``name``, ``flows[sync].cron``,
    ``flows[sync] added`` …); ``kept``: values the CLI manages that the file leaves out and
    that were kept from the stored document (``paused``, ``flows[sync].enabled``, a pending
    ``flows[sync].nextRunUtc``)."""

    tenant: Tenant
    change: Literal["added", "updated", "unchanged"]
    fields: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()


def apply(app: App, obj: Any, now: datetime, *, schedule: bool = True) -> list[Applied]:
    """Validate every document in ``obj`` (an object or a list), then write them all, and
    (``schedule``) enqueue each added or changed tenant's look-ahead window at once.

    Any invalid document raises :class:`ValidationError` and nothing is written. What the
    file does not mention and the CLI manages is kept from the stored document: the tenant's
    ``paused``, a flow's ``enabled``, and its stored ``nextRunUtc`` when that run is pending
    (due: a ``trigger`` or a missed occurrence) or its schedule revision
    (:meth:`FlowEntry.revision`) is unchanged.
    A flow left without ``nextRunUtc`` gets the next occurrence of its cron after ``now``.
    A stored document is replaced only if it did not change meanwhile (its etag)."""
    tenants = parse_tenants(obj, known_flows=set(app.registry.names()))
    done: list[Applied] = []
    added: list[Tenant] = []
    for tenant in tenants:
        for _ in range(_TRIES):
            stored, etag = _stored(app, tenant.tenant_id)
            merged, kept = _merge(tenant, stored, now)
            if stored is None or etag is None:
                added.append(merged)
                done.append(Applied(merged, "added", kept=kept))
                break
            fields = _changes(stored.to_doc(), merged.to_doc())
            if not fields:
                done.append(Applied(stored, "unchanged", kept=kept))
                break
            if app.tenants.replace_if_match(merged, etag):
                done.append(Applied(merged, "updated", fields, kept))
                break
        else:
            raise TransientError(
                f"tenant {tenant.tenant_id} kept changing while being applied; try again"
            )
    if added:
        app.tenants.upsert_many(added)
    if schedule:
        for item in done:
            if item.change != "unchanged":
                _schedule_now(app, item.tenant.tenant_id, now)
    return done


def apply_tenants(app: App, obj: Any, now: datetime) -> list[Tenant]:
    """:func:`apply` without the immediate enqueue (bulk loads: the scheduler's next tick
    enqueues), returning the documents as written."""
    return [a.tenant for a in apply(app, obj, now, schedule=False)]


def _stored(app: App, tenant_id: str) -> tuple[Tenant | None, str | None]:
    """The stored document and its etag; (None, None) when there is none, or when the
    stored one is invalid (the file replaces it)."""
    try:
        return app.tenants.get_with_etag(tenant_id)
    except (NotFound, InvalidDocument):
        return None, None


def _merge(new: Tenant, stored: Tenant | None, now: datetime) -> tuple[Tenant, tuple[str, ...]]:
    """``new`` with what the CLI manages kept from ``stored`` (a copy; ``new`` unchanged)."""
    merged = new.model_copy(deep=True)
    kept: list[str] = []
    old_flows = {f.name: f for f in stored.flows} if stored is not None else {}
    if stored is not None and "paused" not in new.model_fields_set:
        merged.paused = stored.paused
        if stored.paused:
            kept.append("paused")
    for entry, given in zip(merged.flows, new.flows, strict=True):
        old = old_flows.get(entry.name)
        if old is not None and "enabled" not in given.model_fields_set:
            entry.enabled = old.enabled
            if not old.enabled:
                kept.append(f"flows[{entry.name}].enabled")
        if (
            old is not None
            and old.next_run_utc is not None
            and ("next_run_utc" not in given.model_fields_set)
        ):
            pending = old.next_run_utc <= now
            # the stored next run stands only while everything that decides the schedule
            # (cron, timezone, enabled, paused, options) is unchanged
            same = stored is not None and old.revision(stored) == entry.revision(merged)
            if pending or same:
                entry.next_run_utc = old.next_run_utc
                if pending:
                    kept.append(f"flows[{entry.name}].nextRunUtc")
        if entry.next_run_utc is None:
            entry.next_run_utc = next_occurrence(entry.cron, merged.timezone, now)
    return merged, tuple(kept)


def _changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, ...]:
    """The document paths that differ, flows named by name."""
    fields = [
        key
        for key in sorted(set(old) | set(new))
        if key != "flows" and old.get(key) != new.get(key)
    ]
    old_flows = {f["name"]: f for f in old.get("flows", [])}
    new_flows = {f["name"]: f for f in new.get("flows", [])}
    for name, flow in new_flows.items():
        before = old_flows.get(name)
        if before is None:
            fields.append(f"flows[{name}] added")
            continue
        fields += [
            f"flows[{name}].{key}"
            for key in sorted(set(before) | set(flow))
            if before.get(key) != flow.get(key)
        ]
    fields += [f"flows[{name}] removed" for name in old_flows if name not in new_flows]
    if not fields and [f["name"] for f in old.get("flows", [])] != list(new_flows):
        fields.append("flows (order)")
    return tuple(fields)


def list_tenants(app: App) -> list[Tenant]:
    return list(app.tenants.iter_tenants())


def show_tenant(app: App, tenant_id: str) -> Tenant:
    """The tenant document; :class:`NotFound` when unknown."""
    return app.tenants.get(tenant_id)


def _modify(app: App, tenant_id: str, change: Callable[[Tenant], None]) -> Tenant:
    """Read-modify-write one tenant document, guarded by its etag (a few tries)."""
    for _ in range(_TRIES):
        tenant, etag = app.tenants.get_with_etag(tenant_id)
        change(tenant)
        if app.tenants.replace_if_match(tenant, etag):
            return tenant
    raise TransientError(f"tenant {tenant_id} kept changing while being updated; try again")


def paused_note(tenant: Tenant, flow: str) -> str | None:
    """Why ``flow`` of ``tenant`` will not start now, or None when nothing stops it."""
    if tenant.paused:
        return f"tenant {tenant.tenant_id} is paused: the run will not start until it is resumed"
    if not tenant.flow(flow).enabled:
        return (
            f"flow {flow} of tenant {tenant.tenant_id} is disabled: the run will not "
            f"start until it is resumed"
        )
    return None


def trigger(
    app: App,
    tenant_id: str,
    flow: str,
    now: datetime | None = None,
    *,
    actor: str | None = None,
) -> tuple[Tenant, str | None]:
    """Make ``flow`` due now (to the second); the note says when pause/disable still holds."""
    now = now or utcnow()

    def change(tenant: Tenant) -> None:
        tenant.flow(flow).next_run_utc = _second(now)

    tenant = _modify(app, tenant_id, change)
    if _schedule_now(app, tenant_id, now, flow):
        tenant = app.tenants.get(tenant_id)
    _audit(app, actor, "trigger", _flow_target(tenant_id, flow), tenant=tenant_id, flow=flow)
    return tenant, paused_note(tenant, flow)


def pause(app: App, tenant_id: str, flow: str | None = None, *, actor: str | None = None) -> Tenant:
    """Pause a whole tenant, or disable one of its flows."""

    def change(tenant: Tenant) -> None:
        if flow is None:
            tenant.paused = True
        else:
            tenant.flow(flow).enabled = False

    tenant = _modify(app, tenant_id, change)
    _audit(app, actor, "pause", _flow_target(tenant_id, flow), tenant=tenant_id, flow=flow)
    return tenant


def resume(
    app: App,
    tenant_id: str,
    flow: str | None = None,
    *,
    now: datetime | None = None,
    actor: str | None = None,
) -> Tenant:
    """Unpause a tenant (or enable one flow); resumed flows run at their next occurrence."""
    now = now or utcnow()

    def change(tenant: Tenant) -> None:
        if flow is None:
            tenant.paused = False
            entries = list(tenant.flows)
        else:
            entry = tenant.flow(flow)
            entry.enabled = True
            entries = [entry]
        for entry in entries:
            entry.next_run_utc = next_occurrence(entry.cron, tenant.timezone, now)

    tenant = _modify(app, tenant_id, change)
    if _schedule_now(app, tenant_id, now, flow):
        tenant = app.tenants.get(tenant_id)
    _audit(app, actor, "resume", _flow_target(tenant_id, flow), tenant=tenant_id, flow=flow)
    return tenant


def set_secret(app: App, tenant_id: str, system: str, key: str, value: str) -> None:
    """Store a secret for an existing tenant. The value never appears in any error."""
    validate_tenant_id(tenant_id)
    validate_secret_part(system, "system")
    validate_secret_part(key, "key")
    if not value:
        raise ValidationError("the secret value is empty")
    app.tenants.get(tenant_id)  # NotFound for an unknown tenant
    app.secrets.set(tenant_id, system, key, value)


def list_runs(
    app: App,
    *,
    tenant: str | None = None,
    flow: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[RunRecord]:
    if status is not None and status not in RUN_STATUSES:
        raise ValidationError(f"unknown status {status!r}: use one of {', '.join(RUN_STATUSES)}")
    if limit < 1:
        raise ValidationError(f"limit must be at least 1, not {limit}")
    return app.runs.recent(tenant=tenant, flow=flow, status=status, limit=limit)


def queue_put(app: App, text: str) -> str:
    """Put raw ``text`` on ``flow-jobs`` (not validated: for replays and tests)."""
    return app.queues.queue(FLOW_JOBS).send(text)


def poison_list(app: App) -> list[QueueItem]:
    return app.queues.queue(FLOW_JOBS_POISON).peek_all()


def poison_replay(app: App, message_id: str, *, actor: str | None = None) -> str:
    """Move one poison message back to ``flow-jobs``; returns its new id (NotFound if absent)."""
    item = app.queues.queue(FLOW_JOBS_POISON).remove(message_id)
    try:
        new_id = app.queues.queue(FLOW_JOBS).send(item.body)
    except Exception:
        app.queues.queue(FLOW_JOBS_POISON).send(item.body)  # do not lose it
        raise
    tenant, flow, instance = _job_target(item.body)
    _audit(
        app,
        actor,
        "poison replay",
        message_id,
        tenant=tenant,
        flow=flow,
        instance_id=instance,
        detail=f"queued again as {new_id}",
    )
    return new_id


def poison_delete(app: App, message_id: str, *, actor: str | None = None) -> QueueItem:
    """Drop one poison message for good; returns it (NotFound if absent)."""
    item = app.queues.queue(FLOW_JOBS_POISON).remove(message_id)
    tenant, flow, instance = _job_target(item.body)
    _audit(app, actor, "poison delete", message_id, tenant=tenant, flow=flow, instance_id=instance)
    return item


def _job_target(body: str) -> tuple[str | None, str | None, str | None]:
    """Tenant, flow and instance id of a job message; Nones when it is not a valid job."""
    try:
        job = Job.from_message(body)
    except ValidationError:
        return None, None, None
    return job.tenant_id, job.flow_name, job.instance_id


# -- terminate -------------------------------------------------------------------------------
class DurableControl(Protocol):
    """The part of ``DurableOrchestrationClient`` that ``terminate`` uses."""

    async def get_status(self, instance_id: str) -> Any: ...

    async def terminate(self, instance_id: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Termination:
    """What ``terminate`` did to one run: ``terminated`` (its orchestration was stopped),
    ``ended`` (it had already ended: the record now says how), ``not-started`` (no
    orchestration instance exists for it: the record is ended)."""

    run: RunRecord
    outcome: Literal["terminated", "ended", "not-started"]


def terminable(app: App, tenant_id: str, target: str) -> list[RunRecord]:
    """The runs ``terminate TENANT FLOW|INSTANCE`` stops: FLOW's Pending/Running runs, or
    the run with that instance id (``Workflow-…``; flow names are lower case, so the two
    never clash). :class:`NotFound` / :class:`ValidationError` when there is none."""
    validate_tenant_id(tenant_id)
    if target.startswith("Workflow-"):
        try:
            run = app.runs.get(target)
        except NotFound:
            raise NotFound(f"tenant {tenant_id} has no run {target!r}") from None
        if run.tenant_id != tenant_id:
            raise NotFound(f"tenant {tenant_id} has no run {target!r}")
        if run.status not in ("Pending", "Running"):
            raise ValidationError(
                f"run {target} is {run.status}: only a Pending or Running run can be terminated"
            )
        return [run]
    app.tenants.get(tenant_id).flow(target)  # NotFound for an unknown tenant or flow
    runs = app.runs.active(tenant_id, target)
    if not runs:
        raise NotFound(f"flow {target} of tenant {tenant_id} has no Pending or Running run")
    return sorted(runs, key=lambda r: r.instance_id)


async def terminate(
    app: App, runs: list[RunRecord], client: DurableControl, *, reason: str
) -> list[Termination]:
    """Stop each run's orchestration through the Durable client and record ``Terminated``
    with ``reason`` (a run whose orchestration had already ended is recorded as it ended).

    The run store's fenced ``finish`` never overwrites a record its run ended meanwhile."""
    done: list[Termination] = []
    for run in runs:
        outcome: Literal["terminated", "ended", "not-started"] = "terminated"
        before = await client.get_status(run.instance_id)
        name = runtime_status(before)
        if name is None:
            outcome, ending = "not-started", Ending("Terminated", f"terminated: {reason}")
        elif name in ENDED_INSTANCE:
            outcome = "ended"
            ending = settle(run, name, getattr(before, "output", None), stale=True) or Ending(
                name, None
            )
        else:
            await client.terminate(run.instance_id, reason)
            ending = Ending("Terminated", f"terminated: {reason}")
        await asyncio.to_thread(app.admission.end, run.instance_id, ending)
        done.append(Termination(await asyncio.to_thread(app.runs.get, run.instance_id), outcome))
    return done


def stop_runs(
    app: App,
    tenant_id: str,
    target: str,
    *,
    reason: str = "stopped by an operator",
    actor: str | None = None,
) -> list[Termination]:
    """``terminate TENANT FLOW|INSTANCE``: :func:`terminable`, then :func:`terminate` with
    the real ``DurableOrchestrationClient`` against the extension's HTTP API served over the
    embedded engine's ``durable.db`` (a ``datasync run`` on the same home sees it).

    :class:`ConfigError` when there is no embedded engine (on Azure: use the Durable
    Functions HTTP API or the portal)."""
    runs = terminable(app, tenant_id, target)
    reason = " ".join(reason.split()) or "stopped by an operator"
    path = app.settings.home / "durable.db"
    if not path.exists() and app.settings.uses_cosmos:
        raise ConfigError(
            f"no embedded Durable engine under {app.settings.home}: on Azure, terminate the "
            "instance through the Durable Functions HTTP API or the portal; its run record is "
            "ended at the next admission of that flow"
        )
    done = asyncio.run(_terminate_embedded(app, runs, reason))
    for t in done:
        _audit(
            app,
            actor,
            "terminate",
            t.run.instance_id,
            tenant=t.run.tenant_id,
            flow=t.run.flow_name,
            instance_id=t.run.instance_id,
            detail=f"{t.outcome}: {reason}",
        )
    return done


async def _terminate_embedded(app: App, runs: list[RunRecord], reason: str) -> list[Termination]:
    from azure.durable_functions import DurableOrchestrationClient

    from .runtime.durable import DurableEngine
    from .runtime.rpc import DurableRpcServer

    engine = DurableEngine(app.settings.home / "durable.db", orchestrators={}, activities={})
    rpc = DurableRpcServer(engine).start()
    transport = _PrivateTransport()
    try:
        client = DurableOrchestrationClient(rpc.binding_json())
        transport.attach(client)
        return await terminate(app, runs, client, reason=reason)
    finally:
        await transport.close()
        rpc.stop()
        engine.close()


class _PrivateTransport:
    """The Durable client's HTTP calls over a session of its own.

    The SDK keeps one module-global aiohttp session bound to the first event loop that used
    it; in a process that also runs the embedded runtime (the web console inside ``run``) that
    session belongs to the runtime's loop, so this client must neither use nor replace it.
    Same requests and response shape as ``azure.durable_functions.models.utils.http_utils``."""

    def __init__(self) -> None:
        self._session: Any = None

    def attach(self, client: Any) -> None:
        client._post_async_request = self.post
        client._get_async_request = self.get
        client._delete_async_request = self.delete

    async def _open(self) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=240, sock_connect=10)
            )
        return self._session

    @staticmethod
    def _headers(
        trace_parent: str | None, trace_state: str | None, invocation: str | None
    ) -> dict[str, str]:
        headers = {
            "traceparent": trace_parent,
            "tracestate": trace_state,
            "X-Azure-Functions-InvocationId": invocation,
        }
        return {k: v for k, v in headers.items() if v}

    async def post(
        self,
        url: str,
        data: Any = None,
        trace_parent: str | None = None,
        trace_state: str | None = None,
        function_invocation_id: str | None = None,
    ) -> list[Any]:
        session = await self._open()
        headers = self._headers(trace_parent, trace_state, function_invocation_id)
        async with session.post(url, json=data, headers=headers) as response:
            return [response.status, await response.json(content_type=None)]

    async def get(self, url: str, function_invocation_id: str | None = None) -> list[Any]:
        session = await self._open()
        headers = self._headers(None, None, function_invocation_id)
        async with session.get(url, headers=headers) as response:
            body = await response.json(content_type=None)
            return [response.status, "" if body is None else body]

    async def delete(self, url: str, function_invocation_id: str | None = None) -> list[Any]:
        session = await self._open()
        headers = self._headers(None, None, function_invocation_id)
        async with session.delete(url, headers=headers) as response:
            return [response.status, await response.json(content_type=None)]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- who did it: the audit log -----------------------------------------------------------
def local_actor() -> str:
    """The operator of a CLI command: ``os:<user>`` (the OS account running it)."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers) and no USER variable
        return "os:unknown"


def _audit(
    app: App,
    actor: str | None,
    action: str,
    target: str,
    *,
    tenant: str | None = None,
    flow: str | None = None,
    instance_id: str | None = None,
    detail: str | None = None,
) -> None:
    """Write one audit entry (after the action succeeded). A store without an audit log, or
    a failed write, is logged and does not undo the action."""
    who = actor or local_actor()
    entry = AuditEntry(
        actor=who,
        action=action,
        target=target,
        tenant_id=tenant,
        flow_name=flow,
        instance_id=instance_id,
        detail=redact(detail) if detail else None,
    )
    try:
        app.runs.audit(entry)
    except Exception as exc:  # noqa: BLE001 - the action is done; the audit write is not
        log.warning("audit log: %s %s by %s not recorded: %s", action, target, who, exc)
        return
    log.info("audit: %s %s by %s", action, target, who)


def _flow_target(tenant: str, flow: str | None) -> str:
    return tenant if flow is None else f"{tenant}/{flow}"


def _schedule_now(app: App, tenant_id: str, now: datetime, flow: str | None = None) -> bool:
    """Enqueue the tenant's (or one flow's) look-ahead window at once instead of at the next
    scheduler tick; whether a job was enqueued (the document's ``nextRunUtc`` moved on)."""
    from .scanner import schedule_now

    try:
        result = schedule_now(
            app.tenants,
            app.queues.queue(FLOW_JOBS),
            tenant_id,
            now,
            lookahead=app.settings.lookahead(),
            known_flows=set(app.registry.names()),
            flow_name=flow,
        )
    except Exception as exc:  # noqa: BLE001 - the next scheduler tick enqueues it anyway
        log.warning("tenant %s: the new schedule is enqueued at the next tick: %s", tenant_id, exc)
        return False
    return result.due > 0


def next_runs(tenant: Tenant, now: datetime) -> dict[str, datetime | None]:
    """When each flow of ``tenant`` runs next: its first occurrence after ``now`` that its
    schedule options allow (None when the schedule has ended)."""
    return {e.name: next(_allowed(e, tenant.timezone, now), None) for e in tenant.flows}


def _allowed(entry: FlowEntry, timezone: str, now: datetime) -> Iterator[datetime]:
    """The flow's occurrences after ``now`` that its startAt/endAt/pausedUntil allow."""
    options = entry.schedule_options()
    skip = [t - timedelta(seconds=1) for t in (options.start_at, options.paused_until) if t]
    found = occurrences(entry.cron, timezone, max([now, *skip]), until=options.end_at)
    return (t for t in found if options.allows(t))


# -- rerun -------------------------------------------------------------------------------
RERUNNABLE = ("Failed", "Terminated")
_RERUN_MARK = "-rerun"


@dataclass(frozen=True, slots=True)
class Rerun:
    """What ``rerun`` queued: run ``original`` again as ``instance_id`` (its ``rerun``-th)."""

    original: RunRecord
    instance_id: str
    rerun: int
    message_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "rerunOf": self.original.instance_id,
            "rerun": self.rerun,
            "tenantId": self.original.tenant_id,
            "flowName": self.original.flow_name,
            "scheduledFor": self.original.scheduled_for,
            "messageId": self.message_id,
        }


def _base_id(instance_id: str) -> str:
    """The scheduled run's id of a rerun id (``…-rerun2`` → ``…``); itself otherwise."""
    head, mark, tail = instance_id.rpartition(_RERUN_MARK)
    return head if mark and tail.isdigit() else instance_id


def _rerun_ids(app: App, base: str) -> Iterator[str]:
    """The instance ids of ``base``'s reruns that have a run record, in order."""
    n = 1
    while True:
        candidate = f"{base}{_RERUN_MARK}{n}"
        try:
            app.runs.get(candidate)
        except NotFound:
            return
        yield candidate
        n += 1


def _queued_reruns(app: App, base: str) -> set[int]:
    taken: set[int] = set()
    for item in app.queues.queue(FLOW_JOBS).peek_all():
        try:
            job = Job.from_message(item.body)
        except ValidationError:
            continue
        n = job.rerun
        if n and f"{base}{_RERUN_MARK}{n}" == job.instance_id:
            taken.add(int(n))
    return taken


def rerun(
    app: App, instance_id: str, *, now: datetime | None = None, actor: str | None = None
) -> Rerun:
    """Queue a Failed or Terminated run again as a new instance ``<base id>-rerun<N>`` (N the
    next free number) that keeps its ``scheduledFor`` and starts from the flow's saved
    checkpoint. Any other status: :class:`ValidationError` saying why."""
    original = _run(app, instance_id)
    if original.status not in RERUNNABLE:
        hint = {
            "Pending": "it has not started yet",
            "Running": "it is still running (terminate it first)",
            "Completed": "it completed; use backfill or trigger for a new run",
        }.get(original.status, "only a Failed or Terminated run can be rerun")
        raise ValidationError(f"run {instance_id} is {original.status}: {hint}")
    base = _base_id(original.instance_id)
    used = len(list(_rerun_ids(app, base)))
    queued = _queued_reruns(app, base)
    n = used + 1
    while n in queued:
        n += 1
    from .names import parse_utc

    job = Job(original.tenant_id, original.flow_name, parse_utc(original.scheduled_for), rerun=n)
    message_id = app.queues.queue(FLOW_JOBS).send(job.to_message())
    new_id = job.instance_id
    _audit(
        app,
        actor,
        "rerun",
        original.instance_id,
        tenant=original.tenant_id,
        flow=original.flow_name,
        instance_id=original.instance_id,
        detail=f"queued as {new_id}",
    )
    return Rerun(original, new_id, n, message_id)


def _run(app: App, instance_id: str) -> RunRecord:
    try:
        return app.runs.get(instance_id)
    except NotFound:
        raise NotFound(f"no run {instance_id!r} (see: datasync runs)") from None


# -- reset -------------------------------------------------------------------------------
def check_reset(app: App, tenant_id: str, flow: str) -> Checkpoint:
    """The flow's saved checkpoint, if ``reset`` may change it now: :class:`NotFound` for an
    unknown tenant or flow, :class:`ValidationError` while a run of the flow is active."""
    app.tenants.get(tenant_id).flow(flow)
    active = app.runs.active(tenant_id, flow)
    if active:
        ids = ", ".join(sorted(r.instance_id for r in active))
        raise ValidationError(
            f"flow {flow} of tenant {tenant_id} has an active run ({ids}): wait for it to end "
            "or terminate it, then reset"
        )
    return app.runs.load_checkpoint(tenant_id, flow)


def reset(
    app: App,
    tenant_id: str,
    flow: str,
    *,
    cursor: str | None = None,
    actor: str | None = None,
) -> Checkpoint:
    """Forget the flow's saved cursor and state (the next run is a full resync), or set the
    cursor to ``cursor`` with an empty state. Refused while a run of the flow is active."""
    check_reset(app, tenant_id, flow)
    checkpoint = Checkpoint(cursor=cursor, state={})
    app.runs.reset_checkpoint(tenant_id, flow, checkpoint if cursor is not None else None)
    detail = "cursor and state forgotten" if cursor is None else "cursor set, state forgotten"
    _audit(app, actor, "reset", f"{tenant_id}/{flow}", tenant=tenant_id, flow=flow, detail=detail)
    return checkpoint


# -- backfill ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Backfill:
    """The occurrences of a ``backfill`` range: ``queued`` went to flow-jobs, ``existing``
    already have a run record (their status), which the starter would skip anyway."""

    tenant_id: str
    flow_name: str
    occurrences: tuple[datetime, ...]
    queued: tuple[datetime, ...]
    existing: dict[str, str]
    dry_run: bool
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        from .names import instance_id

        return {
            "tenantId": self.tenant_id,
            "flowName": self.flow_name,
            "dryRun": self.dry_run,
            "occurrences": [
                {
                    "scheduledFor": format_utc(t),
                    "instanceId": (iid := instance_id(self.tenant_id, self.flow_name, t)),
                    "existing": self.existing.get(iid),
                    "queued": t in self.queued,
                }
                for t in self.occurrences
            ],
            "note": self.note,
        }


def _occurrences(cron: str, tz: str, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """Occurrences in ``[start, end]`` (at most ``limit`` + 1, to tell "too many")."""
    return list(occurrences(cron, tz, start - timedelta(seconds=1), until=end, limit=limit + 1))


def backfill(
    app: App,
    tenant_id: str,
    flow: str,
    start: datetime,
    end: datetime,
    *,
    dry_run: bool = False,
    limit: int = BACKFILL_LIMIT,
    now: datetime | None = None,
    actor: str | None = None,
) -> Backfill:
    """One job per occurrence of the flow's cron in ``[start, end]`` (the tenant's zone),
    through flow-jobs: the starter applies the overlap policy and the dedupe. Occurrences
    that already have a run record are not queued. ``end`` may not be in the future."""
    now = now or utcnow()
    tenant = app.tenants.get(tenant_id)
    entry = tenant.flow(flow)
    if start > end:
        raise ValidationError(f"--from {format_utc(start)} is after --to {format_utc(end)}")
    if end > now:
        raise ValidationError(
            f"--to {format_utc(end)} is in the future: backfill runs past occurrences "
            "(the scheduler runs the coming ones)"
        )
    found = _occurrences(entry.cron, tenant.timezone, start, end, limit)
    if len(found) > limit:
        raise ValidationError(
            f"the range has more than {limit} occurrences of cron {entry.cron!r}: "
            "backfill a shorter range at a time"
        )
    from .names import instance_id

    existing: dict[str, str] = {}
    for when in found:
        iid = instance_id(tenant_id, flow, when)
        with contextlib.suppress(NotFound):
            existing[iid] = app.runs.get(iid).status
    todo = tuple(t for t in found if instance_id(tenant_id, flow, t) not in existing)
    note = None
    if entry.overlap == "skip" and len(todo) > 1:
        note = (
            f"flow {flow} has overlap 'skip': an occurrence that becomes due while another "
            "runs is recorded Skipped; set overlap 'queue' to run them one after another"
        )
    paused = paused_note(tenant, flow)
    if paused:
        note = paused if note is None else f"{paused}; {note}"
    if not dry_run and todo:
        app.queues.queue(FLOW_JOBS).send_many(Job(tenant_id, flow, t).to_message() for t in todo)
        _audit(
            app,
            actor,
            "backfill",
            f"{tenant_id}/{flow}",
            tenant=tenant_id,
            flow=flow,
            detail=f"{len(todo)} run(s) {format_utc(todo[0])} .. {format_utc(todo[-1])}",
        )
    return Backfill(tenant_id, flow, tuple(found), () if dry_run else todo, existing, dry_run, note)


# -- queue list --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueuedJob:
    """One message on flow-jobs. ``state``: ``due`` (visible now), ``waiting`` (hidden until
    ``visible_at``: a look-ahead job), ``deferred`` (re-sent by the starter, ``note`` says
    why), ``invalid`` (not a job: it goes to the poison queue once received)."""

    id: str
    tenant_id: str | None
    flow_name: str | None
    scheduled_for: datetime | None
    visible_at: datetime | None
    dequeue_count: int
    state: Literal["due", "waiting", "deferred", "invalid"]
    note: str | None = None
    rerun: int | None = None
    body: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "flowName": self.flow_name,
            "scheduledFor": format_utc(self.scheduled_for) if self.scheduled_for else None,
            "visibleAt": format_utc(self.visible_at) if self.visible_at else None,
            "dequeueCount": self.dequeue_count,
            "state": self.state,
            "note": self.note,
            "rerun": self.rerun,
            "body": self.body,
        }


def queue_depth(app: App) -> int:
    """Messages on flow-jobs, hidden ones included (on Azure: the approximate count).

    Compare with :func:`queue_list`: a Storage-queue peek sees at most 32 visible messages."""
    return app.queues.queue(FLOW_JOBS).count()


def queue_list(app: App, *, now: datetime | None = None) -> list[QueuedJob]:
    """Waiting, due and deferred jobs on flow-jobs, oldest first (nothing is received)."""
    now = now or datetime.now(ZoneInfo("UTC"))
    out: list[QueuedJob] = []
    for item in app.queues.queue(FLOW_JOBS).peek_all():
        visible = item.next_visible_at
        try:
            job = Job.from_message(item.body)
        except ValidationError as exc:
            out.append(
                QueuedJob(
                    item.id,
                    None,
                    None,
                    None,
                    visible,
                    item.dequeue_count,
                    "invalid",
                    note=str(exc),
                    body=redact(item.body[:200]),
                )
            )
            continue
        note = job.note
        hidden = visible is not None and visible > now
        state: Literal["due", "waiting", "deferred"] = "due"
        if hidden:
            state = "deferred" if note or item.dequeue_count > 0 else "waiting"
        out.append(
            QueuedJob(
                item.id,
                job.tenant_id,
                job.flow_name,
                job.scheduled_for,
                visible,
                item.dequeue_count,
                state,
                note=note,
                rerun=job.rerun,
            )
        )
    return out


# -- schedule show -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Occurrence:
    """A coming occurrence: ``scheduled_for`` (UTC, on the cron boundary), the same in the
    tenant's zone, and ``due`` (+ the flow's jitter)."""

    scheduled_for: datetime
    local: datetime
    due: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "scheduledFor": format_utc(self.scheduled_for),
            "local": self.local.isoformat(),
            "due": format_utc(self.due),
        }


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """``schedule show``: the flow's schedule, its next occurrences and its last runs."""

    tenant_id: str
    flow_name: str
    timezone: str
    cron: str
    next_run_utc: datetime | None
    paused: bool
    enabled: bool
    upcoming: list[Occurrence]
    recent: list[RunRecord]
    jitter_seconds: int = 0
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "flowName": self.flow_name,
            "timezone": self.timezone,
            "cron": self.cron,
            "nextRunUtc": format_utc(self.next_run_utc) if self.next_run_utc else None,
            "paused": self.paused,
            "enabled": self.enabled,
            "jitterSeconds": self.jitter_seconds,
            "note": self.note,
            "upcoming": [o.to_json() for o in self.upcoming],
            "recent": [{**r.to_json(), "latenessSeconds": lateness_of(r)} for r in self.recent],
        }


def lateness_of(run: RunRecord) -> float | None:
    """Seconds from ``scheduledFor`` to the run's start (the record's own value when kept)."""
    kept = run.lateness_seconds
    if kept is not None:
        return float(kept)
    if not run.started_at:
        return None
    from .names import parse_utc

    try:
        return (parse_utc(run.started_at) - parse_utc(run.scheduled_for)).total_seconds()
    except ValidationError:
        return None


def duration_of(run: RunRecord) -> float | None:
    """Seconds from start to finish (the record's own value when kept)."""
    kept = run.duration_seconds
    if kept is not None:
        return float(kept)
    if not (run.started_at and run.finished_at):
        return None
    from .names import parse_utc

    try:
        return (parse_utc(run.finished_at) - parse_utc(run.started_at)).total_seconds()
    except ValidationError:
        return None


def rerun_of(run: RunRecord) -> str | None:
    """The run a rerun reruns: its record's ``rerunOf``, else what its instance id says."""
    kept = run.rerun_of
    if kept:
        return str(kept)
    base = _base_id(run.instance_id)
    return base if base != run.instance_id else None


def _jitter(tenant_id: str, entry: FlowEntry) -> int:
    """The flow's jitter offset in seconds (the scheduler's own function)."""
    return jitter_offset(tenant_id, entry.name, entry.jitter) if entry.jitter else 0


def schedule_show(
    app: App, tenant_id: str, flow: str, *, now: datetime | None = None, count: int = 10
) -> ScheduleView:
    """The next ``count`` occurrences after ``now`` and the last ``count`` runs."""
    now = now or utcnow()
    tenant = app.tenants.get(tenant_id)
    entry = tenant.flow(flow)
    zone = ZoneInfo(tenant.timezone)
    jitter = _jitter(tenant_id, entry)
    allowed = _allowed(entry, tenant.timezone, now)
    upcoming = [
        Occurrence(t, t.astimezone(zone), t + timedelta(seconds=jitter))
        for t in islice(allowed, max(count, 0))
    ]
    recent = app.runs.recent(tenant=tenant_id, flow=flow, limit=max(count, 1))
    return ScheduleView(
        tenant_id,
        flow,
        tenant.timezone,
        entry.cron,
        entry.next_run_utc,
        tenant.paused,
        entry.enabled,
        upcoming,
        recent,
        jitter,
        paused_note(tenant, flow),
    )


# -- run detail --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunDetail:
    """``runs show``: the run record, one window of its pages (those after page ``after``),
    the summarised part beyond the kept pages, its reruns and its audit entries."""

    run: RunRecord
    pages: list[PageRecord] = field(default_factory=list)
    summary: PageSummary | None = None
    reruns: list[str] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    more: bool = False
    after: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.run.to_json(),
            "latenessSeconds": lateness_of(self.run),
            "durationSeconds": duration_of(self.run),
            "rerunOf": rerun_of(self.run),
            "reruns": self.reruns,
            "pageRecords": [p.to_json() for p in self.pages],
            "morePages": self.more,
            "pageSummary": self.summary.to_json() if self.summary is not None else None,
            "audit": [a.to_json() for a in self.audit],
        }


def run_detail(app: App, instance_id: str, *, after: int = 0, limit: int = 100) -> RunDetail:
    """The run with the pages numbered above ``after`` (up to ``limit``); NotFound if unknown."""
    if limit < 1:
        raise ValidationError(f"the page limit must be at least 1, not {limit}")
    run = _run(app, instance_id)
    pages = app.runs.pages(instance_id, after=after, limit=limit + 1)
    more = len(pages) > limit
    pages = pages[:limit]
    summary = app.runs.page_summary(instance_id)
    audit = app.runs.audit_log(instance_id=_base_id(instance_id))
    reruns = list(_rerun_ids(app, _base_id(instance_id)))
    return RunDetail(run, pages, summary, reruns, audit, more, after)
