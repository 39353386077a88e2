"""The web console over a home with real runs (LocalHost.run(once=True) against the demo
APIs, real SQLite): pages, filters, paging, the page timeline, freshness, who may act,
actions through datasync.operations with their audit entries, and no secret on any page."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, quote_plus, urljoin, urlparse

import pytest

from datasync.app import App
from datasync.console import create_app
from datasync.console.auth import CSRF_COOKIE, OPERATOR_ROLE, READER_ROLE
from datasync.exceptions import ValidationError
from datasync.models import RunRecord
from datasync.names import format_utc
from tests.browser.world import PAGES, SECRET, AsgiClient, World, build_world

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    with build_world(tmp_path_factory.mktemp("console")) as w:
        yield w


def client(app: App, **settings: object) -> AsgiClient:
    asgi = create_app(app, settings=replace(app.settings, **settings) if settings else None)
    return AsgiClient(asgi, "https://127.0.0.1" if settings.get("on_azure") else BASE)


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.pages: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        if tag == "g" and a.get("class") == "page":
            self.pages.append(str(a.get("data-page")))


def parse(html: str) -> Links:
    p = Links()
    p.feed(html)
    return p


def rows(html: str, cls: str) -> int:
    return len(re.findall(rf'<tr class="{cls}"', html))


# -- pages ---------------------------------------------------------------------------------
def test_the_world_has_real_runs(world):
    assert world.exit_code == 1  # the leaky flow failed; acme and globex completed
    assert {r.status for r in world.app.runs.query(limit=10)} == {"Completed", "Failed"}


def test_overview_shows_runs_failing_flows_queue_and_poison(world):
    html = client(world.app).get("/").text
    assert re.search(r'id="total-runs">3<', html)
    assert re.search(r'id="failing-count">1<', html)
    assert re.search(r'id="poison-count"><a [^>]*>1<', html)
    assert re.search(r'id="queue-depth">0<', html)
    assert 'class="chart status-chart"' in html and "Completed: 2" in html
    assert rows(html, "failing-flow") == 1 and "leaky-sync" in html


def test_every_page_renders(world):
    c = client(world.app)
    paths = [
        "/",
        "/freshness",
        "/runs",
        "/tenants",
        "/tenants/acme",
        "/tenants/acme/flows/contacts-to-erp",
        "/queue",
        "/poison",
        f"/runs/{world.completed('acme')}",
        f"/runs/{world.failed()}",
    ]
    for path in paths:
        r = c.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-security-policy"].startswith("default-src 'self'")


def test_unknown_things_are_clear_errors_not_tracebacks(world):
    c = client(world.app)
    r = c.get("/runs/Workflow-nobody--none-20260101T000000Z")
    assert r.status_code == 404 and "Traceback" not in r.text
    assert c.get("/tenants/nobody").status_code == 404
    r = c.get("/runs?status=Bogus")
    assert r.status_code == 400 and "status must be one of" in r.text
    r = c.get("/runs?since=yesterday")
    assert r.status_code == 400 and "since: not a date/time" in r.text


# -- runs list -----------------------------------------------------------------------------
def test_filters_in_the_url_narrow_the_list(world):
    c = client(world.app)
    assert rows(c.get("/runs").text, "run") == 3
    acme = c.get("/runs?tenant=acme").text
    assert rows(acme, "run") == 1 and "Workflow-acme--" in acme and "Workflow-globex" not in acme
    failed = c.get("/runs?status=Failed").text
    assert rows(failed, "run") == 1 and "Workflow-leaky--" in failed
    future = format_utc(datetime.now(UTC) + timedelta(days=1))
    assert rows(c.get(f"/runs?since={future}").text, "run") == 0
    assert "No run matches these filters" in c.get(f"/runs?since={future}").text


def test_keyset_paging_walks_every_run_once():
    app = App.in_memory()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(160):
        when = format_utc(start + timedelta(minutes=i))
        rid = f"Workflow-t{i % 3}--f-{when.replace('-', '').replace(':', '')}"
        app.runs.record(RunRecord(rid, f"t{i % 3}", "f", when, "Completed"))
    c = client(app)
    seen: list[str] = []
    url: str | None = "/runs"
    pages = 0
    while url:
        html = c.get(url).text
        pages += 1
        seen += re.findall(r'<a href="/runs/(Workflow-[^"]+)"', html)
        m = re.search(r'id="older" href="([^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert pages == 4 and len(seen) == 160 and len(set(seen)) == 160
    assert "160 runs" in c.get("/runs").text
    # filters survive paging
    html = c.get("/runs?tenant=t1").text
    older = re.search(r'id="older" href="([^"]+)"', html)
    assert older and "tenant=t1" in older.group(1)


# -- run detail ------------------------------------------------------------------------------
def test_run_detail_timeline_has_one_bar_per_page(world):
    for tenant, n in PAGES.items():
        html = client(world.app).get(f"/runs/{world.completed(tenant)}").text
        assert parse(html).pages == [str(i) for i in range(1, n + 1)]
        assert rows(html, "page-row") == n
        assert re.search(rf'id="run-pages">{n}<', html)


def test_failed_run_shows_its_error_masked(world):
    html = client(world.app).get(f"/runs/{world.failed()}").text
    assert 'id="run-error"' in html and "the source refused token ***" in html
    assert SECRET not in html


# -- freshness -----------------------------------------------------------------------------
def test_freshness_board_from_schedule_and_last_success(world):
    html = client(world.app).get("/freshness").text
    board = re.findall(r'<tr class="fresh-row" data-state="([^"]+)">\s*<td><a[^>]*>([a-z]+)<', html)
    assert {t: s for s, t in board} == {"acme": "on time", "globex": "on time", "leaky": "failing"}


def test_freshness_late_paused_disabled_never_ran():
    app = App.in_memory()
    from datasync import operations

    now = datetime.now(UTC).replace(microsecond=0)
    docs = [
        {"id": t, "tenantId": t, "flows": [{"name": "contacts-to-erp", "cron": "0 */5 * * * *"}]}
        for t in ("late", "paused", "off", "new", "fine")
    ]
    operations.apply_tenants(app, docs, now)
    old = now - timedelta(hours=2)
    recent = now - timedelta(seconds=30)
    for tenant, when in (("late", old), ("fine", recent), ("paused", old), ("off", old)):
        w = format_utc(when)
        app.runs.record(
            RunRecord(
                f"Workflow-{tenant}--c-x", tenant, "contacts-to-erp", w, "Completed", finished_at=w
            )
        )
    operations.pause(app, "paused")
    operations.pause(app, "off", "contacts-to-erp")
    html = client(app, lookahead_seconds=600.0).get("/freshness").text
    board = re.findall(r'<tr class="fresh-row" data-state="([^"]+)">\s*<td><a[^>]*>([a-z]+)<', html)
    assert {t: s for s, t in board} == {
        "late": "late",
        "paused": "paused",
        "off": "disabled",
        "new": "never ran",
        "fine": "on time",
    }
    assert client(app).get("/freshness?state=late").text.count('class="fresh-row"') == 1


# -- who may act -----------------------------------------------------------------------------
def principal(name: str, *roles: str) -> str:
    claims = [{"typ": "name", "val": name}] + [{"typ": "roles", "val": r} for r in roles]
    doc = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_on_azure_no_principal_is_401_and_roles_decide(world):
    c = client(world.app, on_azure=True, app_service_auth=True, console_actions=True)
    assert c.get("/").status_code == 401
    assert c.get("/", headers={"x-ms-client-principal": "not base64!"}).status_code == 401
    nobody = {"x-ms-client-principal": principal("eve@contoso.com")}
    assert c.get("/", headers=nobody).status_code == 403
    reader = {"x-ms-client-principal": principal("rita@contoso.com", READER_ROLE)}
    assert c.get("/", headers=reader).status_code == 200
    r = c.get("/confirm/trigger?tenant=acme&flow=contacts-to-erp", headers=reader)
    assert r.status_code == 403 and OPERATOR_ROLE in r.text
    op = {"x-ms-client-principal": principal("olga@contoso.com", OPERATOR_ROLE)}
    assert c.get("/confirm/trigger?tenant=acme&flow=contacts-to-erp", headers=op).status_code == 200


def test_on_azure_without_app_service_authentication_no_principal_is_trusted(world):
    c = client(world.app, on_azure=True, app_service_auth=False, console_actions=True)
    forged = {"x-ms-client-principal": principal("mallory@contoso.com", OPERATOR_ROLE)}
    r = c.get("/", headers=forged)
    assert r.status_code == 401 and "WEBSITE_AUTH_ENABLED" in r.text
    assert c.get("/confirm/rerun?id=x", headers=forged).status_code == 401


def test_the_last_scheduler_tick_comes_from_the_runtime(world):
    tick = datetime(2026, 12, 1, 14, 0, 5, tzinfo=UTC)
    asgi = create_app(world.app, last_tick=lambda: tick)
    html = AsgiClient(asgi).get("/").text
    assert "2026-12-01T14:00:05Z" in html and 'id="last-tick"' in html
    empty = App.in_memory()
    html = AsgiClient(create_app(empty, last_tick=lambda: tick)).get("/runs").text
    assert "No runs yet: the scheduler last ran at 2026-12-01T14:00:05Z" in html
    html = AsgiClient(create_app(empty)).get("/").text
    assert "no runs yet" in html and "not seen by this process" in html


def test_operator_action_on_azure_is_audited_with_the_principal(world):
    c = client(world.app, on_azure=True, app_service_auth=True, console_actions=True)
    op = {"x-ms-client-principal": principal("olga@contoso.com", OPERATOR_ROLE)}
    page = c.get("/confirm/pause?tenant=globex&flow=contacts-to-erp", headers=op)
    csrf = page.cookies.get(CSRF_COOKIE) or c.cookies.get(CSRF_COOKIE)
    form = {"csrf": csrf, "tenant": "globex", "flow": "contacts-to-erp"}
    r = c.post("/act/pause", data=form, headers=op)
    assert r.status_code == 200, r.text
    assert "globex/contacts-to-erp disabled" in r.text
    assert world.app.tenants.get("globex").flow("contacts-to-erp").enabled is False
    entry = world.app.runs.audit_log(tenant="globex", limit=1)[0]
    assert (entry.actor, entry.action) == ("aad:olga@contoso.com", "pause")
    c.post("/act/resume", data=form, headers=op)
    assert world.app.tenants.get("globex").flow("contacts-to-erp").enabled is True
    assert "aad:olga@contoso.com" in c.get("/tenants/globex", headers=op).text


def test_read_only_by_default_refuses_actions(world):
    c = client(world.app)
    r = c.get("/confirm/trigger?tenant=acme&flow=contacts-to-erp")
    assert r.status_code == 403 and "DATASYNC_CONSOLE_ACTIONS=true" in r.text
    c.get("/")
    r = c.post(
        "/act/trigger",
        data={"csrf": c.cookies.get(CSRF_COOKIE), "tenant": "acme", "flow": "contacts-to-erp"},
    )
    assert r.status_code == 403
    assert "Run now" not in c.get("/tenants/acme").text  # no action buttons at all


def test_local_actions_need_the_token_and_the_csrf_token(world):
    c = client(world.app, console_actions=True, console_token="let-me-in")
    assert c.get("/confirm/rerun?id=x").status_code == 403  # not signed in
    csrf = c.get("/login").cookies.get(CSRF_COOKIE) or c.cookies.get(CSRF_COOKIE)
    bad = c.post("/login", data={"csrf": csrf, "token": "guess", "next": "/"})
    assert bad.status_code == 403 and "not the console token" in bad.text
    ok = c.post("/login", data={"csrf": csrf, "token": "let-me-in", "next": "/poison"})
    assert ok.status_code == 303 and ok.headers["location"] == "/poison"
    assert "let-me-in" not in (ok.headers.get("set-cookie") or "")
    failed = world.failed()
    assert c.get(f"/confirm/rerun?id={failed}").status_code == 200
    assert c.post("/act/rerun", data={"id": failed, "csrf": "forged"}).status_code == 403
    r = c.post("/act/rerun", data={"id": failed, "csrf": csrf})
    assert r.status_code == 200 and f"queued as {failed}-rerun1" in r.text
    entry = world.app.runs.audit_log(instance_id=failed, limit=1)[0]
    assert (entry.actor, entry.action) == ("console-token", "rerun")
    assert "console-token" in c.get(f"/runs/{failed}").text
    r = c.post("/act/rerun", data={"id": "Workflow-nobody--x-20260101T000000Z", "csrf": csrf})
    assert r.status_code == 404


def test_loopback_only(world):
    c = client(world.app)
    assert c.get("/", headers={"host": "evil.example:8765"}).status_code == 403
    from datasync.console import serve

    with pytest.raises(ValidationError, match="loopback only"):
        serve(world.app, host="0.0.0.0", port=0)


# -- secrets -------------------------------------------------------------------------------
def crawl(c: AsgiClient, start: str = "/", limit: int = 400) -> dict[str, str]:
    seen: dict[str, str] = {}
    todo = [start]
    while todo and len(seen) < limit:
        path = todo.pop()
        if path in seen:
            continue
        r = c.get(path)
        seen[path] = r.text
        for href in parse(r.text).links:
            url = urlparse(urljoin(BASE + path, href.replace("&amp;", "&")))
            if url.netloc == "127.0.0.1" and not url.path.startswith("/static"):
                todo.append(url.path + (f"?{url.query}" if url.query else ""))
    return seen


def test_no_page_contains_a_secret(world):
    c = client(world.app, console_actions=True, console_token="crawl-token")
    csrf = c.get("/login").cookies.get(CSRF_COOKIE) or c.cookies.get(CSRF_COOKIE)
    c.post("/login", data={"csrf": csrf, "token": "crawl-token"})
    pages = crawl(c)
    assert len(pages) > 15
    forms = [SECRET, quote(SECRET, safe=""), quote_plus(SECRET), quote(SECRET)]
    forms.append(base64.b64encode(SECRET.encode()).decode())
    forms.append(json.dumps(SECRET)[1:-1])
    for path, html in pages.items():
        for form in forms:
            assert form not in html, f"{path} shows the secret ({form!r})"
        assert "crawl-token" not in html


def test_start_in_background_serves_and_stops(world):
    import httpx

    from datasync.console import start_in_background

    stop = start_in_background(world.app, port=0)
    try:
        r = httpx.get(stop.url + "runs", timeout=10)
        assert r.status_code == 200 and "Workflow-acme--" in r.text
    finally:
        stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(stop.url, timeout=2)


def test_static_files_and_nothing_else(world):
    c = client(world.app)
    assert "setInterval" in c.get("/static/console.js").text
    assert c.get("/static/../web.py").status_code == 404
    assert Path(__file__).name not in c.get("/static/x.js").text


def test_a_taken_port_is_a_clear_error(world):
    from datasync.console import PortInUse, start_in_background

    first = start_in_background(world.app, port=0)
    try:
        with pytest.raises(PortInUse, match=rf"cannot listen on 127.0.0.1:{first.port}"):
            start_in_background(world.app, port=first.port)
    finally:
        first()
