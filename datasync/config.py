"""Settings: every setting DataSync reads, parsed and range-checked once, one default each.

They come from the environment: app settings on Azure, ``local.settings.json`` under
``func start``, the plain environment for the embedded runtime. :meth:`Settings.from_env`
is the only place that reads them; a bad value is a :class:`ConfigError` naming the setting.

On Azure (``WEBSITE_INSTANCE_ID``, or ``CONTAINER_NAME`` with ``WEBSITE_SITE_NAME``, set by
the platform) a port whose
setting is missing stops the app at start (:meth:`Settings.check_cloud`) instead of
silently falling back to SQLite on the instance's disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .exceptions import ConfigError
from .http import RetryPolicy

__all__ = ["DEFAULT_SCAN_SCHEDULE", "Settings", "project_root"]

DEFAULT_SCAN_SCHEDULE = "0 0 * * * *"
_N = TypeVar("_N", int, float)


def project_root() -> Path:
    """The directory holding ``function_app.py`` (the app root on Azure too)."""
    env = os.environ.get("DATASYNC_PROJECT_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def _number(
    env: Mapping[str, str], name: str, kind: Callable[[str], _N], default: _N, lo: _N, hi: _N
) -> _N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {env.get(name)!r}")


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_IDENTITY_STORAGE = (
    ("Blob", "blobServiceUri"),
    ("Queue", "queueServiceUri"),
    ("Table", "tableServiceUri"),
)


def _identity_storage(env: Mapping[str, str]) -> str | None:
    """The host's identity-based ``AzureWebJobsStorage__accountName`` (or
    ``__blobServiceUri``/``__queueServiceUri``/``__tableServiceUri``) as an endpoints-only
    connection string; the Storage adapters then authenticate with the managed identity."""
    account = env.get("AzureWebJobsStorage__accountName")
    parts = []
    for service, key in _IDENTITY_STORAGE:
        uri = env.get(f"AzureWebJobsStorage__{key}") or (
            f"https://{account}.{service.lower()}.core.windows.net" if account else None
        )
        if uri:
            parts.append(f"{service}Endpoint={uri}")
    return ";".join(parts) or None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting DataSync reads. ``local.settings.json.example`` lists the same names.

    Embedded-runtime only (ignored by the Functions host): ``home``, ``activity_workers``,
    ``queue_retry_delay``; the host takes their counterparts from ``host.json``."""

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
    requeue_delay: float = 30.0
    """Seconds a deferred job (overlap=queue, maxConcurrentRuns) waits before it is retried."""
    start_claim_seconds: float = 30.0
    """A Pending run record older than this whose instance does not exist was stranded by a
    starter that died between claiming the job and starting it: a redelivery takes it over."""
    http: RetryPolicy = field(default_factory=RetryPolicy)
    log_level: str = "INFO"
    activity_workers: int = 4
    queue_retry_delay: float | None = None
    """Embedded runtime: seconds before a failed message is retried (host.json's
    ``visibilityTimeout`` when unset)."""
    on_azure: bool = False
    flow_import_timeout: float = 10.0
    """Seconds one flow file may take to import; one that takes longer is reported as broken
    (by name) and the other flows load."""
    log_format: str = "text"
    """``DATASYNC_LOG_FORMAT``: ``text`` or ``json`` (one object per line; datasync/logs.py)."""
    run_detail_pages: int = 500
    """``DATASYNC_RUN_DETAIL_PAGES`` (2–100000): pages of a run kept in full in its detail
    (the first and the latest half each); the pages between are summarised."""
    run_retention_days: int = 30
    """``DATASYNC_RUN_RETENTION_DAYS`` (1–3650): finished runs older than this are pruned
    with their page detail (``RunStore.prune``)."""
    console_actions: bool = False
    """``DATASYNC_CONSOLE_ACTIONS``: the web console offers actions (trigger, pause, rerun …);
    read-only when false."""
    console_token: str | None = field(default=None, repr=False)
    """``DATASYNC_CONSOLE_TOKEN``: locally, the token that unlocks the console's actions
    (None: one is generated at start). Never printed by the console's pages."""
    app_service_auth: bool = False
    """``WEBSITE_AUTH_ENABLED`` (set by App Service when its authentication is on): only
    then does the console on Azure trust the ``X-MS-CLIENT-PRINCIPAL`` header."""
    lookahead_seconds: float | None = None
    """``DATASYNC_LOOKAHEAD_SECONDS`` (0–518400): how far ahead each scan enqueues
    occurrences (0: only what is due now). None: :meth:`lookahead`'s default."""
    telemetry: tuple[str, ...] = ()
    """Telemetry exporters (datasync/telemetry): ``azure-monitor`` when
    ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, ``otlp`` when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, ``console`` on ``DATASYNC_TELEMETRY=console``;
    ``DATASYNC_TELEMETRY=off`` turns all of them off. Empty: no telemetry at all."""
    appinsights_connection_string: str | None = None
    """``APPLICATIONINSIGHTS_CONNECTION_STRING`` (never printed)."""
    stuck_pending_seconds: float = 300.0
    """``DATASYNC_STUCK_PENDING_SECONDS``: a run Pending longer than this counts as stuck."""
    stuck_running_seconds: float = 1800.0
    """``DATASYNC_STUCK_RUNNING_SECONDS``: a Running run without page progress for this long
    counts as stuck."""
    metrics_tenant_label: bool = False
    """``DATASYNC_METRICS_TENANT_LABEL``: put the tenant id on run metrics (cardinality!)."""

    def lookahead(self) -> float:
        """The scheduler's look-ahead in seconds: the override, else two scan intervals
        plus a margin (datasync.schedule.default_lookahead)."""
        if self.lookahead_seconds is not None:
            return self.lookahead_seconds
        from .schedule import default_lookahead

        return default_lookahead(self.scan_schedule)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting; :class:`ConfigError` names the first bad one."""
        env = os.environ if env is None else env
        root = project_root()
        home = Path(env.get("DATASYNC_HOME") or ".datasync")
        flows = Path(env.get("DATASYNC_FLOWS_DIR") or root / "flows")
        level = (env.get("DATASYNC_LOG_LEVEL") or "INFO").strip().upper()
        if level not in _LOG_LEVELS:
            raise ConfigError(
                f"DATASYNC_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, "
                f"got {env.get('DATASYNC_LOG_LEVEL')!r}"
            )
        retry_delay = env.get("DATASYNC_QUEUE_RETRY_DELAY", "").strip()
        return cls(
            scan_schedule=_scan_schedule(env),
            home=home.resolve(),
            flows_dir=flows.resolve(),
            cosmos_endpoint=env.get("COSMOS_ENDPOINT") or None,
            cosmos_key=env.get("COSMOS_KEY") or None,
            cosmos_database=env.get("COSMOS_DATABASE") or "flowsync",
            cosmos_container=env.get("COSMOS_CONTAINER") or "tenants",
            cosmos_verify_tls=_flag(env, "COSMOS_VERIFY_TLS", True),
            storage_connection=(env.get("AzureWebJobsStorage") or _identity_storage(env) or None),
            keyvault_url=env.get("KEYVAULT_URL") or None,
            pages_per_generation=_number(env, "DATASYNC_PAGES_PER_GENERATION", int, 10, 1, 1000),
            requeue_delay=_number(env, "DATASYNC_REQUEUE_DELAY", float, 30.0, 0.0, 86400.0),
            start_claim_seconds=_number(
                env, "DATASYNC_START_CLAIM_SECONDS", float, 30.0, 0.0, 3600.0
            ),
            http=RetryPolicy(
                attempts=_number(env, "DATASYNC_HTTP_ATTEMPTS", int, 5, 1, 100),
                timeout=_number(env, "DATASYNC_HTTP_TIMEOUT", float, 30.0, 0.001, 3600.0),
                budget=_number(env, "DATASYNC_HTTP_BUDGET", float, 300.0, 0.0, 86400.0),
                backoff_base=_number(env, "DATASYNC_HTTP_BACKOFF_BASE", float, 0.5, 0.0, 3600.0),
            ),
            log_level=level,
            activity_workers=_number(env, "DATASYNC_ACTIVITY_WORKERS", int, 4, 1, 256),
            queue_retry_delay=(
                _number(env, "DATASYNC_QUEUE_RETRY_DELAY", float, 0.0, 0.0, 86400.0)
                if retry_delay
                else None
            ),
            on_azure=_on_azure(env),
            flow_import_timeout=_number(
                env, "DATASYNC_FLOW_IMPORT_TIMEOUT", float, 10.0, 0.1, 3600.0
            ),
            log_format=_log_format(env),
            run_detail_pages=_number(env, "DATASYNC_RUN_DETAIL_PAGES", int, 500, 2, 100_000),
            run_retention_days=_number(env, "DATASYNC_RUN_RETENTION_DAYS", int, 30, 1, 3650),
            console_actions=_flag(env, "DATASYNC_CONSOLE_ACTIONS", False),
            console_token=env.get("DATASYNC_CONSOLE_TOKEN", "").strip() or None,
            app_service_auth=env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true",
            telemetry=_telemetry(env),
            appinsights_connection_string=(
                env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip() or None
            ),
            stuck_pending_seconds=_number(
                env, "DATASYNC_STUCK_PENDING_SECONDS", float, 300.0, 1.0, 604800.0
            ),
            stuck_running_seconds=_number(
                env, "DATASYNC_STUCK_RUNNING_SECONDS", float, 1800.0, 1.0, 604800.0
            ),
            metrics_tenant_label=_flag(env, "DATASYNC_METRICS_TENANT_LABEL", False),
            lookahead_seconds=(
                _number(env, "DATASYNC_LOOKAHEAD_SECONDS", float, 0.0, 0.0, 518400.0)
                if env.get("DATASYNC_LOOKAHEAD_SECONDS", "").strip()
                else None
            ),
        )

    def check_cloud(self) -> None:
        """On Azure every port must be configured: no silent SQLite on the instance disk."""
        if not self.on_azure:
            return
        missing = [
            name
            for name, present in (
                ("COSMOS_ENDPOINT", self.uses_cosmos),
                (
                    "AzureWebJobsStorage (or AzureWebJobsStorage__accountName)",
                    self.uses_azure_queue,
                ),
                ("KEYVAULT_URL", self.uses_keyvault),
            )
            if not present
        ]
        if missing:
            raise ConfigError(
                "running on Azure but these app settings are missing: "
                + ", ".join(missing)
                + " (without them DataSync would keep tenants, runs, queues or secrets on the "
                "instance's local disk)"
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

    def backends(self) -> dict[str, str]:
        """Which backend each port uses (for the start banner; no secrets)."""
        return {
            "tenants": "cosmos" if self.uses_cosmos else "sqlite",
            "runs": "cosmos" if self.uses_cosmos else "sqlite",
            "queues": "storage" if self.uses_azure_queue else "sqlite",
            "pages": "blob" if self.uses_azure_queue else "sqlite",
            "secrets": "keyvault" if self.uses_keyvault else "local file",
        }

    def __repr__(self) -> str:  # never print keys or connection strings
        return (
            f"Settings(home={str(self.home)!r}, flows_dir={str(self.flows_dir)!r}, "
            f"cosmos={'on' if self.uses_cosmos else 'off'}, "
            f"queue={'azure' if self.uses_azure_queue else 'embedded'}, "
            f"keyvault={'on' if self.uses_keyvault else 'off'})"
        )


def _on_azure(env: Mapping[str, str]) -> bool:
    """Running on the Azure platform: App Service/Premium/Dedicated set
    ``WEBSITE_INSTANCE_ID``; Linux Consumption and Flex set ``CONTAINER_NAME`` together with
    ``WEBSITE_SITE_NAME`` (``CONTAINER_NAME`` alone is set by many container runtimes)."""
    return bool(
        env.get("WEBSITE_INSTANCE_ID")
        or (env.get("CONTAINER_NAME") and env.get("WEBSITE_SITE_NAME"))
    )


def _log_format(env: Mapping[str, str]) -> str:
    raw = env.get("DATASYNC_LOG_FORMAT", "")
    value = raw.strip().lower() or "text"
    if value not in ("text", "json"):
        raise ConfigError(f"DATASYNC_LOG_FORMAT must be text or json, got {raw!r}")
    return value


def _telemetry(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("DATASYNC_TELEMETRY", "")
    mode = raw.strip().lower()
    if mode not in ("", "auto", "console", "off"):
        raise ConfigError(f"DATASYNC_TELEMETRY must be auto, console or off, got {raw!r}")
    if mode == "off":
        return ()
    exporters = []
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip():
        exporters.append("azure-monitor")
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        exporters.append("otlp")
    if mode == "console":
        exporters.append("console")
    return tuple(exporters)


def _scan_schedule(env: Mapping[str, str]) -> str:
    from .exceptions import ValidationError
    from .schedule import validate_cron

    value = (env.get("DATASYNC_SCAN_SCHEDULE") or DEFAULT_SCAN_SCHEDULE).strip()
    try:
        validate_cron(value)
    except ValidationError as exc:
        raise ConfigError(f"DATASYNC_SCAN_SCHEDULE: {exc}") from None
    return value
