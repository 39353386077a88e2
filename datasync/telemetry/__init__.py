"""Telemetry: OpenTelemetry traces and metrics for every hop of a run, off by default.

:func:`setup` is called once per process (``build_function_app`` calls
:func:`setup_from_env`; tests call :func:`setup` with in-memory exporters) and is
idempotent. It turns on what the settings ask for (:attr:`Settings.telemetry`):

- ``azure-monitor`` — the ``azure-monitor-opentelemetry`` distro, when
  ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set;
- ``otlp`` — OTLP over HTTP/protobuf, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the
  exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables itself);
- ``console`` — spans and metrics printed to stderr, on ``DATASYNC_TELEMETRY=console``.

With none of them nothing is set up: no OpenTelemetry SDK module is imported and every
hook below is one global read (:func:`active` is None). Log records are never exported
through OpenTelemetry (the Functions host and the console handler already carry them), so
no record is duplicated.

The trace of one run (see :mod:`.live` for the span tree) crosses processes through the
W3C ``traceparent`` in the job message and in the orchestration and activity inputs; the
orchestrator itself emits nothing, so replays emit nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings
    from ..models import Job
    from .live import Live

__all__ = [
    "active",
    "count_missed",
    "count_skipped",
    "job_hook",
    "record_scan",
    "setup",
    "setup_from_env",
    "shutdown",
    "tick",
]

_active: Live | None = None
_lock = threading.Lock()


def active() -> Live | None:
    """The live telemetry of this process, or None when telemetry is off."""
    return _active


def tick(app: App) -> contextlib.AbstractContextManager[Any]:
    """The scheduler tick's span (and its heartbeat metric); a no-op when off."""
    live = _active
    return contextlib.nullcontext() if live is None else live.tick(app)


def job_hook() -> Callable[[Job], Job] | None:
    """The scanner's ``on_job`` hook (a send span per job, its ``traceparent`` put into
    the job); None when off, so the scanner pays nothing."""
    live = _active
    return None if live is None else live.on_job


def setup(
    settings: Settings,
    *,
    span_exporter: Any | None = None,
    metric_reader: Any | None = None,
) -> bool:
    """Turn telemetry on as ``settings`` say; True when it is on. Idempotent: a second
    call keeps what the first set up.

    ``span_exporter`` (a ``SpanExporter``, exported synchronously) and ``metric_reader``
    (a ``MetricReader``) are extra sinks, e.g. the SDK's in-memory ones in tests; either
    turns telemetry on by itself."""
    global _active
    with _lock:
        if _active is not None:
            return True
        if not settings.telemetry and span_exporter is None and metric_reader is None:
            return False
        from .live import build

        _active = build(settings, span_exporter=span_exporter, metric_reader=metric_reader)
        return True


def setup_from_env() -> bool:
    """:func:`setup` over the environment's settings. A bad setting leaves telemetry off
    here: the first invocation that builds the app reports it (a clear error there)."""
    from ..config import Settings
    from ..exceptions import ConfigError

    try:
        settings = Settings.from_env()
    except ConfigError:
        return False
    return setup(settings)


def shutdown() -> None:
    """Flush and stop telemetry (tests: before a new :func:`setup`)."""
    global _active
    with _lock:
        live, _active = _active, None
    if live is not None:
        live.shutdown()


def record_scan(result: Any) -> None:
    """What a scheduler tick did (a :class:`~datasync.scanner.ScanResult`): counts on the
    tick span, and invalid flow documents as skipped occurrences (``reason=invalid``)."""
    live = _active
    if live is not None:
        live.record_scan(result)


def count_missed(reason: str, count: int = 1) -> None:
    """Occurrences the scheduler will not run (``catchUp`` coalesced or dropped them),
    by ``reason`` (a short fixed word: ``coalesced``, ``catch-up-none``, ``window`` …)."""
    live = _active
    if live is not None and count > 0:
        live.metrics.missed.add(count, {"reason": reason})


def count_skipped(reason: str) -> None:
    """A job the starter did not run, by the reason's kind (the text is classified into a
    few fixed values: tenant ids and instance ids never become labels)."""
    live = _active
    if live is not None:
        live.metrics.skipped.add(1, {"reason": skip_kind(reason)})


_SKIP_KINDS = (
    ("paused", "paused"),
    ("disabled", "disabled"),
    ("overlap", "overlap"),
    ("supersed", "superseded"),
    ("revision", "superseded"),
    ("started by another", "duplicate"),
    ("concurrently", "duplicate"),
    ("already", "duplicate"),
    ("exists", "duplicate"),
    ("window", "outside-window"),
    ("endat", "outside-window"),
    ("startat", "outside-window"),
)


def skip_kind(reason: str) -> str:
    """The label value for a skip reason: one of a few fixed words, ``other`` else."""
    text = reason.lower().replace(" ", "")
    for needle, kind in _SKIP_KINDS:
        if needle.replace(" ", "") in text:
            return kind
    return "other"
