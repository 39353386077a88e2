"""End to end on the embedded runtime, through the CLI a user types.

A new flow file is dropped into a temporary copy of ``flows/``; tenants are applied,
secrets set from stdin, and ``run --once`` drives scheduler → queue → starter →
``sync_flow`` (real Durable replay) → activities → the flow against loopback APIs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasync.demo_apis import DemoApis

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

NEW_FLOW = '''
from datasync import Page, flow


@flow("orders-sync")
class OrdersSync:
    """Async pull, sync push: both kinds of step in one flow."""

    async def pull(self, ctx, cursor):
        r = await ctx.ahttp.get(ctx.config["source_url"] + "/contacts",
                                params={"after": cursor or "", "limit": ctx.config["page_size"]},
                                headers={"Authorization": "Bearer " + ctx.secret("shop", "token")})
        r.raise_for_status()
        body = r.json()
        ctx.state["pulls"] = ctx.state.get("pulls", 0) + 1
        return Page(records=body["items"], cursor=body["next"], has_more=body["more"])

    def transform(self, ctx, records):
        return [{"id": r["id"], "name": r["name"].strip().upper()} for r in records]

    def push(self, ctx, records):
        ctx.http.post(ctx.config["target_url"] + "/batch", json={"records": records},
                      headers={"Idempotency-Key": ctx.page_key,
                               "Authorization": "Bearer " + ctx.secret("erp", "token")}
                      ).raise_for_status()
'''


@pytest.fixture
def project(tmp_path):
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows, ignore=shutil.ignore_patterns("__pycache__"))
    (flows / "orders_sync.py").write_text(NEW_FLOW)
    env = {
        **os.environ,
        "DATASYNC_HOME": str(tmp_path / "home"),
        "DATASYNC_FLOWS_DIR": str(flows),
        "DATASYNC_HTTP_BACKOFF_BASE": "0.01",
        "DATASYNC_LOG_LEVEL": "INFO",
        "DATASYNC_PAGES_PER_GENERATION": "4",
    }
    return tmp_path, env


def cli(env, *args, stdin: str | None = None, check: int | None = 0):
    proc = subprocess.run(
        [sys.executable, "-m", "datasync", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def tenant_doc(tid, tz, apis, flow="orders-sync"):
    return {
        "id": tid,
        "tenantId": tid,
        "name": tid.title(),
        "timezone": tz,
        "flows": [
            {
                "name": flow,
                "cron": "0 30 1 * * *",
                "nextRunUtc": "2026-01-01T00:00:00+01:00",
                "config": {
                    "source_url": apis.source_url(tid),
                    "target_url": apis.target_url(tid),
                    "page_size": 25,
                },
            }
        ],
    }


def test_new_flow_file_syncs_every_record_once_then_incrementally(project):
    tmp, env = project
    with DemoApis(throttle_every=7) as apis:
        apis.add_tenant(
            "acme", source_token="acme-shop-TOKEN-1", target_token="acme-erp-TOKEN-2", records=230
        )
        apis.add_tenant(
            "umbrella", source_token="umb-shop-TOKEN-3", target_token="umb-erp-TOKEN-4", records=60
        )
        listed = json.loads(cli(env, "flows", "list", "--json").stdout)
        assert any(
            f["name"] == "orders-sync" and f["file"].endswith("flows/orders_sync.py")
            for f in listed
        )
        docs = tmp / "tenants.json"
        docs.write_text(
            json.dumps(
                [
                    tenant_doc("acme", "Europe/Amsterdam", apis),
                    tenant_doc("umbrella", "Asia/Tokyo", apis),
                ]
            )
        )
        cli(env, "tenants", "apply", str(docs))
        for tid, shop, erp in (
            ("acme", "acme-shop-TOKEN-1", "acme-erp-TOKEN-2"),
            ("umbrella", "umb-shop-TOKEN-3", "umb-erp-TOKEN-4"),
        ):
            cli(env, "secrets", "set", tid, "shop", "token", stdin=shop + "\n")
            cli(env, "secrets", "set", tid, "erp", "token", stdin=erp + "\n")

        first = cli(env, "run", "--once")
        assert apis.stats("acme")["count"] == 230
        assert apis.stats("umbrella")["count"] == 60
        assert apis.stats("acme")["maxReceives"] == 1
        stored = apis.target_records("acme")
        assert {r["name"] for r in stored} == {
            r["name"].strip().upper() for r in stored
        }  # transform ran

        runs = json.loads(cli(env, "runs", "--json").stdout)
        assert sorted(
            (r["tenantId"], r["status"], r["recordsIn"], r["recordsOut"]) for r in runs
        ) == [("acme", "Completed", 230, 230), ("umbrella", "Completed", 60, 60)]
        acme = next(r for r in runs if r["tenantId"] == "acme")
        assert acme["instanceId"] == "Workflow-acme--orders-sync-20251231T230000Z"
        assert acme["pages"] >= 10  # 230 / 25, across continue_as_new generations

        # the tick moved nextRunUtc to the next 01:30 Amsterdam time
        shown = json.loads(cli(env, "tenants", "show", "acme", "--json").stdout)
        assert shown["flows"][0]["nextRunUtc"].endswith(("T00:30:00Z", "T23:30:00Z"))

        # second run is incremental: only the new records move
        apis.add_records("acme", 40)
        time.sleep(1.1)
        cli(env, "trigger", "acme", "orders-sync")
        cli(env, "run", "--once")
        stats = apis.stats("acme")
        assert stats["count"] == 270 and stats["maxReceives"] == 1
        assert apis.stats("umbrella")["count"] == 60
        runs = json.loads(cli(env, "runs", "--tenant", "acme", "--json").stdout)
        latest = [r for r in runs if r["instanceId"] != acme["instanceId"]]
        assert len(latest) == 1 and latest[0]["status"] == "Completed"
        assert latest[0]["recordsIn"] == 40
        for text in (first.stdout, first.stderr):
            for secret in ("acme-shop-TOKEN-1", "acme-erp-TOKEN-2", "umb-shop-TOKEN-3"):
                assert secret not in text


def test_failed_run_exits_1_and_keeps_secrets_out(project):
    tmp, env = project
    with DemoApis() as apis:
        apis.add_tenant(
            "acme", source_token="right-token-value", target_token="t2-value-x", records=30
        )
        docs = tmp / "t.json"
        docs.write_text(json.dumps(tenant_doc("acme", "UTC", apis)))
        cli(env, "tenants", "apply", str(docs))
        cli(env, "secrets", "set", "acme", "shop", "token", stdin="WRONG-secret-9f8e7d\n")
        cli(env, "secrets", "set", "acme", "erp", "token", stdin="t2-value-x\n")
        proc = cli(env, "run", "--once", check=1)
        runs = json.loads(cli(env, "runs", "--status", "Failed", "--json").stdout)
        assert len(runs) == 1 and "401" in runs[0]["error"]
        assert apis.stats("acme")["count"] == 0
        everything = proc.stdout + proc.stderr + json.dumps(runs)
        for path in (tmp / "home").iterdir():
            if path.name != "secrets.json" and path.is_file():
                everything += path.read_bytes().decode("latin-1")
        assert "WRONG-secret-9f8e7d" not in everything
