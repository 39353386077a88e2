"""In-memory adapters for every port: thread-safe, with an injectable clock, so services
and function code are unit-tested in milliseconds. They follow the ports' documented
rules (``tests/contract`` runs the same suite on them as on SQLite and Azure)."""

from __future__ import annotations

from ...ports import Clock
from .clock import ManualClock, system_clock
from .queue import MemoryMessageQueue, MemoryQueueBackend
from .runs import MemoryPageStore, MemoryRunStore
from .secrets import MemorySecretStore
from .tenants import MemoryTenantStore

__all__ = [
    "ManualClock",
    "MemoryBackend",
    "MemoryMessageQueue",
    "MemoryPageStore",
    "MemoryQueueBackend",
    "MemoryRunStore",
    "MemorySecretStore",
    "MemoryTenantStore",
    "system_clock",
]


class MemoryBackend:
    """Every port in memory, sharing one ``clock`` (default: the real time).

    ``MemoryBackend(clock=ManualClock())`` gives tests a time that moves only when they
    say so: ``backend.clock.advance(30)`` makes a 30 s visibility timeout expire at once."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or system_clock
        self.tenants = MemoryTenantStore()
        self.queues = MemoryQueueBackend(clock=self.clock)
        self.runs = MemoryRunStore(clock=self.clock)
        self.pages = MemoryPageStore()
        self.secrets = MemorySecretStore()

    def close(self) -> None:
        """Nothing to release (there for symmetry with ``LocalBackend``)."""
