"""The embedded adapters: SQLite under ``DATASYNC_HOME`` and a 0600 secrets file."""

from __future__ import annotations

from pathlib import Path

from ...ports import Clock
from .db import Database
from .queue import QUEUE_SCHEMA, SqliteMessageQueue, SqliteQueueBackend
from .runs import RUN_SCHEMA, SqlitePageStore, SqliteRunStore
from .secrets import FileSecretStore
from .tenants import TENANT_SCHEMA, SqliteTenantStore

__all__ = [
    "Database",
    "FileSecretStore",
    "LocalBackend",
    "SqliteMessageQueue",
    "SqlitePageStore",
    "SqliteQueueBackend",
    "SqliteRunStore",
    "SqliteTenantStore",
]


class LocalBackend:
    """Every embedded port over one SQLite file, ``DATASYNC_HOME/datasync.db``.

    ``clock`` (tests) drives queue visibility and run timestamps; default: the real time."""

    def __init__(self, home: Path, *, clock: Clock | None = None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.home / "datasync.db", TENANT_SCHEMA + QUEUE_SCHEMA + RUN_SCHEMA)
        self.tenants = SqliteTenantStore(self.db)
        self.queues = SqliteQueueBackend(self.db, clock=clock)
        self.runs = SqliteRunStore(self.db, clock=clock)
        self.pages = SqlitePageStore(self.db)
        self.secrets = FileSecretStore(self.home)

    def close(self) -> None:
        self.db.close()
