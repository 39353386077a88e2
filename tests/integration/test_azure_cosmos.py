"""The Cosmos tenant store against the Cosmos emulator server, through the real SDK."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from datasync.adapters.azure.cosmos import CosmosTenantStore
from datasync.config import Settings
from datasync.exceptions import ConfigError, InvalidDocument, NotFound
from datasync.models import parse_tenant

pytestmark = pytest.mark.emulator

NOW = datetime(2026, 11, 23, 14, 0, 0, tzinfo=timezone.utc)
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


def test_container_is_created_and_crud_round_trips(cosmos_store):
    acme = tenant("acme", flow("contacts", config={"source_url": "http://x"}),
                  timezone="Europe/Amsterdam", customField={"kept": True})
    cosmos_store.upsert_many([acme, tenant("beta")])

    got, etag = cosmos_store.get_with_etag("acme")
    assert got == acme
    assert got.model_extra == {"customField": {"kept": True}}   # no Cosmos system keys
    doc = raw(cosmos_store, "acme")
    assert doc["tenantId"] == "acme" and doc["type"] == "Tenant" and doc["_etag"] == etag
    assert [t.tenant_id for t in cosmos_store.list()] == ["acme", "beta"]

    changed = got.model_copy(update={"paused": True})
    assert cosmos_store.replace_if_match(changed, etag) is True
    assert cosmos_store.get("acme").paused is True
    assert cosmos_store.replace_if_match(got, etag) is False      # stale etag: 412
    assert cosmos_store.get("acme").paused is True


def test_missing_tenant_is_not_found(cosmos_store):
    cosmos_store.upsert_many([tenant("acme")])
    with pytest.raises(NotFound, match="ghost"):
        cosmos_store.get("ghost")
    with pytest.raises(NotFound, match="ghost"):
        cosmos_store.replace_if_match(tenant("ghost"), '"whatever"')


def test_invalid_document_is_reported_by_get_and_skipped_by_list(cosmos_store, caplog):
    cosmos_store.upsert_many([tenant("good")])
    cosmos_store.container.upsert_item({"id": "bad", "tenantId": "bad", "type": "Tenant",
                                        "flows": [{"name": "x", "cron": "nope"}]})
    with pytest.raises(InvalidDocument, match=r"tenant bad: flows\[0\]\.cron"):
        cosmos_store.get("bad")
    with caplog.at_level(logging.WARNING, logger="datasync.cosmos"):
        assert [t.tenant_id for t in cosmos_store.list()] == ["good"]
    assert "tenant bad" in caplog.text


def test_unreachable_endpoint_is_a_config_error():
    settings = Settings(cosmos_endpoint="https://127.0.0.1:1", cosmos_key="a2V5",
                        cosmos_verify_tls=False)
    store = CosmosTenantStore(settings, connection_timeout=1, retry_total=0)
    with pytest.raises(ConfigError, match=r"cannot open Cosmos container flowsync/tenants") as err:
        store.get("acme")
    assert "a2V5" not in str(err.value)


def test_due_query_pages_over_50_tenants(cosmos_store):
    tenants = []
    expected = set()
    for i in range(50):
        tid = f"t{i:02d}"
        flows = [flow("later", FUTURE), flow("due", PAST), flow("off", PAST, enabled=False),
                 flow("fresh", None)]
        tenants.append(tenant(tid, *flows, paused=(i % 10 == 9)))
        if i % 10 != 9:
            expected |= {(tid, 1, "due", PAST), (tid, 3, "fresh", None)}
    cosmos_store.upsert_many(tenants)

    pages = list(cosmos_store.due_flows(NOW, page_size=7))
    rows = [row for page in pages for row in page]
    assert len(pages) > 1 and all(0 < len(page) <= 7 for page in pages)
    assert {(r.tenant_id, r.flow_index, r.flow_name, r.next_run_utc) for r in rows} == expected
    assert len(rows) == len(expected)                       # no row twice across pages
    etags = {tid: raw(cosmos_store, tid)["_etag"] for tid in ("t00", "t01")}
    assert {r.etag for r in rows if r.tenant_id == "t00"} == {etags["t00"]}
    assert all(r.cron == "0 0 * * * *" and r.timezone == "UTC" for r in rows)


def test_duplicate_flow_names_get_their_own_index(cosmos_store):
    cosmos_store.container.upsert_item({
        "id": "dup", "tenantId": "dup", "type": "Tenant", "timezone": "UTC",
        "flows": [flow("x", FUTURE), flow("x", PAST), flow("x", enabled=False), flow("x")]})
    rows = [r for page in cosmos_store.due_flows(NOW) for r in page]
    assert [(r.flow_index, r.next_run_utc) for r in rows] == [(1, PAST), (3, PAST)]


def test_invalid_documents_still_come_back_as_rows(cosmos_store):
    cosmos_store.container.upsert_item({
        "id": "odd", "tenantId": "odd", "type": "Tenant", "timezone": "Mars/Olympus",
        "flows": [{"name": 42, "cron": "bad cron"}, {"name": "n", "cron": 5, "nextRunUtc": 17},
                  {"name": "ok", "cron": "0 0 * * * *", "nextRunUtc": "yesterday"}]})
    cosmos_store.container.upsert_item({"id": "notz", "tenantId": "notz", "type": "Tenant",
                                        "flows": [{"name": "a", "cron": "0 0 * * * *"}]})
    cosmos_store.container.upsert_item({"id": "other", "tenantId": "other", "type": "Billing",
                                        "flows": [{"name": "a", "cron": "0 0 * * * *"}]})
    rows = sorted(((r.tenant_id, r.flow_index, r.flow_name, r.cron, r.timezone, r.next_run_utc)
                   for page in cosmos_store.due_flows(NOW) for r in page), key=str)
    # "17" <= "2026-..." is not a string comparison in Cosmos (number vs string): not due.
    # "yesterday" > "2026-..." as strings: not due either; the scheduler never sees them.
    assert rows == [("notz", 0, "a", "0 0 * * * *", "UTC", None),
                    ("odd", 0, 42, "bad cron", "Mars/Olympus", None)]


def test_advance_moves_next_runs_and_reports_lost_races(cosmos_store):
    cosmos_store.upsert_many([tenant("acme", flow("a"), flow("b"), flow("c")),
                              tenant("beta", flow("a"))])
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
    assert acme["flows"][2]["config"] == {"edited": True}          # the edit survived
    assert raw(cosmos_store, "beta")["flows"][0]["nextRunUtc"] == nxt


def test_two_schedulers_racing_move_each_flow_once(cosmos_store):
    cosmos_store.upsert_many([tenant("acme", flow("a"), flow("b"))])
    first = [r for page in cosmos_store.due_flows(NOW) for r in page]
    second = [r for page in cosmos_store.due_flows(NOW) for r in page]
    assert cosmos_store.advance([(r, "2026-11-23T15:00:00Z") for r in first]) == []
    lost = cosmos_store.advance([(r, "2026-11-23T16:00:00Z") for r in second])
    assert sorted(r.flow_name for r in lost) == ["a", "b"]
    assert [f.next_run_utc.hour for f in cosmos_store.get("acme").flows] == [15, 15]


def test_advance_loses_when_flows_are_reordered_or_tenant_deleted(cosmos_store):
    cosmos_store.upsert_many([tenant("acme", flow("a"), flow("b", "2026-11-23T12:00:00Z")),
                              tenant("gone", flow("a"))])
    rows = [r for page in cosmos_store.due_flows(NOW) for r in page]
    doc = raw(cosmos_store, "acme")
    doc["flows"].reverse()
    cosmos_store.container.replace_item("acme", doc)
    cosmos_store.container.delete_item("gone", partition_key="gone")
    lost = cosmos_store.advance([(r, "2026-11-23T15:00:00Z") for r in rows])
    assert sorted((r.tenant_id, r.flow_name) for r in lost) == [("acme", "a"), ("acme", "b"),
                                                                ("gone", "a")]
    assert [f.get("nextRunUtc") for f in raw(cosmos_store, "acme")["flows"]] == [
        "2026-11-23T12:00:00Z", PAST]


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

    def edit(container):   # trigger "a" again and change b's config
        doc = container.read_item("acme", partition_key="acme")
        doc["flows"][0]["nextRunUtc"] = "2026-11-23T13:59:00Z"
        doc["flows"][1]["config"] = {"v": 2}
        container.replace_item("acme", doc)

    proxy = EditAfterRead(cosmos_store.container, edit)
    racing = CosmosTenantStore(cosmos_settings, container=proxy)
    lost = racing.advance([(r, "2026-11-23T15:00:00Z") for r in rows])
    assert proxy.reads == 2                                   # 412, re-read, re-applied
    assert [r.flow_name for r in lost] == ["a"]
    doc = raw(cosmos_store, "acme")
    assert [f["nextRunUtc"] for f in doc["flows"]] == ["2026-11-23T13:59:00Z",
                                                       "2026-11-23T15:00:00Z"]
    assert doc["flows"][1]["config"] == {"v": 2}
