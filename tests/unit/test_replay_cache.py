"""The replay cache: the live orchestrator fed only new events gives the actions a full
replay gives, on every episode (real SDK replay on both sides), and the engine falls back
to a full replay whenever the cache cannot be trusted."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import azure.durable_functions as df
import pytest

from datasync.runtime.durable import DurableEngine
from datasync.runtime.durable.sdk import (
    ReplaySession,
    invoke_orchestrator,
    orchestration_context,
)
from tests.unit.durable_support import drain, engine_for, output

bp = df.Blueprint()
attempts: dict[str, int] = {}
bodies: dict[str, int] = {}  # how often each orchestrator body started (one per replay)


@bp.activity_trigger(input_name="x", activity="double")
def double(x):
    return x * 2


@bp.activity_trigger(input_name="x", activity="flaky")
def flaky(x):
    attempts[x["key"]] = attempts.get(x["key"], 0) + 1
    if attempts[x["key"]] <= x["fail_times"]:
        raise ValueError(f"boom {attempts[x['key']]}")
    return "ok"


@bp.activity_trigger(input_name="x", activity="wait")
def wait(x):
    waiting.set()
    gate.wait(5)
    return x


gate = threading.Event()
waiting = threading.Event()


@bp.orchestration_trigger(context_name="context", orchestration="pages")
def pages(context):
    """A sync_flow-like loop: pull/push per page with retries, continue_as_new."""
    bodies["pages"] = bodies.get("pages", 0) + 1
    state = context.get_input()
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=5, max_number_of_attempts=3)
    for _ in range(3):
        n = yield context.call_activity("double", state["n"])
        key = f"{context.instance_id}-{state['gen']}-{n}"
        yield context.call_activity_with_retry("flaky", opts, {"key": key, "fail_times": 1})
        state["n"] = n
    if state["gen"] < 2:
        state["gen"] += 1
        context.continue_as_new(state)
        return None
    return state["n"]


@bp.orchestration_trigger(context_name="context", orchestration="mixed")
def mixed(context):
    """Fan-out, timers, a caught failure after exhausted retries, a uuid and the clock."""
    bodies["mixed"] = bodies.get("mixed", 0) + 1
    total = sum((yield context.task_all([context.call_activity("double", i) for i in range(4)])))
    yield context.create_timer(context.current_utc_datetime + timedelta(milliseconds=10))
    first = yield context.task_any(
        [
            context.call_activity("double", 7),
            context.create_timer(context.current_utc_datetime + timedelta(seconds=30)),
        ]
    )
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=5, max_number_of_attempts=2)
    try:
        yield context.call_activity_with_retry(
            "flaky", opts, {"key": context.instance_id, "fail_times": 9}
        )
        caught = "no"
    except Exception as exc:  # noqa: BLE001 - the SDK raises a plain Exception
        caught = str(exc).split(" \n ")[0]
    return [total, first.result, caught, str(context.new_uuid())[:8] != ""]


@bp.orchestration_trigger(context_name="context", orchestration="failing")
def failing(context):
    bodies["failing"] = bodies.get("failing", 0) + 1
    yield context.call_activity("double", 1)
    yield context.call_activity("double", 2)
    raise RuntimeError("orchestrator gave up")


@bp.orchestration_trigger(context_name="context", orchestration="stoppable")
def stoppable(context):
    yield context.call_activity("double", 1)
    yield context.call_activity("wait", 2)
    return "not reached"


def _engine(tmp_path, **kw) -> DurableEngine:
    return engine_for(bp, tmp_path / "durable.db", verify_replay=True, **kw)


def _assert_identical(engine: DurableEngine, at_least: int) -> None:
    check = engine.replay_check
    assert check.mismatches == []
    assert check.compared >= at_least
    cached = [e for e in engine.episodes if e.cached]
    assert len(cached) == check.compared


def test_success_retries_and_continue_as_new_match_a_full_replay_every_episode(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("pages", "p1", json.dumps({"n": 1, "gen": 0}))
    drain(engine)
    assert output(engine, "p1") == ("Completed", 512)
    # 3 generations × (6 results + 3 failed tries + 3 retry timers) episodes after each start
    _assert_identical(engine, at_least=30)


def test_fan_out_timers_and_exhausted_retries_match_a_full_replay(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("mixed", "m1", None)
    drain(engine)
    status, result = output(engine, "m1")
    assert status == "Completed"
    assert result[:2] == [12, 14] and result[2].startswith("Activity function 'flaky' failed")
    _assert_identical(engine, at_least=6)


def test_an_orchestrator_failure_matches_a_full_replay(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("failing", "f1", None)
    drain(engine)
    status, result = output(engine, "f1")
    assert status == "Failed" and "orchestrator gave up" in json.dumps(result)
    _assert_identical(engine, at_least=2)


def test_terminate_drops_the_live_orchestrator(tmp_path):
    engine = _engine(tmp_path)
    gate.clear()
    waiting.clear()
    engine.start_new("stoppable", "s1", None)
    worker = threading.Thread(target=lambda: drain(engine, 10))
    worker.start()
    try:
        assert waiting.wait(5)  # the cached episode that scheduled "wait" has committed
        assert any(e.cached for e in engine.episodes)
        assert "s1" in engine._history
        assert engine.terminate("s1", "stop")
    finally:
        gate.set()
        worker.join()
    assert output(engine, "s1") == ("Terminated", "stop")
    assert "s1" not in engine._history  # nothing kept of a terminated instance
    # started again under the same id: a new execution, replayed from its start
    engine.start_new("stoppable", "s1", None)
    drain(engine)
    assert output(engine, "s1") == ("Completed", "not reached")
    _assert_identical(engine, at_least=2)


def test_the_orchestrator_body_runs_once_per_generation_with_the_cache(tmp_path):
    bodies.clear()
    engine = engine_for(bp, tmp_path / "durable.db")
    engine.start_new("pages", "p2", json.dumps({"n": 1, "gen": 0}))
    drain(engine)
    assert output(engine, "p2") == ("Completed", 512)
    assert bodies["pages"] == 3  # one full replay per generation; then fed new events

    bodies.clear()
    plain = engine_for(bp, tmp_path / "plain.db", replay_cache=False)
    plain.start_new("pages", "p3", json.dumps({"n": 1, "gen": 0}))
    drain(plain)
    assert output(plain, "p3") == ("Completed", 512)
    assert bodies["pages"] == len(plain.episodes)  # a full replay every episode


def test_a_cold_cache_or_another_runtimes_append_replays_in_full(tmp_path):
    first = _engine(tmp_path, owner="a")
    first.start_new("failing", "c1", None)
    assert first.run_orchestration_once()  # schedules double(1); c1 is cached in "a"
    assert [e.cached for e in first.episodes] == [False]
    # another runtime (a cold cache: another process) runs the rest: a full replay first,
    # then its own cache for the episode its next activity unblocks
    second = _engine(tmp_path, owner="b")
    assert second.run_activity_once()
    assert [e.cached for e in second.episodes] == [False, True]
    assert output(second, "c1")[0] == "Failed"
    # the first runtime's entry is stale now (the history grew elsewhere): never used
    entry = first._history.get("c1")
    assert entry is not None
    row = first.store.instance("c1")
    assert row is not None and row["history_bytes"] != entry.size
    assert first._take_cached("c1", row["execution_id"], row["history_bytes"]) is None
    _assert_identical(second, at_least=1)


def test_a_session_that_breaks_falls_back_to_a_full_replay(tmp_path, caplog, monkeypatch):
    engine = _engine(tmp_path)
    engine.start_new("pages", "b1", json.dumps({"n": 1, "gen": 2}))
    assert engine.run_orchestration_once()
    assert engine._history["b1"].session is not None

    def broken(self, _events):
        raise RuntimeError("a bug on our side")

    monkeypatch.setattr(ReplaySession, "resume", broken)
    drain(engine)
    assert output(engine, "b1") == ("Completed", 8)
    assert "replaying in full" in caplog.text
    assert not any(e.cached for e in engine.episodes)


@pytest.mark.parametrize("name", ["pages", "mixed"])
def test_a_session_gives_the_sdk_handles_state_for_the_same_history(name):
    """Directly on the SDK: the first episode through a session and through the handle."""
    handle = next(
        fb._function.get_user_function()
        for fb in bp._function_builders
        if fb._function.get_function_name() == name
    )
    assert ReplaySession.supported(handle)
    started = {
        "EventType": 0,
        "EventId": -1,
        "IsPlayed": False,
        "Timestamp": "2026-12-01T10:00:00.000000Z",
        "Name": name,
        "Version": "",
        "Input": json.dumps({"n": 1, "gen": 0}),
    }
    opening = {
        "EventType": 12,
        "EventId": -1,
        "IsPlayed": False,
        "Timestamp": "2026-12-01T10:00:00.000000Z",
    }
    rows = [json.dumps(opening), json.dumps(started)]
    context = orchestration_context(rows, started["Input"], "x1")
    _, outcome = ReplaySession.start(handle, context)
    assert outcome == invoke_orchestrator(handle, context)
    assert outcome.actions


def test_a_stale_result_is_dropped_even_with_a_live_orchestrator(tmp_path, caplog):
    import time

    stalled = _engine(tmp_path, owner="a")
    stalled.start_new("failing", "t1", None)
    assert stalled.run_orchestration_once()  # "a" keeps t1's live orchestrator
    now = time.time()
    claimed = stalled.store.claim_activity("a", now, now + 0.05)  # then "a" stalls
    assert claimed is not None
    time.sleep(0.1)
    other = _engine(tmp_path, owner="b")
    drain(other)  # takes the work item over and finishes the run
    assert output(other, "t1")[0] == "Failed"
    before = other.store.instance("t1")
    stalled._activity_then_episode(claimed[0])  # "a" wakes up with its result
    assert "was taken over; its result is dropped" in caplog.text
    assert dict(other.store.instance("t1")) == dict(before)  # nothing changed
    assert "t1" not in stalled._history
