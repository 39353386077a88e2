"""The look-ahead tick on real stores (in-memory and embedded SQLite): every occurrence in
the window enqueued once, hidden until due; repeated, racing and crashed ticks never lose
or double an occurrence; catch-up, bounds, jitter and DST through the look-ahead path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from datasync.adapters.local import LocalBackend
from datasync.adapters.memory import ManualClock, MemoryBackend
from datasync.models import Job, parse_tenant
from datasync.ports import DueFlow
from datasync.scanner import NONE_GRACE, scan_and_enqueue, schedule_now
from datasync.schedule import jitter_offset, occurrences, revision

T0 = datetime(2026, 11, 23, 14, 0, 30, tzinfo=UTC)
HOUR = 3600.0
LOOKAHEAD = 2 * HOUR + 360  # the default for an hourly scan


class Env:
    """One backend's tenant store and job queue on a hand-driven clock."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.clock = ManualClock(T0)
        backend: Any = (
            MemoryBackend(clock=self.clock)
            if kind == "memory"
            else LocalBackend(tmp, clock=self.clock)
        )
        self.backend = backend
        self.tenants = backend.tenants
        self.queue = backend.queues.queue("flow-jobs")

    def apply(self, *docs: dict[str, Any]) -> None:
        self.tenants.upsert_many([parse_tenant(d) for d in docs])

    def tick(self, at: datetime | None = None, lookahead: float = LOOKAHEAD) -> Any:
        if at is not None:
            self.clock.set(at)
        return scan_and_enqueue(self.tenants, self.queue, self.clock(), lookahead=lookahead)

    def queued(self) -> list[tuple[Job, datetime]]:
        items = self.queue.peek_all()
        out = [(Job.from_message(i.body), i.next_visible_at) for i in items]
        return sorted(out, key=lambda p: (p[0].instance_id, p[1]))

    def next_run(self, tenant: str = "acme") -> str | None:
        entry = self.tenants.get(tenant).flows[0]
        return None if entry.next_run_utc is None else entry.next_run_utc.isoformat()


