"""The scheduler's tick: find due flows, enqueue their jobs, move their next run on.

Order matters for "nothing lost, nothing run twice": jobs are enqueued first, then each
flow's ``nextRunUtc`` is written back guarded by its etag. A crash in between re-enqueues
the same ``scheduledFor`` on the next tick, and the instance id collapses the duplicate.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config import fault_point
from .exceptions import ValidationError
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


_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_encode_job = json.JSONEncoder(separators=(",", ":")).encode   # the text of Job.to_message
_MAX_PLANS = 4096         # distinct (cron, timezone) pairs remembered during one tick


def _check(cron: object, timezone: object) -> str | None:
    """Problem with a (cron, timezone) pair as stored, or None."""
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


def _plan(cron: object, timezone: object, now: datetime) -> tuple[str | None, str]:
    """``(problem, "")`` or ``(None, next run text)`` for a (cron, timezone) pair at ``now``.

    Computed once per distinct pair and tick: thousands of flows share a few pairs."""
    problem = _check(cron, timezone)
    if problem is not None:
        return problem, ""
    try:
        return None, format_utc(next_occurrence(cron, timezone, now))  # type: ignore[arg-type]
    except ValidationError as exc:          # e.g. a cron that never fires ("0 0 0 30 2 *")
        return f"cron: {exc}", ""


def _problem(flow: DueFlow, known_flows: Collection[str] | None,
             plan_problem: str | None) -> str | None:
    where = f"tenant {flow.tenant_id}: flows[{flow.flow_index}]"
    if known_flows is not None and flow.flow_name not in known_flows:
        return f"{where}.name: unknown flow {flow.flow_name!r}"
    if plan_problem is not None:
        if plan_problem.startswith("timezone"):
            return f"tenant {flow.tenant_id}: {plan_problem}"
        return f"{where}.{plan_problem}"
    return None


def scan_and_enqueue(tenants: TenantStore, queue: MessageQueue, now: datetime, *,
                     known_flows: Collection[str] | None = None,
                     page_size: int = 1000) -> ScanResult:
    """One tick. Streams due flows page by page; never holds all tenants in memory.

    Invalid flows are reported (tenant id and field) and skipped; the scan goes on."""
    result = ScanResult()
    now_text = format_utc(now)
    plans: dict[tuple[object, object], tuple[str | None, str]] = {}
    for page in tenants.due_flows(now, page_size=page_size):
        jobs: list[str] = []
        updates: list[tuple[DueFlow, str]] = []
        for flow in page:
            key = (flow.cron, flow.timezone)
            try:
                plan = plans[key]
            except KeyError:
                plan = _plan(flow.cron, flow.timezone, now)
                if len(plans) < _MAX_PLANS:
                    plans[key] = plan
            except TypeError:               # unhashable values in a hand-edited document
                plan = _plan(flow.cron, flow.timezone, now)
            problem = None
            if plan[0] is not None or known_flows is not None:
                problem = _problem(flow, known_flows, plan[0])
            scheduled = None
            text = flow.next_run_utc
            if problem is None and text is not None:
                try:
                    stored = parse_utc(text)
                    scheduled = text if _CANONICAL.fullmatch(text) else format_utc(stored)
                except ValidationError as exc:
                    problem = f"tenant {flow.tenant_id}: flows[{flow.flow_index}].nextRunUtc: {exc}"
            if problem is not None:
                result.invalid.append(problem)
                log.error("skipping invalid flow: %s", problem)
                continue
            if scheduled is not None and scheduled <= now_text:
                jobs.append(_encode_job({"tenantId": flow.tenant_id, "flowName": flow.flow_name,
                                         "scheduledFor": scheduled}))
            updates.append((flow, plan[1]))
        if jobs:
            queue.send_many(jobs)
            result.due += len(jobs)
        fault_point("scan-after-enqueue")          # test hook (tests/faults), off by default
        lost = tenants.advance(updates) if updates else []
        result.advanced += len(updates) - len(lost)
        result.conflicts += len(lost)
    log.info("scheduler tick at %s: %d due, %d advanced, %d conflicts, %d invalid",
             now_text, result.due, result.advanced, result.conflicts, len(result.invalid))
    return result
