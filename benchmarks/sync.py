"""Benchmark 3: a real sync against the loopback demo APIs (in their own process).

The same source → target copy two ways, against one API server process started with
``python -m datasync.demo_apis``: DataSync's ``run --once`` (a fresh process driving
``LocalHost``: scheduler tick → queue → starter → ``sync_flow`` → activities) and a plain
``httpx`` loop doing the same GETs and POSTs. Records per second, and their ratio.
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

    def __init__(self, tenants: dict[str, int]) -> None:
        self.tenants = tenants
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ApiServer:
        args = [sys.executable, "-m", "datasync.demo_apis", "--port", "0"]
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


def run(quick: bool = False) -> list[Metric]:
    records, page_size = (5_000, 500) if quick else (100_000, 500)
    with ApiServer({"bench-plain": records, "bench-ds": records}) as api:
        p = run_json(["-m", "benchmarks.sync", "plain", api.url, "bench-plain", str(page_size)])
        d = run_json(["-m", "benchmarks.sync", "datasync", api.url, "bench-ds", str(page_size)])
        plain_stats, ds_stats = api.stats("bench-plain"), api.stats("bench-ds")
    for label, st in (("plain", plain_stats), ("datasync", ds_stats)):
        if st["count"] != records or st["maxReceives"] != 1:
            raise RuntimeError(f"{label} sync did not move every record exactly once: {st}")
    if d["code"] != 0 or d["completed"] != 1:
        raise RuntimeError(f"DataSync run failed: {d}")
    plain_rate, ds_rate = records / p["seconds"], records / d["seconds"]
    print(
        f"  plain httpx: {records} records in {p['seconds']:.2f} s ({plain_rate:,.0f}/s); "
        f"DataSync run --once: {d['seconds']:.2f} s ({ds_rate:,.0f}/s; wall with start-up "
        f"{d['wall_seconds']:.2f} s); pages of {page_size}"
    )
    return [
        Metric.report("sync.plain_httpx_records_per_second", plain_rate, "records/s"),
        Metric.report("sync.datasync_records_per_second", ds_rate, "records/s"),
        Metric.report("sync.datasync_run_once_wall_seconds", d["wall_seconds"], "s"),
        Metric.check("sync.datasync_vs_plain_ratio", ds_rate / plain_rate, "x", ">=", 0.5),
    ]


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
