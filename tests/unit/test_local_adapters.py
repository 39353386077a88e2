"""The embedded adapters: queue semantics, the secrets file, run records and checkpoints."""
from __future__ import annotations

import os
import stat
import time

import pytest

from datasync.adapters.local import LocalBackend
from datasync.exceptions import ConfigError, NotFound, SecretNotFound
from datasync.models import RunRecord
from datasync.ports import Checkpoint


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(tmp_path)
    yield b
    b.close()


def test_queue_visibility_dequeue_count_and_poison(backend):
    q, poison = backend.queues.queue("flow-jobs"), backend.queues.queue("flow-jobs-poison")
    q.send("a")
    [first] = q.receive(10, visibility_timeout=0.2)
    assert first.body == "a" and first.dequeue_count == 1
    assert q.receive(10, 0.2) == []                     # invisible while held
    time.sleep(0.25)
    [again] = q.receive(10, 5)
    assert again.dequeue_count == 2
    q.delete(first)                                     # stale pop receipt: no effect
    assert q.count() == 1
    q.move_to(again, poison, "ValueError: bad job")
    assert q.count() == 0
    [bad] = poison.peek_all()
    assert (bad.body, bad.reason, bad.dequeue_count) == ("a", "ValueError: bad job", 2)
    assert poison.remove(bad.id).body == "a"
    with pytest.raises(NotFound):
        poison.remove(bad.id)


def test_delayed_message_stays_hidden(backend):
    q = backend.queues.queue("flow-jobs")
    q.send("later", visibility_delay=60)
    assert q.receive(1, 5) == [] and q.count() == 1


def test_secrets_file_is_private_and_holds_values_by_key_vault_name(backend, tmp_path):
    backend.secrets.set("acme", "crm", "token", "s3cret-value")
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "tenants--acme--crm--token" in path.read_text()
    assert backend.secrets.get("acme", "crm", "token") == "s3cret-value"
    with pytest.raises(SecretNotFound) as err:
        backend.secrets.get("acme", "crm", "missing")
    assert "s3cret" not in str(err.value) and "missing" in str(err.value)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        backend.secrets.get("acme", "crm", "token")
    assert "s3cret-value" not in repr(backend.secrets)


def test_run_lifecycle_checkpoint_and_resume(backend):
    run = RunRecord(instance_id="Workflow-a-f-20261123T140000Z", tenant_id="a", flow_name="f",
                    scheduled_for="2026-11-23T14:00:00Z", status="Pending")
    assert backend.runs.mark_pending(run)
    assert not backend.runs.mark_pending(run)            # already pending
    started = backend.runs.begin(run)
    assert started.status == "Running" and started.resumes == 0
    backend.runs.checkpoint(run.instance_id, "a", "f", Checkpoint(cursor="c2", state={"n": 2}),
                            pages=2, records_in=20, records_out=19)
    backend.runs.finish(run.instance_id, "Failed", "HTTPStatusError: 503")
    assert [r.instance_id for r in backend.runs.active("a")] == []
    again = backend.runs.begin(run)                      # the same instance started again
    assert (again.status, again.resumes, again.pages, again.records_in) == ("Running", 1, 2, 20)
    cp = backend.runs.load_checkpoint("a", "f")
    assert (cp.cursor, cp.state) == ("c2", {"n": 2})
    assert backend.runs.load_checkpoint("a", "other") == Checkpoint()
    backend.runs.finish(run.instance_id, "Completed")
    [listed] = backend.runs.list(tenant="a", status="Completed")
    assert listed.error is None and listed.finished_at


def test_pages_are_staged_and_cleared(backend):
    backend.pages.put("run/p000001/pulled", [{"id": 1}])
    backend.pages.put("run/p000001/out", [{"id": 1, "x": True}])
    backend.pages.put("run/p000002/pulled", [{"id": 2}])
    assert backend.pages.get("run/p000001/out") == [{"id": 1, "x": True}]
    backend.pages.delete_prefix("run/p000001/")
    with pytest.raises(NotFound):
        backend.pages.get("run/p000001/pulled")
    assert backend.pages.get("run/p000002/pulled") == [{"id": 2}]


def test_a_document_broken_in_the_store_does_not_hide_the_others(backend):
    from datasync.exceptions import InvalidDocument
    from datasync.models import parse_tenant
    backend.tenants.upsert_many([parse_tenant({"id": t, "flows": []}) for t in ("a", "b", "c")])
    with backend.db.write() as con:
        con.execute("""UPDATE tenants SET doc = '{"id": "b", "timezone": "Mars/Base"}'
                       WHERE id = 'b'""")
    assert [t.tenant_id for t in backend.tenants.list()] == ["a", "c"]
    with pytest.raises(InvalidDocument, match="tenant b: timezone"):
        backend.tenants.get("b")
