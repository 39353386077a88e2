"""The starter's admission: the pure policy as a table, and the dedupe over real stores."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

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
    """The client side of Durable for one test: start_new records, get_status answers."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    async def start_new(
        self, name: str, instance_id: str | None = None, client_input: Any | None = None
    ) -> str:
        await asyncio.sleep(0.01)  # give racing starters a chance to interleave
        with self.lock:
            if any(i == instance_id for i, _ in self.started):
                raise Exception("An Orchestration instance with the status Pending already exists.")
            self.started.append((str(instance_id), client_input))
        return str(instance_id)

    async def get_status(self, instance_id: str) -> Any:
        return any(i == instance_id for i, _ in self.started)


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
                "carry": None,
            },
        )
    ]
    assert app.runs.get(JOB.instance_id).status == "Pending"


def test_racing_starters_start_one_run(app: App) -> None:
    durable = FakeDurable()

    async def race() -> list[str]:
        return list(await asyncio.gather(*(app.admission.admit(JOB, durable) for _ in range(8))))

    outcomes = asyncio.run(race())
    assert outcomes.count("started") == 1 and outcomes.count("skipped") == 7
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
    assert asyncio.run(app.admission.admit(JOB, durable)) == "skipped"
    skipped = app.runs.get(JOB.instance_id)
    assert skipped.status == "Skipped" and other.instance_id in (skipped.error or "")
    app.runs.finish(JOB.instance_id, "Completed")
    asyncio.run(app.admission.admit(JOB, durable))  # redelivered: still overlapping
    assert app.runs.get(JOB.instance_id).status == "Completed"


def test_deferred_jobs_go_back_on_the_queue_with_a_delay(app: App) -> None:
    app.tenants.upsert_many([tenant(overlap="queue")])
    app.runs.create(active("contacts")[0])
    assert asyncio.run(app.admission.admit(JOB, FakeDurable())) == "deferred"
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
