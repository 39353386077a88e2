"""The embedded local runtime: what the Functions host does, for ``function_app.py``.

``LocalHost`` imports the app, finds its functions through the ``azure.functions`` object
model, and drives them the way the host would:

===================  ==========================================================
Functions host        here
===================  ==========================================================
timer trigger         a thread firing at the NCRONTAB schedule (``%SETTING%`` resolved
                      from the environment), once at start, then on schedule
queue trigger         receive from the configured queue (SQLite or Azure Storage), call the
                      function, delete on success; on failure make it visible again,
                      poison into ``<queue>-poison`` after ``maxDequeueCount`` (host.json)
durable client        the real ``DurableOrchestrationClient`` against a loopback server
                      speaking the extension's HTTP API (:mod:`.rpc`)
orchestrations        :class:`~datasync.runtime.durable.DurableEngine`: SQLite history,
                      real SDK replay, ``RetryOptions``, ``continue_as_new``
activities            a worker pool calling the user functions with the JSON input
===================  ==========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from ..adapters.local.db import StorageFull
from ..app import App
from ..config import Settings, project_root
from ..exceptions import ConfigError
from ..logs import configure_logging
from ..names import utcnow
from ..ports import FLOW_JOBS_POISON, QueueItem
from ..schedule import next_occurrence
from .durable import DurableEngine, close_durable_client_session, fresh_durable_client_session
from .durable.deadline import CallAbandoned
from .rpc import DurableRpcServer
from .validation import validate_app

__all__ = ["HostConfig", "LocalHost", "run_local"]

log = logging.getLogger("datasync.runtime")

DEFAULT_FUNCTION_TIMEOUT = 1800.0
"""host.json ``functionTimeout`` when absent: the Flex Consumption plan's default (30 min)."""


@dataclass(frozen=True)
class HostConfig:
    """The parts of ``host.json`` the runtime honours (queues and durable settings)."""

    batch_size: int = 16
    new_batch_threshold: int | None = None  # None: batch_size // 2, the host's default
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0  # delay before a failed message is retried
    message_lease: float = 6.0  # a received message stays invisible this long,
    # renewed while handled: a dead runtime's
    # messages come back within it
    task_hub: str = "DataSyncHub"
    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT
    """``functionTimeout`` in seconds; None when it is ``-1`` (unlimited)."""

    @classmethod
    def load(cls, root: Path, settings: Settings) -> HostConfig:
        """``host.json``; ``DATASYNC_QUEUE_RETRY_DELAY`` (seconds) overrides its
        ``visibilityTimeout`` (the fault-injection tests make poisoning fast with it)."""
        config = cls._from_file(root)
        if settings.queue_retry_delay is None:
            return config
        return replace(config, visibility_timeout=settings.queue_retry_delay)

    @classmethod
    def _from_file(cls, root: Path) -> HostConfig:
        path = root / "host.json"
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        queues = data.get("extensions", {}).get("queues", {})
        durable = data.get("extensions", {}).get("durableTask", {})
        return cls(
            batch_size=int(queues.get("batchSize", 16)),
            new_batch_threshold=(
                int(queues["newBatchThreshold"]) if "newBatchThreshold" in queues else None
            ),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout=_timespan(queues.get("visibilityTimeout", "00:00:00")),
            task_hub=durable.get("hubName", "DataSyncHub").replace("%", "") or "DataSyncHub",
            function_timeout=function_timeout(data.get("functionTimeout")),
        )


