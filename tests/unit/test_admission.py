"""The starter's admission: the pure policy as a table, and the dedupe over real stores."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from datasync.admission import Defer, Skip, Start, decide
from datasync.app import App
from datasync.config import Settings
from datasync.models import Job, RunRecord, parse_tenant

WHEN = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
JOB = Job("acme", "contacts", WHEN)


def tenant(
    *, paused: bool = False, enabled: bool = True, overlap: str = "skip", max_runs: int = 2
) -> Any:
    return parse_tenant(
        {
            "id": "acme",
            "paused": paused,
            "maxConcurrentRuns": max_runs,
            "flows": [
                {"name": "contacts", "cron": "0 0 * * * *", "enabled": enabled, "overlap": overlap},
                {"name": "orders", "cron": "0 0 * * * *"},
            ],
        }
    )


def active(*flows: str) -> list[RunRecord]:
    return [
        RunRecord(
            instance_id=f"Workflow-acme--{f}-2026112{i}T130000Z",
            tenant_id="acme",
            flow_name=f,
            scheduled_for="2026-11-23T13:00:00Z",
            status="Running",
        )
        for i, f in enumerate(flows)
    ]


@pytest.mark.parametrize(
    ("doc", "runs", "expected"),
    [
        ({}, [], Start()),
        ({"paused": True}, [], Skip("tenant is paused")),
        ({"enabled": False}, [], Skip("flow is disabled")),
        ({"paused": True, "enabled": False}, active("contacts"), Skip("tenant is paused")),
        (
            {"overlap": "skip"},
            active("contacts"),
            Skip(
                "overlap: Workflow-acme--contacts-20261120T130000Z was still running", record=True
            ),
        ),
        ({"overlap": "queue"}, active("contacts"), Defer(30.0, "x")),
        ({"overlap": "allow"}, active("contacts"), Start()),
        ({"overlap": "allow", "max_runs": 1}, active("contacts"), Defer(30.0, "x")),
        ({}, active("orders"), Start()),
        ({}, active("orders", "orders"), Defer(30.0, "x")),
        ({"max_runs": 3}, active("orders", "orders"), Start()),
    ],
)
def test_policy(doc: dict[str, Any], runs: list[RunRecord], expected: object) -> None:
    got = decide(JOB, tenant(**doc), tenant(**doc).flow("contacts"), runs, requeue_delay=30.0)
    if isinstance(expected, Defer):
        assert isinstance(got, Defer) and got.delay == 30.0 and got.reason
    else:
        assert got == expected


def test_the_jobs_own_record_does_not_count_as_overlap() -> None:
    own = [
        RunRecord(
            instance_id=JOB.instance_id,
            tenant_id="acme",
            flow_name="contacts",
            scheduled_for="2026-11-23T14:00:00Z",
            status="Pending",
        )
    ]
    assert decide(JOB, tenant(), tenant().flow("contacts"), own, requeue_delay=1) == Start()


class FakeDurable:
    """The client side of Durable for one test: start_new records, get_status answers with
    the SDK's own status objects (the instance's runtime status, or falsy when missing)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []
        self.status: dict[str, tuple[str, Any]] = {}  # instance id → (runtime status, output)
        self.looked: list[str] = []
        self.lock = threading.Lock()

    async def start_new(
        self, name: str, instance_id: str | None = None, client_input: Any | None = None
    ) -> str:
        await asyncio.sleep(0.01)  # give racing starters a chance to interleave
        with self.lock:
            if any(i == instance_id for i, _ in self.started):
                raise Exception("An Orchestration instance with the status Pending already exists.")
            self.started.append((str(instance_id), client_input))
            self.status[str(instance_id)] = ("Pending", None)
        return str(instance_id)

    async def get_status(self, instance_id: str) -> Any:
        self.looked.append(instance_id)
        if instance_id not in self.status:
            return DurableOrchestrationStatus.from_json({})  # what a 404 gives: falsy
        runtime, output = self.status[instance_id]
        return DurableOrchestrationStatus.from_json(
            {
                "name": "sync_flow",
                "instanceId": instance_id,
                "createdTime": "2026-11-23T13:00:00Z",
                "lastUpdatedTime": "2026-11-23T13:00:05Z",
                "runtimeStatus": runtime,
                "output": output,
            }
        )


