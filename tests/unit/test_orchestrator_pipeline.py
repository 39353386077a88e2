"""Pipelined pages: ``sync_flow`` pulls page N+1 while page N is transformed and pushed.

The real Durable SDK replays the orchestrator on the embedded engine, with activities run
by two worker threads (as the local host does) over in-memory fakes that keep a
checkpoint, so a failed run can be resumed by the next one.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from datasync.exceptions import PermanentError
from datasync.functions import bindings as names
from datasync.functions import orchestrator
from datasync.functions.guard import guarded
from datasync.functions.orchestrator import _merged, blueprint
from datasync.runtime.durable import DurableEngine

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Source:
    """``len(sizes)`` pages; page i (0-based) is pulled with cursor i and returns i + 1.

    Pull counts pulls in ``state["pulled"]``, push counts pushes in ``state["pushed"]``:
    the checkpoint (cursor, state, counters) lives here across runs."""

    def __init__(
        self,
        sizes: list[int],
        *,
        pipeline: bool = True,
        overlap: bool = False,
        transform: bool = True,
    ):
        self.sizes, self.pipeline, self.overlap = sizes, pipeline, overlap
        self.transform = transform
        self.lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.saved: dict[str, Any] = {"cursor": None, "state": {}, "pages": 0}
        self.finished: dict[str, Any] | None = None
        self.fail: dict[tuple[str, int], list[BaseException]] = {}  # (step, page) → errors
        self.pulling: dict[int, threading.Event] = {}
        self.pull_failed: dict[int, threading.Event] = {}
        self.overlapped: list[int] = []

    def _log(self, kind: str, args: dict[str, Any]) -> int:
        page = int(args["pageKey"].rsplit("/p", 1)[1]) if "pageKey" in args else 0
        with self.lock:
            self.calls.append((kind, args))
            errors = self.fail.get((kind, page))
            error = errors.pop(0) if errors else None
        if kind == "push" and (page + 1) in self.pull_failed:
            self.pull_failed[page + 1].wait(5)  # fail only once the next pull has failed
        if error is not None:
            if kind == "pull" and page in self.pull_failed:
                self.pull_failed[page].set()
            raise error
        return page

    def activities(self) -> dict[str, Any]:
        def begin(args):
            self._log("begin", args)
            saved = self.saved
            return {
                "cursor": saved["cursor"],
                "state": saved["state"],
                "pages": saved["pages"],
                "recordsIn": 0,
                "recordsOut": 0,
                "pipeline": self.pipeline,
                "transform": self.transform,
            }

        def pull(args):
            page = self._log("pull", args)
            self.pulling.setdefault(page, threading.Event()).set()
            i = 0 if args["cursor"] is None else args["cursor"]
            state = {**args["state"], "pulled": args["state"].get("pulled", 0) + 1}
            return {
                "key": f"k{i}" if self.sizes[i] else None,
                "count": self.sizes[i],
                "cursor": i + 1,
                "hasMore": i + 1 < len(self.sizes),
                "state": state,
            }

        def transform(args):
            self._log("transform", args)
            return {"key": args["key"] + "t", "count": 1, "state": args["state"]}

        def push(args):
            page = self._log("push", args)
            next_pull = self.pulling.setdefault(page + 1, threading.Event())
            # wait until the next page is being pulled: proof the two overlap
            if self.overlap and args["cursor"] < len(self.sizes) and next_pull.wait(5):
                self.overlapped.append(page)
            state = {**args["state"], "pushed": args["state"].get("pushed", 0) + 1}
            with self.lock:
                self.checkpoints.append(
                    {k: args[k] for k in ("cursor", "pages", "recordsIn", "recordsOut")}
                    | {"state": state}
                )
                self.saved = {"cursor": args["cursor"], "state": state, "pages": args["pages"]}
            return {"state": state}

        def finish(args):
            self._log("finish", args)
            self.finished = args
            return {"status": args["status"]}

        return {
            names.BEGIN_RUN: (begin, "args"),
            names.PULL_PAGE: (guarded(pull), "args"),
            names.TRANSFORM_PAGE: (guarded(transform), "args"),
            names.PUSH_PAGE: (guarded(push), "args"),
            names.FINISH_RUN: (finish, "args"),
        }

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]

    def args(self, kind: str) -> list[dict[str, Any]]:
        return [args for k, args in self.calls if k == kind]


def run(tmp_path, source: Source, per_generation: int = 10, run_no: int = 1, trace=None):
    """One run to its end on an engine with one orchestration and two activity threads."""
    fn = next(b._function for b in blueprint()._function_builders)
    engine = DurableEngine(
        tmp_path / f"d{run_no}.db",
        orchestrators={"sync_flow": fn.get_user_function()},
        activities=source.activities(),
    )
    iid = f"Workflow-acme--f-20261123T14000{run_no}Z"
    job = {
        "tenantId": "acme",
        "flowName": "f",
        "scheduledFor": "2026-11-23T14:00:00Z",
        "pagesPerGeneration": per_generation,
    }
    if trace:
        job["traceparent"] = trace
    engine.start_new("sync_flow", iid, json.dumps(job))
    stop = threading.Event()

    def work(step):
        while not stop.is_set():
            if not step():
                time.sleep(0.002)

    threads = [threading.Thread(target=work, args=(engine.run_orchestration_once,))]
    threads += [threading.Thread(target=work, args=(engine.run_activity_once,)) for _ in "ab"]
    for thread in threads:
        thread.start()
    deadline = time.time() + 25
    while engine.active_count() and time.time() < deadline:
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    status = engine.get_status(iid)
    history = engine.history_size(iid)
    engine.close()
    return status, history


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(orchestrator, "STEP_RETRY_SECONDS", 0.05)


def test_the_next_page_is_pulled_while_this_one_is_pushed(tmp_path):
    source = Source([3, 3, 3, 3, 3], overlap=True)
    status, _ = run(tmp_path, source, per_generation=2)
    assert status.runtime_status == "Completed"
    assert source.overlapped == [1, 2, 3, 4]  # every push but the last saw the next pull
    assert [c["pages"] for c in source.checkpoints] == [1, 2, 3, 4, 5]  # in page order
    assert source.kinds().count("pull") == 5  # once per page, across continue_as_new too
    assert [a["pageKey"] for a in source.args("pull")] == [
        f"Workflow-acme--f-20261123T140001Z/p{n}" for n in range(1, 6)
    ]


def test_a_flow_that_opts_out_runs_page_after_page(tmp_path):
    source = Source([2, 2, 2], pipeline=False)
    status, _ = run(tmp_path, source, per_generation=2)
    assert status.runtime_status == "Completed"
    steps = [k for k in source.kinds() if k in ("pull", "transform", "push")]
    assert steps == ["pull", "transform", "push"] * 3
    # each pull sees what the previous push wrote
    assert [a["state"].get("pushed", 0) for a in source.args("pull")] == [0, 1, 2]


def test_state_keeps_page_order_when_pull_and_push_overlap(tmp_path):
    source = Source([2, 0, 2, 2])
    status, _ = run(tmp_path, source, per_generation=3)
    assert status.runtime_status == "Completed"
    # the pull of page N+1 ran beside push N, so it saw pull N's state...
    assert [a["state"].get("pulled", 0) for a in source.args("pull")] == [0, 1, 2, 3]
    # ...and its writes land on top of push N's: both counters reach every later step
    assert [c["state"] for c in source.checkpoints] == [
        {"pulled": n, "pushed": n} for n in range(1, 5)
    ]
    assert source.checkpoints[-1] | {"state": None} == {
        "cursor": 4,
        "pages": 4,
        "recordsIn": 6,
        "recordsOut": 3,  # the empty page 2 is not transformed, but it is checkpointed
        "state": None,
    }
    assert [a["state"] for a in source.args("transform")][1] == {"pulled": 3, "pushed": 2}


def test_merging_applies_the_pull_s_changes_over_the_push_s_state():
    base = {"a": 1, "gone": 1, "same": 1}
    pulled = {"a": 2, "same": 1, "new": 1}
    pushed = {"a": 9, "gone": 1, "same": 5, "pushed": 1}
    assert _merged(base, pulled, pushed) == {"a": 2, "same": 5, "pushed": 1, "new": 1}


def test_a_failed_pull_of_the_next_page_still_checkpoints_this_one(tmp_path):
    """Pull of page 3 fails for good while page 2 is pushed: page 2 is checkpointed,
    the run fails, and the next run resumes at page 3."""
    source = Source([2, 2, 2, 2])
    source.fail[("pull", 3)] = [ConnectionError("source down")] * 3
    status, _ = run(tmp_path, source)
    assert status.runtime_status == "Failed"
    assert "ConnectionError: source down" in source.finished["error"]
    assert [c["pages"] for c in source.checkpoints] == [1, 2]
    assert source.kinds().count("pull") == 2 + 3  # page 3 tried three times

    source.calls.clear()
    status, _ = run(tmp_path, source, run_no=2)
    assert status.runtime_status == "Completed"
    assert [a["cursor"] for a in source.args("pull")] == [2, 3]
    assert [c["pages"] for c in source.checkpoints] == [1, 2, 3, 4]


def test_a_permanent_pull_failure_waits_for_this_page_s_retried_push(tmp_path):
    source = Source([2, 2, 2])
    source.fail[("pull", 2)] = [PermanentError("account closed")]
    source.fail[("push", 1)] = [ConnectionError("target down")]
    status, _ = run(tmp_path, source)
    assert status.runtime_status == "Failed"
    assert "PermanentError: account closed" in source.finished["error"]
    assert source.kinds().count("pull") == 2  # page 2: once, not retried
    assert source.kinds().count("push") == 2  # page 1: retried, then checkpointed
    assert [c["pages"] for c in source.checkpoints] == [1]


def test_a_failed_push_stops_the_next_page_s_pull_retries(tmp_path):
    source = Source([2, 2, 2])
    source.fail[("push", 1)] = [PermanentError("target rejects the schema")]
    source.fail[("pull", 2)] = [ConnectionError("source down")] * 3
    status, _ = run(tmp_path, source)
    assert status.runtime_status == "Failed"
    assert "PermanentError: target rejects the schema" in source.finished["error"]
    assert source.kinds().count("pull") == 2  # page 2's pull is not retried
    assert source.checkpoints == []


def test_a_failed_push_stops_a_pull_waiting_to_retry(tmp_path, monkeypatch):
    """Pull 2 fails once and waits 1 s to retry; meanwhile push 1 fails for good: when the
    wait is over the pull is not tried again."""
    monkeypatch.setattr(orchestrator, "STEP_RETRY_SECONDS", 1.0)
    source = Source([2, 2, 2])
    source.pull_failed[2] = threading.Event()
    source.fail[("pull", 2)] = [ConnectionError("source down")]
    source.fail[("push", 1)] = [PermanentError("target rejects the schema")]
    status, _ = run(tmp_path, source)
    assert status.runtime_status == "Failed"
    assert "PermanentError: target rejects the schema" in source.finished["error"]
    assert source.kinds().count("pull") == 2
    assert source.checkpoints == []


def test_the_trace_context_reaches_every_activity_across_generations(tmp_path):
    source = Source([1, 1, 1, 1, 1])
    source.fail[("pull", 2)] = [ConnectionError("blip")]
    status, _ = run(tmp_path, source, per_generation=2, trace=TRACE)
    assert status.runtime_status == "Completed"
    kinds = {kind for kind, _ in source.calls}
    assert kinds == {"begin", "pull", "transform", "push", "finish"}
    assert {args["traceparent"] for _, args in source.calls} == {TRACE}


def test_history_stays_flat_with_pipelining(tmp_path):
    sizes = []
    for pages in (6, 30):
        source = Source([1] * pages)
        status, history = run(tmp_path, source, per_generation=3, run_no=pages)
        assert status.runtime_status == "Completed"
        sizes.append(history)
    assert sizes[0][0] == sizes[1][0]  # events in the last generation


def test_a_flow_without_transform_pushes_the_pulled_page_as_staged(tmp_path):
    source = Source([3, 0, 2], transform=False)
    status, _ = run(tmp_path, source, per_generation=2)
    assert status.runtime_status == "Completed"
    assert "transform" not in source.kinds()
    pushes = source.args("push")
    assert [(p["key"], p["count"]) for p in pushes] == [("k0", 3), (None, 0), ("k2", 2)]
    assert source.checkpoints[-1]["recordsIn"] == source.checkpoints[-1]["recordsOut"] == 5
    assert [c["state"] for c in source.checkpoints][-1] == {"pulled": 3, "pushed": 3}
