"""The starter counts the jobs it does not run (``datasync.schedule.skipped``) by kind:
superseded by an edit, or skipped by the overlap policy — never by tenant or instance id."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from datasync import telemetry
from datasync.app import App
from datasync.config import Settings
from datasync.models import RunRecord
from datasync.names import format_utc
from tests.unit.test_admission import FakeDurable
from tests.unit.test_admission_revision import admit, app, edit, enqueued  # noqa: F401


@pytest.fixture
def reader():
    reader = InMemoryMetricReader()
    telemetry.shutdown()
    assert telemetry.setup(Settings(), span_exporter=InMemorySpanExporter(), metric_reader=reader)
    yield reader
    telemetry.shutdown()


def _skipped(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    return {
        p.attributes["reason"]: p.value
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "datasync.schedule.skipped"
        for p in m.data.data_points
    }


def test_superseded_and_overlap_skips_are_counted_by_kind(app: App, reader) -> None:  # noqa: F811
    first, second, third, *_ = enqueued(app)
    app.runs.record(  # the first occurrence's run is still going: the second overlaps it
        RunRecord(
            instance_id=first.instance_id,
            tenant_id="acme",
            flow_name="contacts",
            scheduled_for=format_utc(first.scheduled_for),
            status="Running",
        )
    )
    durable = FakeDurable()
    durable.status[first.instance_id] = ("Running", None)  # its orchestration is running
    assert admit(app, second, durable) == "skipped"
    edit(app, cron="0 0 * * * *")  # re-scheduled after `third` was queued
    assert admit(app, third) == "superseded"
    assert _skipped(reader) == {"overlap": 1, "superseded": 1}
