"""Telemetry when it is on: the tracer, the instruments and the span of every hop.

The trace of one run::

    datasync.scheduler.tick        SERVER    the timer (faas.trigger=timer)
    └─ send flow-jobs              PRODUCER  one per enqueued job; its traceparent goes
       │                                     into the job message body
       └─ process flow-jobs        CONSUMER  the starter (faas.trigger=pubsub); its
          │                                  traceparent goes into RunInput.traceparent
          └─ datasync.run          INTERNAL  emitted by finish_run, from the run's start;
             │                               span id derived (spans.run_span_id)
             ├─ datasync.begin
             ├─ datasync.pull      page N    ─ GET …   CLIENT (httpx instrumentation)
             ├─ datasync.transform page N
             ├─ datasync.push      page N    ─ POST …  CLIENT
             └─ datasync.finish

Attributes carry ids, names, times and counts only — never a record, a cursor, a
config value, an error text or a secret; HTTP spans keep the URL without its query and
userinfo, masked like log lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from ..names import format_utc, parse_utc
from ..ports import FLOW_JOBS
from ..redact import redact
from .metrics import Metrics, StuckRuns
from .spans import format_traceparent, parse_traceparent, run_span_id

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings
    from ..models import Job

__all__ = ["Live", "build"]

log = logging.getLogger("datasync.telemetry")

SERVICE_NAME = "datasync"
_NO_LOGS = "datasync.telemetry.logs-not-exported"
_PAGE_KEY_SUFFIX = "/p"


class _Ids(IdGenerator):
    """The SDK's id generator, except for the one span whose id is forced (the run span,
    emitted by ``finish_run``)."""

    def __init__(self, inner: IdGenerator) -> None:
        self.inner = inner
        self._local = threading.local()

    def force(self, span_id: int | None) -> None:
        """The next span this thread starts gets ``span_id``."""
        self._local.forced = span_id

    def generate_span_id(self) -> int:
        forced = getattr(self._local, "forced", None)
        if forced is not None:
            self._local.forced = None
            return int(forced)
        return self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.inner.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return self.inner.is_trace_id_random()


def _scrub_url(url: Any) -> str:
    """``scheme://host[:port]/path`` of an httpx URL, masked: no userinfo, query or
    fragment (tokens and cursors live there)."""
    try:
        text = str(url.copy_with(username=None, password=None, query=None, fragment=None))
    except Exception:  # noqa: BLE001 - a bad URL must not fail the request
        return "(url)"
    return redact(text)


def _request_hook(span: Any, request: Any) -> None:
    if span is None or not span.is_recording():
        return
    safe = _scrub_url(request.url if hasattr(request, "url") else request[1])
    span.set_attribute("url.full", safe)
    span.set_attribute("http.url", safe)


async def _async_request_hook(span: Any, request: Any) -> None:
    _request_hook(span, request)


def _page(page_key: object) -> int | None:
    if isinstance(page_key, str) and _PAGE_KEY_SUFFIX in page_key:
        tail = page_key.rsplit(_PAGE_KEY_SUFFIX, 1)[1]
        if tail.isdigit():
            return int(tail)
    return None


def _lateness_ms(scheduled_for: object, now: datetime) -> float | None:
    try:
        due = parse_utc(scheduled_for) if isinstance(scheduled_for, str) else scheduled_for
    except ValueError:
        return None
    if not isinstance(due, datetime):
        return None
    return round((now - due).total_seconds() * 1000.0, 3)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


class Live:
    """The tracer and instruments of this process, and a method per hop."""

    def __init__(
        self,
        settings: Settings,
        tracer_provider: Any,
        meter_provider: Any,
        *,
        owned: bool,
        messaging_system: str,
    ) -> None:
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._owned = owned
        self.messaging_system = messaging_system
        self.tracer = tracer_provider.get_tracer("datasync")
        self._ids = _Ids(self.tracer.id_generator)
        self.tracer.id_generator = self._ids
        self.metrics = Metrics(
            meter_provider.get_meter("datasync"),
            stuck=StuckRuns(settings.stuck_pending_seconds, settings.stuck_running_seconds),
            tenant_label=settings.metrics_tenant_label,
        )
        self._httpx: Any = None

    # -- set-up ----------------------------------------------------------------------------
    def instrument_httpx(self) -> None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        instrumentor = HTTPXClientInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            request_hook=_request_hook,
            async_request_hook=_async_request_hook,
        )
        self._httpx = instrumentor

    def shutdown(self) -> None:
        if self._httpx is not None:
            self._httpx.uninstrument()
            self._httpx = None
        if self._owned:
            for provider in (self.tracer_provider, self.meter_provider):
                with contextlib.suppress(Exception):
                    provider.shutdown()
        else:
            with contextlib.suppress(Exception):
                self.tracer_provider.force_flush()

    # -- common attributes ---------------------------------------------------------------
    @staticmethod
    def _run_attributes(tenant_id: str, flow_name: str, instance_id: str) -> dict[str, Any]:
        return {
            "datasync.tenant_id": tenant_id,
            "datasync.flow_name": flow_name,
            "datasync.instance_id": instance_id,
        }

    def _messaging(self, operation: str) -> dict[str, Any]:
        return {
            "messaging.system": self.messaging_system,
            "messaging.destination.name": FLOW_JOBS,
            "messaging.operation.type": operation,
        }

    # -- scheduler -------------------------------------------------------------------------
    @contextlib.contextmanager
    def tick(self, app: App) -> Iterator[Any]:
        """The scheduler tick's span (a root: timers carry no context)."""
        self.metrics.watch(app)
        with self.tracer.start_as_current_span(
            "datasync.scheduler.tick",
            kind=SpanKind.SERVER,
            attributes={"faas.trigger": "timer", "faas.name": "schedule_flows"},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__name__)
                self.metrics.ticks.add(1, {"outcome": "failed"})
                raise
        self.metrics.last_tick = time.time()
        self.metrics.ticks.add(1, {"outcome": "ok"})

    def record_scan(self, result: Any) -> None:
        span = trace.get_current_span()
        for key in ("due", "advanced", "conflicts", "flows"):
            value = getattr(result, key, None)
            if isinstance(value, int):
                span.set_attribute(f"datasync.scan.{key}", value)
        invalid = len(getattr(result, "invalid", None) or ())
        span.set_attribute("datasync.scan.invalid", invalid)
        if invalid:
            self.metrics.skipped.add(invalid, {"reason": "invalid"})

    def on_job(self, job: Job) -> Job:
        """The scanner's per-job hook: a send span, whose context travels in the job."""
        now = datetime.now(UTC)
        attributes = self._messaging("send")
        attributes.update(
            {
                "datasync.tenant_id": job.tenant_id,
                "datasync.flow_name": job.flow_name,
                "datasync.instance_id": job.instance_id,
                "datasync.scheduled_for": format_utc(job.scheduled_for),
            }
        )
        lateness = _lateness_ms(job.scheduled_for, now)
        if lateness is not None:
            attributes["datasync.lateness_ms"] = lateness
        span = self.tracer.start_span(  # not made current: nothing runs inside it
            f"send {FLOW_JOBS}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        ctx = span.get_span_context()
        span.end()
        traceparent = format_traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))
        return dataclasses.replace(job, traceparent=traceparent)

    # -- starter ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def process(
        self, app: App, job: Job, message_id: str | None, dequeue_count: int | None
    ) -> Iterator[Processing]:
        """The starter's span, continuing the job's trace (a new trace when the job has
        none). Yields a :class:`Processing` whose ``traceparent`` goes into the run."""
        self.metrics.watch(app)
        parent = _remote_context(job.traceparent)
        attributes = self._messaging("process")
        attributes.update(
            self._run_attributes(job.tenant_id, job.flow_name, job.instance_id),
        )
        attributes["datasync.scheduled_for"] = format_utc(job.scheduled_for)
        attributes["faas.trigger"] = "pubsub"
        attributes["faas.name"] = "start_flow"
        if message_id:
            attributes["messaging.message.id"] = message_id
        if dequeue_count is not None:
            attributes["messaging.azure.message.dequeue_count"] = dequeue_count
        lateness = _lateness_ms(job.scheduled_for, datetime.now(UTC))
        if lateness is not None:
            attributes["datasync.lateness_ms"] = lateness
        with self.tracer.start_as_current_span(
            f"process {FLOW_JOBS}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            ctx = span.get_span_context()
            processing = Processing(
                span=span,
                trace_id=f"{ctx.trace_id:032x}",
                traceparent=format_traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags)),
            )
            try:
                yield processing
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__name__)
                self.metrics.admissions.add(1, {"outcome": "failed"})
                raise
            outcome = processing.outcome or "unknown"
            span.set_attribute("datasync.admission", outcome)
            self.metrics.admissions.add(1, {"outcome": outcome})

    # -- activities ------------------------------------------------------------------------
    def step(self, app: App, name: str, args: Any, call: Callable[[], Any]) -> Any:
        """Run one activity (``call``) inside its span, a child of the run span."""
        self.metrics.watch(app)  # Flex Consumption scales activities on their own instances
        args = args if isinstance(args, dict) else {}
        tenant_id = str(args.get("tenantId", ""))
        flow_name = str(args.get("flowName", ""))
        instance_id = str(args.get("runId", ""))
        parsed = parse_traceparent(args.get("traceparent"))
        parent = None
        if parsed is not None:
            trace_id, _process_span, flags = parsed
            parent = _context(trace_id, run_span_id(trace_id, instance_id), flags)
        attributes = self._run_attributes(tenant_id, flow_name, instance_id)
        attributes["faas.trigger"] = "other"
        attributes["faas.name"] = f"{name}_page" if name in ("pull", "transform", "push") else name
        page = args.get("pages") if name == "push" else _page(args.get("pageKey"))
        if isinstance(page, int):
            attributes["datasync.page"] = page
        if name == "begin" and isinstance(args.get("scheduledFor"), str):
            attributes["datasync.scheduled_for"] = args["scheduledFor"]
        if name == "finish" and isinstance(args.get("status"), str):
            attributes["datasync.status"] = args["status"]
        started = time.perf_counter()
        outcome = "ok"
        with self.tracer.start_as_current_span(
            f"datasync.{name}",
            context=parent,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = call()
            except BaseException as exc:
                outcome = "failed"
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__name__)
                raise
            finally:
                if name in ("pull", "transform", "push"):
                    self.metrics.page_duration.record(
                        time.perf_counter() - started, {"step": name, "outcome": outcome}
                    )
            self._after(name, span, args, result, flow_name, tenant_id)
        if name == "finish":
            self._emit_run(app, args, parsed)
        return result

    def _after(
        self, name: str, span: Any, args: dict[str, Any], result: Any, flow: str, tenant: str
    ) -> None:
        out = result if isinstance(result, dict) else {}
        if name == "pull" and isinstance(out.get("count"), int):
            span.set_attribute("datasync.records_in", out["count"])
            if out["count"]:
                self.metrics.records.add(out["count"], {"direction": "in"})
        elif name == "transform" and isinstance(out.get("count"), int):
            span.set_attribute("datasync.records_out", out["count"])
        elif name == "push" and isinstance(args.get("count"), int):
            span.set_attribute("datasync.records_out", args["count"])
            if args["count"]:
                self.metrics.records.add(args["count"], {"direction": "out"})
        elif name == "begin":
            now = datetime.now(UTC)
            lateness = _lateness_ms(args.get("scheduledFor"), now)
            if lateness is not None:
                span.set_attribute("datasync.lateness_ms", lateness)
                if out.get("pages") == 0:  # the run's first begin, not a resume's
                    self.metrics.lateness.record(
                        lateness / 1000.0, self.metrics.run_labels(flow, tenant)
                    )

    def _emit_run(
        self, app: App, args: dict[str, Any], parsed: tuple[int, int, int] | None
    ) -> None:
        """The run span, from the run's start to now, with the derived span id."""
        instance_id = str(args.get("runId", ""))
        tenant_id = str(args.get("tenantId", ""))
        flow_name = str(args.get("flowName", ""))
        status = str(args.get("status", ""))
        run = _run_record(app, instance_id)
        now = datetime.now(UTC)
        start = _run_start(run) or now
        duration = max(0.0, (now - start).total_seconds())
        labels = self.metrics.run_labels(flow_name, tenant_id, status=status)
        self.metrics.runs.add(1, labels)
        self.metrics.run_duration.record(duration, labels)
        if parsed is None:
            return
        trace_id, process_span, flags = parsed
        attributes = self._run_attributes(tenant_id, flow_name, instance_id)
        attributes["datasync.status"] = status
        if run is not None:
            attributes["datasync.scheduled_for"] = run.scheduled_for
            attributes["datasync.pages"] = run.pages
            attributes["datasync.records_in"] = run.records_in
            attributes["datasync.records_out"] = run.records_out
            attributes["datasync.resumes"] = run.resumes
            lateness = getattr(run, "lateness_seconds", None)
            if isinstance(lateness, (int, float)):
                attributes["datasync.lateness_ms"] = round(lateness * 1000.0, 3)
        attributes["datasync.duration_s"] = round(duration, 3)
        self._ids.force(run_span_id(trace_id, instance_id))
        span = self.tracer.start_span(
            "datasync.run",
            context=_context(trace_id, process_span, flags),
            attributes=attributes,
            start_time=_ns(start),
        )
        self._ids.force(None)
        if status != "Completed":
            span.set_status(Status(StatusCode.ERROR, status or "unknown"))
        span.end(end_time=_ns(now))


