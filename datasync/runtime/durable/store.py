"""Durable storage: every SQL statement of the embedded engine, over one SQLite file.

Tables: ``instances`` (one row per instance id: status, current execution, bookkeeping,
lease), ``history`` (the current execution's events, JSON), ``inbox`` (events not yet
delivered; a timer is an inbox row invisible until it fires) and ``activities`` (work items,
leased while they run). Every change is one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...adapters.local.db import Database
from .events import ACTIVE_STATUSES, execution_started
from .planner import EpisodePlan

__all__ = ["Claim", "Committed", "DurableStore", "Loaded", "StartRequest"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
    input TEXT, output TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    execution_id TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0,
    next_event_id INTEGER NOT NULL DEFAULT 0, actions_seen INTEGER NOT NULL DEFAULT 0,
    retry_state TEXT NOT NULL DEFAULT '{}', history_bytes INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0, resumed_by TEXT);
CREATE INDEX IF NOT EXISTS instances_status ON instances (status);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq));
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL, event TEXT NOT NULL, visible_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS inbox_visible ON inbox (visible_at);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id, id);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL, task_id INTEGER NOT NULL, name TEXT NOT NULL,
    input TEXT, lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS activities_lease ON activities (lease_until);
"""

_ACTIVE_SQL = "(" + ", ".join(f"'{s}'" for s in ACTIVE_STATUSES) + ")"


@dataclass(frozen=True, slots=True)
class Claim:
    """A lease just taken; ``taken_over`` when it was a dead runtime's (first time for this
    runtime and instance: ``on_resume`` fires once)."""

    instance_id: str
    taken_over: bool
    previous_owner: str | None = None


@dataclass(slots=True)
class Committed:
    """An episode applied. ``activities``: ids of the work items it scheduled that are
    leased to the committing runtime already (the first one at most: run it at once, without
    a claim); ``again``: the
    instance stays leased to it, another event is deliverable now (run the next episode)."""

    activities: list[int]
    again: bool = False


@dataclass(slots=True)
class StartRequest:
    """One ``start_new`` waiting for a group commit: ``error`` is set when it was refused."""

    name: str
    instance_id: str
    input_json: str | None
    error: BaseException | None = None
    done: bool = False  # written (or refused): its caller may go on


@dataclass(slots=True)
class Loaded:
    """An instance as an episode starts from it."""

    row: sqlite3.Row
    delivered: sqlite3.Row | None  # the first visible inbox event of this execution
    stale: list[int]  # inbox rows of earlier executions (dropped)

    @property
    def deliverable(self) -> bool:
        return self.delivered is not None and self.row["status"] in ACTIVE_STATUSES


