"""Run history, checkpoints (cursor + ``ctx.state``) and staged pages in SQLite.

The starter's dedupe is :meth:`SqliteRunStore.create`: one ``INSERT … ON CONFLICT DO
NOTHING`` on the instance id (the primary key), so of any number of threads or processes
on one ``DATASYNC_HOME`` exactly one inserts. :meth:`~SqliteRunStore.take_over_pending` is
one conditional ``UPDATE`` on the claim time, serialised by SQLite's write lock.

Fencing (:func:`~datasync.ports.fence_checkpoint`, :func:`~datasync.ports.fence_finish`):
each checkpoint row names the run that owns it (``run_id``) and its page (``page``);
``begin``, ``checkpoint`` and ``finish`` read and decide inside one ``BEGIN IMMEDIATE``
transaction, so no other writer (thread or process) can come between the check and the
write.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ...exceptions import NotFound, PermanentError
from ...models import RunRecord
from ...names import format_utc, precise_utcnow, utcnow
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
    fold,
    fold_candidate,
    masked,
    parse_token,
    run_duration,
    seconds_since,
    short_reason,
)
from .db import Database
from .pages import decode_records, encode_records

__all__ = ["RUN_SCHEMA", "SqlitePageStore", "SqliteRunStore"]

RUN_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    instance_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, flow_name TEXT NOT NULL,
    scheduled_for TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    pages INTEGER NOT NULL DEFAULT 0, records_in INTEGER NOT NULL DEFAULT 0,
    records_out INTEGER NOT NULL DEFAULT 0, resumes INTEGER NOT NULL DEFAULT 0, error TEXT,
    created_at TEXT NOT NULL, claimed_at TEXT, lateness_seconds REAL, reason TEXT,
    rerun_of TEXT, trace_id TEXT, duration_seconds REAL);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (tenant_id, flow_name, status);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_by_scheduled ON runs (scheduled_for, instance_id);
CREATE INDEX IF NOT EXISTS runs_by_tenant_scheduled
    ON runs (tenant_id, flow_name, scheduled_for, instance_id);
CREATE INDEX IF NOT EXISTS runs_by_status_scheduled ON runs (status, scheduled_for, instance_id);
CREATE TABLE IF NOT EXISTS run_pages (
    instance_id TEXT NOT NULL, page INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (instance_id, page)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_summaries (instance_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, tenant_id TEXT, flow_name TEXT,
    instance_id TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant_id, flow_name, id);
CREATE INDEX IF NOT EXISTS audit_by_instance ON audit (instance_id, id);
CREATE TABLE IF NOT EXISTS checkpoints (
    tenant_id TEXT NOT NULL, flow_name TEXT NOT NULL, cursor TEXT, state TEXT NOT NULL,
    updated_at TEXT NOT NULL, run_id TEXT, page INTEGER, PRIMARY KEY (tenant_id, flow_name));
CREATE TABLE IF NOT EXISTS pages (key TEXT PRIMARY KEY, records TEXT NOT NULL);
"""

_COLUMNS = (
    "instance_id",
    "tenant_id",
    "flow_name",
    "scheduled_for",
    "status",
    "started_at",
    "finished_at",
    "pages",
    "records_in",
    "records_out",
    "resumes",
    "error",
    "lateness_seconds",
    "reason",
    "rerun_of",
    "trace_id",
    "duration_seconds",
)
ACTIVE = ("Pending", "Running")


_ADDED = (
    ("runs", "claimed_at", "TEXT"),
    ("checkpoints", "run_id", "TEXT"),
    ("checkpoints", "page", "INTEGER"),
    ("runs", "lateness_seconds", "REAL"),
    ("runs", "reason", "TEXT"),
    ("runs", "rerun_of", "TEXT"),
    ("runs", "trace_id", "TEXT"),
    ("runs", "duration_seconds", "REAL"),
)


def _migrate(db: Database) -> None:
    """Add the columns a database made before them lacks (idempotent): ``runs.claimed_at``,
    ``checkpoints.run_id`` and ``checkpoints.page`` (an old checkpoint has no owner: the
    next ``begin`` or checkpoint claims it), and the run detail columns of ``runs``
    (``lateness_seconds``, ``reason``, ``rerun_of``, ``trace_id``, ``duration_seconds``),
    then the indexes over them."""
    for table, column, kind in _ADDED:
        columns = {row[1] for row in db.read().execute(f"PRAGMA table_info({table})")}
        if column in columns:
            continue
        try:
            with db.write() as con:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(**{c: row[c] for c in _COLUMNS})


