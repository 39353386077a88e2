"""``python -m datasync demo``: a real multi-tenant sync, offline, end to end.

Starts loopback source and target APIs (the source pages and now and then answers 429
with ``Retry-After``), applies two tenants in different timezones, stores their secrets,
runs the app's real functions on the local runtime (scheduler → queue → starter →
``sync_flow`` replayed by the Durable SDK → activities → ``flows/contacts_to_erp.py``),
then adds records at the source and runs again: the second run moves only the new ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import operations
from .app import App
from .config import Settings
from .demo_apis import DemoApis
from .logs import configure_logging
from .names import utcnow
from .runtime.host import LocalHost

__all__ = ["run_demo"]

TENANTS = [
    ("acme", "Acme Ltd", "Europe/Amsterdam", 1200, 150),
    ("globex", "Globex Corp", "America/New_York", 750, 40),
]


def _docs(apis: DemoApis, now_text: str) -> list[dict[str, Any]]:
    return [
        {
            "id": tid,
            "type": "Tenant",
            "tenantId": tid,
            "name": name,
            "timezone": tz,
            "paused": False,
            "flows": [
                {
                    "name": "contacts-to-erp",
                    "enabled": True,
                    "cron": "0 0 2 * * *",
                    "nextRunUtc": now_text,
                    "config": {
                        "source_url": apis.source_url(tid),
                        "target_url": apis.target_url(tid),
                        "page_size": 100,
                    },
                }
            ],
        }
        for tid, name, tz, _, _ in TENANTS
    ]


def _run_once(app: App, console: Console, label: str) -> tuple[int, float]:
    console.print(f"[bold]{label}[/bold]: scheduler tick → queue → orchestrations → activities")
    started = time.perf_counter()
    host = LocalHost(app=app)
    code = host.run(once=True)
    return code, time.perf_counter() - started


def _summary(console: Console, app: App, apis: DemoApis, title: str, since: set[str]) -> set[str]:
    runs = [r for r in app.runs.recent(limit=50) if r.instance_id not in since]
    table = Table(title=title, title_justify="left")
    for column in ("run", "status", "pages", "records in", "records out", "error"):
        table.add_column(
            column,
            no_wrap=column == "run",
            justify="right" if column.startswith(("pages", "rec")) else "left",
        )
    for run in sorted(runs, key=lambda r: r.instance_id):
        table.add_row(
            run.instance_id,
            run.status,
            str(run.pages),
            str(run.records_in),
            str(run.records_out),
            (run.error or "")[:60],
        )
    console.print(table)
    targets = Table(title="target API", title_justify="left")
    for column in ("tenant", "records stored", "batches", "duplicate keys", "max receives"):
        targets.add_column(column)
    for tid, *_ in TENANTS:
        stats = apis.stats(tid)
        targets.add_row(
            tid,
            str(stats["count"]),
            str(stats["batches"]),
            str(stats["duplicateKeys"]),
            str(stats["maxReceives"]),
        )
    console.print(targets)
    return {r.instance_id for r in runs} | since


def run_demo(home: Path | None = None) -> int:
    """Run the demo; exit code 0 when both runs moved every record exactly once."""
    console = Console(highlight=False, width=max(120, Console().width))
    os.environ.setdefault("DATASYNC_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DATASYNC_HTTP_BACKOFF_BASE", "0.05")
    configure_logging()
    logging.getLogger("datasync.scheduler").setLevel(logging.INFO)
    home = home or Path(tempfile.mkdtemp(prefix="datasync-demo-"))
    settings = Settings.from_env({**os.environ, "DATASYNC_HOME": str(home)})
    console.print(f"[bold]DataSync demo[/bold] — data in {home}")
    with contextlib.ExitStack() as stack:
        apis = stack.enter_context(DemoApis(throttle_every=9))
        for tid, _, _, records, _ in TENANTS:
            apis.add_tenant(
                tid,
                source_token=f"src-{tid}-demo-token",
                target_token=f"erp-{tid}-demo-token",
                records=records,
            )
        console.print(
            f"source and target APIs on {apis.base_url} "
            f"(every 9th source request answers 429 + Retry-After)"
        )
        app = stack.enter_context(App.from_settings(settings))
        now = utcnow()
        tenants = operations.apply_tenants(
            app, _docs(apis, now.strftime("%Y-%m-%dT%H:%M:%SZ")), now
        )
        for tid, *_ in TENANTS:
            operations.set_secret(app, tid, "crm", "token", f"src-{tid}-demo-token")
            operations.set_secret(app, tid, "erp", "token", f"erp-{tid}-demo-token")
        for tenant in tenants:
            console.print(
                f"tenant {tenant.tenant_id} ({tenant.timezone}): flow "
                f"contacts-to-erp due now, daily at 02:00 local after that"
            )

        code, seconds = _run_once(app, console, "run 1 (full sync)")
        seen = _summary(console, app, apis, f"run 1 — {seconds:.1f} s", set())
        first = {tid: apis.stats(tid)["count"] for tid, *_ in TENANTS}

        for tid, _, _, _, extra in TENANTS:
            apis.add_records(tid, extra)
        time.sleep(1.05)  # a new scheduledFor second, so a new instance id
        for tid, *_ in TENANTS:
            operations.trigger(app, tid, "contacts-to-erp", utcnow())
        console.print(
            "added "
            + ", ".join(f"{extra} records to {tid}" for tid, _, _, _, extra in TENANTS)
            + "; triggered both flows"
        )
        code2, seconds = _run_once(app, console, "run 2 (incremental)")
        _summary(console, app, apis, f"run 2 — {seconds:.1f} s", seen)

        ok = code == 0 and code2 == 0
        for tid, _, _, records, extra in TENANTS:
            stats = apis.stats(tid)
            moved = stats["count"] - first[tid]
            exact = stats["count"] == records + extra and stats["maxReceives"] == 1
            ok = ok and exact and first[tid] == records
            console.print(
                f"{tid}: run 1 moved {first[tid]} of {records}, run 2 moved {moved} "
                f"new of {extra}; each record received "
                f"{'exactly once' if stats['maxReceives'] == 1 else 'MORE THAN ONCE'}"
            )
    console.print("[green]demo OK[/green]" if ok else "[red]demo FAILED[/red]")
    console.print(f"look around: python -m datasync --home {home} runs")
    return 0 if ok else 1
