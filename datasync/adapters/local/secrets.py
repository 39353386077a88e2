"""The local secret store: ``DATASYNC_HOME/secrets.json``, mode 0600, Key Vault naming.

The file is ``{"version": 1, "secrets": {"tenants--acme--crm--token": "..."}}`` (a file
without ``version`` is read as version 1). A file this code does not understand — not
UTF-8 JSON, another shape, another version, values that are not text, readable by
others — is refused with a :class:`~datasync.exceptions.ConfigError` that says what is
wrong (never a value) and is never rewritten.

No other file ever holds a secret value. A write goes to a private temporary file in the
same directory, is fsynced and renamed over the store (atomic), then the directory is
fsynced; a write that fails (a full disk, a quota) removes its temporary file, and a
temporary file left by a process killed mid-write is removed by the next write. Writers
are serialised across processes with an advisory lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...exceptions import ConfigError, SecretNotFound
from ...names import secret_name
from .db import StorageFull

__all__ = ["VERSION", "FileSecretStore"]

VERSION = 1  # the store format this code reads and writes
_TEMP_PREFIX = ".secrets-"
_TEMP_SUFFIX = ".tmp"
_NAME = re.compile(r"^tenants--[A-Za-z0-9-]+--[A-Za-z0-9-]+--[A-Za-z0-9-]+$")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,39}$")


def _os_problem(exc: OSError) -> str:
    """An OS error in words (``No space left on device``), without paths or values."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (no space left on device)"
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


class FileSecretStore:
    """The embedded :class:`~datasync.ports.SecretStore`."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "secrets.json"
        self._lock_path = Path(home) / "secrets.lock"

    def __repr__(self) -> str:
        return f"FileSecretStore({str(self.path)!r})"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot lock the secret store in {self.path.parent}: {_os_problem(exc)}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _refuse(self, what: str) -> ConfigError:
        return ConfigError(f"{self.path}: {what}; refusing to use it (the file is left unchanged)")

    def _read(self) -> dict[str, str]:
        """The secrets by Key Vault name; :class:`ConfigError` for a file not understood."""
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._refuse(f"cannot be read: {_os_problem(exc)}") from None
        if not self.path.is_file():
            raise self._refuse("is not a regular file")
        if mode & 0o077:
            raise ConfigError(
                f"{self.path} is readable by others (mode {mode & 0o777:o}); "
                f"run: chmod 600 {self.path}"
            )
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise self._refuse(f"cannot be read: {_os_problem(exc)}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise self._refuse("is not UTF-8 text") from None
        except json.JSONDecodeError as exc:  # msg and position only: never the content
            raise self._refuse(f"is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        except RecursionError:
            raise self._refuse("is not a secret store (nested too deeply)") from None
        return self._secrets_of(data)

    def _secrets_of(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            raise self._refuse(
                f'expected a JSON object {{"version": {VERSION}, "secrets": {{...}}}}, '
                f"got {type(data).__name__}"
            )
        unknown = sorted(set(data) - {"version", "secrets"})
        if unknown:  # a key is shown only when it looks like a name, never like a value
            shown = ", ".join(repr(k) if _WORD.match(k) else "(a key)" for k in unknown[:5])
            raise self._refuse(f"unknown top-level key(s) {shown} (expected version, secrets)")
        version = data.get("version", VERSION)
        if type(version) is not int or version != VERSION:
            shown = repr(version) if isinstance(version, int) else type(version).__name__
            raise self._refuse(
                f"store version {shown} is not supported (this DataSync reads version "
                f"{VERSION}); use the DataSync version that wrote it"
            )
        if "secrets" not in data:
            raise self._refuse('has no "secrets" object')
        secrets = data["secrets"]
        if not isinstance(secrets, dict):
            raise self._refuse(f'"secrets" must be an object, got {type(secrets).__name__}')
        for n, (name, value) in enumerate(secrets.items(), start=1):
            if not _NAME.match(name):  # not shown: it could be a value put there by hand
                raise self._refuse(
                    f'"secrets" entry #{n} is not named tenants--TENANT--SYSTEM--KEY'
                )
            if not isinstance(value, str):  # its type only: never the value
                raise self._refuse(
                    f"the value of {name!r} must be a string, got {type(value).__name__}"
                )
        return dict(secrets)

    def get(self, tenant: str, system: str, key: str) -> str:
        value = self._read().get(secret_name(tenant, system, key))
        if value is None:
            raise SecretNotFound(tenant, system, key)
        return value

    def set(self, tenant: str, system: str, key: str, value: str) -> None:
        name = secret_name(tenant, system, key)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(
                "the secret value is not valid Unicode text (a lone surrogate)"
            ) from None
        with self._locked():
            self._sweep()
            secrets = self._read()
            secrets[name] = value
            self._write({"version": VERSION, "secrets": secrets})

    def _sweep(self) -> None:
        """Remove temporary files left by a writer that was killed mid-write."""
        for path in self.path.parent.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.path.with_suffix(".tmp").unlink()  # the name older versions used

    def _write(self, data: dict[str, Any]) -> None:
        """Atomically replace the store; on failure nothing but the old store remains."""
        body = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
        directory = self.path.parent
        try:
            fd, tmp_name = tempfile.mkstemp(
                prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=directory
            )  # mode 0600, created exclusively
        except OSError as exc:
            raise self._failed(exc) from None
        tmp = Path(tmp_name)
        try:
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._failed(exc) from None
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _failed(self, exc: OSError) -> ConfigError | StorageFull:
        """A full disk is :class:`StorageFull` (worth retrying once there is room, as for
        every store under ``DATASYNC_HOME``); any other OS error a :class:`ConfigError`."""
        message = (
            f"could not write the secret store {self.path}: {_os_problem(exc)}; "
            "the store is unchanged"
        )
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFull(self.path, message)
        return ConfigError(message)
