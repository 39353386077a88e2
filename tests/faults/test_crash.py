"""Crash anywhere: SIGKILL the runtime at exact points, start another, nothing is lost and
nothing is pushed twice (re-pushes carry the same Idempotency-Key)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.faults.harness import DUE, DUE_ID, setup_gated, wait_for

pytestmark = pytest.mark.faults

RUN_ID = f"Workflow-acme--gated-{DUE_ID}"


def _resume_and_check(project, apis, records: int, *, resumed: bool = True) -> dict:
    started = time.time()
    project.run_once()
    took = time.time() - started
    # leases are 6 s: the next runtime picks the work up and finishes well within 10 s more
    assert took < 20, f"the next runtime took {took:.1f}s"
    stats = apis.stats("acme")
    assert stats["count"] == records and stats["maxReceives"] == 1, stats
    runs = project.runs()
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["instanceId"] == RUN_ID and run["status"] == "Completed", run
    assert run["recordsIn"] == records and run["recordsOut"] == records, run
    if resumed:
        assert run["resumes"] >= 1, run
        assert _takeover_delay(project.runtimes[-1].stderr()) <= 10
    return stats


def _takeover_delay(log: str) -> int:
    """Seconds from the runtime coming up to it taking over the dead runtime's work."""

    def seconds(line: str) -> int:
        h, m, s = map(int, line[11:19].split(":"))  # 2026-12-01T14:00:00.123Z ...
        return h * 3600 + m * 60 + s

    up = next(line for line in log.splitlines() if "local runtime up" in line)
    took = next(line for line in log.splitlines() if "taking over" in line)
    return (seconds(took) - seconds(up)) % 86400


def test_kill_during_pull(project, apis):
    setup_gated(project, apis, "acme", 55, gate=project.gate("g", "pull", 3))
    runtime = project.start()
    wait_for(lambda: project.reached("g"), 30, "the pull of page 3")
    runtime.kill()
    assert apis.stats("acme")["count"] == 20  # pages 1 and 2 were pushed
    assert project.runs()[0]["status"] == "Running"
    stats = _resume_and_check(project, apis, 55)
    # pages are pipelined: page 2's push runs beside page 3's pull, so the kill may catch it
    # after its POST and before its result was committed — then page 2 is pushed once more,
    # with the same Idempotency-Key (every record still arrives once: checked above)
    assert stats["duplicateKeys"] <= 1


def test_kill_after_push_before_checkpoint(project, apis):
    setup_gated(project, apis, "acme", 55, gate=project.gate("g", "push", 3))
    runtime = project.start()
    wait_for(lambda: project.reached("g"), 30, "the push of page 3")
    runtime.kill()
    assert apis.stats("acme")["count"] == 30  # the target has page 3 ...
    assert project.runs()[0]["pages"] == 2  # ... the checkpoint does not
    stats = _resume_and_check(project, apis, 55)
    assert stats["duplicateKeys"] >= 1  # page 3 pushed again, same key


def test_kill_between_enqueue_and_write_back(project, apis):
    setup_gated(project, apis, "acme", 25)
    project.due_for_the_scheduler("acme")
    crashed = project.run_once(expect=-9, DATASYNC_FAULT_POINT="scan-after-enqueue")
    assert "scheduler tick" not in crashed.stderr()  # died before finishing the tick
    queued = project.sql(
        "datasync.db", "SELECT body FROM queue_messages WHERE queue = ?", "flow-jobs"
    )
    assert [json.loads(b)["scheduledFor"] for (b,) in queued] == [DUE]
    shown = json.loads(project.cli("tenants", "show", "acme", "--json").stdout)
    assert shown["flows"][0]["nextRunUtc"] == DUE  # not written back
    # the next tick enqueues the same occurrence again; the instance id collapses the two
    _resume_and_check(project, apis, 25, resumed=False)
    assert project.sql("datasync.db", "SELECT count(*) FROM queue_messages") == [(0,)]
    shown = json.loads(project.cli("tenants", "show", "acme", "--json").stdout)
    assert shown["flows"][0]["nextRunUtc"] > DUE
    project.run_once()  # nothing left to do, nothing re-run
    assert len(project.runs()) == 1 and apis.stats("acme")["batches"] == 3


def test_kill_in_starter_before_the_orchestration_starts(project, apis):
    setup_gated(project, apis, "acme", 25)
    project.run_once(expect=-9, DATASYNC_FAULT_POINT="starter-before-start")
    assert [r["status"] for r in project.runs()] == ["Pending"]
    # the dead runtime held the job message: it comes back within its (renewed) lease
    _resume_and_check(project, apis, 25, resumed=False)


def test_a_resumed_run_that_then_fails_makes_run_once_exit_1(project, apis):
    setup_gated(project, apis, "acme", 55, gate=project.gate("g", "pull", 3))
    runtime = project.start()
    wait_for(lambda: project.reached("g"), 30, "the pull of page 3")
    runtime.kill()
    project.secret("acme", "src", "token", "revoked-meanwhile")  # the source now says 401
    resumed = project.run_once(expect=1)
    assert f"run failed: {RUN_ID}" in resumed.stderr()
    [run] = project.runs("--status", "Failed")
    assert run["resumes"] >= 1 and run["pages"] == 2 and "401" in run["error"], run


def test_sigterm_to_run_once_with_work_unfinished_exits_1(project, apis):
    setup_gated(project, apis, "acme", 55, gate=project.gate("g", "pull", 2))
    runtime = project.start("--once")
    wait_for(lambda: project.reached("g"), 30, "the pull of page 2")
    runtime.proc.send_signal(signal.SIGTERM)
    project.release("g")
    assert runtime.wait(60) == 1, runtime.stderr()[-2000:]
    assert "stopped before the work was done" in runtime.stderr()
    _resume_and_check(project, apis, 55, resumed=False)  # nothing lost: the next run ends it
