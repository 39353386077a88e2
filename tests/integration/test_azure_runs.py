"""What only the Azure run and page stores do: ``CosmosRunStore`` on the Cosmos emulator
server (two-write checkpoints, finding a run by id alone, the item shape) and
``BlobPageStore`` on Azurite, plus the wiring. The behaviour they share with the embedded
and in-memory stores (dedupe races included) is in tests/contract."""

from __future__ import annotations

from datetime import timedelta

import pytest

from datasync.adapters.memory import ManualClock
from datasync.models import RunRecord
from datasync.ports import Checkpoint

pytestmark = pytest.mark.emulator


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def cosmos_runs(cosmos_settings, unique_name, clock):
    from datasync.adapters.azure.runs import CosmosRunStore

    s = CosmosRunStore(
        cosmos_settings,
        runs_container=unique_name("runs"),
        checkpoints_container=unique_name("checkpoints"),
        clock=clock,
    )
    yield s
    s.close()


def run(
    instance: str = "Workflow-acme--contacts-20261123T140000Z",
    tenant: str = "acme",
    flow: str = "contacts",
    status: str = "Pending",
) -> RunRecord:
    return RunRecord(
        instance_id=instance,
        tenant_id=tenant,
        flow_name=flow,
        scheduled_for="2026-11-23T14:00:00Z",
        status=status,
    )


# -- Cosmos only -------------------------------------------------------------------------


