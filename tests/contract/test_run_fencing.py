"""RunStore fencing contract: a writer that no longer holds the work (stalled past its
lease, its run superseded by a newer one) cannot move a checkpoint, counters or a final
status backwards; the same write again is a harmless repeat."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from datasync.exceptions import PermanentError
from datasync.models import RunRecord
from datasync.ports import Checkpoint, FencedWrite
from tests.contract.test_run_store import race

R1 = "Workflow-acme--contacts-20261123T140000Z"
R2 = "Workflow-acme--contacts-20261123T150000Z"


def run(instance: str) -> RunRecord:
    return RunRecord(
        instance_id=instance,
        tenant_id="acme",
        flow_name="contacts",
        scheduled_for="2026-11-23T14:00:00Z",
        status="Pending",
    )


def save(store, instance: str, page: int, cursor=None) -> FencedWrite:
    return store.checkpoint(
        instance,
        "acme",
        "contacts",
        Checkpoint(cursor=cursor or f"c{page}", state={"page": page}),
        pages=page,
        records_in=page * 10,
        records_out=page * 10,
    )


def counters(store, instance: str) -> tuple[int, int, int]:
    got = store.get(instance)
    return got.pages, got.records_in, got.records_out


def saved(store) -> Checkpoint:
    return store.load_checkpoint("acme", "contacts")


def test_a_late_write_for_an_earlier_page_is_rejected(backend):
    store = backend.runs
    store.begin(run(R1))
    assert [save(store, R1, p).outcome for p in (1, 2, 3)] == ["applied"] * 3
    late = save(store, R1, 2, cursor="stale")
    assert late.stale and "page 3" in late.reason
    assert saved(store) == Checkpoint(cursor="c3", state={"page": 3})
    assert counters(store, R1) == (3, 30, 30)


def test_the_same_page_again_is_a_repeat_and_the_first_write_stands(backend):
    store = backend.runs
    store.begin(run(R1))
    assert save(store, R1, 1).outcome == "applied"
    again = save(store, R1, 1, cursor="other")
    assert (again.outcome, again.stale) == ("repeat", False)
    assert saved(store).cursor == "c1"


def test_a_new_run_owns_the_checkpoint_and_the_old_runs_writes_are_stale(backend):
    store = backend.runs
    store.begin(run(R1))
    save(store, R1, 1)
    store.finish(R1, "Failed", "target down")
    store.begin(run(R2))  # the next occurrence starts from R1's cursor and owns it now
    assert saved(store).cursor == "c1"
    late = save(store, R1, 2, cursor="from-the-old-run")
    assert late.stale and R2 in late.reason
    assert saved(store).cursor == "c1"
    # page 1 of the new run moves it on (the old run was at page 1: numbers are per run)
    assert save(store, R2, 1, cursor="r2-c1").outcome == "applied"
    assert saved(store).cursor == "r2-c1"
    assert counters(store, R2) == (1, 10, 10)
    # the old run's own counters say what it pushed (its record only ever moves forward)
    assert counters(store, R1) == (2, 20, 20)
    assert store.get(R1).status == "Failed"


def test_a_resumed_run_keeps_its_checkpoint_and_counters(backend):
    store = backend.runs
    store.begin(run(R1))
    save(store, R1, 2)
    store.finish(R1, "Failed", "boom")
    resumed = store.begin(run(R1))
    assert (resumed.status, resumed.pages, resumed.resumes) == ("Running", 2, 1)
    assert save(store, R1, 2).outcome == "repeat"
    assert save(store, R1, 3).outcome == "applied"
    assert saved(store).cursor == "c3" and counters(store, R1) == (3, 30, 30)


def test_a_resume_leaves_the_checkpoint_to_an_active_run(backend):
    store = backend.runs
    store.begin(run(R1))
    save(store, R1, 4)
    store.finish(R1, "Failed", "boom")
    store.begin(run(R2))
    save(store, R2, 1)
    store.begin(run(R1))  # a rerun of the failed run while R2 is still running
    assert save(store, R1, 5).stale
    assert save(store, R2, 2).outcome == "applied"
    assert saved(store).cursor == "c2"
    store.finish(R2, "Completed")
    # with R2 done, the next begin of R1 takes the checkpoint over at R1's own page count
    # (5: its page 5 went out, the checkpoint refused it, its own record counted it)
    store.finish(R1, "Failed", "again")
    resumed = store.begin(run(R1))
    assert (resumed.pages, saved(store).cursor) == (5, "c2")
    assert save(store, R1, 5).outcome == "repeat"
    assert save(store, R1, 6).outcome == "applied"
    assert saved(store).cursor == "c6"


def test_finish_never_overwrites_a_terminal_record(backend):
    store = backend.runs
    store.begin(run(R1))
    assert store.finish(R1, "Completed").outcome == "applied"
    late = store.finish(R1, "Failed", "a stale failure")
    assert late.stale and "Completed" in late.reason
    got = store.get(R1)
    assert (got.status, got.error) == ("Completed", None)
    assert store.finish(R1, "Completed").outcome == "repeat"
    assert store.finish("Workflow-acme--ghost-20261123T140000Z", "Completed").stale


def test_a_failed_run_is_reopened_by_its_begin_and_then_finishes(backend):
    store = backend.runs
    store.begin(run(R1))
    store.finish(R1, "Failed", "boom")
    store.begin(run(R1))
    assert store.finish(R1, "Completed").outcome == "applied"
    assert (store.get(R1).status, store.get(R1).error) == ("Completed", None)


@pytest.mark.parametrize("status", ["Completed", "Skipped"])
def test_a_done_run_is_never_begun_again(backend, status):
    store = backend.runs
    store.begin(run(R1))
    save(store, R1, 2)
    if status == "Completed":
        store.finish(R1, status)
    else:
        store.record(replace(run(R1), status="Skipped"))
    before = store.get(R1)
    with pytest.raises(PermanentError, match=f"{R1} is {status}"):
        store.begin(run(R1))
    assert store.get(R1) == before


def test_racing_writers_of_one_run_end_at_its_last_page(backend):
    store = backend.runs
    store.begin(run(R1))
    pages = list(range(1, 9)) * 2
    random.Random(7).shuffle(pages)
    it = iter(pages)
    results = race(len(pages), lambda: save(store, R1, next(it)).outcome != "stale")
    assert len(results) == len(pages)
    assert saved(store) == Checkpoint(cursor="c8", state={"page": 8})
    assert counters(store, R1) == (8, 80, 80)
