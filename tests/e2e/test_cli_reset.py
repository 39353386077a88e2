"""``datasync reset`` on real runs of the embedded runtime (SQLite, the CLI a user types).

A flow syncs to the end; a run after that starts at the saved cursor (nothing new). After
``reset --yes`` the next run is a full resync: pull is handed cursor None and an empty
state, and every record is pushed again. ``reset --cursor`` makes the next run start there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
FLOW = "pages-sync"
FLOW_FILE = '''
import json

from datasync import Page, flow

DATA = [[{"id": i} for i in range(p * 5, p * 5 + 5)] for p in range(4)]


@flow("pages-sync")
class PagesSync:
    """Four pages of five records; every pull notes the cursor and state it was handed."""

    def pull(self, ctx, cursor):
        with open(ctx.config["pulls"], "a") as out:
            out.write(json.dumps({"cursor": cursor, "state": ctx.state, "run": ctx.run_id}))
            out.write("\\n")
        n = int(cursor or 0)
        if n >= len(DATA):  # synced up: nothing new
            return Page(records=[], cursor=cursor, has_more=False)
        return Page(records=DATA[n], cursor=str(n + 1), has_more=n + 1 < len(DATA))

    def push(self, ctx, records):
        ctx.state["pushed"] = ctx.state.get("pushed", 0) + len(records)
        with open(ctx.config["out"], "a") as out:
            for r in records:
                out.write(json.dumps({"id": r["id"], "run": ctx.run_id}) + "\\n")
'''


@pytest.fixture
def project(tmp_path):
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "pages_sync.py").write_text(FLOW_FILE)
    env = {
        **os.environ,
        "DATASYNC_HOME": str(tmp_path / "home"),
        "DATASYNC_FLOWS_DIR": str(flows),
        "DATASYNC_HTTP_BACKOFF_BASE": "0.01",
    }
    for name in ("COSMOS_ENDPOINT", "AzureWebJobsStorage", "KEYVAULT_URL"):
        env.pop(name, None)
    return tmp_path, env


def cli(env, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "datasync", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def run_once(tmp: Path, env) -> tuple[list[dict], list[int]]:
    """Trigger the flow, drain the queue; the pulls and pushed ids of that run."""
    pulls, out = tmp / "pulls.jsonl", tmp / "out.jsonl"
    for path in (pulls, out):
        path.unlink(missing_ok=True)
    cli(env, "trigger", "acme", FLOW)
    cli(env, "run", "--once")
    return lines(pulls), [r["id"] for r in lines(out)]


@pytest.mark.timeout(240)
def test_reset_makes_the_next_run_a_full_resync(project):
    tmp, env = project
    entry = {
        "name": FLOW,
        "cron": "0 0 3 1 1 *",  # yearly: nothing else becomes due during the test
        "config": {"out": str(tmp / "out.jsonl"), "pulls": str(tmp / "pulls.jsonl")},
    }
    doc = {"id": "acme", "tenantId": "acme", "timezone": "Europe/Amsterdam", "flows": [entry]}
    (tmp / "tenants.json").write_text(json.dumps(doc))
    cli(env, "tenants", "apply", str(tmp / "tenants.json"))

    pulls, pushed = run_once(tmp, env)
    assert [p["cursor"] for p in pulls] == [None, "1", "2", "3"]
    assert sorted(pushed) == list(range(20))

    pulls, pushed = run_once(tmp, env)  # synced up: starts at the saved cursor
    assert [(p["cursor"], p["state"]) for p in pulls] == [("4", {"pushed": 20})]
    assert pushed == []

    out = cli(env, "reset", "acme", FLOW, "--yes").stdout
    assert f"reset flow {FLOW} of tenant acme: cursor and state forgotten" in out
    pulls, pushed = run_once(tmp, env)
    assert (pulls[0]["cursor"], pulls[0]["state"]) == (None, {})
    assert [p["cursor"] for p in pulls] == [None, "1", "2", "3"]
    assert sorted(pushed) == list(range(20))  # a full resync

    data = json.loads(cli(env, "reset", "acme", FLOW, "--cursor", "2", "--yes", "--json").stdout)
    assert (data["cursor"], data["state"]) == ("2", {})
    pulls, pushed = run_once(tmp, env)
    assert (pulls[0]["cursor"], pulls[0]["state"]) == ("2", {})
    assert [p["cursor"] for p in pulls] == ["2", "3"]
    assert sorted(pushed) == list(range(10, 20))

    runs = json.loads(cli(env, "runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["Completed"] * 4
    assert {p["run"] for p in pulls} == {runs[0]["instanceId"]}  # one run per run --once
