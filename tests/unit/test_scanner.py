"""The scheduler tick on the embedded store: due query, coalescing, write-back, bad docs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from datasync.adapters.local import LocalBackend
from datasync.models import Job, parse_tenant
from datasync.scanner import scan_and_enqueue

NOW = datetime(2026, 11, 23, 14, 0, 30, tzinfo=UTC)


def tenant(
    tid,
    next_run=None,
    *,
    cron="0 0 * * * *",
    tz="UTC",
    paused=False,
    enabled=True,
    flow="contacts-to-erp",
):
    entry = {"name": flow, "cron": cron, "enabled": enabled}
    if next_run:
        entry["nextRunUtc"] = next_run
    return parse_tenant({"id": tid, "timezone": tz, "paused": paused, "flows": [entry]})


def jobs(backend):
    bodies = [i.body for i in backend.queues.queue("flow-jobs").peek_all()]
    # the scanner writes job text directly (fast path); it must be Job.to_message's text
    assert all(Job.from_message(b).to_message() == b for b in bodies)
    return sorted(
        (j.tenant_id, j.flow_name, j.scheduled_for.isoformat())
        for j in (Job.from_message(i.body) for i in backend.queues.queue("flow-jobs").peek_all())
    )


def test_due_flows_are_enqueued_once_and_moved_on(tmp_path):
    b = LocalBackend(tmp_path)
    b.tenants.upsert_many(
        [
            tenant("due", "2026-11-23T14:00:00Z"),
            tenant("missed", "2026-11-20T03:00:00Z"),  # many missed runs → one job
            tenant("later", "2026-11-23T15:00:00Z"),
            tenant("paused", "2026-11-23T13:00:00Z", paused=True),
            tenant("disabled", "2026-11-23T13:00:00Z", enabled=False),
            tenant("fresh"),  # no nextRunUtc: compute, not due
            tenant("ams", "2026-11-23T13:00:00Z", cron="0 30 2 * * *", tz="Europe/Amsterdam"),
        ]
    )
    result = scan_and_enqueue(
        b.tenants, b.queues.queue("flow-jobs"), NOW, known_flows={"contacts-to-erp"}, page_size=2
    )
    assert result.due == 3 and result.invalid == [] and result.conflicts == 0
    assert jobs(b) == [
        ("ams", "contacts-to-erp", "2026-11-23T13:00:00+00:00"),
        ("due", "contacts-to-erp", "2026-11-23T14:00:00+00:00"),
        ("missed", "contacts-to-erp", "2026-11-20T03:00:00+00:00"),
    ]
    nxt = {
        t.tenant_id: t.flows[0].next_run_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        for t in b.tenants.iter_tenants()
        if t.flows[0].next_run_utc
    }
    assert nxt["due"] == nxt["missed"] == nxt["fresh"] == "2026-11-23T15:00:00Z"
    assert nxt["ams"] == "2026-11-24T01:30:00Z"  # 02:30 CET
    assert nxt["later"] == "2026-11-23T15:00:00Z"
    assert nxt["paused"] == "2026-11-23T13:00:00Z"  # untouched
    # a second tick at the same moment finds nothing new
    again = scan_and_enqueue(
        b.tenants, b.queues.queue("flow-jobs"), NOW, known_flows={"contacts-to-erp"}
    )
    assert again.due == 0 and len(jobs(b)) == 3


def test_invalid_flows_are_reported_skipped_and_do_not_stop_the_scan(tmp_path):
    b = LocalBackend(tmp_path)
    b.tenants.upsert_many(
        [
            tenant("good", "2026-11-23T14:00:00Z"),
            tenant("ghost", "2026-11-23T14:00:00Z", flow="no-such-flow"),
            tenant("badcron", "2026-11-23T14:00:00Z"),
        ]
    )
    with b.db.write() as con:  # a document broken in the store (edited by hand)
        con.execute("UPDATE flow_schedule SET cron = '61 * * * * *' WHERE tenant_id = 'badcron'")
    result = scan_and_enqueue(
        b.tenants, b.queues.queue("flow-jobs"), NOW, known_flows={"contacts-to-erp"}
    )
    assert [j[0] for j in jobs(b)] == ["good"]
    assert len(result.invalid) == 2
    assert any(p.startswith("tenant ghost: flows[0].name: unknown flow") for p in result.invalid)
    assert any(p.startswith("tenant badcron: flows[0].cron:") for p in result.invalid)


def test_write_back_loses_cleanly_to_a_concurrent_edit(tmp_path):
    b = LocalBackend(tmp_path)
    b.tenants.upsert_many([tenant("acme", "2026-11-23T14:00:00Z")])
    [page] = list(b.tenants.due_flows(NOW))
    edited, etag = b.tenants.get_with_etag("acme")  # someone triggers meanwhile
    edited.flows[0].next_run_utc = datetime(2026, 11, 23, 14, 0, 20, tzinfo=UTC)
    assert b.tenants.replace_if_match(edited, etag)
    lost = b.tenants.advance([(page[0], "2026-11-23T15:00:00Z")])
    assert lost == [page[0]]
    assert b.tenants.get("acme").flows[0].next_run_utc.minute == 0
    assert (
        json.loads(json.dumps(b.tenants.get("acme").to_doc()))["flows"][0]["nextRunUtc"]
        == "2026-11-23T14:00:20Z"
    )
