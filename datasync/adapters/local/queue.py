"""Storage-queue semantics on SQLite: visibility timeout, dequeue count, pop receipts."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from ...exceptions import NotFound
from ...ports import Clock, MessageQueue, QueueItem
from .db import Database

__all__ = ["QUEUE_SCHEMA", "SqliteMessageQueue", "SqliteQueueBackend"]

QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL, visible_at REAL NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0, pop_receipt TEXT, inserted_at REAL NOT NULL,
    reason TEXT);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at);
"""


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _item(row: sqlite3.Row) -> QueueItem:
    return QueueItem(
        id=row["id"],
        body=row["body"],
        dequeue_count=row["dequeue_count"],
        pop_receipt=row["pop_receipt"] or "",
        inserted_at=_dt(row["inserted_at"]),
        next_visible_at=_dt(row["visible_at"]),
        reason=row["reason"],
    )


class SqliteMessageQueue:
    """One named queue (``flow-jobs``, ``flow-jobs-poison``) in the embedded database."""

    def __init__(self, db: Database, name: str, *, clock: Clock | None = None) -> None:
        self.db = db
        self.name = name
        self._clock = clock

    def _time(self) -> float:
        """Now in epoch seconds, from ``clock`` when one was given."""
        return self._clock().timestamp() if self._clock is not None else time.time()

    def send(self, text: str, *, visibility_delay: float = 0.0, reason: str | None = None) -> str:
        message_id = uuid.uuid4().hex
        now = self._time()
        with self.db.write() as con:
            con.execute(
                "INSERT INTO queue_messages (id, queue, body, visible_at, inserted_at, "
                "reason) VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, self.name, text, now + max(0.0, visibility_delay), now, reason),
            )
        return message_id

    def send_many(self, texts: Iterable[str]) -> None:
        """One transaction. Ids share a random prefix per batch (still 32 hex digits, still
        unique), so a big batch lands in a few index pages instead of thousands."""
        now = self._time()
        prefix = uuid.uuid4().hex[:24]
        rows = [(f"{prefix}{i:08x}", self.name, t, now, now) for i, t in enumerate(texts)]
        if rows:
            with self.db.write() as con:
                con.executemany(
                    "INSERT INTO queue_messages (id, queue, body, visible_at, "
                    "inserted_at) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

    def send_at(self, items: Iterable[tuple[str, datetime]]) -> None:
        """One transaction; each text hidden until its time by this queue's clock."""
        now = self._time()
        prefix = uuid.uuid4().hex[:24]
        name = self.name
        rows: list[tuple[str, str, str, float, float]] = []
        append = rows.append
        stamps: dict[datetime, float] = {}  # a big batch holds a few distinct times
        for i, (text, at) in enumerate(items):
            visible = stamps.get(at)
            if visible is None:
                visible = stamps[at] = max(now, at.timestamp())
            append((f"{prefix}{i:08x}", name, text, visible, now))
        if rows:
            with self.db.write() as con:
                con.executemany(
                    "INSERT INTO queue_messages (id, queue, body, visible_at, "
                    "inserted_at) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

    def receive(self, max_messages: int, visibility_timeout: float) -> list[QueueItem]:
        now = self._time()
        receipt = uuid.uuid4().hex
        with self.db.write() as con:
            rows = con.execute(
                "UPDATE queue_messages SET visible_at = ?, dequeue_count = dequeue_count + 1, "
                "pop_receipt = ? || id WHERE id IN (SELECT id FROM queue_messages "
                "WHERE queue = ? AND visible_at <= ? ORDER BY visible_at LIMIT ?) RETURNING *",
                (now + visibility_timeout, receipt, self.name, now, max_messages),
            ).fetchall()
        return sorted((_item(r) for r in rows), key=lambda i: i.inserted_at or 0)

    def delete(self, item: QueueItem) -> None:
        with self.db.write() as con:
            con.execute(
                "DELETE FROM queue_messages WHERE id = ? AND pop_receipt = ?",
                (item.id, item.pop_receipt),
            )

    def extend(self, item: QueueItem, visibility_timeout: float) -> QueueItem:
        with self.db.write() as con:
            cur = con.execute(
                "UPDATE queue_messages SET visible_at = ? WHERE id = ? AND pop_receipt = ?",
                (self._time() + visibility_timeout, item.id, item.pop_receipt),
            )
        if cur.rowcount != 1:
            raise NotFound(f"message {item.id} is no longer held by this receiver")
        return item

    def peek_all(self) -> list[QueueItem]:
        rows = (
            self.db.read()
            .execute(
                "SELECT * FROM queue_messages WHERE queue = ? ORDER BY inserted_at", (self.name,)
            )
            .fetchall()
        )
        return [_item(r) for r in rows]

    def remove(self, message_id: str) -> QueueItem:
        with self.db.write() as con:
            row = con.execute(
                "DELETE FROM queue_messages WHERE id = ? AND queue = ? RETURNING *",
                (message_id, self.name),
            ).fetchone()
        if row is None:
            raise NotFound(f"no message {message_id!r} in queue {self.name}")
        return _item(row)

    def count(self) -> int:
        row = (
            self.db.read()
            .execute("SELECT count(*) FROM queue_messages WHERE queue = ?", (self.name,))
            .fetchone()
        )
        return int(row[0])

    def count_due(self, before: datetime) -> int:
        """Messages visible at or before ``before`` (held ones come back at their lease end)."""
        row = (
            self.db.read()
            .execute(
                "SELECT count(*) FROM queue_messages WHERE queue = ? AND visible_at <= ?",
                (self.name, before.timestamp()),
            )
            .fetchone()
        )
        return int(row[0])

    def move_to(self, item: QueueItem, target: MessageQueue, reason: str) -> None:
        """Atomically re-home a message in this database (poisoning keeps its body, id and
        dequeue count, and records why); a queue elsewhere gets the body, then it is deleted."""
        if not (isinstance(target, SqliteMessageQueue) and target.db is self.db):
            target.send(item.body)
            self.delete(item)
            return
        with self.db.write() as con:
            con.execute(
                "UPDATE queue_messages SET queue = ?, visible_at = ?, reason = ?, "
                "pop_receipt = NULL WHERE id = ? AND pop_receipt = ?",
                (target.name, self._time(), reason[:2000], item.id, item.pop_receipt),
            )


class SqliteQueueBackend:
    def __init__(self, db: Database, *, clock: Clock | None = None) -> None:
        self.db = db
        self._clock = clock

    def queue(self, name: str) -> SqliteMessageQueue:
        return SqliteMessageQueue(self.db, name, clock=self._clock)
