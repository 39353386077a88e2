"""The console as the Function App's HTTP-triggered function ``console`` (route
``console/{*path}``): registered with the app, accepted by the embedded runtime, and the
user function answers a real ``azure.functions.HttpRequest`` through ``AsgiMiddleware``
with links under the host's route prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from datasync.functions import AppProvider, build_function_app
from datasync.functions.console import CONSOLE_ROUTE, root_of
from datasync.runtime.host import index_functions
from datasync.runtime.validation import validate_app
from tests.browser.world import World, build_world, run_async


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    with build_world(tmp_path_factory.mktemp("console-fn")) as w:
        yield w


def console_function(world: World) -> Any:
    provider = AppProvider()
    provider.install(world.app)
    app = build_function_app(provider)
    fns = {b._function.get_function_name(): b._function for b in app._function_builders}
    return fns["console"]


def call(fn: Any, method: str, path: str, sub: str, **kw: Any) -> func.HttpResponse:
    req = func.HttpRequest(
        method=method,
        url=f"http://localhost:7071/api/console{path}",
        headers={"host": "localhost:7071", **kw.pop("headers", {})},
        params={},
        route_params={"path": sub},
        body=kw.pop("body", b""),
    )
    return run_async(lambda: fn.get_user_function()(req, None))


def test_registered_anonymous_get_post_on_the_console_route(world):
    fn = console_function(world)
    trigger = fn.get_trigger()
    assert trigger.type == "httpTrigger"
    assert trigger.route == CONSOLE_ROUTE == "console/{*path}"
    assert str(trigger.auth_level).lower().endswith("anonymous")
    assert {str(m).upper().rsplit(".", 1)[-1] for m in trigger.methods} == {"GET", "POST"}


def test_the_embedded_runtime_accepts_the_app_with_it():
    app = build_function_app(AppProvider())
    assert validate_app(app) == []
    found = index_functions(app)  # an HTTP trigger is not served, and not refused
    assert found.timers and found.queues


def test_overview_and_links_under_the_route_prefix(world):
    fn = console_function(world)
    r = call(fn, "GET", "/", "")
    assert r.status_code == 200
    html = r.get_body().decode()
    assert "<h1>Overview</h1>" in html
    assert 'href="/api/console/runs"' in html and 'href="/api/console/static/console.css"' in html
    run = world.completed("acme")
    r = call(fn, "GET", f"/runs/{run}", f"runs/{run}")
    assert r.status_code == 200 and 'class="page" data-page="12"' in r.get_body().decode()
    assert call(fn, "GET", "", "").status_code == 200  # /api/console without the slash


def test_root_of_any_route_prefix():
    assert root_of("/api/console/runs/x", "runs/x") == "/api/console"
    assert root_of("/api/console/", "") == "/api/console"
    assert root_of("/console", "") == "/console"
    assert root_of("/p/console/tenants/acme/flows/f", "tenants/acme/flows/f") == "/p/console"


def test_actions_stay_off_through_the_function(world):
    fn = console_function(world)
    r = call(fn, "POST", "/act/trigger", "act/trigger", body=b"tenant=acme&flow=contacts-to-erp")
    assert r.status_code == 403
