"""The small interfaces the function code talks to.

Each port has three adapters: embedded (``datasync.adapters.local``: SQLite and a file),
Azure (``datasync.adapters.azure``) and in-memory (``datasync.adapters.memory``, for fast
unit tests). ``datasync.services.build_services`` picks them from settings. Everything
here is synchronous; adapters own their connections and are safe to share between threads.
``tests/contract`` runs one suite of tests, written from these docstrings, on every adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from .models import RunRecord, Tenant
    from .records import AuditEntry, PageRecord, PageSummary, StepWrite

__all__ = [
    "CREATED",
    "DONE",
    "EXISTS",
    "FLOW_JOBS",
    "FLOW_JOBS_POISON",
    "TERMINAL",
    "Admitted",
    "Checkpoint",
    "Clock",
    "DueFlow",
    "FencedWrite",
    "MessageQueue",
    "PageStore",
    "QueueBackend",
    "QueueItem",
    "RunStore",
    "SecretStore",
    "TenantStore",
    "admission_check",
    "claims_checkpoint",
    "fence_checkpoint",
    "fence_finish",
]

FLOW_JOBS = "flow-jobs"
FLOW_JOBS_POISON = "flow-jobs-poison"

Clock = Callable[[], datetime]
"""Now, as an aware UTC ``datetime``; adapters that take one use it for every timestamp."""


@dataclass(frozen=True, slots=True)
class DueFlow:
    """One due flow as the scheduler's query returns it (raw: may be invalid)."""

    tenant_id: str
    flow_index: int
    flow_name: Any
    cron: Any
    timezone: Any
    next_run_utc: Any  # the stored value (str or None) — validated by the scheduler
    etag: str  # what :meth:`TenantStore.advance` compares against
    options: Any = None  # the entry's schedule options (``jitter``, ``catchUp``, … as
    # stored, raw) or None when it has none — validated by the scheduler


@dataclass(frozen=True, slots=True)
class QueueItem:
    id: str
    body: str  # decoded text (adapters handle base64)
    dequeue_count: int
    pop_receipt: str
    inserted_at: datetime | None = None
    next_visible_at: datetime | None = None
    reason: str | None = None  # why a poison message was moved, where the backend keeps it


@dataclass(slots=True)
class Checkpoint:
    """What a flow resumes from: the last saved cursor and its ``ctx.state``."""

    cursor: str | int | None = None
    state: dict[str, Any] = field(default_factory=dict)


TERMINAL = frozenset({"Completed", "Failed", "Terminated", "Skipped", "Superseded"})
"""Run statuses a stale ``finish`` never overwrites (only a resume's ``begin`` reopens
``Failed`` and ``Terminated``)."""

DONE = frozenset({"Completed", "Skipped", "Superseded"})
"""Run statuses ``begin`` refuses: such a run never runs (again)."""


@dataclass(frozen=True, slots=True)
class FencedWrite:
    """The outcome of a fenced write (:meth:`RunStore.checkpoint`, :meth:`RunStore.finish`).

    ``applied``: the store changed. ``repeat``: the same write was applied before (a retry
    after a crash or a take-over) — nothing to do, and not an error. ``stale``: a writer
    that is no longer the holder of the work, or that would move the run backwards; the
    store is unchanged and ``reason`` says why (no secret can be in it: ids and numbers)."""

    outcome: Literal["applied", "repeat", "stale"]
    reason: str = ""

    @property
    def stale(self) -> bool:
        return self.outcome == "stale"


APPLIED = FencedWrite("applied")
REPEAT = FencedWrite("repeat")


def fence_checkpoint(
    owner: str | None, stored_page: int | None, instance_id: str, page: int
) -> FencedWrite:
    """The checkpoint rule every adapter applies, atomically with the write it guards.

    A tenant+flow checkpoint belongs to one run (``owner``, claimed by that run's
    :meth:`RunStore.begin`) and is at ``stored_page``. A write from ``instance_id`` for
    ``page`` is applied iff the checkpoint is that run's (or has no owner: none saved yet,
    or saved before owners existed) and ``page`` moves it forward; the same page again
    from its owner is a repeat; anything else is stale."""
    if owner is not None and owner != instance_id:
        return FencedWrite("stale", f"the checkpoint belongs to run {owner}")
    if stored_page is not None and page < stored_page:
        return FencedWrite("stale", f"the checkpoint is at page {stored_page} already")
    if owner is not None and page == stored_page:
        return REPEAT
    return APPLIED


