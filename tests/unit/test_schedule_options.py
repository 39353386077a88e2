"""Schedule options in the flow entry (strict validation, camelCase documents), the
schedule revision, jitter offsets, occurrences, the look-ahead setting, and the job
message's optional keys and rerun instance ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from datasync.config import Settings
from datasync.exceptions import ConfigError, InvalidDocument, ValidationError
from datasync.models import Job, parse_tenant
from datasync.names import parse_instance_id, rerun_instance_id
from datasync.schedule import (
    ScheduleOptions,
    default_lookahead,
    jitter_offset,
    occurrences,
    revision,
)


def tenant(**flow: Any) -> Any:
    return parse_tenant({"id": "acme", "flows": [{"name": "sync", "cron": "0 0 * * * *", **flow}]})


def problems(**flow: Any) -> str:
    with pytest.raises(InvalidDocument) as err:
        tenant(**flow)
    return str(err.value)


def test_options_round_trip_in_camel_case_and_defaults_are_not_written() -> None:
    t = tenant(
        jitter=120,
        catchUp="all",
        catchUpWindow=7200,
        startAt="2026-12-01T09:00:00+01:00",
        endAt="2027-01-01T00:00:00Z",
        pausedUntil="2026-12-24T00:00:00Z",
        overlap="bufferOne",
    )
    entry = t.to_doc()["flows"][0]
    assert entry["jitter"] == 120 and entry["catchUp"] == "all" and entry["catchUpWindow"] == 7200
    assert entry["startAt"] == "2026-12-01T08:00:00Z"  # normalised to UTC
    assert entry["endAt"] == "2027-01-01T00:00:00Z"
    assert entry["pausedUntil"] == "2026-12-24T00:00:00Z"
    assert entry["overlap"] == "bufferOne"
    assert parse_tenant(t.to_doc()) == t
    plain = tenant().to_doc()["flows"][0]
    assert not {"jitter", "catchUp", "catchUpWindow", "startAt", "endAt", "pausedUntil"} & set(
        plain
    )


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        ({"jitter": "30"}, "tenant acme: flows[0].jitter: expected an integer, got '30'"),
        ({"jitter": -1}, "tenant acme: flows[0].jitter: must be at least 0, got -1"),
        ({"jitter": 86401}, "tenant acme: flows[0].jitter: must be at most 86400, got 86401"),
        ({"jitter": True}, "tenant acme: flows[0].jitter: expected an integer, got true"),
        ({"catchUp": "some"}, "tenant acme: flows[0].catchUp: expected 'latest', 'all' or 'none'"),
        (
            {"catchUpWindow": 60},
            "tenant acme: flows[0].catchUpWindow: is only used with catchUp 'all'",
        ),
        ({"catchUp": "all", "catchUpWindow": 0}, "flows[0].catchUpWindow: must be at least 1"),
        ({"startAt": "2026-12-01T09:00:00"}, "flows[0].startAt: time '2026-12-01T09:00:00' has no"),
        ({"pausedUntil": 5}, "flows[0].pausedUntil: expected an ISO 8601 time with an offset"),
        (
            {"startAt": "2026-12-02T00:00:00Z", "endAt": "2026-12-01T00:00:00Z"},
            "tenant acme: flows[0].endAt: must not be before startAt",
        ),
        ({"overlap": "bufferTwo"}, "flows[0].overlap: expected 'skip', 'queue', 'bufferOne' or"),
        ({"jiter": 5}, "tenant acme: flows[0].jiter: unknown key; did you mean 'jitter'?"),
    ],
)
def test_bad_options_are_named_by_tenant_and_field(flow: dict[str, Any], message: str) -> None:
    assert message in problems(**flow)


def test_revision_is_stable_and_covers_what_decides_the_schedule() -> None:
    base = tenant()
    rev = base.flows[0].revision(base)
    assert rev == revision("0 0 * * * *", "UTC") and len(rev) == 12
    assert tenant(nextRunUtc="2026-11-23T14:00:00Z").flows[0].revision(base) == rev
    assert tenant(config={"x": 1}, overlap="queue").flows[0].revision(base) == rev
    changed = [
        tenant(cron="0 30 * * * *"),
        tenant(enabled=False),
        tenant(jitter=5),
        tenant(catchUp="none"),
        tenant(startAt="2026-01-01T00:00:00Z"),
        tenant(endAt="2027-01-01T00:00:00Z"),
        tenant(pausedUntil="2026-12-01T00:00:00Z"),
    ]
    revs = {t.flows[0].revision(t) for t in changed}
    assert rev not in revs and len(revs) == len(changed)
    paused = parse_tenant({**base.to_doc(), "paused": True})
    other_tz = parse_tenant({**base.to_doc(), "timezone": "Europe/Amsterdam"})
    assert paused.flows[0].revision(paused) != rev
    assert other_tz.flows[0].revision(other_tz) != rev


def test_jitter_offsets_are_deterministic_bounded_and_spread() -> None:
    assert jitter_offset("acme", "sync", 0) == 0
    offsets = [jitter_offset(f"t{n}", "sync", 300) for n in range(1000)]
    assert offsets == [jitter_offset(f"t{n}", "sync", 300) for n in range(1000)]
    assert min(offsets) >= 0 and max(offsets) <= 300
    assert len(set(offsets)) > 250  # 100k tenants on one cron do not all start at :00:00


def test_occurrences_after_until_and_limit() -> None:
    after = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    until = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    got = list(occurrences("0 */15 * * * *", "UTC", after, until))
    assert [t.minute for t in got] == [15, 30, 45, 0]  # strictly after, until inclusive
    assert len(list(occurrences("0 */15 * * * *", "UTC", after, limit=10))) == 10
    with pytest.raises(ValidationError):
        list(occurrences("0 * * * *", "UTC", after, until))
    with pytest.raises(ValidationError):
        list(occurrences("0 0 * * * *", "Mars/Base", after, until))


def test_options_allow_only_inside_their_bounds() -> None:
    t = datetime(2026, 12, 1, tzinfo=UTC)
    assert ScheduleOptions().allows(t)
    assert not ScheduleOptions(start_at=datetime(2026, 12, 2, tzinfo=UTC)).allows(t)
    assert ScheduleOptions(end_at=t).allows(t)  # inclusive
    assert not ScheduleOptions(paused_until=datetime(2026, 12, 2, tzinfo=UTC)).allows(t)


def test_default_lookahead_is_two_scan_intervals_plus_a_margin() -> None:
    assert default_lookahead("0 0 * * * *") == 2 * 3600 + 360
    assert default_lookahead("0 * * * * *") == 2 * 60 + 60
    assert default_lookahead("0 0 9,17 * * *") == 2 * 16 * 3600 + 1.6 * 3600
    assert default_lookahead("0 0 0 * * 0") == 518_400  # weekly: capped (Azure's 7 days)
    assert Settings.from_env({}).lookahead() == 7560
    assert Settings.from_env({"DATASYNC_SCAN_SCHEDULE": "0 * * * * *"}).lookahead() == 180


def test_lookahead_setting_overrides_and_is_range_checked() -> None:
    assert Settings.from_env({"DATASYNC_LOOKAHEAD_SECONDS": "0"}).lookahead() == 0
    assert Settings.from_env({"DATASYNC_LOOKAHEAD_SECONDS": "900"}).lookahead() == 900
    for bad in ("-1", "600000", "soon"):
        with pytest.raises(ConfigError, match="DATASYNC_LOOKAHEAD_SECONDS"):
            Settings.from_env({"DATASYNC_LOOKAHEAD_SECONDS": bad})


WHEN = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_job_optional_keys_round_trip_and_are_absent_when_none() -> None:
    plain = Job("acme", "sync", WHEN)
    assert plain.to_message() == (
        '{"tenantId":"acme","flowName":"sync","scheduledFor":"2026-11-23T14:00:00Z"}'
    )
    full = Job("acme", "sync", WHEN, revision="0903ab22dec4", traceparent=TRACE, rerun=2, note="x")
    back = Job.from_message(full.to_message())
    assert (back.revision, back.traceparent, back.rerun, back.note) == (
        "0903ab22dec4",
        TRACE,
        2,
        "x",
    )
    assert back.instance_id == "Workflow-acme--sync-20261123T140000Z-rerun2"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"revision": 5}, "revision must be 1-64 hex digits"),
        ({"revision": "ZZ"}, "revision must be 1-64 hex digits"),
        ({"traceparent": "abc"}, "traceparent must be a W3C traceparent"),
        ({"rerun": 0}, "rerun must be 1-9999"),
        ({"rerun": True}, "rerun must be 1-9999"),
        ({"note": 1}, "note must be a string"),
        ({"deferredReason": "x"}, "unknown key 'deferredReason'"),
    ],
)
def test_job_optional_keys_are_strict(extra: dict[str, Any], message: str) -> None:
    import json

    body = {"tenantId": "acme", "flowName": "sync", "scheduledFor": "2026-11-23T14:00:00Z"}
    with pytest.raises(ValidationError, match=message):
        Job.from_message(json.dumps({**body, **extra}))


def test_rerun_instance_ids_format_and_parse() -> None:
    base = "Workflow-acme-eu--contacts-to-erp-20261123T140000Z"
    assert rerun_instance_id(base, 3) == base + "-rerun3"
    assert parse_instance_id(base + "-rerun3") == ("acme-eu", "contacts-to-erp", WHEN, 3)
    assert parse_instance_id(base) == ("acme-eu", "contacts-to-erp", WHEN, None)
    for bad in ("Workflow-acme-sync-20261123T140000Z", base + "-rerun0", base + "x", 7):
        with pytest.raises(ValidationError, match="not a DataSync instance id"):
            parse_instance_id(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="rerun must be"):
        rerun_instance_id(base, 0)
