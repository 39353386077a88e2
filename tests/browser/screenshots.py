"""Screenshots of the console's main pages into docs/screenshots/ (``scripts/screenshots``).

Builds the same home with real runs as the browser tests (the demo's flow through
LocalHost --once, a failing flow, a poison message), serves the console with actions on,
signs in with the token and captures each page in Debian's headless Chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from datasync.console import start_in_background
from tests.browser.conftest import TOKEN, launch
from tests.browser.world import ROOT, build_world

OUT = ROOT / "docs" / "screenshots"


def main(out: Path = OUT) -> int:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="datasync-shots-") as tmp, build_world(Path(tmp)) as w:
        app = w.with_settings(console_actions=True, console_token=TOKEN)
        stop = start_in_background(app, port=0)
        try:
            shots = {
                "overview": "",
                "freshness": "freshness",
                "runs": "runs",
                "run-detail": f"runs/{w.completed('acme')}",
                "run-failed": f"runs/{w.failed()}",
                "tenant": "tenants/acme",
                "schedule": "tenants/acme/flows/contacts-to-erp",
                "confirm": "confirm/trigger?tenant=acme&flow=contacts-to-erp",
                "poison": "poison",
            }
            with sync_playwright() as p:
                browser = launch(p)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(stop.url + "login")
                page.fill("#token", TOKEN)
                page.click("#sign-in")
                for name, path in shots.items():
                    page.goto(stop.url + path)
                    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                    print(out / f"{name}.png")
                browser.close()
        finally:
            stop()
            app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
