"""What only the Storage queue adapter does, against Azurite through the real SDK: base64
on the wire, the service's limits, the connection-string forms. The MessageQueue
behaviour every backend shares (visibility, dequeue counts, receipts, poison) is in
tests/contract."""

from __future__ import annotations

import base64

import pytest
from azure.storage.queue import QueueClient

from datasync.adapters.azure.storage_queue import (
    DEV_STORAGE_CONNECTION,
    StorageQueueBackend,
    expand_connection_string,
)
from datasync.exceptions import ConfigError, NotFound

pytestmark = pytest.mark.emulator

JOB = '{"tenantId":"acme","flowName":"contacts","scheduledFor":"2026-11-23T14:00:00Z"}'


def raw_client(emulators, name: str) -> QueueClient:
    """A plain client with no encode/decode policy: what is really on the wire."""
    return QueueClient.from_connection_string(emulators["AzureWebJobsStorage"], name)


def test_messages_are_base64_on_the_wire(unique_name, queues, emulators):
    name = unique_name("jobs")
    q = queues.queue(name)
    q.send(JOB)
    [peeked] = raw_client(emulators, name).peek_messages()
    assert peeked.content == base64.b64encode(JOB.encode()).decode()
    # and what the Functions host (or any base64 writer) puts there reads back as text
    raw_client(emulators, name).send_message(base64.b64encode(b'{"x": 1}').decode())
    assert [i.body for i in q.peek_all()] == [JOB, '{"x": 1}']


def test_storage_limits_poison_reason_in_the_log_and_remove_hands_others_back(unique_name, queues):
    """Storage messages carry no metadata, and remove(id) receives to find its message."""
    jobs, poison = queues.queue(unique_name("jobs")), queues.queue(unique_name("jobs-poison"))
    jobs.send(JOB)
    [item] = jobs.receive(1, visibility_timeout=30)
    jobs.move_to(item, poison, "tenant acme: boom")
    [held] = poison.peek_all()
    assert held.reason is None and held.dequeue_count == 0  # a new message there
    poison.send("other")
    assert poison.remove(held.id).body == JOB
    assert poison.peek_all()[0].dequeue_count == 1  # remove() handed it straight back
    with pytest.raises(NotFound, match="no visible message"):
        poison.remove(held.id)


def test_extend_hands_out_a_new_pop_receipt(unique_name, queues):
    q = queues.queue(unique_name("jobs"))
    q.send(JOB)
    [held] = q.receive(1, visibility_timeout=30)
    extended = q.extend(held, visibility_timeout=30)
    assert extended.pop_receipt != held.pop_receipt
    q.delete(extended)
    assert q.count() == 0


def test_development_storage_shorthand_and_bad_strings():
    assert expand_connection_string("UseDevelopmentStorage=true") == DEV_STORAGE_CONNECTION
    assert expand_connection_string("AccountName=x") == "AccountName=x"
    backend = StorageQueueBackend("UseDevelopmentStorage=true")
    assert backend.queue("flow-jobs").client.url.startswith(
        "http://127.0.0.1:10001/devstoreaccount1/flow-jobs"
    )
    with pytest.raises(ConfigError, match="AzureWebJobsStorage"):
        StorageQueueBackend("")
