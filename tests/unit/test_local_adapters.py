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
from datasync.adapters.local.db import Database, StorageError, StorageFull, _Connection
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


UNDERSTOOD_NOT = [  # (store file content, what the refusal says)
    (b'{"secrets": {"tenants--acme--crm--token": "old-value"}', "is not valid JSON"),
    (b"\xff\xfeold-value", "is not UTF-8 text"),
    (b'["old-value"]', "expected a JSON object"),
    (b'{"tenants--acme--crm--token": "old-value"}', "unknown top-level key"),
    (b'{"token": "old-value"}', "unknown top-level key(s) 'token'"),
    (b'{"version": 2, "secrets": {"tenants--acme--crm--token": "old-value"}}', "version 2"),
    (b'{"version": "1", "secrets": {}, "x": 1}', "unknown top-level key(s) 'x'"),
    (b'{"version": "1", "secrets": {}}', "version str is not supported"),
    (b'{"version": 1}', 'has no "secrets" object'),
    (b'{"secrets": ["old-value"]}', '"secrets" must be an object'),
    (b'{"secrets": {"old-value": "x"}}', "entry #1 is not named tenants--TENANT--SYSTEM--KEY"),
    (b'{"secrets": {"tenants--acme--crm--token": ["old-value"]}}', "must be a string"),
    (b'{"secrets": {"tenants--acme--crm--token": 7}}', "must be a string, got int"),
    (b'{"encrypted": true, "secrets": {}}', "unknown top-level key(s) 'encrypted'"),
]


@pytest.mark.parametrize(("content", "says"), UNDERSTOOD_NOT)
def test_a_secret_store_not_understood_is_refused_and_left_byte_identical(
    backend, tmp_path, content, says
):
    path = tmp_path / "secrets.json"
    path.write_bytes(content)
    path.chmod(0o600)
    for call in (
        lambda: backend.secrets.set("acme", "crm", "new", "new-value"),
        lambda: backend.secrets.get("acme", "crm", "token"),
    ):
        with pytest.raises(ConfigError) as err:
            call()
        assert says in str(err.value), str(err.value)
        assert "refusing" in str(err.value) and "old-value" not in str(err.value)
        assert "new-value" not in str(err.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir() if "secrets" in p.name) == [
        "secrets.json",
        "secrets.lock",
    ]