def _timespan(value: str) -> float:
    """A .NET TimeSpan as host.json writes it, ``[d.]hh:mm:ss[.fffffff]``, in seconds."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", value.strip())
    if match is None:
        raise ValueError(f"not a TimeSpan: {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def function_timeout(value: object) -> float | None:
    """host.json ``functionTimeout``: seconds; None for ``-1`` (no limit); the default
    (Flex Consumption's, 30 minutes) when absent. A bad value is a :class:`ConfigError`."""
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT
    if value == "-1" or value == -1:
        return None
    try:
        seconds = _timespan(str(value))
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ConfigError(
            f"host.json functionTimeout must be a TimeSpan like '00:10:00' or '-1', got {value!r}"
        )
    return seconds


@dataclass
class _Functions:
    timers: list[tuple[Any, Any]] = field(default_factory=list)  # (function, trigger)
    queues: list[tuple[Any, Any, str | None]] = field(default_factory=list)  # + client param
    orchestrators: dict[str, Callable[[str], str]] = field(default_factory=dict)
    activities: dict[str, tuple[Callable[..., Any], str]] = field(default_factory=dict)


class AppRefused(ConfigError):
    """The Python worker would refuse this app: the embedded runtime refuses it too."""


def load_app(root: Path) -> Any:
    """Import ``function_app.py`` the way the Python worker does and return the module.

    Raises :class:`AppRefused` with the worker's own message when the worker would not load
    a function of it (the worker then loads none: indexing is all or nothing)."""
    path = root / "function_app.py"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location("function_app", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no function_app.py in {root}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    spec.loader.exec_module(module)
    problems = validate_app(module.app)
    if problems:
        raise AppRefused(problems[0])
    return module


def index_functions(app: Any) -> _Functions:
    """Sort the app's functions by trigger, indexing every name a caller may use."""
    found = _Functions()
    for fn in [builder._function for builder in app._function_builders]:
        trigger = fn.get_trigger()
        user = fn.get_user_function()
        names = {fn.get_function_name(), getattr(fn, "_name", None)}
        if trigger.type == "timerTrigger":
            found.timers.append((fn, trigger))
        elif trigger.type == "queueTrigger":
            client = next((b.name for b in fn.get_bindings() if b.type == "durableClient"), None)
            found.queues.append((fn, trigger, client))
        elif trigger.type == "orchestrationTrigger":
            for name in names | {getattr(trigger, "orchestration", None)}:
                if name:
                    found.orchestrators[name] = user
        elif trigger.type == "activityTrigger":
            for name in names | {getattr(trigger, "activity", None)}:
                if name:
                    found.activities[name] = (user, trigger.name)
    return found


def _resolve(expr: str, settings: Settings) -> str:
    """``%SETTING%`` → its value, as the host resolves binding expressions.

    The host refuses to load a function whose setting is missing; so does this runtime,
    except for ``DATASYNC_SCAN_SCHEDULE``, which falls back to the default with a warning
    (so the offline demo needs no setup) — on Azure it must be set."""
    if not (expr.startswith("%") and expr.endswith("%")):
        return expr
    name = expr.strip("%")
    value = os.environ.get(name)
    if value:
        return value
    if name == "DATASYNC_SCAN_SCHEDULE":
        log.warning(
            "app setting DATASYNC_SCAN_SCHEDULE is not set: using %r here; the "
            "Functions host requires it",
            settings.scan_schedule,
        )
        return settings.scan_schedule
    raise ConfigError(
        f"app setting {name} is not set: the Functions host needs it to "
        f"resolve the binding expression {expr!r}"
    )


DISK_FULL_GIVE_UP = 10
"""Seconds ``run --once`` keeps trying while the disk under DATASYNC_HOME is full."""


async def _contained(coro: Any) -> Any:
    """Await ``coro``; a ``SystemExit``/``KeyboardInterrupt`` from it fails the invocation
    instead of stopping the runtime's event loop (the app's functions already turn them
    into ordinary errors; this keeps the host alive if one does not)."""
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from None


class LocalHost:
    """Runs one Functions app on the embedded (or emulator-backed) services."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        app: App | None = None,
        root: Path | None = None,
        activity_workers: int | None = None,
    ) -> None:
        self.settings = app.settings if app is not None else settings or Settings.from_env()
        self.root = root or project_root()
        self.config = HostConfig.load(self.root, self.settings)
        module = load_app(self.root)
        self.app = app or App.from_settings(self.settings)
        self._owns_app = app is None
        module.datasync_app.install(self.app)
        self.functions = index_functions(module.app)
        self._schedules = {
            fn.get_function_name(): _resolve(trigger.schedule, self.settings)
            for fn, trigger in self.functions.timers
        }  # as the host: at load
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self.loop.run_forever, name="async-loop", daemon=True
        )
        self.engine = DurableEngine(
            self.settings.home / "durable.db",
            orchestrators=self.functions.orchestrators,
            activities=self.functions.activities,
            on_resume=self.app.runs.mark_resumed,
            activity_runner=self._call,
            activity_timeout=self.config.function_timeout,
            on_abandon=self._replace_activity_worker,
        )
        self.rpc = DurableRpcServer(self.engine, self.config.task_hub)
        self.stopping = threading.Event()
        self.activity_workers = activity_workers or self.settings.activity_workers
        self._threads: list[threading.Thread] = []
        self._replaced = 0  # activity workers started in place of stuck ones
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._messages: dict[str, tuple[Any, QueueItem]] = {}  # held: id → (queue, item)
        self._messages_lock = threading.Lock()
        self.started_at = time.time()
        self.poisoned = 0
        self.ticks = 0
        self.last_tick: datetime | None = None  # when a timer function last succeeded
        self._once = False
        self._full_since: float | None = None  # the disk under DATASYNC_HOME is full since
        self._full_logged = 0.0
        self.disk_full: str | None = None  # why run --once gave up (the disk stayed full)

    # -- invoking user functions ---------------------------------------------------------
    def _call(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return asyncio.run_coroutine_threadsafe(_contained(fn(**kwargs)), self.loop).result()
        return fn(**kwargs)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> LocalHost:
        fresh_durable_client_session()
        self._loop_thread.start()
        self.rpc.start()
        spawn = self._spawn
        spawn(
            "orchestrations", self._worker_loop, self.engine.run_orchestration_once, "orchestration"
        )
        for i in range(self.activity_workers):
            spawn(f"activities-{i}", self._worker_loop, self.engine.run_activity_once, "activity")
        for fn, trigger, client in self.functions.queues:
            spawn(f"queue-{trigger.queue_name}", self._queue_loop, fn, trigger, client)
        spawn("heartbeat", self._heartbeat)
        log.info(
            "local runtime up: %d activities, %d orchestrators, durable client at %s, home %s",
            len({id(f) for f, _ in self.functions.activities.values()}),
            len({id(f) for f in self.functions.orchestrators.values()}),
            self.rpc.base_url,
            self.settings.home,
        )
        log.info(
            "backends: %s",
            ", ".join(f"{port}={kind}" for port, kind in self.settings.backends().items()),
        )
        return self

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let in-flight work finish (up to ``grace``), hand back leases."""
        self.stopping.set()
        self.engine.wake_all()
        deadline = time.time() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.time()))
        self.engine.release_all()
        self.rpc.stop()
        try:
            asyncio.run_coroutine_threadsafe(close_durable_client_session(), self.loop).result(5)
        except Exception:  # pragma: no cover - best effort on shutdown
            log.debug("closing the durable client session failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(2)
        if not self._loop_thread.is_alive():
            self.loop.close()  # its selector and self-pipe sockets, not left to the GC
        self.engine.close()
        if self._owns_app:
            self.app.close()

    # -- workers -------------------------------------------------------------------------
    def _worker_loop(self, step: Callable[[], bool], kind: str) -> None:
        """Run ``step`` while it finds work; else sleep until the engine posts ``kind`` of
        work (an activity result, a new activity), or 0.2 s for timers and other runtimes.
        A worker whose activity ran past ``functionTimeout`` was replaced meanwhile
        (:meth:`_replace_activity_worker`): it ends once that call returns at last."""
        while not self.stopping.is_set():
            seen = self.engine.posted(kind)
            try:
                did = step()
                if did:  # a step that wrote something: there is room again
                    self._full_since = None
            except CallAbandoned:
                return
            except StorageFull as exc:
                did = False
                self.stopping.wait(self._on_disk_full(exc))
            except Exception:
                log.exception("runtime worker error (will retry)")
                did = False
                self.stopping.wait(0.5)
            if not did and not self.stopping.is_set():
                self.engine.wait_for_work(kind, seen, 0.2)

    def _replace_activity_worker(self) -> None:
        """An activity ran past ``functionTimeout`` on a worker's thread (the engine failed
        it): start another worker in its place, as the host restarts the language worker."""
        if self.stopping.is_set():
            return
        self._replaced += 1
        self._spawn(
            f"activities-r{self._replaced}",
            self._worker_loop,
            self.engine.run_activity_once,
            "activity",
        )

    def _on_disk_full(self, exc: StorageFull) -> float:
        """A write failed for want of space: say so (one line, not a traceback per thread and
        retry), wait longer each time, and under ``--once`` give up after
        ``DISK_FULL_GIVE_UP`` seconds. Returns how long to wait before trying again."""
        now = time.monotonic()
        since = self._full_since = self._full_since or now
        if now - self._full_logged >= 30:
            self._full_logged = now
            log.error("%s — retrying until there is room (nothing is lost)", exc)
        if self._once and now - since >= DISK_FULL_GIVE_UP:
            self.disk_full = str(exc)
            self.stopping.set()
        return min(10.0, 1.0 + (now - since) / 2)

    def _heartbeat(self) -> None:
        while not self.stopping.wait(self.engine.lease_seconds / 3):
            try:
                self.engine.renew_leases()
            except Exception:
                log.exception("lease renewal failed")
            self._renew_messages()

    def _renew_messages(self) -> None:
        """Keep the messages being handled invisible (their lease is short: see HostConfig)."""
        with self._messages_lock:
            for message_id, (queue, item) in list(self._messages.items()):
                try:
                    self._messages[message_id] = (
                        queue,
                        queue.extend(item, self.config.message_lease),
                    )
                except Exception:  # noqa: BLE001 - a lost lease is retried next tick
                    log.warning("could not renew the lease on message %s", message_id)

    def _settle(self, item: QueueItem, action: Callable[[QueueItem], None]) -> None:
        """Stop renewing ``item`` and act on it with its latest pop receipt."""
        with self._messages_lock:
            _, latest = self._messages.pop(item.id, (None, item))
            action(latest)

    def fire_timers(self) -> None:
        """Run every timer function now (``run`` does this at start)."""
        for fn, trigger in self.functions.timers:
            self._fire(fn, trigger, past_due=False)

    def _fire(self, fn: Any, trigger: Any, past_due: bool) -> None:
        try:
            self._call(fn.get_user_function(), {trigger.name: TimerRequest(past_due=past_due)})
            self.ticks += 1
            self.last_tick = utcnow()
        except Exception:
            log.exception("timer function %s failed", fn.get_function_name())

    def _timer_loop(self, fn: Any, trigger: Any) -> None:
        schedule = self._schedules[fn.get_function_name()]
        while not self.stopping.is_set():
            now = utcnow()
            due = next_occurrence(schedule, "UTC", now)
            log.info("next scheduler tick at %s", due.strftime("%Y-%m-%dT%H:%M:%SZ"))
            if self.stopping.wait(max(0.0, (due - utcnow()).total_seconds())):
                return
            self._fire(fn, trigger, past_due=False)

    def _queue_loop(self, fn: Any, trigger: Any, client_param: str | None) -> None:
        """The queue trigger's polling, as the host does it: receive up to ``batchSize``
        messages whenever the messages still being handled are ``newBatchThreshold`` or
        fewer, and start each one as soon as it is received (nothing waits for the rest of
        its batch); at most ``batchSize + newBatchThreshold`` run at once. An empty queue
        is looked at again after 0.1 s."""
        queue = self.app.queues.queue(trigger.queue_name)
        poison = self.app.queues.queue(trigger.queue_name + "-poison")  # host's rule
        user = fn.get_user_function()
        batch = self.config.batch_size
        threshold = self.config.new_batch_threshold
        threshold = batch // 2 if threshold is None else threshold
        running = [0]
        room = threading.Condition()

        def finished(fut: Future[Any]) -> None:
            with room:
                running[0] -= 1
                room.notify()
            self._done()
            try:
                fut.result()
            except Exception:  # _deliver handles message errors; this is a bug guard
                log.exception("delivering a %s message failed", trigger.queue_name)

        while not self.stopping.is_set():
            with room:
                if not room.wait_for(lambda: running[0] <= threshold, 0.5):
                    continue
            try:
                items = queue.receive(batch, self.config.message_lease)
            except StorageFull as exc:
                self.stopping.wait(self._on_disk_full(exc))
                continue
            except Exception:
                log.exception("receiving from %s failed", trigger.queue_name)
                self.stopping.wait(1.0)
                continue
            if not items:
                self.stopping.wait(0.1)
                continue
            with self._messages_lock:
                self._messages.update((item.id, (queue, item)) for item in items)
            for item in items:
                with room:
                    running[0] += 1
                with self._inflight_lock:
                    self._inflight += 1
                fut = asyncio.run_coroutine_threadsafe(
                    self._deliver(user, trigger, client_param, queue, poison, item), self.loop
                )
                fut.add_done_callback(finished)

    def _done(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    async def _deliver(
        self,
        user: Callable[..., Any],
        trigger: Any,
        client_param: str | None,
        queue: Any,
        poison: Any,
        item: QueueItem,
    ) -> None:
        try:
            await self._handle(user, trigger, client_param, queue, poison, item)
        finally:
            with self._messages_lock:
                self._messages.pop(item.id, None)

    async def _handle(
        self,
        user: Callable[..., Any],
        trigger: Any,
        client_param: str | None,
        queue: Any,
        poison: Any,
        item: QueueItem,
    ) -> None:
        if item.dequeue_count > self.config.max_dequeue_count:
            reason = f"dequeue count {item.dequeue_count} exceeds {self.config.max_dequeue_count}"
            await asyncio.to_thread(
                self._settle, item, lambda it: self._poison(queue, poison, it, reason)
            )
            return
        message = QueueMessage(  # type: ignore[no-untyped-call]  # azure.functions: no annotations
            id=item.id,
            body=item.body.encode(),
            dequeue_count=item.dequeue_count,
            pop_receipt=item.pop_receipt,
        )
        kwargs: dict[str, Any] = {trigger.name: message}
        if client_param:
            kwargs[client_param] = self.rpc.binding_json()
        try:
            result = user(**kwargs)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - a failed function retries or poisons
            reason = f"{type(exc).__name__}: {exc}"[:1000]  # as the worker reports it
            if item.dequeue_count >= self.config.max_dequeue_count:
                await asyncio.to_thread(
                    self._settle, item, lambda it: self._poison(queue, poison, it, reason)
                )
            else:
                log.warning(
                    "message %s failed (attempt %d of %d): %s",
                    item.id,
                    item.dequeue_count,
                    self.config.max_dequeue_count,
                    reason,
                )
                await asyncio.to_thread(self._settle, item, lambda it: self._retry_later(queue, it))
            return
        await asyncio.to_thread(self._settle, item, queue.delete)

    def _retry_later(self, queue: Any, item: QueueItem) -> None:
        # lost the message meanwhile: it comes back on its own
        with contextlib.suppress(Exception):
            queue.extend(item, self.config.visibility_timeout)

    def _poison(self, queue: Any, poison: Any, item: QueueItem, reason: str) -> None:
        log.error(
            "moving message %s to %s after %d attempts: %s",
            item.id,
            poison.name,
            item.dequeue_count,
            reason,
        )
        queue.move_to(item, poison, reason)
        self.poisoned += 1

    # -- draining ------------------------------------------------------------------------
    def idle(self) -> bool:
        """No queued job, no message in flight and no active orchestration."""
        with self._inflight_lock:
            inflight = self._inflight
        if inflight:
            return False
        settings = self.app.settings
        soon = datetime.now(UTC) + timedelta(
            seconds=settings.requeue_delay + settings.start_claim_seconds + 5.0
        )  # deferred and retried jobs count; jobs scheduled for later (look-ahead) do not
        if any(
            self.app.queues.queue(t.queue_name).count_due(soon) for _, t, _ in self.functions.queues
        ):
            return False
        return self.engine.active_count() == 0

    def wait_idle(self, poll: float = 0.1) -> None:
        calm = 0
        while not self.stopping.is_set():
            calm = calm + 1 if self.idle() else 0
            if calm >= 3:
                return
            self.stopping.wait(poll)

    def failed_runs(self) -> list[str]:
        """Runs started here, or resumed here after another runtime died, that failed."""
        statuses = self.engine.statuses(list(self.rpc.started))
        failed = {i for i, s in statuses.items() if s in ("Failed", "Terminated")}
        return sorted(failed | set(self.engine.ended_badly_since(self.started_at)))

    def run(self, *, once: bool) -> int:
        """``run``: serve until stopped. ``run --once``: one tick, drain, exit 0/1."""
        self._once = once
        self.start()
        try:
            self.fire_timers()
            if once:
                self.wait_idle()
                if self.disk_full is not None:
                    log.error(
                        "stopped: the disk stayed full for %d s: %s; the unfinished "
                        "runs resume on the next start",
                        DISK_FULL_GIVE_UP,
                        self.disk_full,
                    )
                    return 1
                interrupted = self.stopping.is_set() and not self.idle()
                if interrupted:
                    log.error(
                        "stopped before the work was done: %d orchestration(s) still "
                        "active; they resume on the next start",
                        self.engine.active_count(),
                    )
                failed = self.failed_runs()
                for instance_id in failed:
                    log.error("run failed: %s", instance_id)
                if self.poisoned:
                    log.error("%d job message(s) moved to %s", self.poisoned, FLOW_JOBS_POISON)
                started = len(self.rpc.started)
                log.info("done: %d run(s) started, %d failed", started, len(failed))
                return 1 if failed or self.poisoned or interrupted else 0
            for fn, trigger in self.functions.timers:
                self._spawn(f"timer-{fn.get_function_name()}", self._timer_loop, fn, trigger)
            while not self.stopping.wait(0.5):
                pass
            return 0
        finally:
            self.stop()


def _start_console(host: LocalHost, port: int) -> Callable[[], None] | None:
    """The web console on 127.0.0.1:``port`` beside the runtime; a taken port or a missing
    dependency costs the console (one warning), never the runtime."""
    try:
        from ..console import start_in_background

        return start_in_background(host.app, port, last_tick=lambda: host.last_tick)
    except (ConfigError, ImportError, OSError) as exc:
        log.warning("web console not started: %s", exc)
        return None


def run_local(
    *, once: bool, settings: Settings | None = None, console_port: int | None = None
) -> int:
    """``python -m datasync run [--once]``: exit code 0 ok, 1 a run failed. Without
    ``--once`` the web console is served on ``console_port`` (None: no console)."""
    configure_logging()
    if once:  # one tick of what is due now: no look-ahead
        settings = replace(settings or Settings.from_env(), lookahead_seconds=0.0)
    host = LocalHost(settings)
    stop_console = None if once or console_port is None else _start_console(host, console_port)
    previous = {}

    def _stop(signum: int, _frame: Any) -> None:
        log.info(
            "received %s: finishing in-flight work, then stopping", signal.Signals(signum).name
        )
        host.stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, _stop)
    try:
        return host.run(once=once)
    finally:
        if stop_console is not None:
            stop_console()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
