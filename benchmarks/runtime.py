"""Benchmarks 2 and 4: orchestration overhead and bounded history on the local runtime.

Each case runs in a fresh process (``python -m benchmarks.runtime CASE``) with a no-op
flow (pull returns one record, push does nothing) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from .common import Metric, run_json

__all__ = ["run_history", "run_orchestrations"]


def _now_text() -> str:
    from datasync.names import format_utc, utcnow

    return format_utc(utcnow())


def case_orchestrations(jobs: int) -> dict:
    """``jobs`` tenants with one due no-op flow of one page: 5 activities each."""
    from .harness import NOOP_FLOW, Project, noop_tenants

    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        project = Project(Path(tmp), NOOP_FLOW)
        project.apply(noop_tenants(jobs, 1, _now_text()))
        stats = project.run_once()
    return {
        "code": stats.code,
        "instances": stats.instances,
        "completed": stats.completed,
        "busy_seconds": stats.busy_seconds,
        "wall_seconds": stats.wall_seconds,
        "episodes": len(stats.episodes),
    }


def case_sequential(pages: int) -> dict:
    """One orchestration of ``pages`` one-record pages: 3 activities a page, in sequence."""
    from .harness import NOOP_FLOW, Project, noop_tenants

    with tempfile.TemporaryDirectory(prefix="bench-seq-") as tmp:
        project = Project(Path(tmp), NOOP_FLOW)
        project.apply(noop_tenants(1, pages, _now_text()))
        stats = project.run_once()
    return {
        "code": stats.code,
        "instances": stats.instances,
        "completed": stats.completed,
        "busy_seconds": stats.busy_seconds,
        "wall_seconds": stats.wall_seconds,
        "activities": 3 * pages + 2,
        "episodes": len(stats.episodes),
    }


def case_history(pages: int) -> dict:
    """One orchestration of ``pages`` tiny pages: history size and replay time per page."""
    from .harness import NOOP_FLOW, Project, noop_tenants

    with tempfile.TemporaryDirectory(prefix="bench-hist-") as tmp:
        project = Project(Path(tmp), NOOP_FLOW)
        project.apply(noop_tenants(1, pages, _now_text()))
        stats = project.run_once(sample_history=True)
    eps = stats.episodes
    # Episodes per page: the one that delivers pull's result, transform's, push's. Walk
    # them in order: the page of an episode is counted from the history it replays.
    per_page = _replay_per_page(eps, pages)
    return {
        "code": stats.code,
        "completed": stats.completed,
        "busy_seconds": stats.busy_seconds,
        "episodes": len(eps),
        "max_history_events": max(e.history_events for e in eps),
        "max_history_bytes": stats.max_history_bytes,
        "end_history_bytes": stats.end_history_bytes,
        "durable_db_bytes": stats.durable_db_bytes,
        "per_page": per_page,
    }


def _replay_per_page(episodes: list, pages: int) -> dict[str, float]:
    """Replay seconds per page: at page 10, at the last page, and generation means.

    A page costs three episodes (pull, transform and push results delivered); each
    generation starts with one more (ExecutionStarted) and the run with ``begin_run``'s."""
    seconds = [e.replay_seconds for e in episodes]
    # Skip the first generation's start and begin_run episodes; then every page has 3
    # episodes, and each later generation adds one start episode before its pages.
    from datasync.config import Settings

    per_gen = Settings.from_env().pages_per_generation
    pages_cost: list[float] = []
    i = 2
    for page in range(1, pages + 1):
        if page > 1 and (page - 1) % per_gen == 0:
            i += 1  # the new generation's start
        pages_cost.append(sum(seconds[i : i + 3]))
        i += 3
    last = pages_cost[-1]
    first_gen = pages_cost[:per_gen]
    last_gen = pages_cost[-per_gen:]
    return {
        "page_10": pages_cost[min(9, len(pages_cost) - 1)],
        "page_last": last,
        "first_generation_mean": statistics.fmean(first_gen),
        "last_generation_mean": statistics.fmean(last_gen),
        "page_10_of_last_generation": last_gen[min(9, len(last_gen) - 1)],
    }


