"""Poison: bad jobs land in flow-jobs-poison after 5 attempts with the reason, never block
a good job, and ``poison replay`` re-queues them (after the cause is fixed, they run)."""

from __future__ import annotations

import pytest

from tests.faults.harness import job, setup_gated, tenant_doc, wait_for

pytestmark = pytest.mark.faults

LATER = "2099-01-01T00:00:00Z"

FRAGILE_OK = """
from datasync import Page, flow


@flow("fragile")
class Fragile:
    def pull(self, ctx, cursor):
        return Page(records=[{"id": "only"}], cursor="done", has_more=False)

    def push(self, ctx, records):
        pass
"""

FRAGILE_BROKEN = FRAGILE_OK.replace(
    "from datasync import Page, flow",
    "from datasync import Page, flow\nraise RuntimeError('fragile cannot start today')",
)


def test_bad_jobs_are_poisoned_with_the_reason_and_replayed_after_the_fix(project, apis):
    project.write_flow("fragile.py", FRAGILE_OK)
    gated = setup_gated(project, apis, "acme", 15, apply=False, nextRunUtc=LATER)
    project.apply(
        tenant_doc("acme", gated, {"name": "fragile", "cron": "0 0 0 1 1 *", "nextRunUtc": LATER})
    )
    project.secret("acme", "src", "token", "acme-src-token")
    project.secret("acme", "dst", "token", "acme-dst-token")
    project.write_flow("fragile.py", FRAGILE_BROKEN)  # breaks after it was applied

    bad = {
        "malformed": project.put('{"tenantId": "acme", "flowName": '),
        "tenant": project.put(job("nobody", "gated")),
        "flow": project.put(job("acme", "no-such-flow")),
        "import": project.put(job("acme", "fragile")),
    }
    project.put(job("acme", "gated"))  # a good job alongside

    runtime = project.start("--once", DATASYNC_QUEUE_RETRY_DELAY="1.5")
    good = wait_for(
        lambda: [r for r in project.runs() if r["status"] == "Completed"], 20, "the good job"
    )
    assert good[0]["flowName"] == "gated" and apis.stats("acme")["count"] == 15
    assert len(project.poison()) < 4  # it did not wait for them
    assert runtime.wait() == 1  # poisoned messages: exit 1

    poisoned = {p["id"]: p for p in project.poison()}
    assert set(poisoned) <= set(bad.values()) and len(poisoned) == 4, poisoned
    reasons = {what: poisoned[mid]["reason"] for what, mid in bad.items()}
    assert "not valid JSON" in reasons["malformed"]
    assert "nobody" in reasons["tenant"]
    assert "no-such-flow" in reasons["flow"]
    assert "flows/fragile.py failed to load" in reasons["import"]
    listed = project.cli("flows", "list", check=2)  # and says why
    assert "fragile.py" in listed.stderr and "fragile cannot start today" in listed.stderr
    assert poisoned[bad["tenant"]]["body"] == job("nobody", "gated")
    log = runtime.stderr()
    assert log.count("to flow-jobs-poison after 5 attempts") == 4
    assert log.count("failed (attempt 4 of 5)") == 4
    assert len(project.runs()) == 1

    # fix the causes, replay those two; the malformed one stays where it is
    setup_gated(project, apis, "nobody", 7)
    project.write_flow("fragile.py", FRAGILE_OK)
    for what in ("tenant", "import"):
        assert "replayed" in project.cli("poison", "replay", bad[what]).stdout
    project.cli("poison", "replay", "no-such-id", check=2)
    project.run_once()
    assert sorted(p["id"] for p in project.poison()) == sorted([bad["malformed"], bad["flow"]])
    runs = {(r["tenantId"], r["flowName"]): r["status"] for r in project.runs()}
    assert runs == {
        ("acme", "gated"): "Completed",
        ("nobody", "gated"): "Completed",
        ("acme", "fragile"): "Completed",
    }
    assert apis.stats("nobody")["count"] == 7
