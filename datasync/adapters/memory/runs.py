"""Run records, checkpoints and staged pages in memory, with the embedded store's rules.

Values go in and out as copies (JSON for cursors, state and page records), so a test sees
what a real store would hand back, and a caller's later mutation changes nothing stored."""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ...exceptions import NotFound, PermanentError
from ...models import RunRecord
from ...names import format_utc
from ...ports import (
    CREATED,
    DONE,
    EXISTS,
    Admitted,
    Checkpoint,
    Clock,
    FencedWrite,
    admission_check,
    claims_checkpoint,
    fence_checkpoint,
    fence_finish,
)
from ...records import (
    MAX_ERROR,
    AuditEntry,
    PageRecord,
    PageSummary,
    StepWrite,
    apply_step,
    bucket,
    fold,
    fold_candidate,
    masked,
    parse_token,
    run_duration,
    seconds_since,
    short_reason,
)
from .clock import system_clock

__all__ = ["MemoryPageStore", "MemoryRunStore"]

ACTIVE = ("Pending", "Running")


@dataclass(slots=True)
class _Row:
    run: RunRecord
    created_at: str
    claimed_at: str | None = None


@dataclass(slots=True)
class _Saved:
    data: str  # JSON {"cursor", "state"}
    owner: str | None = None
    page: int | None = None


