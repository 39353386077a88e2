"""The scheduler's tick: find flows due within the look-ahead, enqueue their jobs, move
their next run on.

Look-ahead: a tick at ``now`` enqueues every occurrence due at or before ``now +
lookahead``, each hidden on the queue until its time (plus the flow's jitter), so runs start
on time however rarely the scan runs; ``nextRunUtc`` then moves past the last occurrence it
enqueued (the first one after the window). With ``lookahead=0`` a tick enqueues only what is
due now.

Order matters for "nothing lost, nothing run twice": jobs are enqueued first, then each
flow's ``nextRunUtc`` is written back guarded by its etag. A crash in between re-enqueues
the same occurrences on the next tick, and the instance id collapses the duplicates; of two
schedulers racing, one write-back loses and its duplicate jobs collapse the same way.

Missed occurrences (``nextRunUtc`` in the past: the scheduler was down, or ``trigger`` set
it to now) follow the flow's ``catchUp``: ``latest`` runs the stored one (several missed
occurrences coalesce into it), ``all`` runs each within ``catchUpWindow`` seconds (default
one day), ``none`` runs the stored one only when it is at most :data:`NONE_GRACE` seconds
old (a ``trigger`` still runs). Every job carries the flow's schedule revision.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import telemetry
from .exceptions import ValidationError
from .models import Job, parse_schedule_options
from .names import format_utc, parse_utc
from .ports import DueFlow, MessageQueue, TenantStore
from .schedule import (
    DEFAULT_OPTIONS,
    ScheduleOptions,
    jitter_offset,
    next_occurrence,
    occurrences,
    revision,
    validate_cron,
    validate_timezone,
)

__all__ = [
    "MAX_CATCH_UP",
    "MAX_WINDOW",
    "NONE_GRACE",
    "ScanResult",
    "scan_and_enqueue",
    "schedule_now",
]

log = logging.getLogger("datasync.scheduler")

MAX_WINDOW = 1000
"""Occurrences of one flow enqueued by one tick at most (the rest: the next tick)."""
MAX_CATCH_UP = 1000
"""Missed occurrences of one flow run by ``catchUp: all`` at most, the latest ones."""
NONE_GRACE = 300.0
"""``catchUp: none``: a stored next run at most this many seconds old still runs."""
DEFAULT_CATCH_UP_WINDOW = 86_400

OnJob = Callable[[Job], Job]


@dataclass
class ScanResult:
    due: int = 0  # jobs enqueued
    advanced: int = 0  # nextRunUtc values written back
    conflicts: int = 0  # write-backs that lost a race (someone else moved it)
    invalid: list[str] = field(default_factory=list)  # "tenant acme: flows[0].cron: ..."
    flows: int = 0  # flows that got at least one job


_MAX_PLANS = 4096  # distinct (cron, timezone) pairs remembered during one tick


def _check(cron: object, timezone: object) -> str | None:
    """Problem with a (cron, timezone) pair as stored (``"cron: …"``/``"timezone: …"``)."""
    for what, check, value in (
        ("cron", validate_cron, cron),
        ("timezone", validate_timezone, timezone),
    ):
        try:
            check(value)
        except ValidationError as exc:
            return f"{what}: {exc}"
    return None


def _problem(
    flow: DueFlow, known_flows: Collection[str] | None, pair_problem: str | None
) -> str | None:
    where = _where(flow)
    if known_flows is not None and flow.flow_name not in known_flows:
        return f"{where}.name: unknown flow {flow.flow_name!r}"
    if pair_problem is not None:
        if pair_problem.startswith("timezone"):
            return f"tenant {flow.tenant_id}: {pair_problem}"
        return f"{where}.{pair_problem}"
    return None


def _missed(
    cron: str, tz: str, stored: datetime, now: datetime, options: ScheduleOptions
) -> list[datetime]:
    """The occurrences to run for a stored next run at or before ``now``, by ``catchUp``."""
    if options.catch_up == "none":
        late = (now - stored).total_seconds()
        return [stored] if late <= NONE_GRACE and options.allows(stored) else []
    if options.catch_up == "all":
        start = now - timedelta(seconds=options.catch_up_window or DEFAULT_CATCH_UP_WINDOW)
        found = [stored] if stored >= start and options.allows(stored) else []
        after = max(stored, start - timedelta(seconds=1))
        found += [t for t in occurrences(cron, tz, after, now) if options.allows(t)]
        return found[-MAX_CATCH_UP:]
    if options.allows(stored):  # latest: coalesce into the stored one
        return [stored]
    lower = max(t for t in (options.start_at, options.paused_until, stored) if t is not None)
    first = next(occurrences(cron, tz, lower - timedelta(seconds=1), now, limit=1), None)
    return [first] if first is not None and options.allows(first) else []


def plan_flow(
    cron: str,
    tz: str,
    stored: datetime | None,
    now: datetime,
    horizon: datetime,
    options: ScheduleOptions,
) -> tuple[list[datetime], datetime]:
    """``(occurrences to enqueue, new nextRunUtc)`` for one flow at ``now`` with the window
    ending at ``horizon`` (>= now). Pure; raises :class:`ValidationError` for a cron that
    never fires again."""
    times: list[datetime] = []
    after = now
    if stored is not None and stored <= now:
        times = _missed(cron, tz, stored, now, options)
    elif stored is not None and stored <= horizon:
        if options.allows(stored):
            times.append(stored)
        after = stored
    elif stored is not None:  # not in the window yet
        return [], stored
    last = horizon
    window = list(occurrences(cron, tz, after, horizon, limit=MAX_WINDOW))
    if len(window) == MAX_WINDOW:
        last = window[-1]
    times += [t for t in window if options.allows(t)]
    return times, next_occurrence(cron, tz, last)


MISSED_COUNT_CAP = 10_000
"""Occurrences counted at most per flow and tick for the missed metric."""
_MISSED_REASON = {"latest": "coalesced", "all": "window", "none": "catch-up-none"}


def missed_count(
    cron: str, tz: str, stored: datetime, now: datetime, ran: Sequence[datetime]
) -> int:
    """Occurrences due by ``now`` (the stored next run and the cron's occurrences after
    it, at most :data:`MISSED_COUNT_CAP`) that are not among those ``ran``."""
    due = 1 + sum(1 for _ in occurrences(cron, tz, stored, now, limit=MISSED_COUNT_CAP))
    return max(0, due - sum(1 for t in ran if t <= now))


class _StoredNextRun(ValidationError):
    """A stored ``nextRunUtc`` that is not a time."""


_SAFE = re.compile(r"[A-Za-z0-9-]{1,40}")  # names that need no JSON escaping


@dataclass(frozen=True, slots=True)
class _Plan:
    """One flow's tick, shareable by every flow with the same cron, timezone, stored next
    run and default options: occurrences (with their ``...Z`` text) and the new next run."""

    times: tuple[tuple[datetime, str], ...]
    next_run: str
    missed: int = 0  # occurrences up to now that catchUp coalesced or dropped (when counted)


@dataclass
class _Tick:
    now: datetime
    horizon: datetime
    known_flows: Collection[str] | None
    on_job: OnJob | None
    checked: dict[tuple[object, object], str | None] = field(default_factory=dict)
    revisions: dict[tuple[str, str], str] = field(default_factory=dict)
    plans: dict[tuple[str, str, str | None], _Plan] = field(default_factory=dict)
    safe_names: dict[str, bool] = field(default_factory=dict)
    count_missed: bool = False  # telemetry is on: count what catchUp does not run

    def pair_problem(self, flow: DueFlow) -> str | None:
        key = (flow.cron, flow.timezone)
        try:
            return self.checked[key]
        except KeyError:
            problem = _check(flow.cron, flow.timezone)
            if len(self.checked) < _MAX_PLANS:
                self.checked[key] = problem
            return problem
        except TypeError:  # unhashable values in a hand-edited document
            return _check(flow.cron, flow.timezone)

    def revision(self, cron: str, tz: str, options: ScheduleOptions) -> str:
        if options is not _DEFAULT:
            return revision(cron, tz, options)
        found = self.revisions.get((cron, tz))
        if found is None:
            found = revision(cron, tz, options)
            if len(self.revisions) < _MAX_PLANS:
                self.revisions[(cron, tz)] = found
        return found

    def safe(self, name: str) -> bool:
        """Whether ``name`` goes into a job's JSON as it is (remembered per tick)."""
        if not isinstance(name, str):
            return False
        found = self.safe_names.get(name)
        if found is None:
            found = _SAFE.fullmatch(name) is not None
            if len(self.safe_names) < _MAX_PLANS:
                self.safe_names[name] = found
        return found

    def _plan(self, cron: str, tz: str, stored_text: str | None, options: ScheduleOptions) -> _Plan:
        """The flow's plan; cached for flows with default options (raises ValidationError)."""
        key = (cron, tz, stored_text)
        shared = options is _DEFAULT
        if shared:
            found = self.plans.get(key)
            if found is not None:
                return found
        try:
            stored = parse_utc(stored_text) if stored_text is not None else None
        except ValidationError as exc:
            raise _StoredNextRun(str(exc)) from None
        times, next_run = plan_flow(cron, tz, stored, self.now, self.horizon, options)
        missed = 0
        if self.count_missed and stored is not None and stored <= self.now:
            missed = missed_count(cron, tz, stored, self.now, times)
        result = _Plan(tuple((t, format_utc(t)) for t in times), format_utc(next_run), missed)
        if shared and len(self.plans) < _MAX_PLANS:
            self.plans[key] = result
        return result

    def plan(self, flow: DueFlow) -> tuple[str | None, list[tuple[str, datetime]], str]:
        """``(problem, [(job message, visible at)], new nextRunUtc text)`` for one row."""
        pair_problem = self.pair_problem(flow)
        known = self.known_flows
        if pair_problem is not None or (known is not None and flow.flow_name not in known):
            return _problem(flow, known, pair_problem), [], ""
        raw = flow.options
        if raw:
            try:
                options = parse_schedule_options(raw, _where(flow))
            except ValidationError as exc:
                return str(exc), [], ""
        else:
            options = _DEFAULT
        cron, tz, stored = flow.cron, flow.timezone, flow.next_run_utc
        try:
            if stored is not None and not isinstance(stored, str):
                parse_utc(stored)  # raises: says what it got
            plan = self._plan(cron, tz, stored, options)
        except _StoredNextRun as exc:
            return f"{_where(flow)}.nextRunUtc: {exc}", [], ""
        except ValidationError as exc:
            if stored is not None and not isinstance(stored, str):
                return f"{_where(flow)}.nextRunUtc: {exc}", [], ""
            return f"{_where(flow)}.cron: {exc}", [], ""  # e.g. a cron that never fires
        if plan.missed:
            telemetry.count_missed(_MISSED_REASON[options.catch_up], plan.missed)
        if not plan.times:
            return None, [], plan.next_run
        rev = self.revision(cron, tz, options)
        offset = jitter_offset(flow.tenant_id, flow.flow_name, options.jitter)
        tenant, name = flow.tenant_id, flow.flow_name
        if self.on_job is None and self.safe(name) and _SAFE.fullmatch(tenant):
            head = f'{{"tenantId":"{tenant}","flowName":"{name}","scheduledFor":"'
            tail = f'","revision":"{rev}"}}'
            if not offset:  # the text Job.to_message writes, without the Job
                return None, [(head + text + tail, at) for at, text in plan.times], plan.next_run
            delay = timedelta(seconds=offset)
            jobs = [(head + text + tail, at + delay) for at, text in plan.times]
            return None, jobs, plan.next_run
        out: list[tuple[str, datetime]] = []
        delay = timedelta(seconds=offset)
        for at, _text in plan.times:
            job = Job(tenant, name, at, revision=rev)
            if self.on_job is not None:
                job = self.on_job(job)
            out.append((job.to_message(), at + delay if offset else at))
        return None, out, plan.next_run


