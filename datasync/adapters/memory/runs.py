"""Run records, checkpoints and staged pages in memory, with the embedded store's rules.

Values go in and out as copies (JSON for cursors, state and page records), so a test sees
what a real store would hand back, and a caller's later mutation changes nothing stored."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ...exceptions import NotFound, PermanentError
from ...models import RunRecord
from ...names import format_utc
from ...ports import (
    DONE,
    Checkpoint,
    Clock,
    FencedWrite,
    claims_checkpoint,
    fence_checkpoint,
    fence_finish,
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
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"MemoryRunStore({len(self._runs)} runs)"

    def _now(self) -> str:
        return format_utc(self.clock())

    # -- the dedupe ----------------------------------------------------------------------
    def create(self, run: RunRecord) -> bool:
        with self._lock:
            if run.instance_id in self._runs:
                return False
            now = self._now()
            self._runs[run.instance_id] = _Row(replace(run), now, now)
            return True

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
                    ),
                    now,
                )
            elif row.run.started_at is None:  # Pending → Running
                row.run.status, row.run.started_at = "Running", now
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
    ) -> FencedWrite:
        data = json.dumps({"cursor": cp.cursor, "state": cp.state})
        with self._lock:
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

    def finish(self, instance_id: str, status: str, error: str | None = None) -> FencedWrite:
        with self._lock:
            row = self._runs.get(instance_id)
            result = fence_finish(row.run.status if row else None, status)
            if row is not None and result.outcome == "applied":
                row.run.status, row.run.error, row.run.finished_at = status, error, self._now()
            return result

    def mark_resumed(self, instance_id: str) -> None:
        with self._lock:
            row = self._runs.get(instance_id)
            if row is not None:
                row.run.resumes += 1

    def record(self, run: RunRecord) -> None:
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
