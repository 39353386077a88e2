"""Tenant documents in SQLite, with a per-flow schedule index for the scheduler's due query.

``nextRunUtc`` lives in the ``flow_schedule`` rows (the index the scan reads and writes) and
is overlaid on the stored document when it is read, so a tick never rewrites documents.
A document's etag is its stored version plus a digest of those rows: an edit read before a
tick loses against the tick's write-back, and the tick touches nothing but its own rows.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ...exceptions import InvalidDocument, NotFound
from ...models import SCHEDULE_KEYS, Tenant, parse_tenant
from ...names import format_utc
from ...ports import DueFlow
from .db import Database

__all__ = ["TENANT_SCHEMA", "SqliteTenantStore"]

log = logging.getLogger("datasync.tenants")

TENANT_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, doc TEXT NOT NULL, etag INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS flow_schedule (
    tenant_id TEXT NOT NULL, flow_index INTEGER NOT NULL, flow_name TEXT NOT NULL,
    cron TEXT NOT NULL, timezone TEXT NOT NULL, next_run_utc TEXT NOT NULL, active INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, flow_index));
CREATE INDEX IF NOT EXISTS flow_schedule_due
    ON flow_schedule (active, next_run_utc, tenant_id, flow_index);
CREATE TABLE IF NOT EXISTS flow_options (
    tenant_id TEXT NOT NULL, flow_index INTEGER NOT NULL, options TEXT NOT NULL,
    PRIMARY KEY (tenant_id, flow_index));
"""
# flow_options holds the schedule options (jitter, catchUp, ...) of the flows that set any,
# as JSON: most flows have none, so the due query's LEFT JOIN finds nothing for them.


_DUE_COLUMNS = (
    "SELECT s.tenant_id, s.flow_index, s.flow_name, s.cron, s.timezone, s.next_run_utc, "
    "o.options, s.rowid FROM flow_schedule AS s LEFT JOIN flow_options AS o "
    "ON o.tenant_id = s.tenant_id AND o.flow_index = s.flow_index"
)
_COUNT_DUE = "SELECT count(*) FROM flow_schedule WHERE active = 1 AND next_run_utc <= ?"
_DENSE = 20
"""Read in storage order when at least one row in this many is due (a table page holds
some 50 rows: from about one due row per page, neighbours share their write-back)."""


def _due_page(rows: list[sqlite3.Row]) -> list[DueFlow]:
    return [DueFlow(r[0], r[1], r[2], r[3], r[4], r[5] or None, r[5], _options(r[6])) for r in rows]


