"""Run history, checkpoints (cursor + ``ctx.state``) and staged pages in SQLite."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ...exceptions import NotFound
from ...models import RunRecord
from ...names import format_utc, utcnow
from ...ports import Checkpoint
from .db import Database

__all__ = ["SqliteRunStore", "SqlitePageStore", "RUN_SCHEMA"]

RUN_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    instance_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, flow_name TEXT NOT NULL,
    scheduled_for TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    pages INTEGER NOT NULL DEFAULT 0, records_in INTEGER NOT NULL DEFAULT 0,
    records_out INTEGER NOT NULL DEFAULT 0, resumes INTEGER NOT NULL DEFAULT 0, error TEXT,
    created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (tenant_id, flow_name, status);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS checkpoints (
    tenant_id TEXT NOT NULL, flow_name TEXT NOT NULL, cursor TEXT, state TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (tenant_id, flow_name));
CREATE TABLE IF NOT EXISTS pages (key TEXT PRIMARY KEY, records TEXT NOT NULL);
"""

_COLUMNS = ("instance_id", "tenant_id", "flow_name", "scheduled_for", "status", "started_at",
            "finished_at", "pages", "records_in", "records_out", "resumes", "error")
ACTIVE = ("Pending", "Running")


def _insert(con, run: RunRecord, *, upsert: bool = False) -> None:
    sql = (f"INSERT INTO runs ({', '.join(_COLUMNS)}, created_at) "
           f"VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})")
    if upsert:
        sql += " ON CONFLICT DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}"
                                                         for c in _COLUMNS[1:])
    con.execute(sql, (*(getattr(run, c) for c in _COLUMNS), format_utc(utcnow())))


def _run(row) -> RunRecord:
    return RunRecord(**{c: row[c] for c in _COLUMNS})


class SqliteRunStore:
    """The embedded :class:`~datasync.ports.RunStore`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load_checkpoint(self, tenant: str, flow: str) -> Checkpoint:
        row = self.db.read().execute(
            "SELECT cursor, state FROM checkpoints WHERE tenant_id = ? AND flow_name = ?",
            (tenant, flow)).fetchone()
        if row is None:
            return Checkpoint()
        return Checkpoint(cursor=json.loads(row["cursor"]), state=json.loads(row["state"]))

    def mark_pending(self, run: RunRecord) -> bool:
        with self.db.write() as con:
            row = con.execute("SELECT status FROM runs WHERE instance_id = ?",
                              (run.instance_id,)).fetchone()
            if row is None:
                _insert(con, run)
                return True
            if row["status"] in (*ACTIVE, "Completed"):
                return False
            con.execute("UPDATE runs SET status = ?, error = NULL WHERE instance_id = ?",
                        (run.status, run.instance_id))
            return True

    def begin(self, run: RunRecord) -> RunRecord:
        now = format_utc(utcnow())
        with self.db.write() as con:
            row = con.execute("SELECT * FROM runs WHERE instance_id = ?",
                              (run.instance_id,)).fetchone()
            if row is None:
                _insert(con, replace(run, status="Running", started_at=now, finished_at=None,
                                     pages=0, records_in=0, records_out=0, resumes=0,
                                     error=None))
            elif row["started_at"] is None:      # Pending → Running
                con.execute("UPDATE runs SET status = 'Running', started_at = ? "
                            "WHERE instance_id = ?", (now, run.instance_id))
            else:                                # a failed run started again: a resume
                con.execute("UPDATE runs SET status = 'Running', finished_at = NULL, "
                            "error = NULL, resumes = resumes + 1 WHERE instance_id = ?",
                            (run.instance_id,))
            return _run(con.execute("SELECT * FROM runs WHERE instance_id = ?",
                                    (run.instance_id,)).fetchone())

    def checkpoint(self, instance_id: str, tenant: str, flow: str, cp: Checkpoint, *,
                   pages: int, records_in: int, records_out: int) -> None:
        now = format_utc(utcnow())
        with self.db.write() as con:
            con.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "cursor = excluded.cursor, state = excluded.state, updated_at = excluded.updated_at",
                (tenant, flow, json.dumps(cp.cursor), json.dumps(cp.state), now))
            con.execute("UPDATE runs SET pages = ?, records_in = ?, records_out = ? "
                        "WHERE instance_id = ?", (pages, records_in, records_out, instance_id))

    def finish(self, instance_id: str, status: str, error: str | None = None) -> None:
        with self.db.write() as con:
            con.execute("UPDATE runs SET status = ?, error = ?, finished_at = ? "
                        "WHERE instance_id = ?",
                        (status, error, format_utc(utcnow()), instance_id))

    def mark_resumed(self, instance_id: str) -> None:
        with self.db.write() as con:
            con.execute("UPDATE runs SET resumes = resumes + 1 WHERE instance_id = ?",
                        (instance_id,))

    def get(self, instance_id: str) -> RunRecord:
        row = self.db.read().execute("SELECT * FROM runs WHERE instance_id = ?",
                                     (instance_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {instance_id!r}")
        return _run(row)

    def record(self, run: RunRecord) -> None:
        with self.db.write() as con:
            _insert(con, run, upsert=True)

    def list(self, *, tenant: str | None = None, flow: str | None = None,
             status: str | None = None, limit: int = 100) -> list[RunRecord]:
        where, args = [], []
        for column, value in (("tenant_id", tenant), ("flow_name", flow), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, instance_id DESC LIMIT ?"
        return [_run(r) for r in self.db.read().execute(sql, (*args, limit)).fetchall()]

    def active(self, tenant: str, flow: str | None = None) -> list[RunRecord]:
        sql = "SELECT * FROM runs WHERE tenant_id = ? AND status IN ('Pending', 'Running')"
        args: list[Any] = [tenant]
        if flow is not None:
            sql += " AND flow_name = ?"
            args.append(flow)
        return [_run(r) for r in self.db.read().execute(sql, args).fetchall()]


class SqlitePageStore:
    """Staged page records between activities (history carries only the key)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, key: str, records: list[dict[str, Any]]) -> None:
        with self.db.write() as con:
            con.execute("INSERT OR REPLACE INTO pages VALUES (?, ?)",
                        (key, json.dumps(records, separators=(",", ":"))))

    def get(self, key: str) -> list[dict[str, Any]]:
        row = self.db.read().execute("SELECT records FROM pages WHERE key = ?",
                                     (key,)).fetchone()
        if row is None:
            raise NotFound(f"staged page {key!r} is gone")
        return json.loads(row[0])

    def delete_prefix(self, prefix: str) -> None:
        with self.db.write() as con:
            con.execute("DELETE FROM pages WHERE key >= ? AND key < ?",
                        (prefix, prefix + "\U0010ffff"))
