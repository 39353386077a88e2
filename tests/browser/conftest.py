"""Fixtures of the browser tests: one home with real runs, the console served from it
(read-only, and with actions on), and Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from datasync.console import BackgroundConsole, start_in_background
from tests.browser.world import World, build_world

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-test-token"


def launch(playwright: Any) -> Any:
    """Debian's Chromium (no browser download), headless."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Iterator[World]:
    with build_world(tmp_path_factory.mktemp("browser")) as w:
        yield w


@pytest.fixture(scope="session")
def read_only(world) -> Iterator[BackgroundConsole]:
    stop = start_in_background(world.app, port=0)
    yield stop
    stop()


@pytest.fixture(scope="session")
def operator(world) -> Iterator[BackgroundConsole]:
    app = world.with_settings(console_actions=True, console_token=TOKEN)
    stop = start_in_background(app, port=0)
    yield stop
    stop()
    app.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium through Playwright's sync API, which keeps an asyncio loop running on the
    main thread while it is open: module scope closes it before other suites' tests run
    (``asyncio.run`` refuses to start inside a running loop)."""
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """A fresh browser context per test; any console error (CSP included) fails it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not [e for e in errors if "status of 40" not in e], errors
