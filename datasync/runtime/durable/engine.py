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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .deadline import CallTimedOut, DeadlineRunner
from .events import TASK_COMPLETED, TASK_FAILED, event, iso
from .planner import InstanceBook, opening_events, plan_episode, start_decision
from .sdk import (
    OrchestratorOutcome,
    ReplaySchema,
    install_fast_timestamps,
    invoke_orchestrator,
    orchestration_context,
)
from .store import Claim, DurableStore, Loaded
from .wording import (
    UnknownOrchestratorError,
    activity_failure,
    died_failure,
    missing_activity_failure,
    timeout_failure,
)

__all__ = ["DurableEngine", "Episode", "InstanceStatus"]

log = logging.getLogger("datasync.durable")

HISTORY_CACHE = 128  # instances whose history this runtime keeps in memory
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
    """One orchestrator invocation's bookkeeping (kept for benchmarks and tests)."""

    instance_id: str
    history_events: int
    replay_seconds: float


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
        self._deadlines = DeadlineRunner()
        self.wakeup = threading.Condition()  # orchestration workers wait here
        # Work posted per kind, and where each kind waits: a new activity wakes one
        # activity worker, not every thread of the runtime.
        self._posted = {"orchestration": 0, "activity": 0}
        self._waits = {"orchestration": self.wakeup, "activity": threading.Condition()}
        self.episodes: list[Episode] = []  # bounded: see _record_episode
        # History of instances this runtime ran lately: (execution id, history_bytes, rows).
        # Valid while the stored row still shows that execution and size (another runtime
        # appending to it changes the size), so a leased instance is not re-read each episode.
        self._history: OrderedDict[str, tuple[str, int, list[str]]] = OrderedDict()
        self._history_lock = threading.Lock()
        self._orchestrations_idle = True  # last look found nothing: look before locking
        self._activities_idle = True
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
        self.store.start(name, instance_id, input_json, time.time(), start_decision)
        self._notify("orchestration")

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
    def _cached_history(self, instance_id: str, execution: str, size: int) -> list[str] | None:
        with self._history_lock:
            hit = self._history.get(instance_id)
            if hit is None or hit[0] != execution or hit[1] != size:
                return None
            self._history.move_to_end(instance_id)
            return hit[2]

    def _cache_history(self, instance_id: str, entry: tuple[str, int, list[str]] | None) -> None:
        with self._history_lock:
            if entry is None:
                self._history.pop(instance_id, None)
                return
            self._history[instance_id] = entry
            self._history.move_to_end(instance_id)
            while len(self._history) > HISTORY_CACHE:
                self._history.popitem(last=False)

    # -- orchestrations ----------------------------------------------------------------
    def run_orchestration_once(self, batch: int = 8) -> bool:
        """Claim up to ``batch`` instances with a deliverable event (one transaction) and run
        one episode for each. False if there were none."""
        now = time.time()
        if self._orchestrations_idle and not self.store.any_deliverable(now):
            return False
        claims = self.store.claim_instances(self.owner, now, now + self.lease_seconds, batch)
        self._orchestrations_idle = not claims
        for claim in claims:
            self._hold("instance", claim.instance_id, True)
        for claim in claims:
            if claim.taken_over:
                self._resumed(claim)
        done: set[str] = set()
        try:
            for claim in claims:
                try:
                    self._episode(claim.instance_id)
                finally:
                    done.add(claim.instance_id)
                    self._hold("instance", claim.instance_id, False)
        finally:
            for claim in claims:  # an episode raised: hand the rest back
                if claim.instance_id not in done:
                    self._hold("instance", claim.instance_id, False)
                    self.store.release(claim.instance_id, self.owner)
        return bool(claims)

    def _episode(self, instance_id: str) -> None:
        """Deliver one event to ``instance_id``: replay, plan, commit."""
        loaded = self.store.load(instance_id, time.time())
        if not loaded.deliverable:
            self.store.drop_undeliverable(loaded, self.owner)
            return
        assert loaded.delivered is not None
        row = loaded.row
        history = self._history_of(loaded)
        delivered = json.loads(loaded.delivered["event"])
        opening = [json.dumps(e) for e in opening_events(delivered, time.time())]
        outcome = self._replay(row["name"], instance_id, row["input"], history + opening)
        book = InstanceBook(
            row["name"], row["next_event_id"], row["actions_seen"], json.loads(row["retry_state"])
        )
        plan = plan_episode(book, delivered, outcome, time.time())
        rows = opening + [json.dumps(e) for e in plan.events]
        if not self.store.commit_episode(loaded, self.owner, plan, rows, len(history), time.time()):
            log.warning(
                "lost the lease on %s (or it was terminated): the episode is dropped", instance_id
            )
            self._cache_history(instance_id, None)
            return
        if plan.status == "Running":
            size = row["history_bytes"] + sum(len(r) for r in rows)
            self._cache_history(instance_id, (row["execution_id"], size, history + rows))
            if plan.activities:
                self._notify("activity", len(plan.activities))
        else:
            self._cache_history(instance_id, None)
            if plan.status == "ContinuedAsNew":
                self._notify("orchestration")

    def _history_of(self, loaded: Loaded) -> list[str]:
        row = loaded.row
        cached = self._cached_history(row["instance_id"], row["execution_id"], row["history_bytes"])
        return cached if cached is not None else self.store.history_rows(row["instance_id"])

    def _replay(
        self, name: str, instance_id: str, input_json: str | None, rows: list[str]
    ) -> OrchestratorOutcome:
        handle = self.orchestrators.get(name)
        started = time.perf_counter()
        if handle is None:
            outcome = OrchestratorOutcome(error=f"orchestrator {name!r} is not in this app")
        else:
            context = orchestration_context(rows, input_json, instance_id, self.replay_schema)
            outcome = invoke_orchestrator(handle, context)
        self._record_episode(instance_id, len(rows), time.perf_counter() - started)
        return outcome

    def _record_episode(self, instance_id: str, events: int, seconds: float) -> None:
        self.episodes.append(Episode(instance_id, events, seconds))
        if len(self.episodes) > 20000:
            del self.episodes[:10000]

    # -- activities --------------------------------------------------------------------
    def run_activity_once(self) -> bool:
        """Claim one activity work item, run it, post its result. False if none."""
        now = time.time()
        if self._activities_idle and not self.store.any_due_activity(now):
            return False  # a cheap look before the write lock
        claimed = self.store.claim_activity(self.owner, now, now + self.lease_seconds)
        self._activities_idle = claimed is None
        if claimed is None:
            return False
        row, claim = claimed
        key = str(row["id"])
        self._hold("activity", key, True)
        try:
            if claim.taken_over:
                self._resumed(claim)
            self._run_activity(row)
        finally:
            self._hold("activity", key, False)
        return True

    def _run_activity(self, row: Any) -> None:
        name = row["name"]
        if row["deaths"] >= self.max_deaths:
            reason, details = died_failure(name, row["deaths"])
            log.error("activity %s of %s: %s", name, row["instance_id"], reason)
            result = event(
                TASK_FAILED,
                time.time(),
                TaskScheduledId=row["task_id"],
                Reason=reason,
                Details=details,
            )
        else:
            result = self._call_activity(name, row["input"], row["task_id"])
        if result["EventType"] == TASK_FAILED:
            log.info("activity %s of %s failed: %s", name, row["instance_id"], result["Reason"])
        if not self.store.complete_activity(row, self.owner, result, time.time()):
            log.warning(
                "activity %s of %s was taken over; its result is dropped", name, row["instance_id"]
            )
            return
        self._notify("orchestration")

    def _call_activity(self, name: str, input_json: str | None, task_id: int) -> dict[str, Any]:
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
        try:
            value = json.loads(input_json) if input_json is not None else None
            output = json.dumps(self._invoke(fn, {param: value}))
        except CallTimedOut as timed_out:
            reason, details = timeout_failure(name, timed_out.seconds)
            log.error(
                "%s; the call is abandoned (%d so far) and the runtime goes on",
                reason,
                self._deadlines.abandoned,
            )
            return event(
                TASK_FAILED, now(), TaskScheduledId=task_id, Reason=reason, Details=details
            )
        except BaseException as exc:  # noqa: BLE001 - the activity fails, the worker lives
            reason, details = activity_failure(name, exc)
            return event(
                TASK_FAILED, now(), TaskScheduledId=task_id, Reason=reason, Details=details
            )
        return event(TASK_COMPLETED, now(), TaskScheduledId=task_id, Result=output)

    def _invoke(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """The activity runner's call, within ``activity_timeout`` when there is one."""
        if self.activity_timeout is None:
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
        self.store.close()
