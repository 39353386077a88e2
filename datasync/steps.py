"""What the activities do: one flow step each, over the app's ports.

Page records travel between activities through the :class:`~datasync.ports.PageStore`
(history carries a key and counts, never the data), and ``ctx.state`` travels in the
activity inputs and outputs (:mod:`datasync.contracts`). ``push`` pushes and then
checkpoints cursor, state and run counters in one write, so a crash between the two
re-pushes with the same ``page_key`` and an idempotent target ends with each record once.

Fencing: a step can outlive its hold on the work (its runtime stalled past the lease and
another took the activity over). Its writes cannot undo the newer work:

- checkpoints and counters are fenced in the store (:func:`~datasync.ports.fence_checkpoint`):
  only the run that owns the checkpoint, and only forward; a stale write is rejected and
  logged here, and the step returns normally (the newer work stands);
- ``finish`` never overwrites a terminal record (:func:`~datasync.ports.fence_finish`);
- staged pages are written under a key of their own per attempt (``<page key>/pulled-<id>``,
  ``…/out-<id>``), and the next step reads the key its orchestration recorded, so a stale
  pull or transform never replaces what the current holder staged; what a stale writer
  leaves behind is read by nobody and deleted with its page (``push``) or its run
  (``finish``).

Run detail: each invocation of ``pull``, ``transform`` and ``push`` records itself on its
page in the run store (:meth:`~datasync.ports.RunStore.write_step`: start, duration, the
attempt, the error, cursors and counts it knows; texts masked). ``push`` records itself in
the same write as its checkpoint, so a page costs two extra store writes (pull, transform)
on the happy path. A failing detail write is logged and never fails the step. ``finish``
logs one line per run end (INFO; ``Failed`` at ERROR with the reason). Every line logged
inside a step names the tenant and run (:func:`~datasync.context.run_scope`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .context import FlowConfig, FlowContext, RunLog, run_scope
from .contracts import (
    BeginInput,
    Carry,
    FinishInput,
    FinishOutput,
    PullInput,
    PullOutput,
    PushInput,
    PushOutput,
    TransformInput,
    TransformOutput,
)
from .exceptions import NotFound, PermanentError
from .models import RunRecord, Tenant
from .names import format_utc, utcnow
from .ports import Checkpoint, FencedWrite
from .records import MAX_ERROR, StepWrite, short_reason
from .redact import redact_exception
from .registry import Page, call_step

if TYPE_CHECKING:
    from .app import App

__all__ = ["RunSteps", "TenantCache"]

log = RunLog(logging.getLogger("datasync.steps"))


def page_number(page_key: str) -> int:
    """The page of a page key (``<instance id>/p<page>``)."""
    return int(page_key.rsplit("/p", 1)[1])


class _Invocation:
    """One invocation of a step on a page: when it started, and its report."""

    __slots__ = ("known", "page", "started", "started_at", "step")

    def __init__(self, step: str, page: int) -> None:
        self.step, self.page = step, page
        self.started_at = format_utc(utcnow())
        self.started = time.perf_counter()
        self.known: dict[str, Any] = {}

    def report(self, tenant_id: str, run_id: str, error: str | None = None) -> StepWrite:
        return StepWrite(
            instance_id=run_id,
            tenant_id=tenant_id,
            page=self.page,
            step=self.step,
            started_at=self.started_at,
            duration_seconds=time.perf_counter() - self.started,
            error=error,
            **self.known,
        )


def _seconds(value: float | None, digits: int) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def run_end_line(run: RunRecord) -> str:
    """``run <id> Completed: N pages, R records in, W out, D s, lateness L s`` (``Failed``:
    the reason after the status)."""
    reason = f" {run.reason};" if run.status == "Failed" and run.reason else ""
    return (
        f"run {run.instance_id} {run.status}:{reason} {run.pages} pages, "
        f"{run.records_in} records in, {run.records_out} out, "
        f"{_seconds(run.duration_seconds, 2)} s, lateness {_seconds(run.lateness_seconds, 3)} s"
    )


def _staged_key(page_key: str, what: str) -> str:
    """A key no other attempt at this step uses (see the module note on fencing)."""
    return f"{page_key}/{what}-{secrets.token_hex(6)}"


def _rejected(run_id: str, what: str, result: FencedWrite) -> None:
    log.warning("stale write from %s %s rejected: %s", run_id, what, result.reason)


class TenantCache:
    """Tenant documents reused for ``ttl`` seconds across one run's steps.

    A page costs three activities, and re-reading (and validating) the document each time
    was a visible share of a page's cost. An edit is seen by the next page after at most
    ``ttl`` seconds."""

    def __init__(self, ttl: float = 2.0, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._data: dict[str, tuple[float, Tenant]] = {}

    def get(self, tenant_id: str, load: Any) -> Tenant:
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(tenant_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        tenant: Tenant = load(tenant_id)
        self.put(tenant, now)
        return tenant

    def put(self, tenant: Tenant, now: float | None = None) -> None:
        """Remember ``tenant`` as read at ``now`` (default: now): the starter hands over
        the document it admitted a job under, so the run's first step does not read it
        again (an edit is still seen after at most ``ttl`` seconds)."""
        stamp = time.monotonic() if now is None else now
        with self._lock:
            if len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[tenant.tenant_id] = (stamp, tenant)


def _records(value: Any, step: str, flow: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise PermanentError(
            f"flow {flow!r}: {step} must return a list of dicts, got {type(value).__name__}"
        )
    return value


class RunSteps:
    """The five run steps, holding what they need: the app's ports, flows and caches."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.tenants = TenantCache()
        self.keep_pages = app.settings.run_detail_pages

    @contextmanager
    def _invocation(
        self, tenant_id: str, flow_name: str, run_id: str, step: str, page: int
    ) -> Iterator[_Invocation]:
        """The step's scope for its log lines; a failure is recorded on its page."""
        with run_scope(tenant_id, flow_name, run_id):
            inv = _Invocation(step, page)
            try:
                yield inv
            except BaseException as exc:
                error = redact_exception(exc, limit=MAX_ERROR)
                self._write(
                    lambda: self.app.runs.write_step(
                        inv.report(tenant_id, run_id, error), keep_pages=self.keep_pages
                    )
                )
                raise

    def _write(self, write: Callable[[], None]) -> None:
        try:
            write()
        except Exception as exc:  # noqa: BLE001 - run detail never fails a step
            log.warning("could not record the step's run detail: %s", redact_exception(exc))

    def _context(
        self, tenant_id: str, flow_name: str, run_id: str, page_key: str, state: dict[str, Any]
    ) -> FlowContext:
        tenant = self.tenants.get(tenant_id, self.app.tenants.get)
        entry = tenant.flow(flow_name)
        return FlowContext(
            tenant_id=tenant_id,
            flow_name=flow_name,
            run_id=run_id,
            page_key=page_key,
            config=FlowConfig(entry.config or {}),
            state=dict(state),
            secrets=self.app.secrets,
            http=self.app.http,
            cache=self.app.secret_cache,
        )

    def begin(self, step: BeginInput) -> Carry:
        """Mark the run Running and hand back where to start: checkpoint and counters."""
        with run_scope(step.tenant_id, step.flow_name, step.run_id):
            return self._begin(step)

    def _begin(self, step: BeginInput) -> Carry:
        runs = self.app.runs
        run = runs.begin(
            RunRecord(
                instance_id=step.run_id,
                tenant_id=step.tenant_id,
                flow_name=step.flow_name,
                scheduled_for=step.scheduled_for,
                status="Running",
            )
        )
        cp = runs.load_checkpoint(step.tenant_id, step.flow_name)
        spec = self.app.registry.get(step.flow_name)
        return Carry(
            cursor=cp.cursor,
            state=cp.state,
            pages=run.pages,
            records_in=run.records_in,
            records_out=run.records_out,
            # the flow's own choices: a flow whose pull reads what its push writes to
            # ctx.state opts out of pipelining (``pipeline = False``); without a
            # ``transform`` the pulled page is pushed as staged (no transform_page)
            pipeline=bool(getattr(spec.cls, "pipeline", True)),
            transform=spec.has_transform,
        )

    def pull(self, step: PullInput) -> PullOutput:
        page = page_number(step.page_key)
        with self._invocation(step.tenant_id, step.flow_name, step.run_id, "pull", page) as inv:
            inv.known.update(cursor_before=step.cursor, knows_cursor_before=True)
            out = self._pull(step)
            inv.known.update(cursor_after=out.cursor, records_in=out.count)
            self._write(
                lambda: self.app.runs.write_step(
                    inv.report(step.tenant_id, step.run_id), keep_pages=self.keep_pages
                )
            )
            return out

    def _pull(self, step: PullInput) -> PullOutput:
        spec = self.app.registry.get(step.flow_name)
        ctx = self._context(step.tenant_id, step.flow_name, step.run_id, step.page_key, step.state)
        page = call_step(spec.create().pull, ctx, step.cursor)
        if not isinstance(page, Page):
            raise PermanentError(
                f"flow {spec.name!r}: pull must return a Page, got {type(page).__name__}"
            )
        records = _records(page.records, "pull", spec.name)
        key = None
        if records:
            key = _staged_key(step.page_key, "pulled")
            self.app.pages.put(key, records)
        cursor = page.cursor if page.cursor is not None else step.cursor
        return PullOutput(
            key=key,
            count=len(records),
            cursor=cursor,
            has_more=bool(page.has_more),
            state=ctx.state,
        )

    def transform(self, step: TransformInput) -> TransformOutput:
        page = page_number(step.page_key)
        with self._invocation(
            step.tenant_id, step.flow_name, step.run_id, "transform", page
        ) as inv:
            out = self._transform(step)
            inv.known.update(records_out=out.count)
            self._write(
                lambda: self.app.runs.write_step(
                    inv.report(step.tenant_id, step.run_id), keep_pages=self.keep_pages
                )
            )
            return out

    def _transform(self, step: TransformInput) -> TransformOutput:
        spec = self.app.registry.get(step.flow_name)
        flow = spec.create()
        ctx = self._context(step.tenant_id, step.flow_name, step.run_id, step.page_key, step.state)
        records = self.app.pages.get(step.key)
        transform = getattr(flow, "transform", None)
        if transform is not None:
            records = _records(call_step(transform, ctx, records), "transform", spec.name)
        key = _staged_key(step.page_key, "out")
        self.app.pages.put(key, records)
        return TransformOutput(key=key, count=len(records), state=ctx.state)

    def push(self, step: PushInput) -> PushOutput:
        """Push (if the page has records), then checkpoint cursor, state and counters.

        A staged page that is gone because another holder of this step pushed and
        checkpointed it already is done, not an error."""
        with self._invocation(
            step.tenant_id, step.flow_name, step.run_id, "push", step.pages
        ) as inv:
            inv.known.update(cursor_after=step.cursor, records_out=step.count)
            return self._push(step, inv)

    def _push(self, step: PushInput, inv: _Invocation) -> PushOutput:
        spec = self.app.registry.get(step.flow_name)
        ctx = self._context(step.tenant_id, step.flow_name, step.run_id, step.page_key, step.state)
        if step.count and step.key is not None:
            try:
                records = self.app.pages.get(step.key)
            except NotFound:
                if not self._checkpointed(step.run_id, step.pages):
                    raise
                log.info(
                    "page %s of %s was pushed and checkpointed by another holder",
                    step.pages,
                    step.run_id,
                )
                self._write(
                    lambda: self.app.runs.write_step(
                        inv.report(step.tenant_id, step.run_id), keep_pages=self.keep_pages
                    )
                )
                return PushOutput(state=ctx.state)
            if records:
                call_step(spec.create().push, ctx, records)
        result = self.app.runs.checkpoint(
            step.run_id,
            step.tenant_id,
            step.flow_name,
            Checkpoint(cursor=step.cursor, state=ctx.state),
            pages=step.pages,
            records_in=step.records_in,
            records_out=step.records_out,
            detail=inv.report(step.tenant_id, step.run_id),
            keep_pages=self.keep_pages,
        )
        if result.stale:
            # the page's staged records are left alone: a resume of this run may be
            # staging this page again (``finish`` deletes what is left)
            _rejected(step.run_id, f"page {step.pages}", result)
            return PushOutput(state=ctx.state)
        self.app.pages.delete_prefix(step.page_key + "/")
        return PushOutput(state=ctx.state)

    def _checkpointed(self, run_id: str, page: int) -> bool:
        try:
            return self.app.runs.get(run_id).pages >= page
        except NotFound:
            return False

    def finish(self, step: FinishInput) -> FinishOutput:
        """Record the final status (never over a terminal one) and drop the run's staged
        pages, including any a stale step wrote after its page was pushed; log how the
        run ended, once."""
        with run_scope(step.tenant_id, step.flow_name, step.run_id):
            runs = self.app.runs
            result = runs.finish(
                step.run_id, step.status, step.error, reason=short_reason(step.error)
            )
            if result.stale:
                _rejected(step.run_id, f"finish ({step.status})", result)
                return FinishOutput(status=step.status)
            self.app.pages.delete_prefix(step.run_id + "/")
            if result.outcome == "applied":
                self._log_end(step.run_id)
            return FinishOutput(status=step.status)

    def _log_end(self, run_id: str) -> None:
        try:
            run = self.app.runs.get(run_id)
        except NotFound:
            return
        level = {"Completed": logging.INFO, "Failed": logging.ERROR}.get(
            run.status, logging.WARNING
        )
        log.log(level, "%s", run_end_line(run))
