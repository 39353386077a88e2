"""The engine: workers' entry points, leases, wake-ups and the history cache.

It ties :mod:`.store` (SQL), :mod:`.planner` (pure episode planning), :mod:`.sdk` (the
orchestrator ``handle``) and :mod:`.wording` (the extension's texts) together. Several
runtimes may share one ``durable.db``: every work item is leased, a lease that is not
renewed (kill -9) expires and another runtime takes the work over.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .deadline import CallAbandoned, CallTimedOut, DeadlineRunner, Watchdog
from .events import TASK_COMPLETED, TASK_FAILED, event, iso
from .planner import InstanceBook, opening_events, plan_episode, start_decision
from .sdk import (
    OrchestratorOutcome,
    ReplaySchema,
    ReplaySession,
    install_fast_timestamps,
    invoke_orchestrator,
    orchestration_context,
)
from .store import Claim, Committed, DurableStore, StartRequest
from .wording import (
    UnknownOrchestratorError,
    activity_failure,
    died_failure,
    missing_activity_failure,
    timeout_failure,
)

__all__ = ["DurableEngine", "Episode", "InstanceStatus"]

log = logging.getLogger("datasync.durable")

HISTORY_CACHE = 512  # instances whose history (and live orchestrator) this runtime keeps
MAX_DEATHS = 3
"""Times a work item may be taken over from a runtime that died running it before it is
failed instead of run again (a step that kills its process would loop forever)."""


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """What ``client.get_status`` shows (and ``runs`` merges)."""

    instance_id: str
    name: str
    runtime_status: str
    input: str | None
    output: str | None
    created_time: str
    last_updated_time: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instanceId": self.instance_id,
            "createdTime": self.created_time,
            "lastUpdatedTime": self.last_updated_time,
            "input": _loads_or_text(self.input),
            "output": _loads_or_text(self.output),
            "runtimeStatus": self.runtime_status,
            "customStatus": None,
            "history": None,
        }


def _loads_or_text(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


@dataclass(slots=True)
class Episode:
    """One orchestrator invocation's bookkeeping (kept for benchmarks and tests).
    ``cached``: the live orchestrator was fed the new events (no full replay)."""

    instance_id: str
    history_events: int
    replay_seconds: float
    cached: bool = False


@dataclass(slots=True)
class _Cached:
    """What this runtime keeps of an instance between its episodes. Valid while the
    stored row still shows ``execution`` and ``size`` (another runtime appending to the
    history changes its size; continue_as_new changes the execution)."""

    execution: str
    size: int
    rows: list[str]  # the history, serialized as stored
    session: ReplaySession | None = None  # the orchestrator, suspended where it waits
    pending: list[dict[str, Any]] = field(default_factory=list)  # fed to it next time


@dataclass(slots=True)
class ReplayCheck:
    """``verify_replay``: cached episodes compared with a full replay, and mismatches."""

    compared: int = 0
    mismatches: list[str] = field(default_factory=list)


class DurableEngine:
    """Runs orchestrations and activities of one app over one SQLite file.

    :param orchestrators: orchestration name → the SDK ``handle`` callable.
    :param activities: activity name → ``(user_function, input_parameter_name)``.
    :param on_resume: called once per instance this runtime takes over from a dead one.
    :param activity_runner: calls an activity (``fn, kwargs``); the host awaits coroutines.
    :param replay_schema: what the engine asks the SDK for (the extension's V3 by default).
    :param activity_timeout: ``functionTimeout`` in seconds (None: unlimited). An activity
        still running then fails with the host's timeout text; its thread is abandoned.
    :param max_deaths: take-overs of one work item from a runtime that died running it
        before the item fails (:func:`~.wording.died_failure`) instead of running again.
    :param on_abandon: given by a host whose activity workers can be replaced: activities
        then run on the worker's own thread under a :class:`~.deadline.Watchdog`; one past
        ``activity_timeout`` is failed by the watchdog, ``on_abandon()`` starts another
        worker, and the stuck thread raises :class:`~.deadline.CallAbandoned` (it should
        stop serving) when its call returns at last. Without it, each call is handed to a
        pooled thread (:class:`~.deadline.DeadlineRunner`).
    :param replay_cache: keep each instance's orchestrator alive between its episodes and
        feed it only the new events (:class:`~.sdk.ReplaySession`); a full replay whenever
        the cache is cold, evicted, or anything is unexpected.
    :param verify_replay: also run a full replay for every cached episode, use its outcome
        and count any difference in :attr:`replay_check` (the differential tests).
    """

    def __init__(
        self,
        path: Path,
        *,
        orchestrators: dict[str, Callable[[str], str]],
        activities: dict[str, tuple[Callable[..., Any], str]],
        owner: str | None = None,
        lease_seconds: float = 6.0,
        on_resume: Callable[[str], None] | None = None,
        activity_runner: Callable[[Callable[..., Any], dict[str, Any]], Any] | None = None,
        replay_schema: int = ReplaySchema.V3,
        activity_timeout: float | None = None,
        max_deaths: int = MAX_DEATHS,
        replay_cache: bool = True,
        verify_replay: bool = False,
        on_abandon: Callable[[], None] | None = None,
        **removed: Any,
    ) -> None:
        if "error_text" in removed:  # activity errors are the worker's text now
            log.warning("DurableEngine(error_text=...) is ignored: redact in the activity")
            removed.pop("error_text")
        if removed:
            raise TypeError(f"unexpected arguments: {', '.join(removed)}")
        install_fast_timestamps()
        self.store = DurableStore(path)
        self.db = self.store.db
        self.orchestrators = orchestrators
        self.activities = activities
        self.owner = owner or f"runtime-{uuid.uuid4().hex[:12]}"
        self.lease_seconds = lease_seconds
        self.on_resume = on_resume
        self.activity_runner = activity_runner or (lambda fn, kwargs: fn(**kwargs))
        self.replay_schema = replay_schema
        self.activity_timeout = activity_timeout
        self.max_deaths = max_deaths
        self.replay_cache = replay_cache
        self.verify_replay = verify_replay
        self.replay_check = ReplayCheck()
        self._deadlines = DeadlineRunner()
        self.on_abandon = on_abandon
        self._watchdog = Watchdog()
        self.wakeup = threading.Condition()  # orchestration workers wait here
        # Work posted per kind, and where each kind waits: a new activity wakes one
        # activity worker, not every thread of the runtime.
        self._posted = {"orchestration": 0, "activity": 0}
        self._waits = {"orchestration": self.wakeup, "activity": threading.Condition()}
        self.episodes: list[Episode] = []  # bounded: see _record_episode
        # Instances this runtime ran lately (see _Cached), most recent last.
        self._history: OrderedDict[str, _Cached] = OrderedDict()
        self._history_lock = threading.Lock()
        # Work leased to this runtime by its own writes (a start, a commit, a completed
        # activity), run without a claim transaction: instance ids and work item ids.
        self._ready: dict[str, deque[Any]] = {"orchestration": deque(), "activity": deque()}
        self._starts: list[StartRequest] = []  # start_new calls waiting for a group commit
        self._starts_done = threading.Condition()
        self._start_leader = False
        self._held: set[tuple[str, str]] = set()  # ("instance"|"activity", key) leases held
        self._held_lock = threading.Lock()

    # -- client side -------------------------------------------------------------------
    def start_new(self, name: str, instance_id: str, input_json: str | None) -> None:
        """Start ``name`` as ``instance_id``, atomically, as the extension does by default:
        no instance or a Completed/Failed/Terminated one → a new execution (the old one is
        replaced silently); Pending/Running/ContinuedAsNew/Suspended →
        :class:`~.wording.InstanceExistsError`. Unknown ``name`` →
        :class:`~.wording.UnknownOrchestratorError`."""
        if name not in self.orchestrators:
            raise UnknownOrchestratorError(name, sorted(self.orchestrators))
        request = StartRequest(name, instance_id, input_json)
        with self._starts_done:
            self._starts.append(request)
            lead = not self._start_leader
            self._start_leader = True
        if lead:
            self._lead_starts()
        with self._starts_done:
            self._starts_done.wait_for(lambda: request.done)
        if request.error is not None:
            raise request.error

    def _lead_starts(self) -> None:
        """Group commit: write every start that is waiting in one transaction, again until
        none is left. The others wait for their result on a condition, not on the write
        lock (one writer instead of a queue of them)."""
        while True:
            with self._starts_done:
                batch, self._starts = self._starts, []
                if not batch:
                    self._start_leader = False
                    return
            now = time.time()
            try:
                self.store.start_many(
                    batch, now, start_decision, (self.owner, now + self.lease_seconds)
                )
            except BaseException as exc:  # noqa: BLE001 - every waiter gets the error
                for request in batch:
                    request.error = exc
            started = [r.instance_id for r in batch if r.error is None]
            for instance_id in started:
                self._hold("instance", instance_id, True)
            self._ready["orchestration"].extend(started)
            with self._starts_done:
                for request in batch:
                    request.done = True
                self._starts_done.notify_all()
            if started:
                self._notify("orchestration", len(started))

    def get_status(self, instance_id: str) -> InstanceStatus | None:
        row = self.store.instance(instance_id)
        if row is None:
            return None
        return InstanceStatus(
            row["instance_id"],
            row["name"],
            row["status"],
            row["input"],
            row["output"],
            iso(row["created_at"]),
            iso(row["updated_at"]),
        )

    def terminate(self, instance_id: str, reason: str) -> bool:
        """Terminate an active instance; False if it is not active (or unknown)."""
        self._forget(instance_id)  # its live orchestrator, if this runtime kept one
        return self.store.terminate(instance_id, json.dumps(reason), time.time())

    def active_count(self) -> int:
        return self.store.active_count()

    def history_size(self, instance_id: str) -> tuple[int, int]:
        """(events, bytes) of the instance's current generation."""
        return self.store.history_size(instance_id)

    # -- leases and wake-ups -----------------------------------------------------------
    def renew_leases(self) -> None:
        """Extend every lease this runtime holds (called by the heartbeat thread)."""
        with self._held_lock:
            held = list(self._held)
        if held:
            self.store.renew(self.owner, held, time.time() + self.lease_seconds)

    def release_all(self) -> None:
        """Hand back every lease at once (clean shutdown: another runtime may start now)."""
        self.store.release_all(self.owner)

    def _hold(self, kind: str, key: str, held: bool) -> None:
        with self._held_lock:
            (self._held.add if held else self._held.discard)((kind, key))

    def _notify(self, kind: str, n: int = 1) -> None:
        """Post ``kind`` of work and wake ``n`` of the workers waiting for it."""
        cond = self._waits[kind]
        with cond:
            self._posted[kind] += 1
            cond.notify(n)

    def posted(self, kind: str) -> int:
        """How often work of ``kind`` (``"orchestration"``/``"activity"``) was posted: read it
        before looking for work, then :meth:`wait_for_work` with it (no lost wake-ups)."""
        return self._posted[kind]

    def wait_for_work(self, kind: str, seen: int, timeout: float) -> None:
        """Sleep until work of ``kind`` is posted after ``seen``, at most ``timeout`` s
        (timers coming due and other runtimes' work are found by the next look)."""
        cond = self._waits[kind]
        with cond:
            cond.wait_for(lambda: self._posted[kind] != seen, timeout)

    def wake_all(self) -> None:
        """Wake every waiting worker (shutdown)."""
        for kind, cond in self._waits.items():
            with cond:
                self._posted[kind] += 1
                cond.notify_all()

    def _resumed(self, claim: Claim) -> None:
        """Log (tests/faults read this line) and count a take-over from a dead runtime."""
        instance_id = claim.instance_id
        log.warning(
            "taking over %s from a runtime that stopped (%s)", instance_id, claim.previous_owner
        )
        if self.on_resume is not None:
            try:
                self.on_resume(instance_id)
            except Exception:
                log.exception("on_resume(%s) failed", instance_id)

    # -- history cache -----------------------------------------------------------------
    def _take_cached(self, instance_id: str, execution: str, size: int) -> _Cached | None:
        """The cached entry if it still matches the stored row, taken out of the cache (the
        episode that uses it puts back what it leaves); a stale one is dropped."""
        with self._history_lock:
            hit = self._history.pop(instance_id, None)
        if hit is None or hit.execution != execution or hit.size != size:
            return None
        return hit

    def _cache(self, instance_id: str, entry: _Cached) -> None:
        with self._history_lock:
            self._history[instance_id] = entry
            self._history.move_to_end(instance_id)
            while len(self._history) > HISTORY_CACHE:
                self._history.popitem(last=False)

    def _forget(self, instance_id: str) -> None:
        with self._history_lock:
            self._history.pop(instance_id, None)

    # -- orchestrations ----------------------------------------------------------------
    def run_orchestration_once(self, batch: int = 8) -> bool:
        """Run the episodes of instances this runtime leased by its own writes (started
        here), else claim up to ``batch`` instances with a deliverable event (one
        transaction, only after a look without the write lock found one) and run one
        episode for each (more while another event of it is deliverable). False if there
        were none."""
        ready = self._take_ready("orchestration", batch)
        if ready:
            claims = [Claim(instance_id, False) for instance_id in ready]
        else:
            now = time.time()
            if not self.store.any_deliverable(now):
                return False
            claims = self.store.claim_instances(self.owner, now, now + self.lease_seconds, batch)
            for claim in claims:
                self._hold("instance", claim.instance_id, True)
        for claim in claims:
            if claim.taken_over:
                self._resumed(claim)
        done: set[str] = set()
        try:
            for claim in claims:
                try:
                    self._episodes(claim.instance_id, lease_activities=False)
                finally:
                    done.add(claim.instance_id)
        finally:
            for claim in claims:  # an episode raised: hand the rest back
                if claim.instance_id not in done:
                    self._hold("instance", claim.instance_id, False)
                    self.store.release(claim.instance_id, self.owner)
        return bool(claims)

    def _take_ready(self, kind: str, limit: int) -> list[Any]:
        ready = self._ready[kind]
        taken: list[Any] = []
        while ready and len(taken) < limit:
            try:
                taken.append(ready.popleft())
            except IndexError:  # another worker took the last one
                break
        return taken

    def _post_ready(self, activities: list[int]) -> None:
        """Hand work items leased to this runtime to its activity workers."""
        if activities:
            self._ready["activity"].extend(activities)
            self._notify("activity", len(activities))

    def _episodes(self, instance_id: str, lease_activities: bool = True) -> list[int]:
        """Run episodes of ``instance_id`` (leased to this runtime) while another event of
        it is deliverable at commit; return the work items they scheduled leased to this
        runtime (``lease_activities``; else they are left for any runtime's workers to
        claim). The instance's lease is let go (or lost) when this returns."""
        scheduled: list[int] = []
        try:
            while True:
                committed = self._episode(instance_id, lease_activities)
                if committed is None:
                    return scheduled
                scheduled.extend(committed.activities)
                if not committed.again:
                    return scheduled
        finally:
            self._hold("instance", instance_id, False)

    def _episode(self, instance_id: str, lease_activities: bool = True) -> Committed | None:
        """Deliver one event to ``instance_id``: replay, plan, commit."""
        loaded = self.store.load(instance_id, time.time())
        if not loaded.deliverable:
            self.store.drop_undeliverable(loaded, self.owner)
            self._forget(instance_id)
            return None
        assert loaded.delivered is not None
        row = loaded.row
        entry = self._take_cached(instance_id, row["execution_id"], row["history_bytes"])
        history = entry.rows if entry is not None else self.store.history_rows(instance_id)
        delivered_row: str = loaded.delivered["event"]
        delivered = json.loads(delivered_row)
        opening = opening_events(delivered, time.time())
        opening_rows = [json.dumps(opening[0]), delivered_row]
        outcome, session = self._replay(
            row,
            instance_id,
            history,
            opening,
            opening_rows,
            entry.session if entry else None,
            entry.pending if entry else [],
        )
        book = InstanceBook(
            row["name"], row["next_event_id"], row["actions_seen"], json.loads(row["retry_state"])
        )
        now = time.time()
        plan = plan_episode(book, delivered, outcome, now)
        added = [json.dumps(e) for e in plan.events]
        rows = opening_rows + added
        committed = self.store.commit_episode(
            loaded,
            self.owner,
            plan,
            rows,
            len(history),
            now,
            now + self.lease_seconds,
            lease_activities,
        )
        if committed is None:
            log.warning(
                "lost the lease on %s (or it was terminated): the episode is dropped", instance_id
            )
            return None
        self._committed(instance_id, row, plan, history, rows, session, committed)
        return committed

    def _replay(
        self,
        row: Any,
        instance_id: str,
        history: list[str],
        opening: list[dict[str, Any]],
        opening_rows: list[str],
        session: ReplaySession | None,
        pending: list[dict[str, Any]],
    ) -> tuple[OrchestratorOutcome, ReplaySession | None]:
        """The orchestrator's outcome for ``history + opening``, and the session to keep
        (None: do a full replay next time). The live session is fed the new events when
        there is one; else a full replay (which starts a session when the cache is on)."""
        name, input_json = row["name"], row["input"]
        handle = self.orchestrators.get(name)
        started = time.perf_counter()
        cached = False
        if handle is None:
            outcome = OrchestratorOutcome(error=f"orchestrator {name!r} is not in this app")
            session = None
        elif session is not None:
            try:
                outcome = session.resume(pending + opening)
                cached = True
            except Exception:  # our side failed, not the orchestrator: replay in full
                log.exception("the cached replay of %s failed: replaying in full", instance_id)
                session = None
        if handle is not None and not cached:
            context = orchestration_context(
                history + opening_rows, input_json, instance_id, self.replay_schema
            )
            if self.replay_cache and ReplaySession.supported(handle):
                session, outcome = ReplaySession.start(handle, context)
            else:
                outcome = invoke_orchestrator(handle, context)
        self._record_episode(
            instance_id, len(history) + len(opening), time.perf_counter() - started, cached
        )
        if cached and self.verify_replay and handle is not None:
            outcome = self._verify(handle, row, instance_id, history + opening_rows, outcome)
        if outcome.done or outcome.error is not None:
            session = None  # the instance ends (or continues as new): nothing to keep
        return outcome, session

    def _verify(
        self,
        handle: Callable[[str], str],
        row: Any,
        instance_id: str,
        rows: list[str],
        cached: OrchestratorOutcome,
    ) -> OrchestratorOutcome:
        """Compare a cached outcome with a full replay of the same history; use the full."""
        context = orchestration_context(rows, row["input"], instance_id, self.replay_schema)
        full = invoke_orchestrator(handle, context)
        self.replay_check.compared += 1
        if full != cached:
            self.replay_check.mismatches.append(
                f"{instance_id} after {len(rows)} events: cached {cached!r} != full {full!r}"
            )
            log.error("replay cache mismatch on %s", instance_id)
        return full

    def _record_episode(self, instance_id: str, events: int, seconds: float, cached: bool) -> None:
        self.episodes.append(Episode(instance_id, events, seconds, cached))
        if len(self.episodes) > 20000:
            del self.episodes[:10000]

    # -- activities --------------------------------------------------------------------
    def run_activity_once(self) -> bool:
        """Run a work item this runtime leased by its own commit, else claim one (only
        after a look without the write lock found one); then, on this same thread, the
        episode its result unblocks and the next work item that episode schedules, and
        so on. False if there was none."""
        ready = self._take_ready("activity", 1)
        row = self.store.leased_activity(ready[0], self.owner) if ready else None
        if ready and row is None:  # terminated or taken over meanwhile
            self._hold("activity", str(ready[0]), False)
            return True
        if row is None:
            now = time.time()
            if not self.store.any_due_activity(now):
                return False  # a cheap look before the write lock
            claimed = self.store.claim_activity(self.owner, now, now + self.lease_seconds)
            if claimed is None:
                return False
            row, claim = claimed
            self._hold("activity", str(row["id"]), True)
            if claim.taken_over:
                self._resumed(claim)
        while row is not None:
            row = self._activity_then_episode(row)
        return True

    def _activity_then_episode(self, row: Any) -> Any:
        """Run the work item ``row`` (leased to this runtime); when that leases its instance,
        run the episode here and return the first work item it scheduled (the others go
        to the other workers), else None."""
        key = str(row["id"])
        instance_id = row["instance_id"]
        try:
            result = self._activity_result(row)
            step = self._direct_step(row, result)
            if isinstance(step, Committed):
                scheduled = step.activities
                if step.again:
                    scheduled = scheduled + self._episodes(instance_id)
            else:
                ours = self._posted_result(row, step)
                if not ours:
                    return None
                scheduled = self._episodes(instance_id)
        finally:
            self._hold("activity", key, False)
        if not scheduled:
            return None
        self._post_ready(scheduled[1:])
        nxt = self.store.leased_activity(scheduled[0], self.owner)
        if nxt is None:
            self._hold("activity", str(scheduled[0]), False)
        return nxt

    def _direct_step(self, row: Any, result: dict[str, Any]) -> Committed | bool | None:
        """Post ``result`` and, when this runtime has the instance's live orchestrator and
        nothing else is waiting for it, run the episode that delivers it and commit both in
        one transaction. :class:`Committed`: done; True/False/None: only the result was
        posted (see :meth:`~.store.DurableStore.complete_activity`)."""
        instance_id = row["instance_id"]
        now = time.time()
        until = now + self.lease_seconds
        seen, waiting = self.store.step_state(instance_id, now)
        entry = None
        if seen is not None and not waiting and seen["lease_until"] < now:
            entry = self._take_cached(instance_id, seen["execution_id"], seen["history_bytes"])
        if entry is None or entry.session is None or seen is None:
            if entry is not None:
                self._cache(instance_id, entry)
            return self.store.complete_activity(row, self.owner, result, now, until)
        delivered_row = json.dumps(result)
        opening = opening_events(result, now)
        opening_rows = [json.dumps(opening[0]), delivered_row]
        outcome, session = self._replay(
            seen, instance_id, entry.rows, opening, opening_rows, entry.session, entry.pending
        )
        book = InstanceBook(
            seen["name"],
            seen["next_event_id"],
            seen["actions_seen"],
            json.loads(seen["retry_state"]),
        )
        now = time.time()
        plan = plan_episode(book, result, outcome, now)
        rows = opening_rows + [json.dumps(e) for e in plan.events]
        self._hold("instance", instance_id, True)
        step = self.store.commit_step(
            row,
            self.owner,
            result,
            seen,
            plan,
            rows,
            len(entry.rows),
            now,
            now + self.lease_seconds,
        )
        if not isinstance(step, Committed):
            self._forget(instance_id)  # the session went ahead of the history: drop it
            self._hold("instance", instance_id, False)
            return step
        self._committed(instance_id, seen, plan, entry.rows, rows, session, step)
        if not step.again:
            self._hold("instance", instance_id, False)
        return step

    def _committed(
        self,
        instance_id: str,
        row: Any,
        plan: Any,
        history: list[str],
        rows: list[str],
        session: ReplaySession | None,
        committed: Committed,
    ) -> None:
        """After an episode's commit: hold what it leased, keep the instance's cache, wake
        the workers its new work is for."""
        for activity_id in committed.activities:
            self._hold("activity", str(activity_id), True)
        if committed.again:
            self._hold("instance", instance_id, True)
        if plan.status == "Running":
            size = row["history_bytes"] + sum(len(r) for r in rows)
            self._cache(
                instance_id,
                _Cached(row["execution_id"], size, history + rows, session, plan.events),
            )
            posted = len(plan.activities) - len(committed.activities)
            if posted:
                self._notify("activity", posted)
        elif plan.status == "ContinuedAsNew":
            self._notify("orchestration")

    def _activity_result(self, row: Any) -> dict[str, Any]:
        """Run the work item: its TaskCompleted or TaskFailed event."""
        name, instance_id = row["name"], row["instance_id"]
        if row["deaths"] >= self.max_deaths:
            reason, details = died_failure(name, row["deaths"])
            log.error("activity %s of %s: %s", name, instance_id, reason)
            result = event(
                TASK_FAILED,
                time.time(),
                TaskScheduledId=row["task_id"],
                Reason=reason,
                Details=details,
            )
        else:
            result = self._call_activity(name, row["input"], row["task_id"], row)
        if result["EventType"] == TASK_FAILED:
            log.info("activity %s of %s failed: %s", name, instance_id, result["Reason"])
        return result

    def _posted_result(self, row: Any, ours: bool | None) -> bool:
        """After the result was posted: True when that leased the instance to this runtime
        (its episode is this thread's to run)."""
        instance_id = row["instance_id"]
        if ours:
            self._hold("instance", instance_id, True)
        elif ours is None:
            log.warning(
                "activity %s of %s was taken over; its result is dropped",
                row["name"],
                instance_id,
            )
            self._forget(instance_id)
        else:
            self._notify("orchestration")
        return bool(ours)

    def _call_activity(
        self, name: str, input_json: str | None, task_id: int, row: Any = None
    ) -> dict[str, Any]:
        """Run one activity: TaskCompleted with its JSON result, or TaskFailed worded as the
        extension words it. Any exception fails the activity, BaseException included
        (SystemExit, KeyboardInterrupt): it must not end the worker thread."""
        now = time.time
        if name not in self.activities:
            reason, details = missing_activity_failure(name)
            return event(
                TASK_FAILED, now(), TaskScheduledId=task_id, Reason=reason, Details=details
            )
        fn, param = self.activities[name]
        inline = self.on_abandon is not None and self.activity_timeout is not None
        token = None
        if inline and row is not None:
            assert self.activity_timeout is not None
            token = self._watchdog.watch(
                self.activity_timeout, lambda: self._expire(row, name, task_id)
            )
        try:
            value = json.loads(input_json) if input_json is not None else None
            output = json.dumps(self._invoke(fn, {param: value}, token is None))
            result = event(TASK_COMPLETED, now(), TaskScheduledId=task_id, Result=output)
        except CallTimedOut as timed_out:
            reason, details = timeout_failure(name, timed_out.seconds)
            log.error(
                "%s; the call is abandoned (%d so far) and the runtime goes on",
                reason,
                self._deadlines.abandoned,
            )
            result = event(
                TASK_FAILED, now(), TaskScheduledId=task_id, Reason=reason, Details=details
            )
        except BaseException as exc:  # noqa: BLE001 - the activity fails, the worker lives
            reason, details = activity_failure(name, exc)
            result = event(
                TASK_FAILED, now(), TaskScheduledId=task_id, Reason=reason, Details=details
            )
        if token is not None and not self._watchdog.finish(token):
            log.warning(
                "an abandoned call of %s (%s) returned at last: its result is dropped",
                name,
                threading.current_thread().name,
            )
            raise CallAbandoned(name)
        return result

    def _expire(self, row: Any, name: str, task_id: int) -> None:
        """The watchdog's side of an inline call past ``activity_timeout``: fail the work
        item with the host's text and start another worker in place of the stuck one."""
        assert self.activity_timeout is not None
        reason, details = timeout_failure(name, self.activity_timeout)
        log.error(
            "%s; the call is abandoned (%d so far) and the runtime goes on",
            reason,
            self._watchdog.expired,
        )
        failed = event(
            TASK_FAILED, time.time(), TaskScheduledId=task_id, Reason=reason, Details=details
        )
        try:
            if self.store.complete_activity(row, self.owner, failed, time.time()) is not None:
                self._notify("orchestration")
        finally:
            self._hold("activity", str(row["id"]), False)
            if self.on_abandon is not None:
                self.on_abandon()

    def _invoke(self, fn: Callable[..., Any], kwargs: dict[str, Any], bounded: bool = True) -> Any:
        """The activity runner's call, on a pooled thread within ``activity_timeout`` when
        there is one and the call is not watched inline (``bounded``)."""
        if self.activity_timeout is None or not bounded:
            return self.activity_runner(fn, kwargs)
        return self._deadlines.call(lambda: self.activity_runner(fn, kwargs), self.activity_timeout)

    # -- introspection -----------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        """Seconds until the earliest invisible inbox event (a timer), None if none."""
        at = self.store.next_visible_at()
        return None if at is None else max(0.0, at - time.time())

    def ended_badly_since(self, since: float) -> list[str]:
        """Instances that became Failed or Terminated at or after ``since`` (epoch s)."""
        return self.store.ended_badly_since(since)

    def statuses(self, instance_ids: list[str]) -> dict[str, str]:
        return self.store.statuses(instance_ids)

    def instance_ids(self) -> list[str]:
        return self.store.instance_ids()

    def close(self) -> None:
        self._deadlines.close()
        self._watchdog.close()
        self.store.close()
