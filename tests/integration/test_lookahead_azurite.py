"""Look-ahead scheduling with the job queue on Azurite (Storage queues, base64 messages,
visibility delays computed from the service's Date header): the local runtime with an
hourly scan starts every occurrence of a 2 s cron once and within seconds of its time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from datasync import operations
from datasync.adapters.azure.storage_queue import StorageQueueBackend
from datasync.app import App
from datasync.config import Settings
from datasync.names import parse_instance_id, utcnow
from datasync.ports import FLOW_JOBS, FLOW_JOBS_POISON
from datasync.runtime.host import LocalHost
from datasync.schedule import occurrences

pytestmark = [
    pytest.mark.emulator,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

FLOW = """
from datasync import Page, flow


@flow("tick")
class Tick:
    def pull(self, ctx, cursor):
        return Page(records=[{"id": 1}], cursor=1, has_more=False)

    def push(self, ctx, records):
        pass
"""


@pytest.mark.timeout(120)
def test_occurrences_start_on_time_once_through_storage_queues(
    emulators: dict[str, str], tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "tick.py").write_text(FLOW)
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": emulators["AzureWebJobsStorage"],  # queues on Azurite
            "DATASYNC_HOME": str(tmp_path / "home"),  # tenants and runs embedded
            "DATASYNC_FLOWS_DIR": str(flows),
            "DATASYNC_SCAN_SCHEDULE": "0 0 * * * *",
            "DATASYNC_LOG_LEVEL": "WARNING",
        }
    )
    with App.from_settings(settings) as app:
        assert isinstance(app.queues, StorageQueueBackend)
        for name in (FLOW_JOBS, FLOW_JOBS_POISON):  # one Azurite per session: start clean
            queue = app.queues.queue(name)
            queue.count()
            queue.client.clear_messages()
        operations.apply(
            app,
            [
                {
                    "id": f"t{n}",
                    "flows": [{"name": "tick", "cron": "*/2 * * * * *", "overlap": "allow"}],
                }
                for n in range(2)
            ],
            utcnow(),
        )
        host = LocalHost(app=app)
        start = datetime.now(UTC)  # the host is loaded: from here on, on time
        runner = threading.Thread(target=host.run, kwargs={"once": False}, daemon=True)
        runner.start()
        try:
            time.sleep(12)
        finally:
            host.stopping.set()
            runner.join(timeout=30)
        end = datetime.now(UTC)
        runs = app.runs.recent(limit=1000)
        for name in (FLOW_JOBS, FLOW_JOBS_POISON):
            app.queues.queue(name).client.clear_messages()
    lo, hi = start + timedelta(seconds=2), end - timedelta(seconds=4)
    expected = {
        (f"t{n}", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        for n in range(2)
        for at in occurrences("*/2 * * * * *", "UTC", lo, hi)
    }
    started = [r for r in runs if r.status in ("Running", "Completed")]
    keys = [(r.tenant_id, r.scheduled_for) for r in started]
    assert len(keys) == len(set(keys))  # never twice
    assert expected <= set(keys), {(r.scheduled_for, r.status, r.error) for r in runs}
    late = [
        r.lateness_seconds
        for r in started
        if (r.tenant_id, r.scheduled_for) in expected and r.lateness_seconds is not None
    ]
    assert late and max(late) <= 3.0, late  # whole-second delays, the skew, the poll
    assert all(parse_instance_id(r.instance_id)[3] is None for r in started)
