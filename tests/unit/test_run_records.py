"""Run records and run detail documents: the JSON keys, old records, the keyset token,
which pages are kept and folded, and masking of what is stored."""

from __future__ import annotations

import pytest

from datasync.exceptions import ValidationError
from datasync.records import (
    RunRecord,
    StepWrite,
    apply_step,
    fold,
    fold_candidate,
    parse_token,
    run_token,
)
from datasync.redact import register_secret

DESIGN_KEYS = [
    "instanceId", "tenantId", "flowName", "scheduledFor", "status", "startedAt",
    "finishedAt", "pages", "recordsIn", "recordsOut", "resumes", "error",
]  # fmt: skip


def _run(**kw: object) -> RunRecord:
    base: dict[str, object] = {
        "instance_id": "Workflow-acme--f-20261123T140000Z",
        "tenant_id": "acme",
        "flow_name": "f",
        "scheduled_for": "2026-11-23T14:00:00Z",
        "status": "Completed",
    }
    return RunRecord(**{**base, **kw})  # type: ignore[arg-type]


def test_design_keys_first_then_the_detail_and_old_records_load() -> None:
    run = _run(lateness_seconds=0.25, duration_seconds=3.5, rerun_of="Workflow-x", trace_id="t")
    d = run.to_json()
    assert list(d)[:12] == DESIGN_KEYS
    assert list(d)[12:] == [
        "latenessSeconds", "reason", "rerunOf", "traceId", "durationSeconds",
    ]  # fmt: skip
    assert RunRecord.from_json(d) == run
    old = RunRecord.from_json({k: v for k, v in d.items() if k in DESIGN_KEYS})
    assert old.lateness_seconds is None and old.reason is None


def test_the_token_round_trips_and_a_bad_one_is_a_clear_error() -> None:
    run = _run()
    assert parse_token(run_token(run)) == (run.scheduled_for, run.instance_id)
    for bad in ("", "%%%", "bm90IGpzb24", run_token(run)[:-3]):
        with pytest.raises(ValidationError, match="not a run list position"):
            parse_token(bad)


def test_first_and_latest_pages_are_kept_the_rest_folded() -> None:
    # keep 5: pages 1-3 for good, the latest 2; pushing page p folds page p - 2
    assert [fold_candidate(p, 5) for p in range(1, 9)] == [None] * 5 + [4, 5, 6]
    assert [fold_candidate(p, 500) for p in (250, 500, 501)] == [None, None, 251]


def test_stored_texts_are_masked_and_capped() -> None:
    secret = "pw-Qm3rT7-records"
    register_secret(secret)
    w = StepWrite(
        instance_id="r", tenant_id="acme", page=1, step="pull", started_at="2026-11-23T14:00:00Z",
        duration_seconds=0.1234, error=f"boom {secret}", cursor_before=f"c-{secret}",
        knows_cursor_before=True, cursor_after="x" * 500,
    )  # fmt: skip
    doc = apply_step(None, w)
    assert secret not in repr(doc)
    assert doc["cursorBefore"] == "c-***" and len(doc["cursorAfter"]) == 200
    assert doc["steps"]["pull"] == {
        "startedAt": "2026-11-23T14:00:00Z", "durationSeconds": 0.123, "attempts": 1,
        "error": "boom ***",
    }  # fmt: skip
    assert apply_step(doc, w)["steps"]["pull"]["attempts"] == 2
    summary = fold(fold(None, doc), {**doc, "page": 2})
    assert (summary["pages"], summary["firstPage"], summary["lastPage"]) == (2, 1, 2)
    assert _run(reason=f"skipped: {secret}").reason == "skipped: ***"
