"""An embedded Durable Functions backend: history in SQLite, replay through the real SDK.

What the Durable extension and its Azure Storage provider do for a Functions app, this
module does in-process for ``python -m datasync run``:

* keeps each instance's history (the event shapes of ``azure-functions-durable``) and an
  inbox of events not yet delivered (activity results, timer firings, ExecutionStarted);
* runs an *episode*: deliver one inbox event, call the orchestrator's real ``handle``
  (``Orchestrator.create(fn)``) with the whole history, and turn new actions into
  activity work items, timers, ``continue_as_new`` generations or a final status;
* applies ``RetryOptions`` the way DTFx's RetryInterceptor does (TaskFailed → retry timer →
  next attempt, drawing ids from the same counter as the SDK);
* leases every work item to one runtime (several runtimes may share ``DATASYNC_HOME``);
  a lease that is not renewed (kill -9) expires and another runtime takes the work over.

Event ids, schema version 0 (V1) action lists and retry id allocation follow
``shared/notes/durable-local.md`` section C, which was verified against the SDK.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..adapters.local.db import Database

__all__ = ["DurableEngine", "InstanceStatus", "ACTIVE_STATUSES", "Episode"]

log = logging.getLogger("datasync.durable")

ACTIVE_STATUSES = ("Pending", "Running", "ContinuedAsNew")

# History event types (azure.durable_functions.models.history.HistoryEventType)
EXECUTION_STARTED, TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 0, 4, 5, 6
TIMER_CREATED, TIMER_FIRED, ORCHESTRATOR_STARTED, ORCHESTRATOR_COMPLETED = 10, 11, 12, 13
EXECUTION_TERMINATED = 3

# Action types (azure.durable_functions.models.actions.ActionType)
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, CONTINUE_AS_NEW, CREATE_TIMER = 0, 1, 4, 5
WAIT_FOR_EXTERNAL_EVENT = 6

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
    input TEXT, output TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    execution_id TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0,
    next_event_id INTEGER NOT NULL DEFAULT 0, actions_seen INTEGER NOT NULL DEFAULT 0,
    retry_state TEXT NOT NULL DEFAULT '{}', history_bytes INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0, resumed_by TEXT);
CREATE INDEX IF NOT EXISTS instances_status ON instances (status);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq));
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL, event TEXT NOT NULL, visible_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS inbox_visible ON inbox (visible_at);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id, id);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL, task_id INTEGER NOT NULL, name TEXT NOT NULL,
    input TEXT, lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS activities_lease ON activities (lease_until);
"""


