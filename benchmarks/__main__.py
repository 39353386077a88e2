"""``python -m benchmarks [--quick] [--only NAME ...] [--out PATH]``.

Runs the benchmarks, prints every figure with its target and PASS/MISS, and writes
``benchmarks/results/latest.json`` (``{"metrics": [{"name", "value", "unit", "target",
"pass"}]}``). Exit code 0 when every figure meets its target, 1 otherwise.
"""

from __future__ import annotations

import argparse
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


BENCHMARKS: dict[str, tuple[str, Callable[[bool], list[Metric]]]] = {
    "scheduler": ("1. scheduler tick on the embedded store", _scheduler),
    "orchestration": ("2. orchestration overhead on the local runtime", _orchestration),
    "sync": ("3. a real sync against loopback APIs vs plain httpx", _sync),
    "history": ("4. history stays bounded", _history),
    "emulators": ("5. on the emulators (Cosmos emulator server + Azurite)", _emulators),
    "masking": ("6. secret masking with thousands of secrets", _masking),
}


def _line(m: Metric) -> str:
    verdict = "    " if m.target == "report" else ("PASS" if m.passed else "MISS")
    return f"  {verdict}  {m.name:<58} {m.value:>14,.3f} {m.unit:<18} target {m.target}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
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
            got = [Metric(f"{name}.error", 0.0, "", f"runs: {type(exc).__name__}", False)]
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
    missed = [m for m in metrics if not m.passed]
    print(
        f"\n{len(metrics) - len(missed)}/{len(metrics)} figures meet their targets "
        f"in {total:.0f} s; results in {path}"
    )
    for m in missed:
        print(f"  MISS {m.name}: {m.value:,.3f} {m.unit} (target {m.target})")
    return 1 if missed or failed else 0


if __name__ == "__main__":
    sys.exit(main())
