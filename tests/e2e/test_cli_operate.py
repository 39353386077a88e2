"""Operating real runs through the CLI a user types, on the embedded runtime.

A run fails on its third page; ``runs show`` tells what happened page by page; ``rerun``
queues it again and the next ``run --once`` completes it from its checkpoint (no record
pushed twice). ``backfill`` starts one run per occurrence of a range. ``runs --watch``
ends with exit 0 on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
FLOW = "pages-sync"
FLOW_FILE = '''
import json
import os

from datasync import Page, PermanentError, flow

DATA = [[{"id": i} for i in range(p * 5, p * 5 + 5)] for p in range(4)]


@flow("pages-sync")
class PagesSync:
    """Four pages of five records; page 3's push fails while the fail file exists."""

    def pull(self, ctx, cursor):
        n = int(cursor or 0)
        if n >= len(DATA):  # synced up: nothing new
            return Page(records=[], cursor=cursor, has_more=False)
        return Page(records=DATA[n], cursor=str(n + 1), has_more=n + 1 < len(DATA))

    def push(self, ctx, records):
        if records[0]["id"] == 10 and os.path.exists(ctx.config["fail_file"]):
            raise PermanentError("the target refused page 3")
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
        "DATASYNC_PAGES_PER_GENERATION": "2",
    }
    for name in ("COSMOS_ENDPOINT", "AzureWebJobsStorage", "KEYVAULT_URL"):
        env.pop(name, None)
    return tmp_path, env


