"""Benchmarks 2 and 4: orchestration overhead and bounded history on the local runtime.

Each case runs in a fresh process (``python -m benchmarks.runtime CASE``) with a no-op
flow (pull returns one record, push does nothing) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
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
    """One orchestration of ``pages`` one-record pages: pull and push a page, in sequence."""
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
        # begin + finish, and per page pull + push (+ transform when the flow has one:
        # a flow without transform has its pages pushed as staged)
        "activities": (3 if "def transform" in NOOP_FLOW else 2) * pages + 2,
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
    """Replay seconds per page, per generation: a generation's episodes (the history
    restarts after each ``continue_as_new``, so ``history_events`` drops) summed and divided
    by its pages. Pages no longer cost a fixed number of episodes (pipelined pulls, pages
    without transform), so this counts by generation, not by position."""
    from datasync.config import Settings

    per_gen = Settings.from_env().pages_per_generation
    generations: list[float] = []
    previous = -1
    for e in episodes:
        if e.history_events < previous or not generations:
            generations.append(0.0)
        generations[-1] += e.replay_seconds
        previous = e.history_events
    full = [g / per_gen for g in generations[: max(1, pages // per_gen)]]
    return {
        "page_10": full[0],
        "page_last": full[-1],
        "first_generation_mean": full[0],
        "last_generation_mean": full[-1],
        "page_10_of_last_generation": full[-1],
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
    first, last = p["first_generation_mean"], p["last_generation_mean"]
    print(
        f"  {pages} pages in {h['busy_seconds']:.1f} s; max history {h['max_history_events']} "
        f"events / {h['max_history_bytes'] / 1024:.0f} KiB, at the end "
        f"{h['end_history_bytes']} B (durable.db {h['durable_db_bytes'] / 2**20:.1f} MiB); "
        f"replay per page: first generation {first * 1000:.3f} ms, last {last * 1000:.3f} ms"
    )
    name = "history.replay_ratio.last_vs_first_generation"
    ratio = (
        Metric.check(name, last / first, "x", "<=", 2.0)
        if first > 0
        else Metric.skip(name, "x", "<= 2", "no replay time recorded in the first generation")
    )
    return [
        Metric.report("history.max_history_events", h["max_history_events"], "events"),
        Metric.report("history.max_history_bytes", h["max_history_bytes"], "bytes"),
        Metric.report("history.end_history_bytes", h["end_history_bytes"], "bytes"),
        Metric.report("history.replay_ms_per_page.first_generation", first * 1000, "ms"),
        Metric.report("history.replay_ms_per_page.last_generation", last * 1000, "ms"),
        ratio,
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
