"""What only the embedded adapters do (the shared port behaviour is in tests/contract):
the 0600 secrets file, races between processes on one DATASYNC_HOME, the SQLite poison
move, and databases made before ``claimed_at``."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from datasync.adapters.local import LocalBackend
from datasync.exceptions import ConfigError, SecretNotFound
from datasync.models import RunRecord

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(tmp_path)
    yield b
    b.close()


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


def test_poison_move_keeps_id_and_dequeue_count(backend):
    q, poison = backend.queues.queue("flow-jobs"), backend.queues.queue("flow-jobs-poison")
    q.send("a")
    q.receive(1, visibility_timeout=0)
    [again] = q.receive(1, visibility_timeout=30)
    q.move_to(again, poison, "ValueError: bad job")
    [bad] = poison.peek_all()
    assert (bad.id, bad.dequeue_count, bad.reason) == (again.id, 2, "ValueError: bad job")


RACER = """
import json, os, sys, time
from datetime import datetime, timezone
from pathlib import Path
from datasync.adapters.local import LocalBackend
from datasync.models import RunRecord
home, verb, gate, ids = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
backend = LocalBackend(home)
backend.db.read()
(gate / str(os.getpid())).touch()             # ready; go when both are
while len(list(gate.iterdir())) < 2:
    time.sleep(0.001)
won = []
for i in ids:
    if verb == "create":
        ok = backend.runs.create(RunRecord(instance_id=i, tenant_id="acme", flow_name="c",
                                           scheduled_for="2026-11-23T14:00:00Z",
                                           status="Pending"))
    else:
        ok = backend.runs.take_over_pending(
            i, older_than=datetime.fromtimestamp(float(verb), timezone.utc))
    if ok:
        won.append(i)
    time.sleep(0.001)     # let the other process at the write lock (SQLite's busy handler
                          # backs off, so a busy loop would just win everything)
print(json.dumps(won))
"""


def _race_processes(home: Path, verb: str, ids: list[str]) -> list[list[str]]:
    """Two processes doing ``verb`` on every id, released together once both are up; one
    goes through the ids forwards, the other backwards, so they meet and collide midway."""
    gate = home / f"gate-{verb}"
    gate.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(home), verb, str(gate), json.dumps(order)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for order in (ids, ids[::-1])
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    return [json.loads(out) for out in outs]


def test_two_processes_racing_on_one_home_create_and_take_over_each_run_once(tmp_path):
    home = tmp_path / "home"
    LocalBackend(home).close()
    ids = [f"Workflow-acme--c-20261123T{h:02d}{m:02d}00Z" for h in range(4) for m in range(50)]
    a, b = _race_processes(home, "create", ids)
    assert sorted(a + b) == sorted(ids)  # each id won exactly once
    assert a and b, "the processes did not overlap: no race was tested"

    # every claim (made at or before `created`) is older than `stale`, and a claim made
    # from `stale` on is not: wait for that second, then both processes take over
    created = datetime.now(UTC).replace(microsecond=0)
    stale = created + timedelta(seconds=1)
    time.sleep(max(0.0, (stale - datetime.now(UTC)).total_seconds()))
    older_than = stale.timestamp()
    a, b = _race_processes(home, str(older_than), ids)
    assert sorted(a + b) == sorted(ids) and a and b


def test_a_database_from_before_claims_is_migrated(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    con = sqlite3.connect(home / "datasync.db")
    con.executescript("""
        CREATE TABLE runs (instance_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,
            flow_name TEXT NOT NULL, scheduled_for TEXT NOT NULL, status TEXT NOT NULL,
            started_at TEXT, finished_at TEXT, pages INTEGER NOT NULL DEFAULT 0,
            records_in INTEGER NOT NULL DEFAULT 0, records_out INTEGER NOT NULL DEFAULT 0,
            resumes INTEGER NOT NULL DEFAULT 0, error TEXT, created_at TEXT NOT NULL);
        INSERT INTO runs (instance_id, tenant_id, flow_name, scheduled_for, status, created_at)
            VALUES ('Workflow-acme--c-20261123T140000Z', 'acme', 'c', '2026-11-23T14:00:00Z',
                    'Pending', '2026-11-23T14:00:00Z');""")
    con.close()
    for _ in range(2):  # opening twice is fine
        backend = LocalBackend(home)
        backend.close()
    backend = LocalBackend(home)
    try:
        old = "Workflow-acme--c-20261123T140000Z"
        assert backend.runs.get(old).status == "Pending"
        assert (
            backend.runs.create(
                RunRecord(
                    instance_id=old,
                    tenant_id="acme",
                    flow_name="c",
                    scheduled_for="2026-11-23T14:00:00Z",
                    status="Pending",
                )
            )
            is False
        )
        later = datetime(2026, 11, 23, 14, 5, tzinfo=UTC)
        assert backend.runs.take_over_pending(old, older_than=later) is True  # by createdAt
        assert backend.runs.take_over_pending(old, older_than=later) is False
    finally:
        backend.close()