def test_the_store_is_versioned_and_a_legacy_store_is_read_and_upgraded(backend, tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text('{"secrets": {"tenants--acme--crm--token": "old-value"}}')
    path.chmod(0o600)
    assert backend.secrets.get("acme", "crm", "token") == "old-value"
    backend.secrets.set("acme", "crm", "other", "new-value")
    assert json.loads(path.read_text()) == {
        "version": 1,
        "secrets": {
            "tenants--acme--crm--other": "new-value",
            "tenants--acme--crm--token": "old-value",
        },
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_temp_copy_left_by_a_killed_writer_is_removed_by_the_next_write(backend, tmp_path):
    backend.secrets.set("acme", "crm", "token", "first-value")
    for name in (".secrets-k1ll3d.tmp", "secrets.tmp"):  # ours, and the name 0.x used
        (tmp_path / name).write_text('{"secrets": {"tenants--acme--crm--token": "first-value"}}')
    backend.secrets.set("acme", "crm", "token", "second-value")
    assert sorted(p.name for p in tmp_path.iterdir() if "secrets" in p.name) == [
        "secrets.json",
        "secrets.lock",
    ]


FAILING_WRITER = """
import resource, sys
from pathlib import Path
from datasync.adapters.local.secrets import FileSecretStore
from datasync.exceptions import ConfigError
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # Python ignores SIGXFSZ: EFBIG
try:
    FileSecretStore(Path(sys.argv[1])).set("acme", "crm", "big", "big-value-" + "x" * 8192)
except ConfigError as err:
    print(err)
    sys.exit(2)
"""


def test_a_failed_write_leaves_the_store_unchanged_and_no_copy_of_the_values(backend, tmp_path):
    backend.secrets.set("acme", "crm", "token", "first-value")
    before = (tmp_path / "secrets.json").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", FAILING_WRITER, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "could not write the secret store" in proc.stdout and "unchanged" in proc.stdout
    assert "first-value" not in proc.stdout and "big-value" not in proc.stdout
    assert (tmp_path / "secrets.json").read_bytes() == before
    for path in tmp_path.iterdir():
        if path.name != "secrets.json" and path.is_file():
            assert b"first-value" not in path.read_bytes(), path.name
    assert sorted(p.name for p in tmp_path.iterdir() if "secrets" in p.name) == [
        "secrets.json",
        "secrets.lock",
    ]
    assert backend.secrets.get("acme", "crm", "token") == "first-value"


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


SCHEMA = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"


def test_a_full_database_says_so_rolls_back_and_works_again_once_there_is_room(tmp_path):
    db = Database(tmp_path / "x.db", SCHEMA)
    try:
        with db.write() as con:
            con.execute("INSERT INTO t (body) VALUES ('kept')")
        pages = db.connect().execute("PRAGMA page_count").fetchone()[0]
        db.connect().execute(f"PRAGMA max_page_count = {pages + 1}")  # the disk is full
        for big in (10, 2000):  # fails in a statement, or at COMMIT
            with pytest.raises(StorageFull) as err, db.write() as con:
                for _ in range(big):
                    con.execute("INSERT INTO t (body) VALUES (?)", ("x" * 3000,))
            assert isinstance(err.value, sqlite3.OperationalError)  # SQLite handlers still apply
            assert str(err.value).startswith("x.db: database or disk is full; free space")
            assert not db.connect().in_transaction
        db.connect().execute("PRAGMA max_page_count = 1073741823")  # space returns
        with db.write() as con:  # the same connection, not stuck in a transaction
            con.execute("INSERT INTO t (body) VALUES ('after')")
        rows = [r[0] for r in db.read().execute("SELECT body FROM t ORDER BY id")]
        assert rows == ["kept", "after"]
    finally:
        db.close()


def test_an_error_in_a_write_is_raised_as_it_was_not_hidden_by_the_rollback(tmp_path):
    db = Database(tmp_path / "x.db", SCHEMA)
    try:
        with pytest.raises(sqlite3.IntegrityError), db.write() as con:
            con.execute("INSERT INTO t (id, body) VALUES (1, 'a')")
            con.execute("INSERT INTO t (id, body) VALUES (1, 'b')")
        with pytest.raises(KeyError), db.write() as con:
            con.execute("INSERT INTO t (id, body) VALUES (2, 'c')")
            raise KeyError("boom")
        assert db.read().execute("SELECT count(*) FROM t").fetchone()[0] == 0
    finally:
        db.close()


def test_a_file_that_is_not_a_database_or_read_only_is_a_clear_error(tmp_path):
    (tmp_path / "datasync.db").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StorageError) as err:
        LocalBackend(tmp_path)
    assert "datasync.db: not a DataSync database" in str(err.value)
    assert isinstance(err.value, ConfigError)  # the CLI: `error: ...`, exit 2

    db = Database(tmp_path / "ro.db", SCHEMA)
    db.close()
    (tmp_path / "ro.db").chmod(0o400)
    if os.access(tmp_path / "ro.db", os.W_OK):  # root writes anyway: open it read-only
        con = sqlite3.connect(f"file:{tmp_path / 'ro.db'}?mode=ro", uri=True, factory=_Connection)
        con.db_path = tmp_path / "ro.db"
        with pytest.raises(StorageError, match=r"ro\.db: cannot write: the file or DATASYNC_HOME"):
            con.execute("INSERT INTO t (body) VALUES ('x')")
        con.close()
    else:
        with pytest.raises(StorageError, match=r"ro\.db: cannot write"):
            Database(tmp_path / "ro.db", SCHEMA)
