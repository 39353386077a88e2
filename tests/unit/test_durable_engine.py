"""The embedded Durable backend, driven through the real SDK replay."""

from __future__ import annotations

import json
import threading
import time

import azure.durable_functions as df
import pytest

from datasync.runtime.durable import (
    DurableEngine,
    InstanceExistsError,
    ReplaySchema,
    UnknownOrchestratorError,
)
from datasync.runtime.host import index_functions
from tests.unit.durable_support import drain, engine_for, output

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


@bp.activity_trigger(input_name="x", activity="exits")
def exits(x):
    raise {"exit": SystemExit, "interrupt": KeyboardInterrupt}[x](3)


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
    except Exception as exc:  # noqa: BLE001 - the SDK raises a plain Exception
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


@bp.orchestration_trigger(context_name="context", orchestration="timers")
def timers(context):
    from datetime import timedelta

    yield context.create_timer(context.current_utc_datetime + timedelta(milliseconds=30))
    first = yield context.task_any(
        [
            context.call_activity("double", 4),
            context.create_timer(context.current_utc_datetime + timedelta(seconds=30)),
        ]
    )
    both = yield context.task_all(
        [
            context.call_activity_with_retry("double", df.RetryOptions(10, 2), 5),
            context.create_timer(context.current_utc_datetime + timedelta(milliseconds=20)),
        ]
    )
    return [first.result, both[0]]


@bp.orchestration_trigger(context_name="context", orchestration="failing")
def failing(context):
    yield context.call_activity("double", 1)
    raise RuntimeError("orchestrator gave up")


@bp.orchestration_trigger(context_name="context", orchestration="calls")
def calls_one(context):
    name, arg = context.get_input()
    try:
        return (yield context.call_activity(name, arg))
    except Exception as exc:  # noqa: BLE001 - the SDK raises a plain Exception
        return "caught: " + str(exc).split(" \n ")[0]


def _engine(tmp_path, **kw) -> DurableEngine:
    return engine_for(bp, tmp_path / "durable.db", **kw)


