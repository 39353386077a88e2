"""Benchmark: the web console's response times over a big history.

Seeds an embedded (SQLite) home with 100,000 runs (quick: 10,000) over 30 days, 40 tenants
× 2 flows, about 2 % failed, and one run of 10,000 pages (quick: 1,000) kept in full
(DATASYNC_RUN_DETAIL_PAGES=100000: the worst case for the run page), then times each page
of the console: after one warm-up request, 20 requests each (quick: 8) via httpx against
the ASGI app, p50 and p95 (the very first request, which compiles the templates, is
reported on its own). Target: p95 < 300 ms for every page.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .common import Metric

__all__ = ["run"]

TARGET_MS = 300.0
TENANTS = 40
BIG = "Workflow-t000--flow-a-20261101T000000Z"


def _seed(home: Path, runs: int, pages: int) -> None:
    from datasync.app import App
    from datasync.config import Settings
    from datasync.models import RunRecord
    from datasync.names import compact_utc, format_utc
    from datasync.records import StepWrite

    settings = Settings(home=home)
    with App.from_settings(settings) as app:
        tenants = [
            {
                "id": f"t{i:03d}",
                "tenantId": f"t{i:03d}",
                "flows": [
                    {"name": name, "cron": "0 0 * * * *", "enabled": True}
                    for name in ("flow-a", "flow-b")
                ],
            }
            for i in range(TENANTS)
        ]
        from datasync.models import parse_tenants

        app.tenants.upsert_many(parse_tenants(tenants))  # flow names need no flow files here
        store = app.runs
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        step = timedelta(days=30) / runs
        batch: list[RunRecord] = []
        for i in range(runs):
            when = now - step * i
            tid, flow = f"t{i % TENANTS:03d}", ("flow-a", "flow-b")[(i // TENANTS) % 2]
            failed = i % 50 == 7
            z = format_utc(when)
            batch.append(
                RunRecord(
                    f"Workflow-{tid}--{flow}-{compact_utc(when)}",
                    tid,
                    flow,
                    z,
                    "Failed" if failed else "Completed",
                    started_at=z,
                    finished_at=z,
                    pages=3,
                    records_in=300,
                    records_out=300,
                    error="PermanentError: the source said 400" if failed else None,
                )
            )
            if len(batch) == 5000:
                _insert(store, batch)
                batch = []
        _insert(store, batch)
        big = RunRecord(
            BIG,
            "t000",
            "flow-a",
            "2026-11-01T00:00:00Z",
            "Completed",
            started_at="2026-11-01T00:00:00Z",
            finished_at="2026-11-01T02:00:00Z",
            pages=pages,
            records_in=pages * 100,
            records_out=pages * 100,
        )
        _insert(store, [big])
        with store.db.write() as con:  # type: ignore[attr-defined]
            for page in range(1, pages + 1):
                for name in ("pull", "transform", "push"):
                    store._write_step(  # type: ignore[attr-defined]
                        con,
                        StepWrite(
                            BIG,
                            "t000",
                            page,
                            name,
                            "2026-11-01T00:00:00Z",
                            0.01 + (page % 7) / 100,
                            cursor_before=page - 1,
                            cursor_after=page,
                            records_in=100,
                            records_out=100,
                            knows_cursor_before=True,
                        ),
                        100_000,
                    )


def _insert(store: object, runs: list[object]) -> None:
    """Seed rows in one transaction (the store's own row writer, for speed)."""
    with store.db.write() as con:  # type: ignore[attr-defined]
        for r in runs:
            store._insert(con, r, upsert=True)  # type: ignore[attr-defined]


async def _time_pages(
    asgi: object, paths: dict[str, tuple[str, str]], n: int
) -> dict[str, list[float]]:
    import httpx

    out: dict[str, list[float]] = {}
    transport = httpx.ASGITransport(app=asgi)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        t = time.perf_counter()
        await client.get("/")  # compiles the templates: reported apart, not in the p95s
        out["first request (cold)"] = [(time.perf_counter() - t) * 1000]
        for name, (path, expect) in paths.items():
            await client.get(path)  # warm-up: what a second look at this page costs
            times = []
            for _ in range(n):
                t = time.perf_counter()
                r = await client.get(path)
                times.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200 or expect not in r.text:
                    raise RuntimeError(f"{path}: HTTP {r.status_code}, {expect!r} missing")
            out[name] = times
    return out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run(quick: bool) -> list[Metric]:
    from datasync.app import App
    from datasync.config import Settings
    from datasync.console import create_app
    from datasync.records import run_token

    runs, pages, n = (10_000, 1_000, 8) if quick else (100_000, 10_000, 20)
    metrics: list[Metric] = []
    with tempfile.TemporaryDirectory(prefix="datasync-bench-console-") as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        _seed(home, runs, pages)
        metrics.append(
            Metric.report(f"console seed {runs} runs", time.perf_counter() - started, "s")
        )
        settings = replace(Settings(home=home), run_detail_pages=100_000)
        with App.from_settings(settings) as app:
            deep = app.runs.query(limit=1, before=None)
            for _ in range(3):  # a page three screens down the list
                deep = app.runs.query(limit=50, before=run_token(deep[-1]))
            row = '<tr class="run"'
            paths = {
                "overview": ("/", 'id="total-runs">'),
                "freshness": ("/freshness", 'class="fresh-row"'),
                "runs": ("/runs", f"{runs + 1} runs"),
                "runs tenant+status": ("/runs?tenant=t007&status=Failed", 'data-status="Failed"'),
                "runs older page": (f"/runs?before={run_token(deep[-1])}", row),
                "runs time range": (
                    "/runs?since=2026-11-10T00:00:00Z&until=2026-11-11T00:00:00Z",
                    "runs match",
                ),
                f"run {pages} pages, first": (f"/runs/{BIG}", 'class="page" data-page="100"'),
                f"run {pages} pages, last": (
                    f"/runs/{BIG}?after={pages - 100}",
                    f'class="page" data-page="{pages}"',
                ),
                "tenant": ("/tenants/t003", row),
                "schedule": ("/tenants/t003/flows/flow-a", 'class="occurrence"'),
            }
            times = asyncio.run(_time_pages(create_app(app), paths, n))
        cold = times.pop("first request (cold)")[0]
        metrics.append(Metric.report("console first request (cold templates)", cold, "ms"))
        for name, values in times.items():
            metrics.append(Metric.report(f"console {name} p50", statistics.median(values), "ms"))
            metrics.append(Metric.check(f"console {name} p95", _p95(values), "ms", "<", TARGET_MS))
    return metrics


if __name__ == "__main__":
    import sys

    for m in run("--quick" in sys.argv):
        print(f"{m.name:45s} {m.value!s:>10} {m.unit:3s} {m.target} {m.passed}")
