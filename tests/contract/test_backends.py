"""Around the ports: the memory backend's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from datasync.adapters.memory import ManualClock, MemoryBackend
from datasync.models import RunRecord


def test_manual_clock_moves_only_forward_when_told():
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock() == clock() == datetime(2026, 1, 1, tzinfo=UTC)
    assert clock.advance(1.5) == datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        ManualClock(datetime(2026, 1, 1))


def test_memory_backend_shares_its_clock_across_ports():
    clock = ManualClock()
    b = MemoryBackend(clock=clock)
    q = b.queues.queue("flow-jobs")
    q.send("later", visibility_delay=3600)
    assert q.receive(1, 30) == []
    clock.advance(3600)
    assert [i.body for i in q.receive(1, 30)] == ["later"]
    b.runs.begin(
        RunRecord(
            instance_id="Workflow-a--c-20261123T140000Z",
            tenant_id="a",
            flow_name="c",
            scheduled_for="2026-11-23T14:00:00Z",
            status="Pending",
        )
    )
    assert b.runs.get("Workflow-a--c-20261123T140000Z").started_at == "2026-11-23T15:00:00Z"
    assert clock() - timedelta(hours=1) == datetime(2026, 11, 23, 14, tzinfo=UTC)


def test_memory_secrets_never_show_a_value():
    b = MemoryBackend()
    b.secrets.set("acme", "crm", "token", "s3cret")
    assert "s3cret" not in repr(b.secrets) and b.secrets.names() == ["tenants--acme--crm--token"]
