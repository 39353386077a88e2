"""What the console's pages show, read through the ports (never the whole history).

:func:`freshness` classifies one tenant × flow from its schedule and its last success;
:func:`overview` gathers the overview page. Everything here is bounded: the run store is
asked for a page of rows or a count, the tenant scan stops at ``limit`` flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from ..exceptions import ValidationError
from ..models import RUN_STATUSES, FlowEntry, RunRecord, Tenant
from ..names import utcnow
from ..ports import FLOW_JOBS, FLOW_JOBS_POISON, QueueItem
from ..schedule import jitter_offset, occurrences, scan_interval

if TYPE_CHECKING:
    from ..app import App

__all__ = [
    "FRESHNESS_STATES",
    "Freshness",
    "Overview",
    "board",
    "freshness",
    "last_tick",
    "overview",
]

FreshnessState = Literal["on time", "late", "failing", "paused", "disabled", "never ran"]
FRESHNESS_STATES: tuple[FreshnessState, ...] = (
    "failing",
    "late",
    "never ran",
    "paused",
    "disabled",
    "on time",
)
TERMINAL = ("Completed", "Failed", "Terminated")
ACTIVE = ("Pending", "Running")
SLACK_SECONDS = 300.0
"""How long after its due time an occurrence may still be on its way (queue, start)."""


@dataclass(frozen=True, slots=True)
class Freshness:
    """One tenant × flow on the freshness board."""

    tenant_id: str
    flow_name: str
    state: FreshnessState
    note: str
    next_run_utc: datetime | None
    last_run: RunRecord | None = None
    last_success: RunRecord | None = None
    missed: datetime | None = None
    """The earliest due occurrence after the last success that has no success (late)."""


@lru_cache(maxsize=16)
def _scan_interval(schedule: str) -> float:
    return scan_interval(schedule)


def grace_seconds(app: App, tenant_id: str, entry: FlowEntry) -> float:
    """How long after an occurrence its run may still not have finished without being late:
    its jitter, a scan interval when the scheduler does not look ahead, and some slack."""
    jitter = jitter_offset(tenant_id, entry.name, entry.jitter) if entry.jitter else 0
    wait = 0.0 if app.settings.lookahead() > 0 else _scan_interval(app.settings.scan_schedule)
    return jitter + wait + SLACK_SECONDS


def freshness(app: App, tenant: Tenant, entry: FlowEntry, now: datetime) -> Freshness:
    """On time / late / failing / paused / disabled / never ran, for ``entry`` of ``tenant``.

    *late*: an occurrence the schedule allowed after the last success's ``scheduledFor``
    (or after the flow's first run when it never succeeded) is past its grace and neither
    succeeded nor is running; *failing*: the last finished run failed or was terminated."""
    tid, name = tenant.tenant_id, entry.name
    recent = app.runs.query(tenant=tid, flow=name, limit=10)
    last_run = recent[0] if recent else None
    finished = next((r for r in recent if r.status in TERMINAL), None)
    success = next((r for r in recent if r.status == "Completed"), None)
    if success is None and recent:
        found = app.runs.query(tenant=tid, flow=name, status="Completed", limit=1)
        success = found[0] if found else None
    options = entry.schedule_options()

    def result(state: FreshnessState, note: str, missed: datetime | None = None) -> Freshness:
        return Freshness(tid, name, state, note, entry.next_run_utc, last_run, success, missed)

    if not entry.enabled:
        return result("disabled", "the flow is disabled")
    if tenant.paused:
        return result("paused", "the tenant is paused")
    if options.paused_until is not None and options.paused_until > now:
        return result("paused", f"paused until {_z(options.paused_until)}")
    if last_run is None:
        due = entry.next_run_utc
        return result("never ran", f"no run yet; next run {_z(due)}" if due else "no run yet")
    if finished is not None and finished.status != "Completed":
        why = finished.reason or finished.error or "—"
        return result("failing", f"last run {finished.status.lower()}: {why}")
    missed = _missed(app, tenant, entry, now, success, recent)
    if missed is not None:
        return result("late", f"the run due {_z(missed)} has not completed", missed)
    return result("on time", f"last success {_z(_when(success))}" if success else "running")


def _missed(
    app: App,
    tenant: Tenant,
    entry: FlowEntry,
    now: datetime,
    success: RunRecord | None,
    recent: list[RunRecord],
) -> datetime | None:
    from ..names import parse_utc

    anchor = success or recent[-1]
    try:
        after = parse_utc(anchor.scheduled_for)
        until = now - timedelta(seconds=grace_seconds(app, tenant.tenant_id, entry))
        if until <= after:
            return None
        options = entry.schedule_options()
        for at in occurrences(entry.cron, tenant.timezone, after, until=until, limit=50):
            if not options.allows(at):
                continue
            if any(r.status in ACTIVE and parse_utc(r.scheduled_for) >= at for r in recent):
                return None  # its run (or a later one) is on its way
            return at
    except ValidationError:
        return None
    return None


def _when(run: RunRecord | None) -> str | None:
    return None if run is None else (run.finished_at or run.scheduled_for)


def _z(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    from ..names import format_utc

    return format_utc(value)


def board(
    app: App, now: datetime, *, tenant: str | None = None, limit: int = 200
) -> tuple[list[Freshness], bool]:
    """Freshness of every tenant × flow (of one tenant), at most ``limit``; True when cut."""
    rows: list[Freshness] = []
    tenants = [app.tenants.get(tenant)] if tenant else app.tenants.iter_tenants()
    for t in tenants:
        for entry in t.flows:
            if len(rows) >= limit:
                return rows, True
            rows.append(freshness(app, t, entry, now))
    return rows, False


def last_tick(app: App) -> datetime | None:
    """When the scheduler last ticked, as far as this process knows (its telemetry's
    heartbeat); None when unknown."""
    from .. import telemetry

    live = telemetry.active()
    stamp = getattr(getattr(live, "metrics", None), "last_tick", None)
    if not isinstance(stamp, (int, float)):
        return None
    from datetime import UTC

    return datetime.fromtimestamp(stamp, UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview page's data."""

    now: datetime
    buckets: list[str]
    counts: dict[tuple[str, str], int]
    totals: dict[str, int]
    total_runs: int
    failing: list[Freshness]
    late: list[Freshness]
    recent_failures: list[RunRecord]
    board_cut: bool
    queue_depth: int
    oldest_age_seconds: float | None
    poison_count: int
    last_tick: datetime | None
    statuses: tuple[str, ...] = field(default=RUN_STATUSES)


def overview(
    app: App,
    now: datetime | None = None,
    *,
    hours: int = 24,
    last_tick: datetime | None = None,
) -> Overview:
    """Runs by status over the last ``hours`` (hourly buckets), failing and late flows,
    the job queue's depth and oldest message's age, poison count, last scheduler tick."""
    now = now or utcnow()
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    rows = app.runs.status_counts(start, 3600)
    counts = {(b, s): n for b, s, n in rows}
    from ..names import format_utc

    buckets = [format_utc(start + timedelta(hours=i)) for i in range(hours)]
    totals: dict[str, int] = {}
    for (_b, status), n in counts.items():
        totals[status] = totals.get(status, 0) + n
    flows, cut = board(app, now)
    jobs = app.queues.queue(FLOW_JOBS)
    depth = jobs.count()
    oldest = _oldest_age(jobs.peek_all() if depth else [], now)
    return Overview(
        now=now,
        buckets=buckets,
        counts=counts,
        totals=totals,
        total_runs=app.runs.count(),
        failing=[f for f in flows if f.state == "failing"],
        late=[f for f in flows if f.state == "late"],
        recent_failures=app.runs.query(status="Failed", since=now - timedelta(days=1), limit=10),
        board_cut=cut,
        queue_depth=depth,
        oldest_age_seconds=oldest,
        poison_count=app.queues.queue(FLOW_JOBS_POISON).count(),
        last_tick=last_tick,
    )


def _oldest_age(items: list[QueueItem], now: datetime) -> float | None:
    known = [i.inserted_at for i in items if i.inserted_at is not None]
    if not known:
        return None
    return max((now - min(known)).total_seconds(), 0.0)
