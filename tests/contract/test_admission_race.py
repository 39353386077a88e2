"""RunStore.admit contract: the overlap and concurrency check and the create are one atomic
step — racing admissions of one flow or one tenant never all pass (every backend)."""

from __future__ import annotations

import pytest

from datasync.exceptions import NotFound
from datasync.models import RunRecord
from datasync.ports import Admitted
from tests.contract.test_run_store import race

N = 8


def occurrence(hour: int, *, tenant: str = "acme", flow: str = "contacts") -> RunRecord:
    return RunRecord(
        instance_id=f"Workflow-{tenant}--{flow}-20261123T{hour:02d}0000Z",
        tenant_id=tenant,
        flow_name=flow,
        scheduled_for=f"2026-11-23T{hour:02d}:00:00Z",
        status="Pending",
    )


def admit_all(backend, runs: list[RunRecord], **limits) -> list[Admitted]:
    """Admit every run at once, one thread each (released by a barrier)."""
    pending = list(runs)

    def one() -> Admitted:
        return backend.runs.admit(pending.pop(), **limits)

    return race(len(runs), one)  # type: ignore[arg-type]


def test_racing_occurrences_of_one_exclusive_flow_admit_exactly_one(backend):
    runs = [occurrence(h) for h in range(N)]
    results = admit_all(backend, runs, exclusive_flow=True, max_active=None)
    created = [r for r in results if r.outcome == "created"]
    busy = [r for r in results if r.outcome == "flow_busy"]
    assert (len(created), len(busy)) == (1, N - 1), results
    [winner] = backend.runs.active("acme")
    assert {b.holder for b in busy} == {winner.instance_id}
    assert winner.status == "Pending"


def test_racing_admissions_never_exceed_max_active(backend):
    runs = [occurrence(h, flow=f"flow{h}") for h in range(N)]
    results = admit_all(backend, runs, exclusive_flow=True, max_active=2)
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == ["created"] * 2 + ["tenant_full"] * (N - 2), outcomes
    assert len(backend.runs.active("acme")) == 2
    full = next(r for r in results if r.outcome == "tenant_full")
    assert len(full.holders) == 2


def test_a_non_exclusive_flow_admits_up_to_the_tenant_limit(backend):
    runs = [occurrence(h) for h in range(N)]
    results = admit_all(backend, runs, exclusive_flow=False, max_active=3)
    assert sorted(r.outcome for r in results) == ["created"] * 3 + ["tenant_full"] * (N - 3)


def test_racing_admissions_of_one_run_create_it_once(backend):
    results = race(N, lambda: backend.runs.admit(occurrence(1), exclusive_flow=True, max_active=2))  # type: ignore[arg-type,return-value]
    assert sorted(r.outcome for r in results) == ["created"] + ["exists"] * (N - 1)


def test_exists_is_checked_first_and_an_ended_run_frees_the_flow(backend):
    store = backend.runs
    first, second = occurrence(1), occurrence(2)
    assert store.admit(first, exclusive_flow=True, max_active=1)
    verdict = store.admit(second, exclusive_flow=True, max_active=1)
    assert (verdict.outcome, verdict.holder, bool(verdict)) == (
        "flow_busy",
        first.instance_id,
        False,
    )
    with pytest.raises(NotFound):  # nothing was written for the refused run
        store.get(second.instance_id)
    assert store.admit(first, exclusive_flow=True, max_active=1).outcome == "exists"
    store.begin(first)
    store.finish(first.instance_id, "Completed")
    assert store.admit(first, exclusive_flow=True, max_active=1).outcome == "exists"
    assert store.admit(second, exclusive_flow=True, max_active=1).outcome == "created"
    assert store.get(second.instance_id).status == "Pending"


def test_another_tenant_is_not_held_back(backend):
    store = backend.runs
    assert store.admit(occurrence(1), exclusive_flow=True, max_active=1)
    assert store.admit(occurrence(1, tenant="beta"), exclusive_flow=True, max_active=1)
    assert store.admit(occurrence(2, flow="other"), exclusive_flow=True, max_active=1).outcome == (
        "tenant_full"
    )


def test_a_finished_record_does_not_count(backend):
    store = backend.runs
    store.record(
        RunRecord(
            instance_id="Workflow-acme--contacts-20261122T000000Z",
            tenant_id="acme",
            flow_name="contacts",
            scheduled_for="2026-11-22T00:00:00Z",
            status="Skipped",
        )
    )
    assert store.admit(occurrence(1), exclusive_flow=True, max_active=1)