def test_sequence_completes_with_output(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("sequence", "i1", json.dumps(5))
    drain(engine)
    assert output(engine, "i1") == ("Completed", 20)


def test_start_on_an_active_instance_fails_with_the_extensions_message(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("sequence", "dup", json.dumps(1))
    with pytest.raises(InstanceExistsError) as pending:
        engine.start_new("sequence", "dup", json.dumps(2))
    assert str(pending.value) == "An Orchestration instance with the status Pending already exists."
    engine.run_orchestration_once()  # first episode: now Running
    with pytest.raises(
        InstanceExistsError,
        match=r"^An Orchestration instance with the status Running already exists.$",
    ):
        engine.start_new("sequence", "dup", json.dumps(2))
    drain(engine)
    assert output(engine, "dup") == ("Completed", 4)  # the refused starts changed nothing


@pytest.mark.parametrize("end", ["Completed", "Failed", "Terminated"])
def test_start_on_a_finished_instance_replaces_it(tmp_path, end):
    engine = _engine(tmp_path)
    engine.start_new("failing" if end == "Failed" else "sequence", "again", json.dumps(1))
    if end == "Terminated":
        assert engine.terminate("again", "stop")
    drain(engine)
    assert engine.get_status("again").runtime_status == end
    engine.start_new("sequence", "again", json.dumps(10))
    assert engine.get_status("again").runtime_status == "Pending"
    drain(engine)
    assert output(engine, "again") == ("Completed", 40)


def test_concurrent_starts_of_one_id_create_it_once(tmp_path):
    engine = _engine(tmp_path)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def start(i):
        barrier.wait()
        try:
            engine.start_new("sequence", "race", json.dumps(i))
            outcomes.append("created")
        except InstanceExistsError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["Pending"] * 7 + ["created"]


def test_unknown_orchestrator_is_refused_with_the_extensions_message(tmp_path):
    engine = _engine(tmp_path)
    with pytest.raises(UnknownOrchestratorError) as err:
        engine.start_new("nope", "x", None)
    assert str(err.value).startswith(
        "The function 'nope' doesn't exist, is disabled, or is not "
        "an orchestrator function. Additional info: The following "
        "are the known orchestrator functions: 'calls', "
    )
    assert engine.get_status("x") is None


def test_failed_orchestrator_output_is_worded_as_the_extension_does(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("failing", "f1", "null")
    drain(engine)
    assert output(engine, "f1") == (
        "Failed",
        "Orchestrator function 'failing' failed: orchestrator gave up",
    )


@pytest.mark.parametrize(
    "fail_times, expected",
    [
        (0, "ok"),
        (2, "ok"),
        (3, "caught: Activity function 'flaky' failed:  ValueError: boom 3"),
        (5, "caught: Activity function 'flaky' failed:  ValueError: boom 3"),
    ],
)
def test_retry_options_are_applied(tmp_path, fail_times, expected):
    engine = _engine(tmp_path)
    key = f"k{fail_times}-{tmp_path.name}"
    engine.start_new("retrying", "r", json.dumps({"key": key, "fail_times": fail_times}))
    drain(engine)
    assert output(engine, "r") == ("Completed", [expected, 42])
    assert calls[key] == min(fail_times + 1, 3)


@pytest.mark.parametrize(
    "how, text", [("exit", "SystemExit: 3"), ("interrupt", "KeyboardInterrupt: 3")]
)
def test_a_base_exception_fails_the_activity_not_the_worker(tmp_path, how, text):
    engine = _engine(tmp_path)
    engine.start_new("calls", "b", json.dumps(["exits", how]))
    drain(engine)  # would raise out of run_activity_once
    assert output(engine, "b") == (
        "Completed",
        f"caught: Activity function 'exits' failed:  {text}",
    )


def test_a_missing_activity_fails_as_the_extension_says(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("calls", "m", json.dumps(["nope", 1]))
    drain(engine)
    assert output(engine, "m") == (
        "Completed",
        ("caught: Activity function 'nope' failed: Activity function 'nope' does not exist."),
    )


def test_continue_as_new_starts_fresh_generations(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("generations", "g", json.dumps(3))
    drain(engine)
    assert output(engine, "g") == ("Completed", 48)
    assert engine.history_size("g") == (0, 0)  # history purged once finished


def test_fan_out(tmp_path):
    engine = _engine(tmp_path)
    engine.start_new("fanout", "fo", "null")
    drain(engine)
    assert output(engine, "fo") == ("Completed", 20)


CASES = [
    ("sequence", 5, ("Completed", 20)),
    ("retrying", {"key": "d-ok", "fail_times": 1}, ("Completed", ["ok", 42])),
    (
        "retrying",
        {"key": "d-bad", "fail_times": 9},
        ("Completed", ["caught: Activity function 'flaky' failed:  ValueError: boom 3", 42]),
    ),
    ("generations", 3, ("Completed", 48)),
    ("fanout", None, ("Completed", 20)),
    ("timers", None, ("Completed", [8, 10])),
    ("failing", None, ("Failed", ("Orchestrator function 'failing' failed: orchestrator gave up"))),
]


@pytest.mark.parametrize(
    "name, arg, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_replay_schema_v3_ends_where_v1_did(tmp_path, name, arg, expected):
    """The same orchestrations under the V1 protocol (what the engine spoke before) and V3
    (what the extension speaks): same end state, same number of episodes and history."""
    results = []
    for schema in (ReplaySchema.V1, ReplaySchema.V3):
        if isinstance(arg, dict):
            calls.pop(arg["key"], None)
        engine = _engine(tmp_path / f"s{schema}", replay_schema=schema)
        engine.start_new(name, "d", json.dumps(arg))
        drain(engine)
        results.append((output(engine, "d"), [e.history_events for e in engine.episodes]))
        engine.close()
    assert results[0] == results[1]
    assert results[1][0] == expected


def test_dead_runtime_work_is_taken_over(tmp_path, caplog):
    resumed: list[str] = []
    dead = _engine(tmp_path, owner="dead", lease_seconds=0.2)
    dead.start_new("sequence", "t", json.dumps(1))
    assert dead.run_orchestration_once()  # schedules the first activity
    # the dead runtime claims the activity and never finishes it (kill -9)
    with dead.db.write() as con:
        con.execute(
            "UPDATE activities SET lease_owner = 'dead', lease_until = ?", (time.time() + 0.2,)
        )
    alive = _engine(tmp_path, owner="alive", on_resume=resumed.append)
    assert not alive.run_activity_once()  # still leased
    time.sleep(0.25)
    drain(alive)
    assert output(alive, "t") == ("Completed", 4)
    assert resumed == ["t"]
    assert "taking over t from a runtime that stopped (dead)" in caplog.text  # tests/faults


def test_an_instance_whose_runtime_died_mid_episode_is_resumed_once(tmp_path):
    resumed: list[str] = []
    dead = _engine(tmp_path, owner="dead", lease_seconds=0.2)
    dead.start_new("sequence", "e", json.dumps(2))
    with dead.db.write() as con:  # claimed, then the runtime died
        con.execute(
            "UPDATE instances SET lease_owner = 'dead', lease_until = ?", (time.time() + 0.2,)
        )
    alive = _engine(tmp_path, owner="alive", on_resume=resumed.append)
    assert not alive.run_orchestration_once()
    time.sleep(0.25)
    drain(alive)
    assert output(alive, "e") == ("Completed", 8)
    assert resumed == ["e"]


def test_an_instance_terminated_while_its_episode_replays_stays_terminated(tmp_path):
    found = index_functions(bp)
    engine_ref: list[DurableEngine] = []
    sdk_handle = found.orchestrators["sequence"]

    def terminating_handle(context: str) -> str:  # terminate between load and commit
        engine_ref[0].terminate("t1", "stopped mid-episode")
        return sdk_handle(context)

    engine = DurableEngine(
        tmp_path / "durable.db",
        orchestrators={"sequence": terminating_handle},
        activities=found.activities,
    )
    engine_ref.append(engine)
    engine.start_new("sequence", "t1", json.dumps(5))
    engine.run_orchestration_once()
    assert engine.get_status("t1").runtime_status == "Terminated"
    assert not engine.run_activity_once()  # nothing was scheduled by the dropped episode
    assert engine.active_count() == 0
