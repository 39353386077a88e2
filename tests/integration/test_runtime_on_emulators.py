"""The whole sync on the Azure adapters: tenants, runs and checkpoints in the Cosmos
emulator server, jobs and staged pages in Azurite, secrets in the Key Vault test server —
driven by the local runtime exactly as ``python -m datasync run --once`` does.

Only two things are test-specific: the Key Vault client trusts the test server (its
credential and self-signed certificate), and the Cosmos database name is unique per test.
Nothing may land in ``DATASYNC_HOME`` except the runtime's own durable history.
"""

from __future__ import annotations

import json
import math

import pytest

from datasync import operations
from datasync.adapters.azure.cosmos import CosmosTenantStore
from datasync.adapters.azure.pages import BlobPageStore
from datasync.adapters.azure.runs import CosmosRunStore
from datasync.adapters.azure.storage_queue import StorageMessageQueue, StorageQueueBackend
from datasync.app import App
from datasync.config import Settings
from datasync.demo_apis import DemoApis
from datasync.names import utcnow
from datasync.ports import FLOW_JOBS, FLOW_JOBS_POISON
from datasync.runtime.host import LocalHost

pytestmark = pytest.mark.emulator

FLOW = "contacts-to-erp"
TENANTS = {"acme": 130, "globex-eu": 45}  # source records per tenant
PAGE_SIZE = 20


@pytest.fixture
def sent(monkeypatch):
    """Every message body the Storage queue adapter sends, by queue name."""
    log: list[tuple[str, str]] = []
    original = StorageMessageQueue.send

    def spy(self, text, **kwargs):
        log.append((self.name, text))
        return original(self, text, **kwargs)

    monkeypatch.setattr(StorageMessageQueue, "send", spy)
    return log


@pytest.fixture
def azure_services(emulators, keyvault_server, tmp_path, unique_name, monkeypatch):
    """An app on the emulators; the vault client pointed at the test server."""
    from keyvault_server import FakeCredential

    from datasync.adapters import azure
    from datasync.adapters.azure.keyvault import KeyVaultSecretStore

    monkeypatch.setattr(
        azure,
        "keyvault_secret_store",
        lambda s: KeyVaultSecretStore(
            s.keyvault_url,
            credential=FakeCredential(),
            verify_challenge_resource=False,
            connection_verify=False,
        ),
    )
    monkeypatch.setenv("DATASYNC_HTTP_BACKOFF_BASE", "0.01")
    home = tmp_path / "home"
    settings = Settings.from_env(
        {
            **emulators,
            "DATASYNC_HOME": str(home),
            "COSMOS_DATABASE": unique_name("flowsync"),
            "KEYVAULT_URL": keyvault_server.url,
            "DATASYNC_PAGES_PER_GENERATION": "3",
            # Storage queues cannot list hidden messages, so a drain waits for every job the
            # look-ahead hid for later: this one-shot run schedules what is due now only.
            "DATASYNC_LOOKAHEAD_SECONDS": "0",
        }
    )
    svc = App.from_settings(settings)
    for name in (FLOW_JOBS, FLOW_JOBS_POISON):  # one Azurite per session: start clean
        queue = svc.queues.queue(name)
        queue.count()  # creates it when missing
        queue.client.clear_messages()
    yield svc
    svc.close()


def tenant_docs(apis: DemoApis) -> list[dict]:
    return [
        {
            "id": tid,
            "tenantId": tid,
            "name": tid.title(),
            "timezone": "Europe/Amsterdam",
            "flows": [
                {
                    "name": FLOW,
                    "cron": "0 0 2 * * *",
                    "nextRunUtc": "2026-01-01T00:00:00Z",
                    "config": {
                        "source_url": apis.source_url(tid),
                        "target_url": apis.target_url(tid),
                        "page_size": PAGE_SIZE,
                    },
                }
            ],
        }
        for tid in TENANTS
    ]


