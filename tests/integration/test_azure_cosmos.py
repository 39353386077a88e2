"""What only the Cosmos tenant store does, against the Cosmos emulator server through the
real SDK: the stored item, raw rows of invalid documents, flows found by position, and
advance re-reading after a real 412. The TenantStore behaviour every backend shares is in
tests/contract."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from datasync.adapters.azure.cosmos import CosmosTenantStore
from datasync.config import Settings
from datasync.exceptions import ConfigError
from datasync.models import parse_tenant

pytestmark = pytest.mark.emulator

NOW = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)
PAST = "2026-11-23T13:00:00Z"
FUTURE = "2026-11-23T15:00:00Z"


def tenant(tid: str, *flows: dict, **extra):
    return parse_tenant({"id": tid, "name": f"Tenant {tid}", **extra, "flows": list(flows)})


def flow(name: str, next_run: str | None = PAST, **extra) -> dict:
    entry = {"name": name, "cron": "0 0 * * * *", **extra}
    if next_run is not None:
        entry["nextRunUtc"] = next_run
    return entry


def raw(store: CosmosTenantStore, tid: str) -> dict:
    return store.container.read_item(tid, partition_key=tid)


def test_documents_are_stored_as_given_with_cosmos_keys_kept_out_of_the_model(cosmos_store):
    acme = tenant("acme", flow("contacts"))
    cosmos_store.upsert_many([acme])
    got, etag = cosmos_store.get_with_etag("acme")
    assert got == acme  # no Cosmos system keys (they would be unknown-key errors)
    doc = raw(cosmos_store, "acme")
    assert doc["tenantId"] == "acme" and doc["type"] == "Tenant" and doc["_etag"] == etag
    assert doc["flows"][0]["nextRunUtc"] == PAST


def test_unreachable_endpoint_is_a_config_error():
    settings = Settings(
        cosmos_endpoint="https://127.0.0.1:1", cosmos_key="a2V5", cosmos_verify_tls=False
    )
    store = CosmosTenantStore(settings, connection_timeout=1, retry_total=0)
    with pytest.raises(ConfigError, match=r"cannot open Cosmos container flowsync/tenants") as err:
        store.get("acme")
    assert "a2V5" not in str(err.value)


def test_due_rows_carry_the_document_etag(cosmos_store):
    cosmos_store.upsert_many([tenant("t00", flow("a"), flow("b")), tenant("t01", flow("a"))])
    rows = [r for page in cosmos_store.due_flows(NOW, page_size=2) for r in page]
    for tid in ("t00", "t01"):
        assert {r.etag for r in rows if r.tenant_id == tid} == {raw(cosmos_store, tid)["_etag"]}


def test_duplicate_flow_names_get_their_own_index(cosmos_store):
    cosmos_store.container.upsert_item(
        {
            "id": "dup",
            "tenantId": "dup",
            "type": "Tenant",
            "timezone": "UTC",
            "flows": [flow("x", FUTURE), flow("x", PAST), flow("x", enabled=False), flow("x")],
        }
    )
    rows = [r for page in cosmos_store.due_flows(NOW) for r in page]
    assert [(r.flow_index, r.next_run_utc) for r in rows] == [(1, PAST), (3, PAST)]


def test_invalid_documents_still_come_back_as_rows(cosmos_store):
    cosmos_store.container.upsert_item(
        {
            "id": "odd",
            "tenantId": "odd",
            "type": "Tenant",
            "timezone": "Mars/Olympus",
            "flows": [
                {"name": 42, "cron": "bad cron"},
                {"name": "n", "cron": 5, "nextRunUtc": 17},
                {"name": "ok", "cron": "0 0 * * * *", "nextRunUtc": "yesterday"},
            ],
        }
    )
    cosmos_store.container.upsert_item(
        {
            "id": "notz",
            "tenantId": "notz",
            "type": "Tenant",
            "flows": [{"name": "a", "cron": "0 0 * * * *"}],
        }
    )
    cosmos_store.container.upsert_item(
        {
            "id": "other",
            "tenantId": "other",
            "type": "Billing",
            "flows": [{"name": "a", "cron": "0 0 * * * *"}],
        }
    )
    rows = sorted(
        (
            (r.tenant_id, r.flow_index, r.flow_name, r.cron, r.timezone, r.next_run_utc)
            for page in cosmos_store.due_flows(NOW)
            for r in page
        ),
        key=str,
    )
    # "17" <= "2026-..." is not a string comparison in Cosmos (number vs string): not due.
    # "yesterday" > "2026-..." as strings: not due either; the scheduler never sees them.
    assert rows == [
        ("notz", 0, "a", "0 0 * * * *", "UTC", None),
        ("odd", 0, 42, "bad cron", "Mars/Olympus", None),
    ]


def test_advance_moves_next_runs_and_reports_lost_races(cosmos_store):
    cosmos_store.upsert_many(
        [tenant("acme", flow("a"), flow("b"), flow("c")), tenant("beta", flow("a"))]
    )
    rows = {(r.tenant_id, r.flow_name): r for page in cosmos_store.due_flows(NOW) for r in page}
    assert len(rows) == 4

    # A user edits acme meanwhile: triggers "b", reorders nothing, adds a config key.
    doc = raw(cosmos_store, "acme")
    doc["flows"][1]["nextRunUtc"] = "2026-11-23T13:30:00Z"
    doc["flows"][2]["config"] = {"edited": True}
    cosmos_store.container.replace_item("acme", doc)

    nxt = "2026-11-23T15:00:00Z"
    lost = cosmos_store.advance([(row, nxt) for row in rows.values()])
    assert [(r.tenant_id, r.flow_name) for r in lost] == [("acme", "b")]
    acme = raw(cosmos_store, "acme")
    assert [f.get("nextRunUtc") for f in acme["flows"]] == [nxt, "2026-11-23T13:30:00Z", nxt]
    assert acme["flows"][2]["config"] == {"edited": True}  # the edit survived
    assert raw(cosmos_store, "beta")["flows"][0]["nextRunUtc"] == nxt


def test_advance_loses_when_flows_are_reordered_or_tenant_deleted(cosmos_store):
    cosmos_store.upsert_many(
        [tenant("acme", flow("a"), flow("b", "2026-11-23T12:00:00Z")), tenant("gone", flow("a"))]
    )
    rows = [r for page in cosmos_store.due_flows(NOW) for r in page]
    doc = raw(cosmos_store, "acme")
    doc["flows"].reverse()
    cosmos_store.container.replace_item("acme", doc)
    cosmos_store.container.delete_item("gone", partition_key="gone")
    lost = cosmos_store.advance([(r, "2026-11-23T15:00:00Z") for r in rows])
    assert sorted((r.tenant_id, r.flow_name) for r in lost) == [
        ("acme", "a"),
        ("acme", "b"),
        ("gone", "a"),
    ]
    assert [f.get("nextRunUtc") for f in raw(cosmos_store, "acme")["flows"]] == [
        "2026-11-23T12:00:00Z",
        PAST,
    ]


class EditAfterRead:
    """The real container, with a user's edit slipped in right after advance's first read
    of a tenant: the replace that follows gets a real 412 from the server."""

    def __init__(self, container, edit) -> None:
        self._container, self._edit, self.reads = container, edit, 0

    def __getattr__(self, name):
        return getattr(self._container, name)

    def read_item(self, item, partition_key):
        doc = self._container.read_item(item, partition_key=partition_key)
        self.reads += 1
        if self.reads == 1:
            self._edit(self._container)
        return doc


def test_advance_retries_after_a_412_and_keeps_the_concurrent_edit(cosmos_store, cosmos_settings):
    cosmos_store.upsert_many([tenant("acme", flow("a"), flow("b"))])
    rows = [r for page in cosmos_store.due_flows(NOW) for r in page]

    def edit(container):  # trigger "a" again and change b's config
        doc = container.read_item("acme", partition_key="acme")
        doc["flows"][0]["nextRunUtc"] = "2026-11-23T13:59:00Z"
        doc["flows"][1]["config"] = {"v": 2}
        container.replace_item("acme", doc)

    proxy = EditAfterRead(cosmos_store.container, edit)
    racing = CosmosTenantStore(cosmos_settings, container=proxy)
    lost = racing.advance([(r, "2026-11-23T15:00:00Z") for r in rows])
    assert proxy.reads == 2  # 412, re-read, re-applied
    assert [r.flow_name for r in lost] == ["a"]
    doc = raw(cosmos_store, "acme")
    assert [f["nextRunUtc"] for f in doc["flows"]] == [
        "2026-11-23T13:59:00Z",
        "2026-11-23T15:00:00Z",
    ]
    assert doc["flows"][1]["config"] == {"v": 2}
