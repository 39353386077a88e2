"""Cron schedules, DST-correct. Pure functions, no I/O.

A cron has six fields, seconds first (``sec min hour day month weekday``), and is read in
an IANA timezone. Daylight saving time is handled by one of two rules:

- **wall clock** (the hour field is fixed: ``2``, ``1,13``, ``8-18``, ...): occurrences are
  local wall times. One that falls in the spring-forward gap runs once, at the first valid
  instant after the gap; one that is ambiguous in the fall-back hour runs once, at its
  first occurrence (``fold=0``). A daily 02:30 job runs exactly once every day.
- **elapsed time** (the hour field starts with ``*``: ``*``, ``*/2``): occurrences are the
  real instants whose local reading matches. An hourly job runs at both 02:00s on the
  fall-back day (25 runs) and none is invented in the spring gap (23 runs).

Results are aware UTC datetimes, strictly after ``after``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from .exceptions import ValidationError

__all__ = ["due_at", "next_occurrence", "plan", "validate_cron", "validate_timezone"]

UTC = UTC
_MAX_STEPS = 200_000  # candidates examined per call before giving up (never hit in practice)


@lru_cache(maxsize=1024)
def _cron_problem(expr: str) -> str | None:
    fields = expr.split()
    if len(fields) != 6:
        return (
            f"cron {expr!r} has {len(fields)} field{'s' * (len(fields) != 1)}; "
            "expected six fields, seconds first (sec min hour day month weekday)"
        )
    try:
        ok = croniter.is_valid(expr, second_at_beginning=True, strict=True)
    except Exception:  # noqa: BLE001 - croniter raises odd things on odd input
        ok = False
    if not ok:
        return f"cron {expr!r} is not a valid six-field cron (sec min hour day month weekday)"
    return None


def validate_cron(expr: object) -> None:
    """Raise :class:`ValidationError` unless ``expr`` is a valid six-field cron."""
    if not isinstance(expr, str):
        raise ValidationError(f"cron must be a string, got {type(expr).__name__}")
    problem = _cron_problem(expr)
    if problem:
        raise ValidationError(problem)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def validate_timezone(name: object) -> ZoneInfo:
    """The :class:`ZoneInfo` for an IANA name, else :class:`ValidationError`."""
    if not isinstance(name, str):
        raise ValidationError(f"timezone must be a string, got {type(name).__name__}")
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"unknown timezone {name!r}") from None


def _offset_at(tz: ZoneInfo, ts: int) -> timedelta:
    return datetime.fromtimestamp(ts, tz).utcoffset()  # type: ignore[return-value]


def _gap_end(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """First instant in (lo, hi] (naive UTC) with hi's offset: where a spring gap ends."""
    epoch = datetime(1970, 1, 1)
    a, b = int((lo - epoch).total_seconds()), int((hi - epoch).total_seconds())
    target = _offset_at(tz, b)
    while b - a > 1:
        mid = (a + b) // 2
        if _offset_at(tz, mid) == target:
            b = mid
        else:
            a = mid
    return epoch + timedelta(seconds=b)


def _instants(tz: ZoneInfo, wall: datetime, elapsed: bool) -> list[datetime]:
    """Naive-UTC instants at which the naive local ``wall`` time occurs, per the rule."""
    off0 = wall.replace(tzinfo=tz).utcoffset()
    off1 = wall.replace(tzinfo=tz, fold=1).utcoffset()
    u0, u1 = wall - off0, wall - off1  # type: ignore[operator]
    if u0 == u1:
        return [u0]
    if u0 < u1:  # ambiguous (fall back): fold 0 first
        return [u0, u1] if elapsed else [u0]
    return [] if elapsed else [_gap_end(tz, u1, u0)]  # in the spring-forward gap


@lru_cache(maxsize=16384)
def _next(cron: str, tz_name: str, after: datetime) -> datetime:
    tz = _zone(tz_name)
    elapsed = cron.split()[2].startswith("*")
    local = after.astimezone(tz)
    wall = local.replace(tzinfo=None)
    start = wall
    if elapsed and local.fold == 0:
        other = local.replace(fold=1).utcoffset()
        if other != local.utcoffset():  # inside the first pass of a fall-back hour:
            start = wall - (local.utcoffset() - other)  # type: ignore[operator]
            # walls back to the start of that hour occur again later, after the change
    after_utc = after.astimezone(UTC).replace(tzinfo=None)
    it = croniter(cron, start, second_at_beginning=True)
    best: datetime | None = None
    try:
        for _ in range(_MAX_STEPS):
            candidate = it.get_next(datetime)
            instants = _instants(tz, candidate, elapsed)
            later = [u for u in instants if u > after_utc]
            if later and (best is None or min(later) < best):
                best = min(later)
            # Instants before and after a change of offset each grow with the wall time.
            # Unless we rewound into a fall-back hour, the first hit is the answer; else
            # go on until a wall's earliest instant is past `after`.
            if best is not None and (start == wall or instants[0] > after_utc):
                break
    except CroniterError:
        pass
    if best is None:
        raise ValidationError(f"cron {cron!r} has no occurrence after {after.isoformat()}")
    return best.replace(tzinfo=UTC)


def next_occurrence(cron: str, timezone: str, after: datetime) -> datetime:
    """The first occurrence of ``cron`` in ``timezone`` strictly after ``after`` (aware),
    as aware UTC. Cached on (cron, timezone, after): repeated calls are dict lookups."""
    validate_cron(cron)
    validate_timezone(timezone)
    if not isinstance(after, datetime) or after.utcoffset() is None:
        raise ValidationError("'after' must be a timezone-aware datetime")
    return _next(cron, timezone, after)


def due_at(next_run_utc: datetime | None, now: datetime) -> bool:
    """True when a stored next run exists and is not in the future."""
    return next_run_utc is not None and next_run_utc <= now


def plan(
    cron: str, tz: str, stored_next: datetime | None, now: datetime
) -> tuple[datetime | None, datetime]:
    """``(scheduled_for or None, new next run)`` for one flow at ``now``.

    No stored value: not due, next = next occurrence after now. Stored ≤ now: due for the
    stored time (missed occurrences coalesce into this one run), next = occurrence after
    now. Stored > now: not due, unchanged."""
    if stored_next is None:
        return None, next_occurrence(cron, tz, now)
    if stored_next <= now:
        return stored_next, next_occurrence(cron, tz, now)
    return None, stored_next