def _ts(t: float | None = None) -> str:
    """A history timestamp, always timezone-aware (the SDK rejects mixing naive/aware)."""
    dt = datetime.fromtimestamp(time.time() if t is None else t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(event_type: int, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    return {"EventType": event_type, "EventId": event_id, "IsPlayed": False,
            "Timestamp": _ts(), **fields}


def _install_fast_timestamps() -> None:
    """Parse history timestamps without dateutil's generic parser.

    The SDK builds every ``HistoryEvent`` of every replay with ``dateutil.parser.parse``;
    for the timestamps this engine writes (``...T..:..:..ffffffZ``) that was most of an
    episode's cost. The result is the same value (aware, ``tzutc()``); any other text
    still goes to dateutil."""
    import sys
    from dateutil.tz import tzutc
    import azure.durable_functions.models.history.HistoryEvent  # noqa: F401
    module = sys.modules["azure.durable_functions.models.history.HistoryEvent"]
    original = module.dt_parse
    if getattr(original, "_datasync_fast", False):
        return
    utc = tzutc()

    def parse(text: Any, *args: Any, **kwargs: Any) -> datetime:
        if not args and not kwargs and isinstance(text, str) and text.endswith("Z"):
            try:
                return datetime.fromisoformat(text[:-1]).replace(tzinfo=utc)
            except ValueError:
                pass
        return original(text, *args, **kwargs)

    parse._datasync_fast = True  # type: ignore[attr-defined]
    module.dt_parse = parse


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        return {"name": self.name, "instanceId": self.instance_id,
                "createdTime": self.created_time, "lastUpdatedTime": self.last_updated_time,
                "input": self.input, "output": _loads_or_text(self.output),
                "runtimeStatus": self.runtime_status, "customStatus": None, "history": None}


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
    """

    def __init__(self, path: Path, *, orchestrators: dict[str, Callable[[str], str]],
                 activities: dict[str, tuple[Callable[..., Any], str]],
                 owner: str | None = None, lease_seconds: float = 6.0,
                 on_resume: Callable[[str], None] | None = None,
                 activity_runner: Callable[[Callable[..., Any], dict[str, Any]], Any] | None = None,
                 error_text: Callable[[BaseException], tuple[str, str]] | None = None) -> None:
        _install_fast_timestamps()
        self.db = Database(path, SCHEMA)
        self.orchestrators = orchestrators
        self.activities = activities
        self.owner = owner or f"runtime-{uuid.uuid4().hex[:12]}"
        self.lease_seconds = lease_seconds
        self.on_resume = on_resume
        self.activity_runner = activity_runner or (lambda fn, kwargs: fn(**kwargs))
        self.error_text = error_text or (lambda exc: (f"{type(exc).__name__}: {exc}", ""))
        self.wakeup = threading.Condition()   # orchestration workers wait here
        # Work posted per kind, and where each kind waits: a new activity wakes one
        # activity worker, not every thread of the runtime.
        self._posted = {"orchestration": 0, "activity": 0}
        self._waits = {"orchestration": self.wakeup, "activity": threading.Condition()}
        self.episodes: list[Episode] = []     # bounded: see _record_episode
        # History of instances this runtime ran lately: (execution id, history_bytes, events).
        # Valid while the stored row still shows that execution and size (another runtime
        # appending to it changes the size), so a leased instance is not re-read each episode.
        self._history: OrderedDict[str, tuple[str, int, list[str]]] = OrderedDict()
        self._history_lock = threading.Lock()
        self._orchestrations_idle = True       # last look found nothing: look before locking
        self._activities_idle = True
        self._held: set[tuple[str, str]] = set()   # ("instance"|"activity", key) leases held
        self._held_lock = threading.Lock()

    # -- client side -------------------------------------------------------------------
    def start_new(self, name: str, instance_id: str, input_json: str | None) -> bool:
        """Create an instance atomically; False if one with that id is active or completed.

        A Failed or Terminated instance with that id is replaced (Durable's default)."""
        if name not in self.orchestrators:
            raise KeyError(f"unknown orchestrator {name!r}")
        now = time.time()
        execution = uuid.uuid4().hex
        with self.db.write() as con:
            row = con.execute("SELECT status FROM instances WHERE instance_id = ?",
                              (instance_id,)).fetchone()
            if row is not None and row["status"] not in ("Failed", "Terminated"):
                return False
            if row is not None:
                self._purge(con, instance_id)
            con.execute("INSERT INTO instances (instance_id, name, status, input, created_at, "
                        "updated_at, execution_id) VALUES (?, ?, 'Pending', ?, ?, ?, ?)",
                        (instance_id, name, input_json, now, now, execution))
            started = _event(EXECUTION_STARTED, Name=name, Version="", Input=input_json,
                             OrchestrationInstance={"InstanceId": instance_id,
                                                    "ExecutionId": execution})
            con.execute("INSERT INTO inbox (instance_id, execution_id, event, visible_at) "
                        "VALUES (?, ?, ?, ?)", (instance_id, execution, json.dumps(started), now))
        self._notify("orchestration")
        return True

    def get_status(self, instance_id: str) -> InstanceStatus | None:
        row = self.db.read().execute("SELECT * FROM instances WHERE instance_id = ?",
                                     (instance_id,)).fetchone()
        if row is None:
            return None
        return InstanceStatus(row["instance_id"], row["name"], row["status"], row["input"],
                              row["output"], _iso(row["created_at"]) or "",
                              _iso(row["updated_at"]) or "")

    def terminate(self, instance_id: str, reason: str) -> bool:
        with self.db.write() as con:
            cur = con.execute("UPDATE instances SET status = 'Terminated', output = ?, "
                              "updated_at = ? WHERE instance_id = ? AND status IN "
                              "('Pending', 'Running', 'ContinuedAsNew')",
                              (json.dumps(reason), time.time(), instance_id))
            con.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
            con.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))
        return cur.rowcount == 1

    def active_count(self) -> int:
        return self.db.read().execute(
            "SELECT count(*) FROM instances WHERE status IN ('Pending', 'Running', "
            "'ContinuedAsNew')").fetchone()[0]

    def history_size(self, instance_id: str) -> tuple[int, int]:
        """(events, bytes) of the instance's current generation."""
        row = self.db.read().execute(
            "SELECT count(*), coalesce(sum(length(event)), 0) FROM history "
            "WHERE instance_id = ?", (instance_id,)).fetchone()
        return row[0], row[1]

    # -- leases ------------------------------------------------------------------------
    def renew_leases(self) -> None:
        """Extend every lease this runtime holds (called by the heartbeat thread)."""
        with self._held_lock:
            held = list(self._held)
        if not held:
            return
        until = time.time() + self.lease_seconds
        with self.db.write() as con:
            for kind, key in held:
                table, column = ("instances", "instance_id") if kind == "instance" else \
                    ("activities", "id")
                con.execute(f"UPDATE {table} SET lease_until = ? WHERE {column} = ? "
                            f"AND lease_owner = ?", (until, key, self.owner))

    def release_all(self) -> None:
        """Hand back every lease at once (clean shutdown: another runtime may start now)."""
        with self.db.write() as con:
            con.execute("UPDATE instances SET lease_owner = NULL, lease_until = 0 "
                        "WHERE lease_owner = ?", (self.owner,))
            con.execute("UPDATE activities SET lease_owner = NULL, lease_until = 0 "
                        "WHERE lease_owner = ?", (self.owner,))

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
            while len(self._history) > 128:
                self._history.popitem(last=False)

    def _took_over(self, con, instance_id: str, previous_owner: str | None) -> None:
        """Count a takeover from a dead runtime once per instance per runtime."""
        if previous_owner is None or previous_owner == self.owner:
            return
        row = con.execute("SELECT resumed_by FROM instances WHERE instance_id = ?",
                          (instance_id,)).fetchone()
        if row is not None and row["resumed_by"] != self.owner:
            con.execute("UPDATE instances SET resumed_by = ? WHERE instance_id = ?",
                        (self.owner, instance_id))
            log.warning("taking over %s from a runtime that stopped (%s)", instance_id,
                        previous_owner)
            if self.on_resume is not None:
                self.on_resume(instance_id)

    # -- orchestrations ----------------------------------------------------------------
    def run_orchestration_once(self, batch: int = 8) -> bool:
        """Claim up to ``batch`` instances with a deliverable event (one transaction) and run
        one episode for each. False if there were none."""
        now = time.time()
        if self._orchestrations_idle and self.db.read().execute(   # a cheap look first
                "SELECT 1 FROM inbox b JOIN instances i ON i.instance_id = b.instance_id "
                "WHERE b.visible_at <= ? AND i.lease_until < ? LIMIT 1",
                (now, now)).fetchone() is None:
            return False
        with self.db.write() as con:
            rows = con.execute(
                "SELECT i.instance_id, i.lease_owner, min(b.id) AS first FROM inbox b "
                "JOIN instances i ON i.instance_id = b.instance_id WHERE b.visible_at <= ? "
                "AND i.lease_until < ? GROUP BY i.instance_id ORDER BY first LIMIT ?",
                (now, now, batch)).fetchall()
            con.executemany("UPDATE instances SET lease_owner = ?, lease_until = ? "
                            "WHERE instance_id = ?",
                            [(self.owner, now + self.lease_seconds, r["instance_id"])
                             for r in rows])
            for row in rows:
                self._took_over(con, row["instance_id"], row["lease_owner"])
        self._orchestrations_idle = not rows
        claimed = [r["instance_id"] for r in rows]
        for instance_id in claimed:
            self._hold("instance", instance_id, True)
        done: set[str] = set()
        try:
            for instance_id in claimed:
                try:
                    self._episode(instance_id)
                finally:
                    done.add(instance_id)
                    self._hold("instance", instance_id, False)
        finally:
            for instance_id in claimed:         # an episode raised: hand the rest back
                if instance_id not in done:
                    self._hold("instance", instance_id, False)
                    self._release(instance_id)
        return bool(rows)

    def _release(self, instance_id: str) -> None:
        with self.db.write() as w:
            w.execute("UPDATE instances SET lease_owner = NULL, lease_until = 0 "
                      "WHERE instance_id = ? AND lease_owner = ?", (instance_id, self.owner))

    def _episode(self, instance_id: str) -> None:
        con = self.db.read()
        inst = con.execute("SELECT * FROM instances WHERE instance_id = ?",
                           (instance_id,)).fetchone()
        execution = inst["execution_id"]
        now = time.time()
        stale, delivered = [], None
        for row in con.execute("SELECT id, execution_id, event, visible_at FROM inbox "
                               "WHERE instance_id = ? ORDER BY id", (instance_id,)):
            if row["execution_id"] != execution:
                stale.append(row)
            elif delivered is None and row["visible_at"] <= now:
                delivered = row
        if inst["status"] not in ACTIVE_STATUSES or delivered is None:
            with self.db.write() as w:     # nothing to do: drop undeliverable events
                w.executemany("DELETE FROM inbox WHERE id = ?",
                              [(r["id"],) for r in stale] +
                              ([(delivered["id"],)] if delivered is not None
                               and inst["status"] not in ACTIVE_STATUSES else []))
                w.execute("UPDATE instances SET lease_owner = NULL, lease_until = 0 "
                          "WHERE instance_id = ? AND lease_owner = ?", (instance_id, self.owner))
            return
        history = self._cached_history(instance_id, execution, inst["history_bytes"])
        if history is None:
            history = [r[0] for r in con.execute(
                "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,))]
        next_id: int = inst["next_event_id"]
        retry: dict[str, Any] = json.loads(inst["retry_state"])
        event = json.loads(delivered["event"])
        new_events: list[dict[str, Any]] = [_event(ORCHESTRATOR_STARTED), event]
        after_events: list[dict[str, Any]] = []
        new_timers: list[tuple[dict[str, Any], float]] = []
        new_activities: list[tuple[int, str, str | None]] = []

        # 1. retry bookkeeping triggered by the delivered event (DTFx RetryInterceptor)
        etype = event["EventType"]
        if etype == TASK_FAILED and str(event["TaskScheduledId"]) in retry:
            state = retry.pop(str(event["TaskScheduledId"]))
            timer_id, next_id = next_id, next_id + 1
            exhausted = state["attempt"] >= state["max"]
            fire_at = time.time() + (0 if exhausted else state["first_ms"] / 1000.0)
            after_events.append(_event(TIMER_CREATED, timer_id, FireAt=_iso(fire_at)))
            new_timers.append((_event(TIMER_FIRED, TimerId=timer_id, FireAt=_iso(fire_at)),
                               fire_at))
            retry[f"timer:{timer_id}"] = state
        elif etype == TIMER_FIRED and f"timer:{event['TimerId']}" in retry:
            state = retry.pop(f"timer:{event['TimerId']}")
            if state["attempt"] < state["max"]:
                task_id, next_id = next_id, next_id + 1
                state["attempt"] += 1
                retry[str(task_id)] = state
                after_events.append(_event(TASK_SCHEDULED, task_id, Name=state["name"],
                                           Input=state["input"]))
                new_activities.append((task_id, state["name"], state["input"]))

        # 2. replay through the SDK
        new_rows = [json.dumps(e) for e in new_events]
        context = ('{"history":[' + ",".join(history + new_rows)
                   + '],"input":' + json.dumps(inst["input"]) + ',"instanceId":'
                   + json.dumps(instance_id) + ',"isReplaying":false,'
                   '"parentInstanceId":null,"upperSchemaVersion":0}')
        handle = self.orchestrators.get(inst["name"])
        started = time.perf_counter()
        error: str | None = None
        result: dict[str, Any] = {}
        try:
            if handle is None:
                raise RuntimeError(f"orchestrator {inst['name']!r} is not in this app")
            result = json.loads(handle(context))
        except Exception as exc:  # the SDK wraps user errors with $OutOfProcData$
            text = str(exc)
            state_json = text.split("$OutOfProcData$:", 1)[1] if "$OutOfProcData$:" in text else None
            error = text.split("\n\n$OutOfProcData$:", 1)[0]
            if state_json:
                try:
                    error = json.loads(state_json).get("error") or error
                except ValueError:
                    pass
        self._record_episode(instance_id, len(history) + len(new_events),
                             time.perf_counter() - started)

        # 3. ids for new actions
        actions = [a for group in result.get("actions") or [] for a in
                   (group if isinstance(group, list) else [group])]
        continue_input: str | None = None
        continued = False
        for action in actions[inst["actions_seen"]:]:
            kind = action.get("actionType")
            if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
                task_id, next_id = next_id, next_id + 1
                after_events.append(_event(TASK_SCHEDULED, task_id, Name=action["functionName"],
                                           Input=action.get("input")))
                new_activities.append((task_id, action["functionName"], action.get("input")))
                if kind == CALL_ACTIVITY_WITH_RETRY:
                    opts = action["retryOptions"]
                    retry[str(task_id)] = {"name": action["functionName"],
                                           "input": action.get("input"), "attempt": 1,
                                           "max": opts["maxNumberOfAttempts"],
                                           "first_ms": opts["firstRetryIntervalInMilliseconds"]}
            elif kind == CREATE_TIMER:
                timer_id, next_id = next_id, next_id + 1
                fire_at = datetime.strptime(action["fireAt"].replace("Z", "+0000"),
                                            "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
                after_events.append(_event(TIMER_CREATED, timer_id, FireAt=action["fireAt"]))
                new_timers.append((_event(TIMER_FIRED, TimerId=timer_id,
                                          FireAt=action["fireAt"]), fire_at))
            elif kind == CONTINUE_AS_NEW:
                continued, continue_input = True, action.get("input")
                break
            elif kind == WAIT_FOR_EXTERNAL_EVENT:
                continue
            else:
                error = error or (f"action type {kind} is not supported by the local runtime "
                                  "(activities, timers and continue_as_new are)")
        after_events.append(_event(ORCHESTRATOR_COMPLETED))

        # 4. commit the episode
        now = time.time()
        wake: tuple[str, int] | None = None       # (kind of work posted, workers to wake)
        cache: tuple[str, int, list[str]] | None = None
        with self.db.write() as w:
            owner = w.execute("SELECT lease_owner FROM instances WHERE instance_id = ?",
                              (instance_id,)).fetchone()
            if owner is None or owner[0] != self.owner:
                log.warning("lost the lease on %s; another runtime continues it", instance_id)
                self._cache_history(instance_id, None)
                return
            w.executemany("DELETE FROM inbox WHERE id = ?",
                          [(delivered["id"],)] + [(r["id"],) for r in stale])
            if error is not None:
                self._finish(w, instance_id, "Failed", json.dumps(error))
            elif result.get("isDone") and continued:
                self._purge(w, instance_id, keep_instance=True)
                new_execution = uuid.uuid4().hex
                w.execute("UPDATE instances SET status = 'Running', input = ?, "
                          "execution_id = ?, generation = generation + 1, next_event_id = 0, "
                          "actions_seen = 0, retry_state = '{}', history_bytes = 0, "
                          "updated_at = ?, lease_owner = NULL, lease_until = 0 "
                          "WHERE instance_id = ?",
                          (continue_input, new_execution, now, instance_id))
                started_event = _event(EXECUTION_STARTED, Name=inst["name"], Version="",
                                       Input=continue_input)
                w.execute("INSERT INTO inbox (instance_id, execution_id, event, visible_at) "
                          "VALUES (?, ?, ?, ?)",
                          (instance_id, new_execution, json.dumps(started_event), now))
                wake = ("orchestration", 1)
            elif result.get("isDone"):
                self._finish(w, instance_id, "Completed", json.dumps(result.get("output")))
            else:
                seq0 = len(history)
                rows = new_rows + [json.dumps(e) for e in after_events]
                w.executemany("INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
                              [(instance_id, seq0 + i, r) for i, r in enumerate(rows)])
                if new_activities:
                    w.executemany("INSERT INTO activities (instance_id, execution_id, task_id, "
                                  "name, input) VALUES (?, ?, ?, ?, ?)",
                                  [(instance_id, execution, t, n, i)
                                   for t, n, i in new_activities])
                if new_timers:
                    w.executemany("INSERT INTO inbox (instance_id, execution_id, event, "
                                  "visible_at) VALUES (?, ?, ?, ?)",
                                  [(instance_id, execution, json.dumps(e), at)
                                   for e, at in new_timers])
                w.execute("UPDATE instances SET status = 'Running', next_event_id = ?, "
                          "actions_seen = ?, retry_state = ?, updated_at = ?, "
                          "history_bytes = history_bytes + ?, lease_owner = NULL, "
                          "lease_until = 0 WHERE instance_id = ?",
                          (next_id, len(actions), json.dumps(retry), now,
                           sum(len(r) for r in rows), instance_id))
                cache = (execution, inst["history_bytes"] + sum(len(r) for r in rows),
                         history + rows)
                if new_activities:
                    wake = ("activity", len(new_activities))
        self._cache_history(instance_id, cache)
        if wake is not None:
            self._notify(*wake)

    @staticmethod
    def _finish(con, instance_id: str, status: str, output: str) -> None:
        con.execute("UPDATE instances SET status = ?, output = ?, updated_at = ?, "
                    "lease_owner = NULL, lease_until = 0 WHERE instance_id = ?",
                    (status, output, time.time(), instance_id))
        DurableEngine._purge(con, instance_id, keep_instance=True)

    @staticmethod
    def _purge(con, instance_id: str, keep_instance: bool = False) -> None:
        con.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
        con.execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))
        con.execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))
        if not keep_instance:
            con.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))

    def _record_episode(self, instance_id: str, events: int, seconds: float) -> None:
        self.episodes.append(Episode(instance_id, events, seconds))
        if len(self.episodes) > 20000:
            del self.episodes[:10000]

    # -- activities --------------------------------------------------------------------
    def run_activity_once(self) -> bool:
        """Claim one activity work item, run it, post its result. False if none."""
        now = time.time()
        if self._activities_idle and self.db.read().execute(
                "SELECT 1 FROM activities WHERE lease_until < ? LIMIT 1",
                (now,)).fetchone() is None:           # a cheap look before the write lock
            return False
        with self.db.write() as con:
            row = con.execute("SELECT * FROM activities WHERE lease_until < ? ORDER BY id "
                              "LIMIT 1", (now,)).fetchone()
            self._activities_idle = row is None
            if row is None:
                return False
            con.execute("UPDATE activities SET lease_owner = ?, lease_until = ? WHERE id = ?",
                        (self.owner, now + self.lease_seconds, row["id"]))
            self._took_over(con, row["instance_id"], row["lease_owner"])
        key = str(row["id"])
        self._hold("activity", key, True)
        try:
            self._run_activity(row)
        finally:
            self._hold("activity", key, False)
        return True

    def _run_activity(self, row) -> None:
        name = row["name"]
        try:
            if name not in self.activities:
                raise LookupError(f"activity {name!r} is not in this app")
            fn, param = self.activities[name]
            value = json.loads(row["input"]) if row["input"] is not None else None
            output = self.activity_runner(fn, {param: value})
            event = _event(TASK_COMPLETED, TaskScheduledId=row["task_id"],
                           Result=json.dumps(output))
        except Exception as exc:
            reason, details = self.error_text(exc)
            log.info("activity %s of %s failed: %s", name, row["instance_id"], reason)
            event = _event(TASK_FAILED, TaskScheduledId=row["task_id"], Reason=reason,
                           Details=details)
        with self.db.write() as con:
            cur = con.execute("DELETE FROM activities WHERE id = ? AND lease_owner = ?",
                              (row["id"], self.owner))
            if cur.rowcount != 1:
                log.warning("activity %s of %s was taken over; its result is dropped",
                            name, row["instance_id"])
                return
            con.execute("INSERT INTO inbox (instance_id, execution_id, event, visible_at) "
                        "VALUES (?, ?, ?, ?)", (row["instance_id"], row["execution_id"],
                                                json.dumps(event), time.time()))
        self._notify("orchestration")

    # -- introspection -----------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        """Seconds until the earliest invisible inbox event (a timer), None if none."""
        row = self.db.read().execute("SELECT min(visible_at) FROM inbox").fetchone()
        return None if row[0] is None else max(0.0, row[0] - time.time())

    def ended_badly_since(self, since: float) -> list[str]:
        """Instances that became Failed or Terminated at or after ``since`` (epoch s)."""
        return [r[0] for r in self.db.read().execute(
            "SELECT instance_id FROM instances WHERE status IN ('Failed', 'Terminated') "
            "AND updated_at >= ?", (since,))]

    def statuses(self, instance_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        con = self.db.read()
        for i in range(0, len(instance_ids), 500):
            chunk = instance_ids[i:i + 500]
            for r in con.execute(f"SELECT instance_id, status FROM instances WHERE instance_id "
                                 f"IN ({','.join('?' * len(chunk))})", chunk):
                out[r[0]] = r[1]
        return out

    def close(self) -> None:
        self.db.close()
