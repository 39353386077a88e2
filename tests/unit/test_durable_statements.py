"""Statements per step of the embedded engine, counted with SQLite's own trace hook: a step
of a sequential orchestration (an activity's result and the episode it unblocks) costs a
fixed, small number of statements."""

from __future__ import annotations

import json

import azure.durable_functions as df

from tests.unit.durable_support import drain, engine_for, output

bp = df.Blueprint()


@bp.activity_trigger(input_name="x", activity="inc")
def inc(x):
    return x + 1


@bp.orchestration_trigger(context_name="context", orchestration="steps")
def steps(context):
    n = context.get_input()
    for _ in range(context.get_input() or 10):
        n = yield context.call_activity("inc", n)
    return n


def _statements(tmp_path, name: str, steps_: int) -> list[str]:
    engine = engine_for(bp, tmp_path / f"{name}.db")
    seen: list[str] = []
    engine.db.connect().set_trace_callback(seen.append)
    engine.start_new("steps", name, json.dumps(steps_))
    drain(engine)
    assert output(engine, name) == ("Completed", 2 * steps_)
    return seen


def test_a_step_costs_a_fixed_number_of_statements(tmp_path):
    short, long = _statements(tmp_path, "a", 5), _statements(tmp_path, "b", 25)
    per_step = (len(long) - len(short)) / 20
    # the look before the step (the instance row and its inbox: one statement), then in
    # one transaction (BEGIN, COMMIT): the work item, the instance, its inbox, the history
    # rows (four), the next work item, the instance update; then reading that work item
    assert per_step <= 13, per_step
    inbox_only = [s for s in long if "FROM inbox" in s and "FROM instances" not in s]
    assert len(inbox_only) < 2 * 25  # one inbox look per step in the commit, not two
    assert sum("FROM inbox" in s and "FROM instances" in s for s in long) >= 25
