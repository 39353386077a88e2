"""Run records (one row of run history per instance id, ``runs --json``) and run detail:
page records, their summary beyond the kept pages, and the audit log.

Times are ``...Z`` strings; ``status`` is one of :data:`RUN_STATUSES`. Durations are float
seconds (ms precision). The helpers at the end are the store-neutral rules every
:class:`~datasync.ports.RunStore` adapter applies to its stored documents (camelCase
dicts), so the three backends keep page detail the same way. No secret reaches a stored
text: cursors, errors, reasons and audit details go through :func:`datasync.redact.redact`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from .exceptions import ValidationError

__all__ = [
    "RUN_STATUSES",
    "STEPS",
    "AuditEntry",
    "PageRecord",
    "PageSummary",
    "RunRecord",
    "StepRecord",
    "StepWrite",
    "run_token",
]

RUN_STATUSES = ("Pending", "Running", "Completed", "Failed", "Skipped", "Superseded", "Terminated")
STEPS = ("pull", "transform", "push")
MAX_TEXT = 200
"""Characters of a stored cursor or reason (errors keep up to :data:`MAX_ERROR`)."""
MAX_ERROR = 2000


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def masked(text: Any, limit: int = MAX_TEXT) -> str | None:
    """``text`` as stored: ``str()`` of it, secrets masked, at most ``limit`` characters."""
    if text is None:
        return None
    from .redact import redact

    value = redact(text if isinstance(text, str) else str(text))
    return value if len(value) <= limit else value[: limit - 1] + "…"


def short_reason(error: str | None) -> str | None:
    """The first line of an error, masked and short: a run's ``reason``."""
    if not error:
        return None
    return masked(error.strip().splitlines()[0] if error.strip() else error)


_RUN_KEYS = {
    "instance_id": "instanceId",
    "tenant_id": "tenantId",
    "flow_name": "flowName",
    "scheduled_for": "scheduledFor",
    "status": "status",
    "started_at": "startedAt",
    "finished_at": "finishedAt",
    "pages": "pages",
    "records_in": "recordsIn",
    "records_out": "recordsOut",
    "resumes": "resumes",
    "error": "error",
    "lateness_seconds": "latenessSeconds",
    "reason": "reason",
    "rerun_of": "rerunOf",
    "trace_id": "traceId",
    "duration_seconds": "durationSeconds",
}


