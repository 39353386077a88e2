"""Clocks for the in-memory adapters: the real time, or a hand-driven one for tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["ManualClock", "system_clock"]

START = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)


def system_clock() -> datetime:
    """Now, aware UTC, with microseconds (visibility timeouts need sub-second times)."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told: ``clock()`` is now, ``advance(s)`` moves it on.

    Thread-safe; pass the same one to every adapter (and to the code under test)."""

    def __init__(self, start: datetime = START) -> None:
        if start.utcoffset() is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self():%Y-%m-%dT%H:%M:%S.%fZ})"

    def advance(self, seconds: float) -> datetime:
        """Move on by ``seconds`` (not backwards); returns the new now."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (aware; may be earlier, for tests that need it)."""
        if when.utcoffset() is None:
            raise ValueError("ManualClock needs an aware datetime")
        with self._lock:
            self._now = when.astimezone(UTC)
