"""Secrets in a dict, under their Key Vault names (the names are validated as there)."""

from __future__ import annotations

import threading

from ...exceptions import SecretNotFound
from ...names import secret_name

__all__ = ["MemorySecretStore"]


class MemorySecretStore:
    """The in-memory :class:`~datasync.ports.SecretStore`; ``repr`` shows names only."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemorySecretStore({len(self._values)} secrets)"

    def get(self, tenant: str, system: str, key: str) -> str:
        name = secret_name(tenant, system, key)
        with self._lock:
            value = self._values.get(name)
        if value is None:
            raise SecretNotFound(tenant, system, key)
        return value

    def set(self, tenant: str, system: str, key: str, value: str) -> None:
        name = secret_name(tenant, system, key)
        with self._lock:
            self._values[name] = value

    def names(self) -> list[str]:
        """The stored secret names, sorted (never the values)."""
        with self._lock:
            return sorted(self._values)
