"""Write transactions of the embedded engine, counted with SQLite's own trace hook: one per
step of a sequential orchestration, none while idle; concurrent starts keep the extension's
semantics (one wins, the others see OrchestrationAlreadyExists; a finished one is replaced)."""

from __future__ import annotations

import json
import threading

import azure.durable_functions as df

from datasync.runtime.durable import DurableEngine, InstanceExistsError
from tests.unit.durable_support import drain, engine_for, output

bp = df.Blueprint()


@bp.activity_trigger(input_name="x", activity="inc")
def inc(x):
    return x + 1


@bp.orchestration_trigger(context_name="context", orchestration="steps")
def steps(context):
    n = context.get_input()
    for _ in range(10):
        n = yield context.call_activity("inc", n)
    return n


def _count_writes(engine: DurableEngine) -> list[str]:
    begun: list[str] = []
    engine.db.connect().set_trace_callback(
        lambda sql: begun.append(sql) if sql.startswith("BEGIN IMMEDIATE") else None
    )
    return begun


def test_a_sequential_orchestration_commits_once_per_step(tmp_path):
    engine = engine_for(bp, tmp_path / "durable.db")
    begun = _count_writes(engine)
    engine.start_new("steps", "s1", json.dumps(0))
    drain(engine)
    assert output(engine, "s1") == ("Completed", 10)
    # start + first episode + claim of the first activity, then one per activity
    # (its result and the episode it unblocks); before: four per step
    assert len(begun) <= 3 + 10


def test_an_idle_engine_takes_no_write_lock(tmp_path):
    engine = engine_for(bp, tmp_path / "durable.db")
    engine.start_new("steps", "s2", json.dumps(0))
    drain(engine)
    begun = _count_writes(engine)
    for _ in range(20):
        assert not engine.run_orchestration_once()
        assert not engine.run_activity_once()
    assert begun == []


def test_concurrent_starts_keep_the_extensions_semantics(tmp_path):
    engine = engine_for(bp, tmp_path / "durable.db")
    results: dict[str, list[str]] = {}
    lock = threading.Lock()

    def start(instance_id: str) -> None:
        try:
            engine.start_new("steps", instance_id, json.dumps(0))
            outcome = "started"
        except InstanceExistsError as exc:
            outcome = str(exc)
        with lock:
            results.setdefault(instance_id, []).append(outcome)

    threads = [threading.Thread(target=start, args=(f"c{i % 10}",)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for outcomes in results.values():
        assert outcomes.count("started") == 1
        assert (
            outcomes.count("An Orchestration instance with the status Pending already exists.")
            == len(outcomes) - 1
        )
    drain(engine)
    assert all(output(engine, f"c{i}") == ("Completed", 10) for i in range(10))
    engine.start_new("steps", "c0", json.dumps(5))  # finished: replaced by a new execution
    drain(engine)
    assert output(engine, "c0") == ("Completed", 15)
