"""A rerun's run record names the run it reruns (``rerun_of`` = the base instance id),
whether it starts or is held back."""

from __future__ import annotations

import asyncio
from typing import Any

from datasync.app import App
from datasync.models import Job
from datasync.names import instance_id
from tests.unit.test_admission import JOB, WHEN, FakeDurable, app  # noqa: F401 (fixture)

BASE = instance_id("acme", "contacts", WHEN)


def test_a_started_rerun_records_the_run_it_reruns(app: App) -> None:  # noqa: F811
    rerun = Job("acme", "contacts", WHEN, rerun=2)
    assert asyncio.run(app.admission.admit(rerun, FakeDurable())) == "started"
    record = app.runs.get(f"{BASE}-rerun2")
    assert (record.status, record.rerun_of) == ("Pending", BASE)


def test_a_rerun_skipped_by_overlap_records_it_too(app: App) -> None:  # noqa: F811
    durable: Any = FakeDurable()
    assert asyncio.run(app.admission.admit(JOB, durable)) == "started"  # the flow is busy
    rerun = Job("acme", "contacts", WHEN, rerun=1)
    assert asyncio.run(app.admission.admit(rerun, durable)) == "skipped"  # overlap=skip
    record = app.runs.get(f"{BASE}-rerun1")
    assert (record.status, record.rerun_of) == ("Skipped", BASE)
    assert app.runs.get(BASE).rerun_of is None