def test_cosmos_counters_lost_between_the_two_writes_come_back_from_the_checkpoint(
    cosmos_runs, monkeypatch
):
    r = run()
    cosmos_runs.begin(r)
    cosmos_runs.checkpoint(
        r.instance_id,
        "acme",
        "contacts",
        Checkpoint(cursor="000100"),
        pages=1,
        records_in=100,
        records_out=100,
    )
    container = cosmos_runs.runs

    def crash(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(container, "patch_item", crash)  # dies after the checkpoint write
    with pytest.raises(RuntimeError):
        cosmos_runs.checkpoint(
            r.instance_id,
            "acme",
            "contacts",
            Checkpoint(cursor="000200"),
            pages=2,
            records_in=200,
            records_out=195,
        )
    monkeypatch.undo()
    assert cosmos_runs.load_checkpoint("acme", "contacts").cursor == "000200"
    assert cosmos_runs.get(r.instance_id).pages == 1  # the run's copy lags ...
    cosmos_runs.finish(r.instance_id, "Failed", "worker died")
    resumed = cosmos_runs.begin(r)  # ... until the run resumes
    assert (resumed.pages, resumed.records_in, resumed.records_out, resumed.resumes) == (
        2,
        200,
        195,
        1,
    )


def test_cosmos_run_item_carries_the_claim_and_contract_fields(cosmos_runs, clock):
    r = run()
    assert cosmos_runs.create(r)
    [item] = list(
        cosmos_runs.runs.query_items("SELECT * FROM c", enable_cross_partition_query=True)
    )
    assert {k: item[k] for k in ("id", "type", "tenantId", "status", "createdAt", "claimedAt")} == {
        "id": r.instance_id,
        "type": "Run",
        "tenantId": "acme",
        "status": "Pending",
        "createdAt": "2026-11-23T14:00:00Z",
        "claimedAt": "2026-11-23T14:00:00Z",
    }
    clock.advance(120)
    assert cosmos_runs.take_over_pending(r.instance_id, older_than=clock() - timedelta(seconds=60))
    item = cosmos_runs.runs.read_item(r.instance_id, partition_key="acme")
    assert (item["createdAt"], item["claimedAt"]) == (
        "2026-11-23T14:00:00Z",
        "2026-11-23T14:02:00Z",
    )
    skipped = run(status="Skipped")
    cosmos_runs.record(skipped)  # a whole-record upsert ...
    item = cosmos_runs.runs.read_item(r.instance_id, partition_key="acme")
    assert (item["status"], item["claimedAt"]) == ("Skipped", "2026-11-23T14:02:00Z")


def test_cosmos_take_over_from_a_fresh_process_finds_the_run_by_id(
    cosmos_settings, cosmos_runs, clock
):
    from datasync.adapters.azure.runs import CosmosRunStore

    r = run("Workflow-a-b--c-d-20261123T140000Z", tenant="a-b", flow="c-d")
    assert cosmos_runs.create(r)
    clock.advance(600)
    other = CosmosRunStore(
        cosmos_settings,
        runs_container=cosmos_runs._runs_name,
        checkpoints_container=cosmos_runs._checkpoints_name,
        clock=clock,
    )
    try:  # no cached partition there
        assert other.take_over_pending(r.instance_id, older_than=clock()) is True
        assert cosmos_runs.take_over_pending(r.instance_id, older_than=clock()) is False
    finally:
        other.close()


def test_cosmos_finds_a_run_by_id_alone_from_a_fresh_process(cosmos_settings, cosmos_runs):
    from datasync.adapters.azure.runs import CosmosRunStore

    r = run("Workflow-a-b--c-d-20261123T140000Z", tenant="a-b", flow="c-d")
    cosmos_runs.begin(r)
    other = CosmosRunStore(
        cosmos_settings,
        runs_container=cosmos_runs._runs_name,
        checkpoints_container=cosmos_runs._checkpoints_name,
    )
    try:
        other.finish(r.instance_id, "Completed")  # no cached partition here
        got = other.get(r.instance_id)
        assert (got.tenant_id, got.status) == ("a-b", "Completed")
        [item] = list(other.runs.query_items("SELECT * FROM c", enable_cross_partition_query=True))
        assert (item["id"], item["tenantId"], item["type"]) == (r.instance_id, "a-b", "Run")
    finally:
        other.close()


# -- staged pages ------------------------------------------------------------------------


def test_blob_pages_live_in_the_datasync_pages_container_as_json(emulators):
    from azure.storage.blob import BlobServiceClient

    from datasync.adapters.azure.pages import BlobPageStore
    from datasync.adapters.azure.storage import expand_connection_string

    store = BlobPageStore(emulators["AzureWebJobsStorage"])
    try:
        store.put("Workflow-t-f-20261123T140000Z/p000001/out", [{"id": "1"}])
        raw = BlobServiceClient.from_connection_string(
            expand_connection_string(emulators["AzureWebJobsStorage"])
        )
        blob = raw.get_blob_client("datasync-pages", "Workflow-t-f-20261123T140000Z/p000001/out")
        assert blob.download_blob().readall() == b'[{"id":"1"}]'
        assert blob.get_blob_properties().content_settings.content_type == "application/json"
        store.delete_prefix("Workflow-t-f-20261123T140000Z/")
        assert not blob.exists()
        raw.close()
    finally:
        store.close()


# -- wiring ------------------------------------------------------------------------------


def test_the_app_puts_runs_and_pages_on_azure_and_nothing_on_disk(tmp_path):
    from datasync.adapters.azure.cosmos import CosmosTenantStore
    from datasync.adapters.azure.pages import BlobPageStore
    from datasync.adapters.azure.runs import CosmosRunStore
    from datasync.app import App
    from datasync.config import Settings

    home = tmp_path / "home"
    app = App.from_settings(
        Settings.from_env(
            {
                "DATASYNC_HOME": str(home),
                "COSMOS_ENDPOINT": "https://127.0.0.1:1",
                "COSMOS_KEY": "a2V5",
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                "KEYVAULT_URL": "https://kv.example",
            }
        )
    )
    assert isinstance(app.tenants, CosmosTenantStore) and isinstance(app.runs, CosmosRunStore)
    assert app.tenants._database is app.runs._database  # one Cosmos client
    assert isinstance(app.pages, BlobPageStore)
    assert app.pages.container.url == "http://127.0.0.1:10000/devstoreaccount1/datasync-pages"
    assert len(app._closers) == 4  # cosmos, queues, blobs, vault
    app.close()
    assert not home.exists()  # no embedded backend opened

    partly = App.from_settings(
        Settings.from_env(
            {"DATASYNC_HOME": str(home), "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
        )
    )
    assert type(partly.runs).__name__ == "SqliteRunStore" and isinstance(
        partly.pages, BlobPageStore
    )
    partly.close()
    assert (home / "datasync.db").exists()


def test_identity_based_storage_setting_reaches_both_storage_adapters():
    from keyvault_server import FakeCredential

    from datasync.adapters.azure.pages import BlobPageStore
    from datasync.adapters.azure.storage_queue import StorageQueueBackend
    from datasync.config import Settings

    settings = Settings.from_env({"AzureWebJobsStorage__accountName": "stdatasync"})
    assert settings.uses_azure_queue
    queues = StorageQueueBackend(settings.storage_connection, credential=FakeCredential())
    pages = BlobPageStore(settings.storage_connection, credential=FakeCredential())
    assert (
        queues.queue("flow-jobs").client.url
        == "https://stdatasync.queue.core.windows.net/flow-jobs"
    )
    assert pages.container.url == "https://stdatasync.blob.core.windows.net/datasync-pages"
    assert "AccountKey" not in settings.storage_connection
    explicit = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "AzureWebJobsStorage__accountName": "ignored",
        }
    )
    assert explicit.storage_connection == "UseDevelopmentStorage=true"  # the string wins