class SqliteRunStore:
    """The embedded :class:`~datasync.ports.RunStore`. ``clock`` stamps every time
    (default :func:`datasync.names.utcnow`)."""

    def __init__(self, db: Database, *, clock: Clock | None = None) -> None:
        self.db = db
        self._clock = clock
        _migrate(db)

    def _now(self) -> str:
        return format_utc((self._clock or utcnow)())

    def _clock_now(self) -> datetime:
        return (self._clock or precise_utcnow)()

    def _insert(
        self,
        con: sqlite3.Connection,
        run: RunRecord,
        *,
        upsert: bool = False,
        claimed: bool = False,
    ) -> int:
        now = self._now()
        sql = (
            f"INSERT INTO runs ({', '.join(_COLUMNS)}, created_at, claimed_at) "
            f"VALUES ({', '.join('?' * (len(_COLUMNS) + 2))}) ON CONFLICT(instance_id) "
        )
        sql += (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
            if upsert
            else "DO NOTHING"
        )
        cur = con.execute(
            sql, (*(getattr(run, c) for c in _COLUMNS), now, now if claimed else None)
        )
        return cur.rowcount

    # -- the dedupe ----------------------------------------------------------------------
    def create(self, run: RunRecord) -> bool:
        with self.db.write() as con:
            return self._insert(con, run, claimed=True) == 1

    def admit(self, run: RunRecord, *, exclusive_flow: bool, max_active: int | None) -> Admitted:
        """Existence, the tenant's active runs and the insert in one ``BEGIN IMMEDIATE``
        transaction: SQLite's write lock keeps every other writer (thread or process) out
        between the check and the insert."""
        with self.db.write() as con:
            if con.execute(
                "SELECT 1 FROM runs WHERE instance_id = ?", (run.instance_id,)
            ).fetchone():
                return EXISTS
            if exclusive_flow or max_active is not None:
                active = [
                    _run(r)
                    for r in con.execute(
                        "SELECT * FROM runs WHERE tenant_id = ? "
                        "AND status IN ('Pending', 'Running')",
                        (run.tenant_id,),
                    ).fetchall()
                ]
                verdict = admission_check(
                    run, active, exclusive_flow=exclusive_flow, max_active=max_active
                )
                if verdict is not None:
                    return verdict
            return CREATED if self._insert(con, run, claimed=True) == 1 else EXISTS

    def take_over_pending(self, instance_id: str, *, older_than: datetime) -> bool:
        now = (self._clock or utcnow)()
        with self.db.write() as con:
            cur = con.execute(
                "UPDATE runs SET claimed_at = ? WHERE instance_id = ? AND status = 'Pending' "
                "AND COALESCE(claimed_at, created_at) < ?",
                (format_utc(now), instance_id, format_utc(min(older_than, now))),
            )
            return cur.rowcount == 1

    # -- checkpoints and the run lifecycle -----------------------------------------------
    def load_checkpoint(self, tenant: str, flow: str) -> Checkpoint:
        row = (
            self.db.read()
            .execute(
                "SELECT cursor, state FROM checkpoints WHERE tenant_id = ? AND flow_name = ?",
                (tenant, flow),
            )
            .fetchone()
        )
        if row is None:
            return Checkpoint()
        return Checkpoint(cursor=json.loads(row["cursor"]), state=json.loads(row["state"]))

    def reset_checkpoint(self, tenant: str, flow: str, checkpoint: Checkpoint | None) -> None:
        """Delete the row, or replace cursor and state with ``run_id`` and ``page`` NULL."""
        with self.db.write() as con:
            if checkpoint is None:
                con.execute(
                    "DELETE FROM checkpoints WHERE tenant_id = ? AND flow_name = ?", (tenant, flow)
                )
                return
            con.execute(
                "INSERT INTO checkpoints (tenant_id, flow_name, cursor, state, updated_at, "
                "run_id, page) VALUES (?, ?, ?, ?, ?, NULL, NULL) ON CONFLICT DO UPDATE SET "
                "cursor = excluded.cursor, state = excluded.state, "
                "updated_at = excluded.updated_at, run_id = NULL, page = NULL",
                (
                    tenant,
                    flow,
                    json.dumps(checkpoint.cursor),
                    json.dumps(checkpoint.state),
                    self._now(),
                ),
            )

    def begin(self, run: RunRecord) -> RunRecord:
        """Mark the run Running (insert it, Pending → Running, or count a resume) and claim
        its checkpoint, in one transaction; the record returned is the one written (built
        from the row read at the start and the change made: no read back)."""
        now = self._now()
        with self.db.write() as con:
            row = con.execute(
                "SELECT * FROM runs WHERE instance_id = ?", (run.instance_id,)
            ).fetchone()
            if row is not None and row["status"] in DONE:
                raise PermanentError(
                    f"run {run.instance_id} is {row['status']}; it does not run again"
                )
            resume = row is not None and row["started_at"] is not None
            if row is None:
                stored = replace(
                    run,
                    status="Running",
                    started_at=now,
                    finished_at=None,
                    pages=0,
                    records_in=0,
                    records_out=0,
                    resumes=0,
                    error=None,
                    lateness_seconds=seconds_since(run.scheduled_for, self._clock_now()),
                )
                self._insert(con, stored)
            elif not resume:  # Pending → Running
                lateness = seconds_since(row["scheduled_for"], self._clock_now())
                con.execute(
                    "UPDATE runs SET status = 'Running', started_at = ?, lateness_seconds = ? "
                    "WHERE instance_id = ?",
                    (now, lateness, run.instance_id),
                )
                stored = replace(
                    _run(row), status="Running", started_at=now, lateness_seconds=lateness
                )
            else:  # started before (its begin re-ran, or a failed run started again)
                con.execute(
                    "UPDATE runs SET status = 'Running', finished_at = NULL, "
                    "error = NULL, resumes = resumes + 1 WHERE instance_id = ?",
                    (run.instance_id,),
                )
                old = _run(row)
                stored = replace(
                    old, status="Running", finished_at=None, error=None, resumes=old.resumes + 1
                )
            self._claim(con, stored, resume, now)
            return stored

    def _claim(self, con: sqlite3.Connection, run: RunRecord, resume: bool, now: str) -> None:
        """Make ``run`` the owner of its tenant+flow checkpoint (see ``RunStore.begin``)."""
        saved = con.execute(
            "SELECT run_id FROM checkpoints WHERE tenant_id = ? AND flow_name = ?",
            (run.tenant_id, run.flow_name),
        ).fetchone()
        if saved is None:
            con.execute(
                "INSERT INTO checkpoints (tenant_id, flow_name, cursor, state, updated_at, "
                "run_id, page) VALUES (?, ?, 'null', '{}', ?, ?, ?)",
                (run.tenant_id, run.flow_name, now, run.instance_id, run.pages),
            )
            return
        owner: str | None = saved["run_id"]
        active = (
            owner is not None
            and owner != run.instance_id
            and con.execute(
                "SELECT 1 FROM runs WHERE instance_id = ? AND status IN ('Pending', 'Running')",
                (owner,),
            ).fetchone()
            is not None
        )
        if owner == run.instance_id or not claims_checkpoint(
            owner, run.instance_id, resume=resume, owner_active=active
        ):
            return
        con.execute(
            "UPDATE checkpoints SET run_id = ?, page = ? WHERE tenant_id = ? AND flow_name = ?",
            (run.instance_id, run.pages, run.tenant_id, run.flow_name),
        )

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
        now = self._now()
        with self.db.write() as con:
            if detail is not None:
                self._write_step(con, detail, keep_pages)
            saved = con.execute(
                "SELECT run_id, page FROM checkpoints WHERE tenant_id = ? AND flow_name = ?",
                (tenant, flow),
            ).fetchone()
            result = fence_checkpoint(
                saved["run_id"] if saved else None,
                saved["page"] if saved else None,
                instance_id,
                pages,
            )
            if result.outcome == "applied":
                con.execute(
                    "INSERT INTO checkpoints (tenant_id, flow_name, cursor, state, updated_at, "
                    "run_id, page) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "cursor = excluded.cursor, state = excluded.state, "
                    "updated_at = excluded.updated_at, run_id = excluded.run_id, "
                    "page = excluded.page",
                    (
                        tenant,
                        flow,
                        json.dumps(cp.cursor),
                        json.dumps(cp.state),
                        now,
                        instance_id,
                        pages,
                    ),
                )
            con.execute(  # the run's own counters: forward only
                "UPDATE runs SET pages = ?, records_in = ?, records_out = ? "
                "WHERE instance_id = ? AND pages < ?",
                (pages, records_in, records_out, instance_id, pages),
            )
            return result

    def finish(
        self, instance_id: str, status: str, error: str | None = None, *, reason: str | None = None
    ) -> FencedWrite:
        clock_now = self._clock_now()
        with self.db.write() as con:
            row = con.execute("SELECT * FROM runs WHERE instance_id = ?", (instance_id,)).fetchone()
            result = fence_finish(row["status"] if row else None, status)
            if row is not None and result.outcome == "applied":
                con.execute(
                    "UPDATE runs SET status = ?, error = ?, finished_at = ?, reason = ?, "
                    "duration_seconds = ? WHERE instance_id = ?",
                    (
                        status,
                        masked(error, MAX_ERROR),
                        format_utc(clock_now),
                        short_reason(reason or error),
                        run_duration(_run(row), clock_now),
                        instance_id,
                    ),
                )
            return result

    def mark_resumed(self, instance_id: str) -> None:
        with self.db.write() as con:
            con.execute(
                "UPDATE runs SET resumes = resumes + 1 WHERE instance_id = ?", (instance_id,)
            )

    def record(self, run: RunRecord) -> None:
        """Upsert ``run``, its ``error`` and ``reason`` masked."""
        run = replace(run, error=masked(run.error, MAX_ERROR), reason=masked(run.reason))
        with self.db.write() as con:
            self._insert(con, run, upsert=True)

    # -- reads ---------------------------------------------------------------------------
    def get(self, instance_id: str) -> RunRecord:
        row = (
            self.db.read()
            .execute("SELECT * FROM runs WHERE instance_id = ?", (instance_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no run {instance_id!r}")
        return _run(row)

    def recent(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        where, args = [], []
        for column, value in (("tenant_id", tenant), ("flow_name", flow), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, instance_id DESC LIMIT ?"
        return [_run(r) for r in self.db.read().execute(sql, (*args, max(limit, 0))).fetchall()]

    def active(self, tenant: str, flow: str | None = None) -> list[RunRecord]:
        sql = "SELECT * FROM runs WHERE tenant_id = ? AND status IN ('Pending', 'Running')"
        args: list[Any] = [tenant]
        if flow is not None:
            sql += " AND flow_name = ?"
            args.append(flow)
        return [_run(r) for r in self.db.read().execute(sql, args).fetchall()]

    # -- run detail ----------------------------------------------------------------------
    def write_step(self, write: StepWrite, *, keep_pages: int) -> None:
        with self.db.write() as con:
            self._write_step(con, write, keep_pages)

    @staticmethod
    def _write_step(con: sqlite3.Connection, w: StepWrite, keep_pages: int) -> None:
        row = con.execute(
            "SELECT doc FROM run_pages WHERE instance_id = ? AND page = ?", (w.instance_id, w.page)
        ).fetchone()
        doc = apply_step(json.loads(row[0]) if row else None, w)
        con.execute(
            "INSERT OR REPLACE INTO run_pages (instance_id, page, doc) VALUES (?, ?, ?)",
            (w.instance_id, w.page, json.dumps(doc, separators=(",", ":"))),
        )
        q = fold_candidate(w.page, keep_pages) if w.step == "push" else None
        if q is None:
            return
        old = con.execute(
            "DELETE FROM run_pages WHERE instance_id = ? AND page = ? RETURNING doc",
            (w.instance_id, q),
        ).fetchone()
        if old is None:
            return
        saved = con.execute(
            "SELECT doc FROM run_summaries WHERE instance_id = ?", (w.instance_id,)
        ).fetchone()
        summary = fold(json.loads(saved[0]) if saved else None, json.loads(old[0]))
        con.execute(
            "INSERT OR REPLACE INTO run_summaries (instance_id, doc) VALUES (?, ?)",
            (w.instance_id, json.dumps(summary, separators=(",", ":"))),
        )

    def pages(self, instance_id: str, *, after: int = 0, limit: int = 100) -> list[PageRecord]:
        rows = (
            self.db.read()
            .execute(
                "SELECT doc FROM run_pages WHERE instance_id = ? AND page > ? "
                "ORDER BY page LIMIT ?",
                (instance_id, after, max(limit, 0)),
            )
            .fetchall()
        )
        return [PageRecord.from_doc(json.loads(r[0])) for r in rows]

    def page_summary(self, instance_id: str) -> PageSummary | None:
        row = (
            self.db.read()
            .execute("SELECT doc FROM run_summaries WHERE instance_id = ?", (instance_id,))
            .fetchone()
        )
        return PageSummary.from_doc(json.loads(row[0])) if row else None

    @staticmethod
    def _filters(
        tenant: str | None,
        flow: str | None,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("tenant_id", tenant), ("flow_name", flow), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("scheduled_for >= ?")
            args.append(format_utc(since))
        if until is not None:
            where.append("scheduled_for < ?")
            args.append(format_utc(until))
        return where, args

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
        where, args = self._filters(tenant, flow, status, since, until)
        if before is not None:
            when, instance = parse_token(before)
            where.append("(scheduled_for, instance_id) < (?, ?)")
            args += [when, instance]
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY scheduled_for DESC, instance_id DESC LIMIT ?"
        return [_run(r) for r in self.db.read().execute(sql, (*args, max(limit, 0))).fetchall()]

    def count(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        where, args = self._filters(tenant, flow, status, since, until)
        sql = "SELECT COUNT(*) FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self.db.read().execute(sql, args).fetchone()[0])

    def status_counts(self, since: datetime, bucket_seconds: int) -> list[tuple[str, str, int]]:
        """Bucketed in SQL (``strftime('%s')`` of the stored ``...Z`` text), one row per bucket
        and status."""
        rows = (
            self.db.read()
            .execute(
                "SELECT CAST(strftime('%s', scheduled_for) AS INTEGER) / ?1 * ?1 AS b, status, "
                "COUNT(*) FROM runs "
                "WHERE scheduled_for >= ?2 GROUP BY b, status ORDER BY b, status",
                (max(int(bucket_seconds), 1), format_utc(since)),
            )
            .fetchall()
        )
        return [
            (format_utc(datetime.fromtimestamp(b, UTC)), status, n)
            for b, status, n in rows
            if b is not None
        ]

    def audit(self, entry: AuditEntry) -> None:
        e = entry.stored(self._now(), "")
        with self.db.write() as con:
            con.execute(
                "INSERT INTO audit (at, actor, action, target, tenant_id, flow_name, "
                "instance_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    e.at,
                    e.actor,
                    e.action,
                    e.target,
                    e.tenant_id,
                    e.flow_name,
                    e.instance_id,
                    e.detail,
                ),
            )

    def audit_log(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        instance_id: str | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("tenant_id", tenant),
            ("flow_name", flow),
            ("instance_id", instance_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        return [
            AuditEntry(
                actor=r["actor"],
                action=r["action"],
                target=r["target"],
                tenant_id=r["tenant_id"],
                flow_name=r["flow_name"],
                instance_id=r["instance_id"],
                detail=r["detail"],
                at=r["at"],
                id=str(r["id"]),
            )
            for r in self.db.read().execute(sql, (*args, max(limit, 0))).fetchall()
        ]

    def annotate(
        self,
        instance_id: str,
        *,
        reason: str | None = None,
        trace_id: str | None = None,
        rerun_of: str | None = None,
    ) -> None:
        sets = [
            (column, value)
            for column, value in (
                ("reason", short_reason(reason)),
                ("trace_id", trace_id),
                ("rerun_of", rerun_of),
            )
            if value is not None
        ]
        if not sets:
            return
        with self.db.write() as con:
            con.execute(
                f"UPDATE runs SET {', '.join(f'{c} = ?' for c, _ in sets)} WHERE instance_id = ?",
                (*(v for _, v in sets), instance_id),
            )

    def prune(self, older_than: datetime, *, batch: int = 500) -> int:
        """In batches of ``batch`` runs, one transaction each (the write lock is not held
        for a whole sweep)."""
        cutoff = format_utc(older_than)
        total = 0
        while True:
            with self.db.write() as con:
                ids = [
                    r[0]
                    for r in con.execute(
                        "SELECT instance_id FROM runs WHERE status IN "
                        "('Completed', 'Failed', 'Terminated', 'Skipped', 'Superseded') "
                        "AND COALESCE(finished_at, created_at) < ? LIMIT ?",
                        (cutoff, batch),
                    )
                ]
                for table in ("run_pages", "run_summaries", "runs"):
                    con.executemany(
                        f"DELETE FROM {table} WHERE instance_id = ?", [(i,) for i in ids]
                    )
            total += len(ids)
            if len(ids) < batch:
                return total


class SqlitePageStore:
    """Staged page records between activities (history carries only the key)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, key: str, records: list[dict[str, Any]]) -> None:
        stored = encode_records(records)  # before the write lock, not while holding it
        with self.db.write() as con:
            con.execute("INSERT OR REPLACE INTO pages VALUES (?, ?)", (key, stored))

    def get(self, key: str) -> list[dict[str, Any]]:
        row = self.db.read().execute("SELECT records FROM pages WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"staged page {key!r} is gone")
        return decode_records(row[0])

    def delete_prefix(self, prefix: str) -> None:
        """Delete every staged page under ``prefix``; a look first, so a prefix with none
        left (a run's end after its last push) costs no write transaction."""
        bounds = (prefix, prefix + "\U0010ffff")
        if (
            self.db.read()
            .execute("SELECT 1 FROM pages WHERE key >= ? AND key < ? LIMIT 1", bounds)
            .fetchone()
            is None
        ):
            return
        with self.db.write() as con:
            con.execute("DELETE FROM pages WHERE key >= ? AND key < ?", bounds)