@pytest.fixture(params=["memory", "sqlite"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    e = Env(request.param, tmp_path)
    yield e
    if hasattr(e.backend, "close"):
        e.backend.close()


def doc(cron: str = "0 */15 * * * *", tz: str = "UTC", **flow: Any) -> dict[str, Any]:
    paused = flow.pop("paused", False)
    return {
        "id": flow.pop("tenant", "acme"),
        "timezone": tz,
        "paused": paused,
        "flows": [{"name": "sync", "cron": cron, **flow}],
    }


def z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_tick_enqueues_the_whole_window_each_hidden_until_due(env: Env) -> None:
    env.apply(doc(nextRunUtc="2026-11-23T14:15:00Z"))
    result = env.tick()
    horizon = T0 + timedelta(seconds=LOOKAHEAD)
    expected = list(occurrences("0 */15 * * * *", "UTC", T0, horizon))
    assert result.due == len(expected) == 8 and result.advanced == 1
    got = env.queued()
    assert [j.scheduled_for for j, _ in got] == expected
    for job, visible in got:  # delay to its due time, by the queue's own clock
        assert visible == job.scheduled_for
        assert job.revision == revision("0 */15 * * * *", "UTC")
    # nextRunUtc moved past the last enqueued occurrence: the first one after the window
    assert env.next_run() == "2026-11-23T16:15:00+00:00"
    assert z(env.next_run() or "") > expected[-1]


def test_ticking_again_enqueues_nothing_twice(env: Env) -> None:
    env.apply(doc(nextRunUtc="2026-11-23T14:15:00Z"))
    env.tick()
    again = env.tick()
    assert again.due == 0
    assert len(env.queued()) == 8


def hourly_ticks(env: Env, hours: int, skip: frozenset[int] = frozenset()) -> None:
    for h in range(hours):
        if h not in skip:
            env.tick(T0 + timedelta(hours=h))


def test_successive_ticks_enqueue_every_occurrence_exactly_once(env: Env) -> None:
    env.apply(doc())  # no nextRunUtc: computed from now
    hourly_ticks(env, 24)
    ids = [j.instance_id for j, _ in env.queued()]
    assert len(ids) == len(set(ids))  # the queue holds each occurrence once
    last_horizon = T0 + timedelta(hours=23, seconds=LOOKAHEAD)
    assert [j.scheduled_for for j, _ in env.queued()] == list(
        occurrences("0 */15 * * * *", "UTC", T0, last_horizon)
    )
    # at most one window: nothing beyond the last tick's horizon
    assert all(j.scheduled_for <= last_horizon for j, _ in env.queued())


def test_a_missed_tick_loses_nothing(env: Env) -> None:
    env.apply(doc())
    hourly_ticks(env, 6, skip=frozenset({2}))  # the window covers two scan intervals
    assert [j.scheduled_for for j, _ in env.queued()] == list(
        occurrences("0 */15 * * * *", "UTC", T0, T0 + timedelta(hours=5, seconds=LOOKAHEAD))
    )


class CrashingAdvance:
    """The tenant store of a scheduler that dies after enqueueing, before the write-back."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def due_flows(self, now: datetime, **kw: Any) -> Iterator[list[DueFlow]]:
        return self.inner.due_flows(now, **kw)

    def advance(self, updates: Any) -> list[DueFlow]:
        raise SystemExit("crashed between enqueue and write-back")


def test_a_crash_between_enqueue_and_write_back_neither_skips_nor_doubles(env: Env) -> None:
    env.apply(doc(nextRunUtc="2026-11-23T14:15:00Z"))
    with pytest.raises(SystemExit):
        scan_and_enqueue(CrashingAdvance(env.tenants), env.queue, T0, lookahead=LOOKAHEAD)  # type: ignore[arg-type]
    assert env.next_run() == "2026-11-23T14:15:00+00:00"  # not moved on
    env.tick(T0 + timedelta(minutes=5))  # the next tick re-enqueues the same occurrences
    got = env.queued()
    ids = {j.instance_id for j, _ in got}
    expected = list(
        occurrences("0 */15 * * * *", "UTC", T0, T0 + timedelta(minutes=5, seconds=LOOKAHEAD))
    )
    assert sorted(ids) == sorted(Job("acme", "sync", t).instance_id for t in expected)
    # the duplicates carry the same instance ids: the start collapses them (admission tests)
    assert len(got) > len(ids)


class RacingStore:
    """Runs a second scheduler's whole tick just before the first one writes back."""

    def __init__(self, inner: Any, other: Any) -> None:
        self.inner, self.other, self.fired = inner, other, False

    def due_flows(self, now: datetime, **kw: Any) -> Iterator[list[DueFlow]]:
        return self.inner.due_flows(now, **kw)

    def advance(self, updates: Any) -> list[DueFlow]:
        if not self.fired:
            self.fired = True
            self.other()
        return self.inner.advance(updates)


def test_two_schedulers_racing_one_write_back_loses_and_ids_collapse(env: Env) -> None:
    env.apply(doc(nextRunUtc="2026-11-23T14:15:00Z"))
    second: list[Any] = []
    racing = RacingStore(env.tenants, lambda: second.append(env.tick()))
    first = scan_and_enqueue(racing, env.queue, T0, lookahead=LOOKAHEAD)  # type: ignore[arg-type]
    assert second[0].advanced == 1
    # the loser's compare-and-set finds the winner's value (SQLite counts the identical
    # value as applied, the document stores as a conflict): either way one value stands
    assert first.conflicts + first.advanced == 1
    ids = [j.instance_id for j, _ in env.queued()]
    assert len(set(ids)) == 8 and len(ids) == 16  # each occurrence twice, one id each
    env.tick(T0 + timedelta(hours=1))  # and the schedule goes on from the winner's write
    assert env.next_run() == "2026-11-23T17:15:00+00:00"


def test_lookahead_zero_is_todays_tick(env: Env) -> None:
    env.apply(doc(nextRunUtc="2026-11-23T14:00:00Z"))
    result = env.tick(lookahead=0)
    assert result.due == 1 and env.next_run() == "2026-11-23T14:15:00+00:00"
    ((job, visible),) = env.queued()
    assert job.scheduled_for == z("2026-11-23T14:00:00Z") and visible == T0


def test_jitter_delays_visibility_but_not_scheduled_for(env: Env) -> None:
    docs = [
        doc("0 0 * * * *", tenant=f"t{n}", jitter=600, nextRunUtc="2026-11-23T15:00:00Z")
        for n in range(20)
    ]
    env.apply(*docs)
    env.tick()
    offsets = set()
    for job, visible in env.queued():
        assert job.scheduled_for.minute == 0 and job.scheduled_for.second == 0
        offset = (visible - job.scheduled_for).total_seconds()
        assert offset == jitter_offset(job.tenant_id, "sync", 600)
        assert 0 <= offset <= 600
        offsets.add(offset)
    assert len(offsets) > 10  # spread out, not all at :00:00


@pytest.mark.parametrize(
    ("catch_up", "extra", "expected"),
    [
        ("latest", {}, ["2026-11-23T09:00:00Z"]),  # coalesced into the stored one
        (
            "all",
            {"catchUpWindow": 3 * 3600},
            ["2026-11-23T12:00:00Z", "2026-11-23T13:00:00Z", "2026-11-23T14:00:00Z"],
        ),
        ("none", {}, []),
    ],
)
def test_catch_up_after_downtime(
    env: Env, catch_up: str, extra: dict[str, Any], expected: list[str]
) -> None:
    env.apply(doc("0 0 * * * *", catchUp=catch_up, nextRunUtc="2026-11-23T09:00:00Z", **extra))
    env.tick()
    past = [j.scheduled_for for j, _ in env.queued() if j.scheduled_for <= T0]
    assert past == [z(t) for t in expected]
    future = [j.scheduled_for for j, _ in env.queued() if j.scheduled_for > T0]
    assert future == [z("2026-11-23T15:00:00Z"), z("2026-11-23T16:00:00Z")]


def test_catch_up_none_still_runs_a_trigger(env: Env) -> None:
    env.apply(doc("0 0 * * * *", catchUp="none", nextRunUtc="2026-11-23T14:00:10Z"))
    env.tick()  # 20 s after the trigger set it: within NONE_GRACE
    assert (T0 - z("2026-11-23T14:00:10Z")).total_seconds() < NONE_GRACE
    assert z("2026-11-23T14:00:10Z") in [j.scheduled_for for j, _ in env.queued()]


def test_start_end_and_paused_until_bound_the_occurrences(env: Env) -> None:
    env.apply(
        doc(
            startAt="2026-11-23T14:30:00Z",
            endAt="2026-11-23T15:45:00Z",
            pausedUntil="2026-11-23T15:00:00+00:00",
        )
    )
    env.tick()
    got = [j.scheduled_for for j, _ in env.queued()]
    assert got == [
        z(t)
        for t in (
            "2026-11-23T15:00:00Z",
            "2026-11-23T15:15:00Z",
            "2026-11-23T15:30:00Z",
            "2026-11-23T15:45:00Z",
        )
    ]


def test_paused_until_in_the_past_resumes_by_itself(env: Env) -> None:
    env.apply(doc(pausedUntil="2026-11-23T12:00:00Z", nextRunUtc="2026-11-23T14:15:00Z"))
    env.tick()
    assert len(env.queued()) == 8


def dst_window(env: Env, cron: str, start: datetime, hours: int) -> list[str]:
    env.apply(doc(cron, tz="Europe/Amsterdam"))
    for h in range(hours):
        env.tick(start + timedelta(hours=h))
    return [j.scheduled_for.strftime("%Y-%m-%dT%H:%M:%SZ") for j, _ in env.queued()]


def test_dst_spring_gap_wall_clock_runs_once_after_the_gap(env: Env) -> None:
    # 02:30 local does not exist on 2026-03-29 in Amsterdam: it runs at 03:00 CEST (01:00Z)
    got = dst_window(env, "0 30 2 * * *", datetime(2026, 3, 28, 22, 0, 5, tzinfo=UTC), 6)
    assert got == ["2026-03-29T01:00:00Z"]


def test_dst_fall_back_wall_clock_runs_once_at_the_first_pass(env: Env) -> None:
    # 02:30 local occurs twice on 2026-10-25: it runs once, at the first (00:30Z)
    got = dst_window(env, "0 30 2 * * *", datetime(2026, 10, 24, 21, 0, 5, tzinfo=UTC), 6)
    assert got == ["2026-10-25T00:30:00Z"]


def test_dst_elapsed_hourly_runs_25_times_on_the_fall_back_day(env: Env) -> None:
    start = datetime(2026, 10, 24, 22, 0, 5, tzinfo=UTC)  # 00:00:05 local (CEST)
    got = dst_window(env, "0 0 * * * *", start, 25)
    day = [t for t in got if "2026-10-24T22:00:00Z" < t <= "2026-10-25T23:00:00Z"]
    assert len(day) == 25 and len(set(day)) == 25  # both 02:00s, each once


def test_dst_elapsed_hourly_runs_23_times_on_the_spring_day(env: Env) -> None:
    start = datetime(2026, 3, 28, 23, 0, 5, tzinfo=UTC)  # 00:00:05 local (CET)
    got = dst_window(env, "0 0 * * * *", start, 24)
    day = [t for t in got if "2026-03-28T23:00:00Z" < t <= "2026-03-29T22:00:00Z"]
    assert len(day) == 23 and len(set(day)) == 23  # no 02:00 invented in the gap


def test_schedule_now_enqueues_one_tenants_window_at_once(env: Env) -> None:
    env.apply(doc(tenant="acme"), doc(tenant="other"))
    result = schedule_now(env.tenants, env.queue, "acme", T0, lookahead=LOOKAHEAD)
    assert result.due == 8 and result.advanced == 1
    assert {j.tenant_id for j, _ in env.queued()} == {"acme"}
    assert env.next_run("other") is None  # untouched


def test_invalid_options_are_reported_with_tenant_and_field(env: Env) -> None:
    env.apply(doc(nextRunUtc="2026-11-23T14:15:00Z"))
    good = env.tenants.get("acme")
    raw = good.to_doc()
    raw["flows"][0]["jitter"] = "lots"
    if isinstance(env.backend, MemoryBackend):
        env.backend.tenants.put_document(raw)
    else:  # the embedded store keeps options in its index: break it there
        with env.backend.db.write() as con:
            con.execute(
                "INSERT OR REPLACE INTO flow_options VALUES ('acme', 0, '{\"jitter\": \"lots\"}')"
            )
    result = env.tick()
    assert result.invalid == ["tenant acme: flows[0].jitter: expected an integer, got 'lots'"]
    assert env.queued() == []
