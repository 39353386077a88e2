"""Flow code is contained: whatever a flow does — exits, kills its process, never returns,
hangs at import, prints, repeats its cursor, raises a permanent error — the run it belongs
to ends (Failed, with a reason that says why) and everything else goes on."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.faults.harness import DUE_ID, ROOT, flow_entry, setup_gated, tenant_doc

pytestmark = pytest.mark.faults

# A flow without any API: pages of two records, cursor 1, 2, ... until config.pages;
# config.do names what to do instead ("exit", "interrupt", "os_exit", "sleep", "repeat",
# "none_cursor", "permanent", "no_secret", "no_config") and where (config.at: the page, default 1).
# Each pull and push appends a line to <config.dir>/<flow>.log.
MISBEHAVING = """
import os
import sys
import time
from pathlib import Path

from datasync import Page, PermanentError, flow

print("{name}: printed at import")


def note(ctx, what):
    with open(Path(ctx.config["dir"]) / (ctx.flow_name + ".log"), "a") as f:
        f.write(what + "\\n")


@flow("{name}")
class Misbehaving:
    def pull(self, ctx, cursor):
        note(ctx, "pull %s" % cursor)
        print("{name}: printed in pull")
        page = (cursor or 0) + 1
        do = ctx.config.get("do", "") if page >= ctx.config.get("at", 1) else ""
        if do == "exit":
            sys.exit(3)
        if do == "os_exit":
            os._exit(0)
        if do == "sleep":
            time.sleep(3600)
        if do == "permanent":
            raise PermanentError("the source says this account is closed")
        if do == "no_secret":
            ctx.secret("crm", "token")
        if do == "no_config":
            ctx.config["source_url"]
        if do == "repeat":
            return Page(records=[{{"id": 1}}, {{"id": 2}}], cursor=cursor, has_more=True)
        if do == "none_cursor":
            return Page(records=[{{"id": 1}}], cursor=None, has_more=True)
        more = page < ctx.config.get("pages", 3)
        return Page(records=[{{"id": page}}, {{"id": -page}}], cursor=page, has_more=more)

    def push(self, ctx, records):
        note(ctx, "push %d" % len(records))
        if ctx.config.get("do") == "interrupt":
            raise KeyboardInterrupt("stop it")
