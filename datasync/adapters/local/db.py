"""One SQLite file, one connection per thread, WAL mode: safe for several processes."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Database"]

_writers: dict[Path, threading.RLock] = {}
_writers_lock = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    """One lock per database file and process: this process's threads take turns at the
    write lock here, woken at once, instead of in SQLite's busy handler, which sleeps."""
    key = path.resolve()
    with _writers_lock:
        return _writers.setdefault(key, threading.RLock())


class Database:
    """A SQLite database file shared by threads (a connection each) and processes (WAL)."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._schema = schema
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = _writer_lock(self.path)
        self.connect().executescript(schema)

    def connect(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=30000")
            # Checkpoint (and fsync) every ~40 MB of WAL instead of every 4 MB: a scheduler
            # tick over 100k tenants or a busy runtime commits thousands of pages a second.
            con.execute("PRAGMA wal_autocheckpoint=10000")
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: takes the write lock up front)."""
        con = self.connect()
        with self._writer:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            else:
                con.execute("COMMIT")

    def read(self) -> sqlite3.Connection:
        return self.connect()

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                # a connection made on another thread may refuse to close here
                with contextlib.suppress(sqlite3.Error):
                    con.close()
            self._all.clear()
        self._local = threading.local()