def cli(env, *args: str, stdin: str | None = None, check: int | None = 0):
    proc = subprocess.run(
        [sys.executable, "-m", "datasync", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def apply(tmp: Path, env, **flow) -> None:
    entry = {
        "name": FLOW,
        "cron": "0 0 3 1 1 *",  # yearly: nothing else becomes due during the test
        "config": {"out": str(tmp / "out.jsonl"), "fail_file": str(tmp / "fail")},
        **flow,
    }
    doc = {"id": "acme", "tenantId": "acme", "timezone": "Europe/Amsterdam", "flows": [entry]}
    (tmp / "tenants.json").write_text(json.dumps(doc))
    cli(env, "tenants", "apply", str(tmp / "tenants.json"))


def pushed(tmp: Path) -> list[dict]:
    path = tmp / "out.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.timeout(240)
def test_a_failed_run_is_shown_page_by_page_and_rerun_completes_it(project):
    tmp, env = project
    (tmp / "fail").write_text("")
    apply(tmp, env, nextRunUtc="2026-01-01T03:00:00+01:00")
    log = cli({**env, "DATASYNC_LOG_FORMAT": "json"}, "run", "--once", check=1).stderr
    [failed] = json.loads(cli(env, "runs", "--json").stdout)
    iid = failed["instanceId"]
    assert iid == "Workflow-acme--pages-sync-20260101T020000Z"
    lines = [json.loads(line) for line in log.splitlines()]  # every line is one JSON object
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", x["ts"]) for x in lines)
    ended = [x for x in lines if x["message"].startswith(f"[acme/{iid}] run {iid} Failed")]
    assert len(ended) == 1, [x["message"] for x in lines]
    assert ended[0]["level"] == "ERROR"
    assert (ended[0]["tenant"], ended[0]["run"], ended[0]["flow"]) == ("acme", iid, FLOW)
    assert failed["status"] == "Failed" and failed["pages"] == 2
    assert "the target refused page 3" in failed["error"]

    detail = json.loads(cli(env, "runs", "show", iid, "--json").stdout)
    pages = detail["pageRecords"]
    # page 4 may have been pulled beside page 3's push (pipelined pages); it was never pushed
    assert [p["page"] for p in pages][:3] == [1, 2, 3] and len(pages) <= 4
    assert all(s["step"] != "push" for p in pages[3:] for s in p["steps"])
    assert [(p["cursorBefore"], p["cursorAfter"]) for p in pages[:2]] == [(None, "1"), ("1", "2")]
    push3 = pages[2]["steps"][-1]
    assert push3["step"] == "push" and "the target refused page 3" in push3["error"]
    assert detail["latenessSeconds"] is not None and detail["latenessSeconds"] > 0
    text = cli(env, "runs", "show", iid).stdout
    assert "status         Failed" in text and "the target refused page 3" in text
    assert [r["id"] for r in pushed(tmp)] == list(range(10))

    refused = cli(env, "rerun", "Workflow-acme--pages-sync-20990101T020000Z", check=2)
    assert refused.stderr.startswith("error: no run ")
    (tmp / "fail").unlink()
    queued = json.loads(cli(env, "rerun", iid, "--json").stdout)
    assert (
        queued["instanceId"] == f"{iid}-rerun1" and queued["scheduledFor"] == failed["scheduledFor"]
    )
    cli(env, "run", "--once")

    runs = {r["instanceId"]: r for r in json.loads(cli(env, "runs", "--json").stdout)}
    again = runs[f"{iid}-rerun1"]
    assert again["status"] == "Completed" and again["scheduledFor"] == failed["scheduledFor"]
    assert again["pages"] == 2  # pages 3 and 4: it started from the checkpoint
    assert runs[iid]["status"] == "Failed"  # the original stays as it ended
    shown = json.loads(cli(env, "runs", "show", f"{iid}-rerun1", "--json").stdout)
    assert shown["rerunOf"] == iid
    assert shown["pageRecords"][0]["cursorBefore"] == "2"
    records = pushed(tmp)
    assert sorted(r["id"] for r in records) == list(range(20))  # each record exactly once
    assert {r["run"] for r in records if r["id"] >= 10} == {f"{iid}-rerun1"}
    assert json.loads(cli(env, "runs", "show", iid, "--json").stdout)["reruns"] == [f"{iid}-rerun1"]
    again_refused = cli(env, "rerun", f"{iid}-rerun1", check=2)
    assert "is Completed" in again_refused.stderr


EXPECTED = [
    "2026-11-20T05:00:00Z",
    "2026-11-20T11:00:00Z",
    "2026-11-20T17:00:00Z",
    "2026-11-20T23:00:00Z",
]
RANGE = ("--from", "2026-11-20T00:00:00Z", "--to", "2026-11-20T23:59:59Z")


@pytest.mark.timeout(240)
def test_backfill_starts_one_run_per_occurrence(project):
    tmp, env = project
    apply(tmp, env, cron="0 0 */6 * * *", overlap="allow", nextRunUtc="2099-01-01T00:00:00Z")
    args = ("backfill", "acme", FLOW, *RANGE)
    dry = json.loads(cli(env, *args, "--dry-run", "--json").stdout)
    assert [o["scheduledFor"] for o in dry["occurrences"]] == EXPECTED
    assert json.loads(cli(env, "queue", "list", "--json").stdout) == []

    cli(env, *args)
    listed = json.loads(cli(env, "queue", "list", "--json").stdout)
    assert sorted(j["scheduledFor"] for j in listed) == EXPECTED
    assert {j["state"] for j in listed} == {"due"}
    cli(env, "run", "--once")
    runs = json.loads(cli(env, "runs", "--json").stdout)
    assert sorted((r["scheduledFor"], r["status"]) for r in runs) == [
        (t, "Completed") for t in EXPECTED
    ]
    assert "queued 0, 4 already ran" in cli(env, *args).stdout
    assert json.loads(cli(env, "queue", "list", "--json").stdout) == []


@pytest.mark.timeout(240)
def test_backfill_with_overlap_queue_runs_one_after_another(project):
    tmp, env = project
    apply(tmp, env, cron="0 0 */6 * * *", overlap="queue", nextRunUtc="2099-01-01T00:00:00Z")
    cli(env, "backfill", "acme", FLOW, *RANGE)
    cli(env, "run", "--once")
    runs = json.loads(cli(env, "runs", "--json").stdout)
    assert sorted((r["scheduledFor"], r["status"]) for r in runs) == [
        (t, "Completed") for t in EXPECTED
    ]
    # one after another: the first synced all, the others started at its cursor
    assert sorted(r["id"] for r in pushed(tmp)) == list(range(20)), [
        (r["instanceId"][-16:], r["startedAt"], r["finishedAt"], r["pages"]) for r in runs
    ]


@pytest.mark.timeout(60)
def test_runs_watch_ends_with_exit_0_on_ctrl_c(project):
    tmp, env = project
    apply(tmp, env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "datasync", "runs", "--watch"],
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        time.sleep(3.0)  # one refresh at least
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "no runs yet" in out


@pytest.mark.timeout(60)
def test_console_serves_on_loopback_and_ctrl_c_ends_it(project):
    import socket

    import httpx

    tmp, env = project
    apply(tmp, env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "datasync", "console", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the console did not start"
                time.sleep(0.2)
        assert page.status_code == 200 and "DataSync" in page.text
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"web console at http://127.0.0.1:{port}/" in err
    assert "Traceback" not in err
