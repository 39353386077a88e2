"""TenantStore contract: etags, not-found, invalid documents, due paging, advance races."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from datasync.exceptions import InvalidDocument, NotFound
from datasync.models import parse_tenant

NOW = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)
PAST = "2026-11-23T13:00:00Z"
FUTURE = "2026-11-23T15:00:00Z"
NEXT = "2026-11-23T15:00:00Z"


def tenant(tid: str, *flows: dict, **extra):
    return parse_tenant({"id": tid, "name": f"Tenant {tid}", **extra, "flows": list(flows)})


def flow(name: str, next_run: str | None = PAST, **extra) -> dict:
    entry = {"name": name, "cron": "0 0 * * * *", **extra}
    if next_run is not None:
        entry["nextRunUtc"] = next_run
    return entry


def due(store, now=NOW, **kw):
    return [row for page in store.due_flows(now, **kw) for row in page]


def test_round_trip_etag_conflict_and_tenants_by_id(backend):
    store = backend.tenants
    acme = tenant(
        "acme",
        flow("contacts", config={"source_url": "http://x"}),
        timezone="Europe/Amsterdam",
    )
    store.upsert_many([tenant("beta"), acme])
    got, etag = store.get_with_etag("acme")
    assert got == acme  # as stored: no backend key (Cosmos _etag, _ts, ...) leaks in
    assert store.get("acme") == acme
    assert [t.tenant_id for t in store.iter_tenants()] == ["acme", "beta"]

    paused = got.model_copy(update={"paused": True})
    assert store.replace_if_match(paused, etag) is True
    assert store.get("acme").paused is True
    assert store.replace_if_match(got, etag) is False  # stale etag: conflict
    assert store.get("acme").paused is True

    _, etag = store.get_with_etag("acme")
    store.upsert_many([acme])  # an upsert is a new version
    assert store.replace_if_match(paused, etag) is False


def test_unknown_tenant_is_not_found(backend):
    backend.tenants.upsert_many([tenant("acme")])
    with pytest.raises(NotFound, match="ghost"):
        backend.tenants.get("ghost")
    with pytest.raises(NotFound, match="ghost"):
        backend.tenants.get_with_etag("ghost")
    with pytest.raises(NotFound, match="ghost"):
        backend.tenants.replace_if_match(tenant("ghost"), "whatever")


def test_a_document_broken_in_the_store_is_reported_and_skipped(backend, caplog):
    backend.tenants.upsert_many([tenant("a"), tenant("c")])
    backend.put_document({"id": "b", "timezone": "Mars/Base", "flows": []})
    with pytest.raises(InvalidDocument, match="tenant b: timezone"):
        backend.tenants.get("b")
    with caplog.at_level(logging.WARNING):
        assert [t.tenant_id for t in backend.tenants.iter_tenants()] == ["a", "c"]
    assert "tenant b" in caplog.text


def test_due_flows_pages_every_due_flow_exactly_once(backend):
    tenants, expected = [], set()
    for i in range(30):
        tid = f"t{i:02d}"
        tenants.append(
            tenant(
                tid,
                flow("later", FUTURE),
                flow("due", PAST),
                flow("off", PAST, enabled=False),
                flow("fresh", None),
                paused=(i % 10 == 9),
            )
        )
        if i % 10 != 9:
            expected |= {(tid, 1, "due", PAST), (tid, 3, "fresh", None)}
    backend.tenants.upsert_many(tenants)

    pages = list(backend.tenants.due_flows(NOW, page_size=7))
    rows = [row for page in pages for row in page]
    assert len(pages) > 1 and all(0 < len(page) <= 7 for page in pages)
    assert {(r.tenant_id, r.flow_index, r.flow_name, r.next_run_utc) for r in rows} == expected
    assert len(rows) == len(expected)
    assert all(r.cron == "0 0 * * * *" and r.timezone == "UTC" for r in rows)
    earlier = due(backend.tenants, datetime(2026, 11, 23, 12, tzinfo=UTC))
    assert {r.flow_name for r in earlier} == {"fresh"}  # missing nextRunUtc: always due


def test_nothing_due_yields_no_pages(backend):
    backend.tenants.upsert_many([tenant("acme", flow("a", FUTURE))])
    assert list(backend.tenants.due_flows(NOW)) == []


def test_advance_moves_next_runs_and_reports_a_flow_edited_meanwhile(backend):
    store = backend.tenants
    store.upsert_many([tenant("acme", flow("a"), flow("b"), flow("c")), tenant("beta", flow("a"))])
    rows = due(store)
    assert len(rows) == 4
    edited, etag = store.get_with_etag("acme")  # a user triggers "b" meanwhile
    edited.flows[1].next_run_utc = datetime(2026, 11, 23, 13, 30, tzinfo=UTC)
    assert store.replace_if_match(edited, etag)

    lost = store.advance([(row, NEXT) for row in rows])
    assert [(r.tenant_id, r.flow_name) for r in lost] == [("acme", "b")]
    assert [f.next_run_utc.isoformat() for f in store.get("acme").flows] == [
        "2026-11-23T15:00:00+00:00",
        "2026-11-23T13:30:00+00:00",
        "2026-11-23T15:00:00+00:00",
    ]
    assert store.get("beta").flows[0].next_run_utc.hour == 15
    assert store.advance([]) == []


def test_two_schedulers_racing_move_each_flow_once(backend):
    store = backend.tenants
    store.upsert_many([tenant("acme", flow("a"), flow("b"))])
    first, second = due(store), due(store)
    assert store.advance([(r, NEXT) for r in first]) == []
    lost = store.advance([(r, "2026-11-23T16:00:00Z") for r in second])
    assert sorted(r.flow_name for r in lost) == ["a", "b"]
    assert [f.next_run_utc.hour for f in store.get("acme").flows] == [15, 15]
    assert due(store) == []


def test_an_edit_read_before_a_tick_loses_to_the_tick(backend):
    store = backend.tenants
    store.upsert_many([tenant("acme", flow("a"))])
    before, etag = store.get_with_etag("acme")
    assert store.advance([(r, NEXT) for r in due(store)]) == []
    assert store.replace_if_match(before.model_copy(update={"paused": True}), etag) is False
    assert store.get("acme").flows[0].next_run_utc.hour == 15