@dataclass
class RunRecord:
    """One run's history row. Times are ``...Z`` strings; ``status`` in RUN_STATUSES.

    ``lateness_seconds``: precise first start (``begin``) minus ``scheduledFor``;
    ``duration_seconds``: ``finish`` minus that start; ``reason``: why it was Skipped,
    Superseded, deferred or Failed (short, masked); ``rerun_of``: the run it reruns;
    ``trace_id``: its W3C trace id."""

    instance_id: str
    tenant_id: str
    flow_name: str
    scheduled_for: str
    status: str
    started_at: str | None = None
    finished_at: str | None = None
    pages: int = 0
    records_in: int = 0
    records_out: int = 0
    resumes: int = 0
    error: str | None = None
    lateness_seconds: float | None = None
    reason: str | None = None
    rerun_of: str | None = None
    trace_id: str | None = None
    duration_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.reason is not None:
            self.reason = masked(self.reason)

    def to_json(self) -> dict[str, Any]:
        """camelCase keys: those of the ``runs --json`` contract first, then the detail."""
        return {_RUN_KEYS[k]: v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunRecord:
        if not isinstance(d, dict):
            raise ValidationError(f"run record must be a JSON object, got {_show(d)}")
        required = ("instanceId", "tenantId", "flowName", "scheduledFor", "status")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValidationError(f"run record is missing {', '.join(map(repr, missing))}")
        return cls(**{field: d[key] for field, key in _RUN_KEYS.items() if key in d})


def run_token(run: RunRecord) -> str:
    """The opaque keyset token of ``run`` for ``RunStore.query(before=...)``."""
    raw = json.dumps([run.scheduled_for, run.instance_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_token(token: str) -> tuple[str, str]:
    """(scheduledFor, instance id) of a :func:`run_token`; ``ValidationError`` when bad."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise ValidationError(f"not a run list position: {_show(token)}")
    return value[0], value[1]


# -- run detail --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of one page: its latest invocation (start, duration, error) and how many
    invocations of it ended (``attempts``)."""

    step: str
    started_at: str | None = None
    duration_seconds: float | None = None
    attempts: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "startedAt": self.started_at,
            "durationSeconds": self.duration_seconds,
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class PageRecord:
    """One page of a run, stitched across ``continue_as_new`` and resumes."""

    instance_id: str
    page: int
    cursor_before: str | None = None
    cursor_after: str | None = None
    records_in: int | None = None
    records_out: int | None = None
    steps: tuple[StepRecord, ...] = ()

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.step == name), None)

    @property
    def duration_seconds(self) -> float:
        return round(sum(s.duration_seconds or 0.0 for s in self.steps), 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "page": self.page,
            "cursorBefore": self.cursor_before,
            "cursorAfter": self.cursor_after,
            "recordsIn": self.records_in,
            "recordsOut": self.records_out,
            "durationSeconds": self.duration_seconds,
            "steps": [s.to_json() for s in self.steps],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PageRecord:
        """From a stored page document (see :func:`apply_step`)."""
        steps = doc.get("steps") or {}
        return cls(
            instance_id=doc["instanceId"],
            page=int(doc["page"]),
            cursor_before=doc.get("cursorBefore"),
            cursor_after=doc.get("cursorAfter"),
            records_in=doc.get("recordsIn"),
            records_out=doc.get("recordsOut"),
            steps=tuple(
                StepRecord(
                    step=name,
                    started_at=steps[name].get("startedAt"),
                    duration_seconds=steps[name].get("durationSeconds"),
                    attempts=int(steps[name].get("attempts") or 0),
                    error=steps[name].get("error"),
                )
                for name in STEPS
                if name in steps
            ),
        )


@dataclass(frozen=True, slots=True)
class PageSummary:
    """The pages of a run not kept in full (folded as the run moved on)."""

    instance_id: str
    pages: int = 0
    first_page: int | None = None
    last_page: int | None = None
    records_in: int = 0
    records_out: int = 0
    attempts: int = 0
    errors: int = 0
    min_duration_seconds: float | None = None
    max_duration_seconds: float | None = None
    total_duration_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "pages": self.pages,
            "firstPage": self.first_page,
            "lastPage": self.last_page,
            "recordsIn": self.records_in,
            "recordsOut": self.records_out,
            "attempts": self.attempts,
            "errors": self.errors,
            "minDurationSeconds": self.min_duration_seconds,
            "maxDurationSeconds": self.max_duration_seconds,
            "totalDurationSeconds": self.total_duration_seconds,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PageSummary:
        return cls(
            instance_id=doc["instanceId"],
            pages=int(doc.get("pages") or 0),
            first_page=doc.get("firstPage"),
            last_page=doc.get("lastPage"),
            records_in=int(doc.get("recordsIn") or 0),
            records_out=int(doc.get("recordsOut") or 0),
            attempts=int(doc.get("attempts") or 0),
            errors=int(doc.get("errors") or 0),
            min_duration_seconds=doc.get("minDurationSeconds"),
            max_duration_seconds=doc.get("maxDurationSeconds"),
            total_duration_seconds=float(doc.get("totalDurationSeconds") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An operator action: who (``actor``), what (``action``), when (``at``), on what."""

    actor: str
    action: str
    target: str
    tenant_id: str | None = None
    flow_name: str | None = None
    instance_id: str | None = None
    detail: str | None = None
    at: str | None = None
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "tenantId": self.tenant_id,
            "flowName": self.flow_name,
            "instanceId": self.instance_id,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AuditEntry:
        return cls(
            actor=d["actor"],
            action=d["action"],
            target=d["target"],
            tenant_id=d.get("tenantId"),
            flow_name=d.get("flowName"),
            instance_id=d.get("instanceId"),
            detail=d.get("detail"),
            at=d.get("at"),
            id=d.get("id"),
        )

    def stored(self, at: str, entry_id: str) -> AuditEntry:
        """The entry as a store keeps it: stamped, with an id, texts masked."""
        return AuditEntry(
            actor=masked(self.actor) or "",
            action=self.action,
            target=masked(self.target) or "",
            tenant_id=self.tenant_id,
            flow_name=self.flow_name,
            instance_id=self.instance_id,
            detail=masked(self.detail, MAX_ERROR),
            at=self.at or at,
            id=entry_id,
        )


@dataclass(frozen=True, slots=True)
class StepWrite:
    """What one invocation of a step reports about its page (written by the activity).

    ``cursor_before``/``cursor_after``/``records_in``/``records_out``: only those the step
    knows (``...`` fields left at ``None`` are not changed)."""

    instance_id: str
    tenant_id: str
    page: int
    step: str
    started_at: str
    duration_seconds: float
    error: str | None = None
    cursor_before: Any = None
    cursor_after: Any = None
    records_in: int | None = None
    records_out: int | None = None
    knows_cursor_before: bool = False


def apply_step(doc: dict[str, Any] | None, w: StepWrite) -> dict[str, Any]:
    """The page document after ``w``: a new one when ``doc`` is None. Texts are masked."""
    new: dict[str, Any] = dict(doc) if doc else {"instanceId": w.instance_id, "page": w.page}
    new["tenantId"] = w.tenant_id
    if w.knows_cursor_before:
        new["cursorBefore"] = masked(w.cursor_before)
    if w.cursor_after is not None:
        new["cursorAfter"] = masked(w.cursor_after)
    if w.records_in is not None:
        new["recordsIn"] = w.records_in
    if w.records_out is not None:
        new["recordsOut"] = w.records_out
    steps = {k: dict(v) for k, v in (new.get("steps") or {}).items()}
    before = steps.get(w.step, {})
    steps[w.step] = {
        "startedAt": w.started_at,
        "durationSeconds": round(w.duration_seconds, 3),
        "attempts": int(before.get("attempts") or 0) + 1,
        "error": masked(w.error, MAX_ERROR),
    }
    new["steps"] = steps
    return new


def kept(page: int, keep_pages: int) -> bool:
    """Whether ``page`` is one of the first ``ceil(keep/2)`` pages (kept for good)."""
    return page <= math.ceil(keep_pages / 2)


def fold_candidate(page: int, keep_pages: int) -> int | None:
    """The page to fold into the summary once ``page`` is pushed: the one that leaves the
    window of the latest ``keep // 2`` pages, unless it is one of the first pages."""
    q = page - keep_pages // 2
    return q if q >= 1 and not kept(q, keep_pages) else None


def fold(summary: dict[str, Any] | None, page_doc: dict[str, Any]) -> dict[str, Any]:
    """The summary document with ``page_doc`` folded in."""
    record = PageRecord.from_doc(page_doc)
    s: dict[str, Any] = dict(summary) if summary else {"instanceId": record.instance_id}
    d = record.duration_seconds
    s["pages"] = int(s.get("pages") or 0) + 1
    s["firstPage"] = min(s.get("firstPage") or record.page, record.page)
    s["lastPage"] = max(s.get("lastPage") or record.page, record.page)
    s["recordsIn"] = int(s.get("recordsIn") or 0) + (record.records_in or 0)
    s["recordsOut"] = int(s.get("recordsOut") or 0) + (record.records_out or 0)
    s["attempts"] = int(s.get("attempts") or 0) + sum(x.attempts for x in record.steps)
    s["errors"] = int(s.get("errors") or 0) + any(x.error for x in record.steps)
    lo, hi = s.get("minDurationSeconds"), s.get("maxDurationSeconds")
    s["minDurationSeconds"] = d if lo is None else min(lo, d)
    s["maxDurationSeconds"] = d if hi is None else max(hi, d)
    s["totalDurationSeconds"] = round(float(s.get("totalDurationSeconds") or 0.0) + d, 3)
    return s


def seconds_since(start: str, now: datetime) -> float:
    """``now - start`` in seconds, to the millisecond (rounded down: never later than now)."""
    from .names import parse_utc

    return math.floor((now - parse_utc(start)).total_seconds() * 1000) / 1000


def run_duration(run: RunRecord, now: datetime) -> float | None:
    """Seconds from the run's precise first start (``scheduledFor + lateness``, else
    ``startedAt``) to ``now``."""
    from datetime import timedelta

    from .names import parse_utc

    if run.lateness_seconds is not None:
        start = parse_utc(run.scheduled_for) + timedelta(seconds=run.lateness_seconds)
        return round((now - start).total_seconds(), 3)
    if run.started_at is not None:
        return seconds_since(run.started_at, now)
    return None


def bucket(scheduled_for: str, bucket_seconds: int) -> str:
    """The start of the ``bucket_seconds`` bucket (since the epoch) holding a time."""
    from datetime import UTC

    from .names import format_utc, parse_utc

    ts = int(parse_utc(scheduled_for).timestamp())
    return format_utc(datetime.fromtimestamp(ts - ts % bucket_seconds, UTC))
