"""The Storage queue adapter against Azurite, through the real SDK."""
from __future__ import annotations

import base64
import time

import pytest
from azure.storage.queue import QueueClient

from datasync.adapters.azure.storage_queue import (DEV_STORAGE_CONNECTION, StorageQueueBackend,
                                                   expand_connection_string)
from datasync.exceptions import ConfigError, NotFound

pytestmark = pytest.mark.emulator

JOB = '{"tenantId":"acme","flowName":"contacts","scheduledFor":"2026-11-23T14:00:00Z"}'


def raw_client(emulators, name: str) -> QueueClient:
    """A plain client with no encode/decode policy: what is really on the wire."""
    return QueueClient.from_connection_string(emulators["AzureWebJobsStorage"], name)


def test_send_receive_delete_round_trip(unique_name, queues):
    q = queues.queue(unique_name("jobs"))               # created on first use
    assert q.count() == 0
    q.send(JOB)
    q.send("naïve — ünïcode ✓")
    items = q.receive(10, visibility_timeout=30)
    assert [i.body for i in items] == [JOB, "naïve — ünïcode ✓"]
    assert all(i.dequeue_count == 1 and i.pop_receipt and i.reason is None for i in items)
    assert q.receive(10, visibility_timeout=30) == []          # held: invisible
    for item in items:
        q.delete(item)
    assert q.count() == 0 and q.peek_all() == []


def test_messages_are_base64_on_the_wire(unique_name, queues, emulators):
    name = unique_name("jobs")
    q = queues.queue(name)
    q.send(JOB)
    [peeked] = raw_client(emulators, name).peek_messages()
    assert peeked.content == base64.b64encode(JOB.encode()).decode()
    # and what the Functions host (or any base64 writer) puts there reads back as text
    raw_client(emulators, name).send_message(base64.b64encode(b'{"x": 1}').decode())
    assert [i.body for i in q.peek_all()] == [JOB, '{"x": 1}']


def test_visibility_timeout_dequeue_count_extend_and_delay(unique_name, queues):
    """One wait of 1.2 s covers every time-based rule (keeps the file fast)."""
    q = queues.queue(unique_name("jobs"))
    q.send("expires")
    q.send("extended")
    [first] = q.receive(1, visibility_timeout=1)
    [held] = q.receive(1, visibility_timeout=1)
    assert (first.body, held.body) == ("expires", "extended")
    extended = q.extend(held, visibility_timeout=30)
    assert extended.pop_receipt != held.pop_receipt
    q.send("delayed", visibility_delay=1)
    assert q.receive(5, visibility_timeout=1) == [] and q.count() == 3

    time.sleep(1.2)
    again = {i.body: i for i in q.receive(5, visibility_timeout=30)}
    assert sorted(again) == ["delayed", "expires"]           # "extended" is still hidden
    assert again["expires"].id == first.id and again["expires"].dequeue_count == 2
    assert again["expires"].pop_receipt != first.pop_receipt
    assert again["delayed"].dequeue_count == 1
    with pytest.raises(NotFound):
        q.extend(held, visibility_timeout=30)    # the old receipt no longer holds it
    q.delete(first)                              # stale receipt: a no-op, not an error
    assert q.count() == 3
    for item in (*again.values(), extended):
        q.delete(item)
    assert q.count() == 0


def test_send_many_and_peek_all_leave_dequeue_count_alone(unique_name, queues):
    q = queues.queue(unique_name("jobs"))
    bodies = [f'{{"n": {n}}}' for n in range(12)]
    q.send_many(bodies)
    peeked = q.peek_all()
    assert sorted(i.body for i in peeked) == sorted(bodies)
    assert all(i.dequeue_count == 0 for i in peeked) and q.count() == 12


def test_move_to_poison_then_replay_by_id(unique_name, queues):
    jobs, poison = queues.queue(unique_name("jobs")), queues.queue(unique_name("jobs-poison"))
    q_id = jobs.send(JOB)
    [item] = jobs.receive(1, visibility_timeout=30)
    assert item.id == q_id
    jobs.move_to(item, poison, "tenant acme: boom")
    assert jobs.count() == 0
    [held] = poison.peek_all()
    assert held.body == JOB and held.reason is None      # the reason went to the log
    poison.send("other")
    removed = poison.remove(held.id)
    assert removed.body == JOB
    assert [i.body for i in poison.peek_all()] == ["other"]
    assert poison.peek_all()[0].dequeue_count == 1       # remove() handed it straight back
    with pytest.raises(NotFound, match="no visible message"):
        poison.remove(held.id)


def test_development_storage_shorthand_and_bad_strings():
    assert expand_connection_string("UseDevelopmentStorage=true") == DEV_STORAGE_CONNECTION
    assert expand_connection_string("AccountName=x") == "AccountName=x"
    backend = StorageQueueBackend("UseDevelopmentStorage=true")
    assert backend.queue("flow-jobs").client.url.startswith(
        "http://127.0.0.1:10001/devstoreaccount1/flow-jobs")
    with pytest.raises(ConfigError, match="AzureWebJobsStorage"):
        StorageQueueBackend("")
