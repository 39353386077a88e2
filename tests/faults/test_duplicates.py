"""Duplicate and late delivery: one orchestration per instance id, no double push."""

from __future__ import annotations

import pytest

from tests.faults.harness import DUE_ID, job, setup_gated, wait_for

pytestmark = pytest.mark.faults


def _one_run_each(project, apis, expected: dict[str, int]) -> None:
    runs = project.runs()
    assert sorted((r["tenantId"], r["status"]) for r in runs) == sorted(
        (t, "Completed") for t in expected
    ), runs
    for tid, records in expected.items():
        stats = apis.stats(tid)
        assert stats["count"] == records and stats["maxReceives"] == 1, (tid, stats)
        assert stats["duplicateKeys"] == 0, (tid, stats)  # not even re-sent


def test_same_job_put_twice(project, apis):
    setup_gated(project, apis, "acme", 35)
    project.put(job("acme", "gated"))
    project.put(job("acme", "gated"))  # and the start tick enqueues it a third time
    runtime = project.run_once()
    _one_run_each(project, apis, {"acme": 35})
    assert apis.stats("acme")["batches"] == 4
    assert runtime.stderr().count(f"started Workflow-acme--gated-{DUE_ID}") == 1
    assert project.sql("datasync.db", "SELECT count(*) FROM queue_messages") == [(0,)]


def test_redelivered_while_running(project, apis):
    setup_gated(project, apis, "acme", 35, gate=project.gate("g", "pull", 2))
    runtime = project.start("--once")
    wait_for(lambda: project.reached("g"), 30, "the pull of page 2")
    project.put(job("acme", "gated"))  # the same job again, while it runs
    wait_for(lambda: "already Running" in runtime.stderr(), 15, "the duplicate skipped")
    project.release("g")
    assert runtime.wait() == 0
    _one_run_each(project, apis, {"acme": 35})


def test_two_runtimes_on_one_home_at_the_same_moment(project, apis):
    expected = {"acme": 45, "globex": 30, "initech": 12}
    for tid, n in expected.items():
        setup_gated(project, apis, tid, n)
    first, second = project.start("--once"), project.start("--once")
    assert first.wait() == 0 and second.wait() == 0, (
        first.stderr()[-2000:],
        second.stderr()[-2000:],
    )
    _one_run_each(project, apis, expected)
    started = first.stderr().count("started Workflow-") + second.stderr().count("started Workflow-")
    assert started == 3
