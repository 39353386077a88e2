"""Benchmark 1: the scheduler tick on the embedded store.

N tenants × 3 flows (mixed crons, 20 timezones), 10% of the flows due. The store is
bulk-loaded with direct SQLite inserts (same schema and document shape as
``tenants apply``); each tick runs in a fresh process so its peak RSS is its own.

The look-ahead case (``due_times="lookahead"``) is the steady state of an hourly scan with
the default look-ahead (:data:`LOOKAHEAD`): every flow's ``nextRunUtc`` is where the
previous tick (an hour earlier) left it, so this tick enqueues the occurrences of one more
scan interval — every hourly and quarter-hourly flow, a few of the daily ones — each hidden
until due.

A full run adds issue 15's 1M flows (333,334 tenants × 3): the standard tick under 3 s,
and the look-ahead tick judged per job (:data:`LOOKAHEAD_JOBS_PER_SECOND`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .common import Metric, run_json

__all__ = [
    "CRONS",
    "FLOWS",
    "LOOKAHEAD",
    "LOOKAHEAD_JOBS_PER_SECOND",
    "MILLION",
    "NOW",
    "TIMEZONES",
    "load",
    "run",
    "tenant_docs",
    "tick",
]

TIMEZONES = [
    "UTC",
    "Europe/Amsterdam",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Helsinki",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "America/Halifax",
]
CRONS = [
    "0 0 * * * *",
    "0 */15 * * * *",
    "0 30 2 * * *",
    "0 0 9 * * 1-5",
    "0 5 */6 * * *",
    "30 0 0 1 * *",
]
FLOWS = ["orders-sync", "contacts-to-erp", "invoices-sync"]
NOW = datetime(2026, 3, 29, 0, 30, 0, tzinfo=UTC)  # near a DST change, on purpose
LOOKAHEAD = 2 * 3600 + 360  # the default look-ahead of the default hourly scan


def _z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _occurrences(cron: str, tz: str, now: datetime) -> tuple[list[str], str]:
    """Occurrences of ``cron`` in the 3 days up to ``now``, and the first one after it."""
    from datasync.schedule import next_occurrence

    past, at = [], now - timedelta(days=3)
    while (at := next_occurrence(cron, tz, at)) <= now:
        past.append(_z(at))
    return past or [_z(now - timedelta(days=3))], _z(at)


def tenant_docs(
    tenants: int,
    *,
    due_fraction: float = 0.10,
    now: datetime = NOW,
    due_times: str = "cron",
    seed: int = 7,
) -> Iterator[tuple[dict, int]]:
    """``tenants`` tenant documents × 3 flows, each with how many of its flows are due.

    ``due_times="cron"`` (what a real store holds): a due flow's ``nextRunUtc`` is one of
    its cron's recent occurrences (mostly the latest, some missed ones, 2% set by
    ``trigger`` to an arbitrary second); a flow not due holds its next occurrence.
    ``"random"``: every due flow has its own random second in the last two hours (the
    worst case for locality: each write-back lands on a different page)."""
    if due_times == "lookahead":
        yield from _lookahead_docs(tenants, now)
        return
    rnd = random.Random(seed)
    occurrences: dict[tuple[str, str], tuple[list[str], str]] = {}
    for n in range(tenants):
        tid = f"t{n:07d}"
        tz = TIMEZONES[n % len(TIMEZONES)]
        flows, due = [], 0
        for i, name in enumerate(FLOWS):
            cron = CRONS[(n + i) % len(CRONS)]
            if (cron, tz) not in occurrences:
                occurrences[(cron, tz)] = _occurrences(cron, tz, now)
            past, upcoming = occurrences[(cron, tz)]
            if rnd.random() < due_fraction:
                due += 1
                if due_times == "random" or rnd.random() < 0.02:
                    nxt = _z(now - timedelta(seconds=rnd.randint(1, 7200)))
                else:
                    nxt = past[-1] if rnd.random() < 0.9 else rnd.choice(past)
            elif due_times == "random":
                nxt = _z(now + timedelta(seconds=rnd.randint(1, 86400)))
            else:
                nxt = upcoming
            flows.append(
                {
                    "name": name,
                    "enabled": True,
                    "cron": cron,
                    "overlap": "skip",
                    "nextRunUtc": nxt,
                    "config": {"source_url": "http://x"},
                }
            )
        yield (
            {
                "id": tid,
                "type": "Tenant",
                "tenantId": tid,
                "name": f"Tenant {n}",
                "timezone": tz,
                "paused": False,
                "maxConcurrentRuns": 2,
                "flows": flows,
            },
            due,
        )


def _lookahead_docs(tenants: int, now: datetime) -> Iterator[tuple[dict, int]]:
    """Documents as an hourly look-ahead scan left them an hour ago, each with how many jobs
    this tick must enqueue for it (occurrences in the new slice of the window)."""
    from datasync.schedule import next_occurrence, occurrences

    previous = now - timedelta(hours=1) + timedelta(seconds=LOOKAHEAD)  # last tick's horizon
    horizon = now + timedelta(seconds=LOOKAHEAD)
    plans: dict[tuple[str, str], tuple[str, int]] = {}
    for n in range(tenants):
        tid = f"t{n:07d}"
        tz = TIMEZONES[n % len(TIMEZONES)]
        flows, jobs = [], 0
        for i, name in enumerate(FLOWS):
            cron = CRONS[(n + i) % len(CRONS)]
            if (cron, tz) not in plans:
                nxt = next_occurrence(cron, tz, previous)
                plans[(cron, tz)] = (
                    _z(nxt),
                    len(list(occurrences(cron, tz, previous, horizon))),
                )
            nxt_text, count = plans[(cron, tz)]
            jobs += count
            flows.append(
                {
                    "name": name,
                    "enabled": True,
                    "cron": cron,
                    "overlap": "skip",
                    "nextRunUtc": nxt_text,
                    "config": {"source_url": "http://x"},
                }
            )
        yield (
            {
                "id": tid,
                "type": "Tenant",
                "tenantId": tid,
                "name": f"Tenant {n}",
                "timezone": tz,
                "paused": False,
                "maxConcurrentRuns": 2,
                "flows": flows,
            },
            jobs,
        )


def load(home: Path, tenants: int, **options: Any) -> int:
    """Bulk-load :func:`tenant_docs` into the embedded store (direct SQLite inserts, the
    same rows ``tenants apply`` writes); return how many flows are due."""
    from datasync.adapters.local import LocalBackend

    LocalBackend(home).close()  # creates the schema
    con = sqlite3.connect(home / "datasync.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    due = 0
    con.execute("BEGIN")
    docs: list[tuple[str, str, int]] = []
    rows: list[tuple[Any, ...]] = []
    for doc, n_due in tenant_docs(tenants, **options):
        due += n_due
        tid, tz = doc["tenantId"], doc["timezone"]
        docs.append((tid, json.dumps(doc, separators=(",", ":")), 1))
        rows += [
            (tid, i, f["name"], f["cron"], tz, f["nextRunUtc"], 1)
            for i, f in enumerate(doc["flows"])
        ]
        if len(docs) >= 5000:
            con.executemany("INSERT INTO tenants VALUES (?, ?, ?)", docs)
            con.executemany("INSERT INTO flow_schedule VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            docs, rows = [], []
    con.executemany("INSERT INTO tenants VALUES (?, ?, ?)", docs)
    con.executemany("INSERT INTO flow_schedule VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute("COMMIT")
    con.execute("ANALYZE")
    con.close()
    return due


def _hwm_mb() -> float:
    """Peak RSS since the last reset (``VmHWM``), else the process's ``ru_maxrss``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_hwm() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to VmRSS


