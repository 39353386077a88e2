"""The real ``DurableOrchestrationClient`` against the engine's loopback HTTP API: it must
raise, return and report exactly what it does against the Durable extension."""

from __future__ import annotations

import asyncio
import json

import azure.durable_functions as df
import pytest

from datasync.runtime.durable import (
    DurableEngine,
    close_durable_client_session,
    fresh_durable_client_session,
)
from datasync.runtime.rpc import DurableRpcServer
from tests.unit.durable_support import drain

bp = df.Blueprint()


@bp.activity_trigger(input_name="x", activity="echo")
def echo(x):
    return x


@bp.orchestration_trigger(context_name="context", orchestration="once")
def once(context):
    return (yield context.call_activity("echo", context.get_input()))


@pytest.fixture
def served(tmp_path):
    fns = {f.get_trigger().type: f for f in (b._function for b in bp._function_builders)}
    engine = DurableEngine(
        tmp_path / "durable.db",
        orchestrators={"once": fns["orchestrationTrigger"].get_user_function()},
        activities={"echo": (fns["activityTrigger"].get_user_function(), "x")},
    )
    rpc = DurableRpcServer(engine).start()
    yield engine, rpc
    rpc.stop()
    engine.close()


def _client_call(rpc, call):
    async def run():
        fresh_durable_client_session()
        try:
            return await call(df.DurableOrchestrationClient(rpc.binding_json()))
        finally:
            await close_durable_client_session()

    return asyncio.run(run())


def test_starting_a_running_instance_raises_what_the_extension_answers(served):
    engine, rpc = served
    assert _client_call(rpc, lambda c: c.start_new("once", "run-1", {"a": 1})) == "run-1"
    with pytest.raises(Exception) as err:
        _client_call(rpc, lambda c: c.start_new("once", "run-1", {"a": 2}))
    body = err.value.args[0]  # the SDK raises Exception(<the 500 body>)
    assert body["Message"] == "Something went wrong while processing your request"
    assert body["ExceptionMessage"] == (
        "An Orchestration instance with the status Pending already exists."
    )
    assert (
        body["ExceptionType"] == "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException"
    )
    assert "already exists" in str(err.value)  # what the starter checks
    assert json.loads(engine.get_status("run-1").input) == {"a": 1}


def test_starting_a_completed_instance_replaces_it(served):
    engine, rpc = served
    _client_call(rpc, lambda c: c.start_new("once", "run-2", "first"))
    drain(engine)
    assert engine.get_status("run-2").runtime_status == "Completed"
    assert _client_call(rpc, lambda c: c.start_new("once", "run-2", "second")) == "run-2"
    status = _client_call(rpc, lambda c: c.get_status("run-2"))
    assert status.runtime_status.value == "Pending" and status.input_ == "second"
    drain(engine)
    assert json.loads(engine.get_status("run-2").output) == "second"


def test_an_unknown_orchestrator_raises_the_extensions_message(served):
    _, rpc = served
    with pytest.raises(Exception) as err:
        _client_call(rpc, lambda c: c.start_new("missing", "x", None))
    assert str(err.value) == (
        "The function 'missing' doesn't exist, is disabled, or is not an "
        "orchestrator function. Additional info: The following are the "
        "known orchestrator functions: 'once'."
    )


def test_status_and_terminate_answer_as_the_extension(served):
    engine, rpc = served
    assert not _client_call(rpc, lambda c: c.get_status("nobody"))
    with pytest.raises(Exception, match=r"No instance with ID 'nobody' found."):
        _client_call(rpc, lambda c: c.terminate("nobody", "why"))
    _client_call(rpc, lambda c: c.start_new("once", "t-1", 1))
    _client_call(rpc, lambda c: c.terminate("t-1", "enough"))
    assert engine.get_status("t-1").runtime_status == "Terminated"
    _client_call(rpc, lambda c: c.terminate("t-1", "again"))  # 410: no error
    status = _client_call(rpc, lambda c: c.get_status("t-1"))
    assert status.runtime_status.value == "Terminated" and status.output == "enough"
