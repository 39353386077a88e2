"""The engine contains flow code: a work item whose process keeps dying is failed after
a bounded number of take-overs, and an activity past ``functionTimeout`` fails with the
host's text while the runtime goes on serving."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import azure.durable_functions as df
import pytest

from datasync.config import Settings
from datasync.exceptions import ConfigError
from datasync.runtime.durable import DurableEngine
from datasync.runtime.durable.deadline import CallTimedOut, DeadlineRunner
from datasync.runtime.durable.wording import timespan
from datasync.runtime.host import HostConfig, function_timeout
from tests.unit.durable_support import drain, engine_for, output

bp = df.Blueprint()
release = threading.Event()


@bp.activity_trigger(input_name="x", activity="double")
def double(x):
    return x * 2


@bp.activity_trigger(input_name="x", activity="hangs")
def hangs(x):
    release.wait(30)
    return "late"


@bp.orchestration_trigger(context_name="context", orchestration="calls")
def calls_one(context):
    name, arg = context.get_input()
    try:
        return (yield context.call_activity(name, arg))
    except Exception as exc:  # noqa: BLE001 - the SDK raises a plain Exception
        return "caught: " + str(exc).split(" \n ")[0]


def _engine(tmp_path, **kw) -> DurableEngine:
    return engine_for(bp, tmp_path / "durable.db", **kw)


def _die_running_it(engine: DurableEngine, owner: str) -> None:
    """A runtime ``owner`` claims the work item and dies in it (its lease runs out)."""
    now = time.time()
    assert engine.store.claim_activity(owner, now, now + 0.05) is not None
    time.sleep(0.06)


# -- deaths ------------------------------------------------------------------------------


def test_a_work_item_whose_process_died_three_times_fails_instead_of_running(tmp_path):
    engine = _engine(tmp_path, owner="alive")
    engine.start_new("calls", "d", json.dumps(["double", 21]))
    assert engine.run_orchestration_once()
    for n in range(3):
        _die_running_it(engine, f"dead-{n}")
    drain(engine)
    assert output(engine, "d") == (
        "Completed",
        (
            "caught: Activity function 'double' failed:  ActivityProcessDied: the process "
            "running double died 3 times (exit without result)"
        ),
    )


def test_fewer_deaths_are_taken_over_and_run(tmp_path):
    engine = _engine(tmp_path, owner="alive")
    engine.start_new("calls", "d", json.dumps(["double", 21]))
    assert engine.run_orchestration_once()
    for n in range(2):
        _die_running_it(engine, f"dead-{n}")
    drain(engine)
    assert output(engine, "d") == ("Completed", 42)


def test_a_lease_handed_back_on_shutdown_is_not_a_death(tmp_path):
    engine = _engine(tmp_path, owner="alive")
    engine.start_new("calls", "d", json.dumps(["double", 21]))
    assert engine.run_orchestration_once()
    for n in range(4):
        now = time.time()
        assert engine.store.claim_activity(f"stopping-{n}", now, now + 60) is not None
        engine.store.release_all(f"stopping-{n}")  # a clean stop hands it back
    drain(engine)
    assert output(engine, "d") == ("Completed", 42)


def test_a_durable_db_from_before_the_deaths_column_is_migrated(tmp_path):
    con = sqlite3.connect(tmp_path / "durable.db")
    con.execute(
        "CREATE TABLE activities (id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT "
        "NULL, execution_id TEXT NOT NULL, task_id INTEGER NOT NULL, name TEXT NOT NULL, "
        "input TEXT, lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0)"
    )
    con.close()
    engine = _engine(tmp_path)
    engine.start_new("calls", "d", json.dumps(["double", 2]))
    drain(engine)
    assert output(engine, "d") == ("Completed", 4)


# -- functionTimeout ---------------------------------------------------------------------


def test_an_activity_past_the_timeout_fails_with_the_hosts_text_and_the_worker_goes_on(
    tmp_path,
):
    release.clear()
    engine = _engine(tmp_path, activity_timeout=0.3)
    try:
        engine.start_new("calls", "h", json.dumps(["hangs", None]))
        engine.start_new("calls", "ok", json.dumps(["double", 5]))
        started = time.time()
        drain(engine)
        assert time.time() - started < 5
        assert output(engine, "h") == (
            "Completed",
            (
                "caught: Activity function 'hangs' failed: Timeout value of 00:00:00.3000000 "
                "was exceeded by function: Functions.hangs"
            ),
        )
        assert output(engine, "ok") == ("Completed", 10)
    finally:
        release.set()
        engine.close()


def test_calls_within_the_timeout_reuse_their_thread():
    runner = DeadlineRunner()
    names = {runner.call(lambda: threading.current_thread().name, 5) for _ in range(5)}
    assert len(names) == 1
    runner.close()


def test_an_abandoned_call_leaves_the_runner_usable_and_errors_pass_through():
    gate = threading.Event()
    runner = DeadlineRunner()
    with pytest.raises(CallTimedOut):
        runner.call(lambda: gate.wait(10), 0.1)
    assert runner.abandoned == 1
    assert runner.call(lambda: 7, 5) == 7

    def interrupt():
        raise KeyboardInterrupt("from flow code")

    with pytest.raises(KeyboardInterrupt):
        runner.call(interrupt, 5)

    def slow_socket():
        raise TimeoutError("the step's own timeout")  # not the runner's

    with pytest.raises(TimeoutError, match="own timeout"):
        runner.call(slow_socket, 5)
    gate.set()
    runner.close()


@pytest.mark.parametrize(
    "seconds, text",
    [(600, "00:10:00"), (2, "00:00:02"), (0.5, "00:00:00.5000000"), (90061, "1.01:01:01")],
)
def test_timespans_are_printed_as_dotnet_does(seconds, text):
    assert timespan(seconds) == text


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("00:10:00", 600.0),
        ("1.00:00:00", 86400.0),
        ("00:00:02.5", 2.5),
        ("-1", None),
        (None, 1800.0),
    ],
)
def test_host_json_function_timeout(value, seconds):
    assert function_timeout(value) == seconds


@pytest.mark.parametrize("value", ["ten minutes", "00:00:00", "10"])
def test_a_bad_function_timeout_is_a_config_error(value):
    with pytest.raises(ConfigError, match="functionTimeout"):
        function_timeout(value)


def test_host_config_reads_function_timeout(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"functionTimeout": "00:05:00"}))
    assert HostConfig.load(tmp_path, Settings.from_env({})).function_timeout == 300.0
    (tmp_path / "host.json").write_text(json.dumps({"functionTimeout": "-1"}))
    assert HostConfig.load(tmp_path, Settings.from_env({})).function_timeout is None


@pytest.mark.parametrize("value", ["0", "abc", "-1"])
def test_a_bad_flow_import_timeout_names_the_setting(value):
    with pytest.raises(ConfigError, match="DATASYNC_FLOW_IMPORT_TIMEOUT"):
        Settings.from_env({"DATASYNC_FLOW_IMPORT_TIMEOUT": value})


@bp.activity_trigger(input_name="x", activity="where")
def where(x):
    return threading.current_thread().name


@pytest.mark.timeout(30)
def test_inline_activities_past_the_timeout_are_failed_by_the_watchdog_and_replaced(
    tmp_path,
):
    """With a host that can replace its workers (``on_abandon``), activities run on the
    worker's own thread; one past the timeout is failed, another worker takes its place,
    and the stuck thread stops once its call returns (its late result is dropped)."""
    from datasync.runtime.durable.deadline import CallAbandoned

    release.clear()
    stop = threading.Event()
    workers: list[threading.Thread] = []
    ended: list[str] = []

    def worker() -> None:
        while not stop.is_set():
            try:
                if not engine.run_activity_once():
                    time.sleep(0.005)
            except CallAbandoned:
                ended.append(threading.current_thread().name)
                return

    def spawn() -> None:
        thread = threading.Thread(target=worker, name=f"worker-{len(workers)}", daemon=True)
        workers.append(thread)
        thread.start()

    engine = _engine(tmp_path, activity_timeout=0.3, on_abandon=spawn)
    spawn()
    try:
        engine.start_new("calls", "h", json.dumps(["hangs", None]))
        engine.start_new("calls", "w", json.dumps(["where", None]))
        deadline = time.time() + 10
        while engine.active_count() and time.time() < deadline:
            if not engine.run_orchestration_once():
                time.sleep(0.005)
        assert output(engine, "h") == (
            "Completed",
            (
                "caught: Activity function 'hangs' failed: Timeout value of 00:00:00.3000000 "
                "was exceeded by function: Functions.hangs"
            ),
        )
        status, ran_on = output(engine, "w")
        assert status == "Completed" and ran_on.startswith("worker-")  # no hand-off
        assert len(workers) == 2  # the stuck worker was replaced
        release.set()
        workers[0].join(5)
        assert ended == ["worker-0"]  # it stopped serving once its call returned
        assert output(engine, "h")[1].startswith("caught: Activity function 'hangs' failed")
    finally:
        release.set()
        stop.set()
        for thread in workers:
            thread.join(5)
        engine.close()
