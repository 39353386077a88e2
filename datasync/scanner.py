"""The scheduler's tick: find due flows, enqueue their jobs, move their next run on.

Order matters for "nothing lost, nothing run twice": jobs are enqueued first, then each
flow's ``nextRunUtc`` is written back guarded by its etag. A crash in between re-enqueues
the same ``scheduledFor`` on the next tick, and the instance id collapses the duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from .exceptions import ValidationError
from .models import Job
from .names import format_utc, parse_utc
from .ports import DueFlow, MessageQueue, TenantStore
from .schedule import plan, validate_cron, validate_timezone

__all__ = ["ScanResult", "scan_and_enqueue"]

log = logging.getLogger("datasync.scheduler")


@dataclass
class ScanResult:
    due: int = 0  # jobs enqueued
    advanced: int = 0  # nextRunUtc values written back
    conflicts: int = 0  # write-backs that lost a race (someone else moved it)
    invalid: list[str] = field(default_factory=list)  # "tenant acme: flows[0].cron: ..."


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
    where = f"tenant {flow.tenant_id}: flows[{flow.flow_index}]"
    if known_flows is not None and flow.flow_name not in known_flows:
        return f"{where}.name: unknown flow {flow.flow_name!r}"
    if pair_problem is not None:
        if pair_problem.startswith("timezone"):
            return f"tenant {flow.tenant_id}: {pair_problem}"
        return f"{where}.{pair_problem}"
    return None


def _plan_flow(
    flow: DueFlow,
    now: datetime,
    checked: dict[tuple[object, object], str | None],
    known_flows: Collection[str] | None,
) -> tuple[str | None, Job | None, str]:
    """``(problem, job to enqueue or None, new nextRunUtc text)`` for one due-query row."""
    key = (flow.cron, flow.timezone)
    try:
        pair_problem = checked[key]
    except KeyError:
        pair_problem = _check(flow.cron, flow.timezone)
        if len(checked) < _MAX_PLANS:
            checked[key] = pair_problem
    except TypeError:  # unhashable values in a hand-edited document
        pair_problem = _check(flow.cron, flow.timezone)
    problem = _problem(flow, known_flows, pair_problem)
    if problem is not None:
        return problem, None, ""
    stored = None
    if flow.next_run_utc is not None:
        try:
            stored = parse_utc(flow.next_run_utc)
        except ValidationError as exc:
            return (
                f"tenant {flow.tenant_id}: flows[{flow.flow_index}].nextRunUtc: {exc}",
                None,
                "",
            )
    try:
        scheduled, next_run = plan(flow.cron, flow.timezone, stored, now)
    except ValidationError as exc:  # e.g. a cron that never fires ("0 0 0 30 2 *")
        return f"tenant {flow.tenant_id}: flows[{flow.flow_index}].cron: {exc}", None, ""
    job = None if scheduled is None else Job(flow.tenant_id, flow.flow_name, scheduled)
    return None, job, format_utc(next_run)


def scan_and_enqueue(
    tenants: TenantStore,
    queue: MessageQueue,
    now: datetime,
    *,
    known_flows: Collection[str] | None = None,
    page_size: int = 1000,
) -> ScanResult:
    """One tick. Streams due flows page by page; never holds all tenants in memory.

    Invalid flows are reported (tenant id and field) and skipped; the scan goes on."""
    result = ScanResult()
    checked: dict[tuple[object, object], str | None] = {}
    for page in tenants.due_flows(now, page_size=page_size):
        jobs: list[str] = []
        updates: list[tuple[DueFlow, str]] = []
        for flow in page:
            problem, job, next_run = _plan_flow(flow, now, checked, known_flows)
            if problem is not None:
                result.invalid.append(problem)
                log.error("skipping invalid flow: %s", problem)
                continue
            if job is not None:
                jobs.append(job.to_message())
            updates.append((flow, next_run))
        if jobs:
            queue.send_many(jobs)
            result.due += len(jobs)
        lost = tenants.advance(updates) if updates else []
        result.advanced += len(updates) - len(lost)
        result.conflicts += len(lost)
    log.info(
        "scheduler tick at %s: %d due, %d advanced, %d conflicts, %d invalid",
        format_utc(now),
        result.due,
        result.advanced,
        result.conflicts,
        len(result.invalid),
    )
    return result
