"""The embedded due query reads few due rows through the due index and many in storage
order; either way a tick enqueues each due flow once and moves every one of them on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from datasync.adapters.local import LocalBackend
from datasync.models import Job, parse_tenant
from datasync.scanner import scan_and_enqueue

NOW = datetime(2026, 11, 23, 14, 0, 30, tzinfo=UTC)
DUE, LATER = "2026-11-23T14:00:00Z", "2026-11-23T15:00:00Z"
FLOWS = ("a", "b", "c")


def store(tmp_path, tenants: int, due: set[tuple[int, str]]) -> LocalBackend:
    backend = LocalBackend(tmp_path)
    docs = [
        parse_tenant(
            {
                "id": f"t{n:03d}",
                "timezone": "UTC",
                "flows": [
                    {
                        "name": name,
                        "cron": "0 0 * * * *",
                        "nextRunUtc": DUE if (n, name) in due else LATER,
                    }
                    for name in FLOWS
                ],
            }
        )
        for n in range(tenants)
    ]
    backend.tenants.upsert_many(docs)
    return backend


def queued(backend: LocalBackend) -> list[tuple[str, str]]:
    jobs = [Job.from_message(i.body) for i in backend.queues.queue("flow-jobs").peek_all()]
    return sorted((j.tenant_id, j.flow_name) for j in jobs)


@pytest.mark.parametrize(
    "due",
    [
        {(7, "b"), (42, "a"), (42, "c"), (99, "a")},  # 4 of 300: through the due index
        {(n, name) for n in range(100) for name in FLOWS if (n + len(name)) % 2},  # half
    ],
    ids=["sparse", "dense"],
)
def test_every_due_flow_runs_once_whichever_way_the_store_reads(tmp_path, due):
    backend = store(tmp_path, 100, due)
    queue = backend.queues.queue("flow-jobs")
    result = scan_and_enqueue(backend.tenants, queue, NOW, page_size=3)
    expected = sorted((f"t{n:03d}", name) for n, name in due)
    assert queued(backend) == expected
    assert (result.due, result.advanced, result.conflicts) == (len(due), len(due), 0)
    again = scan_and_enqueue(backend.tenants, queue, NOW, page_size=3)
    assert again.due == 0 and queued(backend) == expected
    for tid, name in expected:
        flow = next(f for f in backend.tenants.get(tid).flows if f.name == name)
        assert flow.next_run_utc == datetime(2026, 11, 23, 15, tzinfo=UTC)


def test_a_tenant_edited_during_a_dense_scan_is_read_once(tmp_path):
    due = {(n, name) for n in range(20) for name in FLOWS}
    backend = store(tmp_path, 20, due)
    pages = backend.tenants.due_flows(NOW, page_size=4)
    first = next(pages)
    assert {f.tenant_id for f in first} == {"t000", "t001"}
    # an edit rewrites t005's rows (they move to the end of the table) mid-scan
    backend.tenants.upsert_many([backend.tenants.get("t005")])
    rest = [f for page in pages for f in page]
    keys = [(f.tenant_id, f.flow_index) for f in first + rest]
    assert sorted(keys) == sorted({(f"t{n:03d}", i) for n in range(20) for i in range(3)})
