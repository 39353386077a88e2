"""RunStore contract: the atomic dedupe (create, take_over_pending) under races, the run
lifecycle, cumulative checkpoints, and the history queries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from datasync.exceptions import NotFound
from datasync.models import RunRecord
from datasync.ports import Checkpoint

ID = "Workflow-acme--contacts-20261123T140000Z"


def run(
    instance: str = ID, tenant: str = "acme", flow: str = "contacts", status: str = "Pending"
) -> RunRecord:
    return RunRecord(
        instance_id=instance,
        tenant_id=tenant,
        flow_name=flow,
        scheduled_for="2026-11-23T14:00:00Z",
        status=status,
    )


def race(n: int, call: Callable[[], bool]) -> list[bool]:
    """``call`` in ``n`` threads released together; their answers."""
    barrier = threading.Barrier(n)
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def go() -> None:
        barrier.wait()
        try:
            ok = call()
        except BaseException as exc:  # noqa: BLE001 - a thread's error fails the test, not the thread
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


# -- the dedupe --------------------------------------------------------------------------


def test_create_inserts_a_pending_record_once(backend):
    store = backend.runs
    assert store.create(run()) is True
    got = store.get(ID)
    assert (got.status, got.started_at, got.pages, got.resumes) == ("Pending", None, 0, 0)
    assert store.create(run()) is False  # Pending
    store.begin(run())
    assert store.create(run()) is False  # Running
    store.finish(ID, "Completed")
    assert store.create(run()) is False  # redelivered after Completed
    assert store.get(ID).status == "Completed"  # and nothing was touched


@pytest.mark.parametrize("status", ["Failed", "Skipped", "Terminated"])
def test_create_skips_any_existing_record(backend, status):
    backend.runs.record(run(status=status))
    assert backend.runs.create(run()) is False
    assert backend.runs.get(ID).status == status


def test_racing_creates_let_exactly_one_win_per_id(backend):
    ids = [f"Workflow-acme--contacts-20261123T{h:02d}0000Z" for h in range(10)]
    for instance in ids:
        assert sorted(race(6, lambda instance=instance: backend.runs.create(run(instance)))) == [
            False
        ] * 5 + [True]
    assert {r.instance_id for r in backend.runs.recent(limit=100)} == set(ids)


def test_take_over_reclaims_a_stale_pending_record_once(backend):
    store, clock = backend.runs, backend.clock
    t0 = clock()
    assert store.create(run())
    assert store.take_over_pending(ID, older_than=t0) is False  # claimed just now
    clock.advance(600)
    results = race(6, lambda: store.take_over_pending(ID, older_than=t0 + timedelta(seconds=300)))
    assert sorted(results) == [False] * 5 + [True]
    assert store.take_over_pending(ID, older_than=t0 + timedelta(seconds=300)) is False
    assert store.get(ID).status == "Pending"
    clock.advance(600)  # the taker died too: again, once
    assert store.take_over_pending(ID, older_than=clock() - timedelta(seconds=300)) is True


def test_take_over_caps_older_than_at_now(backend):
    store, clock = backend.runs, backend.clock
    assert store.create(run())
    clock.advance(60)
    far = clock() + timedelta(days=1)  # a caller's clock far ahead
    assert sorted(race(6, lambda: store.take_over_pending(ID, older_than=far))) == (
        [False] * 5 + [True]
    )


def test_take_over_leaves_started_finished_and_unknown_runs_alone(backend):
    store, clock = backend.runs, backend.clock
    other = "Workflow-acme--contacts-20261123T150000Z"
    assert store.create(run()) and store.create(run(other))
    store.begin(run())
    store.finish(other, "Completed")
    clock.advance(3600)
    for instance in (ID, other, "Workflow-acme--ghost-20261123T140000Z"):
        assert store.take_over_pending(instance, older_than=clock()) is False
    assert (store.get(ID).status, store.get(other).status) == ("Running", "Completed")


# -- the run lifecycle -------------------------------------------------------------------


def test_begin_creates_or_starts_and_counts_a_restart_as_a_resume(backend):
    store, clock = backend.runs, backend.clock
    fresh = store.begin(run("Workflow-acme--contacts-20261123T150000Z", status="Running"))
    assert (fresh.status, fresh.started_at, fresh.resumes, fresh.pages) == (
        "Running",
        "2026-11-23T14:00:00Z",
        0,
        0,
    )

    store.create(run())
    clock.advance(5)
    started = store.begin(run())
    assert (started.status, started.started_at, started.resumes) == (
        "Running",
        "2026-11-23T14:00:05Z",
        0,
    )
    store.checkpoint(
        ID,
        "acme",
        "contacts",
        Checkpoint(cursor="000200"),
        pages=2,
        records_in=200,
        records_out=190,
    )
    clock.advance(4)
    store.finish(ID, "Failed", "target down")
    failed = store.get(ID)
    assert (failed.status, failed.error, failed.finished_at) == (
        "Failed",
        "target down",
        "2026-11-23T14:00:09Z",
    )
    assert [r.instance_id for r in store.active("acme")] == [fresh.instance_id]

    again = store.begin(run())
    assert (again.status, again.error, again.finished_at, again.resumes) == (
        "Running",
        None,
        None,
        1,
    )
    assert (again.started_at, again.pages, again.records_in, again.records_out) == (
        "2026-11-23T14:00:05Z",
        2,
        200,
        190,
    )  # counters span the resume
    store.mark_resumed(ID)
    assert store.get(ID).resumes == 2


def test_checkpoint_saves_cursor_state_and_cumulative_counters(backend):
    store = backend.runs
    assert store.load_checkpoint("acme", "contacts") == Checkpoint()
    store.begin(run())
    store.checkpoint(
        ID,
        "acme",
        "contacts",
        Checkpoint(cursor="000100", state={"seen": 1, "tags": ["a"]}),
        pages=1,
        records_in=100,
        records_out=100,
    )
    store.checkpoint(
        ID,
        "acme",
        "contacts",
        Checkpoint(cursor=250, state={"seen": 2}),
        pages=3,
        records_in=250,
        records_out=240,
    )
    store.checkpoint(
        ID,
        "acme",
        "contacts",
        Checkpoint(cursor=250, state={"seen": 2}),
        pages=3,
        records_in=250,
        records_out=240,
    )  # a retried push: same
    assert store.load_checkpoint("acme", "contacts") == Checkpoint(cursor=250, state={"seen": 2})
    got = store.get(ID)
    assert (got.pages, got.records_in, got.records_out) == (3, 250, 240)
    assert store.load_checkpoint("acme", "orders") == Checkpoint()
    assert store.load_checkpoint("beta", "contacts") == Checkpoint()
    # a checkpoint without a run record still saves the cursor (and makes no run)
    beta = "Workflow-beta--contacts-20261123T140000Z"
    store.checkpoint(
        beta,
        "beta",
        "contacts",
        Checkpoint(cursor=None, state={}),
        pages=1,
        records_in=0,
        records_out=0,
    )
    assert store.load_checkpoint("beta", "contacts") == Checkpoint(cursor=None, state={})
    with pytest.raises(NotFound):
        store.get(beta)


def test_a_saved_checkpoint_is_a_copy(backend):
    state = {"seen": ["a"]}
    backend.runs.checkpoint(
        ID,
        "acme",
        "contacts",
        Checkpoint(cursor="c", state=state),
        pages=1,
        records_in=1,
        records_out=1,
    )
    state["seen"].append("b")
    assert backend.runs.load_checkpoint("acme", "contacts").state == {"seen": ["a"]}


def test_unknown_runs(backend):
    store = backend.runs
    with pytest.raises(NotFound, match="Workflow-acme--x-20261123T140000Z"):
        store.get("Workflow-acme--x-20261123T140000Z")
    store.finish("Workflow-acme--x-20261123T140000Z", "Completed")  # no-op
    store.mark_resumed("Workflow-acme--x-20261123T140000Z")  # no-op
    assert store.recent() == []


def test_record_upserts_a_whole_record(backend):
    skipped = run(status="Skipped")
    skipped.finished_at, skipped.error = "2026-11-23T14:00:01Z", "overlap: other run"
    backend.runs.record(skipped)
    assert backend.runs.get(ID) == skipped
    skipped.error = "overlap: changed"
    backend.runs.record(skipped)
    assert backend.runs.get(ID).error == "overlap: changed"
    assert [r.instance_id for r in backend.runs.recent()] == [ID]


# -- reads -------------------------------------------------------------------------------


def test_recent_is_newest_first_with_filters_and_limit(backend):
    store, clock = backend.runs, backend.clock
    ids = []
    for i, (tenant, flow, second) in enumerate(
        [
            ("acme", "contacts", 0),
            ("acme", "orders", 1),
            ("beta", "contacts", 0),
            ("acme", "contacts", 1),
        ]
    ):
        clock.advance(second)
        r = run(f"Workflow-{tenant}--{flow}-2026112{i}T140000Z", tenant, flow)
        store.create(r)
        ids.append(r.instance_id)
    store.begin(run(ids[1], "acme", "orders"))
    store.finish(ids[1], "Completed")

    # newest first; the two created in the same second by instance id, descending
    assert [r.instance_id for r in store.recent()] == [ids[3], ids[2], ids[1], ids[0]]
    assert [r.instance_id for r in store.recent(limit=2)] == [ids[3], ids[2]]
    assert [r.instance_id for r in store.recent(limit=3)] == [ids[3], ids[2], ids[1]]
    assert [r.instance_id for r in store.recent(tenant="acme")] == [ids[3], ids[1], ids[0]]
    assert [r.instance_id for r in store.recent(flow="contacts")] == [ids[3], ids[2], ids[0]]
    assert [r.instance_id for r in store.recent(tenant="acme", status="Completed")] == [ids[1]]
    assert store.recent(tenant="nobody") == []
    assert store.recent(limit=0) == []


def test_active_lists_pending_and_running_runs_of_a_tenant(backend):
    store = backend.runs
    a = run("Workflow-acme--contacts-20261123T140000Z")
    b = run("Workflow-acme--orders-20261123T140000Z", flow="orders")
    c = run("Workflow-acme--contacts-20261123T150000Z")
    d = run("Workflow-beta--contacts-20261123T140000Z", tenant="beta")
    for r in (a, b, c, d):
        store.create(r)
    store.begin(b)
    store.begin(c)
    store.finish(c.instance_id, "Completed")
    assert {r.instance_id for r in store.active("acme")} == {a.instance_id, b.instance_id}
    assert [r.instance_id for r in store.active("acme", "orders")] == [b.instance_id]
    assert {r.status for r in store.active("acme")} == {"Pending", "Running"}
    assert [r.instance_id for r in store.active("beta")] == [d.instance_id]
    assert store.active("gamma") == []
