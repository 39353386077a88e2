"""Run detail written by the steps themselves: page records per invocation (attempts,
masked errors and cursors), the run-end log line, and the run's tenant and id on every line
a step emits (ctx.log, the HTTP retry lines, the steps' own lines)."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from datasync.app import App
from datasync.config import Settings
from datasync.contracts import BeginInput, FinishInput, PullInput, PushInput, TransformInput
from datasync.http import RetryPolicy
from datasync.models import parse_tenant

RUN = "Workflow-acme--contacts-20261123T140000Z"
REF: dict[str, Any] = {"tenant_id": "acme", "flow_name": "contacts", "run_id": RUN}
SECRET = "tok-Zx81-very-secret"

FLOW = """
from datasync import Page, flow


@flow("contacts")
class Contacts:
    def pull(self, ctx, cursor):
        token = ctx.secret("crm", "token")
        ctx.log.info("pulling after %s", cursor)
        if ctx.config.get("fail"):
            raise RuntimeError("source said no to " + token)
        if ctx.config.get("url"):
            ctx.http.get(ctx.config["url"])
        return Page(records=[{"id": 1}, {"id": 2}], cursor="next-" + token, has_more=False)

    def transform(self, ctx, records):
        return records[:1]

    def push(self, ctx, records):
        pass
"""


def _app(tmp_path: Path, config: dict[str, Any], **settings: Any) -> App:
    flows = tmp_path / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "contacts.py").write_text(FLOW)
    app = App.in_memory(Settings(flows_dir=flows, **settings))
    app.tenants.upsert_many(
        [
            parse_tenant(
                {
                    "id": "acme",
                    "flows": [{"name": "contacts", "cron": "0 0 * * * *", "config": config}],
                }
            )
        ]
    )
    app.secrets.set("acme", "crm", "token", SECRET)
    return app


def _page(app: App, cursor: Any = None) -> None:
    key = RUN + "/p1"
    pulled = app.steps.pull(PullInput(**REF, page_key=key, cursor=cursor))
    assert pulled.key is not None
    out = app.steps.transform(TransformInput(**REF, page_key=key, key=pulled.key))
    app.steps.push(
        PushInput(
            **REF, page_key=key, key=out.key, count=out.count, cursor=pulled.cursor,
            pages=1, records_in=pulled.count, records_out=out.count,
        )
    )  # fmt: skip


def test_a_page_is_recorded_step_by_step_and_the_run_end_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _app(tmp_path, {}) as app:
        app.steps.begin(BeginInput(**REF, scheduled_for="2026-11-23T14:00:00Z"))
        with caplog.at_level(logging.INFO):
            _page(app, cursor="c0")
            app.steps.finish(FinishInput(**REF, status="Completed"))
            app.steps.finish(FinishInput(**REF, status="Completed"))  # a repeat: no 2nd line
        [page] = app.runs.pages(RUN)
        assert (page.page, page.cursor_before, page.records_in, page.records_out) == (
            1, "c0", 2, 1,
        )  # fmt: skip
        assert page.cursor_after == "next-***"  # the cursor held the secret: masked
        assert [(s.step, s.attempts, s.error) for s in page.steps] == [
            ("pull", 1, None), ("transform", 1, None), ("push", 1, None),
        ]  # fmt: skip
        assert all(s.duration_seconds is not None and s.started_at for s in page.steps)
        run = app.runs.get(RUN)
        assert run.lateness_seconds is not None and run.duration_seconds is not None
    ends = [r for r in caplog.records if " Completed: " in r.getMessage()]
    assert len(ends) == 1 and ends[0].levelno == logging.INFO
    assert (
        ends[0]
        .getMessage()
        .startswith(f"[acme/{RUN}] run {RUN} Completed: 1 pages, 2 records in, 1 out, ")
    )
    assert ", lateness " in ends[0].getMessage()
    assert (ends[0].datasync_tenant, ends[0].datasync_run, ends[0].datasync_flow) == (  # type: ignore[attr-defined]
        "acme", RUN, "contacts",
    )  # fmt: skip
    flow_lines = [r for r in caplog.records if r.name == "datasync.flow.contacts"]
    assert flow_lines and flow_lines[0].getMessage() == f"[acme/{RUN}] pulling after c0"
    assert flow_lines[0].datasync_run == RUN  # type: ignore[attr-defined]


def test_a_failing_step_counts_attempts_and_keeps_a_masked_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _app(tmp_path, {"fail": True}) as app:
        app.steps.begin(BeginInput(**REF, scheduled_for="2026-11-23T14:00:00Z"))
        for _ in range(2):
            with pytest.raises(RuntimeError):
                app.steps.pull(PullInput(**REF, page_key=RUN + "/p1", cursor=None))
        [page] = app.runs.pages(RUN)
        pull = page.step("pull")
        assert pull is not None and pull.attempts == 2
        assert pull.error is not None and pull.error.startswith("RuntimeError: source said no")
        assert SECRET not in repr(page.to_json()) and "***" in pull.error
        error = f"Activity function 'pull_page' failed: RuntimeError: no {SECRET}\nat x"
        with caplog.at_level(logging.INFO):
            app.steps.finish(FinishInput(**REF, status="Failed", error=error))
        run = app.runs.get(RUN)
        assert run.reason == "Activity function 'pull_page' failed: RuntimeError: no ***"
    [end] = [r for r in caplog.records if " Failed: " in r.getMessage()]
    assert end.levelno == logging.ERROR and SECRET not in end.getMessage()
    assert f"run {RUN} Failed: Activity function 'pull_page' failed" in end.getMessage()


class _Flaky(BaseHTTPRequestHandler):
    """503 on the first request, 200 after (a real loopback server)."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        self.send_response(503 if type(self).calls == 1 else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_http_retry_lines_name_the_tenant_and_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/x"
    try:
        with (
            _app(tmp_path, {"url": url}, http=RetryPolicy(attempts=2, backoff_base=0.0)) as app,
            caplog.at_level(logging.INFO, logger="datasync.http"),
        ):
            app.steps.pull(PullInput(**REF, page_key=RUN + "/p1", cursor=None))
    finally:
        server.shutdown()
        server.server_close()
    [retry] = [r for r in caplog.records if r.name == "datasync.http"]
    assert retry.getMessage().startswith(f"[acme/{RUN}] retrying GET ")
    assert retry.datasync_tenant == "acme" and retry.datasync_run == RUN  # type: ignore[attr-defined]