CASES = {
    "orchestrations": case_orchestrations,
    "sequential": case_sequential,
    "history": case_history,
}


def run_orchestrations(quick: bool = False) -> list[Metric]:
    jobs, pages = (60, 40) if quick else (300, 200)
    o = run_json(["-m", "benchmarks.runtime", "orchestrations", str(jobs)])
    s = run_json(["-m", "benchmarks.runtime", "sequential", str(pages)])
    for what, r in (("orchestrations", o), ("sequential", s)):
        if r["code"] != 0 or r["completed"] != r["instances"]:
            raise RuntimeError(f"{what} benchmark runs did not all complete: {r}")
    o_rate = jobs / o["busy_seconds"]
    s_rate = s["activities"] / s["busy_seconds"]
    print(
        f"  {jobs} no-op orchestrations in {o['busy_seconds']:.2f} s ({o_rate:.0f}/s; "
        f"run --once wall {o['wall_seconds']:.2f} s, {o['episodes']} episodes)"
    )
    print(
        f"  one orchestration of {pages} pages: {s['activities']} activities in "
        f"{s['busy_seconds']:.2f} s ({s_rate:.0f}/s; wall {s['wall_seconds']:.2f} s)"
    )
    return [
        Metric.check("runtime.orchestrations_per_second", o_rate, "orchestrations/s", ">=", 250),
        Metric.report("runtime.orchestrations_run_once_wall_seconds", o["wall_seconds"], "s"),
        Metric.check(
            "runtime.sequential_activities_per_second", s_rate, "activities/s", ">=", 1000
        ),
    ]


def run_history(quick: bool = False) -> list[Metric]:
    pages = 300 if quick else 5000
    h = run_json(["-m", "benchmarks.runtime", "history", str(pages)])
    if h["code"] != 0 or h["completed"] != 1:
        raise RuntimeError(f"history benchmark run did not complete: {h}")
    p = h["per_page"]
    ratio = p["page_last"] / p["page_10"]
    print(
        f"  {pages} pages in {h['busy_seconds']:.1f} s; max history {h['max_history_events']} "
        f"events / {h['max_history_bytes'] / 1024:.0f} KiB, at the end "
        f"{h['end_history_bytes']} B (durable.db {h['durable_db_bytes'] / 2**20:.1f} MiB); "
        f"replay per page: page 10 {p['page_10'] * 1000:.2f} ms, page {pages} "
        f"{p['page_last'] * 1000:.2f} ms; generation means first "
        f"{p['first_generation_mean'] * 1000:.2f} ms, last "
        f"{p['last_generation_mean'] * 1000:.2f} ms"
    )
    return [
        Metric.report("history.max_history_events", h["max_history_events"], "events"),
        Metric.report("history.max_history_bytes", h["max_history_bytes"], "bytes"),
        Metric.report("history.end_history_bytes", h["end_history_bytes"], "bytes"),
        Metric.report("history.replay_ms_per_page.page_10", p["page_10"] * 1000, "ms"),
        Metric.report(f"history.replay_ms_per_page.page_{pages}", p["page_last"] * 1000, "ms"),
        Metric.check(f"history.replay_ratio.page_{pages}_vs_page_10", ratio, "x", "<=", 2.0),
        Metric.check(
            "history.replay_ratio.last_vs_first_generation",
            p["last_generation_mean"] / p["first_generation_mean"],
            "x",
            "<=",
            2.0,
        ),
        Metric.report("history.pages_per_second", pages / h["busy_seconds"], "pages/s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("size", type=int)
    args = parser.parse_args()
    print(json.dumps(CASES[args.case](args.size)))


if __name__ == "__main__":
    main()