@pytest.fixture
def app(tmp_path: Any) -> Any:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "contacts.py").write_text(
        "from datasync import Page, flow\n\n@flow('contacts')\nclass C:\n"
        "    def pull(self, ctx, cursor):\n        return Page([], None, False)\n\n"
        "    def push(self, ctx, records):\n        pass\n"
    )
    with App.in_memory(Settings(flows_dir=flows, start_claim_seconds=0)) as app:
        app.tenants.upsert_many([tenant()])
        yield app


def test_a_job_starts_once_with_its_run_input(app: App) -> None:
    durable = FakeDurable()
    assert asyncio.run(app.admission.admit(JOB, durable)) == "started"
    assert asyncio.run(app.admission.admit(JOB, durable)) == "skipped"  # redelivered
    assert durable.started == [
        (
            JOB.instance_id,
            {
                "tenantId": "acme",
                "flowName": "contacts",
                "scheduledFor": "2026-11-23T14:00:00Z",
                "pagesPerGeneration": 10,
                "carry": None,  # no traceparent: the contract leaves it out at its default
            },
        )
    ]
    assert app.runs.get(JOB.instance_id).status == "Pending"


def test_racing_starters_start_one_run(app: App) -> None:
    durable = FakeDurable()

    async def race() -> list[str]:
        return list(await asyncio.gather(*(app.admission.admit(JOB, durable) for _ in range(8))))

    outcomes = asyncio.run(race())
    # the losers saw a fresh claim or the started instance: skipped, or deferred to look again
    assert outcomes.count("started") == 1
    assert outcomes.count("skipped") + outcomes.count("deferred") == 7
    assert len(durable.started) == 1
    for message in app.queues.queue("flow-jobs").peek_all():  # the deferred copies, later
        assert asyncio.run(app.admission.admit(Job.from_message(message.body), durable)) == (
            "skipped"
        )
    assert len(durable.started) == 1


def test_a_job_redelivered_after_its_run_completed_is_skipped(app: App) -> None:
    durable = FakeDurable()
    asyncio.run(app.admission.admit(JOB, durable))
    app.runs.finish(JOB.instance_id, "Completed")
    durable.started.clear()  # Azure would silently replace the instance
    assert asyncio.run(app.admission.admit(JOB, durable)) == "skipped"
    assert durable.started == []
    assert app.runs.get(JOB.instance_id).status == "Completed"


def test_a_starter_that_died_before_start_new_is_taken_over(app: App) -> None:
    stranded = RunRecord(
        instance_id=JOB.instance_id,
        tenant_id="acme",
        flow_name="contacts",
        scheduled_for="2026-11-23T14:00:00Z",
        status="Pending",
    )
    assert app.runs.create(stranded)  # claimed, then the process died
    durable = FakeDurable()
    import time

    time.sleep(1.05)  # claims are stamped to the second
    assert asyncio.run(app.admission.admit(JOB, durable)) == "started"
    assert [i for i, _ in durable.started] == [JOB.instance_id]


def test_an_overlap_skip_is_recorded_but_never_overwrites_a_run(app: App) -> None:
    other = active("contacts")[0]
    app.runs.create(other)
    durable = FakeDurable()
    durable.status[other.instance_id] = ("Running", None)
    assert asyncio.run(app.admission.admit(JOB, durable)) == "skipped"
    skipped = app.runs.get(JOB.instance_id)
    assert skipped.status == "Skipped" and other.instance_id in (skipped.error or "")
    done = app.runs.get(JOB.instance_id)
    app.runs.record(replace(done, status="Completed"))
    asyncio.run(app.admission.admit(JOB, durable))  # redelivered: still overlapping
    assert app.runs.get(JOB.instance_id).status == "Completed"


def test_deferred_jobs_go_back_on_the_queue_with_a_delay(app: App) -> None:
    app.tenants.upsert_many([tenant(overlap="queue")])
    other = active("contacts")[0]
    app.runs.create(other)
    durable = FakeDurable()
    durable.status[other.instance_id] = ("Running", None)
    assert asyncio.run(app.admission.admit(JOB, durable)) == "deferred"
    waiting = app.queues.queue("flow-jobs").peek_all()
    assert [Job.from_message(m.body) for m in waiting] == [JOB]
    assert waiting[0].next_visible_at is not None
    assert waiting[0].next_visible_at - datetime.now(UTC) > timedelta(seconds=20)


