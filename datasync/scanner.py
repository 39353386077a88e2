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
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .exceptions import ValidationError
from .models import Job
from .names import format_utc, parse_utc
from .ports import DueFlow, MessageQueue, TenantStore
from .schedule import next_occurrence, validate_cron

__all__ = ["ScanResult", "scan_and_enqueue"]

log = logging.getLogger("datasync.scheduler")


@dataclass
class ScanResult:
    due: int = 0                      # jobs enqueued
    advanced: int = 0                 # nextRunUtc values written back
    conflicts: int = 0                # write-backs that lost a race (someone else moved it)
    invalid: list[str] = field(default_factory=list)   # "tenant acme: flows[0].cron: ..."


@lru_cache(maxsize=4096)
def _check(cron: object, timezone: object) -> str | None:
    """Problem with a (cron, timezone) pair as stored, or None. Cached: pairs repeat."""
    if not isinstance(cron, str):
        return f"cron: expected a string, got {type(cron).__name__}"
    try:
        validate_cron(cron)
    except ValidationError as exc:
        return f"cron: {exc}"
    if not isinstance(timezone, str):
        return f"timezone: expected a string, got {type(timezone).__name__}"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"timezone: unknown timezone {timezone!r}"
    return None


def _problem(flow: DueFlow, known_flows: Collection[str] | None) -> str | None:
    where = f"tenant {flow.tenant_id}: flows[{flow.flow_index}]"
    if known_flows is not None and flow.flow_name not in known_flows:
        return f"{where}.name: unknown flow {flow.flow_name!r}"
    problem = _check(flow.cron, flow.timezone)
    if problem is not None:
        field_ = "timezone" if problem.startswith("timezone") else None
        return (f"tenant {flow.tenant_id}: {problem}" if field_
                else f"{where}.{problem}")
    return None


def scan_and_enqueue(tenants: TenantStore, queue: MessageQueue, now: datetime, *,
                     known_flows: Collection[str] | None = None,
                     page_size: int = 1000) -> ScanResult:
    """One tick. Streams due flows page by page; never holds all tenants in memory.

    Invalid flows are reported (tenant id and field) and skipped; the scan goes on."""
    result = ScanResult()
    now_text = format_utc(now)
    for page in tenants.due_flows(now, page_size=page_size):
        jobs: list[str] = []
        updates: list[tuple[DueFlow, str]] = []
        for flow in page:
            problem = _problem(flow, known_flows)
            stored = None
            if problem is None and flow.next_run_utc is not None:
                try:
                    stored = parse_utc(flow.next_run_utc)
                except ValidationError as exc:
                    problem = f"tenant {flow.tenant_id}: flows[{flow.flow_index}].nextRunUtc: {exc}"
            if problem is not None:
                result.invalid.append(problem)
                log.error("skipping invalid flow: %s", problem)
                continue
            next_run = format_utc(next_occurrence(flow.cron, flow.timezone, now))
            if stored is not None and format_utc(stored) <= now_text:
                jobs.append(Job(flow.tenant_id, flow.flow_name, stored).to_message())
            updates.append((flow, next_run))
        if jobs:
            queue.send_many(jobs)
            result.due += len(jobs)
        lost = tenants.advance(updates) if updates else []
        result.advanced += len(updates) - len(lost)
        result.conflicts += len(lost)
    log.info("scheduler tick at %s: %d due, %d advanced, %d conflicts, %d invalid",
             now_text, result.due, result.advanced, result.conflicts, len(result.invalid))
    return result