class DurableStore:
    """The engine's tables in ``path`` (``Database``: a connection per thread, WAL)."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path, SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added since a ``durable.db`` was created (``CREATE TABLE IF NOT EXISTS``
        leaves an existing table as it is)."""
        with self.db.write() as con:
            columns = {r["name"] for r in con.execute("PRAGMA table_info(activities)")}
            if "deaths" not in columns:
                con.execute("ALTER TABLE activities ADD COLUMN deaths INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        self.db.close()

    # -- client side -------------------------------------------------------------------
    def start(
        self,
        name: str,
        instance_id: str,
        input_json: str | None,
        now: float,
        decide: Callable[[str | None], str],
    ) -> None:
        """Create (or replace, as ``decide`` says from the existing status) an instance
        and its ExecutionStarted, in one transaction; ``decide`` raising leaves no trace."""
        request = StartRequest(name, instance_id, input_json)
        self.start_many([request], now, decide)
        if request.error is not None:
            raise request.error

    def start_many(
        self,
        requests: list[StartRequest],
        now: float,
        decide: Callable[[str | None], str],
        lease: tuple[str, float] | None = None,
    ) -> None:
        """:meth:`start` for each request, in order, in one transaction (a group commit:
        one write for every start that arrived meanwhile). A request ``decide`` refuses
        gets its ``error`` and leaves no trace; the others are applied. ``lease``
        (owner, until): the new instances are leased to that runtime already (its engine
        runs their first episode without a claim)."""
        owner, until = lease if lease is not None else (None, 0.0)
        with self.db.write() as con:
            for request in requests:
                instance_id = request.instance_id
                row = con.execute(
                    "SELECT status FROM instances WHERE instance_id = ?", (instance_id,)
                ).fetchone()
                try:
                    replace = decide(None if row is None else row["status"]) == "replace"
                except Exception as exc:  # noqa: BLE001 - this request is refused
                    request.error = exc
                    continue
                if replace:
                    self._purge(con, instance_id)
                execution = uuid.uuid4().hex
                con.execute(
                    "INSERT INTO instances (instance_id, name, status, input, created_at, "
                    "updated_at, execution_id, lease_owner, lease_until) "
                    "VALUES (?, ?, 'Pending', ?, ?, ?, ?, ?, ?)",
                    (
                        instance_id,
                        request.name,
                        request.input_json,
                        now,
                        now,
                        execution,
                        owner,
                        until,
                    ),
                )
                started = execution_started(
                    request.name, request.input_json, now, instance_id, execution
                )
                self._post(con, instance_id, execution, started, now)

    def instance(self, instance_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = (
            self.db.read()
            .execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,))
            .fetchone()
        )
        return row

    def terminate(self, instance_id: str, output_json: str, now: float) -> bool:
        with self.db.write() as con:
            cur = con.execute(
                f"UPDATE instances SET status = 'Terminated', output = ?, "
                f"updated_at = ? WHERE instance_id = ? AND status IN "
                f"{_ACTIVE_SQL}",
                (output_json, now, instance_id),
            )
            if cur.rowcount == 1:
                con.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
                con.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))
        return cur.rowcount == 1

    # -- queries -----------------------------------------------------------------------
    def active_count(self) -> int:
        count: int = (
            self.db.read()
            .execute(f"SELECT count(*) FROM instances WHERE status IN {_ACTIVE_SQL}")
            .fetchone()[0]
        )
        return count

    def history_size(self, instance_id: str) -> tuple[int, int]:
        row = (
            self.db.read()
            .execute(
                "SELECT count(*), coalesce(sum(length(event)), 0) FROM history "
                "WHERE instance_id = ?",
                (instance_id,),
            )
            .fetchone()
        )
        return row[0], row[1]

    def history_rows(self, instance_id: str) -> list[str]:
        return [
            r[0]
            for r in self.db.read().execute(
                "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)
            )
        ]

    def next_visible_at(self) -> float | None:
        at: float | None = self.db.read().execute("SELECT min(visible_at) FROM inbox").fetchone()[0]
        return at

    def ended_badly_since(self, since: float) -> list[str]:
        return [
            r[0]
            for r in self.db.read().execute(
                "SELECT instance_id FROM instances WHERE status IN ('Failed', 'Terminated') "
                "AND updated_at >= ?",
                (since,),
            )
        ]

    def statuses(self, instance_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        con = self.db.read()
        for i in range(0, len(instance_ids), 500):
            chunk = instance_ids[i : i + 500]
            for r in con.execute(
                f"SELECT instance_id, status FROM instances WHERE instance_id "
                f"IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[r[0]] = r[1]
        return out

    def instance_ids(self) -> list[str]:
        return [
            r[0]
            for r in self.db.read().execute(
                "SELECT instance_id FROM instances ORDER BY instance_id"
            )
        ]

    # -- leases ------------------------------------------------------------------------
    def renew(self, owner: str, held: list[tuple[str, str]], until: float) -> None:
        with self.db.write() as con:
            for kind, key in held:
                table, column = (
                    ("instances", "instance_id") if kind == "instance" else ("activities", "id")
                )
                con.execute(
                    f"UPDATE {table} SET lease_until = ? WHERE {column} = ? AND lease_owner = ?",
                    (until, key, owner),
                )

    def release_all(self, owner: str) -> None:
        with self.db.write() as con:
            for table in ("instances", "activities"):
                con.execute(
                    f"UPDATE {table} SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = ?",
                    (owner,),
                )

    def release(self, instance_id: str, owner: str) -> None:
        with self.db.write() as con:
            con.execute(
                "UPDATE instances SET lease_owner = NULL, lease_until = 0 "
                "WHERE instance_id = ? AND lease_owner = ?",
                (instance_id, owner),
            )

    @staticmethod
    def _take_over(
        con: sqlite3.Connection, instance_id: str, previous: str | None, owner: str
    ) -> bool:
        """Record that ``owner`` took ``instance_id`` over from a dead runtime; True the
        first time for this owner."""
        if previous is None or previous == owner:
            return False
        cur = con.execute(
            "UPDATE instances SET resumed_by = ? WHERE instance_id = ? AND resumed_by IS NOT ?",
            (owner, instance_id, owner),
        )
        return cur.rowcount == 1

    # -- orchestrations ----------------------------------------------------------------
    def any_deliverable(self, now: float) -> bool:
        """A cheap look (no write lock) for an unleased instance with a visible event."""
        return (
            self.db.read()
            .execute(
                "SELECT 1 FROM inbox b JOIN instances i ON i.instance_id = b.instance_id "
                "WHERE b.visible_at <= ? AND i.lease_until < ? LIMIT 1",
                (now, now),
            )
            .fetchone()
            is not None
        )

    def claim_instances(self, owner: str, now: float, until: float, batch: int) -> list[Claim]:
        """Lease up to ``batch`` unleased instances with a visible event, oldest first."""
        with self.db.write() as con:
            rows = con.execute(
                "SELECT i.instance_id, i.lease_owner, min(b.id) AS first FROM inbox b "
                "JOIN instances i ON i.instance_id = b.instance_id WHERE b.visible_at <= ? "
                "AND i.lease_until < ? GROUP BY i.instance_id ORDER BY first LIMIT ?",
                (now, now, batch),
            ).fetchall()
            con.executemany(
                "UPDATE instances SET lease_owner = ?, lease_until = ? WHERE instance_id = ?",
                [(owner, until, r["instance_id"]) for r in rows],
            )
            return [
                Claim(
                    r["instance_id"],
                    self._take_over(con, r["instance_id"], r["lease_owner"], owner),
                    r["lease_owner"],
                )
                for r in rows
            ]

    def load(self, instance_id: str, now: float) -> Loaded:
        con = self.db.read()
        row = con.execute(
            "SELECT * FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        stale: list[int] = []
        delivered = None
        for event in con.execute(
            "SELECT id, execution_id, event, visible_at FROM inbox "
            "WHERE instance_id = ? ORDER BY id",
            (instance_id,),
        ):
            if event["execution_id"] != row["execution_id"]:
                stale.append(event["id"])
            elif delivered is None and event["visible_at"] <= now:
                delivered = event
        return Loaded(row, delivered, stale)

    def drop_undeliverable(self, loaded: Loaded, owner: str) -> None:
        """Nothing to do: drop stale events (and the event of a finished instance), let go."""
        ids = list(loaded.stale)
        if loaded.delivered is not None and loaded.row["status"] not in ACTIVE_STATUSES:
            ids.append(loaded.delivered["id"])
        with self.db.write() as con:
            con.executemany("DELETE FROM inbox WHERE id = ?", [(i,) for i in ids])
            con.execute(
                "UPDATE instances SET lease_owner = NULL, lease_until = 0 "
                "WHERE instance_id = ? AND lease_owner = ?",
                (loaded.row["instance_id"], owner),
            )

    def commit_episode(
        self,
        loaded: Loaded,
        owner: str,
        plan: EpisodePlan,
        rows: list[str],
        seq0: int,
        now: float,
        until: float | None = None,
        lease_activities: bool = True,
    ) -> Committed | None:
        """Apply ``plan`` (``rows``: the serialized events it appends after history event
        ``seq0 - 1``) and let the lease go. None, with nothing changed, if this runtime lost
        the lease meanwhile (or the instance was terminated).

        With ``until``, the instance stays leased to ``owner`` until then when another
        event of it is deliverable already, and (``lease_activities``) so are the work items
        scheduled (see :class:`Committed`): the caller runs them with no claim transaction."""
        instance_id = loaded.row["instance_id"]
        execution = loaded.row["execution_id"]
        with self.db.write() as con:
            lease = con.execute(
                "SELECT lease_owner, status FROM instances WHERE instance_id = ?", (instance_id,)
            ).fetchone()
            if lease is None or lease[0] != owner:
                return None
            if lease[1] not in ACTIVE_STATUSES:  # terminated while the episode replayed:
                con.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
                con.execute(  # it stays terminated, nothing is applied
                    "UPDATE instances SET lease_owner = NULL, lease_until = 0 "
                    "WHERE instance_id = ?",
                    (instance_id,),
                )
                return None
            assert loaded.delivered is not None
            con.executemany(
                "DELETE FROM inbox WHERE id = ?",
                [(loaded.delivered["id"],)] + [(i,) for i in loaded.stale],
            )
            if plan.status in ("Completed", "Failed"):
                self._finish(con, instance_id, plan.status, plan.output, now)
                return Committed([])
            if plan.status == "ContinuedAsNew":
                self._continue_as_new(con, loaded.row, plan.continue_input, now)
                return Committed([])
            return self._append(
                con, instance_id, execution, plan, rows, seq0, now, owner, until, lease_activities
            )

    def step_state(self, instance_id: str, now: float) -> tuple[sqlite3.Row | None, bool]:
        """A look without the write lock: the instance row, and whether an event of its
        current execution is deliverable now (then a direct step is not possible)."""
        row = (
            self.db.read()
            .execute(  # one statement, one snapshot: the row and its inbox together
                "SELECT i.*, EXISTS (SELECT 1 FROM inbox b WHERE b.instance_id = i.instance_id "
                "AND b.execution_id = i.execution_id AND b.visible_at <= ?) AS waiting__ "
                "FROM instances i WHERE i.instance_id = ?",
                (now, instance_id),
            )
            .fetchone()
        )
        if row is None:
            return None, False
        return row, bool(row["waiting__"])

    def commit_step(
        self,
        activity: sqlite3.Row,
        owner: str,
        result: dict[str, Any],
        seen: sqlite3.Row,
        plan: EpisodePlan,
        rows: list[str],
        seq0: int,
        now: float,
        until: float,
    ) -> Committed | bool | None:
        """A work item's result and the episode that delivers it, in one transaction: the
        episode was replayed from ``seen`` (the instance row read before, unleased, nothing
        deliverable) with ``result`` as its event, which never enters the inbox.

        Returns :class:`Committed` when applied (the work items scheduled are leased to
        ``owner``, see :meth:`commit_episode`). When the instance changed since ``seen``
        (another episode, a terminate, a new execution, an event that arrived), the
        episode is not applied and the result is posted as :meth:`complete_activity`
        posts it: True/False/None as that method says."""
        instance_id = activity["instance_id"]
        execution = activity["execution_id"]
        with self.db.write() as con:
            cur = con.execute(
                "DELETE FROM activities WHERE id = ? AND lease_owner = ?", (activity["id"], owner)
            )
            if cur.rowcount != 1:
                return None
            now_row = con.execute(
                "SELECT status, execution_id, history_bytes, lease_owner, lease_until "
                "FROM instances WHERE instance_id = ?",
                (instance_id,),
            ).fetchone()
            unchanged = (
                now_row is not None
                and now_row["status"] in ACTIVE_STATUSES
                and now_row["execution_id"] == execution == seen["execution_id"]
                and now_row["history_bytes"] == seen["history_bytes"]
                and now_row["lease_owner"] in (None, owner)
                and now_row["lease_until"] < now
                and con.execute(
                    "SELECT 1 FROM inbox WHERE instance_id = ? AND execution_id = ? "
                    "AND visible_at <= ? LIMIT 1",
                    (instance_id, execution, now),
                ).fetchone()
                is None
            )
            if not unchanged:
                self._post(con, instance_id, execution, result, now)
                cur = con.execute(
                    "UPDATE instances SET lease_owner = ?, lease_until = ? WHERE instance_id = ? "
                    "AND execution_id = ? AND (lease_owner IS NULL OR lease_owner = ?) "
                    f"AND lease_until < ? AND status IN {_ACTIVE_SQL}",
                    (owner, until, instance_id, execution, owner, now),
                )
                return cur.rowcount == 1
            if plan.status in ("Completed", "Failed"):
                self._finish(con, instance_id, plan.status, plan.output, now)
                return Committed([])
            if plan.status == "ContinuedAsNew":
                self._continue_as_new(con, seen, plan.continue_input, now)
                return Committed([])
            return self._append(
                con,
                instance_id,
                execution,
                plan,
                rows,
                seq0,
                now,
                owner,
                until,
                True,
                inbox_empty=True,  # looked at above, in this transaction
            )

    def _append(
        self,
        con: sqlite3.Connection,
        instance_id: str,
        execution: str,
        plan: EpisodePlan,
        rows: list[str],
        seq0: int,
        now: float,
        owner: str,
        until: float | None,
        lease_activities: bool,
        *,
        inbox_empty: bool = False,
    ) -> Committed:
        """Append the episode's events, schedule its work items and timers, update the
        instance. ``inbox_empty``: the caller saw no deliverable event in this transaction,
        so only a timer this episode posted could make one (no look needed otherwise)."""
        con.executemany(
            "INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
            [(instance_id, seq0 + i, r) for i, r in enumerate(rows)],
        )
        ids: list[int] = []
        for task_id, name, payload in plan.activities:
            # only the first: the caller starts it at once; the others are anyone's to claim
            # (a work item leased but never started would count a death if we died)
            leased = until is not None and lease_activities and not ids
            cur = con.execute(
                "INSERT INTO activities (instance_id, execution_id, task_id, name, input, "
                "lease_owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    instance_id,
                    execution,
                    task_id,
                    name,
                    payload,
                    owner if leased else None,
                    until if leased else 0,
                ),
            )
            if leased and cur.lastrowid is not None:
                ids.append(cur.lastrowid)
        for fired, fire_at in plan.timers:
            self._post(con, instance_id, execution, fired, fire_at)
        again = (
            until is not None
            and (not inbox_empty or bool(plan.timers))
            and (
                con.execute(
                    "SELECT 1 FROM inbox WHERE instance_id = ? AND execution_id = ? "
                    "AND visible_at <= ? LIMIT 1",
                    (instance_id, execution, now),
                ).fetchone()
                is not None
            )
        )
        con.execute(
            "UPDATE instances SET status = 'Running', next_event_id = ?, "
            "actions_seen = ?, retry_state = ?, updated_at = ?, "
            "history_bytes = history_bytes + ?, lease_owner = ?, lease_until = ? "
            "WHERE instance_id = ?",
            (
                plan.next_event_id,
                plan.actions_seen,
                json.dumps(plan.retry),
                now,
                sum(len(r) for r in rows),
                owner if again else None,
                until if again else 0,
                instance_id,
            ),
        )
        return Committed(ids, again)

    def _continue_as_new(
        self, con: sqlite3.Connection, row: sqlite3.Row, input_json: str | None, now: float
    ) -> None:
        instance_id = row["instance_id"]
        self._purge(con, instance_id, keep_instance=True)
        execution = uuid.uuid4().hex
        con.execute(
            "UPDATE instances SET status = 'Running', input = ?, execution_id = ?, "
            "generation = generation + 1, next_event_id = 0, actions_seen = 0, "
            "retry_state = '{}', history_bytes = 0, updated_at = ?, "
            "lease_owner = NULL, lease_until = 0 WHERE instance_id = ?",
            (input_json, execution, now, instance_id),
        )
        self._post(
            con, instance_id, execution, execution_started(row["name"], input_json, now), now
        )

    def _finish(
        self, con: sqlite3.Connection, instance_id: str, status: str, output: str | None, now: float
    ) -> None:
        con.execute(
            "UPDATE instances SET status = ?, output = ?, updated_at = ?, "
            "lease_owner = NULL, lease_until = 0 WHERE instance_id = ?",
            (status, output, now, instance_id),
        )
        self._purge(con, instance_id, keep_instance=True)

    @staticmethod
    def _purge(con: sqlite3.Connection, instance_id: str, keep_instance: bool = False) -> None:
        for table in ("history", "inbox", "activities"):
            con.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))
        if not keep_instance:
            con.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))

    @staticmethod
    def _post(
        con: sqlite3.Connection,
        instance_id: str,
        execution: str,
        event: dict[str, Any],
        visible_at: float,
    ) -> None:
        con.execute(
            "INSERT INTO inbox (instance_id, execution_id, event, visible_at) VALUES (?, ?, ?, ?)",
            (instance_id, execution, json.dumps(event), visible_at),
        )

    # -- activities --------------------------------------------------------------------
    def any_due_activity(self, now: float) -> bool:
        return (
            self.db.read()
            .execute("SELECT 1 FROM activities WHERE lease_until < ? LIMIT 1", (now,))
            .fetchone()
            is not None
        )

    def claim_activity(
        self, owner: str, now: float, until: float
    ) -> tuple[sqlite3.Row, Claim] | None:
        """Lease the oldest unleased work item: ``(row, claim)``, None if none.

        A work item whose lease expired while still owned (not handed back: its runtime
        died, or stalled past the lease, while running it) counts one more death; the
        returned row's ``deaths`` includes it.

        While a work item that has died before is leased again, no other work item of its
        instance is claimed: taken-over items of an instance run one at a time, oldest
        first. So a step that kills its process (pull N+1 of pipelined pages) cannot take
        the step running beside it (push N, scheduled first) down with it again and again:
        push N finishes, then pull N+1 dies alone until its deaths fail the run."""
        with self.db.write() as con:
            found = con.execute(
                "SELECT a.id, a.lease_owner FROM activities a WHERE a.lease_until < ? "
                "AND NOT EXISTS (SELECT 1 FROM activities b WHERE b.instance_id = a.instance_id "
                "AND b.id != a.id AND b.deaths > 0 AND b.lease_until >= ?) "
                "ORDER BY a.id LIMIT 1",
                (now, now),
            ).fetchone()
            if found is None:
                return None
            previous = found["lease_owner"]
            con.execute(
                "UPDATE activities SET lease_owner = ?, lease_until = ?, "
                "deaths = deaths + (lease_owner IS NOT NULL) WHERE id = ?",
                (owner, until, found["id"]),
            )
            row = con.execute("SELECT * FROM activities WHERE id = ?", (found["id"],)).fetchone()
            return row, Claim(
                row["instance_id"],
                self._take_over(con, row["instance_id"], previous, owner),
                previous,
            )

    def complete_activity(
        self,
        row: sqlite3.Row,
        owner: str,
        result: dict[str, Any],
        now: float,
        until: float | None = None,
    ) -> bool | None:
        """Replace the work item by its result event; None if it was taken over.

        With ``until``, the instance is leased to ``owner`` in the same transaction when no
        runtime holds it (True): the caller runs the episode that delivers the result on
        the thread that produced it, with no claim. False: posted, the instance is not
        ours (another episode of it runs, or another runtime's lease is still to expire)."""
        with self.db.write() as con:
            cur = con.execute(
                "DELETE FROM activities WHERE id = ? AND lease_owner = ?", (row["id"], owner)
            )
            if cur.rowcount != 1:
                return None
            self._post(con, row["instance_id"], row["execution_id"], result, now)
            if until is None:
                return False
            cur = con.execute(
                "UPDATE instances SET lease_owner = ?, lease_until = ? WHERE instance_id = ? "
                "AND execution_id = ? AND (lease_owner IS NULL OR lease_owner = ?) "
                f"AND lease_until < ? AND status IN {_ACTIVE_SQL}",
                (owner, until, row["instance_id"], row["execution_id"], owner, now),
            )
            return cur.rowcount == 1

    def leased_activity(self, activity_id: int, owner: str) -> sqlite3.Row | None:
        """A work item leased to ``owner`` already (scheduled by its own episode)."""
        row: sqlite3.Row | None = (
            self.db.read()
            .execute(
                "SELECT * FROM activities WHERE id = ? AND lease_owner = ?", (activity_id, owner)
            )
            .fetchone()
        )
        return row