def test_admission_never_blocks_the_event_loop(app: App, monkeypatch: Any) -> None:
    """Store calls run off the loop: a slow store does not stall other coroutines."""
    import time

    slow_get = app.tenants.get

    def slow(tenant_id: str) -> Any:
        time.sleep(0.3)
        return slow_get(tenant_id)

    monkeypatch.setattr(app.tenants, "get", slow)

    done: dict[str, float] = {}

    async def ticker() -> None:
        for _ in range(5):
            await asyncio.sleep(0.02)
        done["ticker"] = time.perf_counter()

    async def admit() -> None:
        await app.admission.admit(JOB, FakeDurable())
        done["admit"] = time.perf_counter()

    async def both() -> None:
        await asyncio.gather(admit(), ticker())

    asyncio.run(both())
    assert done["ticker"] < done["admit"]  # the loop ran the ticker during the slow read


# -- run records stay true: reconciled with their Durable instances ------------------------
def running(flow: str = "contacts", *, status: str = "Running", when: str = "13") -> RunRecord:
    return RunRecord(
        instance_id=f"Workflow-acme--{flow}-20261123T{when}0000Z",
        tenant_id="acme",
        flow_name=flow,
        scheduled_for=f"2026-11-23T{when}:00:00Z",
        status=status,
        started_at="2026-11-23T13:00:01Z" if status == "Running" else None,
    )


@pytest.mark.parametrize(
    ("instance", "output", "status", "error"),
    [
        ("Terminated", "stopped by ops", "Terminated", "terminated: stopped by ops"),
        ("Failed", "Orchestrator function 'sync_flow' failed: boom", "Failed", "boom"),
        ("Completed", {"status": "Completed"}, "Completed", None),
        (None, None, "Failed", "no longer exists"),
    ],
)
def test_a_run_whose_instance_ended_no_longer_blocks_overlap_skip(
    app: App, instance: str | None, output: Any, status: str, error: str | None
) -> None:
    stale = running()
    app.runs.record(stale)
    durable = FakeDurable()
    if instance is not None:
        durable.status[stale.instance_id] = (instance, output)
    assert asyncio.run(app.admission.admit(JOB, durable)) == "started"
    ended = app.runs.get(stale.instance_id)
    assert ended.status == status
    assert (ended.error is None) if error is None else (error in (ended.error or ""))
    assert ended.finished_at is not None


def test_a_running_instance_still_blocks_and_its_record_is_untouched(app: App) -> None:
    other = running()
    app.runs.record(other)
    durable = FakeDurable()
    durable.status[other.instance_id] = ("ContinuedAsNew", None)
    assert asyncio.run(app.admission.admit(JOB, durable)) == "skipped"
    assert app.runs.get(other.instance_id) == other
    assert app.runs.get(JOB.instance_id).status == "Skipped"


def test_ended_instances_free_max_concurrent_runs(app: App) -> None:
    app.tenants.upsert_many([tenant(max_runs=1)])
    orders = running("orders")
    app.runs.record(orders)
    durable = FakeDurable()
    durable.status[orders.instance_id] = ("Running", None)
    assert asyncio.run(app.admission.admit(JOB, durable)) == "deferred"
    durable.status[orders.instance_id] = ("Terminated", "by hand")
    assert asyncio.run(app.admission.admit(JOB, durable)) == "started"
    assert app.runs.get(orders.instance_id).status == "Terminated"


def test_only_a_held_back_job_looks_at_other_instances(app: App) -> None:
    app.runs.record(running("orders"))  # counted against maxConcurrentRuns=2, not reached
    durable = FakeDurable()
    assert asyncio.run(app.admission.admit(JOB, durable)) == "started"
    assert running("orders").instance_id not in durable.looked
    assert app.runs.get(running("orders").instance_id).status == "Running"


def test_a_record_its_run_ended_meanwhile_is_not_overwritten(app: App) -> None:
    snapshot = running()
    app.runs.record(snapshot)
    app.runs.finish(snapshot.instance_id, "Completed")  # finish_run wrote it after the read
    durable = FakeDurable()
    durable.status[snapshot.instance_id] = ("Completed", None)
    assert asyncio.run(app.admission.reconcile([snapshot], durable)) == []
    assert app.runs.get(snapshot.instance_id).status == "Completed"
    assert app.runs.get(snapshot.instance_id).error is None