class MemoryRunStore:
    """The in-memory :class:`~datasync.ports.RunStore` (thread-safe; ``clock`` stamps
    every time)."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or system_clock
        self._runs: dict[str, _Row] = {}
        self._checkpoints: dict[tuple[str, str], _Saved] = {}
        self._pages: dict[str, dict[int, dict[str, Any]]] = {}
        self._summaries: dict[str, dict[str, Any]] = {}
        self._audit: list[AuditEntry] = []
        self._audit_ids = itertools.count(1)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"MemoryRunStore({len(self._runs)} runs)"

    def _now(self) -> str:
        return format_utc(self.clock())

    # -- the dedupe ----------------------------------------------------------------------
    def create(self, run: RunRecord) -> bool:
        return bool(self.admit(run, exclusive_flow=False, max_active=None))

    def admit(self, run: RunRecord, *, exclusive_flow: bool, max_active: int | None) -> Admitted:
        """Check and insert under the store's lock: one step for every thread."""
        with self._lock:
            if run.instance_id in self._runs:
                return EXISTS
            if exclusive_flow or max_active is not None:
                verdict = admission_check(
                    run,
                    self.active(run.tenant_id),
                    exclusive_flow=exclusive_flow,
                    max_active=max_active,
                )
                if verdict is not None:
                    return verdict
            now = self._now()
            self._runs[run.instance_id] = _Row(replace(run), now, now)
            return CREATED

    def take_over_pending(self, instance_id: str, *, older_than: datetime) -> bool:
        with self._lock:
            row = self._runs.get(instance_id)
            now = self.clock()
            if row is None or row.run.status != "Pending":
                return False
            if not (row.claimed_at or row.created_at) < format_utc(min(older_than, now)):
                return False
            row.claimed_at = format_utc(now)
            return True

    # -- checkpoints and the run lifecycle -----------------------------------------------
    def load_checkpoint(self, tenant: str, flow: str) -> Checkpoint:
        with self._lock:
            saved = self._checkpoints.get((tenant, flow))
        if saved is None:
            return Checkpoint()
        data = json.loads(saved.data)
        return Checkpoint(cursor=data["cursor"], state=data["state"])

    def reset_checkpoint(self, tenant: str, flow: str, checkpoint: Checkpoint | None) -> None:
        with self._lock:
            if checkpoint is None:
                self._checkpoints.pop((tenant, flow), None)
            else:
                data = json.dumps({"cursor": checkpoint.cursor, "state": checkpoint.state})
                self._checkpoints[(tenant, flow)] = _Saved(data)

    def begin(self, run: RunRecord) -> RunRecord:
        with self._lock:
            now = self._now()
            row = self._runs.get(run.instance_id)
            resume = row is not None and row.run.started_at is not None
            if row is not None and row.run.status in DONE:
                raise PermanentError(
                    f"run {run.instance_id} is {row.run.status}; it does not run again"
                )
            if row is None:
                row = self._runs[run.instance_id] = _Row(
                    replace(
                        run,
                        status="Running",
                        started_at=now,
                        finished_at=None,
                        pages=0,
                        records_in=0,
                        records_out=0,
                        resumes=0,
                        error=None,
                        lateness_seconds=seconds_since(run.scheduled_for, self.clock()),
                    ),
                    now,
                )
            elif row.run.started_at is None:  # Pending → Running
                row.run.status, row.run.started_at = "Running", now
                row.run.lateness_seconds = seconds_since(row.run.scheduled_for, self.clock())
            else:  # started before (its begin re-ran, or a failed run started again)
                row.run.status, row.run.finished_at, row.run.error = "Running", None, None
                row.run.resumes += 1
            self._claim(row.run, resume)
            return replace(row.run)

    def _claim(self, run: RunRecord, resume: bool) -> None:
        key = (run.tenant_id, run.flow_name)
        saved = self._checkpoints.get(key)
        if saved is None:
            saved = self._checkpoints[key] = _Saved(json.dumps({"cursor": None, "state": {}}))
        owner = self._runs.get(saved.owner) if saved.owner is not None else None
        active = owner is not None and owner.run.status in ACTIVE
        if not claims_checkpoint(saved.owner, run.instance_id, resume=resume, owner_active=active):
            return
        if saved.owner != run.instance_id:
            saved.page = run.pages
        saved.owner = run.instance_id

    def checkpoint(
        self,
        instance_id: str,
        tenant: str,
        flow: str,
        cp: Checkpoint,
        *,
        pages: int,
        records_in: int,
        records_out: int,
        detail: StepWrite | None = None,
        keep_pages: int = 500,
    ) -> FencedWrite:
        data = json.dumps({"cursor": cp.cursor, "state": cp.state})
        with self._lock:
            if detail is not None:
                self.write_step(detail, keep_pages=keep_pages)
            saved = self._checkpoints.get((tenant, flow))
            result = fence_checkpoint(
                saved.owner if saved else None, saved.page if saved else None, instance_id, pages
            )
            if result.outcome == "applied":
                self._checkpoints[(tenant, flow)] = _Saved(data, instance_id, pages)
            row = self._runs.get(instance_id)
            if row is not None and pages > row.run.pages:
                row.run.pages, row.run.records_in, row.run.records_out = (
                    pages,
                    records_in,
                    records_out,
                )
            return result

    def finish(
        self, instance_id: str, status: str, error: str | None = None, *, reason: str | None = None
    ) -> FencedWrite:
        with self._lock:
            row = self._runs.get(instance_id)
            result = fence_finish(row.run.status if row else None, status)
            if row is not None and result.outcome == "applied":
                now = self.clock()
                row.run.status, row.run.finished_at = status, format_utc(now)
                row.run.error = masked(error, MAX_ERROR)
                row.run.reason = short_reason(reason or error)
                row.run.duration_seconds = run_duration(row.run, now)
            return result

    def mark_resumed(self, instance_id: str) -> None:
        with self._lock:
            row = self._runs.get(instance_id)
            if row is not None:
                row.run.resumes += 1

    def record(self, run: RunRecord) -> None:
        run = replace(run, error=masked(run.error, MAX_ERROR), reason=masked(run.reason))
        with self._lock:
            row = self._runs.get(run.instance_id)
            if row is None:
                self._runs[run.instance_id] = _Row(replace(run), self._now())
            else:
                row.run = replace(run)

    # -- reads ---------------------------------------------------------------------------
    def get(self, instance_id: str) -> RunRecord:
        with self._lock:
            row = self._runs.get(instance_id)
            if row is None:
                raise NotFound(f"no run {instance_id!r}")
            return replace(row.run)

    def recent(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        with self._lock:
            rows = [
                r
                for r in self._runs.values()
                if (tenant is None or r.run.tenant_id == tenant)
                and (flow is None or r.run.flow_name == flow)
                and (status is None or r.run.status == status)
            ]
            rows.sort(key=lambda r: (r.created_at, r.run.instance_id), reverse=True)
            return [replace(r.run) for r in rows[: max(limit, 0)]]

    def active(self, tenant: str, flow: str | None = None) -> list[RunRecord]:
        with self._lock:
            return [
                replace(r.run)
                for r in self._runs.values()
                if r.run.tenant_id == tenant
                and r.run.status in ACTIVE
                and (flow is None or r.run.flow_name == flow)
            ]

    # -- run detail ----------------------------------------------------------------------
    def write_step(self, write: StepWrite, *, keep_pages: int) -> None:
        with self._lock:
            pages = self._pages.setdefault(write.instance_id, {})
            pages[write.page] = apply_step(pages.get(write.page), write)
            if write.step != "push":
                return
            q = fold_candidate(write.page, keep_pages)
            doc = pages.pop(q, None) if q is not None else None
            if doc is not None:
                self._summaries[write.instance_id] = fold(
                    self._summaries.get(write.instance_id), doc
                )

    def pages(self, instance_id: str, *, after: int = 0, limit: int = 100) -> list[PageRecord]:
        with self._lock:
            docs = self._pages.get(instance_id, {})
            numbers = sorted(n for n in docs if n > after)[: max(limit, 0)]
            return [PageRecord.from_doc(docs[n]) for n in numbers]

    def page_summary(self, instance_id: str) -> PageSummary | None:
        with self._lock:
            doc = self._summaries.get(instance_id)
        return PageSummary.from_doc(doc) if doc is not None else None

    def _matching(
        self,
        tenant: str | None,
        flow: str | None,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> list[RunRecord]:
        lo = format_utc(since) if since is not None else None
        hi = format_utc(until) if until is not None else None
        return [
            r.run
            for r in self._runs.values()
            if (tenant is None or r.run.tenant_id == tenant)
            and (flow is None or r.run.flow_name == flow)
            and (status is None or r.run.status == status)
            and (lo is None or r.run.scheduled_for >= lo)
            and (hi is None or r.run.scheduled_for < hi)
        ]

    def query(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        position = parse_token(before) if before is not None else None
        with self._lock:
            runs = self._matching(tenant, flow, status, since, until)
            if position is not None:
                runs = [r for r in runs if (r.scheduled_for, r.instance_id) < position]
            runs.sort(key=lambda r: (r.scheduled_for, r.instance_id), reverse=True)
            return [replace(r) for r in runs[: max(limit, 0)]]

    def count(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        with self._lock:
            return len(self._matching(tenant, flow, status, since, until))

    def status_counts(self, since: datetime, bucket_seconds: int) -> list[tuple[str, str, int]]:
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for run in self._matching(None, None, None, since, None):
                key = (bucket(run.scheduled_for, bucket_seconds), run.status)
                counts[key] = counts.get(key, 0) + 1
        return [(b, s, n) for (b, s), n in sorted(counts.items())]

    def audit(self, entry: AuditEntry) -> None:
        with self._lock:
            self._audit.append(entry.stored(self._now(), f"{next(self._audit_ids):012d}"))

    def audit_log(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        instance_id: str | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        with self._lock:
            found = [
                e
                for e in self._audit
                if (tenant is None or e.tenant_id == tenant)
                and (flow is None or e.flow_name == flow)
                and (instance_id is None or e.instance_id == instance_id)
            ]
        found.sort(key=lambda e: (e.at or "", e.id or ""), reverse=True)
        return found[: max(limit, 0)]

    def annotate(
        self,
        instance_id: str,
        *,
        reason: str | None = None,
        trace_id: str | None = None,
        rerun_of: str | None = None,
    ) -> None:
        with self._lock:
            row = self._runs.get(instance_id)
            if row is None:
                return
            if reason is not None:
                row.run.reason = short_reason(reason)
            if trace_id is not None:
                row.run.trace_id = trace_id
            if rerun_of is not None:
                row.run.rerun_of = rerun_of

    def prune(self, older_than: datetime) -> int:
        from ...ports import TERMINAL

        cutoff = format_utc(older_than)
        with self._lock:
            old = [
                key
                for key, row in self._runs.items()
                if row.run.status in TERMINAL and (row.run.finished_at or row.created_at) < cutoff
            ]
            for key in old:
                del self._runs[key]
                self._pages.pop(key, None)
                self._summaries.pop(key, None)
        return len(old)


class MemoryPageStore:
    """The in-memory :class:`~datasync.ports.PageStore` (records kept as JSON text)."""

    def __init__(self) -> None:
        self._pages: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryPageStore({len(self._pages)} pages)"

    def put(self, key: str, records: list[dict[str, Any]]) -> None:
        text = json.dumps(records, separators=(",", ":"))
        with self._lock:
            self._pages[key] = text

    def get(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            text = self._pages.get(key)
        if text is None:
            raise NotFound(f"staged page {key!r} is gone")
        records: list[dict[str, Any]] = json.loads(text)
        return records

    def delete_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._pages if k.startswith(prefix)]:
                del self._pages[key]

    def keys(self) -> list[str]:
        """The staged keys, sorted (tests: what a run left behind)."""
        with self._lock:
            return sorted(self._pages)
