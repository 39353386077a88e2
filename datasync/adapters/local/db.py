"""One SQLite file, one connection per thread, WAL mode: safe for several processes.

A store that cannot be written is an error that says so, never a bare ``sqlite3`` one:
:class:`StorageFull` (``database or disk is full``: worth retrying once space returns)
and :class:`StorageError` (read-only, corrupt, not a database, I/O error). Both are
:class:`sqlite3.OperationalError` too, so callers that handle SQLite errors still do.
A failed write rolls back its transaction whatever SQLite did with it, so the connection
is usable again as soon as the disk has room: nothing committed is ever lost.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...exceptions import ConfigError, TransientError

__all__ = ["Database", "StorageError", "StorageFull"]

_writers: dict[Path, threading.RLock] = {}
_writers_lock = threading.Lock()


class StorageFull(TransientError, sqlite3.OperationalError):
    """A write failed for want of space on the disk (or quota) that holds the file.

    Worth retrying once there is room again (a :class:`TransientError`: exit 1 from the
    CLI). ``message`` replaces the default text, which is about a SQLite file."""

    def __init__(self, path: Path, message: str | None = None) -> None:
        self.path = path
        super().__init__(
            message
            or f"{path.name}: database or disk is full; free space on the disk holding "
            f"{path.parent} (DATASYNC_HOME): the work saved so far is kept and resumes then"
        )


class StorageError(ConfigError, sqlite3.OperationalError):
    """The file cannot be used: read-only, corrupt, not a database, or an I/O error."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


_REASONS = {
    sqlite3.SQLITE_READONLY: "cannot write: the file or DATASYNC_HOME is read-only",
    sqlite3.SQLITE_CANTOPEN: "cannot open the database file (check DATASYNC_HOME)",
    sqlite3.SQLITE_CORRUPT: "the database file is corrupt; restore it from a backup",
    sqlite3.SQLITE_NOTADB: "not a DataSync database (the file holds something else)",
    sqlite3.SQLITE_IOERR: "disk I/O error",
    sqlite3.SQLITE_PERM: "access to the database file is denied",
}


def storage_error(path: Path, exc: sqlite3.Error) -> sqlite3.Error:
    """``exc`` as :class:`StorageFull` / :class:`StorageError` when it is about the file
    itself (space, permissions, corruption), else ``exc`` unchanged."""
    if isinstance(exc, StorageFull | StorageError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return exc
    primary = code & 0xFF  # the extended code's primary part
    if primary == sqlite3.SQLITE_FULL or (primary == sqlite3.SQLITE_IOERR and _no_room(path)):
        return StorageFull(path)  # an I/O error on a disk with no free block: full too
    reason = _REASONS.get(primary)
    return StorageError(path, reason) if reason else exc


def _no_room(path: Path) -> bool:
    """True when the file system holding ``path`` has no block left for us."""
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return False
    return stat.f_bavail == 0 or stat.f_favail == 0


class _Connection(sqlite3.Connection):
    """A connection whose errors about the file itself name the file and the cause."""

    db_path: Path = Path()

    def execute(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args)
        except sqlite3.Error as exc:
            raise storage_error(self.db_path, exc) from None

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executemany(*args)
        except sqlite3.Error as exc:
            raise storage_error(self.db_path, exc) from None

    def executescript(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executescript(*args)
        except sqlite3.Error as exc:
            raise storage_error(self.db_path, exc) from None


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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                self.path, f"cannot create {self.path.parent}: {exc.strerror or exc}"
            ) from None
        self._schema = schema
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = _writer_lock(self.path)
        self.connect().executescript(schema)

    def connect(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(
                    self.path,
                    timeout=30,
                    isolation_level=None,
                    check_same_thread=False,
                    factory=_Connection,
                )
            except sqlite3.Error as exc:
                raise storage_error(self.path, exc) from None
            con.db_path = self.path
            con.row_factory = sqlite3.Row
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
                con.execute("PRAGMA busy_timeout=30000")
                # Checkpoint (and fsync) every ~40 MB of WAL instead of every 4 MB: a
                # scheduler tick over 100k tenants or a busy runtime commits thousands of
                # pages a second.
                con.execute("PRAGMA wal_autocheckpoint=10000")
            except BaseException:
                con.close()
                raise
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: takes the write lock up front).

        On any failure — in the body or at ``COMMIT`` — the transaction is rolled back
        (SQLite may already have done so, e.g. on a full disk) and the original error
        raised, so the connection is ready for the next write."""
        con = self.connect()
        with self._writer:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                self._rollback(con)
                raise

    @staticmethod
    def _rollback(con: sqlite3.Connection) -> None:
        if con.in_transaction:
            # a failing rollback must not hide the error that caused it
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")

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
