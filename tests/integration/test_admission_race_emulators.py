"""Jobs of one flow (or one tenant) admitted at the same time — a backfill, look-ahead
windows, several starter instances — respect overlap and maxConcurrentRuns: several
starters, each with its own app and connections, on the embedded store and on the Cosmos
emulator, released together by a barrier."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from datasync.app import App
from datasync.config import Settings
from datasync.models import Job, parse_tenant
from datasync.ports import FLOW_JOBS

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(120)]
FLOW = "contacts-to-erp"
STARTERS = 6
FIRST = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


class RecordingDurable:
    """Durable's client side, shared by all starters: records ``start_new``; an instance
    it started is running (so it keeps holding its flow), any other does not exist."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: list[str] = []

    async def start_new(
        self, name: str, instance_id: str | None = None, client_input: Any | None = None
    ) -> str:
        await asyncio.sleep(0.02)
        with self.lock:
            self.starts.append(str(instance_id))
        return str(instance_id)

    async def get_status(self, instance_id: str) -> Any:
        with self.lock:
            return instance_id in self.starts


@pytest.fixture(params=["sqlite", "cosmos"])
def settings(request: pytest.FixtureRequest, tmp_path: Any) -> Settings:
    base = {"DATASYNC_HOME": str(tmp_path / "home")}
    if request.param == "cosmos":
        cosmos = request.getfixturevalue("cosmos_settings")
        return Settings(
            **{**cosmos.__dict__, "home": tmp_path / "home", "storage_connection": None}
        )
    return Settings.from_env(base)


def setup(settings: Settings, tenant: str, *, overlap: str, max_runs: int = 2) -> list[Job]:
    """The tenant, and one job per starter: different occurrences of one flow."""
    with App.from_settings(settings) as app:
        app.tenants.upsert_many(
            [
                parse_tenant(
                    {
                        "id": tenant,
                        "maxConcurrentRuns": max_runs,
                        "flows": [{"name": FLOW, "cron": "0 0 * * * *", "overlap": overlap}],
                    }
                )
            ]
        )
    return [Job(tenant, FLOW, FIRST + timedelta(hours=i)) for i in range(STARTERS)]


def race(settings: Settings, jobs: list[Job], durable: RecordingDurable) -> dict[str, str]:
    """Each job admitted by its own starter (own app, thread and event loop) at once."""
    apps = [App.from_settings(settings) for _ in jobs]
    barrier = threading.Barrier(len(jobs))
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []

    def starter(app: App, job: Job) -> None:
        barrier.wait()
        try:
            outcomes[job.instance_id] = asyncio.run(app.admission.admit(job, durable))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=starter, args=pair) for pair in zip(apps, jobs, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    for app in apps:
        app.close()
    assert errors == []
    return outcomes


def test_overlap_skip_starts_exactly_one_and_records_the_others_skipped(settings):
    jobs = setup(settings, "skipper", overlap="skip")
    durable = RecordingDurable()
    outcomes = race(settings, jobs, durable)
    assert sorted(outcomes.values()) == ["skipped"] * (STARTERS - 1) + ["started"], outcomes
    [started] = durable.starts
    with App.from_settings(settings) as app:
        for job in jobs:
            record = app.runs.get(job.instance_id)
            if job.instance_id == started:
                assert record.status == "Pending"
            else:
                assert record.status == "Skipped"
                assert f"overlap: {started} was still running" in (record.error or "")
        assert [r.instance_id for r in app.runs.active("skipper")] == [started]


def test_overlap_queue_starts_one_and_defers_the_others(settings):
    jobs = setup(settings, "queuer", overlap="queue")
    durable = RecordingDurable()
    outcomes = race(settings, jobs, durable)
    assert sorted(outcomes.values()) == ["deferred"] * (STARTERS - 1) + ["started"], outcomes
    [started] = durable.starts
    with App.from_settings(settings) as app:
        assert [r.instance_id for r in app.runs.active("queuer")] == [started]
        waiting = [Job.from_message(m.body) for m in app.queues.queue(FLOW_JOBS).peek_all()]
        mine = sorted(j.instance_id for j in waiting if j.tenant_id == "queuer")
        assert mine == sorted(j.instance_id for j in jobs if j.instance_id != started)
        assert all("overlap=queue" in (j.note or "") for j in waiting if j.tenant_id == "queuer")


def test_max_concurrent_runs_holds_racing_admissions_to_the_limit(settings):
    jobs = setup(settings, "limited", overlap="allow", max_runs=2)
    durable = RecordingDurable()
    outcomes = race(settings, jobs, durable)
    assert sorted(outcomes.values()) == ["deferred"] * (STARTERS - 2) + ["started"] * 2
    with App.from_settings(settings) as app:
        assert sorted(r.instance_id for r in app.runs.active("limited")) == sorted(durable.starts)
        # once the started runs end, a deferred job starts
        for instance in durable.starts:
            app.runs.finish(instance, "Completed")
        later = next(j for j in jobs if j.instance_id not in durable.starts)
        assert asyncio.run(app.admission.admit(later, durable)) == "started"


def _gate(app: App, tenant: str, instance: str, at: str) -> None:
    """A starter that died between claiming its slot and writing its run item."""
    app.runs.runs.upsert_item(  # type: ignore[attr-defined]
        {
            "id": f"admission--{tenant}",
            "tenantId": tenant,
            "type": "Admission",
            "slots": {instance: {"flow": FLOW, "scheduledFor": "2026-11-23T00:00:00Z", "at": at}},
        }
    )


def test_cosmos_a_claimed_slot_holds_its_flow_until_the_start_claim_passes(
    cosmos_settings, tmp_path
):
    from datasync.models import RunRecord
    from datasync.names import format_utc, utcnow

    settings = Settings(
        **{
            **cosmos_settings.__dict__,
            "home": tmp_path / "home",
            "storage_connection": None,
            "start_claim_seconds": 30.0,
        }
    )

    def record(hour: int) -> RunRecord:
        when = FIRST + timedelta(hours=hour)
        return RunRecord(
            instance_id=Job("gated", FLOW, when).instance_id,
            tenant_id="gated",
            flow_name=FLOW,
            scheduled_for=format_utc(when),
            status="Pending",
        )

    dead, waiting = record(0).instance_id, record(1)
    with App.from_settings(settings) as app:
        _gate(app, "gated", dead, format_utc(utcnow()))  # fresh: its item may be on its way
        busy = app.runs.admit(waiting, exclusive_flow=True, max_active=None)
        assert (busy.outcome, busy.holder) == ("flow_busy", dead)
        _gate(app, "gated", dead, format_utc(utcnow() - timedelta(seconds=31)))  # stranded
        admitted = app.runs.admit(waiting, exclusive_flow=True, max_active=None)
        assert admitted.outcome == "created"
        assert [r.instance_id for r in app.runs.active("gated")] == [waiting.instance_id]
        assert [r.instance_id for r in app.runs.recent(tenant="gated")] == [waiting.instance_id]
