"""The missed-occurrences metric: what ``catchUp`` coalesces or drops after downtime is
counted per flow by reason, and nothing is counted when every due occurrence runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from datasync import telemetry
from datasync.adapters.memory import MemoryBackend
from datasync.config import Settings
from datasync.models import parse_tenant
from datasync.ports import FLOW_JOBS
from datasync.scanner import scan_and_enqueue

NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)


@pytest.fixture
def reader():
    reader = InMemoryMetricReader()
    telemetry.shutdown()
    assert telemetry.setup(Settings(), span_exporter=InMemorySpanExporter(), metric_reader=reader)
    yield reader
    telemetry.shutdown()


def _missed(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    return {
        p.attributes["reason"]: p.value
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "datasync.schedule.missed"
        for p in m.data.data_points
    }


def _tick(flows: list[dict]) -> int:
    backend = MemoryBackend()
    backend.tenants.upsert_many([parse_tenant({"id": "acme", "flows": flows})])
    scan_and_enqueue(backend.tenants, backend.queues.queue(FLOW_JOBS), NOW)
    return backend.queues.queue(FLOW_JOBS).count()


def test_coalesced_and_dropped_occurrences_are_counted_by_reason(reader) -> None:
    # down since 09:00: 09:00 … 14:00 are due (6); latest runs one, none runs none
    stored = "2026-11-23T09:00:00Z"
    queued = _tick(
        [
            {"name": "a", "cron": "0 0 * * * *", "nextRunUtc": stored},
            {"name": "b", "cron": "0 0 * * * *", "nextRunUtc": stored, "catchUp": "none"},
            {"name": "c", "cron": "0 0 * * * *", "nextRunUtc": stored, "catchUp": "all"},
        ]
    )
    assert queued == 1 + 0 + 6
    assert _missed(reader) == {"coalesced": 5, "catch-up-none": 6}


def test_nothing_is_missed_when_the_due_occurrence_runs(reader) -> None:
    _tick([{"name": "a", "cron": "0 0 * * * *", "nextRunUtc": "2026-11-23T14:00:00Z"}])
    assert _missed(reader) == {}