def _where(flow: DueFlow) -> str:
    return f"tenant {flow.tenant_id}: flows[{flow.flow_index}]"


_DEFAULT = DEFAULT_OPTIONS


def _run(
    tenants: TenantStore,
    queue: MessageQueue,
    tick: _Tick,
    pages: Iterable[list[DueFlow]],
) -> ScanResult:
    result = ScanResult()
    now = tick.now
    for page in pages:
        immediate: list[str] = []
        delayed: list[tuple[str, datetime]] = []
        updates: list[tuple[DueFlow, str]] = []
        for flow in page:
            problem, jobs, next_run = tick.plan(flow)
            if problem is not None:
                result.invalid.append(problem)
                log.error("skipping invalid flow: %s", problem)
                continue
            if jobs:
                result.flows += 1
                for text, visible in jobs:
                    if visible <= now:
                        immediate.append(text)
                    else:
                        delayed.append((text, visible))
            updates.append((flow, next_run))
        if immediate:
            queue.send_many(immediate)
        if delayed:
            queue.send_at(delayed)
        result.due += len(immediate) + len(delayed)
        lost = tenants.advance(updates) if updates else []
        result.advanced += len(updates) - len(lost)
        result.conflicts += len(lost)
    return result


def scan_and_enqueue(
    tenants: TenantStore,
    queue: MessageQueue,
    now: datetime,
    *,
    known_flows: Collection[str] | None = None,
    page_size: int = 1000,
    lookahead: float = 0.0,
    on_job: OnJob | None = None,
) -> ScanResult:
    """One tick. Streams due flows page by page; never holds all tenants in memory.

    ``lookahead`` (seconds): enqueue occurrences due up to ``now + lookahead``, each hidden
    until due. ``on_job`` is called per job before it is serialised (it may return a
    changed job, e.g. with a ``traceparent``). Invalid flows are reported (tenant id and
    field) and skipped; the scan goes on."""
    horizon = now + timedelta(seconds=max(0.0, lookahead))
    tick = _Tick(now, horizon, known_flows, on_job, count_missed=telemetry.active() is not None)
    result = _run(tenants, queue, tick, tenants.due_flows(horizon, page_size=page_size))
    log.info(
        "scheduler tick at %s (window to %s): %d jobs for %d flows, %d advanced, "
        "%d conflicts, %d invalid",
        format_utc(now),
        format_utc(horizon),
        result.due,
        result.flows,
        result.advanced,
        result.conflicts,
        len(result.invalid),
    )
    return result


def schedule_now(
    tenants: TenantStore,
    queue: MessageQueue,
    tenant_id: str,
    now: datetime,
    *,
    lookahead: float,
    known_flows: Collection[str] | None = None,
    flow_name: str | None = None,
    on_job: OnJob | None = None,
) -> ScanResult:
    """The tick for one tenant (or one of its flows), at once: what a command that edited
    the tenant (``trigger``, ``resume``, ``tenants apply``) calls so the new window is on
    the queue without waiting for the next scan. Occurrences already enqueued may be sent
    again; their instance ids collapse them at start."""
    horizon = now + timedelta(seconds=max(0.0, lookahead))
    tick = _Tick(now, horizon, known_flows, on_job)
    pages = (
        [f for f in page if flow_name is None or f.flow_name == flow_name]
        for page in tenants.due_flows(horizon, tenant_id=tenant_id)
    )
    result = _run(tenants, queue, tick, pages)
    log.info(
        "scheduled tenant %s%s at %s: %d jobs, %d advanced, %d conflicts, %d invalid",
        tenant_id,
        f" flow {flow_name}" if flow_name else "",
        format_utc(now),
        result.due,
        result.advanced,
        result.conflicts,
        len(result.invalid),
    )
    return result
