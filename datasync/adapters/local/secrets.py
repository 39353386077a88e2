"""The local secret store: ``DATASYNC_HOME/secrets.json``, mode 0600, Key Vault naming.

No other file ever holds a secret value. Writes are atomic (temp file + rename) and
serialised across processes with an advisory lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...exceptions import ConfigError, SecretNotFound
from ...names import secret_name

__all__ = ["FileSecretStore"]


class FileSecretStore:
    """The embedded :class:`~datasync.ports.SecretStore`."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "secrets.json"
        self._lock_path = Path(home) / "secrets.lock"

    def __repr__(self) -> str:
        return f"FileSecretStore({str(self.path)!r})"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, str]:
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            return {}
        if mode & 0o077:
            raise ConfigError(
                f"{self.path} is readable by others (mode {mode:o}); run: chmod 600 {self.path}"
            )
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.path} is not valid JSON (line {exc.lineno})") from None
        return data.get("secrets", {}) if isinstance(data, dict) else {}

    def get(self, tenant: str, system: str, key: str) -> str:
        value = self._read().get(secret_name(tenant, system, key))
        if value is None:
            raise SecretNotFound(tenant, system, key)
        return value

    def set(self, tenant: str, system: str, key: str, value: str) -> None:
        name = secret_name(tenant, system, key)
        with self._locked():
            secrets = self._read()
            secrets[name] = value
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"secrets": secrets}, fh, indent=1, sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
