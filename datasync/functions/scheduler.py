"""The timer-triggered scheduler (``DATASYNC_SCAN_SCHEDULE``, default hourly)."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from ..names import utcnow
from ..ports import FLOW_JOBS
from ..scanner import scan_and_enqueue
from .bindings import SCAN_SCHEDULE
from .guard import guarded
from .provider import AppProvider

__all__ = ["blueprint"]

log = logging.getLogger("datasync.scheduler")


def blueprint(app: AppProvider) -> df.Blueprint:
    bp = df.Blueprint()

    @bp.timer_trigger(
        arg_name="timer", schedule=SCAN_SCHEDULE, run_on_startup=False, use_monitor=True
    )
    @guarded
    def schedule_flows(timer: func.TimerRequest) -> None:
        current = app()
        registry = current.registry
        for error in registry.errors:  # a broken file's flows are skipped (not advanced),
            log.error("flow file problem: %s", error)  # so they run once it is fixed
        scan_and_enqueue(
            current.tenants,
            current.queues.queue(FLOW_JOBS),
            utcnow(),
            known_flows=set(registry.names()),
            lookahead=current.settings.lookahead(),
        )

    return bp
