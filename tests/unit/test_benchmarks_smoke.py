"""The benchmark runner's quick mode: it runs and writes results in the documented shape."""

from __future__ import annotations

import json

from benchmarks.__main__ import main


def test_quick_scheduler_benchmark_writes_metrics_in_the_documented_shape(tmp_path, capsys):
    out = tmp_path / "latest.json"
    main(["--quick", "--only", "scheduler", "--out", str(out)])  # exit code: timings vary
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics, capsys.readouterr().out
    for m in metrics:
        assert set(m) == {"name", "value", "unit", "target", "pass", "verdict", "reason"}
        assert isinstance(m["name"], str) and isinstance(m["value"], (int, float))
        assert isinstance(m["unit"], str) and isinstance(m["target"], str)
        assert isinstance(m["pass"], bool)  # null only for a SKIP, which this run has none of
        assert m["verdict"] in ("PASS", "MISS", "REPORT")
    assert set(json.loads(out.read_text())) == {"metrics"}
    names = {m["name"] for m in metrics}
    assert "scheduler.tick_seconds.1k_tenants" in names
    assert not any(n.endswith(".error") for n in names), capsys.readouterr().out
    printed = capsys.readouterr().out
    assert "target" in printed and "scheduler.due_flows_per_second" in printed
