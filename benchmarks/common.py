"""Shared pieces: the metric record, result file, subprocess helpers, memory readings."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS",
    "ROOT",
    "Metric",
    "current_rss_mb",
    "peak_rss_mb",
    "python",
    "run_json",
    "write_results",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"


@dataclass
class Metric:
    """One figure: ``target`` is text (``"< 3"``, ``">= 20000"``, ``"report"``).

    ``passed`` is None for a figure that was not measured (:meth:`skip`): its verdict is
    ``SKIP``, never ``PASS``; a ``"report"`` figure has no bound (verdict ``REPORT``)."""

    name: str
    value: float | None
    unit: str
    target: str
    passed: bool | None
    reason: str | None = None

    @classmethod
    def check(cls, name: str, value: float, unit: str, op: str, bound: float) -> Metric:
        ok = {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[
            op
        ]
        return cls(name, round(value, 4), unit, f"{op} {bound:g}", ok)

    @classmethod
    def report(cls, name: str, value: float, unit: str) -> Metric:
        return cls(name, round(value, 4), unit, "report", True)

    @classmethod
    def skip(cls, name: str, unit: str, target: str, reason: str) -> Metric:
        """A figure that could not be measured here (``target`` as :meth:`check` writes
        it, e.g. ``">= 1.6"``, or ``"report"``), and why."""
        return cls(name, None, unit, target, None, reason)

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "SKIP"
        if self.target == "report":
            return "REPORT"
        return "PASS" if self.passed else "MISS"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["pass"] = d.pop("passed")
        d["verdict"] = self.verdict
        return d


def write_results(metrics: list[Metric], path: Path = RESULTS) -> Path:
    """``{"metrics": [{"name", "value", "unit", "target", "pass", "verdict", "reason"}]}``:
    ``pass`` and ``value`` are null for a skipped figure (verdict ``SKIP``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": [m.to_json() for m in metrics]}, indent=2) + "\n")
    return path


def python() -> str:
    return sys.executable


def run_json(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600
) -> dict[str, Any]:
    """Run ``python -m ...`` in a fresh process; its last stdout line is a JSON object."""
    proc = subprocess.run(
        [python(), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return peak_rss_mb()
