"""The embedded Durable backend, driven through the real SDK replay."""
from __future__ import annotations

import json
import time

import azure.durable_functions as df
import pytest

from datasync.runtime.durable import DurableEngine

bp = df.Blueprint()
calls: dict[str, int] = {}


@bp.activity_trigger(input_name="x", activity="double")
def double(x):
    return x * 2


@bp.activity_trigger(input_name="x", activity="flaky")
def flaky(x):
    calls[x["key"]] = calls.get(x["key"], 0) + 1
    if calls[x["key"]] <= x["fail_times"]:
        raise ValueError(f"boom {calls[x['key']]}")
    return "ok"


@bp.orchestration_trigger(context_name="context", orchestration="sequence")
def sequence(context):
    a = yield context.call_activity("double", context.get_input())
    b = yield context.call_activity("double", a)
    return b


@bp.orchestration_trigger(context_name="context", orchestration="retrying")
def retrying(context):
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=10, max_number_of_attempts=3)
    args = context.get_input()
    try:
        result = yield context.call_activity_with_retry("flaky", opts, args)
    except Exception as exc:
        result = "caught: " + str(exc).split(" \n ")[0]
    after = yield context.call_activity("double", 21)
    return [result, after]


@bp.orchestration_trigger(context_name="context", orchestration="generations")
def generations(context):
    n = context.get_input()
    n = yield context.call_activity("double", n)
    if n < 40:
        context.continue_as_new(n)
        return None
    return n


@bp.orchestration_trigger(context_name="context", orchestration="fanout")
def fanout(context):
    results = yield context.task_all([context.call_activity("double", i) for i in range(5)])
    return sum(results)


@bp.orchestration_trigger(context_name="context", orchestration="failing")
def failing(context):
    yield context.call_activity("double", 1)
    raise RuntimeError("orchestrator gave up")


def _functions():
    fns = [b._function for b in bp._function_builders]
    orch = {f.get_trigger().orchestration: f.get_user_function() for f in fns
            if f.get_trigger().type == "orchestrationTrigger"}
    acts = {f.get_trigger().activity: (f.get_user_function(), f.get_trigger().name) for f in fns
            if f.get_trigger().type == "activityTrigger"}
    return orch, acts


def _engine(tmp_path, **kw) -> DurableEngine:
    orch, acts = _functions()
    return DurableEngine(tmp_path / "durable.db", orchestrators=orch, activities=acts, **kw)


def _drain(engine: DurableEngine, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not (engine.run_orchestration_once() or engine.run_activity_once()):
            if engine.active_count() == 0:
                return
            time.sleep(0.005)
    raise AssertionError("engine did not drain")


def _output(engine, instance_id):
    status = engine.get_status(instance_id)
    return status.runtime_status, json.loads(status.output)


def test_sequence_completes_with_output(tmp_path):
    engine = _engine(tmp_path)
    assert engine.start_new("sequence", "i1", json.dumps(5))
    _drain(engine)
    assert _output(engine, "i1") == ("Completed", 20)


def test_duplicate_start_is_refused_until_failed(tmp_path):
    engine = _engine(tmp_path)
    assert engine.start_new("sequence", "dup", json.dumps(1))
    assert not engine.start_new("sequence", "dup", json.dumps(1))
    _drain(engine)
    assert not engine.start_new("sequence", "dup", json.dumps(1))   # completed: still no
    assert engine.start_new("failing", "f1", "null")
    _drain(engine)
    assert engine.get_status("f1").runtime_status == "Failed"
    assert "orchestrator gave up" in engine.get_status("f1").output
    assert engine.start_new("failing", "f1", "null")                 # failed: may restart


@pytest.mark.parametrize("fail_times, expected", [
    (0, "ok"), (2, "ok"), (3, "caught: ValueError: boom 3"), (5, "caught: ValueError: boom 3")])
def test_retry_options_are_applied(tmp_path, fail_times, expected):
    engine = _engine(tmp_path)
    key = f"k{fail_times}-{tmp_path.name}"
    engine.start_new("retrying", "r", json.dumps({"key": key, "fail_times": fail_times}))
    _drain(engine)
    assert _output(engine, "r") == ("Completed", [expected, 42])
    assert calls[key] == min(fail_times + 1, 3)


def test_continue_as_new_starts_fresh_generations(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("generations", "g", json.dumps(3))
    _drain(engine)
    assert _output(engine, "g") == ("Completed", 48)
    assert engine.history_size("g") == (0, 0)     # history purged once finished


def test_fan_out(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("fanout", "fo", "null")
    _drain(engine)
    assert _output(engine, "fo") == ("Completed", 20)


def test_dead_runtime_work_is_taken_over(tmp_path):
    resumed: list[str] = []
    dead = _engine(tmp_path, owner="dead", lease_seconds=0.2)
    dead.start_new("sequence", "t", json.dumps(1))
    assert dead.run_orchestration_once()            # schedules the first activity
    # the dead runtime claims the activity and never finishes it (kill -9)
    with dead.db.write() as con:
        con.execute("UPDATE activities SET lease_owner = 'dead', lease_until = ?",
                    (time.time() + 0.2,))
    alive = _engine(tmp_path, owner="alive", on_resume=resumed.append)
    assert not alive.run_activity_once()            # still leased
    time.sleep(0.25)
    _drain(alive)
    assert _output(alive, "t") == ("Completed", 4)
    assert resumed == ["t"]
