"""``sync_flow`` replayed by the real Durable SDK on the embedded engine, with the
activities replaced by in-memory fakes (the flow side is covered end to end elsewhere)."""

from __future__ import annotations

import json
import time

import pytest

from datasync.exceptions import PermanentError, SecretNotFound
from datasync.functions import bindings as names
from datasync.functions import orchestrator
from datasync.functions.guard import guarded
from datasync.functions.orchestrator import blueprint
from datasync.runtime.durable import DurableEngine
from datasync.runtime.durable.wording import PROCESS_DIED


class FakeSource:
    """Pages of the given sizes; records its activity calls."""

    def __init__(self, sizes, fail_pull_at=None, stuck=False, error=None, cursor_from=None):
        self.sizes, self.fail_pull_at, self.stuck = sizes, fail_pull_at, stuck
        self.error = error or ConnectionError("source down")
        self.cursor_from = cursor_from  # page index from which the cursor stops advancing
        self.calls: list[tuple[str, dict]] = []
        self.finished: dict | None = None
        self.checkpoints: list[dict] = []

    def activities(self):
        def begin(args):
            self.calls.append(("begin", args))
            return {"cursor": None, "state": {}, "pages": 0, "recordsIn": 0, "recordsOut": 0}

        def pull(args):
            self.calls.append(("pull", args))
            i = 0 if args["cursor"] is None else args["cursor"]
            if self.fail_pull_at == i:
                raise self.error
            if self.cursor_from is not None and i >= self.cursor_from:
                return {
                    "key": f"k{i}",
                    "count": 2,
                    "cursor": args["cursor"],
                    "hasMore": True,
                    "state": args["state"],
                }
            if self.stuck:
                return {
                    "key": None,
                    "count": 0,
                    "cursor": args["cursor"],
                    "hasMore": True,
                    "state": args["state"],
                }
            return {
                "key": f"k{i}",
                "count": self.sizes[i],
                "cursor": i + 1,
                "hasMore": i + 1 < len(self.sizes),
                "state": {**args["state"], "pulled": args["state"].get("pulled", 0) + 1},
            }

        def transform(args):
            self.calls.append(("transform", args))
            return {"key": args["key"] + "t", "count": 1, "state": args["state"]}

        def push(args):
            self.calls.append(("push", args))
            self.checkpoints.append(
                {k: args[k] for k in ("cursor", "pages", "recordsIn", "recordsOut", "pageKey")}
            )
            return {"state": args["state"]}

        def finish(args):
            self.finished = args
            return {"status": args["status"]}

        return {
            names.BEGIN_RUN: (begin, "args"),
            names.PULL_PAGE: (guarded(pull), "args"),
            names.TRANSFORM_PAGE: (transform, "args"),
            names.PUSH_PAGE: (push, "args"),
            names.FINISH_RUN: (finish, "args"),
        }


def run(tmp_path, source, per_generation=3):
    fn = next(b._function for b in blueprint()._function_builders)
    engine = DurableEngine(
        tmp_path / "d.db",
        orchestrators={"sync_flow": fn.get_user_function()},
        activities=source.activities(),
    )
    iid = "Workflow-acme--f-20261123T140000Z"
    engine.start_new(
        "sync_flow",
        iid,
        json.dumps(
            {
                "tenantId": "acme",
                "flowName": "f",
                "scheduledFor": "2026-11-23T14:00:00Z",
                "pagesPerGeneration": per_generation,
            }
        ),
    )
    deadline = time.time() + 30
    while engine.active_count() and time.time() < deadline:
        if not (engine.run_orchestration_once() or engine.run_activity_once()):
            time.sleep(0.01)
    status = engine.get_status(iid)
    engine.close()
    return status


def test_pages_loop_across_generations_with_a_checkpoint_per_page(tmp_path):
    source = FakeSource([5, 0, 7, 3, 2, 4, 1])
    status = run(tmp_path, source, per_generation=3)
    assert status.runtime_status == "Completed"
    assert [c["pages"] for c in source.checkpoints] == [1, 2, 3, 4, 5, 6, 7]
    assert source.checkpoints[-1]["recordsIn"] == 22
    assert source.checkpoints[-1]["recordsOut"] == 6  # fake transform → 1 per page
    assert source.checkpoints[-1]["pageKey"] == "Workflow-acme--f-20261123T140000Z/p7"
    kinds = [k for k, _ in source.calls]
    assert kinds.count("begin") == 1  # not again after continue_as_new
    assert kinds.count("transform") == 6  # the empty page is not transformed
    pulls = [a for k, a in source.calls if k == "pull"]
    assert pulls[3]["state"] == {"pulled": 3}  # state carried across generations
    assert source.finished["status"] == "Completed"