@dataclasses.dataclass
class Processing:
    """What the starter's span hands back: the context for the run, and the outcome."""

    span: Any
    trace_id: str
    traceparent: str
    outcome: str | None = None


def _context(trace_id: int, span_id: int, flags: int) -> otel_context.Context:
    span_context = SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(flags),
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context), otel_context.Context())


def _remote_context(traceparent: str | None) -> otel_context.Context | None:
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return otel_context.Context()  # a new trace, not a child of whatever is current
    return _context(*parsed)


def _run_record(app: App, instance_id: str) -> Any:
    try:
        return app.runs.get(instance_id)
    except Exception:  # noqa: BLE001 - unknown or unreadable: the span still goes out
        return None


def _run_start(run: Any) -> datetime | None:
    """The run's precise first start: scheduledFor + latenessSeconds where the record
    keeps it, else its startedAt (seconds precision)."""
    if run is None:
        return None
    lateness = getattr(run, "lateness_seconds", None)
    try:
        if isinstance(lateness, (int, float)):  # to the second below: the start is measured
            # inside begin_run, whose span must still lie within the run's
            start = parse_utc(run.scheduled_for) + timedelta(seconds=lateness)
            return start.replace(microsecond=0)
        if run.started_at:
            return parse_utc(run.started_at)
    except ValueError:
        return None
    return None


