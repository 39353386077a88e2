"""Calls with a deadline on reusable threads: how the embedded runtime enforces
``functionTimeout`` for activities.

Python cannot stop a thread. A call that runs past its deadline is *abandoned*: the caller
gets :class:`CallTimedOut` at once and goes on serving, while the call's thread finishes
on its own whenever it does (its result is dropped) and then exits. The Functions host
restarts the language worker instead; an abandoned call may still do what it was doing
(a push, say) until it returns. Threads are reused between calls, so per-thread state
(the step event loop of :func:`datasync.registry.thread_loop` and its async clients)
lives across activities as it did on the activity worker thread itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

__all__ = ["CallAbandoned", "CallTimedOut", "DeadlineRunner", "Watchdog"]

log = logging.getLogger("datasync.durable")


class CallTimedOut(Exception):
    """The call did not return within its deadline; it was abandoned."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"did not return within {seconds:g} s")
        self.seconds = seconds


class CallAbandoned(Exception):
    """An inline call (see :class:`Watchdog`) returned after its deadline: its result is
    dropped and its thread, replaced meanwhile, should stop serving."""


class _Watch:
    __slots__ = ("at", "on_expiry", "state")

    def __init__(self, at: float, on_expiry: Callable[[], None]) -> None:
        self.at = at
        self.on_expiry = on_expiry
        self.state = "running"  # → "done" (returned in time) or "expired"


class Watchdog:
    """Deadlines for calls made *on their caller's thread* (no hand-off to another one).

    :meth:`watch` before the call, :meth:`finish` after it. A call still running at its
    deadline is expired by the watchdog's thread, which runs its ``on_expiry`` (the caller's
    replacement: post the timeout, start another worker); :meth:`finish` then returns False
    and the caller drops its result. Exactly one of the two wins."""

    def __init__(self, name: str = "activity-watchdog") -> None:
        self.name = name
        self.expired = 0
        """Calls expired so far (their threads may still be running)."""
        self._watches: list[_Watch] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, timeout: float, on_expiry: Callable[[], None]) -> _Watch:
        token = _Watch(time.monotonic() + timeout, on_expiry)
        with self._cond:
            self._watches.append(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            elif token.at < min(w.at for w in self._watches):
                self._cond.notify()
        return token

    def finish(self, token: _Watch) -> bool:
        """True when the call returned in time (its result counts)."""
        with self._cond:
            if token.state != "running":
                return False
            token.state = "done"
            self._watches.remove(token)
            return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    due = [w for w in self._watches if w.at <= now]
                    if due:
                        break
                    nearest = min((w.at for w in self._watches), default=now + 1.0)
                    self._cond.wait(max(0.0, nearest - now))
                if self._closed:
                    return
                for token in due:
                    token.state = "expired"
                    self._watches.remove(token)
                    self.expired += 1
            for token in due:
                try:
                    token.on_expiry()
                except Exception:
                    log.exception("handling an expired call failed")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()


class _Worker:
    """One daemon thread taking calls from its own queue, one at a time."""

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self.abandoned = False
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, future = job
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
                future.set_exception(exc)
            if self.abandoned:
                log.warning("an abandoned call on %s returned at last", self.thread.name)
                return

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.jobs.put((fn, future))
        return future


class DeadlineRunner:
    """Runs ``fn()`` on a pooled thread and waits at most ``timeout`` seconds for it."""

    def __init__(self, name: str = "activity-call") -> None:
        self.name = name
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._count = 0
        self.abandoned = 0
        """Calls abandoned so far (their threads may still be running)."""

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        """``fn()``'s result or exception (any ``BaseException``, re-raised here);
        :class:`CallTimedOut` once ``timeout`` seconds have passed without one."""
        worker = self._take()
        future = worker.submit(fn)
        wait([future], timeout)
        if not future.done():
            worker.abandoned = True
            worker.jobs.put(None)  # it exits once the abandoned call returns
            with self._lock:
                self.abandoned += 1
            raise CallTimedOut(timeout)
        with self._lock:
            self._idle.append(worker)
        return future.result()

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self._count += 1
            return _Worker(f"{self.name}-{self._count}")

    def close(self) -> None:
        """Let the idle threads exit (abandoned ones exit when their call returns)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.jobs.put(None)
