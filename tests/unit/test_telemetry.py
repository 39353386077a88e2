"""Telemetry set-up, the hooks' spans and the gauges, with the SDK's in-memory exporters."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from datasync import telemetry
from datasync.app import App
from datasync.config import Settings
from datasync.exceptions import ConfigError
from datasync.models import Job, RunRecord
from datasync.ports import FLOW_JOBS, FLOW_JOBS_POISON
from datasync.redact import register_secret
from datasync.telemetry.metrics import StuckRuns
from datasync.telemetry.spans import format_traceparent, parse_traceparent, run_span_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def live(tmp_path):
    """Telemetry on with in-memory sinks, over an app on a fresh SQLite home."""
    settings = Settings.from_env({"DATASYNC_HOME": str(tmp_path / "home")})
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.shutdown()
    assert telemetry.setup(settings, span_exporter=spans, metric_reader=reader)
    app = App.from_settings(settings)
    yield telemetry.active(), app, spans, reader
    telemetry.shutdown()
    app.close()


def _points(reader: InMemoryMetricReader, name: str) -> list:
    data = reader.get_metrics_data()
    return [
        p
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATION"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DATASYNC_TELEMETRY": "", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- settings and set-up --------------------------------------------------------------------
def test_settings_pick_the_exporters_and_refuse_a_bad_mode():
    assert Settings.from_env({}).telemetry == ()
    both = Settings.from_env(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=abc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        }
    )
    assert both.telemetry == ("azure-monitor", "otlp")
    assert "InstrumentationKey" not in repr(both)
    assert Settings.from_env({"DATASYNC_TELEMETRY": "console"}).telemetry == ("console",)
    off = Settings.from_env(
        {"DATASYNC_TELEMETRY": "off", "APPLICATIONINSIGHTS_CONNECTION_STRING": "x"}
    )
    assert off.telemetry == ()
    with pytest.raises(ConfigError, match="DATASYNC_TELEMETRY must be auto, console or off"):
        Settings.from_env({"DATASYNC_TELEMETRY": "yes please"})
    with pytest.raises(ConfigError, match="DATASYNC_STUCK_PENDING_SECONDS"):
        Settings.from_env({"DATASYNC_STUCK_PENDING_SECONDS": "0"})


def test_off_means_no_sdk_import_and_no_hook():
    code = (
        "import sys, function_app\n"
        "from datasync import telemetry\n"
        "print(telemetry.active() is None, telemetry.job_hook() is None,\n"
        "      any(m.startswith('opentelemetry.sdk') for m in sys.modules),\n"
        "      'opentelemetry.instrumentation' in sys.modules)\n"
    )
    proc = _python(code, {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "False", "False"]


def test_setup_is_idempotent_and_adds_no_log_handler(tmp_path):
    telemetry.shutdown()
    root = logging.getLogger()
    before = list(root.handlers)
    settings = Settings.from_env({"DATASYNC_HOME": str(tmp_path)})
    assert not telemetry.setup(settings)  # nothing asked for: off
    exporter = InMemorySpanExporter()
    try:
        assert telemetry.setup(settings, span_exporter=exporter)
        first = telemetry.active()
        assert telemetry.setup(settings) and telemetry.setup_from_env()
        assert telemetry.active() is first
        assert root.handlers == before
    finally:
        telemetry.shutdown()
    assert telemetry.active() is None


def test_azure_monitor_distro_sets_up_without_exporting_logs():
    """The real distro, pointed at a closed port: traces and metrics on, no log handler
    (the Functions host already ships the worker's log lines)."""
    code = (
        "import logging\n"
        "from datasync import telemetry\n"
        "from datasync.config import Settings\n"
        "from opentelemetry import trace\n"
        "assert telemetry.setup(Settings.from_env())\n"
        "live = telemetry.active()\n"
        "print(type(trace.get_tracer_provider()).__module__.startswith('opentelemetry.sdk'),\n"
        "      live.tracer_provider is trace.get_tracer_provider(),\n"
        "      [type(h).__name__ for h in logging.getLogger().handlers])\n"
        "with live.tracer.start_as_current_span('x'): pass\n"
    )
    env = {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            "IngestionEndpoint=http://127.0.0.1:9/"
        ),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    }
    proc = _python(code, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True True []"


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, len(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otlp_exports_spans_and_metrics_to_the_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = (
            "from datasync import telemetry\n"
            "from datasync.config import Settings\n"
            "assert telemetry.setup(Settings.from_env())\n"
            "live = telemetry.active()\n"
            "with live.tracer.start_as_current_span('datasync.pull'): pass\n"
            "live.metrics.records.add(3, {'direction': 'in'})\n"
            "telemetry.shutdown()\n"
        )
        proc = _python(
            code, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    finally:
        server.shutdown()
        server.server_close()
    paths = {path for path, size in _Collector.received if size > 0}
    assert {"/v1/traces", "/v1/metrics"} <= paths


def test_console_prints_spans_on_stderr_only():
    code = (  # importing function_app is what sets it up (build_function_app)
        "import function_app\n"
        "from datasync import telemetry\n"
        "with telemetry.active().tracer.start_as_current_span('datasync.push'): pass\n"
        "telemetry.shutdown()\n"
    )
    proc = _python(code, {"DATASYNC_TELEMETRY": "console"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == ""
    assert '"name": "datasync.push"' in proc.stderr


# -- trace context -----------------------------------------------------------------------------
def test_traceparent_round_trip_and_rejects():
    tp = format_traceparent(0xABC, 0x123)
    assert tp == "00-00000000000000000000000000000abc-0000000000000123-01"
    assert parse_traceparent(tp) == (0xABC, 0x123, 1)
    for bad in (None, "", "01-" + tp[3:], tp.upper(), "00-" + "0" * 32 + "-0000000000000123-01"):
        assert parse_traceparent(bad) is None
    assert run_span_id(0xABC, "Workflow-a--b-20260101T000000Z") == run_span_id(
        0xABC, "Workflow-a--b-20260101T000000Z"
    )
    assert run_span_id(0xABC, "Workflow-a--b-20260101T000000Z") != run_span_id(
        0xABD, "Workflow-a--b-20260101T000000Z"
    )


def test_hooks_chain_send_process_and_steps_into_one_trace(live):
    tel, app, exporter, reader = live
    job = Job("acme", "contacts-to-erp", datetime(2026, 1, 1, tzinfo=UTC))
    with tel.tick(app):
        sent = tel.on_job(job)
    assert parse_traceparent(sent.traceparent) is not None
    with tel.process(app, sent, "msg-1", 1) as processing:
        processing.outcome = "started"
    args = {
        "tenantId": "acme",
        "flowName": "contacts-to-erp",
        "runId": job.instance_id,
        "pageKey": job.instance_id + "/p1",
        "traceparent": processing.traceparent,
    }
    assert tel.step(app, "pull", args, lambda: {"count": 5, "key": "k"}) == {"count": 5, "key": "k"}
    with pytest.raises(KeyError):
        tel.step(app, "transform", args, lambda: {}["boom"])
    spans = {s.name: s for s in exporter.get_finished_spans()}
    tick, send = spans["datasync.scheduler.tick"], spans["send flow-jobs"]
    process, pull = spans["process flow-jobs"], spans["datasync.pull"]
    assert send.parent.span_id == tick.context.span_id
    assert process.parent.span_id == send.context.span_id
    assert process.attributes["messaging.message.id"] == "msg-1"
    assert process.attributes["datasync.lateness_ms"] > 0
    trace_id = tick.context.trace_id
    assert pull.parent.span_id == run_span_id(trace_id, job.instance_id)
    assert pull.attributes["datasync.page"] == 1 and pull.attributes["datasync.records_in"] == 5
    failed = spans["datasync.transform"]
    assert failed.status.status_code.name == "ERROR"
    assert failed.attributes["error.type"] == "KeyError"
    assert not failed.events  # no exception text (it may hold a payload)
    outcomes = {p.attributes["outcome"]: p.value for p in _points(reader, "datasync.admissions")}
    assert outcomes == {"started": 1}


def test_a_job_without_traceparent_starts_a_new_trace(live):
    tel, app, exporter, _ = live
    job = Job("acme", "contacts-to-erp", datetime(2026, 1, 1, tzinfo=UTC))
    with tel.tracer.start_as_current_span("unrelated"), tel.process(app, job, None, None) as p:
        p.outcome = "skipped"
    [process] = [s for s in exporter.get_finished_spans() if s.name == "process flow-jobs"]
    assert process.parent is None and process.kind == SpanKind.CONSUMER
    assert process.attributes["datasync.admission"] == "skipped"


def test_http_spans_keep_no_query_userinfo_or_secret(live):
    tel, _app, exporter, _ = live
    secret = "tok-" + os.urandom(6).hex()
    register_secret(secret)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://user:{secret}@127.0.0.1:{server.server_port}/{secret}/items"
        with tel.tracer.start_as_current_span("datasync.push"):
            httpx.post(url, params={"api_key": secret, "after": "c1"}, json={"x": secret})
    finally:
        server.shutdown()
        server.server_close()
    [http] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    dump = json.dumps(dict(http.attributes))
    assert secret not in dump and "api_key" not in dump and "after" not in dump
    assert http.attributes["url.full"].endswith("/***/items")


def test_skip_reasons_become_a_few_labels(live):
    _tel, _app, _exporter, reader = live
    for reason in (
        "tenant is paused",
        "flow is disabled",
        "overlap: Workflow-acme--x-20260101T000000Z was still running",
        "it was started by another starter",
        "something new",
    ):
        telemetry.count_skipped(reason)
    telemetry.count_missed("coalesced", 3)
    skipped = {
        p.attributes["reason"]: p.value for p in _points(reader, "datasync.schedule.skipped")
    }
    assert skipped == {"paused": 1, "disabled": 1, "overlap": 1, "duplicate": 1, "other": 1}
    [missed] = _points(reader, "datasync.schedule.missed")
    assert (missed.attributes["reason"], missed.value) == ("coalesced", 3)


# -- gauges ----------------------------------------------------------------------------------
def test_queue_gauges_read_depth_and_oldest_waiting_age(live):
    tel, app, _exporter, reader = live
    tel.metrics.watch(app)
    jobs = app.queues.queue(FLOW_JOBS)
    jobs.send('{"a": 1}')
    jobs.send('{"a": 2}', visibility_delay=3600)  # not due yet: not waiting
    app.queues.queue(FLOW_JOBS_POISON).send("bad")
    time.sleep(1.1)
    depth = {p.attributes["queue"]: p.value for p in _points(reader, "datasync.queue.depth")}
    assert depth == {FLOW_JOBS: 2, FLOW_JOBS_POISON: 1}
    age = {p.attributes["queue"]: p.value for p in _points(reader, "datasync.queue.oldest_age")}
    assert 1.0 <= age[FLOW_JOBS] < 30 and 1.0 <= age[FLOW_JOBS_POISON] < 30


def _run(instance: str, status: str, pages: int = 0) -> RunRecord:
    return RunRecord(
        instance_id=instance,
        tenant_id="acme",
        flow_name="contacts-to-erp",
        scheduled_for="2026-01-01T00:00:00Z",
        status=status,
        pages=pages,
    )


def test_stuck_runs_are_pending_too_long_or_running_without_progress():
    stuck = StuckRuns(pending=300, running=600)
    t0 = 1_000_000.0
    first = [_run("p", "Pending"), _run("r", "Running", pages=1), _run("q", "Running", pages=4)]
    assert stuck.count(first, t0) == {"Pending": 0, "Running": 0}
    later = [_run("p", "Pending"), _run("r", "Running", pages=1), _run("q", "Running", pages=5)]
    assert stuck.count(later, t0 + 301) == {"Pending": 1, "Running": 0}
    assert stuck.count(later, t0 + 601) == {"Pending": 1, "Running": 1}  # r: no page since t0
    assert stuck.count(later, t0 + 1000) == {"Pending": 1, "Running": 2}  # q: since t0+301
    assert stuck.count([], t0 + 2000) == {"Pending": 0, "Running": 0}  # ended: forgotten


def test_stuck_gauge_reads_the_run_store(live, tmp_path):
    tel, app, _exporter, reader = live
    tel.metrics.watch(app)
    tel.metrics._stuck.pending = 0.5
    app.runs.create(_run("Workflow-acme--contacts-to-erp-20260101T000000Z", "Pending"))
    _points(reader, "datasync.runs.stuck")  # first sight
    time.sleep(0.6)
    stuck = {p.attributes["status"]: p.value for p in _points(reader, "datasync.runs.stuck")}
    assert stuck == {"Pending": 1, "Running": 0}


def test_last_tick_is_reported_only_after_a_good_tick(live):
    tel, app, _exporter, reader = live
    assert _points(reader, "datasync.scheduler.last_tick") == []
    with pytest.raises(RuntimeError), tel.tick(app):
        raise RuntimeError("tenant store down")
    assert _points(reader, "datasync.scheduler.last_tick") == []
    before = time.time()
    with tel.tick(app):
        pass
    [point] = _points(reader, "datasync.scheduler.last_tick")
    assert point.value >= before - 0.01
    ticks = {p.attributes["outcome"]: p.value for p in _points(reader, "datasync.scheduler.ticks")}
    assert ticks == {"failed": 1, "ok": 1}


def test_run_start_comes_from_the_record(live):
    tel, app, exporter, reader = live
    job = Job("acme", "contacts-to-erp", datetime(2026, 1, 1, tzinfo=UTC))
    record = _run(job.instance_id, "Running")
    app.runs.create(record)
    app.runs.begin(record)
    processing_tp = format_traceparent(0x1234, 0x99)
    args = {
        "tenantId": "acme",
        "flowName": "contacts-to-erp",
        "runId": job.instance_id,
        "status": "Failed",
        "traceparent": processing_tp,
    }
    tel.step(app, "finish", args, lambda: {"status": "Failed"})
    [run] = [s for s in exporter.get_finished_spans() if s.name == "datasync.run"]
    assert run.context.span_id == run_span_id(0x1234, job.instance_id)
    assert run.parent.span_id == 0x99
    assert run.status.status_code.name == "ERROR"
    stored = app.runs.get(job.instance_id)
    expected = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=stored.lateness_seconds)
    # the run's first start, to the second below (its begin_run span lies within the run)
    assert run.start_time == expected.replace(microsecond=0).timestamp() * 1e9
    [failed] = _points(reader, "datasync.runs")
    assert failed.attributes == {"datasync.flow_name": "contacts-to-erp", "status": "Failed"}


def test_host_json_quiets_durable_and_never_samples_failures():
    from datasync.runtime.host import HostConfig

    host = json.loads((ROOT / "host.json").read_text())
    levels = host["logging"]["logLevel"]
    for category in ("Host.Triggers.DurableTask", "DurableTask.AzureStorage", "DurableTask.Core"):
        assert levels[category] == "Warning", category
    assert levels["Host.Results"] == "Information"  # every invocation stays in `requests`
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert {"Request", "Exception"} <= set(sampling["excludedTypes"].split(";"))
    assert HostConfig.load(ROOT, Settings()).max_dequeue_count == 5  # still a file it loads


def test_every_alert_rule_reads_a_name_datasync_emits():
    """infra/alerts.bicep queries spans and metrics by name: a rename here breaks them."""
    import re

    bicep = (ROOT / "infra" / "alerts.bicep").read_text()
    names = set(re.findall(r'(?<!\[)"((?:datasync\.|schedule_)[a-z_.]+)"', bicep))
    emitted_spans = {"datasync.scheduler.tick", "datasync.begin", "datasync.run"}
    emitted_metrics = {"datasync.runs.stuck", "datasync.queue.oldest_age", "datasync.queue.depth"}
    host_requests = {"schedule_flows"}  # the Functions host's own request for the timer
    assert names == emitted_spans | emitted_metrics | host_requests
    source = (ROOT / "datasync" / "telemetry" / "live.py").read_text()
    source += (ROOT / "datasync" / "telemetry" / "metrics.py").read_text()
    for name in emitted_metrics | {"datasync.scheduler.tick", "datasync.run"}:
        assert f'"{name}"' in source, name
    assert 'f"datasync.{name}"' in source  # datasync.begin and the page steps
    for attribute in re.findall(r'customDimensions\["([^"]+)"\]', bicep):
        assert attribute in {"queue", "status"} or f'"{attribute}"' in source, attribute
    rules = re.findall(r"^    name: '([a-z0-9-]+)'$", bicep, flags=re.M)
    assert rules == [
        "scheduler-heartbeat-missing",
        "lateness-p95",
        "flow-failing",
        "stuck-pending",
        "stuck-running",
        "queue-oldest-age",
        "poison-not-empty",
    ]
    main = (ROOT / "infra" / "main.bicep").read_text()
    assert "module alerts 'alerts.bicep'" in main and "appInsightsId: insights.id" in main


TWO_PAGES = """
from datasync import Page, flow


@flow("two-pages")
class TwoPages:
    def pull(self, ctx, cursor):
        n = int(cursor or 0)
        return Page(records=[{"n": n}], cursor=n + 1, has_more=n + 1 < 2)

    def push(self, ctx, records):
        pass
"""


def test_replays_emit_nothing_each_step_span_once_under_the_run_span(tmp_path):
    """The real orchestrator under the engine's SDK replay (a continue_as_new between the
    pages): every step span once, all children of the run span, nothing else."""
    import azure.durable_functions as df

    from datasync import operations
    from datasync.contracts import RunInput
    from datasync.functions import activities, orchestrator
    from datasync.functions.provider import AppProvider
    from tests.unit.durable_support import drain, engine_for

    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "two_pages.py").write_text(TWO_PAGES)
    settings = Settings.from_env(
        {"DATASYNC_HOME": str(tmp_path / "home"), "DATASYNC_FLOWS_DIR": str(flows)}
    )
    exporter = InMemorySpanExporter()
    telemetry.shutdown()
    assert telemetry.setup(settings, span_exporter=exporter)
    app = App.from_settings(settings)
    provider = AppProvider()
    provider.install(app)
    dfapp = df.DFApp()
    dfapp.register_functions(orchestrator.blueprint())
    dfapp.register_functions(activities.blueprint(provider))
    engine = engine_for(dfapp, tmp_path / "durable.db")
    try:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        operations.apply_tenants(
            app,
            [
                {
                    "id": "acme",
                    "tenantId": "acme",
                    "name": "Acme",
                    "flows": [{"name": "two-pages", "cron": "0 0 2 * * *"}],
                }
            ],
            now,
        )
        job = Job("acme", "two-pages", now)
        app.runs.create(_run(job.instance_id, "Pending"))
        tp = format_traceparent(0xFEED, 0xBEEF)
        run_input = RunInput(
            tenant_id="acme",
            flow_name="two-pages",
            scheduled_for="2026-01-01T00:00:00Z",
            pages_per_generation=1,
            traceparent=tp,
        )
        engine.start_new("sync_flow", job.instance_id, json.dumps(run_input.to_json()))
        drain(engine)
        assert engine.get_status(job.instance_id).runtime_status == "Completed"
    finally:
        engine.close()
        telemetry.shutdown()
        app.close()
    spans = exporter.get_finished_spans()
    run_id = run_span_id(0xFEED, job.instance_id)
    [run] = [s for s in spans if s.name == "datasync.run"]
    assert run.context.span_id == run_id and run.parent.span_id == 0xBEEF
    steps = [s for s in spans if s is not run]
    assert sorted(s.name for s in steps) == sorted(
        ["datasync.begin", "datasync.finish"]
        + ["datasync.pull", "datasync.push"] * 2  # no transform: pages are pushed as staged
    )
    assert {s.parent.span_id for s in steps} == {run_id}
    assert {s.context.trace_id for s in spans} == {0xFEED}


def test_scan_results_go_on_the_tick_span_and_invalid_flows_count_as_skipped(live):
    from datasync.scanner import ScanResult

    tel, app, exporter, reader = live
    with tel.tick(app):
        telemetry.record_scan(ScanResult(due=3, advanced=3, flows=2, invalid=["tenant x: cron"]))
    [tick] = exporter.get_finished_spans()
    assert tick.attributes["datasync.scan.due"] == 3
    assert tick.attributes["datasync.scan.invalid"] == 1
    [skipped] = _points(reader, "datasync.schedule.skipped")
    assert (skipped.attributes["reason"], skipped.value) == ("invalid", 1)
