"""``sync_flow`` replayed by the real Durable SDK on the embedded engine, with the
activities replaced by in-memory fakes (the flow side is covered end to end elsewhere)."""

from __future__ import annotations

import json
import time

from datasync.functions import bindings as names
from datasync.functions.orchestrator import blueprint
from datasync.runtime.durable import DurableEngine


class FakeSource:
    """Pages of the given sizes; records its activity calls."""

    def __init__(self, sizes, fail_pull_at=None, stuck=False):
        self.sizes, self.fail_pull_at, self.stuck = sizes, fail_pull_at, stuck
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
                raise ConnectionError("source down")
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
            names.PULL_PAGE: (pull, "args"),
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


def test_a_failing_step_fails_the_run_with_its_error(tmp_path):
    source = FakeSource([5, 5, 5], fail_pull_at=1)
    status = run(tmp_path, source)
    assert status.runtime_status == "Failed"
    assert source.finished["status"] == "Failed"
    assert "ConnectionError: source down" in source.finished["error"]
    assert len([1 for k, _ in source.calls if k == "pull"]) == 1 + 3  # RetryOptions: 3 tries
    assert [c["pages"] for c in source.checkpoints] == [1]


def test_an_empty_page_that_claims_more_with_the_same_cursor_stops(tmp_path):
    status = run(tmp_path, FakeSource([], stuck=True))
    assert status.runtime_status == "Failed"
    assert "unchanged cursor" in status.output
