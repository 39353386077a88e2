"""A throwaway DataSync project for the runtime benchmarks: flows dir, home, tenants, run."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NOOP_FLOW", "SYNC_FLOW", "Project", "RunStats"]

NOOP_FLOW = '''
from datasync import Page, flow


@flow("bench-noop")
class BenchNoop:
    """Steps do nothing: one record per page, ``config.pages`` pages."""

    def pull(self, ctx, cursor):
        n = int(cursor or 0) + 1
        return Page(records=[{"id": n}], cursor=n, has_more=n < int(ctx.config.get("pages", 1)))

    def push(self, ctx, records):
        pass
'''

SYNC_FLOW = '''
from datasync import Page, flow


@flow("bench-sync")
class BenchSync:
    """The demo APIs: GET a page of contacts, POST it to the target (no transform)."""

    def pull(self, ctx, cursor):
        r = ctx.http.get(ctx.config["source_url"] + "/contacts",
                         params={"after": cursor or "", "limit": ctx.config["page_size"]},
                         headers={"Authorization": "Bearer " + ctx.secret("crm", "token")})
        r.raise_for_status()
        body = r.json()
        return Page(records=body["items"], cursor=body["next"], has_more=body["more"])

    def push(self, ctx, records):
        ctx.http.post(ctx.config["target_url"] + "/batch", json={"records": records},
                      headers={"Idempotency-Key": ctx.page_key,
                               "Authorization": "Bearer " + ctx.secret("erp", "token")}
                      ).raise_for_status()
'''


@dataclass
class RunStats:
    """What one ``run --once`` did, from the durable store and the engine's episodes."""

    code: int
    wall_seconds: float  # LocalHost(...).run(once=True), start to exit
    instances: int
    completed: int
    busy_seconds: float  # first instance created → last instance finished
    episodes: list[Any] = field(default_factory=list)
    max_history_bytes: int = 0  # sampled while running
    end_history_bytes: int = 0
    durable_db_bytes: int = 0


class Project:
    """``DATASYNC_HOME`` and ``flows/`` in ``base``; the settings point at them."""

    def __init__(self, base: Path, flow_source: str, env: dict[str, str] | None = None) -> None:
        self.base = Path(base)
        self.home = self.base / "home"
        self.flows = self.base / "flows"
        self.flows.mkdir(parents=True, exist_ok=True)
        (self.flows / "bench_flow.py").write_text(flow_source)
        self.env = {
            "DATASYNC_HOME": str(self.home),
            "DATASYNC_FLOWS_DIR": str(self.flows),
            "DATASYNC_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        os.environ.update(self.env)

    def settings(self):
        from datasync.config import Settings

        return Settings.from_env({**os.environ, **self.env})

    def apply(
        self, docs: list[dict[str, Any]], secrets: dict[tuple[str, str, str], str] | None = None
    ) -> None:
        from datasync import operations
        from datasync.app import App
        from datasync.names import utcnow

        with App.from_settings(self.settings()) as app:
            for i in range(0, len(docs), 500):
                operations.apply_tenants(app, docs[i : i + 500], utcnow())
            for (tenant, system, key), value in (secrets or {}).items():
                operations.set_secret(app, tenant, system, key, value)

    def run_once(self, *, sample_history: bool = False) -> RunStats:
        from datasync.runtime.host import LocalHost

        started = time.perf_counter()
        host = LocalHost(self.settings())
        stop = threading.Event()
        peak = [0]
        sampler = None
        if sample_history:
            sampler = threading.Thread(target=self._sample, args=(stop, peak), daemon=True)
            sampler.start()
        try:
            code = host.run(once=True)
        finally:
            stop.set()
            if sampler is not None:
                sampler.join()
        wall = time.perf_counter() - started
        con = sqlite3.connect(self.home / "durable.db")
        n, done, first, last = con.execute(
            "SELECT count(*), sum(status = 'Completed'), min(created_at), max(updated_at) "
            "FROM instances"
        ).fetchone()
        end_bytes = con.execute("SELECT coalesce(sum(length(event)), 0) FROM history").fetchone()[0]
        con.close()
        size = sum(p.stat().st_size for p in self.home.glob("durable.db*"))
        return RunStats(
            code,
            wall,
            n or 0,
            done or 0,
            (last - first) if n else 0.0,
            list(host.engine.episodes),
            peak[0],
            end_bytes,
            size,
        )

    def _sample(self, stop: threading.Event, peak: list[int]) -> None:
        path = self.home / "durable.db"
        while not path.exists() and not stop.wait(0.05):
            pass
        con = sqlite3.connect(path, timeout=30)
        try:
            while not stop.wait(0.05):
                try:
                    size = con.execute(
                        "SELECT coalesce(max(history_bytes), 0) FROM instances"
                    ).fetchone()[0]
                except sqlite3.Error:
                    continue
                peak[0] = max(peak[0], size)
        finally:
            con.close()


def noop_tenants(count: int, pages: int, now_text: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"bench{i:05d}",
            "tenantId": f"bench{i:05d}",
            "timezone": "UTC",
            "flows": [
                {
                    "name": "bench-noop",
                    "cron": "0 0 3 * * *",
                    "nextRunUtc": now_text,
                    "config": {"pages": pages},
                }
            ],
        }
        for i in range(count)
    ]