def test_full_then_incremental_sync_on_the_emulators(azure_services, keyvault_server, sent):
    svc = azure_services
    home = svc.settings.home
    assert isinstance(svc.tenants, CosmosTenantStore) and isinstance(svc.runs, CosmosRunStore)
    assert isinstance(svc.queues, StorageQueueBackend) and isinstance(svc.pages, BlobPageStore)

    with DemoApis(throttle_every=7) as apis:
        for tid, records in TENANTS.items():
            apis.add_tenant(
                tid, source_token=f"src-{tid}", target_token=f"erp-{tid}", records=records
            )
        started = utcnow()
        operations.apply_tenants(svc, tenant_docs(apis), started)
        for tid in TENANTS:
            operations.set_secret(svc, tid, "crm", "token", f"src-{tid}")
            operations.set_secret(svc, tid, "erp", "token", f"erp-{tid}")
        assert "tenants--globex-eu--erp--token" in keyvault_server.secrets

        # -- run 1: everything --------------------------------------------------------
        assert LocalHost(app=svc).run(once=True) == 0

        for tid, records in TENANTS.items():
            stats = apis.stats(tid)
            assert (stats["count"], stats["maxReceives"]) == (records, 1), (tid, stats)
            [r] = svc.runs.recent(tenant=tid)
            assert r.instance_id == f"Workflow-{tid}--{FLOW}-20260101T000000Z"
            assert (r.status, r.error, r.records_in, r.records_out) == (
                "Completed",
                None,
                records,
                records,
            )
            assert r.pages == math.ceil(records / PAGE_SIZE)
            assert r.started_at >= r.scheduled_for and r.finished_at >= r.started_at
            item = svc.runs.runs.read_item(r.instance_id, partition_key=tid)  # in Cosmos
            assert item["status"] == "Completed" and item["recordsOut"] == records
            assert svc.runs.load_checkpoint(tid, FLOW).cursor == f"{records:06d}"
            assert svc.runs.load_checkpoint(tid, FLOW).state["pushed_pages"] == r.pages
            assert svc.tenants.get(tid).flows[0].next_run_utc > started  # moved on, in Cosmos

        jobs = [json.loads(body) for name, body in sent if name == FLOW_JOBS]
        assert all(len(job.pop("revision")) == 12 for job in jobs)  # the schedule's revision
        assert sorted(jobs, key=lambda j: j["tenantId"]) == [
            {"tenantId": tid, "flowName": FLOW, "scheduledFor": "2026-01-01T00:00:00Z"}
            for tid in sorted(TENANTS)
        ]  # the scheduler enqueued on Azurite ...
        assert svc.queues.queue(FLOW_JOBS).count() == 0  # ... the starter took them
        assert svc.queues.queue(FLOW_JOBS_POISON).peek_all() == []
        assert list(svc.pages.container.list_blobs()) == []  # staged pages cleaned up
        assert any(
            path.startswith("/secrets/tenants--acme--crm--token")
            for _, path in keyvault_server.requests
        )
        assert (
            sorted(p.name for p in home.iterdir() if not p.name.startswith("durable.db")) == []
        )  # nothing embedded

        # -- run 2: only what is new -------------------------------------------------
        apis.add_records("acme", 25)
        for tid in TENANTS:
            operations.trigger(svc, tid, FLOW, utcnow())
        assert LocalHost(app=svc).run(once=True) == 0

        acme = apis.stats("acme")
        assert (acme["count"], acme["maxReceives"]) == (155, 1)
        assert apis.stats("globex-eu")["count"] == 45
        latest, first = svc.runs.recent(tenant="acme")
        assert first.instance_id.endswith("20260101T000000Z")
        assert (latest.status, latest.records_in, latest.pages) == ("Completed", 25, 2)
        quiet = svc.runs.recent(tenant="globex-eu")[0]
        assert (quiet.status, quiet.records_in) == ("Completed", 0)
        assert svc.runs.load_checkpoint("acme", FLOW).cursor == "000155"
        assert svc.queues.queue(FLOW_JOBS_POISON).peek_all() == []
        assert len([1 for name, _ in sent if name == FLOW_JOBS]) == 4
