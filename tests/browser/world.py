"""A DataSync home with real runs, for the console's tests: the demo's flow against the
loopback demo APIs, run through ``LocalHost.run(once=True)`` (scheduler → queue → starter →
``sync_flow`` → activities), plus a flow that fails with a secret in its error.

acme: 1200 records, 100 per page → a 12-page Completed run. globex: 300 records → 3 pages.
leaky: ``leaky-sync`` fails and its error text carries the tenant's secret (the stores and
the console must mask it). A message on the poison queue gives the poison page a row.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from datasync import operations
from datasync.app import App
from datasync.config import Settings
from datasync.demo_apis import DemoApis
from datasync.names import format_utc, utcnow
from datasync.ports import FLOW_JOBS_POISON
from datasync.runtime.host import LocalHost

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SECRET = "Sup3r/Secret+Value=42&x"
"""The leaky tenant's secret: '/', '+', '=' and '&' make its percent and base64 forms differ."""

LEAKY_FLOW = """
from datasync import Page, PermanentError, flow


@flow("leaky-sync")
class LeakySync:
    def pull(self, ctx, cursor):
        token = ctx.secret("crm", "token")
        raise PermanentError("the source refused token " + token + " for " + ctx.tenant_id)

    def push(self, ctx, records):
        pass
"""

PAGES = {"acme": 12, "globex": 3}


@dataclass
class World:
    home: Path
    flows: Path
    settings: Settings
    app: App
    apis: DemoApis
    exit_code: int

    def completed(self, tenant: str) -> str:
        runs = self.app.runs.query(tenant=tenant, status="Completed", limit=1)
        assert runs, f"no completed run for {tenant}"
        return runs[0].instance_id

    def failed(self) -> str:
        runs = self.app.runs.query(tenant="leaky", status="Failed", limit=1)
        assert runs, "no failed run for leaky"
        return runs[0].instance_id

    def with_settings(self, **changes: object) -> App:
        """An App over the same home with other settings (e.g. console_actions=True)."""
        return App.from_settings(replace(self.settings, **changes))  # type: ignore[arg-type]


def _docs(apis: DemoApis, now: str) -> list[dict[str, object]]:
    def contacts(tid: str) -> dict[str, object]:
        return {
            "name": "contacts-to-erp",
            "enabled": True,
            "cron": "0 0 2 * * *",
            "nextRunUtc": now,
            "config": {
                "source_url": apis.source_url(tid),
                "target_url": apis.target_url(tid),
                "page_size": 100,
            },
        }

    return [
        {
            "id": "acme",
            "tenantId": "acme",
            "name": "Acme Ltd",
            "timezone": "Europe/Amsterdam",
            "flows": [contacts("acme")],
        },
        {
            "id": "globex",
            "tenantId": "globex",
            "name": "Globex Corp",
            "timezone": "America/New_York",
            "flows": [contacts("globex")],
        },
        {
            "id": "leaky",
            "tenantId": "leaky",
            "name": "Leaky Inc",
            "timezone": "UTC",
            "flows": [{"name": "leaky-sync", "cron": "0 0 3 * * *", "nextRunUtc": now}],
        },
    ]


@contextlib.contextmanager
def build_world(tmp: Path) -> Iterator[World]:
    """Seed ``tmp`` with tenants and real runs; yields the world, closes it after."""
    flows = tmp / "flows"
    shutil.copytree(ROOT / "flows", flows, ignore=shutil.ignore_patterns("__pycache__"))
    (flows / "leaky_sync.py").write_text(LEAKY_FLOW)
    settings = replace(
        Settings.from_env(
            {"DATASYNC_HOME": str(tmp / "home"), "DATASYNC_HTTP_BACKOFF_BASE": "0.01"}
        ),
        flows_dir=flows,
        lookahead_seconds=0.0,  # run(once=True) waits for hidden look-ahead jobs otherwise
    )
    with contextlib.ExitStack() as stack:
        apis = stack.enter_context(DemoApis())
        for tid, n in (("acme", 1200), ("globex", 300)):
            apis.add_tenant(tid, source_token=f"src-{tid}", target_token=f"erp-{tid}", records=n)
        app = stack.enter_context(App.from_settings(settings))
        now = utcnow()
        operations.apply_tenants(app, _docs(apis, format_utc(now)), now)
        for tid in ("acme", "globex"):
            operations.set_secret(app, tid, "crm", "token", f"src-{tid}")
            operations.set_secret(app, tid, "erp", "token", f"erp-{tid}")
        operations.set_secret(app, "leaky", "crm", "token", SECRET)
        code = LocalHost(app=app).run(once=True)
        app.queues.queue(FLOW_JOBS_POISON).send(
            '{"tenantId": "ghost", "flowName": "gone", "scheduledFor": "2026-01-01T00:00:00Z"}'
        )
        yield World(tmp / "home", flows, settings, app, apis, code)


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(factory())``, on a thread of its own when this thread already runs a
    loop (Playwright's sync API does, in the browser tests of the same session)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class AsgiClient:
    """A synchronous HTTP client for an ASGI app (httpx over its ASGI transport), keeping
    cookies between requests like a browser. Redirects are not followed."""

    def __init__(self, asgi: object, base_url: str = "http://127.0.0.1") -> None:
        import httpx

        self.asgi = asgi
        self.base_url = base_url
        self.cookies = httpx.Cookies()

    def request(self, method: str, url: str, **kwargs: object) -> Any:

        import httpx

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.asgi)  # type: ignore[arg-type]
            async with httpx.AsyncClient(
                transport=transport, base_url=self.base_url, cookies=self.cookies
            ) as client:
                response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
                self.cookies = client.cookies
                return response

        return run_async(go)

    def get(self, url: str, **kwargs: object) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: object) -> Any:
        return self.request("POST", url, **kwargs)