def test_a_failing_step_is_tried_three_times_two_seconds_apart(tmp_path):
    source = FakeSource([5, 5, 5], fail_pull_at=1)
    started = time.time()
    status = run(tmp_path, source)
    assert status.runtime_status == "Failed"
    assert source.finished["status"] == "Failed"
    assert "ConnectionError: source down" in source.finished["error"]
    pulls = [a for k, a in source.calls if k == "pull"]
    assert len(pulls) == 1 + 3  # page 1, then page 2 three times
    assert pulls[1] == pulls[2] == pulls[3]  # the same input each time
    assert time.time() - started >= 2 * orchestrator.STEP_RETRY_SECONDS  # two waits
    assert [c["pages"] for c in source.checkpoints] == [1]


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(orchestrator, "STEP_RETRY_SECONDS", 0.05)


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("the source says this account is closed"),
        SecretNotFound("acme", "crm", "token"),
    ],
    ids=["PermanentError", "SecretNotFound"],
)
def test_a_permanent_failure_fails_the_run_at_once(tmp_path, quick_retries, error):
    source = FakeSource([5, 5, 5], fail_pull_at=1, error=error)
    status = run(tmp_path, source)
    assert status.runtime_status == "Failed"
    assert f"{type(error).__name__}: " in source.finished["error"]
    assert [k for k, _ in source.calls].count("pull") == 1 + 1  # page 2 tried once


def test_other_failures_are_retried(tmp_path, quick_retries):
    source = FakeSource([5, 5], fail_pull_at=1, error=KeyError("items"))
    run(tmp_path, source)
    assert [k for k, _ in source.calls].count("pull") == 1 + 3


def test_the_runtime_s_died_failure_is_one_of_the_permanent_ones():
    assert PROCESS_DIED in orchestrator.PERMANENT_ERRORS
    reason = f"Activity function 'pull_page' failed:  {PROCESS_DIED}: the process ... \n {{}}"
    assert orchestrator.is_permanent(Exception(reason))
    assert not orchestrator.is_permanent(
        Exception(
            "Activity function 'pull_page' failed: Timeout value of 00:10:00 was exceeded "
            "by function: Functions.pull_page"
        )
    )


def test_an_empty_page_that_claims_more_with_the_same_cursor_stops(tmp_path):
    source = FakeSource([], stuck=True)
    status = run(tmp_path, source)
    assert status.runtime_status == "Failed"
    assert "cursor did not advance for 3 pages" in status.output
    assert [k for k, _ in source.calls].count("pull") == 3


@pytest.mark.parametrize("per_generation", [1, 2, 10])
def test_a_page_repeated_with_the_same_cursor_fails_the_run(tmp_path, per_generation):
    """Page 3 onwards comes back with the cursor it was pulled with: two such pages are
    pushed, the third fails the run — also when every generation holds a single page."""
    source = FakeSource([5, 5, 5, 5, 5, 5, 5, 5], cursor_from=2)
    status = run(tmp_path, source, per_generation=per_generation)
    assert status.runtime_status == "Failed"
    assert (
        "cursor did not advance for 3 pages in a row while has_more=True"
        in (source.finished["error"])
    )
    assert [c["pages"] for c in source.checkpoints] == [1, 2, 3, 4]
    assert [k for k, _ in source.calls].count("pull") == 5


def test_a_cursor_that_advances_again_resets_the_count(tmp_path):
    """Two stalled pages, then progress, then two more: the run completes."""

    class Wobbly(FakeSource):
        def activities(self):
            table = super().activities()
            cursors = iter([1, 1, 1, 2, 2, 2, 3])

            def pull(args):
                self.calls.append(("pull", args))
                cursor = next(cursors)
                return {
                    "key": "k",
                    "count": 1,
                    "cursor": cursor,
                    "hasMore": cursor < 3,
                    "state": args["state"],
                }

            table[names.PULL_PAGE] = (pull, "args")
            return table

    source = Wobbly([])
    status = run(tmp_path, source, per_generation=2)
    assert status.runtime_status == "Completed"
    assert [k for k, _ in source.calls].count("pull") == 7
