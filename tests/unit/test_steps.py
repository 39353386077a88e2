"""The run steps over in-memory adapters: milliseconds, no subprocess, no SQLite."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from datasync.app import App
from datasync.config import Settings
from datasync.contracts import BeginInput, FinishInput, PullInput, PushInput, TransformInput
from datasync.exceptions import NotFound, PermanentError
from datasync.models import RunRecord, parse_tenant

RUN = "Workflow-acme--contacts-20261123T140000Z"
REF: dict[str, Any] = {"tenant_id": "acme", "flow_name": "contacts", "run_id": RUN}

FLOW = """
from datasync import Page, flow

PUSHED = []


@flow("contacts")
class Contacts:
    def pull(self, ctx, cursor):
        start = int(cursor or 0)
        ctx.state["pulls"] = ctx.state.get("pulls", 0) + 1
        if ctx.config.get("bad"):
            return ["not", "a", "page"]
        return Page(records=[{"id": i, "token": ctx.secret("crm", "token")}
                             for i in range(start, min(start + 2, 3))],
                    cursor=min(start + 2, 3), has_more=start + 2 < 3)

    def transform(self, ctx, records):
        return [{"id": r["id"]} for r in records]

    def push(self, ctx, records):
        PUSHED.append((ctx.page_key, records))