def build(
    settings: Settings,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> Live:
    """The providers and exporters the settings name (see the package docstring)."""
    exporters = settings.telemetry
    resource = Resource.create({"service.name": SERVICE_NAME})
    span_processors: list[Any] = []
    readers: list[MetricReader] = []
    if span_exporter is not None:
        span_processors.append(SimpleSpanProcessor(span_exporter))
    if metric_reader is not None:
        readers.append(metric_reader)
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if "console" in exporters:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_processors.append(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr)))
    messaging = "azure_storage_queue" if settings.uses_azure_queue else "datasync_sqlite_queue"
    if "azure-monitor" in exporters:
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry import metrics as otel_metrics

        configure_azure_monitor(
            connection_string=settings.appinsights_connection_string,
            resource=resource,
            # the Functions host already ships the worker's log lines to Application
            # Insights: exporting them here too would store every record twice. (1.8.x
            # overwrites disable_logging from OTEL_LOGS_EXPORTER, so its log handler also
            # goes on a logger nothing writes to, instead of the root logger.)
            disable_logging=True,
            logger_name=_NO_LOGS,
            # DataSync's spans are few (a handful per page): keep every trace, so a
            # failed run's trace is never sampled away
            sampling_ratio=1.0,
            span_processors=span_processors,
            metric_readers=readers,
            instrumentation_options={
                name: {"enabled": False}
                for name in (
                    "azure_sdk",
                    "httpx",  # instrumented below, with the URL scrubbed
                    "httpx2",
                    "django",
                    "fastapi",
                    "flask",
                    "psycopg2",
                    "requests",
                    "urllib",
                    "urllib3",
                )
            },
        )
        live = Live(
            settings,
            trace.get_tracer_provider(),
            otel_metrics.get_meter_provider(),
            owned=False,
            messaging_system=messaging,
        )
    else:
        tracer_provider = TracerProvider(resource=resource)
        for processor in span_processors:
            tracer_provider.add_span_processor(processor)
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        live = Live(
            settings, tracer_provider, meter_provider, owned=True, messaging_system=messaging
        )
    live.instrument_httpx()
    log.info("telemetry on: %s", ", ".join(exporters) or "in-process exporters")
    return live
