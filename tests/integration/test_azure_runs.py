"""Run history, checkpoints and staged pages on Azure: ``CosmosRunStore`` against the Cosmos
emulator server and ``BlobPageStore`` against Azurite, with the same assertions run on the
embedded SQLite stores — the Azure ones must behave exactly like them."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from datasync.adapters.local import Database, SqlitePageStore, SqliteRunStore
from datasync.adapters.local.runs import RUN_SCHEMA
from datasync.exceptions import NotFound
from datasync.models import RunRecord
from datasync.ports import Checkpoint

pytestmark = pytest.mark.emulator

T0 = datetime(2026, 11, 23, 14, 0, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """One controllable ``utcnow`` for both stores (``createdAt``, ``startedAt``...)."""
    c = Clock()
    monkeypatch.setattr("datasync.adapters.local.runs.utcnow", c)
    monkeypatch.setattr("datasync.adapters.azure.runs.utcnow", c)
    return c


@pytest.fixture(params=["sqlite", "cosmos"])
def store(request, tmp_path, clock):
    if request.param == "sqlite":
        db = Database(tmp_path / "runs.db", RUN_SCHEMA)
        yield SqliteRunStore(db)
        db.close()
        return
    from datasync.adapters.azure.runs import CosmosRunStore
    settings = request.getfixturevalue("cosmos_settings")
    unique = request.getfixturevalue("unique_name")
    s = CosmosRunStore(settings, runs_container=unique("runs"),
                       checkpoints_container=unique("checkpoints"))
    yield s
    s.close()


@pytest.fixture
def cosmos_runs(cosmos_settings, unique_name, clock):
    from datasync.adapters.azure.runs import CosmosRunStore
    s = CosmosRunStore(cosmos_settings, runs_container=unique_name("runs"),
                       checkpoints_container=unique_name("checkpoints"))
    yield s
    s.close()


def run(instance: str = "Workflow-acme-contacts-20261123T140000Z", tenant: str = "acme",
        flow: str = "contacts", status: str = "Pending") -> RunRecord:
    return RunRecord(instance_id=instance, tenant_id=tenant, flow_name=flow,
                     scheduled_for="2026-11-23T14:00:00Z", status=status)


# -- the run lifecycle -------------------------------------------------------------------

def test_mark_pending_dedupes_active_and_completed_runs_only(store):
    r = run()
    assert store.mark_pending(r) is True
    got = store.get(r.instance_id)
    assert (got.status, got.started_at, got.pages, got.resumes) == ("Pending", None, 0, 0)
    assert store.mark_pending(r) is False                    # Pending
    store.begin(r)
    assert store.mark_pending(r) is False                    # Running
    store.finish(r.instance_id, "Failed", "boom")
    assert store.mark_pending(r) is True                     # a failed run may be queued again
    got = store.get(r.instance_id)
    assert (got.status, got.error) == ("Pending", None)
    store.begin(r)
    store.finish(r.instance_id, "Completed")
    assert store.mark_pending(r) is False                    # Completed


def test_begin_creates_or_starts_and_counts_a_restart_as_a_resume(store, clock):
    fresh = store.begin(run("Workflow-acme-contacts-20261123T150000Z", status="Running"))
    assert (fresh.status, fresh.started_at, fresh.resumes, fresh.pages) == (
        "Running", "2026-11-23T14:00:00Z", 0, 0)

    r = run()
    store.mark_pending(r)
    clock.now = T0 + timedelta(seconds=5)
    started = store.begin(r)
    assert (started.status, started.started_at, started.resumes) == (
        "Running", "2026-11-23T14:00:05Z", 0)

    store.checkpoint(r.instance_id, "acme", "contacts", Checkpoint(cursor="000200"),
                     pages=2, records_in=200, records_out=190)
    clock.now = T0 + timedelta(seconds=9)
    store.finish(r.instance_id, "Failed", "target down")
    failed = store.get(r.instance_id)
    assert (failed.status, failed.error, failed.finished_at) == (
        "Failed", "target down", "2026-11-23T14:00:09Z")

    again = store.begin(r)
    assert (again.status, again.error, again.finished_at, again.resumes) == (
        "Running", None, None, 1)
    assert (again.started_at, again.pages, again.records_in, again.records_out) == (
        "2026-11-23T14:00:05Z", 2, 200, 190)                 # counters span the resume
    store.mark_resumed(r.instance_id)
    assert store.get(r.instance_id).resumes == 2


def test_checkpoint_saves_cursor_state_and_cumulative_counters(store):
    assert store.load_checkpoint("acme", "contacts") == Checkpoint()
    r = run()
    store.begin(r)
    store.checkpoint(r.instance_id, "acme", "contacts",
                     Checkpoint(cursor="000100", state={"seen": 1, "tags": ["a"]}),
                     pages=1, records_in=100, records_out=100)
    store.checkpoint(r.instance_id, "acme", "contacts",
                     Checkpoint(cursor=250, state={"seen": 2}),
                     pages=3, records_in=250, records_out=240)
    assert store.load_checkpoint("acme", "contacts") == Checkpoint(cursor=250,
                                                                   state={"seen": 2})
    got = store.get(r.instance_id)
    assert (got.pages, got.records_in, got.records_out) == (3, 250, 240)
    # other flows and tenants keep their own checkpoints
    assert store.load_checkpoint("acme", "orders") == Checkpoint()
    assert store.load_checkpoint("beta", "contacts") == Checkpoint()
    # a checkpoint without a run record still saves the cursor (and touches no run)
    store.checkpoint("Workflow-beta-contacts-20261123T140000Z", "beta", "contacts",
                     Checkpoint(cursor=None, state={}), pages=1, records_in=0, records_out=0)
    assert store.load_checkpoint("beta", "contacts") == Checkpoint(cursor=None, state={})
    with pytest.raises(NotFound):
        store.get("Workflow-beta-contacts-20261123T140000Z")


def test_unknown_runs(store):
    with pytest.raises(NotFound, match="Workflow-acme-x-20261123T140000Z"):
        store.get("Workflow-acme-x-20261123T140000Z")
    store.finish("Workflow-acme-x-20261123T140000Z", "Completed")      # no-op, as SQLite
    store.mark_resumed("Workflow-acme-x-20261123T140000Z")
    assert store.list() == []


def test_record_upserts_a_whole_record(store):
    skipped = run(status="Skipped")
    skipped.finished_at, skipped.error = "2026-11-23T14:00:01Z", "overlap: other run"
    store.record(skipped)
    assert store.get(skipped.instance_id) == skipped
    skipped.error = "overlap: changed"
    store.record(skipped)
    assert store.get(skipped.instance_id).error == "overlap: changed"
    assert [r.instance_id for r in store.list()] == [skipped.instance_id]


def test_list_is_newest_first_with_filters_and_limit(store, clock):
    ids = []
    for i, (tenant, flow, second) in enumerate([("acme", "contacts", 0), ("acme", "orders", 1),
                                                ("beta", "contacts", 1), ("acme", "contacts", 2)]):
        clock.now = T0 + timedelta(seconds=second)
        r = run(f"Workflow-{tenant}-{flow}-2026112{i}T140000Z", tenant, flow)
        store.mark_pending(r)
        ids.append(r.instance_id)
    store.begin(run(ids[1], "acme", "orders"))
    store.finish(ids[1], "Completed")

    everything = [r.instance_id for r in store.list()]
    # newest first; the two created in the same second by instance id, descending
    assert everything == [ids[3], ids[2], ids[1], ids[0]]
    assert [r.instance_id for r in store.list(limit=2)] == [ids[3], ids[2]]
    assert [r.instance_id for r in store.list(limit=3)] == [ids[3], ids[2], ids[1]]
    assert [r.instance_id for r in store.list(tenant="acme")] == [ids[3], ids[1], ids[0]]
    assert [r.instance_id for r in store.list(flow="contacts")] == [ids[3], ids[2], ids[0]]
    assert [r.instance_id for r in store.list(tenant="acme", status="Completed")] == [ids[1]]
    assert store.list(tenant="nobody") == []
    assert store.list(limit=0) == []


def test_active_lists_pending_and_running_runs_of_a_tenant(store):
    a = run("Workflow-acme-contacts-20261123T140000Z")
    b = run("Workflow-acme-orders-20261123T140000Z", flow="orders")
    c = run("Workflow-acme-contacts-20261123T150000Z")
    d = run("Workflow-beta-contacts-20261123T140000Z", tenant="beta")
    for r in (a, b, c, d):
        store.mark_pending(r)
    store.begin(b)
    store.begin(c)
    store.finish(c.instance_id, "Completed")
    assert {r.instance_id for r in store.active("acme")} == {a.instance_id, b.instance_id}
    assert [r.instance_id for r in store.active("acme", "orders")] == [b.instance_id]
    assert {r.status for r in store.active("acme")} == {"Pending", "Running"}
    assert [r.instance_id for r in store.active("beta")] == [d.instance_id]
    assert store.active("gamma") == []


def test_racing_mark_pending_lets_exactly_one_win(store):
    r = run()
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def go() -> None:
        barrier.wait()
        results.append(store.mark_pending(r))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


# -- Cosmos only -------------------------------------------------------------------------

def test_cosmos_counters_lost_between_the_two_writes_come_back_from_the_checkpoint(
        cosmos_runs, monkeypatch):
    r = run()
    cosmos_runs.begin(r)
    cosmos_runs.checkpoint(r.instance_id, "acme", "contacts", Checkpoint(cursor="000100"),
                           pages=1, records_in=100, records_out=100)
    container = cosmos_runs.runs

    def crash(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(container, "patch_item", crash)      # dies after the checkpoint write
    with pytest.raises(RuntimeError):
        cosmos_runs.checkpoint(r.instance_id, "acme", "contacts", Checkpoint(cursor="000200"),
                               pages=2, records_in=200, records_out=195)
    monkeypatch.undo()
    assert cosmos_runs.load_checkpoint("acme", "contacts").cursor == "000200"
    assert cosmos_runs.get(r.instance_id).pages == 1          # the run's copy lags ...
    cosmos_runs.finish(r.instance_id, "Failed", "worker died")
    resumed = cosmos_runs.begin(r)                            # ... until the run resumes
    assert (resumed.pages, resumed.records_in, resumed.records_out, resumed.resumes) == (
        2, 200, 195, 1)


def test_cosmos_finds_a_run_by_id_alone_from_a_fresh_process(cosmos_settings, cosmos_runs):
    from datasync.adapters.azure.runs import CosmosRunStore
    r = run("Workflow-a-b-c-d-20261123T140000Z", tenant="a-b", flow="c-d")
    cosmos_runs.begin(r)
    other = CosmosRunStore(cosmos_settings, runs_container=cosmos_runs._runs_name,
                           checkpoints_container=cosmos_runs._checkpoints_name)
    try:
        other.finish(r.instance_id, "Completed")             # no cached partition here
        got = other.get(r.instance_id)
        assert (got.tenant_id, got.status) == ("a-b", "Completed")
        [item] = list(other.runs.query_items("SELECT * FROM c", enable_cross_partition_query=True))
        assert (item["id"], item["tenantId"], item["type"]) == (r.instance_id, "a-b", "Run")
    finally:
        other.close()


# -- staged pages ------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "blob"])
def pages(request, tmp_path):
    if request.param == "sqlite":
        db = Database(tmp_path / "pages.db", RUN_SCHEMA)
        yield SqlitePageStore(db)
        db.close()
        return
    from datasync.adapters.azure.pages import BlobPageStore
    emulators = request.getfixturevalue("emulators")
    unique = request.getfixturevalue("unique_name")
    s = BlobPageStore(emulators["AzureWebJobsStorage"], container=unique("pages"))
    yield s
    s.close()


def test_pages_put_get_overwrite_and_delete_by_prefix(pages):
    records = [{"id": "000001", "name": "Ann", "tags": ["x"], "n": 1.5, "none": None},
               {"id": "000002", "name": "Bö ✓"}]
    pages.put("Workflow-acme-c-20261123T140000Z/p000001/pulled", records)
    pages.put("Workflow-acme-c-20261123T140000Z/p000001/out", records[:1])
    pages.put("Workflow-acme-c-20261123T140000Z/p000002/pulled", [])
    pages.put("Workflow-acme-c-20261123T1400001/p000001/pulled", [{"id": "z"}])   # a lookalike
    assert pages.get("Workflow-acme-c-20261123T140000Z/p000001/pulled") == records
    pages.put("Workflow-acme-c-20261123T140000Z/p000001/out", records[1:])         # overwrite
    assert pages.get("Workflow-acme-c-20261123T140000Z/p000001/out") == records[1:]

    pages.delete_prefix("Workflow-acme-c-20261123T140000Z/p000001/")
    for key in ("Workflow-acme-c-20261123T140000Z/p000001/pulled",
                "Workflow-acme-c-20261123T140000Z/p000001/out"):
        with pytest.raises(NotFound, match="gone"):
            pages.get(key)
    assert pages.get("Workflow-acme-c-20261123T140000Z/p000002/pulled") == []
    assert pages.get("Workflow-acme-c-20261123T1400001/p000001/pulled") == [{"id": "z"}]
    pages.delete_prefix("Workflow-nothing/")                                       # no-op


def test_blob_pages_live_in_the_datasync_pages_container_as_json(emulators):
    from azure.storage.blob import BlobServiceClient

    from datasync.adapters.azure.pages import BlobPageStore
    from datasync.adapters.azure.storage import expand_connection_string
    store = BlobPageStore(emulators["AzureWebJobsStorage"])
    try:
        store.put("Workflow-t-f-20261123T140000Z/p000001/out", [{"id": "1"}])
        raw = BlobServiceClient.from_connection_string(
            expand_connection_string(emulators["AzureWebJobsStorage"]))
        blob = raw.get_blob_client("datasync-pages", "Workflow-t-f-20261123T140000Z/p000001/out")
        assert blob.download_blob().readall() == b'[{"id":"1"}]'
        assert blob.get_blob_properties().content_settings.content_type == "application/json"
        store.delete_prefix("Workflow-t-f-20261123T140000Z/")
        assert not blob.exists()
        raw.close()
    finally:
        store.close()


# -- wiring ------------------------------------------------------------------------------

def test_build_services_puts_runs_and_pages_on_azure_and_nothing_on_disk(tmp_path):
    from datasync.adapters.azure.cosmos import CosmosTenantStore
    from datasync.adapters.azure.pages import BlobPageStore
    from datasync.adapters.azure.runs import CosmosRunStore
    from datasync.config import Settings
    from datasync.services import build_services
    home = tmp_path / "home"
    svc = build_services(Settings.from_env({
        "DATASYNC_HOME": str(home), "COSMOS_ENDPOINT": "https://127.0.0.1:1",
        "COSMOS_KEY": "a2V5", "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "KEYVAULT_URL": "https://kv.example"}))
    assert isinstance(svc.tenants, CosmosTenantStore) and isinstance(svc.runs, CosmosRunStore)
    assert svc.tenants._database is svc.runs._database          # one Cosmos client
    assert isinstance(svc.pages, BlobPageStore)
    assert svc.pages.container.url == "http://127.0.0.1:10000/devstoreaccount1/datasync-pages"
    assert len(svc._closers) == 4                                # cosmos, queues, blobs, vault
    svc.close()
    assert not home.exists()                                     # no embedded backend opened

    partly = build_services(Settings.from_env({"DATASYNC_HOME": str(home),
                                               "AzureWebJobsStorage": "UseDevelopmentStorage=true"}))
    assert type(partly.runs).__name__ == "SqliteRunStore" and isinstance(partly.pages,
                                                                         BlobPageStore)
    partly.close()
    assert (home / "datasync.db").exists()


def test_identity_based_storage_setting_reaches_both_storage_adapters():
    from datasync.adapters.azure.pages import BlobPageStore
    from datasync.adapters.azure.storage_queue import StorageQueueBackend
    from datasync.config import Settings
    from keyvault_server import FakeCredential
    settings = Settings.from_env({"AzureWebJobsStorage__accountName": "stdatasync"})
    assert settings.uses_azure_queue
    queues = StorageQueueBackend(settings.storage_connection, credential=FakeCredential())
    pages = BlobPageStore(settings.storage_connection, credential=FakeCredential())
    assert queues.queue("flow-jobs").client.url == "https://stdatasync.queue.core.windows.net/flow-jobs"
    assert pages.container.url == "https://stdatasync.blob.core.windows.net/datasync-pages"
    assert "AccountKey" not in settings.storage_connection
    explicit = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                  "AzureWebJobsStorage__accountName": "ignored"})
    assert explicit.storage_connection == "UseDevelopmentStorage=true"   # the string wins
