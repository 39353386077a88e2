"""The web console in real headless Chromium, against a home with real runs (the demo's
flow run through LocalHost --once): what an operator does in the browser."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus, urljoin, urlparse

import pytest

from tests.browser.conftest import TOKEN
from tests.browser.world import PAGES, SECRET

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def test_overview_renders(page, read_only):
    page.goto(read_only.url)
    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator("#total-runs").inner_text() == "3"
    assert page.locator("#failing-count").inner_text() == "1"
    assert page.locator("#poison-count").inner_text() == "1"
    assert page.locator("svg.status-chart rect").count() >= 2  # Completed and Failed
    assert page.locator("tr.failing-flow").inner_text().startswith("leaky")
    assert page.locator("body").get_attribute("data-refresh") == "15"


def test_filters_narrow_the_list(page, read_only):
    page.goto(read_only.url + "runs")
    assert page.locator("tr.run").count() == 3
    page.fill("input[name=tenant]", "acme")
    page.click("#run-filters button")
    page.wait_for_url(re.compile(r"tenant=acme"))
    assert page.locator("tr.run").count() == 1
    assert "Workflow-acme--contacts-to-erp-" in page.locator("tr.run").inner_text()
    page.goto(read_only.url + "runs")
    page.select_option("select[name=status]", "Failed")
    page.click("#run-filters button")
    page.wait_for_url(re.compile(r"status=Failed"))
    assert page.locator("tr.run").count() == 1
    assert page.locator("tr.run").get_attribute("data-status") == "Failed"
    assert "1 run matches" in page.locator("#run-count").inner_text()


def test_a_runs_page_timeline_shows_every_page(page, read_only):
    for tenant, pages in PAGES.items():
        page.goto(read_only.url + f"runs?tenant={tenant}")
        page.click("tr.run td a")  # the instance id
        page.wait_for_url(re.compile(r"/runs/Workflow-"))
        bars = page.locator("svg.page-timeline g.page")
        assert bars.count() == pages
        assert bars.last.get_attribute("data-page") == str(pages)
        assert page.locator("#run-pages").inner_text() == str(pages)
        assert page.locator("svg.page-timeline rect.step.push").count() == pages


def test_read_only_console_refuses_actions(page, read_only):
    page.goto(read_only.url + "tenants/acme")
    assert page.get_by_text("Run now").count() == 0
    assert "read-only" in page.locator("header .who").inner_text()
    response = page.goto(read_only.url + "confirm/trigger?tenant=acme&flow=contacts-to-erp")
    assert response is not None and response.status == 403
    assert "DATASYNC_CONSOLE_ACTIONS=true" in page.locator(".error-message").inner_text()


def test_an_action_works_when_enabled(page, operator, world):
    page.goto(operator.url + "tenants/globex")
    assert page.get_by_text("Run now").count() == 0  # not signed in yet
    page.click("text=sign in")
    page.fill("#token", "wrong")
    page.click("#sign-in")
    assert "not the console token" in page.locator("#login-failed").inner_text()
    page.fill("#token", TOKEN)
    page.click("#sign-in")
    page.wait_for_url(re.compile(r"/tenants/globex$"))
    row = page.locator('tr.flow-row[data-flow="contacts-to-erp"]')
    row.get_by_text("Disable").click()
    assert "Pause: globex / contacts-to-erp" in page.locator(".confirm-what").inner_text()
    page.click("#confirm")
    assert "globex/contacts-to-erp disabled" in page.locator("#done-message").inner_text()
    assert world.app.tenants.get("globex").flow("contacts-to-erp").enabled is False
    page.goto(operator.url + "tenants/globex")
    assert "disabled" in page.locator('tr.flow-row[data-flow="contacts-to-erp"]').inner_text()
    audit = page.locator("tr.audit-entry").first.inner_text()
    assert "console-token" in audit and "pause" in audit
    row = page.locator('tr.flow-row[data-flow="contacts-to-erp"]')
    row.get_by_text("Enable").click()
    page.click("#confirm")
    assert "resumed" in page.locator("#done-message").inner_text()
    assert world.app.tenants.get("globex").flow("contacts-to-erp").enabled is True


def test_no_page_contains_a_secret(page, operator):
    page.goto(operator.url + "login")
    page.fill("#token", TOKEN)
    page.click("#sign-in")
    origin = urlparse(operator.url).netloc
    seen: set[str] = set()
    todo = [operator.url]
    forms = [SECRET, quote(SECRET, safe=""), quote(SECRET), quote_plus(SECRET)]
    forms += [base64.b64encode(SECRET.encode()).decode(), json.dumps(SECRET)[1:-1]]
    while todo and len(seen) < 60:
        url = todo.pop(0)
        if url in seen:
            continue
        seen.add(url)
        page.goto(url)
        html = page.content()
        text = page.locator("body").inner_text()
        for form in forms:
            assert form not in html and form not in text, f"{url} shows the secret ({form!r})"
        assert TOKEN not in html
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            parsed = urlparse(urljoin(url, href))
            if parsed.netloc == origin and "/static/" not in parsed.path:
                todo.append(parsed._replace(fragment="").geturl())
    assert len(seen) > 12
    assert any("/runs/Workflow-leaky--leaky-sync-" in u for u in seen)


def test_pages_refresh_themselves(page, read_only, world):
    from datasync.ports import FLOW_JOBS

    queue = world.app.queues.queue(FLOW_JOBS)
    page.goto(read_only.url + "queue?refresh=1")
    assert page.locator("#queue-count").inner_text().startswith("0 messages")
    job = {
        "tenantId": "acme",
        "flowName": "contacts-to-erp",
        "scheduledFor": "2030-01-01T00:00:00Z",
    }
    message = queue.send(json.dumps(job), visibility_delay=3600)
    try:
        from playwright.sync_api import expect

        # no reload: the page's own script swaps in the new <main> (CSP forbids eval, so
        # the wait polls the DOM through a locator)
        expect(page.locator("#queue-count")).to_have_text(re.compile(r"^1 message"), timeout=10_000)
        assert page.locator("tr.job").count() == 1
    finally:
        queue.remove(message)
