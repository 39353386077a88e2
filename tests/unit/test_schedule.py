from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from datasync.exceptions import ValidationError
from datasync.schedule import due_at, next_occurrence, plan, validate_cron

UTC = UTC


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def occurrences_on(cron: str, tz: str, day: date) -> list[datetime]:
    """Every occurrence whose local date is ``day`` (walks from the day before)."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone) - timedelta(days=1)
    end = start + timedelta(days=3)
    out, t = [], start.astimezone(UTC)
    while t < end:
        t = next_occurrence(cron, tz, t)
        if t.astimezone(zone).date() == day:
            out.append(t)
    return out


@pytest.mark.parametrize(
    "cron, tz, day, expected",
    [
        # daily at a wall time inside the spring gap: once, at the first instant after the gap
        ("0 30 2 * * *", "Europe/Amsterdam", date(2026, 3, 29), ["2026-03-29T01:00:00"]),
        # daily at an ambiguous autumn wall time: once, the first (summer-time) 02:30
        ("0 30 2 * * *", "Europe/Amsterdam", date(2026, 10, 25), ["2026-10-25T00:30:00"]),
        ("0 30 2 * * *", "America/New_York", date(2026, 3, 8), ["2026-03-08T07:00:00"]),
        ("0 30 1 * * *", "America/New_York", date(2026, 11, 1), ["2026-11-01T05:30:00"]),
        # ordinary days around the transitions keep their wall time
        ("0 30 2 * * *", "Europe/Amsterdam", date(2026, 3, 30), ["2026-03-30T00:30:00"]),
        ("0 30 2 * * *", "Europe/Amsterdam", date(2026, 10, 26), ["2026-10-26T01:30:00"]),
        ("0 0 9 * * *", "America/New_York", date(2026, 11, 2), ["2026-11-02T14:00:00"]),
        # wall times outside the transition hour are untouched on the transition day
        ("0 0 12 * * *", "Europe/Amsterdam", date(2026, 3, 29), ["2026-03-29T10:00:00"]),
        ("0 0 12 * * *", "Europe/Amsterdam", date(2026, 10, 25), ["2026-10-25T11:00:00"]),
    ],
)
def test_daily_runs_exactly_once_per_day(cron, tz, day, expected):
    assert occurrences_on(cron, tz, day) == [utc(e) for e in expected]


@pytest.mark.parametrize(
    "cron, tz, day, count",
    [
        ("0 0 * * * *", "Europe/Amsterdam", date(2026, 3, 29), 23),
        ("0 0 * * * *", "Europe/Amsterdam", date(2026, 10, 25), 25),
        ("0 0 * * * *", "Europe/Amsterdam", date(2026, 10, 26), 24),
        ("0 0 * * * *", "America/New_York", date(2026, 3, 8), 23),
        ("0 0 * * * *", "America/New_York", date(2026, 11, 1), 25),
        ("0 15 * * * *", "America/New_York", date(2026, 11, 1), 25),
        ("0 */30 * * * *", "Europe/Amsterdam", date(2026, 10, 25), 50),
        ("0 0 */2 * * *", "Europe/Amsterdam", date(2026, 3, 29), 11),  # 02:00 does not exist
        ("0 0 * * * *", "UTC", date(2026, 10, 25), 24),
    ],
)
def test_hourly_follows_real_time_across_dst(cron, tz, day, count):
    got = occurrences_on(cron, tz, day)
    assert len(got) == count
    gaps = {b - a for a, b in itertools.pairwise(got)}
    step = timedelta(minutes=30) if "*/30" in cron else timedelta(hours=1)
    if "*/2" not in cron:
        assert gaps == {step}  # evenly spaced in real time: nothing doubled or lost


def test_hourly_autumn_runs_both_two_oclocks():
    zone = ZoneInfo("Europe/Amsterdam")
    got = [
        t.astimezone(zone)
        for t in occurrences_on("0 0 * * * *", "Europe/Amsterdam", date(2026, 10, 25))
    ]
    twos = [t for t in got if t.hour == 2]
    assert [t.utcoffset() for t in twos] == [timedelta(hours=2), timedelta(hours=1)]


@pytest.mark.parametrize(
    "cron, tz, after, expected",
    [
        # after inside the first pass of the fall-back hour: the repeated 02:00 comes next
        ("0 0 * * * *", "Europe/Amsterdam", "2026-10-25T00:15:00", "2026-10-25T01:00:00"),
        ("0 30 * * * *", "Europe/Amsterdam", "2026-10-25T00:15:00", "2026-10-25T00:30:00"),
        ("0 30 * * * *", "Europe/Amsterdam", "2026-10-25T00:30:00", "2026-10-25T01:30:00"),
        # after inside the second pass: wall-clock crons do not run the repeated hour again
        ("0 30 2 * * *", "Europe/Amsterdam", "2026-10-25T01:15:00", "2026-10-26T01:30:00"),
        # several wall times inside the spring gap collapse into one run at 03:00
        ("0 0,30 2,3 * * *", "Europe/Amsterdam", "2026-03-28T23:00:00", "2026-03-29T01:00:00"),
        ("0 0,30 2,3 * * *", "Europe/Amsterdam", "2026-03-29T01:00:00", "2026-03-29T01:30:00"),
        # seconds field, first
        ("30 * * * * *", "UTC", "2026-01-01T00:00:00", "2026-01-01T00:00:30"),
        ("*/10 * * * * *", "UTC", "2026-01-01T00:00:05", "2026-01-01T00:00:10"),
        ("0 0 0 * * *", "UTC", "2026-01-01T00:00:00", "2026-01-02T00:00:00"),  # strictly after
        # fixed offsets and far-away zones
        ("0 0 9 * * *", "Asia/Kolkata", "2026-06-01T00:00:00", "2026-06-01T03:30:00"),
        ("0 0 9 * * *", "Australia/Sydney", "2026-06-01T00:00:00", "2026-06-01T23:00:00"),
        ("0 0 9 * * mon-fri", "Europe/Amsterdam", "2026-11-20T09:00:00", "2026-11-23T08:00:00"),
        ("0 0 0 1 * *", "America/New_York", "2026-01-15T00:00:00", "2026-02-01T05:00:00"),
    ],
)
def test_next_occurrence_table(cron, tz, after, expected):
    got = next_occurrence(cron, tz, utc(after))
    assert got == utc(expected)
    assert got.utcoffset() == timedelta(0)


def test_results_are_strictly_increasing_and_accept_any_aware_after():
    t = utc("2026-10-24T20:00:00")
    for _ in range(200):
        nxt = next_occurrence("0 */7 * * * *", "Europe/Amsterdam", t)
        assert nxt > t
        t = nxt
    local_after = datetime(2026, 6, 1, 2, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert next_occurrence("0 0 * * * *", "UTC", local_after) == utc("2026-06-01T01:00:00")


def test_next_occurrence_is_cached_and_cheap():
    import time

    after = utc("2026-05-05T05:05:05")
    first = next_occurrence("0 0 2 * * *", "Europe/Amsterdam", after)
    start = time.perf_counter()
    for _ in range(30_000):
        assert next_occurrence("0 0 2 * * *", "Europe/Amsterdam", after) == first
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "cron, fragment",
    [
        ("0 * * * *", "six fields, seconds first"),
        ("0 0 * * * * 2026", "six fields, seconds first"),
        ("", "six fields, seconds first"),
        ("@hourly", "six fields, seconds first"),
        ("61 0 * * * *", "not a valid six-field cron"),
        ("0 0 25 * * *", "not a valid six-field cron"),
        ("0 0 0 30 2 *", "not a valid six-field cron"),
        ("a b c d e f", "not a valid six-field cron"),
    ],
)
def test_invalid_crons(cron, fragment):
    with pytest.raises(ValidationError, match=fragment):
        validate_cron(cron)
    with pytest.raises(ValidationError):
        next_occurrence(cron, "UTC", utc("2026-01-01T00:00:00"))


def test_invalid_inputs():
    with pytest.raises(ValidationError, match="must be a string"):
        validate_cron(5)
    with pytest.raises(ValidationError, match="unknown timezone 'Mars/Base'"):
        next_occurrence("0 0 * * * *", "Mars/Base", utc("2026-01-01T00:00:00"))
    with pytest.raises(ValidationError, match="timezone-aware"):
        next_occurrence("0 0 * * * *", "UTC", datetime(2026, 1, 1))
    assert validate_cron("0 0 9 * * mon-fri") is None


def test_due_at():
    now = utc("2026-11-23T14:00:00")
    assert due_at(now, now)
    assert due_at(now - timedelta(days=3), now)
    assert not due_at(now + timedelta(seconds=1), now)
    assert not due_at(None, now)


def test_plan_missing_value_is_not_due():
    now = utc("2026-11-23T14:10:00")
    assert plan("0 0 * * * *", "UTC", None, now) == (None, utc("2026-11-23T15:00:00"))


def test_plan_coalesces_missed_runs_into_one():
    now = utc("2026-11-23T14:10:00")
    stored = utc("2026-11-23T09:00:00")  # five hourly occurrences missed
    assert plan("0 0 * * * *", "UTC", stored, now) == (stored, utc("2026-11-23T15:00:00"))
    # the next tick does not run the missed ones again
    assert plan("0 0 * * * *", "UTC", utc("2026-11-23T15:00:00"), now)[0] is None


def test_plan_due_exactly_now_and_future():
    now = utc("2026-11-23T14:00:00")
    assert plan("0 0 * * * *", "UTC", now, now) == (now, utc("2026-11-23T15:00:00"))
    future = utc("2026-11-24T09:00:00")
    assert plan("0 0 * * * *", "UTC", future, now) == (None, future)


def test_plan_in_tenant_timezone():
    now = utc("2026-10-24T12:00:00")
    assert plan("0 30 2 * * *", "Europe/Amsterdam", None, now) == (None, utc("2026-10-25T00:30:00"))
