"""Racing starters start one run, on the embedded store and on the Cosmos emulator —
including a job redelivered after its run Completed (where Azure's Durable extension would
silently replace the instance: the dedupe must not depend on it)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from datasync.app import App
from datasync.config import Settings
from datasync.models import Job, parse_tenant

pytestmark = pytest.mark.emulator
JOB = Job("acme", "contacts-to-erp", datetime(2026, 11, 23, 14, 0, tzinfo=UTC))
STARTERS = 6


class RecordingDurable:
    """Durable's client side, shared by all starters: counts ``start_new`` calls and, like
    the extension with NonRunningStates, accepts a start on an id that already completed."""

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


def _race(settings: Settings, durable: RecordingDurable) -> list[str]:
    """``STARTERS`` starters, each with its own app (own connections), on their own
    threads and event loops, all admitting the same job at once."""
    apps = [App.from_settings(settings) for _ in range(STARTERS)]
    barrier = threading.Barrier(STARTERS)
    outcomes: list[str] = []

    def starter(app: App) -> None:
        barrier.wait()
        outcomes.append(asyncio.run(app.admission.admit(JOB, durable)))

    threads = [threading.Thread(target=starter, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for app in apps:
        app.close()
    return outcomes


def test_racing_starters_then_a_redelivery_after_completion(settings: Settings) -> None:
    with App.from_settings(settings) as app:
        app.tenants.upsert_many(
            [
                parse_tenant(
                    {"id": "acme", "flows": [{"name": "contacts-to-erp", "cron": "0 0 * * * *"}]}
                )
            ]
        )
    durable = RecordingDurable()
    outcomes = _race(settings, durable)
    assert outcomes.count("started") == 1, outcomes
    # the others found the fresh claim: skipped, or deferred to look again later
    assert set(outcomes) - {"started"} <= {"skipped", "deferred"}, outcomes
    assert durable.starts == [JOB.instance_id]
    with App.from_settings(settings) as app:  # the deferred redeliveries, later
        for _ in range(outcomes.count("deferred")):
            assert asyncio.run(app.admission.admit(JOB, durable)) == "skipped"

    with App.from_settings(settings) as app:
        app.runs.finish(JOB.instance_id, "Completed")
    again = _race(settings, durable)  # the job comes back after completion
    assert again == ["skipped"] * STARTERS
    assert durable.starts == [JOB.instance_id]
    with App.from_settings(settings) as app:
        assert app.runs.get(JOB.instance_id).status == "Completed"
