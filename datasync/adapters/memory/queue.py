"""Storage-queue semantics in memory: visibility timeouts and delays, dequeue counts, pop
receipts (a new one per receive and per extend), and a poison move that keeps the reason."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ...exceptions import NotFound
from ...ports import Clock, MessageQueue, QueueItem
from .clock import system_clock

__all__ = ["MemoryMessageQueue", "MemoryQueueBackend"]


@dataclass(slots=True)
class _Message:
    id: str
    body: str
    seq: int  # insertion order (ties of visible_at break on it)
    inserted_at: datetime
    visible_at: datetime
    dequeue_count: int = 0
    pop_receipt: str | None = None
    reason: str | None = None

    def item(self) -> QueueItem:
        return QueueItem(
            id=self.id,
            body=self.body,
            dequeue_count=self.dequeue_count,
            pop_receipt=self.pop_receipt or "",
            inserted_at=self.inserted_at,
            next_visible_at=self.visible_at,
            reason=self.reason,
        )


class MemoryQueueBackend:
    """Every queue of one in-memory account; one lock, so a move between queues is atomic."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or system_clock
        self._messages: dict[str, dict[str, _Message]] = {}
        self._queues: dict[str, MemoryMessageQueue] = {}
        self._seq = itertools.count()
        self.lock = threading.RLock()

    def queue(self, name: str) -> MemoryMessageQueue:
        with self.lock:
            found = self._queues.get(name)
            if found is None:
                self._messages[name] = {}
                found = self._queues[name] = MemoryMessageQueue(self, name)
            return found

    def _box(self, name: str) -> dict[str, _Message]:
        return self._messages[name]

    def _new(self, body: str, delay: float) -> _Message:
        now = self.clock()
        return _Message(
            id=uuid.uuid4().hex,
            body=body,
            seq=next(self._seq),
            inserted_at=now,
            visible_at=now + timedelta(seconds=max(0.0, delay)),
        )


class MemoryMessageQueue:
    """One named queue of a :class:`MemoryQueueBackend`."""

    def __init__(self, backend: MemoryQueueBackend, name: str) -> None:
        self.backend = backend
        self.name = name

    def __repr__(self) -> str:
        return f"MemoryMessageQueue({self.name!r})"

    def send(self, text: str, *, visibility_delay: float = 0.0) -> str:
        with self.backend.lock:
            msg = self.backend._new(text, visibility_delay)
            self.backend._box(self.name)[msg.id] = msg
            return msg.id

    def send_many(self, texts: Iterable[str]) -> None:
        with self.backend.lock:
            box = self.backend._box(self.name)
            for text in texts:
                msg = self.backend._new(text, 0.0)
                box[msg.id] = msg

    def send_at(self, items: Iterable[tuple[str, datetime]]) -> None:
        """Each text hidden until its time by the backend's clock (past: visible now)."""
        with self.backend.lock:
            box = self.backend._box(self.name)
            now = self.backend.clock()
            for text, at in items:
                msg = self.backend._new(text, 0.0)
                msg.visible_at = max(now, at)
                box[msg.id] = msg

    def receive(self, max_messages: int, visibility_timeout: float) -> list[QueueItem]:
        with self.backend.lock:
            now = self.backend.clock()
            ready = sorted(
                (m for m in self.backend._box(self.name).values() if m.visible_at <= now),
                key=lambda m: (m.visible_at, m.seq),
            )
            taken = ready[: max(0, max_messages)]
            for msg in taken:
                msg.visible_at = now + timedelta(seconds=max(0.0, visibility_timeout))
                msg.dequeue_count += 1
                msg.pop_receipt = uuid.uuid4().hex
            return [m.item() for m in sorted(taken, key=lambda m: m.seq)]

    def _held(self, item: QueueItem) -> _Message | None:
        msg = self.backend._box(self.name).get(item.id)
        return msg if msg is not None and msg.pop_receipt == item.pop_receipt else None

    def delete(self, item: QueueItem) -> None:
        with self.backend.lock:
            if self._held(item) is not None:
                del self.backend._box(self.name)[item.id]

    def extend(self, item: QueueItem, visibility_timeout: float) -> QueueItem:
        with self.backend.lock:
            msg = self._held(item)
            if msg is None:
                raise NotFound(f"message {item.id} is no longer held by this receiver")
            msg.visible_at = self.backend.clock() + timedelta(seconds=max(0.0, visibility_timeout))
            msg.pop_receipt = uuid.uuid4().hex
            return replace(item, pop_receipt=msg.pop_receipt, next_visible_at=msg.visible_at)

    def peek_all(self) -> list[QueueItem]:
        """Every message, hidden ones included, oldest first (as the embedded queue)."""
        with self.backend.lock:
            return [
                m.item() for m in sorted(self.backend._box(self.name).values(), key=lambda m: m.seq)
            ]

    def remove(self, message_id: str) -> QueueItem:
        with self.backend.lock:
            msg = self.backend._box(self.name).pop(message_id, None)
        if msg is None:
            raise NotFound(f"no message {message_id!r} in queue {self.name}")
        return msg.item()

    def count(self) -> int:
        with self.backend.lock:
            return len(self.backend._box(self.name))

    def count_due(self, before: datetime) -> int:
        with self.backend.lock:
            return sum(1 for m in self.backend._box(self.name).values() if m.visible_at <= before)

    def move_to(self, item: QueueItem, target: MessageQueue, reason: str) -> None:
        """Re-home a held message atomically (id, body and dequeue count kept, ``reason``
        recorded); a stale receipt is a no-op. A queue of another backend gets the body."""
        if not (isinstance(target, MemoryMessageQueue) and target.backend is self.backend):
            target.send(item.body)
            self.delete(item)
            return
        with self.backend.lock:
            msg = self._held(item)
            if msg is None:
                return
            del self.backend._box(self.name)[msg.id]
            msg.visible_at, msg.pop_receipt, msg.reason = (
                self.backend.clock(),
                None,
                reason[:2000],
            )
            self.backend._box(target.name)[msg.id] = msg
