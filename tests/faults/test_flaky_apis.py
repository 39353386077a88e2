"""Flaky APIs: throttling, 5xx, resets, timeouts and slow bodies are ridden out; a step that
keeps failing fails the run clearly, and the next run resumes from the last checkpoint."""

from __future__ import annotations

import pytest

from tests.faults.flaky_api import FlakyApi
from tests.faults.harness import flow_entry, tenant_doc

pytestmark = pytest.mark.faults

FLAKY_FLOW = """
from datasync import Page, flow


@flow("flaky")
class Flaky:
    def pull(self, ctx, cursor):
        r = ctx.http.get(ctx.config["url"] + "/contacts",
                         params={"after": cursor or "", "limit": 10})
        r.raise_for_status()
        body = r.json()
        return Page(records=body["items"], cursor=body["next"], has_more=body["more"])

    async def push(self, ctx, records):
        r = await ctx.ahttp.post(ctx.config["url"] + "/batch", json=records,
                                 headers={"Idempotency-Key": ctx.page_key})
        r.raise_for_status()
"""


def _setup(project, api) -> None:
    project.write_flow("flaky.py", FLAKY_FLOW)
    project.apply(tenant_doc("acme", flow_entry("flaky", {"url": api.url})))


def test_every_kind_of_transient_failure_is_ridden_out(project):
    project.env["DATASYNC_HTTP_TIMEOUT"] = "1"
    with FlakyApi(records=45, hang=1.5) as api:
        api.script["GET /contacts"] = [
            "429",
            "500",
            "reset",
            "timeout",
            "ok",
            "429-date",
            "502",
            "503",
            "504",
            "ok",
            "slow",
            "ok",
            "reset",
            "slow",
        ]
        api.script["POST /batch"] = [
            "503",
            "reset",
            "ok",
            "reset-after",
            "ok",
            "timeout",
            "429",
            "slow",
        ]
        _setup(project, api)
        runtime = project.run_once()
        assert api.script["GET /contacts"] == [] and api.script["POST /batch"] == []
        stats = api.stats()
    assert stats["count"] == 45 and stats["maxReceives"] == 1, stats
    assert stats["duplicateKeys"] >= 1  # the lost acknowledgement
    [run] = project.runs()
    assert run["status"] == "Completed" and run["recordsOut"] == 45 and run["error"] is None
    log = runtime.stderr()
    assert "after 429" in log and "after ReadTimeout" in log


def test_a_step_that_keeps_failing_fails_the_run_then_the_next_run_resumes(project):
    with FlakyApi(records=55) as api:
        api.broken_after = "000030"  # page 4 never comes back
        _setup(project, api)
        failed = project.run_once(expect=1)
        assert "run failed: Workflow-acme--flaky-" in failed.stderr()
        [run] = project.runs("--status", "Failed")
        assert run["pages"] == 3 and run["recordsIn"] == 30, run
        assert "503" in run["error"] and "/contacts" in run["error"], run["error"]
        assert api.stats()["count"] == 30

        api.broken_after = None  # the dependency is back
        api.log.clear()
        project.cli("trigger", "acme", "flaky")
        project.run_once()
        pulled_after = [after for route, after, _ in api.log if route == "GET /contacts"]
        assert pulled_after[0] == "000030"  # from the last checkpoint
        assert pulled_after == ["000030", "000040", "000050"]
        stats = api.stats()
    assert stats["count"] == 55 and stats["maxReceives"] == 1, stats
    runs = project.runs()
    assert sorted(r["status"] for r in runs) == ["Completed", "Failed"]
    second = next(r for r in runs if r["status"] == "Completed")
    assert second["recordsIn"] == 25 and second["recordsOut"] == 25  # only the rest moved
