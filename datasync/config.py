"""Settings, read once from the environment (app settings on Azure, local.settings.json
under ``func start``, plain environment for the embedded runtime)."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .exceptions import ConfigError

__all__ = ["Settings", "DEFAULT_SCAN_SCHEDULE", "project_root", "fault_point", "env_seconds"]

DEFAULT_SCAN_SCHEDULE = "0 0 * * * *"


def project_root() -> Path:
    """The directory holding ``function_app.py`` (the app root on Azure too)."""
    env = os.environ.get("DATASYNC_PROJECT_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def fault_point(name: str) -> None:
    """Test hook, off by default: ``DATASYNC_FAULT_POINT=<name>`` SIGKILLs this process
    right here (the fault-injection suite crashes the runtime at exact points with it)."""
    if os.environ.get("DATASYNC_FAULT_POINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment variable ``name`` (``default`` when unset)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


_IDENTITY_STORAGE = (("Blob", "blobServiceUri"), ("Queue", "queueServiceUri"),
                     ("Table", "tableServiceUri"))


def _identity_storage(env: Mapping[str, str]) -> str | None:
    """The host's identity-based ``AzureWebJobsStorage__accountName`` (or
    ``__blobServiceUri``/``__queueServiceUri``/``__tableServiceUri``) as an endpoints-only
    connection string; the Storage adapters then authenticate with the managed identity."""
    account = env.get("AzureWebJobsStorage__accountName")
    parts = []
    for service, key in _IDENTITY_STORAGE:
        uri = env.get(f"AzureWebJobsStorage__{key}") or (
            f"https://{account}.{service.lower()}.core.windows.net" if account else None)
        if uri:
            parts.append(f"{service}Endpoint={uri}")
    return ";".join(parts) or None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting DataSync reads. ``local.settings.json.example`` lists the same names."""

    scan_schedule: str = DEFAULT_SCAN_SCHEDULE
    home: Path = Path(".datasync")
    flows_dir: Path = Path("flows")
    cosmos_endpoint: str | None = None
    cosmos_key: str | None = None
    cosmos_database: str = "flowsync"
    cosmos_container: str = "tenants"
    cosmos_verify_tls: bool = True
    storage_connection: str | None = None
    keyvault_url: str | None = None
    pages_per_generation: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        root = project_root()
        home = Path(env.get("DATASYNC_HOME") or ".datasync")
        flows = Path(env.get("DATASYNC_FLOWS_DIR") or root / "flows")
        return cls(
            scan_schedule=env.get("DATASYNC_SCAN_SCHEDULE") or DEFAULT_SCAN_SCHEDULE,
            home=home.resolve(),
            flows_dir=flows.resolve(),
            cosmos_endpoint=env.get("COSMOS_ENDPOINT") or None,
            cosmos_key=env.get("COSMOS_KEY") or None,
            cosmos_database=env.get("COSMOS_DATABASE") or "flowsync",
            cosmos_container=env.get("COSMOS_CONTAINER") or "tenants",
            cosmos_verify_tls=_flag(env.get("COSMOS_VERIFY_TLS"), True),
            storage_connection=(env.get("AzureWebJobsStorage")
                                or _identity_storage(env) or None),
            keyvault_url=env.get("KEYVAULT_URL") or None,
            pages_per_generation=int(env.get("DATASYNC_PAGES_PER_GENERATION") or 10),
        )

    @property
    def uses_cosmos(self) -> bool:
        return bool(self.cosmos_endpoint)

    @property
    def uses_azure_queue(self) -> bool:
        """Storage queues on Azure/Azurite; the embedded SQLite queue otherwise."""
        return bool(self.storage_connection)

    @property
    def uses_keyvault(self) -> bool:
        return bool(self.keyvault_url)

    def __repr__(self) -> str:  # never print keys or connection strings
        return (f"Settings(home={str(self.home)!r}, flows_dir={str(self.flows_dir)!r}, "
                f"cosmos={'on' if self.uses_cosmos else 'off'}, "
                f"queue={'azure' if self.uses_azure_queue else 'embedded'}, "
                f"keyvault={'on' if self.uses_keyvault else 'off'})")