def _options(text: str | None) -> Any:
    """A flow_options row as stored (None: the flow sets no schedule option)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"jitter": text}  # unreadable: let the scheduler report it


class SqliteTenantStore:
    """The embedded :class:`~datasync.ports.TenantStore`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reads ---------------------------------------------------------------------------
    @staticmethod
    def _schedule(con: sqlite3.Connection, tenant_id: str) -> dict[int, str]:
        return dict(
            con.execute(
                "SELECT flow_index, next_run_utc FROM flow_schedule WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchall()
        )

    @staticmethod
    def _etag(version: int, nexts: dict[int, str]) -> str:
        """The document version and the schedule rows it was read with, as one value."""
        rows = ";".join(f"{i}={nexts[i]}" for i in sorted(nexts))
        return f"{version}-{zlib.crc32(rows.encode()):08x}"

    def _load(self, con: sqlite3.Connection, tenant_id: str) -> tuple[dict[str, Any], str]:
        row = con.execute("SELECT doc, etag FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown tenant {tenant_id!r}")
        doc = json.loads(row["doc"])
        nexts = self._schedule(con, tenant_id)
        for i, entry in enumerate(doc.get("flows", [])):
            if nexts.get(i):
                entry["nextRunUtc"] = nexts[i]
        return doc, self._etag(row["etag"], nexts)

    def get_with_etag(self, tenant_id: str) -> tuple[Tenant, str]:
        con = self.db.read()
        con.execute("BEGIN")
        try:
            doc, etag = self._load(con, tenant_id)
        finally:
            con.execute("COMMIT")
        return parse_tenant(doc), etag

    def get(self, tenant_id: str) -> Tenant:
        return self.get_with_etag(tenant_id)[0]

    def iter_tenants(self) -> Iterator[Tenant]:
        ids = [r[0] for r in self.db.read().execute("SELECT id FROM tenants ORDER BY id")]
        for tenant_id in ids:
            try:
                yield self.get(tenant_id)
            except NotFound:  # deleted meanwhile
                continue
            except InvalidDocument as exc:  # broken in the store: report it, list the rest
                log.error("skipping invalid tenant document: %s", exc)

    # -- writes --------------------------------------------------------------------------
    @staticmethod
    def _write(con: sqlite3.Connection, tenant: Tenant, etag: int) -> None:
        doc = tenant.to_doc()
        con.execute(
            "INSERT INTO tenants (id, doc, etag) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, etag = excluded.etag",
            (tenant.tenant_id, json.dumps(doc, separators=(",", ":")), etag),
        )
        con.execute("DELETE FROM flow_schedule WHERE tenant_id = ?", (tenant.tenant_id,))
        con.executemany(
            "INSERT INTO flow_schedule VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    tenant.tenant_id,
                    i,
                    f.name,
                    f.cron,
                    tenant.timezone,
                    format_utc(f.next_run_utc) if f.next_run_utc else "",
                    int(f.enabled and not tenant.paused),
                )
                for i, f in enumerate(tenant.flows)
            ],
        )
        con.execute("DELETE FROM flow_options WHERE tenant_id = ?", (tenant.tenant_id,))
        options = []
        for i, entry in enumerate(doc.get("flows", [])):
            chosen = {k: entry[k] for k in SCHEDULE_KEYS if k in entry}
            if chosen:
                options.append((tenant.tenant_id, i, json.dumps(chosen, separators=(",", ":"))))
        if options:
            con.executemany("INSERT INTO flow_options VALUES (?, ?, ?)", options)

    def upsert_many(self, tenants: list[Tenant]) -> None:
        with self.db.write() as con:
            for tenant in tenants:
                row = con.execute(
                    "SELECT etag FROM tenants WHERE id = ?", (tenant.tenant_id,)
                ).fetchone()
                self._write(con, tenant, (row[0] + 1) if row else 1)

    def replace_if_match(self, tenant: Tenant, etag: str) -> bool:
        with self.db.write() as con:
            row = con.execute(
                "SELECT etag FROM tenants WHERE id = ?", (tenant.tenant_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"unknown tenant {tenant.tenant_id!r}")
            if self._etag(row[0], self._schedule(con, tenant.tenant_id)) != etag:
                return False
            self._write(con, tenant, row[0] + 1)
            return True

    # -- scheduler -----------------------------------------------------------------------
    def due_flows(
        self, now: datetime, *, page_size: int = 1000, tenant_id: str | None = None
    ) -> Iterator[list[DueFlow]]:
        """Active flows with ``nextRunUtc`` missing or <= now, in keyset-paged batches.

        The etag of a row is the ``nextRunUtc`` it was read with: :meth:`advance` is a
        compare-and-set on that value, so racing schedulers and edits lose cleanly.

        When many rows are due (at least one in :data:`_DENSE`, e.g. a look-ahead tick) the
        table is read in storage order rather than through the due index: each page of
        write-backs then lands on a few neighbouring table pages instead of one page per
        flow, which is most of a big tick's cost."""
        cutoff = format_utc(now)
        con = self.db.read()
        if tenant_id is not None:
            yield from self._due_of(con, cutoff, tenant_id)
            return
        due = con.execute(_COUNT_DUE, (cutoff,)).fetchone()[0]
        if not due:
            return
        low, high = con.execute("SELECT min(rowid), max(rowid) FROM flow_schedule").fetchone()
        if due * _DENSE >= high - low + 1:
            yield from self._due_in_storage_order(con, cutoff, page_size, low - 1)
        else:
            yield from self._due_in_time_order(con, cutoff, page_size)

    @staticmethod
    def _due_in_time_order(
        con: sqlite3.Connection, cutoff: str, page_size: int
    ) -> Iterator[list[DueFlow]]:
        last: tuple[str, str, int] = ("", "", -1)
        while True:
            rows = con.execute(
                f"{_DUE_COLUMNS} WHERE s.active = 1 AND s.next_run_utc <= ? "
                "AND (s.next_run_utc, s.tenant_id, s.flow_index) > (?, ?, ?) "
                "ORDER BY s.next_run_utc, s.tenant_id, s.flow_index LIMIT ?",
                (cutoff, *last, page_size),
            ).fetchall()
            if not rows:
                return
            yield _due_page(rows)
            last = (rows[-1][5], rows[-1][0], rows[-1][1])
            if len(rows) < page_size:
                return

    @staticmethod
    def _due_in_storage_order(
        con: sqlite3.Connection, cutoff: str, page_size: int, last: int
    ) -> Iterator[list[DueFlow]]:
        while True:
            rows = con.execute(
                f"{_DUE_COLUMNS} WHERE s.rowid > ? AND s.active = 1 AND s.next_run_utc <= ? "
                "ORDER BY s.rowid LIMIT ?",
                (last, cutoff, page_size),
            ).fetchall()
            if not rows:
                return
            yield _due_page(rows)
            last = rows[-1][7]
            if len(rows) < page_size:
                return

    @staticmethod
    def _due_of(con: sqlite3.Connection, cutoff: str, tenant_id: str) -> Iterator[list[DueFlow]]:
        rows = con.execute(
            f"{_DUE_COLUMNS} WHERE s.tenant_id = ? AND s.active = 1 AND s.next_run_utc <= ? "
            "ORDER BY s.flow_index",
            (tenant_id, cutoff),
        ).fetchall()
        if rows:
            yield _due_page(rows)

    def advance(self, updates: list[tuple[DueFlow, str]]) -> list[DueFlow]:
        """Compare-and-set each flow's next run against the value the scan read.

        One statement for the batch, in key order; only when some row did not match (a race
        lost to an edit or another scheduler) are the rows checked one by one."""
        if not updates:
            return []
        rows = sorted((f.tenant_id, f.flow_index, next_run, f.etag) for f, next_run in updates)
        with self.db.write() as con:
            cur = con.executemany(
                "UPDATE flow_schedule SET next_run_utc = ?3 WHERE tenant_id = ?1 "
                "AND flow_index = ?2 AND next_run_utc = ?4 AND active = 1",
                rows,
            )
            if cur.rowcount == len(rows):
                return []
            lost: list[DueFlow] = []
            for flow, next_run in updates:
                now_at = con.execute(
                    "SELECT next_run_utc FROM flow_schedule WHERE tenant_id = ? "
                    "AND flow_index = ? AND active = 1",
                    (flow.tenant_id, flow.flow_index),
                ).fetchone()
                if now_at is None or now_at[0] != next_run:
                    lost.append(flow)
        return lost