def tick(
    home: Path, now: datetime = NOW, *, trace: bool = False, lookahead: float = 0.0
) -> dict[str, float]:
    """One tick in this (fresh) process: seconds, counts, and memory.

    ``rss_peak_mb`` is the process's peak RSS during the tick (reset just before it);
    with ``trace`` the tick runs under tracemalloc and reports the Python heap peak instead
    of a timing (tracing slows Python down)."""
    import tracemalloc

    from datasync.adapters.local import LocalBackend
    from datasync.ports import FLOW_JOBS
    from datasync.scanner import scan_and_enqueue

    backend = LocalBackend(home)
    queue = backend.queues.queue(FLOW_JOBS)
    backend.db.read().execute("SELECT count(*) FROM flow_schedule").fetchone()  # warm
    if trace:
        tracemalloc.start()
    _reset_hwm()
    rss_before = _hwm_mb()
    started = time.perf_counter()
    result = scan_and_enqueue(
        backend.tenants, queue, now, known_flows=set(FLOWS), lookahead=lookahead
    )
    seconds = time.perf_counter() - started
    rss_peak = _hwm_mb()
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
    tracemalloc.stop()
    left = (
        backend.db.read()
        .execute(
            "SELECT count(*) FROM flow_schedule WHERE active = 1 AND next_run_utc <= ?",
            (_z(now + timedelta(seconds=lookahead)),),
        )
        .fetchone()[0]
    )
    queued = queue.count()
    backend.close()
    return {
        "seconds": seconds,
        "due": result.due,
        "flows": result.flows,
        "advanced": result.advanced,
        "conflicts": result.conflicts,
        "invalid": len(result.invalid),
        "left": left,
        "queued": queued,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "heap_peak_mb": heap_peak,
    }


