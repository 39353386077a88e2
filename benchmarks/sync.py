"""Benchmark 3: a real sync against the loopback demo APIs (in their own process).

The same source → target copy two ways, against one API server process started with
``python -m datasync.demo_apis``: DataSync's ``run --once`` (a fresh process driving
``LocalHost``: scheduler tick → queue → starter → ``sync_flow`` → activities) and a plain
``httpx`` loop doing the same GETs and POSTs. Records per second, and their ratio.

3a (:func:`run_latency`): the same with every request answered 20 ms late (200 pages of
500), where DataSync's pipelined pages (pull N+1 beside push N) should win; 3b
(:func:`run_page_sizes`): CPU-bound at pages of 50, 500 and 5,000 records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import ROOT, Metric, run_json

__all__ = ["ApiServer", "run"]

SOURCE_TOKEN, TARGET_TOKEN = "bench-src-token", "bench-erp-token"


class ApiServer:
    """``python -m datasync.demo_apis`` in a child process; a context manager."""

    def __init__(
        self, tenants: dict[str, int], latency_ms: float = 0.0, max_limit: int = 0
    ) -> None:
        self.tenants = tenants
        self.latency_ms = latency_ms
        self.max_limit = max_limit
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ApiServer:
        args = [sys.executable, "-m", "datasync.demo_apis", "--port", "0"]
        if self.latency_ms or self.max_limit:
            args = [sys.executable, "-m", "benchmarks.apis", "--port", "0"]
            args += ["--latency-ms", str(self.latency_ms), "--max-limit", str(self.max_limit)]
        for name, records in self.tenants.items():
            args += ["--tenant", f"{name}:{SOURCE_TOKEN}:{TARGET_TOKEN}:{records}"]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = json.loads(self.proc.stdout.readline())["url"]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def stats(self, tenant: str) -> dict[str, Any]:
        import httpx

        return httpx.get(f"{self.url}/{tenant}/stats", timeout=30).json()


def plain(url: str, tenant: str, page_size: int) -> dict[str, Any]:
    """The baseline: one ``httpx.Client``, GET a page, POST it, until the source is done."""
    import httpx

    started = time.perf_counter()
    moved, pages, cursor = 0, 0, ""
    with httpx.Client(timeout=30) as client:
        while True:
            r = client.get(
                f"{url}/{tenant}/contacts",
                params={"after": cursor, "limit": page_size},
                headers={"Authorization": f"Bearer {SOURCE_TOKEN}"},
            )
            r.raise_for_status()
            body = r.json()
            pages += 1
            if body["items"]:
                client.post(
                    f"{url}/{tenant}/batch",
                    json={"records": body["items"]},
                    headers={
                        "Idempotency-Key": f"plain/{pages}",
                        "Authorization": f"Bearer {TARGET_TOKEN}",
                    },
                ).raise_for_status()
                moved += len(body["items"])
            cursor = body["next"] or cursor
            if not body["more"]:
                break
    return {"records": moved, "pages": pages, "seconds": time.perf_counter() - started}


def datasync(url: str, tenant: str, page_size: int) -> dict[str, Any]:
    """DataSync ``run --once`` on a fresh ``DATASYNC_HOME`` (in this process)."""
    from datasync.names import format_utc, utcnow

    from .harness import SYNC_FLOW, Project

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        project = Project(Path(tmp), SYNC_FLOW)
        project.apply(
            [
                {
                    "id": tenant,
                    "tenantId": tenant,
                    "timezone": "UTC",
                    "flows": [
                        {
                            "name": "bench-sync",
                            "cron": "0 0 3 * * *",
                            "nextRunUtc": format_utc(utcnow()),
                            "config": {
                                "source_url": f"{url}/{tenant}",
                                "target_url": f"{url}/{tenant}",
                                "page_size": page_size,
                            },
                        }
                    ],
                }
            ],
            {(tenant, "crm", "token"): SOURCE_TOKEN, (tenant, "erp", "token"): TARGET_TOKEN},
        )
        stats = project.run_once()
    return {
        "code": stats.code,
        "completed": stats.completed,
        "seconds": stats.busy_seconds,
        "wall_seconds": stats.wall_seconds,
    }


REPEAT = 3
"""Rounds per comparison (each on a fresh API server, plain then DataSync); the best time of
each side counts: on a shared 2-core machine the minimum is the least noisy estimate."""


def _round(
    records: int, page_size: int, latency_ms: float, limit: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    with ApiServer({"bench-plain": records, "bench-ds": records}, latency_ms, limit) as api:
        p = run_json(["-m", "benchmarks.sync", "plain", api.url, "bench-plain", str(page_size)])
        d = run_json(["-m", "benchmarks.sync", "datasync", api.url, "bench-ds", str(page_size)])
        plain_stats, ds_stats = api.stats("bench-plain"), api.stats("bench-ds")
    for label, st in (("plain", plain_stats), ("datasync", ds_stats)):
        if st["count"] != records or st["maxReceives"] != 1:
            raise RuntimeError(f"{label} sync did not move every record exactly once: {st}")
    if d["code"] != 0 or d["completed"] != 1:
        raise RuntimeError(f"DataSync run failed: {d}")
    return p, d


def compare(
    records: int, page_size: int, latency_ms: float = 0.0, repeat: int = REPEAT
) -> tuple[float, float]:
    """Both syncs of ``records`` in pages of ``page_size``, ``repeat`` rounds; each round
    checked (every record stored exactly once, the run Completed). Best (plain, DataSync)
    records/s."""
    limit = page_size if page_size > 1000 else 0  # the demo source caps pages at 1,000
    rounds = [_round(records, page_size, latency_ms, limit) for _ in range(repeat)]
    plain_s = [p["seconds"] for p, _ in rounds]
    ds_s = [d["seconds"] for _, d in rounds]
    plain_rate, ds_rate = records / min(plain_s), records / min(ds_s)
    late = f", {latency_ms:g} ms per request" if latency_ms else ""
    every = ", ".join(f"{x:.2f}" for x in plain_s), ", ".join(f"{x:.2f}" for x in ds_s)
    print(
        f"  pages of {page_size}{late}, {records} records, best of {repeat}: plain httpx "
        f"{min(plain_s):.2f} s ({plain_rate:,.0f}/s; all {every[0]}); DataSync run --once "
        f"{min(ds_s):.2f} s ({ds_rate:,.0f}/s; all {every[1]}); ratio {ds_rate / plain_rate:.2f}"
    )
    return plain_rate, ds_rate


def run(quick: bool = False) -> list[Metric]:
    records, page_size = (5_000, 500) if quick else (100_000, 500)
    plain_rate, ds_rate = compare(records, page_size, repeat=1 if quick else REPEAT)
    return [
        Metric.report("sync.plain_httpx_records_per_second", plain_rate, "records/s"),
        Metric.report("sync.datasync_records_per_second", ds_rate, "records/s"),
        Metric.check("sync.datasync_vs_plain_ratio", ds_rate / plain_rate, "x", ">=", 0.6),
    ]


def run_latency(quick: bool = False) -> list[Metric]:
    """Source and target each answer 20 ms late; 200 pages of 500 (quick: 20)."""
    pages, page_size = (20, 500) if quick else (200, 500)
    plain_rate, ds_rate = compare(
        pages * page_size, page_size, latency_ms=20, repeat=1 if quick else REPEAT
    )
    return [
        Metric.report("latency.plain_httpx_records_per_second", plain_rate, "records/s"),
        Metric.report("latency.datasync_records_per_second", ds_rate, "records/s"),
        Metric.check("latency.datasync_vs_plain_ratio", ds_rate / plain_rate, "x", ">=", 1.6),
    ]


PAGE_SIZES = {50: (20_000, None), 500: (100_000, 0.6), 5_000: (200_000, 0.8)}
"""Page size → (records, target ratio to the plain loop or None: reported)."""


def run_page_sizes(quick: bool = False) -> list[Metric]:
    """CPU-bound (no added latency) at three page sizes (500 is benchmark 3's figure)."""
    metrics: list[Metric] = []
    for size, (records, target) in PAGE_SIZES.items():
        if size == 500:
            continue  # measured by benchmark 3 in the same run
        count = max(size * 10, records // 10) if quick else records
        plain_rate, ds_rate = compare(count, size, repeat=1 if quick else REPEAT)
        name = f"pages.datasync_vs_plain_ratio.{size}"
        metrics += [
            Metric.report(f"pages.plain_httpx_records_per_second.{size}", plain_rate, "records/s"),
            Metric.report(f"pages.datasync_records_per_second.{size}", ds_rate, "records/s"),
            Metric.report(name, ds_rate / plain_rate, "x")
            if target is None
            else Metric.check(name, ds_rate / plain_rate, "x", ">=", target),
        ]
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["plain", "datasync"])
    parser.add_argument("url")
    parser.add_argument("tenant")
    parser.add_argument("page_size", type=int)
    args = parser.parse_args()
    fn = plain if args.mode == "plain" else datasync
    os.environ.setdefault("DATASYNC_LOG_LEVEL", "WARNING")
    print(json.dumps(fn(args.url, args.tenant, args.page_size)))


if __name__ == "__main__":
    main()
