"""The loopback demo APIs, driven by a real httpx client, and the example flow against them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from datasync.demo_apis import DemoApis
from datasync.exceptions import SecretNotFound

ROOT = Path(__file__).resolve().parents[2]
SRC, ERP = "src-token-1", "erp-token-2"


@pytest.fixture
def apis():
    with DemoApis() as a:
        a.add_tenant("acme", source_token=SRC, target_token=ERP, records=1234)
        a.add_tenant("globex", source_token="g-src", target_token="g-erp", records=3)
        yield a


@pytest.fixture
def client():
    with httpx.Client(timeout=5) as c:
        yield c


def page(client, apis, after="", limit=100, token=SRC, tenant="acme"):
    return client.get(
        apis.source_url(tenant) + "/contacts",
        params={"after": after, "limit": limit},
        headers={"Authorization": f"Bearer {token}"},
    )


def drain(client, apis, cursor="", limit=100):
    ids: list[str] = []
    while True:
        body = page(client, apis, cursor, limit).json()
        ids += [r["id"] for r in body["items"]]
        cursor = body["next"]
        if not body["more"]:
            return ids, cursor


def test_paging_to_exhaustion_returns_every_record_once_in_order(apis, client):
    ids, cursor = drain(client, apis, limit=100)
    assert len(ids) == 1234 and len(set(ids)) == 1234
    assert ids == sorted(ids, key=int) and ids[0] == "000001" and cursor == "001234"
    first = page(client, apis, limit=2).json()["items"][0]
    assert first["name"] != first["name"].strip() and first["email"].isupper()
    assert apis.stats("acme")["sourceRequests"] == 14  # 13 pages + 1


def test_source_checks_the_tenants_bearer_token(apis, client):
    assert page(client, apis, token="wrong").status_code == 401
    assert page(client, apis, token="g-src").status_code == 401  # globex's token
    assert page(client, apis, token="g-src", tenant="globex").status_code == 200
    assert client.get(apis.source_url("acme") + "/contacts").status_code == 401
    assert page(client, apis, tenant="nobody").status_code == 404
    assert page(client, apis, after="not-an-id").status_code == 400


def test_every_kth_source_request_is_throttled_with_retry_after():
    with DemoApis(throttle_every=3) as apis, httpx.Client() as client:
        apis.add_tenant("acme", source_token=SRC, target_token=ERP, records=10)
        codes = [page(client, apis, limit=5) for _ in range(9)]
        assert [r.status_code for r in codes] == [200, 200, 429] * 3
        assert codes[2].headers["Retry-After"] == "0"
        assert apis.stats("acme")["throttled"] == 3


def post(client, apis, records, key, token=ERP, tenant="acme"):
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(
        apis.target_url(tenant) + "/batch", json={"records": records}, headers=headers
    )


def test_target_dedupes_a_repeated_idempotency_key(apis, client):
    batch = [{"id": "000001", "name": "A"}, {"id": "000002", "name": "B"}]
    first = post(client, apis, batch, "run-1/p000001")
    assert first.status_code == 200 and first.json()["duplicate"] is False
    again = post(client, apis, batch, "run-1/p000001")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    post(client, apis, [{"id": "000003"}], "run-1/p000002").raise_for_status()
    stats = apis.stats("acme")
    assert (stats["count"], stats["batches"], stats["duplicateKeys"], stats["maxReceives"]) == (
        3,
        2,
        1,
        1,
    )
    # a new key with an old record is counted: that is how a double push is detected
    post(client, apis, [{"id": "000001", "name": "A2"}], "run-2/p000001").raise_for_status()
    assert apis.stats("acme")["maxReceives"] == 2
    assert [r["id"] for r in apis.target_records("acme")] == ["000001", "000002", "000003"]
    assert apis.target_records("acme")[0]["name"] == "A2"
    remote = client.get(apis.target_url("acme") + "/records").json()
    assert remote["count"] == 3 and remote["batches"] == 3 and remote["duplicateKeys"] == 1
    assert [r["id"] for r in remote["records"]] == ["000001", "000002", "000003"]
    assert apis.stats("globex")["count"] == 0


def test_target_requires_key_token_and_well_formed_records(apis, client):
    assert post(client, apis, [{"id": "1"}], None).status_code == 400
    assert post(client, apis, [{"id": "1"}], "k", token="nope").status_code == 401
    assert post(client, apis, [{"no": "id"}], "k2").status_code == 400
    assert apis.stats("acme")["count"] == 0 and apis.stats("acme")["batches"] == 0


def test_add_records_then_paging_from_the_last_cursor_returns_only_new_ones(apis, client):
    _, cursor = drain(client, apis, limit=500)
    caught_up = page(client, apis, cursor).json()
    assert caught_up == {"items": [], "next": cursor, "more": False}
    assert apis.add_records("acme", 40) == 1274
    new_ids, cursor2 = drain(client, apis, cursor, limit=25)
    assert new_ids == [f"{i:06d}" for i in range(1235, 1275)] and cursor2 == "001274"


def test_process_mode_prints_url_and_takes_admin_requests(client):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datasync.demo_apis",
            "--port",
            "0",
            "--tenant",
            f"acme:{SRC}:{ERP}:5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(proc.stdout.readline())
        url = ready["url"]
        assert ready["tenants"] == ["acme"] and url.startswith("http://127.0.0.1:")
        body = client.get(
            f"{url}/acme/contacts",
            params={"after": "", "limit": 10},
            headers={"Authorization": f"Bearer {SRC}"},
        ).json()
        assert len(body["items"]) == 5
        client.post(
            f"{url}/_admin/tenants",
            json={"tenant": "umbrella", "sourceToken": "u1", "targetToken": "u2", "records": 2},
        ).raise_for_status()
        added = client.post(f"{url}/_admin/acme/add", json={"count": 3}).json()
        assert added["total"] == 8
        body = client.get(
            f"{url}/umbrella/contacts",
            params={"after": "", "limit": 10},
            headers={"Authorization": "Bearer u1"},
        ).json()
        assert [r["id"] for r in body["items"]] == ["000001", "000002"]
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
        proc.stdout.close()


class FakeSecrets:
    def __init__(self, values: dict[tuple[str, str, str], str]) -> None:
        self.values = values

    def get(self, tenant: str, system: str, key: str) -> str:
        try:
            return self.values[(tenant, system, key)]
        except KeyError:
            raise SecretNotFound(tenant, system, key) from None

    def set(self, tenant, system, key, value):
        self.values[(tenant, system, key)] = value


def test_example_flow_moves_every_record_once(apis, monkeypatch):
    from datasync.context import FlowContext, SecretCache
    from datasync.http import HttpClients, RetryPolicy
    from datasync.registry import FlowRegistry, call_step

    http = HttpClients(RetryPolicy(backoff_base=0.01))
    spec = FlowRegistry.discover(ROOT / "flows", ROOT).get("contacts-to-erp")
    secrets = FakeSecrets({("acme", "crm", "token"): SRC, ("acme", "erp", "token"): ERP})
    cache, state, cursor, pages = SecretCache(), {}, None, 0
    config = {
        "source_url": apis.source_url("acme"),
        "target_url": apis.target_url("acme"),
        "page_size": 200,
    }
    try:
        while True:
            pages += 1
            ctx = FlowContext(
                tenant_id="acme",
                flow_name=spec.name,
                run_id="Workflow-acme-x",
                page_key=f"Workflow-acme-x/p{pages:06d}",
                config=config,
                state=state,
                secrets=secrets,
                cache=cache,
                http=http,
            )
            flow_obj = spec.create()
            got = call_step(flow_obj.pull, ctx, cursor)
            records = call_step(flow_obj.transform, ctx, got.records)
            if records:
                call_step(flow_obj.push, ctx, records)
            cursor = got.cursor if got.cursor is not None else cursor
            if not got.has_more:
                break
    finally:
        http.close()
    stats = apis.stats("acme")
    assert stats["count"] == 1234 and stats["maxReceives"] == 1
    assert state["pushed_pages"] == 7 and cursor == "001234"
    stored = apis.target_records("acme")
    assert stored[0] == {"id": "000001", "name": "Name 1", "email": "user1@example.com"}
