"""The web console's HTTP function through the real Python worker library: indexed with an
anonymous GET/POST ``httpTrigger`` on ``console/{*path}`` and an ``http`` return binding,
and an HTTP invocation of ``/api/console/`` answers the overview over a home with real runs
(the ASGI app behind ``func.AsgiMiddleware``, as on Azure)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.world import SECRET, World, build_world

from .conftest import APP, Bridge

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    with build_world(tmp_path_factory.mktemp("console-conformance")) as w:
        yield w


@pytest.fixture(scope="module")
def worker(bridge_factory, world) -> Bridge:
    env = {
        "DATASYNC_HOME": str(world.home),
        "DATASYNC_FLOWS_DIR": str(world.flows),
        "DATASYNC_SCAN_SCHEDULE": "0 0 0 1 1 *",
    }
    bridge = bridge_factory(APP, env)
    bridge.init_reply = bridge.call("init", app_dir=str(APP))
    assert bridge.init_reply["status"] == "Success", bridge.init_reply
    return bridge


def get(worker: Bridge, sub: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    http = {
        "method": "GET",
        "url": f"http://localhost:7071/api/console/{sub}",
        "headers": {"host": "localhost:7071", **(headers or {})},
        "body": {"bytes": ""},
        "params": {"path": sub},
        "query": {},
    }
    reply = worker.call(
        "invoke", function="console", input_data=[{"name": "req", "data": {"http": http}}]
    )
    assert reply["status"] == "Success", reply["exception"]
    return reply["return_value"]["http"]


def body(response: dict[str, Any]) -> str:
    ((kind, value),) = response["body"].items()
    return base64.b64decode(value).decode() if kind == "bytes" else value


def test_the_worker_indexes_the_console_function(worker):
    functions = {fn["name"]: fn for fn in worker.call("metadata")["functions"]}
    raw = {b["type"]: b for b in functions["console"]["raw_bindings"]}
    trigger = raw["httpTrigger"]
    assert trigger["route"] == "console/{*path}" and trigger["authLevel"].upper() == "ANONYMOUS"
    assert {m.upper() for m in trigger["methods"]} == {"GET", "POST"}
    assert raw["http"]["direction"].upper() == "OUT" and raw["http"]["name"] == "$return"


def test_a_get_of_the_console_returns_the_overview(worker):
    response = get(worker, "")
    assert response["status_code"] in ("200", 200)
    html = body(response)
    assert "<h1>Overview</h1>" in html
    assert re.search(r'id="total-runs">3<', html)
    assert 'href="/api/console/runs"' in html
    assert any(c["name"] == "datasync_csrf" and c["http_only"] for c in response["cookies"])
    assert SECRET not in html


def test_a_run_page_through_the_worker(worker, world):
    run = world.completed("acme")
    html = body(get(worker, f"runs/{run}"))
    assert html.count('class="page" data-page=') == 12
    leaky = body(get(worker, f"runs/{world.failed()}"))
    assert "the source refused token ***" in leaky and SECRET not in leaky