def claims_checkpoint(
    owner: str | None, instance_id: str, *, resume: bool, owner_active: bool
) -> bool:
    """Whether :meth:`RunStore.begin` of ``instance_id`` takes the checkpoint: always,
    except that a resume leaves it to another run that is still active."""
    return owner is None or owner == instance_id or not resume or not owner_active


def fence_finish(current: str | None, status: str) -> FencedWrite:
    """The ``finish`` rule: a run record that is still active takes its final status; a
    terminal one is never overwritten (the same status again is a repeat)."""
    if current is None:
        return FencedWrite("stale", "there is no run record")
    if current in TERMINAL:
        if current == status:
            return REPEAT
        return FencedWrite("stale", f"the run is {current} already")
    return APPLIED


AdmitOutcome = Literal["created", "exists", "flow_busy", "tenant_full"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """What :meth:`RunStore.admit` did. ``holders``: the active runs that held it back
    (``flow_busy``: the flow's; ``tenant_full``: the tenant's). True iff created."""

    outcome: AdmitOutcome
    holders: tuple[RunRecord, ...] = ()

    def __bool__(self) -> bool:
        return self.outcome == "created"

    @property
    def holder(self) -> str | None:
        """The first holder's instance id (None when nothing held it back)."""
        return self.holders[0].instance_id if self.holders else None


CREATED = Admitted("created")
EXISTS = Admitted("exists")


def admission_check(
    run: RunRecord,
    active: Iterable[RunRecord],
    *,
    exclusive_flow: bool,
    max_active: int | None,
) -> Admitted | None:
    """The ``admit`` rule over the tenant's active runs (``run`` itself excluded): None
    when ``run`` may be created; else ``flow_busy`` (``exclusive_flow`` and a run of its
    flow is active) or ``tenant_full`` (``max_active`` runs are active)."""
    others = [r for r in active if r.instance_id != run.instance_id]
    same = [r for r in others if r.flow_name == run.flow_name]
    if exclusive_flow and same:
        return Admitted("flow_busy", tuple(same))
    if max_active is not None and len(others) >= max_active:
        return Admitted("tenant_full", tuple(others))
    return None


class TenantStore(Protocol):
    """Tenant documents, versioned by an opaque etag."""

    def get(self, tenant_id: str) -> Tenant:
        """The tenant; :class:`~datasync.exceptions.NotFound` when missing,
        :class:`~datasync.exceptions.InvalidDocument` when its stored document is invalid."""
        ...

    def get_with_etag(self, tenant_id: str) -> tuple[Tenant, str]:
        """The tenant and the etag to pass to :meth:`replace_if_match` (errors as ``get``)."""
        ...

    def iter_tenants(self) -> Iterator[Tenant]:
        """Every tenant, by id; an invalid stored document is logged and skipped."""
        ...

    def upsert_many(self, tenants: list[Tenant]) -> None:
        """Create or overwrite each document (each one gets a new etag)."""
        ...

    def replace_if_match(self, tenant: Tenant, etag: str) -> bool:
        """Overwrite the document iff it is still at ``etag``; False on a conflict,
        :class:`~datasync.exceptions.NotFound` when the tenant is gone."""
        ...

    def due_flows(
        self, now: datetime, *, page_size: int = 1000, tenant_id: str | None = None
    ) -> Iterator[list[DueFlow]]:
        """Enabled flows of unpaused tenants whose ``nextRunUtc`` is missing or <= ``now``,
        in pages of at most ``page_size``; each due flow exactly once, with its schedule
        options (``DueFlow.options``). The look-ahead scan passes ``now`` + look-ahead.
        ``tenant_id``: only that tenant's flows (none when it is missing)."""
        ...

    def advance(self, updates: list[tuple[DueFlow, str]]) -> list[DueFlow]:
        """Set each flow's ``nextRunUtc`` iff it is still what the scan read (``flow.etag``).

        Returns the flows that lost a race (changed since read, or gone)."""
        ...


class MessageQueue(Protocol):
    """One queue with Storage-queue semantics: visibility timeouts, dequeue counts, pop
    receipts (a receive hands out a receipt; only its holder may delete or extend)."""

    name: str

    def send(self, text: str, *, visibility_delay: float = 0.0) -> str:
        """Enqueue ``text``, hidden for ``visibility_delay`` seconds; returns the message id."""
        ...

    def send_many(self, texts: Iterable[str]) -> None:
        """Enqueue each text, visible at once."""
        ...

    def send_at(self, items: Iterable[tuple[str, datetime]]) -> None:
        """Enqueue each text hidden until its (aware) time, as the queue service's clock
        tells it where it tells one (a time in the past: visible at once). Azure Storage
        caps the delay at 7 days."""
        ...

    def receive(self, max_messages: int, visibility_timeout: float) -> list[QueueItem]:
        """Up to ``max_messages`` visible messages, each hidden for ``visibility_timeout``
        seconds, its ``dequeue_count`` raised by one and a new pop receipt handed out."""
        ...

    def delete(self, item: QueueItem) -> None:
        """Delete a received message; a stale receipt or a gone message is a no-op."""
        ...

    def extend(self, item: QueueItem, visibility_timeout: float) -> QueueItem:
        """Keep a held message hidden ``visibility_timeout`` seconds from now; returns the
        item to use from now on. :class:`~datasync.exceptions.NotFound` when no longer held."""
        ...

    def peek_all(self) -> list[QueueItem]:
        """Messages without receiving them (dequeue counts unchanged), oldest first."""
        ...

    def remove(self, message_id: str) -> QueueItem:
        """Take one message out by id; :class:`~datasync.exceptions.NotFound` when missing."""
        ...

    def count(self) -> int:
        """Messages in the queue, hidden ones included."""
        ...

    def count_due(self, before: datetime) -> int:
        """Messages that are visible, or become visible, at or before ``before`` (held and
        deferred ones included; jobs scheduled for later excluded). Azure Storage cannot
        list hidden messages: there it is :meth:`count`."""
        ...

    def move_to(self, item: QueueItem, target: MessageQueue, reason: str) -> None:
        """Put ``item``'s body on ``target`` (with ``reason`` where the backend keeps it,
        else in the log), then delete it here."""
        ...


class QueueBackend(Protocol):
    def queue(self, name: str) -> MessageQueue:
        """The queue called ``name`` (created on first use)."""
        ...


class SecretStore(Protocol):
    def get(self, tenant: str, system: str, key: str) -> str:
        """The value; :class:`~datasync.exceptions.SecretNotFound` when missing."""
        ...

    def set(self, tenant: str, system: str, key: str, value: str) -> None:
        """Store a value (a new version where the backend keeps versions)."""
        ...


class RunStore(Protocol):
    """Run history plus each tenant+flow's checkpoint (cursor and ``ctx.state``).

    A run record is keyed by its instance id (tenant, flow and ``scheduledFor``): the
    starter's dedupe is :meth:`create`, an atomic conditional insert."""

    def create(self, run: RunRecord) -> bool:
        """Insert ``run`` iff no record with its instance id exists, stamping its claim
        time. True: this caller won (a Pending record: it must start the run); False: a
        record exists already (in whatever status: the job is a duplicate, skip it).
        The same as ``bool(admit(run, exclusive_flow=False, max_active=None))``."""
        ...

    def admit(self, run: RunRecord, *, exclusive_flow: bool, max_active: int | None) -> Admitted:
        """:meth:`create` and the overlap/concurrency check as ONE atomic step, so runs
        admitted concurrently (any threads, processes or hosts on one store) never exceed
        what :func:`admission_check` allows over the tenant's active (Pending/Running) runs:
        ``exists`` (a record with its id exists, whatever its status; checked first),
        ``flow_busy``/``tenant_full`` (nothing written; ``holders`` are the active runs that
        held it back, for the caller to reconcile with their instances and retry), or
        ``created`` (inserted as :meth:`create` does)."""
        ...

    def take_over_pending(self, instance_id: str, *, older_than: datetime) -> bool:
        """Re-claim a Pending record nobody started (its claim older than ``older_than``,
        capped at now), stamping a new claim time. Atomic: of callers racing on one
        record, exactly one gets True; False when it is not Pending, not stale, or gone."""
        ...

    def load_checkpoint(self, tenant: str, flow: str) -> Checkpoint:
        """The last saved cursor and state; an empty :class:`Checkpoint` when none."""
        ...

    def reset_checkpoint(self, tenant: str, flow: str, checkpoint: Checkpoint | None) -> None:
        """An operator's reset (``datasync reset``), unconditional: None deletes the saved
        cursor and state (the next run starts from the beginning); a checkpoint replaces
        them, with no owner and no page, so the next run's :meth:`begin` claims it and its
        page 1 applies. The caller makes sure no run of the flow is active."""
        ...

    def begin(self, run: RunRecord) -> RunRecord:
        """Mark the run Running (creating it if missing) and claim the tenant+flow
        checkpoint for it, in one atomic step. A run started before (Running: its begin
        re-ran; Failed or Terminated: a resume) is a resume: ``resumes`` += 1, counters
        kept. The claim makes this run the checkpoint's owner at its own page count
        (``pages``); a resume does not take the checkpoint from another run that is still
        active (that run's writes stand; this one's are then stale). A Completed, Skipped
        or Superseded run never runs again: :class:`~datasync.exceptions.PermanentError`,
        nothing changed. Returns the stored record."""
        ...

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
        """Save cursor+state for page ``pages`` of the run, fenced by
        :func:`fence_checkpoint` (the outcome is returned; a stale write changes nothing).

        The run's counters (cumulative values, not increments) move with it on the run's
        own record, forward only: applied iff ``pages`` is above the record's ``pages``
        (whoever owns the checkpoint). With no run record the checkpoint is still saved
        (if the fence allows). ``detail``: the push step's page detail, written with it
        (as :meth:`write_step`, in the same transaction where the backend has one)."""
        ...

    def finish(
        self, instance_id: str, status: str, error: str | None = None, *, reason: str | None = None
    ) -> FencedWrite:
        """Set the final status, error, ``reason``, ``finishedAt`` and ``durationSeconds``
        (from the precise first start), fenced by :func:`fence_finish`:
        a terminal record is never overwritten; an unknown run is a stale no-op."""
        ...

    def mark_resumed(self, instance_id: str) -> None:
        """Count a pick-up of an interrupted run (``resumes`` += 1; unknown: no-op)."""
        ...

    def get(self, instance_id: str) -> RunRecord:
        """The record; :class:`~datasync.exceptions.NotFound` when missing."""
        ...

    def record(self, run: RunRecord) -> None:
        """Upsert a whole record (e.g. Skipped)."""
        ...

    def recent(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Up to ``limit`` records, newest first (creation time, then instance id)."""
        ...

    def active(self, tenant: str, flow: str | None = None) -> list[RunRecord]:
        """Runs with status Pending or Running for a tenant (and flow)."""
        ...

    # -- run detail (written by the activities, read by the CLI and the console) ---------
    def write_step(self, write: StepWrite, *, keep_pages: int) -> None:
        """Record one invocation of a step on its page (``attempts`` += 1, its start,
        duration and error; cursors and counts it knows). Once a page is pushed, the page
        that leaves the window of the latest ``keep_pages // 2`` (and is not one of the
        first ``ceil(keep_pages / 2)``) is folded into the run's :class:`PageSummary`.
        Texts are masked."""
        ...

    def pages(self, instance_id: str, *, after: int = 0, limit: int = 100) -> list[PageRecord]:
        """Kept pages with ``page > after``, in page order, at most ``limit``."""
        ...

    def page_summary(self, instance_id: str) -> PageSummary | None:
        """The folded pages' summary; None when no page was folded."""
        ...

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
        """Runs with ``since <= scheduledFor < until``, ordered by ``scheduledFor`` then
        instance id, both descending; ``before``: :func:`~datasync.records.run_token` of
        the last run of the previous page (a bad token: ``ValidationError``)."""
        ...

    def count(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many runs :meth:`query` would list with no limit."""
        ...

    def status_counts(self, since: datetime, bucket_seconds: int) -> list[tuple[str, str, int]]:
        """(bucket start, status, runs) over runs with ``scheduledFor >= since``, buckets of
        ``bucket_seconds`` since the epoch, sorted; empty buckets are absent."""
        ...

    def audit(self, entry: AuditEntry) -> None:
        """Append an operator action (stamped now when ``entry.at`` is None; masked)."""
        ...

    def audit_log(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        instance_id: str | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        """Audit entries matching every filter given, newest first."""
        ...

    def annotate(
        self,
        instance_id: str,
        *,
        reason: str | None = None,
        trace_id: str | None = None,
        rerun_of: str | None = None,
    ) -> None:
        """Set the given (not None) optional fields on a run record; unknown run: no-op."""
        ...

    def prune(self, older_than: datetime) -> int:
        """Delete terminal runs finished (else created) before ``older_than``, with their
        page detail; returns how many runs. Active runs are kept."""
        ...


class PageStore(Protocol):
    """Holds a page's records between activities, so history carries a key, not the data."""

    def put(self, key: str, records: list[dict[str, Any]]) -> None:
        """Store (or overwrite) JSON records under ``key``."""
        ...

    def get(self, key: str) -> list[dict[str, Any]]:
        """The records; :class:`~datasync.exceptions.NotFound` when gone."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every key starting with ``prefix`` (none: a no-op)."""
        ...
