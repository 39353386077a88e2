"""Benchmark: start lateness of scheduled runs on the embedded runtime.

A real ``LocalHost`` (SQLite queue, run store and Durable store) runs with a 60 s scan
(``DATASYNC_SCAN_SCHEDULE=0 * * * * *``, so the default look-ahead is 180 s) over flows on
crons every 5–20 s (jitter off) for a few minutes of real time. Each run records its
lateness at ``begin`` (precise start − ``scheduledFor``). Reported: p50/p95/p99/max lateness,
occurrences started twice (doubles) and occurrences in the measured window that never
started (misses). Runs in a fresh process (``python -m benchmarks.lateness --case``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .common import Metric, run_json

__all__ = ["CRONS", "measure", "run"]

CRONS = ["*/5 * * * * *", "*/10 * * * * *", "*/15 * * * * *", "*/20 * * * * *"]
SCAN = "0 * * * * *"  # every minute: the benchmark's scaled-down "hourly" scan


def _tenants(flows: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"late{i:05d}",
            "timezone": "UTC",
            "flows": [{"name": "bench-noop", "cron": CRONS[i % len(CRONS)], "config": {}}],
        }
        for i in range(flows)
    ]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def _instances_created(path: Path) -> dict[str, dict[tuple[str, str], Any]]:
    """Per occurrence: how many Durable instances exist for it and how late (seconds,
    precise) the first was created by ``start_new``."""
    import sqlite3

    from datasync.exceptions import ValidationError
    from datasync.names import parse_instance_id

    count: dict[tuple[str, str], int] = {}
    lateness: dict[tuple[str, str], float] = {}
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT instance_id, created_at FROM instances").fetchall()
    finally:
        con.close()
    for instance, created_at in rows:
        try:
            tenant, _flow, when, rerun = parse_instance_id(instance)
        except ValidationError:
            continue
        if rerun is not None:
            continue
        key = (tenant, when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        count[key] = count.get(key, 0) + 1
        late = created_at - when.timestamp()
        lateness[key] = min(late, lateness.get(key, late))
    return {"count": count, "lateness": lateness}


def measure(flows: int, seconds: float, warmup: float = 5.0) -> dict[str, Any]:
    """Run the host for ``seconds``; every occurrence due between ``warmup`` after the start
    and 10 s before the end must have started exactly once."""
    from datasync.app import App
    from datasync.names import parse_utc
    from datasync.runtime.host import LocalHost
    from datasync.schedule import occurrences

    from .harness import NOOP_FLOW, Project

    with tempfile.TemporaryDirectory(prefix="bench-late-") as tmp:
        project = Project(Path(tmp), NOOP_FLOW, {"DATASYNC_SCAN_SCHEDULE": SCAN})
        project.apply(_tenants(flows))
        host = LocalHost(project.settings())
        started = datetime.now(UTC)
        runner = threading.Thread(target=host.run, kwargs={"once": False}, daemon=True)
        runner.start()
        time.sleep(seconds)
        host.stopping.set()
        runner.join(timeout=60)
        ended = datetime.now(UTC)
        with App.from_settings(project.settings()) as app:
            records = app.runs.recent(limit=10_000_000)
        created = _instances_created(project.home / "durable.db")
        lo, hi = started + timedelta(seconds=warmup), ended - timedelta(seconds=10)
        expected: set[tuple[str, str]] = set()
        for doc in _tenants(flows):
            cron = doc["flows"][0]["cron"]
            for at in occurrences(cron, "UTC", lo, hi):
                expected.add((doc["id"], at.strftime("%Y-%m-%dT%H:%M:%SZ")))
        started_runs: dict[tuple[str, str], int] = {}
        lateness: list[float] = []
        statuses: dict[str, int] = {}
        resumes = 0
        for r in records:
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status not in ("Running", "Completed", "Failed"):
                continue
            key = (r.tenant_id, r.scheduled_for)
            started_runs[key] = started_runs.get(key, 0) + 1
            resumes += r.resumes
            if key in expected:
                late = r.lateness_seconds
                if late is None and r.started_at:
                    late = (parse_utc(r.started_at) - parse_utc(r.scheduled_for)).total_seconds()
                if late is not None:
                    lateness.append(late)
        doubles = sum(n - 1 for n in started_runs.values() if n > 1)
        doubles += sum(n - 1 for n in created["count"].values() if n > 1)
        start_new = [late for key, late in created["lateness"].items() if key in expected]
        misses = sum(1 for key in expected if key not in started_runs)
        return {
            "flows": flows,
            "seconds": seconds,
            "expected": len(expected),
            "measured": len(lateness),
            "p50": _percentile(lateness, 0.50),
            "p95": _percentile(lateness, 0.95),
            "p99": _percentile(lateness, 0.99),
            "max": max(lateness) if lateness else float("nan"),
            "mean": statistics.fmean(lateness) if lateness else float("nan"),
            "start_new_p50": _percentile(start_new, 0.50),
            "start_new_p99": _percentile(start_new, 0.99),
            "start_new_max": max(start_new) if start_new else float("nan"),
            "doubles": doubles,
            "misses": misses,
            "statuses": statuses,
            "resumes": resumes,
            "ticks": host.ticks,
        }


def run(quick: bool = False) -> list[Metric]:
    flows, seconds = (100, 70.0) if quick else (1000, 200.0)
    r = run_json(["-m", "benchmarks.lateness", "--case", str(flows), str(seconds)])
    print(
        f"  lateness {flows} flows, {seconds:.0f} s, 60 s scan: {r['expected']} occurrences, "
        f"p50 {r['p50']:.3f} s, p95 {r['p95']:.3f} s, p99 {r['p99']:.3f} s, "
        f"max {r['max']:.3f} s (run records' latenessSeconds); start_new p50 "
        f"{r['start_new_p50']:.3f} s, p99 {r['start_new_p99']:.3f} s, max "
        f"{r['start_new_max']:.3f} s; {r['doubles']} doubles, {r['misses']} misses "
        f"(run statuses {r['statuses']}, {r['ticks']} scheduler ticks)"
    )
    label = f"{flows}_flows"
    return [
        Metric.report(f"lateness.p50_seconds.{label}", r["p50"], "s"),
        Metric.report(f"lateness.p95_seconds.{label}", r["p95"], "s"),
        Metric.check(f"lateness.p99_seconds.{label}", r["p99"], "s", "<=", 2.0),
        Metric.report(f"lateness.max_seconds.{label}", r["max"], "s"),
        Metric.report(f"lateness.start_new_p50_seconds.{label}", r["start_new_p50"], "s"),
        Metric.check(f"lateness.start_new_p99_seconds.{label}", r["start_new_p99"], "s", "<=", 2.0),
        Metric.report(f"lateness.start_new_max_seconds.{label}", r["start_new_max"], "s"),
        Metric.check(f"lateness.doubles.{label}", r["doubles"], "runs", "<=", 0),
        Metric.check(f"lateness.misses.{label}", r["misses"], "occurrences", "<=", 0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", nargs=2, metavar=("FLOWS", "SECONDS"), required=True)
    args = parser.parse_args()
    flows, seconds = int(args.case[0]), float(args.case[1])
    print(json.dumps(measure(flows, seconds)))


if __name__ == "__main__":
    main()