def test_a_client_that_cannot_answer_keeps_the_record_active(app: App) -> None:
    class Broken(FakeDurable):
        async def get_status(self, instance_id: str) -> Any:
            raise Exception("connection refused")

    other = running()
    app.runs.record(other)
    assert asyncio.run(app.admission.reconcile([other], Broken())) == [other]
    assert app.runs.get(other.instance_id).status == "Running"


@pytest.fixture
def patient(tmp_path: Any) -> Any:
    """An app whose start claim is 30 s: a fresh Pending claim may be about to start."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "contacts.py").write_text(
        "from datasync import Page, flow\n\n@flow('contacts')\nclass C:\n"
        "    def pull(self, ctx, cursor):\n        return Page([], None, False)\n\n"
        "    def push(self, ctx, records):\n        pass\n"
    )
    with App.in_memory(Settings(flows_dir=flows, start_claim_seconds=30)) as app:
        app.tenants.upsert_many([tenant()])
        yield app


def test_a_fresh_pending_claim_without_instance_still_blocks(patient: App) -> None:
    claimed = running(status="Pending")
    assert patient.runs.create(claimed)  # a starter between its insert and start_new
    assert asyncio.run(patient.admission.admit(JOB, FakeDurable())) == "skipped"
    assert patient.runs.get(claimed.instance_id).status == "Pending"


def test_a_stranded_pending_claim_is_ended_as_never_started(app: App) -> None:
    import time

    claimed = running(status="Pending")
    assert app.runs.create(claimed)
    time.sleep(1.05)  # claims are stamped to the second; start_claim_seconds=0
    assert asyncio.run(app.admission.admit(JOB, FakeDurable())) == "started"
    ended = app.runs.get(claimed.instance_id)
    assert ended.status == "Failed" and "never started" in (ended.error or "")


def test_a_redelivery_during_a_fresh_claim_is_deferred_not_dropped(patient: App) -> None:
    stranded = RunRecord(
        instance_id=JOB.instance_id,
        tenant_id="acme",
        flow_name="contacts",
        scheduled_for="2026-11-23T14:00:00Z",
        status="Pending",
    )
    assert patient.runs.create(stranded)  # claimed; the starter may have died
    assert asyncio.run(patient.admission.admit(JOB, FakeDurable())) == "deferred"
    waiting = patient.queues.queue("flow-jobs").peek_all()
    assert [Job.from_message(m.body) for m in waiting] == [JOB]
    assert waiting[0].next_visible_at is not None
    assert waiting[0].next_visible_at - datetime.now(UTC) > timedelta(seconds=25)
    assert patient.runs.get(JOB.instance_id).status == "Pending"


def test_reconcile_through_the_real_durable_client(app: App, tmp_path: Any) -> None:
    """The real DurableOrchestrationClient over the engine's HTTP API: its status objects
    (an enum runtime status, the terminate reason as output) end the record."""
    import azure.durable_functions as df

    from datasync.runtime.durable import (
        DurableEngine,
        close_durable_client_session,
        fresh_durable_client_session,
    )
    from datasync.runtime.rpc import DurableRpcServer

    bp = df.Blueprint()

    @bp.orchestration_trigger(context_name="context", orchestration="waits")
    def waits(context: Any) -> Any:
        return (yield context.wait_for_external_event("go"))

    fn = next(b._function for b in bp._function_builders)
    engine = DurableEngine(
        tmp_path / "durable.db", orchestrators={"waits": fn.get_user_function()}, activities={}
    )
    rpc = DurableRpcServer(engine).start()
    stale, live = running(), running("orders")
    try:
        for record in (stale, live):
            app.runs.record(record)
            engine.start_new("waits", record.instance_id, None)
        while engine.run_orchestration_once():
            pass
        assert engine.terminate(stale.instance_id, "stopped by ops")

        async def check() -> list[RunRecord]:
            fresh_durable_client_session()
            try:
                client = df.DurableOrchestrationClient(rpc.binding_json())
                return await app.admission.reconcile([stale, live], client)
            finally:
                await close_durable_client_session()

        assert asyncio.run(check()) == [live]
    finally:
        rpc.stop()
        engine.close()
    ended = app.runs.get(stale.instance_id)
    assert (ended.status, ended.error) == ("Terminated", "terminated: stopped by ops")
    assert app.runs.get(live.instance_id).status == "Running"
