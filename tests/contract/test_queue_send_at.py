"""MessageQueue.send_at on every backend (memory, SQLite, Azurite), and the look-ahead tick
over each backend's own tenant store and queue: jobs hidden until their occurrence, by the
queue's clock (Azurite: its own time, read from the Date header)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from datasync.models import Job, parse_tenant
from datasync.scanner import scan_and_enqueue
from datasync.schedule import next_occurrence


def base_time(backend) -> datetime:
    """Now on the queue's clock: the wall clock for Azurite, the driven clock otherwise."""
    return datetime.now(UTC) if backend.real_time_queues else backend.clock()


def test_send_at_hides_each_message_until_its_time(backend):
    q = backend.queue("jobs")
    now = base_time(backend)
    q.send_at([("later", now + timedelta(seconds=3)), ("past", now - timedelta(seconds=60))])
    assert q.count() == 2  # hidden ones count
    assert [i.body for i in q.receive(10, visibility_timeout=30)] == ["past"]
    backend.wait(1.0)
    assert q.receive(10, visibility_timeout=30) == []  # not yet
    backend.wait(3.0)
    assert [i.body for i in q.receive(10, visibility_timeout=30)] == ["later"]


def test_send_at_with_nothing_is_a_no_op(backend):
    q = backend.queue("jobs")
    q.send_at([])
    assert q.count() == 0


def test_a_look_ahead_tick_over_the_backend_enqueues_hidden_jobs(backend):
    now = base_time(backend).replace(microsecond=0)
    first = next_occurrence("*/5 * * * * *", "UTC", now + timedelta(seconds=2))  # 3-7 s away
    backend.tenants.upsert_many(
        [
            parse_tenant(
                {
                    "id": "acme",
                    "flows": [
                        {
                            "name": "sync",
                            "cron": "*/5 * * * * *",
                            "nextRunUtc": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "jitter": 0,
                        }
                    ],
                }
            )
        ]
    )
    q = backend.queue("flow-jobs")
    result = scan_and_enqueue(backend.tenants, q, now, lookahead=20)
    horizon = now + timedelta(seconds=20)
    expected = [
        first + timedelta(seconds=5 * k)
        for k in range(5)
        if first + timedelta(seconds=5 * k) <= horizon
    ]
    assert result.due == len(expected) and result.advanced == 1
    assert q.receive(10, visibility_timeout=30) == []  # nothing due yet
    backend.wait((first - now).total_seconds() + 1.0)
    got = [Job.from_message(i.body) for i in q.receive(10, visibility_timeout=30)]
    assert [j.scheduled_for for j in got] == [first]  # the first occurrence, on time
    tenant = backend.tenants.get("acme")
    assert tenant.flows[0].next_run_utc == expected[-1] + timedelta(seconds=5)


def test_count_due_leaves_out_jobs_scheduled_for_later(backend):
    q = backend.queue("jobs")
    now = base_time(backend)
    q.send("now")
    q.send("deferred", visibility_delay=30)
    q.send_at([("in an hour", now + timedelta(hours=1))])
    soon = now + timedelta(seconds=60)
    if backend.name == "azure":  # hidden messages cannot be listed: the total
        assert q.count_due(soon) == q.count()
    else:
        assert q.count_due(soon) == 2
        assert q.count_due(now + timedelta(hours=2)) == 3
