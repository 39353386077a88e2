"""Benchmark verdicts: a figure that was not measured is SKIP (``pass`` null), never PASS."""

from __future__ import annotations

import json

import pytest

from benchmarks import __main__ as runner
from benchmarks.common import Metric, write_results


def test_each_figure_has_a_verdict_and_a_skip_has_no_pass(tmp_path):
    figures = [
        Metric.check("a", 2.0, "x", ">=", 1.6),
        Metric.check("b", 1.0, "x", ">=", 1.6),
        Metric.report("c", 3.0, "s"),
        Metric.skip("d", "x", ">= 1.6", "emulators not installed"),
    ]
    rows = json.loads(write_results(figures, tmp_path / "r.json").read_text())["metrics"]
    assert [(r["verdict"], r["pass"]) for r in rows] == [
        ("PASS", True),
        ("MISS", False),
        ("REPORT", True),
        ("SKIP", None),
    ]
    assert rows[3]["value"] is None and rows[3]["reason"] == "emulators not installed"
    assert rows[3]["target"] == ">= 1.6"


@pytest.fixture
def missing_benchmark(monkeypatch):
    entry = ("99. not written yet", runner._optional("no_such_bench", "is not there yet"))
    monkeypatch.setitem(runner.BENCHMARKS, "nothing", entry)


def test_a_missing_benchmark_module_is_a_skip_not_a_crash(tmp_path, capsys, missing_benchmark):
    out = tmp_path / "latest.json"
    assert runner.main(["--only", "nothing", "--out", str(out)]) == 0  # a SKIP is no MISS
    [row] = json.loads(out.read_text())["metrics"]
    assert row["verdict"] == "SKIP" and row["pass"] is None
    printed = capsys.readouterr().out
    assert "SKIP   no_such_bench.missing" in printed
    assert "0 PASS, 0 MISS, 1 SKIP" in printed
    assert "benchmarks/no_such_bench.py is not there yet" in printed


def test_peers_run_only_when_asked():
    assert "peers" in runner.OPT_IN and "peers" in runner.BENCHMARKS
