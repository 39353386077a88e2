"""Run records stay true: a run whose orchestration ended outside the normal path (terminated
through the Durable API behind the app's back) no longer blocks its flow, and
``datasync terminate`` stops a running run and records it ``Terminated``."""

from __future__ import annotations

import json

import pytest

from datasync.runtime.durable import DurableEngine
from tests.faults.harness import DUE_ID, job, setup_gated, wait_for

pytestmark = pytest.mark.faults

NEXT = "2020-01-01T01:00:00Z"  # the occurrence after DUE
FIRST, SECOND = (f"Workflow-acme--gated-{DUE_ID}", "Workflow-acme--gated-20200101T010000Z")


def _runs(project) -> dict[str, dict]:
    return {r["instanceId"]: r for r in project.runs()}


def _status(project, instance_id: str) -> str:
    [(status,)] = project.sql(
        "durable.db", "SELECT status FROM instances WHERE instance_id = ?", instance_id
    )
    return status


@pytest.mark.timeout(60)
def test_a_run_terminated_behind_the_apps_back_no_longer_blocks_overlap_skip(project, apis):
    setup_gated(project, apis, "acme", 25, gate=project.gate("g", "pull", 1))
    runtime = project.start("--once")
    wait_for(lambda: project.reached("g"), 30, "the first run to be under way")
    # the Durable API terminates the instance; the app is not told (no finish_run)
    engine = DurableEngine(project.home / "durable.db", orchestrators={}, activities={})
    try:
        assert engine.terminate(FIRST, "purged by an operator")
    finally:
        engine.close()
    project.release("g")
    runtime.wait()
    assert _runs(project)[FIRST]["status"] == "Running"  # the stale record

    project.put(job("acme", "gated", NEXT))
    project.run_once()
    runs = _runs(project)
    assert runs[FIRST]["status"] == "Terminated"
    assert runs[FIRST]["error"] == "terminated: purged by an operator"
    assert runs[SECOND]["status"] == "Completed"  # not Skipped: the flow runs again
    assert apis.stats("acme")["count"] == 25 and apis.stats("acme")["maxReceives"] == 1


@pytest.mark.timeout(60)
def test_terminate_stops_a_running_run_and_records_terminated(project, apis):
    setup_gated(project, apis, "acme", 25, gate=project.gate("g", "push", 2))
    runtime = project.start("--once")
    wait_for(lambda: project.reached("g"), 30, "the run to reach page 2")

    missing = project.cli("terminate", "acme", "Workflow-acme--gated-20990101T000000Z", check=2)
    assert missing.stderr.startswith("error: ") and "has no run" in missing.stderr
    done = project.cli("terminate", "acme", "gated", "--reason", "wrong target", "--json")
    [record] = json.loads(done.stdout)
    assert record["instanceId"] == FIRST and record["status"] == "Terminated"
    assert record["error"] == "terminated: wrong target"
    assert _status(project, FIRST) == "Terminated"

    project.release("g")  # page 2's push returns: its checkpoint stands, nothing more runs
    assert runtime.wait() == 1  # a terminated run did not complete
    final = _runs(project)[FIRST]
    assert (final["status"], final["error"]) == ("Terminated", "terminated: wrong target")
    assert final["pages"] == 2 and final["recordsIn"] == 20
    assert apis.stats("acme")["count"] == 20  # pages 3 and beyond were never pulled
    assert project.cli("terminate", "acme", "gated", check=2).stderr.startswith("error: ")

    project.put(job("acme", "gated", NEXT))  # the next occurrence runs, from the checkpoint
    project.run_once()
    runs = _runs(project)
    assert runs[SECOND]["status"] == "Completed" and runs[SECOND]["recordsIn"] == 5
    stats = apis.stats("acme")
    assert stats["count"] == 25 and stats["maxReceives"] == 1


@pytest.mark.timeout(60)
def test_apply_again_keeps_a_pause_and_a_pending_trigger(project, apis):
    entry = setup_gated(project, apis, "acme", 5)
    flow = {k: v for k, v in entry.items() if k != "nextRunUtc"}  # scheduling: the CLI's
    doc = {"id": "acme", "timezone": "UTC", "flows": [flow]}
    project.apply(doc)
    project.cli("pause", "acme")
    project.cli("trigger", "acme", "gated")
    out = project.apply(doc).stdout  # e.g. a deploy re-applying the tenant files
    assert "kept paused, flows[gated].nextRunUtc" in out
    project.run_once()
    # still paused: nothing ran; the occurrence the first apply queued (before the pause) is
    # dropped at the starter and recorded as Superseded, saying why
    assert apis.stats("acme")["count"] == 0
    assert [(r["status"], "paused" in (r.get("reason") or "")) for r in project.runs()] in (
        [],
        [("Superseded", True)],
    )

    project.cli("resume", "acme")
    project.cli("trigger", "acme", "gated")
    project.apply(doc)
    project.run_once()
    assert [r["status"] for r in project.runs() if r["status"] != "Superseded"] == ["Completed"]
    assert apis.stats("acme")["count"] == 5
