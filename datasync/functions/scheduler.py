"""The timer-triggered scheduler (``DATASYNC_SCAN_SCHEDULE``, default hourly)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func

from .. import telemetry
from ..names import utcnow
from ..ports import FLOW_JOBS
from ..scanner import scan_and_enqueue
from .bindings import SCAN_SCHEDULE
from .guard import guarded
from .provider import AppProvider

if TYPE_CHECKING:
    from ..app import App

__all__ = ["PRUNE_EVERY", "blueprint", "prune_runs"]

log = logging.getLogger("datasync.scheduler")

PRUNE_EVERY = timedelta(hours=1)
"""How often a scheduler tick deletes run records past ``DATASYNC_RUN_RETENTION_DAYS``."""


def prune_runs(current: App, now: datetime) -> int:
    """Delete run records (and their page detail) older than the retention; a failure is
    logged and never stops the tick. Returns how many were deleted."""
    try:
        return current.runs.prune(now - timedelta(days=current.settings.run_retention_days))
    except Exception as exc:  # noqa: BLE001 - housekeeping must not cost the tick
        log.warning("could not prune old run records: %s: %s", type(exc).__name__, exc)
        return 0


def blueprint(app: AppProvider) -> df.Blueprint:
    bp = df.Blueprint()
    last_prune: list[datetime | None] = [None]

    @bp.timer_trigger(
        arg_name="timer", schedule=SCAN_SCHEDULE, run_on_startup=False, use_monitor=True
    )
    @guarded
    def schedule_flows(timer: func.TimerRequest) -> None:
        current = app()
        now = utcnow()
        with telemetry.tick(current):  # the tick span and heartbeat; no-op when off
            registry = current.registry
            for error in registry.errors:  # a broken file's flows are skipped (not advanced),
                log.error("flow file problem: %s", error)  # so they run once it is fixed
            result = scan_and_enqueue(
                current.tenants,
                current.queues.queue(FLOW_JOBS),
                now,
                known_flows=set(registry.names()),
                lookahead=current.settings.lookahead(),
                on_job=telemetry.job_hook(),  # None when off; else a send span per job
            )
            telemetry.record_scan(result)
        if last_prune[0] is None or now - last_prune[0] >= PRUNE_EVERY:
            last_prune[0] = now
            if deleted := prune_runs(current, now):
                log.info("deleted %d run record(s) past the retention", deleted)

    return bp
