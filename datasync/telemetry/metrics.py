"""The OpenTelemetry instruments DataSync reports (meter ``datasync``).

=====================================  =========  =======================================
instrument                             kind       labels
=====================================  =========  =======================================
``datasync.schedule.lateness``         histogram  ``datasync.flow_name`` (s: start − scheduledFor)
``datasync.schedule.missed``           counter    ``reason``
``datasync.schedule.skipped``          counter    ``reason``
``datasync.admissions``                counter    ``outcome`` (started/skipped/deferred/…)
``datasync.runs``                      counter    ``status``, ``datasync.flow_name``
``datasync.run.duration``              histogram  ``status``, ``datasync.flow_name`` (s)
``datasync.page.duration``             histogram  ``step``, ``outcome`` (s)
``datasync.records``                   counter    ``direction`` (in = pulled, out = pushed)
``datasync.queue.depth``               gauge      ``queue`` (flow-jobs, flow-jobs-poison)
``datasync.queue.oldest_age``          gauge      ``queue`` (s a visible message has waited)
``datasync.runs.stuck``                gauge      ``status`` (Pending, Running)
``datasync.scheduler.last_tick``       gauge      — (unix time of this process's last good tick)
``datasync.scheduler.ticks``           counter    ``outcome``
=====================================  =========  =======================================

Tenant ids are never labels unless ``DATASYNC_METRICS_TENANT_LABEL=true`` (then run
metrics get ``datasync.tenant_id``). The gauges are read at each export, from the ports of
the apps :meth:`Metrics.watch` was given (the app of this process).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ..ports import FLOW_JOBS, FLOW_JOBS_POISON

if TYPE_CHECKING:
    from ..app import App
    from ..ports import QueueItem

__all__ = ["Metrics", "StuckRuns"]

log = logging.getLogger("datasync.telemetry")

_STUCK_SCAN = 1000
"""Active run records looked at per status and export (newest first)."""


class StuckRuns:
    """Which active runs are stuck: Pending longer than ``pending`` seconds, or Running
    with no page progress (pages and records unchanged) for ``running`` seconds — as this
    process has observed them (a restart starts the clocks anew)."""

    def __init__(self, pending: float, running: float) -> None:
        self.pending = pending
        self.running = running
        self._seen: dict[str, tuple[str, tuple[int, int, int], float]] = {}
        self._lock = threading.Lock()

    def count(self, records: Iterable[Any], now: float) -> dict[str, int]:
        counts = {"Pending": 0, "Running": 0}
        current: dict[str, tuple[str, tuple[int, int, int], float]] = {}
        with self._lock:
            for run in records:
                progress = (run.pages, run.records_in, run.records_out)
                seen = self._seen.get(run.instance_id)
                since = (
                    seen[2]
                    if seen is not None and seen[0] == run.status and seen[1] == progress
                    else now
                )
                current[run.instance_id] = (run.status, progress, since)
                limit = self.pending if run.status == "Pending" else self.running
                if run.status in counts and now - since >= limit:
                    counts[run.status] += 1
            self._seen = current
        return counts


def _waited(item: QueueItem, now: datetime) -> float:
    """Seconds a message has been visible and waiting (0 while hidden: not yet due, or
    being handled)."""
    since = item.next_visible_at or item.inserted_at
    if since is None:
        return 0.0
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return max(0.0, (now - since).total_seconds())


class Metrics:
    """The instruments, and the observable gauges over the watched apps."""

    def __init__(self, meter: Meter, *, stuck: StuckRuns, tenant_label: bool) -> None:
        self.tenant_label = tenant_label
        self.lateness = meter.create_histogram(
            "datasync.schedule.lateness",
            unit="s",
            description="Run start minus its scheduledFor",
        )
        self.missed = meter.create_counter(
            "datasync.schedule.missed", description="Occurrences that will not run, by reason"
        )
        self.skipped = meter.create_counter(
            "datasync.schedule.skipped", description="Jobs the starter did not run, by reason"
        )
        self.admissions = meter.create_counter(
            "datasync.admissions", description="Jobs the starter handled, by outcome"
        )
        self.runs = meter.create_counter("datasync.runs", description="Finished runs, by status")
        self.run_duration = meter.create_histogram(
            "datasync.run.duration", unit="s", description="Run duration, by status"
        )
        self.page_duration = meter.create_histogram(
            "datasync.page.duration", unit="s", description="Duration of one page step"
        )
        self.records = meter.create_counter(
            "datasync.records", description="Records pulled (in) and pushed (out)"
        )
        self.ticks = meter.create_counter(
            "datasync.scheduler.ticks", description="Scheduler ticks, by outcome"
        )
        self.last_tick: float | None = None
        self._stuck = stuck
        self._apps: weakref.WeakSet[App] = weakref.WeakSet()
        self._queue_reading: tuple[float, list[tuple[str, list[QueueItem], int]]] | None = None
        meter.create_observable_gauge(
            "datasync.queue.depth", [self._queue_depth], description="Messages in the queue"
        )
        meter.create_observable_gauge(
            "datasync.queue.oldest_age",
            [self._queue_age],
            unit="s",
            description="How long the oldest visible message has waited",
        )
        meter.create_observable_gauge(
            "datasync.runs.stuck",
            [self._stuck_runs],
            description="Runs Pending, or Running without page progress, past the threshold",
        )
        meter.create_observable_gauge(
            "datasync.scheduler.last_tick",
            [self._last_tick],
            unit="s",
            description="Unix time of this process's last successful scheduler tick",
        )

    def watch(self, app: App) -> None:
        """Report the gauges over ``app``'s ports (idempotent)."""
        self._apps.add(app)

    def run_labels(self, flow_name: str, tenant_id: str, **extra: str) -> dict[str, str]:
        labels = {"datasync.flow_name": flow_name, **extra}
        if self.tenant_label:
            labels["datasync.tenant_id"] = tenant_id
        return labels

    # -- gauge callbacks (each export; never raise) -------------------------------------
    def _queues(self) -> list[tuple[str, list[QueueItem], int]]:
        """Each watched queue's messages and count, read once per export (both queue
        gauges are called in one collection: the second reuses the first's reading)."""
        now = time.monotonic()
        cached = self._queue_reading
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        reading: list[tuple[str, list[QueueItem], int]] = []
        for app in list(self._apps):
            for name in (FLOW_JOBS, FLOW_JOBS_POISON):
                try:
                    queue = app.queues.queue(name)
                    reading.append((name, queue.peek_all(), queue.count()))
                except Exception as exc:  # noqa: BLE001 - a gauge must not break the export
                    log.debug("queue gauge for %s failed: %s", name, type(exc).__name__)
        self._queue_reading = (now, reading)
        return reading

    def _queue_depth(self, _options: CallbackOptions) -> Iterable[Observation]:
        for name, _items, count in self._queues():
            yield Observation(count, {"queue": name})

    def _queue_age(self, _options: CallbackOptions) -> Iterable[Observation]:
        now = datetime.now(UTC)
        for name, items, _count in self._queues():
            age = max((_waited(item, now) for item in items), default=0.0)
            yield Observation(round(age, 3), {"queue": name})

    def _stuck_runs(self, _options: CallbackOptions) -> Iterable[Observation]:
        for app in list(self._apps):
            try:
                records = [
                    run
                    for status in ("Pending", "Running")
                    for run in app.runs.recent(status=status, limit=_STUCK_SCAN)
                ]
            except Exception as exc:  # noqa: BLE001 - a gauge must not break the export
                log.debug("stuck-runs gauge failed: %s", type(exc).__name__)
                continue
            for status, n in self._stuck.count(records, time.time()).items():
                yield Observation(n, {"status": status})

    def _last_tick(self, _options: CallbackOptions) -> Iterable[Observation]:
        if self.last_tick is not None:
            yield Observation(self.last_tick)
