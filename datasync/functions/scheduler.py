"""The timer-triggered scheduler (``DATASYNC_SCAN_SCHEDULE``, default hourly)."""
from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from ..names import utcnow
from ..scanner import scan_and_enqueue
from ..services import get_services
from . import names

bp = df.Blueprint()
log = logging.getLogger("datasync.scheduler")


@bp.timer_trigger(arg_name="timer", schedule=names.SCAN_SCHEDULE, run_on_startup=False,
                  use_monitor=True)
def schedule_flows(timer: func.TimerRequest) -> None:
    svc = get_services()
    registry = svc.registry
    for error in registry.errors:    # a broken file's flows are skipped (not advanced), so
        log.error("flow file problem: %s", error)   # they run once it is fixed
    scan_and_enqueue(svc.tenants, svc.queues.queue(names.JOB_QUEUE), utcnow(),
                     known_flows=set(registry.names()))
