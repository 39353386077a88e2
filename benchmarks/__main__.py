"""``python -m benchmarks [--quick] [--peers] [--only NAME ...] [--out PATH]``.

Runs the benchmarks, prints every figure with its target and PASS/MISS/SKIP (REPORT for a
figure without a bound), and writes ``benchmarks/results/latest.json`` (``{"metrics":
[{"name", "value", "unit", "target", "pass", "verdict", "reason"}]}``; ``pass`` is null for
a skipped figure). ``--peers`` adds Prefect 3 and dlt doing the same sync (in their own
venv, ``.venv-peers/``, built on first use). Exit code 0 when no figure misses its
target (a SKIP is not a miss), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .common import RESULTS, Metric, write_results

__all__ = ["BENCHMARKS", "main"]


def _scheduler(quick: bool) -> list[Metric]:
    from .scheduler import run

    return run(quick)


def _orchestration(quick: bool) -> list[Metric]:
    from .runtime import run_orchestrations

    return run_orchestrations(quick)


def _sync(quick: bool) -> list[Metric]:
    from .sync import run

    return run(quick)


def _history(quick: bool) -> list[Metric]:
    from .runtime import run_history

    return run_history(quick)


def _emulators(quick: bool) -> list[Metric]:
    from .emulators import run

    return run(quick)


def _masking(quick: bool) -> list[Metric]:
    from .masking import run

    return run(quick)


def _latency(quick: bool) -> list[Metric]:
    from .sync import run_latency

    return run_latency(quick)


def _page_sizes(quick: bool) -> list[Metric]:
    from .sync import run_page_sizes

    return run_page_sizes(quick)


def _peers(quick: bool) -> list[Metric]:
    from .peers import run

    return run(quick)


def _optional(module: str, what: str) -> Callable[[bool], list[Metric]]:
    """Another helper's benchmark module: a SKIP figure while it does not exist."""

    def bench(quick: bool) -> list[Metric]:
        if importlib.util.find_spec(f"benchmarks.{module}") is None:
            return [
                Metric.skip(f"{module}.missing", "", "report", f"benchmarks/{module}.py {what}")
            ]
        run: Callable[[bool], list[Metric]] = importlib.import_module(f"benchmarks.{module}").run
        return run(quick)

    return bench


BENCHMARKS: dict[str, tuple[str, Callable[[bool], list[Metric]]]] = {
    "scheduler": ("1. scheduler tick on the embedded store", _scheduler),
    "orchestration": ("2. orchestration overhead on the local runtime", _orchestration),
    "sync": ("3. a real sync against loopback APIs vs plain httpx", _sync),
    "latency": ("3a. a latency-bound sync (20 ms per request) vs plain httpx", _latency),
    "pages": ("3b. page sizes 50 / 500 / 5,000, CPU-bound, vs plain httpx", _page_sizes),
    "history": ("4. history stays bounded", _history),
    "emulators": ("5. on the emulators (Cosmos emulator server + Azurite)", _emulators),
    "masking": ("6. secret masking with thousands of secrets", _masking),
    "lateness": (
        "7. start lateness of scheduled runs",
        _optional("lateness", "is not there yet"),
    ),
    "console": ("8. the web console", _optional("console", "is not there yet")),
    "peers": ("9. peers: Prefect 3 and dlt doing the same sync (--peers)", _peers),
}
OPT_IN = {"peers"}
"""Run only when asked (``--peers`` or ``--only peers``): they need their own venv."""


def _line(m: Metric) -> str:
    value = "-" if m.value is None else f"{m.value:,.3f}"
    why = f" ({m.reason})" if m.reason else ""
    return f"  {m.verdict:<6} {m.name:<58} {value:>14} {m.unit:<18} target {m.target}{why}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run Prefect 3 and dlt on the same sync (builds .venv-peers/ on first use)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args(argv)
    names = args.only or [n for n in BENCHMARKS if n not in OPT_IN or args.peers]
    metrics: list[Metric] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in names:
        title, bench = BENCHMARKS[name]
        print(f"\n{title}", flush=True)
        t0 = time.perf_counter()
        try:
            got = bench(args.quick)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            got = [Metric(f"{name}.error", None, "", f"runs: {type(exc).__name__}", False)]
        for m in got:
            print(_line(m), flush=True)
        metrics += got
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    total = time.perf_counter() - started
    path = write_results(metrics, args.out)
    print(
        f"\nmachine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}{' (quick run)' if args.quick else ''}"
    )
    count = {v: sum(m.verdict == v for m in metrics) for v in ("PASS", "MISS", "SKIP", "REPORT")}
    print(
        f"\n{count['PASS']} PASS, {count['MISS']} MISS, {count['SKIP']} SKIP, "
        f"{count['REPORT']} reported without a target, in {total:.0f} s; results in {path}"
    )
    for m in metrics:
        if m.verdict in ("MISS", "SKIP"):
            value = "-" if m.value is None else f"{m.value:,.3f} {m.unit}"
            why = f": {m.reason}" if m.reason else ""
            print(f"  {m.verdict} {m.name}: {value} (target {m.target}){why}")
    return 1 if count["MISS"] or failed else 0


if __name__ == "__main__":
    sys.exit(main())