"""


@pytest.fixture
def app(tmp_path: Path) -> Any:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "contacts.py").write_text(FLOW)
    with App.in_memory(Settings(flows_dir=flows)) as app:
        app.tenants.upsert_many(
            [
                parse_tenant(
                    {
                        "id": "acme",
                        "flows": [
                            {"name": "contacts", "cron": "0 0 * * * *", "config": {"page": 2}}
                        ],
                    }
                )
            ]
        )
        app.secrets.set("acme", "crm", "token", "tok-1234")
        yield app


def _pushed(app: App) -> list[Any]:
    import sys

    module = next(
        m for n, m in sys.modules.items() if n.endswith("contacts") and hasattr(m, "PUSHED")
    )
    return module.PUSHED  # type: ignore[no-any-return]


def test_one_page_through_every_step(app: App) -> None:
    carry = app.steps.begin(BeginInput(**REF, scheduled_for="2026-11-23T14:00:00Z"))
    assert (carry.cursor, carry.pages) == (None, 0)
    assert app.runs.get(RUN).status == "Running"
    key = RUN + "/p1"
    pulled = app.steps.pull(PullInput(**REF, page_key=key, cursor=None, state={}))
    assert (pulled.count, pulled.cursor, pulled.has_more, pulled.state) == (
        2,
        2,
        True,
        {"pulls": 1},
    )
    assert pulled.key is not None and pulled.key.startswith(key + "/pulled-")
    out = app.steps.transform(
        TransformInput(**REF, page_key=key, key=pulled.key, state=pulled.state)
    )
    assert app.pages.get(out.key or "") == [{"id": 0}, {"id": 1}]
    app.steps.push(
        PushInput(
            **REF,
            page_key=key,
            key=out.key,
            count=out.count,
            cursor=pulled.cursor,
            pages=1,
            records_in=2,
            records_out=2,
            state=out.state,
        )
    )
    assert _pushed(app)[-1] == (key, [{"id": 0}, {"id": 1}])
    cp = app.runs.load_checkpoint("acme", "contacts")
    assert (cp.cursor, cp.state) == (2, {"pulls": 1})
    run = app.runs.get(RUN)
    assert (run.pages, run.records_in, run.records_out) == (1, 2, 2)
    with pytest.raises(NotFound):  # staged pages are gone after the push
        app.pages.get(pulled.key)
    app.steps.finish(FinishInput(**REF, status="Completed"))
    assert app.runs.get(RUN).status == "Completed"


def test_a_resumed_run_starts_from_its_checkpoint_and_counters(app: App) -> None:
    app.runs.begin(
        RunRecord(
            instance_id=RUN,
            tenant_id="acme",
            flow_name="contacts",
            scheduled_for="2026-11-23T14:00:00Z",
            status="Running",
        )
    )
    app.steps.push(
        PushInput(
            **REF,
            page_key=RUN + "/p1",
            key=None,
            count=0,
            cursor=2,
            pages=1,
            records_in=2,
            records_out=2,
            state={"n": 1},
        )
    )
    app.runs.finish(RUN, "Failed", "boom")
    carry = app.steps.begin(BeginInput(**REF, scheduled_for="2026-11-23T14:00:00Z"))
    assert (carry.cursor, carry.state, carry.pages, carry.records_in) == (2, {"n": 1}, 1, 2)
    assert app.runs.get(RUN).resumes == 1


def test_an_empty_page_keeps_the_cursor_and_stages_nothing(app: App) -> None:
    pulled = app.steps.pull(PullInput(**REF, page_key=RUN + "/p2", cursor=3, state={}))
    assert (pulled.key, pulled.count, pulled.cursor, pulled.has_more) == (None, 0, 3, False)


def test_a_pull_that_returns_no_page_is_a_permanent_error(app: App) -> None:
    app.tenants.upsert_many(
        [
            parse_tenant(
                {
                    "id": "acme",
                    "flows": [{"name": "contacts", "cron": "0 0 * * * *", "config": {"bad": True}}],
                }
            )
        ]
    )
    app.steps.tenants.ttl = 0  # see the edit at once
    with pytest.raises(PermanentError, match="pull must return a Page, got list"):
        app.steps.pull(PullInput(**REF, page_key=RUN + "/p1", cursor=None, state={}))


def test_contracts_round_trip_and_reject_unknown_keys() -> None:
    from datasync.exceptions import ValidationError

    step = PushInput(
        **REF,
        page_key="k",
        key=None,
        count=0,
        cursor=None,
        pages=1,
        records_in=0,
        records_out=0,
        state={"a": 1},
    )
    assert PushInput.from_json(step.to_json()) == step
    assert step.to_json()["recordsIn"] == 0 and "records_in" not in step.to_json()
    with pytest.raises(ValidationError, match="unknown keys"):
        PushInput.from_json({**step.to_json(), "extra": 1})
    with pytest.raises(ValidationError, match="missing 'pageKey'"):
        PullInput.from_json({"tenantId": "a", "flowName": "b", "runId": "c"})


# -- fencing: a step that outlived its hold on the work ----------------------------------


def _begin(app: App) -> None:
    app.steps.begin(BeginInput(**REF, scheduled_for="2026-11-23T14:00:00Z"))


def _push(app: App, page: int, cursor: Any, key: str | None = None, count: int = 0) -> None:
    app.steps.push(
        PushInput(
            **REF,
            page_key=f"{RUN}/p{page}",
            key=key,
            count=count,
            cursor=cursor,
            pages=page,
            records_in=page * 2,
            records_out=page * 2,
            state={"page": page},
        )
    )


def test_a_stale_push_returns_and_leaves_the_newer_checkpoint(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    _begin(app)
    for page in (1, 2, 3):
        _push(app, page, cursor=page * 2)
    with caplog.at_level(logging.WARNING, logger="datasync.steps"):
        _push(app, 2, cursor="stale")  # a runtime that stalled in page 2 wakes up
    assert f"stale write from {RUN} page 2 rejected: the checkpoint is at page 3" in caplog.text
    cp = app.runs.load_checkpoint("acme", "contacts")
    assert (cp.cursor, cp.state) == (6, {"page": 3})
    assert app.runs.get(RUN).pages == 3


def test_a_stale_pull_never_replaces_what_the_current_holder_staged(app: App) -> None:
    _begin(app)
    key = RUN + "/p1"
    current = app.steps.pull(PullInput(**REF, page_key=key, cursor=None, state={}))
    stale = app.steps.pull(PullInput(**REF, page_key=key, cursor=None, state={}))
    assert current.key != stale.key
    app.pages.put(stale.key or "", [{"id": "from the stale pull"}])
    out = app.steps.transform(
        TransformInput(**REF, page_key=key, key=current.key or "", state=current.state)
    )
    assert app.pages.get(out.key or "") == [{"id": 0}, {"id": 1}]
    _push(app, 1, cursor=2, key=out.key, count=out.count)
    assert _pushed(app)[-1] == (key, [{"id": 0}, {"id": 1}])
    assert app.pages.keys() == []  # every attempt's staging for page 1 went with it


def test_a_page_another_holder_pushed_and_deleted_is_done(app: App) -> None:
    _begin(app)
    key = RUN + "/p1"
    pulled = app.steps.pull(PullInput(**REF, page_key=key, cursor=None, state={}))
    out = app.steps.transform(
        TransformInput(**REF, page_key=key, key=pulled.key or "", state=pulled.state)
    )
    _push(app, 1, cursor=2, key=out.key, count=out.count)  # the holder that took over
    pushes = len(_pushed(app))
    _push(app, 1, cursor=2, key=out.key, count=out.count)  # the stalled one: page gone
    assert len(_pushed(app)) == pushes  # nothing pushed twice, no error
    with pytest.raises(NotFound):  # gone and never checkpointed: a real loss, an error
        _push(app, 2, cursor=3, key=RUN + "/p2/out-x", count=1)


def test_finish_drops_the_runs_staged_pages_and_never_reopens_a_finished_run(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    _begin(app)
    app.pages.put(RUN + "/p7/pulled-late", [{"id": 1}])  # left by a stale pull
    app.pages.put("Workflow-acme--contacts-20261123T150000Z/p1/pulled-x", [{"id": 2}])
    app.steps.finish(FinishInput(**REF, status="Completed"))
    assert app.pages.keys() == ["Workflow-acme--contacts-20261123T150000Z/p1/pulled-x"]
    with caplog.at_level(logging.WARNING, logger="datasync.steps"):
        app.steps.finish(FinishInput(**REF, status="Failed", error="late"))
    assert "rejected: the run is Completed already" in caplog.text
    assert (app.runs.get(RUN).status, app.runs.get(RUN).error) == ("Completed", None)
    with pytest.raises(PermanentError, match="is Completed; it does not run again"):
        _begin(app)
