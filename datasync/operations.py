"""What the CLI (and later the web page) does, as plain functions over the ports.

Each function takes the :class:`~datasync.app.App` and, where time matters, ``now``;
it returns data and raises :mod:`datasync.exceptions` errors. Nothing here prints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .admission import ENDED_INSTANCE, Ending, runtime_status, settle
from .exceptions import InvalidDocument, NotFound, TransientError, ValidationError
from .models import RUN_STATUSES, RunRecord, Tenant, parse_tenants
from .names import validate_secret_part, validate_tenant_id
from .ports import FLOW_JOBS, FLOW_JOBS_POISON, QueueItem
from .schedule import next_occurrence

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "Applied",
    "DurableControl",
    "Termination",
    "apply",
    "apply_tenants",
    "list_runs",
    "list_tenants",
    "pause",
    "paused_note",
    "poison_list",
    "poison_replay",
    "queue_put",
    "resume",
    "set_secret",
    "show_tenant",
    "terminable",
    "terminate",
    "trigger",
]

_TRIES = 3


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


def apply(app: App, obj: Any, now: datetime) -> list[Applied]:
    """Validate every document in ``obj`` (an object or a list), then write them all.

    Any invalid document raises :class:`ValidationError` and nothing is written. What the
    file does not mention and the CLI manages is kept from the stored document: the tenant's
    ``paused``, a flow's ``enabled``, and its stored ``nextRunUtc`` when that run is pending
    (due: a ``trigger`` or a missed occurrence) or its cron and the timezone did not change.
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
    return done


def apply_tenants(app: App, obj: Any, now: datetime) -> list[Tenant]:
    """:func:`apply`, returning the documents as written."""
    return [a.tenant for a in apply(app, obj, now)]


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
            same = stored is not None and (old.cron, stored.timezone) == (
                entry.cron,
                merged.timezone,
            )
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


def trigger(app: App, tenant_id: str, flow: str, now: datetime) -> tuple[Tenant, str | None]:
    """Make ``flow`` due now (to the second); the note says when pause/disable still holds."""

    def change(tenant: Tenant) -> None:
        tenant.flow(flow).next_run_utc = _second(now)

    tenant = _modify(app, tenant_id, change)
    return tenant, paused_note(tenant, flow)


def pause(app: App, tenant_id: str, flow: str | None = None) -> Tenant:
    """Pause a whole tenant, or disable one of its flows."""

    def change(tenant: Tenant) -> None:
        if flow is None:
            tenant.paused = True
        else:
            tenant.flow(flow).enabled = False

    return _modify(app, tenant_id, change)


def resume(app: App, tenant_id: str, flow: str | None = None, *, now: datetime) -> Tenant:
    """Unpause a tenant (or enable one flow); resumed flows run at their next occurrence."""

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

    return _modify(app, tenant_id, change)


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


def poison_replay(app: App, message_id: str) -> str:
    """Move one poison message back to ``flow-jobs``; returns its new id (NotFound if absent)."""
    item = app.queues.queue(FLOW_JOBS_POISON).remove(message_id)
    try:
        return app.queues.queue(FLOW_JOBS).send(item.body)
    except Exception:
        app.queues.queue(FLOW_JOBS_POISON).send(item.body)  # do not lose it
        raise


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