def _measure(tenants: int, due_times: str = "cron", trace: bool = True) -> dict[str, float]:
    ahead = ["--lookahead", str(LOOKAHEAD)] if due_times == "lookahead" else []
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
        home, copy = Path(tmp) / "a", Path(tmp) / "b"
        t0 = time.perf_counter()
        due = load(home, tenants, due_times=due_times)
        load_s = time.perf_counter() - t0
        if trace:
            shutil.copytree(home, copy)
        out = run_json(["-m", "benchmarks.scheduler", "--tick", str(home), *ahead], timeout=1800)
        if out["due"] != due or out["left"] or out["queued"] != due or out["invalid"]:
            raise RuntimeError(f"scheduler tick is wrong: expected {due} due, got {out}")
        if trace:
            out["heap_peak_mb"] = run_json(
                ["-m", "benchmarks.scheduler", "--tick", str(copy), "--trace", *ahead],
                timeout=1800,
            )["heap_peak_mb"]
        out["load_seconds"] = load_s
        return out


def run(quick: bool = False) -> list[Metric]:
    small, large = (200, 1_000) if quick else (10_000, 100_000)
    a = _measure(small, trace=not quick)
    b = _measure(large, trace=not quick)
    rows = [(f"{small}", a), (f"{large}", b)]
    if not quick:  # the worst case for locality, reported alongside
        worst = _measure(large, due_times="random", trace=False)
        rows.append((f"{large} (random due times)", worst))
    for label, r in rows:
        print(
            f"  scheduler {label} tenants: tick {r['seconds']:.3f} s, {r['due']} due "
            f"({r['due'] / r['seconds']:,.0f}/s), peak RSS {r['rss_peak_mb']:.1f} MB "
            f"(+{r['rss_peak_mb'] - r['rss_before_mb']:.1f} during the tick), Python heap "
            f"peak {r['heap_peak_mb']:.2f} MB, bulk load {r['load_seconds']:.1f} s"
        )
    s_k, l_k = _k(small), _k(large)
    metrics = [
        Metric.report(f"scheduler.tick_seconds.{s_k}_tenants", a["seconds"], "s"),
        Metric.check(f"scheduler.tick_seconds.{l_k}_tenants", b["seconds"], "s", "<", 3.0),
        Metric.check(
            f"scheduler.due_flows_per_second.{l_k}_tenants",
            b["due"] / b["seconds"],
            "flows/s",
            ">=",
            20_000,
        ),
        Metric.report(f"scheduler.peak_rss_mb.{s_k}_tenants", a["rss_peak_mb"], "MB"),
        Metric.report(f"scheduler.peak_rss_mb.{l_k}_tenants", b["rss_peak_mb"], "MB"),
        Metric.check(
            f"scheduler.peak_rss_ratio.{l_k}_vs_{s_k}",
            b["rss_peak_mb"] / a["rss_peak_mb"],
            "x",
            "<=",
            1.2,
        ),
    ]
    metrics += _million_metrics(a) if not quick else []
    metrics += _lookahead_metrics(quick, a)
    if not quick:
        metrics += [
            Metric.report(f"scheduler.heap_peak_mb.{s_k}_tenants", a["heap_peak_mb"], "MB"),
            Metric.report(f"scheduler.heap_peak_mb.{l_k}_tenants", b["heap_peak_mb"], "MB"),
            Metric.report(
                f"scheduler.due_flows_per_second.{l_k}_tenants_random_due_times",
                worst["due"] / worst["seconds"],
                "flows/s",
            ),
        ]
    return metrics


