"""DataSync errors. One root, translated at the edges.

DataSyncError
 ├── ConfigError            bad settings or environment
 ├── ValidationError        bad user input (documents, names, jobs); has ``.tenant`` and ``.path``
 │    └── InvalidDocument   one tenant document, with every (path, message) found
 ├── FlowError              flow registry problems
 │    ├── FlowNotFound
 │    ├── FlowLoadError     a file in flows/ failed to import
 │    └── DuplicateFlow     two flows registered one name
 ├── SecretNotFound         names tenant, system, key — never a value
 ├── NotFound               unknown tenant / instance / message
 ├── TransientError         worth retrying
 └── PermanentError         fail fast, do not retry
      └── MissingConfigKey  ctx.config["x"] for a key the flow entry lacks (also a KeyError)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataSyncError",
    "DuplicateFlow",
    "FlowError",
    "FlowLoadError",
    "FlowNotFound",
    "InvalidDocument",
    "MissingConfigKey",
    "NotFound",
    "PermanentError",
    "SecretNotFound",
    "TransientError",
    "ValidationError",
]


class DataSyncError(Exception):
    """Root of every error DataSync raises on purpose."""


class ConfigError(DataSyncError):
    """Settings or environment are wrong."""


class ValidationError(DataSyncError, ValueError):
    """User input is invalid. ``str(err)`` is the message shown to the user."""

    def __init__(self, message: str, *, tenant: str | None = None, path: str | None = None) -> None:
        self.tenant = tenant
        self.path = path
        super().__init__(message)


class InvalidDocument(ValidationError):
    """A tenant document failed validation; ``errors`` lists (path, message) pairs."""

    def __init__(self, tenant: str, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = [
            f"tenant {tenant}: {path}: {msg}" if path else f"tenant {tenant}: {msg}"
            for path, msg in errors
        ]
        super().__init__("\n".join(lines), tenant=tenant, path=errors[0][0] if errors else None)


class FlowError(DataSyncError):
    """Something is wrong with a flow or the registry."""


class FlowNotFound(FlowError, KeyError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown flow {self.name!r}"


class FlowLoadError(FlowError):
    """A flow file could not be imported; ``file`` is relative to the project root."""

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        self.reason = reason
        super().__init__(f"{file}: {reason}")


class DuplicateFlow(FlowError):
    def __init__(self, name: str, files: list[str]) -> None:
        self.name = name
        self.files = files
        super().__init__(f"flow {name!r} is registered twice: {', '.join(files)}")


class SecretNotFound(DataSyncError, KeyError):
    def __init__(self, tenant: str, system: str, key: str) -> None:
        self.tenant, self.system, self.key = tenant, system, key
        super().__init__(tenant, system, key)

    def __str__(self) -> str:
        return f"secret not found: tenant {self.tenant}, system {self.system}, key {self.key}"


class NotFound(DataSyncError, LookupError):
    """An unknown tenant, run, message or instance."""


class TransientError(DataSyncError):
    """A failure worth retrying."""


class PermanentError(DataSyncError):
    """A failure that retrying will not fix."""


class MissingConfigKey(PermanentError, KeyError):
    """A flow read a key its ``config`` does not have: fixing the document fixes it, a
    retry does not (so the run fails at once)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""
