"""The small interfaces the function code talks to.

Each port has an embedded adapter (``datasync.adapters.local``) and an Azure adapter
(``datasync.adapters.azure``). ``datasync.services.build_services`` picks them from settings.
Everything here is synchronous; adapters own their connections and are safe to share
between threads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

if TYPE_CHECKING:
    from .models import RunRecord, Tenant

__all__ = [
    "DueFlow", "QueueItem", "Checkpoint", "TenantStore", "MessageQueue", "QueueBackend",
    "SecretStore", "RunStore", "PageStore", "FLOW_JOBS", "FLOW_JOBS_POISON",
]

FLOW_JOBS = "flow-jobs"
FLOW_JOBS_POISON = "flow-jobs-poison"


@dataclass(frozen=True, slots=True)
class DueFlow:
    """One due flow as the scheduler's query returns it (raw: may be invalid)."""

    tenant_id: str
    flow_index: int
    flow_name: Any
    cron: Any
    timezone: Any
    next_run_utc: Any          # the stored value (str or None) — validated by the scheduler
    etag: str                  # document version the row was read at


@dataclass(frozen=True, slots=True)
class QueueItem:
    id: str
    body: str                  # decoded text (adapters handle base64)
    dequeue_count: int
    pop_receipt: str
    inserted_at: datetime | None = None
    next_visible_at: datetime | None = None
    reason: str | None = None   # why a poison message was moved, where the backend keeps it


@dataclass(slots=True)
class Checkpoint:
    """What a flow resumes from: the last saved cursor and its ``ctx.state``."""

    cursor: str | int | None = None
    state: dict[str, Any] = field(default_factory=dict)


class TenantStore(Protocol):
    def get(self, tenant_id: str) -> Tenant: ...            # NotFound when missing
    def get_with_etag(self, tenant_id: str) -> tuple[Tenant, str]: ...
    def list(self) -> Iterator[Tenant]: ...
    def upsert_many(self, tenants: list[Tenant]) -> None: ...
    def replace_if_match(self, tenant: Tenant, etag: str) -> bool: ...   # False on etag conflict
    def due_flows(self, now: datetime, *, page_size: int = 1000) -> Iterator[list[DueFlow]]: ...
    def advance(self, updates: list[tuple[DueFlow, str]]) -> list[DueFlow]: ...
    """Set each flow's ``nextRunUtc`` if its document is still at ``flow.etag``.

    Returns the flows that lost a race (their document changed since it was read)."""


class MessageQueue(Protocol):
    name: str
    def send(self, text: str, *, visibility_delay: float = 0.0) -> str: ...
    def send_many(self, texts: Iterable[str]) -> None: ...
    def receive(self, max_messages: int, visibility_timeout: float) -> list[QueueItem]: ...
    def delete(self, item: QueueItem) -> None: ...
    def extend(self, item: QueueItem, visibility_timeout: float) -> QueueItem: ...
    def peek_all(self) -> list[QueueItem]: ...
    def remove(self, message_id: str) -> QueueItem: ...    # NotFound when missing
    def count(self) -> int: ...
    def move_to(self, item: QueueItem, target: "MessageQueue", reason: str) -> None: ...
    """Put ``item``'s body on ``target`` (with ``reason`` where supported), then delete it here."""


class QueueBackend(Protocol):
    def queue(self, name: str) -> MessageQueue: ...


class SecretStore(Protocol):
    def get(self, tenant: str, system: str, key: str) -> str: ...   # SecretNotFound
    def set(self, tenant: str, system: str, key: str, value: str) -> None: ...


class RunStore(Protocol):
    """Run history plus each tenant+flow's checkpoint (cursor and ``ctx.state``)."""

    def load_checkpoint(self, tenant: str, flow: str) -> Checkpoint: ...
    def begin(self, run: RunRecord) -> RunRecord: ...
    """Create the run record, or on a resume return the stored one with ``resumes`` += 1."""
    def checkpoint(self, instance_id: str, tenant: str, flow: str, cp: Checkpoint,
                   *, pages: int, records_in: int, records_out: int) -> None: ...
    """Atomically save cursor+state and the run's counters (cumulative values)."""
    def finish(self, instance_id: str, status: str, error: str | None = None) -> None: ...
    def mark_pending(self, run: RunRecord) -> bool: ...
    """Record a run as Pending unless one with that id is Pending/Running/Completed."""
    def mark_resumed(self, instance_id: str) -> None: ...
    """Count a pick-up of an interrupted run (``resumes`` += 1)."""
    def get(self, instance_id: str) -> RunRecord: ...      # NotFound
    def record(self, run: RunRecord) -> None: ...          # upsert a whole record (e.g. Skipped)
    def list(self, *, tenant: str | None = None, flow: str | None = None,
             status: str | None = None, limit: int = 100) -> list[RunRecord]: ...
    def active(self, tenant: str, flow: str | None = None) -> list[RunRecord]: ...
    """Runs with status Pending or Running for a tenant (and flow)."""


class PageStore(Protocol):
    """Holds a page's records between activities, so history carries a key, not the data."""

    def put(self, key: str, records: list[dict[str, Any]]) -> None: ...
    def get(self, key: str) -> list[dict[str, Any]]: ...
    def delete_prefix(self, prefix: str) -> None: ...


Clock = Callable[[], datetime]
