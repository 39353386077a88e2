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

Per-flow options (:class:`ScheduleOptions`) bound and shift occurrences: ``startAt`` /
``endAt`` (inclusive) and ``pausedUntil`` drop occurrences outside them; ``jitter`` delays
a job's visibility by a deterministic per tenant × flow offset (:func:`jitter_offset`)
while its ``scheduledFor`` stays on the cron boundary. :func:`revision` is a short stable
hash of everything that decides a flow's schedule (not ``nextRunUtc``), carried by each
job so the starter can drop jobs enqueued before an edit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from .exceptions import ValidationError

__all__ = [
    "DEFAULT_OPTIONS",
    "MAX_JITTER",
    "MAX_LOOKAHEAD",
    "ScheduleOptions",
    "default_lookahead",
    "due_at",
    "jitter_offset",
    "next_occurrence",
    "occurrences",
    "plan",
    "revision",
    "scan_interval",
    "validate_cron",
    "validate_timezone",
]

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


def occurrences(
    cron: str,
    timezone: str,
    after: datetime,
    until: datetime | None = None,
    limit: int | None = None,
) -> Iterator[datetime]:
    """Occurrences strictly after ``after`` and at or before ``until`` (None: unbounded),
    at most ``limit`` of them, as aware UTC (the rules of :func:`next_occurrence`).
    A cron that never fires again simply ends the iteration."""
    validate_cron(cron)
    validate_timezone(timezone)
    if not isinstance(after, datetime) or after.utcoffset() is None:
        raise ValidationError("'after' must be a timezone-aware datetime")
    at, count = after, 0
    while limit is None or count < limit:
        try:
            at = _next(cron, timezone, at)
        except ValidationError:  # no occurrence any more (e.g. a fixed year has passed)
            return
        if until is not None and at > until:
            return
        count += 1
        yield at


MAX_JITTER = 86_400
"""Largest ``jitter`` a flow may ask for (seconds)."""
MAX_LOOKAHEAD = 518_400.0
"""Largest look-ahead (6 days): a delayed job plus its jitter must stay within Azure
Storage's 7-day visibility limit."""
MAX_CATCH_UP_WINDOW = 604_800


@dataclass(frozen=True, slots=True)
class ScheduleOptions:
    """The schedule options of one flow entry (validated; defaults = today's behaviour)."""

    jitter: int = 0
    catch_up: Literal["latest", "all", "none"] = "latest"
    catch_up_window: int | None = None  # seconds (catchUp=all); None: one day
    start_at: datetime | None = None
    end_at: datetime | None = None
    paused_until: datetime | None = None

    def allows(self, at: datetime) -> bool:
        """Whether an occurrence at ``at`` may run (inside startAt..endAt, not paused)."""
        if self.start_at is not None and at < self.start_at:
            return False
        if self.end_at is not None and at > self.end_at:
            return False
        return self.paused_until is None or at >= self.paused_until

    def canonical(self) -> list[object]:
        """A JSON-ready, order-fixed form (what :func:`revision` hashes)."""

        def z(dt: datetime | None) -> str | None:
            return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        window = self.catch_up_window if self.catch_up == "all" else None
        return [
            self.jitter,
            self.catch_up,
            window,
            z(self.start_at),
            z(self.end_at),
            z(self.paused_until),
        ]


DEFAULT_OPTIONS = ScheduleOptions()


def revision(
    cron: str,
    timezone: str,
    options: ScheduleOptions = DEFAULT_OPTIONS,
    *,
    enabled: bool = True,
    paused: bool = False,
) -> str:
    """A short stable hash (12 hex digits) of what decides a flow's schedule: cron,
    timezone, enabled, tenant paused and the schedule options — never ``nextRunUtc``, so
    a ``trigger`` does not supersede the jobs already enqueued."""
    text = json.dumps([cron, timezone, enabled, paused, options.canonical()], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def jitter_offset(tenant_id: str, flow_name: str, jitter: int) -> int:
    """The deterministic delay in ``[0, jitter]`` seconds of a tenant × flow's jobs."""
    if jitter <= 0:
        return 0
    digest = hashlib.blake2b(f"{tenant_id}--{flow_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (jitter + 1)


@lru_cache(maxsize=64)
def scan_interval(scan_schedule: str) -> float:
    """The longest gap (seconds) between ticks of a (UTC) scan schedule, over the next
    400 ticks from a fixed instant (capped at :data:`MAX_LOOKAHEAD`)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    longest = 0.0
    prev = start
    for at in occurrences(scan_schedule, "UTC", start, limit=400):
        longest = max(longest, (at - prev).total_seconds())
        prev = at
        if longest >= MAX_LOOKAHEAD:
            break
    return min(longest, MAX_LOOKAHEAD)


def default_lookahead(scan_schedule: str) -> float:
    """Two scan intervals plus a margin (a tenth of one, at least 60 s), capped at
    :data:`MAX_LOOKAHEAD`: one missed tick loses nothing."""
    interval = scan_interval(scan_schedule)
    return min(2 * interval + max(60.0, interval / 10), MAX_LOOKAHEAD)