"""


def misbehaving(project, name: str, **config) -> dict:
    project.write_flow(name.replace("-", "_") + ".py", MISBEHAVING.format(name=name))
    return flow_entry(name, {"dir": str(project.tmp), **config})


def lines(project, name: str) -> list[str]:
    path = project.tmp / f"{name}.log"
    return path.read_text().splitlines() if path.exists() else []


def by_flow(project) -> dict[str, dict]:
    return {r["flowName"]: r for r in project.runs()}


def test_exit_and_keyboard_interrupt_in_steps_fail_their_runs_and_others_complete(project, apis):
    setup_gated(project, apis, "acme", 25)
    project.apply(
        tenant_doc(
            "bad",
            misbehaving(project, "exits", do="exit"),
            misbehaving(project, "interrupts", do="interrupt"),
        )
    )
    project.run_once(expect=1)
    runs = {r["tenantId"] + "/" + r["flowName"]: r for r in project.runs()}
    assert runs["acme/gated"]["status"] == "Completed"
    assert apis.stats("acme")["count"] == 25
    exits, interrupts = runs["bad/exits"], runs["bad/interrupts"]
    assert exits["status"] == interrupts["status"] == "Failed"
    assert "SystemExit: 3" in exits["error"]
    assert "KeyboardInterrupt: stop it" in interrupts["error"]


@pytest.mark.timeout(150)
def test_a_process_that_dies_in_a_step_is_taken_over_three_times_then_the_run_fails(
    project,
):
    project.apply(tenant_doc("acme", misbehaving(project, "dies", do="os_exit", at=2)))
    codes = []
    for _ in range(6):  # the first run dies, three take-overs die, the fourth fails it
        runtime = project.run_once(expect=None)
        codes.append(runtime.proc.returncode)
        if project.runs()[0]["status"] != "Running":
            break
    [run] = project.runs()
    assert run["status"] == "Failed", (codes, run)
    assert codes == [0, 0, 0, 1]  # os._exit(0) three times, then exit 1: the run failed
    assert run["pages"] == 1 and run["resumes"] >= 1
    assert "the process running pull_page died 3 times (exit without result)" in run["error"]
    assert lines(project, "dies").count("pull 1") == 3  # page 2's pull, once per process
    assert f"run failed: Workflow-acme--dies-{DUE_ID}" in project.runtimes[-1].stderr()


@pytest.mark.timeout(90)
def test_a_step_that_never_returns_is_timed_out_and_the_runtime_goes_on(project, apis):
    setup_gated(project, apis, "acme", 25)
    project.apply(tenant_doc("slow", misbehaving(project, "sleeps", do="sleep")))
    app = project.tmp / "app"  # the app with host.json's functionTimeout at one second
    app.mkdir()
    shutil.copy(ROOT / "function_app.py", app)
    host = json.loads((ROOT / "host.json").read_text())
    (app / "host.json").write_text(json.dumps({**host, "functionTimeout": "00:00:01"}))
    started = time.time()
    runtime = project.run_once(expect=1, timeout=60, DATASYNC_PROJECT_ROOT=str(app))
    assert time.time() - started < 40
    runs = by_flow(project)
    assert runs["gated"]["status"] == "Completed"
    assert runs["sleeps"]["status"] == "Failed"
    assert runs["sleeps"]["error"] == (
        "Activity function 'pull_page' failed: Timeout value of 00:00:01 was exceeded by "
        "function: Functions.pull_page"
    )
    assert lines(project, "sleeps") == ["pull None"] * 3  # tried 3 times, each timed out
    assert "abandoned" in runtime.stderr()


@pytest.mark.timeout(180)
def test_a_flow_file_whose_import_never_returns_is_reported_and_the_others_run(project, apis):
    project.env["DATASYNC_FLOW_IMPORT_TIMEOUT"] = "2"
    project.write_flow("a_hangs.py", "import threading\nthreading.Event().wait()\n")
    setup_gated(project, apis, "acme", 25)  # tenants apply does not hang
    listed = project.cli("flows", "list", "--json", check=2)
    assert [f["name"] for f in json.loads(listed.stdout)] == ["gated"]
    assert "flows/a_hangs.py: import did not finish within" in listed.stderr
    project.run_once()
    assert by_flow(project)["gated"]["status"] == "Completed"
    assert apis.stats("acme")["count"] == 25


def test_what_a_flow_prints_never_reaches_stdout(project):
    project.apply(tenant_doc("acme", misbehaving(project, "chatty", pages=2)))
    listed = project.cli("flows", "list", "--json")
    assert json.loads(listed.stdout) == [{"name": "chatty", "file": "flows/chatty.py"}]
    assert "chatty: printed at import" in listed.stderr
    runtime = project.run_once()
    assert "printed" not in runtime.stdout()
    assert "chatty: printed in pull" in runtime.stderr()
    assert by_flow(project)["chatty"]["status"] == "Completed"


@pytest.mark.timeout(90)
def test_a_cursor_that_stops_advancing_while_has_more_fails_the_run(project):
    project.apply(
        tenant_doc(
            "acme",
            misbehaving(project, "repeats", do="repeat", at=2),
            misbehaving(project, "nones", do="none_cursor"),
        )
    )
    project.run_once(expect=1, timeout=60)
    runs = by_flow(project)
    for name in ("repeats", "nones"):
        assert runs[name]["status"] == "Failed", runs[name]
        assert (
            "the cursor did not advance for 3 pages in a row while has_more=True"
            in (runs[name]["error"])
        )
    # page 1 advanced; pages 2 and 3 repeated it and were pushed; page 4 failed the run
    assert lines(project, "repeats").count("push 2") == 3
    assert lines(project, "nones").count("push 1") == 2  # None == None from the start


def test_a_permanent_error_or_a_missing_secret_fails_the_run_without_retries(project):
    project.apply(
        tenant_doc(
            "acme",
            misbehaving(project, "closed", do="permanent"),
            misbehaving(project, "nosecret", do="no_secret"),
            misbehaving(project, "noconfig", do="no_config"),
        )
    )
    started = time.time()
    project.run_once(expect=1)
    assert time.time() - started < 15
    runs = by_flow(project)
    assert "PermanentError: the source says this account is closed" in runs["closed"]["error"]
    assert (
        "SecretNotFound: secret not found: tenant acme, system crm, key token"
        in (runs["nosecret"]["error"])
    )
    assert "MissingConfigKey: flow config has no key 'source_url'" in runs["noconfig"]["error"]
    assert lines(project, "closed") == ["pull None"]  # tried once
    assert lines(project, "nosecret") == ["pull None"]
    assert lines(project, "noconfig") == ["pull None"]
