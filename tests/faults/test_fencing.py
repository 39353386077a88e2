"""Fencing: a runtime stopped past its lease (SIGSTOP) while another finishes its run does
not undo that run when it wakes (SIGCONT): its late checkpoint is rejected, the completed
run's cursor and counters stand, and the next run pushes only new records."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from tests.faults.harness import DUE_ID, Project, setup_gated, wait_for

pytestmark = pytest.mark.faults

RUN_ID = f"Workflow-acme--gated-{DUE_ID}"


def _stop_outside_a_write(project: Project, pid: int) -> None:
    """SIGSTOP ``pid`` at a moment it holds no SQLite write lock (a stopped writer would
    block every other runtime on the same DATASYNC_HOME for good)."""
    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        free = True
        for db in ("durable.db", "datasync.db"):
            con = sqlite3.connect(project.home / db, timeout=0.2, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
            except sqlite3.OperationalError:
                free = False
            finally:
                con.close()
        if free:
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the runtime never let go of the write lock")


def _checkpoint(project: Project) -> tuple:
    return project.sql(
        "datasync.db",
        "SELECT cursor FROM checkpoints WHERE tenant_id = 'acme' AND flow_name = 'gated'",
    )[0]


@pytest.mark.timeout(90)
def test_a_writer_stopped_past_its_lease_cannot_undo_the_finished_run(project, apis):
    setup_gated(project, apis, "acme", 55, gate=project.gate("g", "push", 3))
    stale = project.start()
    wait_for(lambda: project.reached("g"), 30, "the push of page 3")
    assert apis.stats("acme")["count"] == 30  # page 3 went out; its checkpoint has not
    _stop_outside_a_write(project, stale.pid)
    try:
        # a second runtime takes the push over once the 6 s lease lapses, and finishes
        project.run_once(timeout=60)
    finally:
        project.release("g")
        os.kill(stale.pid, signal.SIGCONT)
    [run] = project.runs()
    assert (run["status"], run["pages"], run["recordsIn"], run["recordsOut"]) == (
        "Completed",
        6,
        55,
        55,
    ), run
    assert _checkpoint(project) == ('"000055"',)

    # the stale runtime wakes inside its push of page 3 and tries to checkpoint page 3
    wait_for(lambda: "was taken over; its result is dropped" in stale.stderr(), 20, "the drop")
    stale.kill()

    [run] = project.runs()
    assert (run["status"], run["pages"], run["recordsIn"], run["recordsOut"]) == (
        "Completed",
        6,
        55,
        55,
    ), run
    assert _checkpoint(project) == ('"000055"',)
    assert f"stale write from {RUN_ID} page 3 rejected" in stale.stderr()

    # the next run starts after record 55: only the five new records go out, each once
    apis.add_records("acme", 5)
    project.cli("trigger", "acme", "gated")
    project.run_once()
    stats = apis.stats("acme")
    assert (stats["count"], stats["maxReceives"]) == (60, 1), stats
    newest = project.runs()[0]
    assert (newest["status"], newest["recordsIn"]) == ("Completed", 5), newest
