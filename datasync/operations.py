"""What the CLI (and later the web page) does, as plain functions over the ports.

Each function takes the :class:`~datasync.app.App` and, where time matters, ``now``;
it returns data and raises :mod:`datasync.exceptions` errors. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .exceptions import TransientError, ValidationError
from .models import RUN_STATUSES, RunRecord, Tenant, parse_tenants
from .names import validate_secret_part, validate_tenant_id
from .ports import FLOW_JOBS, FLOW_JOBS_POISON, QueueItem
from .schedule import next_occurrence

if TYPE_CHECKING:
    from .app import App

__all__ = [
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
    "trigger",
]

_TRIES = 3


def _second(now: datetime) -> datetime:
    return now.replace(microsecond=0)


def apply_tenants(app: App, obj: Any, now: datetime) -> list[Tenant]:
    """Validate every document in ``obj`` (an object or a list), then upsert them all.

    Any invalid document raises :class:`ValidationError` and nothing is written. A flow
    without ``nextRunUtc`` gets the next occurrence of its cron after ``now``."""
    tenants = parse_tenants(obj, known_flows=set(app.registry.names()))
    for tenant in tenants:
        for entry in tenant.flows:
            if entry.next_run_utc is None:
                entry.next_run_utc = next_occurrence(entry.cron, tenant.timezone, now)
    app.tenants.upsert_many(tenants)
    return tenants


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
