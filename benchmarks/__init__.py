"""DataSync benchmarks: ``python -m benchmarks [--quick] [--only NAME ...]``.

Each benchmark returns :class:`~benchmarks.common.Metric` values; the runner prints them
with their targets and writes ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

__all__: list[str] = []
