"""The scheduler's tick on the Azure adapters: due flows from Cosmos, jobs on an Azurite
queue (base64, as the Functions host reads them), next runs written back."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from datasync.adapters.azure.cosmos import CosmosTenantStore
from datasync.adapters.azure.storage_queue import StorageQueueBackend
from datasync.app import App
from datasync.config import Settings
from datasync.models import Job, parse_tenant
from datasync.scanner import scan_and_enqueue

pytestmark = pytest.mark.emulator

NOW = datetime(2026, 11, 23, 14, 0, 5, tzinfo=UTC)


def test_scan_enqueues_due_jobs_and_moves_next_runs_on(unique_name, cosmos_store, queues):
    cosmos_store.upsert_many(
        [
            parse_tenant(
                {
                    "id": "acme",
                    "timezone": "Europe/Amsterdam",
                    "flows": [
                        {
                            "name": "contacts",
                            "cron": "0 0 * * * *",
                            "nextRunUtc": "2026-11-23T14:00:00Z",
                        },
                        {
                            "name": "orders",
                            "cron": "0 30 * * * *",
                            "nextRunUtc": "2026-11-23T14:30:00Z",
                        },
                        {"name": "invoices", "cron": "0 0 6 * * *"},
                    ],
                }
            ),  # missing: compute only
            parse_tenant(
                {
                    "id": "beta",
                    "flows": [
                        {
                            "name": "contacts",
                            "cron": "0 */15 * * * *",
                            "nextRunUtc": "2026-11-20T09:15:00Z",
                        }
                    ],
                }
            ),
            parse_tenant(
                {
                    "id": "idle",
                    "paused": True,
                    "flows": [
                        {
                            "name": "contacts",
                            "cron": "0 0 * * * *",
                            "nextRunUtc": "2026-11-23T13:00:00Z",
                        }
                    ],
                }
            ),
        ]
    )
    cosmos_store.container.upsert_item(
        {
            "id": "broken",
            "tenantId": "broken",
            "type": "Tenant",
            "flows": [{"name": "contacts", "cron": "every hour"}],
        }
    )
    queue = queues.queue(unique_name("flow-jobs"))

    result = scan_and_enqueue(
        cosmos_store, queue, NOW, page_size=2, known_flows={"contacts", "orders", "invoices"}
    )

    jobs = sorted((json.loads(i.body) for i in queue.peek_all()), key=lambda j: j["tenantId"])
    assert all(re.fullmatch(r"[0-9a-f]{12}", job.pop("revision")) for job in jobs)
    assert jobs == [
        {"tenantId": "acme", "flowName": "contacts", "scheduledFor": "2026-11-23T14:00:00Z"},
        {"tenantId": "beta", "flowName": "contacts", "scheduledFor": "2026-11-20T09:15:00Z"},
    ]
    assert [Job.from_message(i.body).instance_id for i in queue.peek_all() if "acme" in i.body] == [
        "Workflow-acme--contacts-20261123T140000Z"
    ]
    assert (result.due, result.conflicts) == (2, 0)
    assert len(result.invalid) == 1
    assert result.invalid[0].startswith("tenant broken: flows[0].cron: ")

    acme = {f.name: f.next_run_utc for f in cosmos_store.get("acme").flows}
    assert acme == {
        "contacts": datetime(2026, 11, 23, 15, 0, tzinfo=UTC),
        "orders": datetime(2026, 11, 23, 14, 30, tzinfo=UTC),
        "invoices": datetime(2026, 11, 24, 5, 0, tzinfo=UTC),
    }  # 06:00 CET
    assert cosmos_store.get("beta").flows[0].next_run_utc == datetime(
        2026, 11, 23, 14, 15, tzinfo=UTC
    )  # missed runs coalesced

    again = scan_and_enqueue(
        cosmos_store, queue, NOW, known_flows={"contacts", "orders", "invoices"}
    )
    assert again.due == 0 and queue.count() == 2


def test_the_app_picks_the_azure_adapters(emulators, tmp_path):
    env = {**emulators, "DATASYNC_HOME": str(tmp_path), "KEYVAULT_URL": "https://kv.example"}
    services = App.from_settings(Settings.from_env(env))
    try:
        assert isinstance(services.tenants, CosmosTenantStore)
        assert isinstance(services.queues, StorageQueueBackend)
        assert type(services.secrets).__name__ == "KeyVaultSecretStore"
        assert "COSMOS_KEY" not in repr(services.settings) and emulators["COSMOS_KEY"] not in repr(
            services.tenants
        )
    finally:
        services.close()
