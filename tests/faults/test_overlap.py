"""Overlap policy: a run still going when its next occurrence is due."""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import DUE_ID, job, setup_gated, tenant_doc, wait_for

pytestmark = pytest.mark.faults

NEXT = "2020-01-01T01:00:00Z"  # the occurrence after DUE
FIRST, SECOND = (f"Workflow-acme--gated-{DUE_ID}", "Workflow-acme--gated-20200101T010000Z")


def _runs(project) -> dict[str, dict]:
    return {r["instanceId"]: r for r in project.runs()}


def _overlapping(project, apis, overlap: str | None):
    extra = {"overlap": overlap} if overlap else {}
    setup_gated(project, apis, "acme", 25, gate=project.gate("g", "pull", 1), **extra)
    runtime = project.start("--once")
    wait_for(lambda: project.reached("g"), 30, "the first run to be under way")
    project.put(job("acme", "gated", NEXT))  # the next occurrence is due meanwhile
    return runtime


def test_skip_is_the_default_and_records_a_skipped_run(project, apis):
    runtime = _overlapping(project, apis, None)
    skipped = wait_for(lambda: project.runs("--status", "Skipped"), 15, "a Skipped run")
    assert [r["instanceId"] for r in skipped] == [SECOND]
    assert FIRST in skipped[0]["error"]
    project.release("g")
    assert runtime.wait() == 0
    runs = _runs(project)
    assert runs[FIRST]["status"] == "Completed" and runs[SECOND]["status"] == "Skipped"
    assert apis.stats("acme")["count"] == 25 and apis.stats("acme")["maxReceives"] == 1


def test_queue_defers_until_the_previous_run_ends(project, apis):
    runtime = _overlapping(project, apis, "queue")
    time.sleep(2)  # several deferrals (DATASYNC_REQUEUE_DELAY)
    assert list(_runs(project)) == [FIRST]
    assert "deferring " + SECOND in runtime.stderr()
    apis.add_records("acme", 5)
    project.release("g")
    assert runtime.wait() == 0
    runs = _runs(project)
    assert [runs[i]["status"] for i in (FIRST, SECOND)] == ["Completed", "Completed"]
    assert runs[SECOND]["startedAt"] >= runs[FIRST]["finishedAt"]
    assert runs[FIRST]["recordsIn"] == 30 and runs[SECOND]["recordsIn"] == 0  # incremental
    assert apis.stats("acme")["maxReceives"] == 1


def test_allow_runs_in_parallel(project, apis):
    runtime = _overlapping(project, apis, "allow")
    wait_for(
        lambda: _runs(project).get(SECOND, {}).get("status") == "Completed",
        20,
        "the second run to finish while the first is still blocked",
    )
    assert _runs(project)[FIRST]["status"] == "Running"
    project.release("g")
    assert runtime.wait() == 0
    runs = _runs(project)
    assert runs[FIRST]["status"] == "Completed"
    # both runs started from the same checkpoint, so both delivered the same records (each
    # under its own keys): what 'allow' means for an incremental flow
    stats = apis.stats("acme")
    assert stats["count"] == 25 and stats["maxReceives"] == 2 and stats["duplicateKeys"] == 0


def test_max_concurrent_runs_keeps_a_noisy_tenants_second_flow_waiting(project, apis):
    later = {"nextRunUtc": "2099-01-01T00:00:00Z", "apply": False}  # jobs put by hand
    slow = setup_gated(
        project,
        apis,
        "noisy",
        25,
        gate=project.gate("g", "pull", 1),
        api_tenant="noisy-slow",
        **later,
    )
    other = setup_gated(project, apis, "noisy", 15, flow="other", api_tenant="noisy-other", **later)
    quiet = setup_gated(project, apis, "quiet", 10, flow="other", **later)
    project.apply(tenant_doc("noisy", slow, other, maxConcurrentRuns=1), tenant_doc("quiet", quiet))
    for tid in ("noisy", "quiet"):
        project.secret(tid, "src", "token", f"{tid}-src-token")
        project.secret(tid, "dst", "token", f"{tid}-dst-token")
    project.put(job("noisy", "gated"))
    runtime = project.start("--once")
    wait_for(lambda: project.reached("g"), 30, "the noisy tenant's slow run")
    project.put(job("noisy", "other"))
    project.put(job("quiet", "other"))
    done = wait_for(
        lambda: [r for r in project.runs("--tenant", "quiet") if r["status"] == "Completed"],
        20,
        "the quiet tenant's run",
    )
    assert done and apis.stats("quiet")["count"] == 10
    time.sleep(1)
    noisy = {r["flowName"]: r["status"] for r in project.runs("--tenant", "noisy")}
    assert noisy == {"gated": "Running"}  # "other" waits its turn
    assert apis.stats("noisy-other")["count"] == 0
    assert "runs active for tenant noisy" in runtime.stderr()
    project.release("g")
    assert runtime.wait() == 0
    noisy = {r["flowName"]: r["status"] for r in project.runs("--tenant", "noisy")}
    assert noisy == {"gated": "Completed", "other": "Completed"}
    assert apis.stats("noisy-other")["count"] == 15
