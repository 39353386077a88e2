"""MessageQueue contract: visibility, delays, dequeue counts, pop receipts, poison moves.

Azurite takes whole seconds, so timeouts here are 1 s and waits 1.2 s (instant on the
memory and SQLite backends, whose clock the test drives)."""

from __future__ import annotations

import logging

import pytest

from datasync.exceptions import NotFound

JOB = '{"tenantId":"acme","flowName":"contacts","scheduledFor":"2026-11-23T14:00:00Z"}'


def test_send_receive_delete_round_trip(backend):
    q = backend.queue("jobs")
    assert q.count() == 0
    first = q.send(JOB)
    q.send("naïve — ünïcode ✓")
    items = q.receive(10, visibility_timeout=30)
    assert [i.body for i in items] == [JOB, "naïve — ünïcode ✓"]
    assert items[0].id == first
    assert all(i.dequeue_count == 1 and i.pop_receipt for i in items)
    assert q.receive(10, visibility_timeout=30) == []  # held: invisible
    assert q.count() == 2  # hidden ones count
    for item in items:
        q.delete(item)
    assert q.count() == 0 and q.peek_all() == []


def test_receive_takes_at_most_max_messages(backend):
    q = backend.queue("jobs")
    q.send_many(["a", "b", "c"])
    assert len(q.receive(2, visibility_timeout=30)) == 2
    assert [i.body for i in q.receive(5, visibility_timeout=30)] == ["c"]


def test_visibility_timeout_dequeue_count_extend_and_delay(backend):
    q = backend.queue("jobs")
    q.send("expires")
    q.send("extended")
    [first] = q.receive(1, visibility_timeout=1)
    [held] = q.receive(1, visibility_timeout=1)
    assert (first.body, held.body) == ("expires", "extended")
    extended = q.extend(held, visibility_timeout=30)
    q.send("delayed", visibility_delay=1)
    assert q.receive(5, visibility_timeout=1) == [] and q.count() == 3

    backend.wait(1.2)
    again = {i.body: i for i in q.receive(5, visibility_timeout=30)}
    assert sorted(again) == ["delayed", "expires"]  # "extended" is still hidden
    assert again["expires"].id == first.id and again["expires"].dequeue_count == 2
    assert again["expires"].pop_receipt != first.pop_receipt
    assert again["delayed"].dequeue_count == 1
    with pytest.raises(NotFound):
        q.extend(first, visibility_timeout=30)  # its old receipt no longer holds it
    q.delete(first)  # stale receipt: a no-op, not an error
    assert q.count() == 3
    for item in (*again.values(), extended):
        q.delete(item)
    assert q.count() == 0


def test_send_many_and_peek_all_leave_dequeue_counts_alone(backend):
    q = backend.queue("jobs")
    bodies = [f'{{"n": {n}}}' for n in range(12)]
    q.send_many(bodies)
    q.send_many([])
    peeked = q.peek_all()
    assert sorted(i.body for i in peeked) == sorted(bodies)  # no order across a batch
    assert all(i.dequeue_count == 0 for i in peeked) and q.count() == 12
    assert [i.dequeue_count for i in q.peek_all()] == [0] * 12


def test_poison_move_keeps_body_and_reason_then_replay_by_id(backend, caplog):
    jobs, poison = backend.queue("flow-jobs"), backend.queue("flow-jobs-poison")
    jobs.send(JOB)
    [item] = jobs.receive(1, visibility_timeout=30)
    with caplog.at_level(logging.WARNING, logger="datasync.queue"):
        jobs.move_to(item, poison, "tenant acme: ValueError: bad job")
    assert jobs.count() == 0 and jobs.receive(1, 30) == []
    [held] = poison.peek_all()
    assert held.body == JOB
    if backend.keeps_reason:
        assert held.reason == "tenant acme: ValueError: bad job"
    else:  # Storage messages carry no metadata: the reason is in the log
        assert held.reason is None and "tenant acme: ValueError: bad job" in caplog.text
    poison.send("other")
    assert poison.remove(held.id).body == JOB
    assert [i.body for i in poison.peek_all()] == ["other"]
    with pytest.raises(NotFound):
        poison.remove(held.id)


def test_remove_of_an_unknown_message_is_not_found(backend):
    q = backend.queue("flow-jobs-poison")
    q.send("x")
    with pytest.raises(NotFound):
        q.remove("0" * 32)
    assert q.count() == 1


def test_queues_are_separate(backend):
    a, b = backend.queue("jobs-a"), backend.queue("jobs-b")
    a.send("for a")
    assert b.receive(5, 30) == [] and b.count() == 0
    assert [i.body for i in a.receive(5, 30)] == ["for a"]