MILLION = 333_334  # tenants × 3 flows: issue 15's "1M flows"


def _million_metrics(baseline: dict[str, float]) -> list[Metric]:
    """Issue 15 item 4d: the standard tick (10% due) at 1M flows, under 3 s, memory flat."""
    r = _measure(MILLION, trace=False)
    print(
        f"  scheduler {MILLION} tenants ({MILLION * len(FLOWS)} flows): tick {r['seconds']:.3f} s, "
        f"{r['due']} due ({r['due'] / r['seconds']:,.0f}/s), peak RSS {r['rss_peak_mb']:.1f} MB, "
        f"bulk load {r['load_seconds']:.1f} s"
    )
    return [
        Metric.check("scheduler.tick_seconds.1m_flows", r["seconds"], "s", "<", 3.0),
        Metric.report("scheduler.due_flows.1m_flows", r["due"], "flows"),
        Metric.report(
            "scheduler.due_flows_per_second.1m_flows", r["due"] / r["seconds"], "flows/s"
        ),
        Metric.check(
            "scheduler.peak_rss_ratio.1m_flows_vs_baseline",
            r["rss_peak_mb"] / baseline["rss_peak_mb"],
            "x",
            "<=",
            1.2,
        ),
    ]


LOOKAHEAD_JOBS_PER_SECOND = 85_000
"""The look-ahead tick's budget is per job (it enqueues ~2.5 jobs per due flow, each one a
queue insert): 300k flows' 256,666 jobs in 3 s, the same rate at 1M flows (~10 s)."""


def _lookahead_metrics(quick: bool, baseline: dict[str, float]) -> list[Metric]:
    """The look-ahead tick (steady state of an hourly scan): 100k tenants / 300k flows
    (under 3 s), and issue 15's 1M flows (333k tenants × 3) in a full run, judged per job
    (:data:`LOOKAHEAD_JOBS_PER_SECOND`); memory against the small tick."""
    sizes = (1_000,) if quick else (100_000, MILLION)
    metrics: list[Metric] = []
    for n in sizes:
        r = _measure(n, due_times="lookahead", trace=False)
        flows = n * len(FLOWS)
        print(
            f"  scheduler look-ahead {n} tenants ({flows} flows): tick {r['seconds']:.3f} s, "
            f"{r['due']} jobs for {r['flows']} flows ({r['due'] / r['seconds']:,.0f} jobs/s), "
            f"peak RSS {r['rss_peak_mb']:.1f} MB, bulk load {r['load_seconds']:.1f} s"
        )
        label = f"{round(flows / 1e6)}m_flows" if flows >= 999_000 else f"{_k(flows)}_flows"
        seconds = f"scheduler.lookahead_tick_seconds.{label}"
        metrics += [
            Metric.check(seconds, r["seconds"], "s", "<", 3.0)
            if flows < 999_000
            else Metric.report(seconds, r["seconds"], "s"),
            Metric.check(
                f"scheduler.lookahead_jobs_per_second.{label}",
                r["due"] / r["seconds"],
                "jobs/s",
                ">=",
                LOOKAHEAD_JOBS_PER_SECOND,
            ),
            Metric.report(f"scheduler.lookahead_jobs.{label}", r["due"], "jobs"),
            Metric.report(f"scheduler.lookahead_due_flows.{label}", r["flows"], "flows"),
            Metric.check(
                f"scheduler.lookahead_peak_rss_ratio.{label}_vs_baseline",
                r["rss_peak_mb"] / baseline["rss_peak_mb"],
                "x",
                "<=",
                1.2,
            ),
        ]
    return metrics


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tick", type=Path, required=True)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--lookahead", type=float, default=0.0)
    args = parser.parse_args()
    print(json.dumps(tick(args.tick, trace=args.trace, lookahead=args.lookahead)))


if __name__ == "__main__":
    main()
