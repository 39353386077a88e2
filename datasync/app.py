"""The application object: everything the function code needs, built once from settings.

An :class:`App` owns the ports (tenant, queue, secret, run and page stores), the flow
registry, the secret and tenant caches and the HTTP clients, and closes what it opened.
It is not a process global: the Functions app builds one lazily on first use
(:class:`datasync.functions.AppProvider`), the embedded runtime and the tests build their
own and pass them in.

``App.from_settings`` picks an adapter per port — Azure where its setting is present, the
embedded SQLite backend otherwise; on Azure a missing setting is an error
(:meth:`Settings.check_cloud`). ``App.in_memory`` wires the in-memory adapters (fast tests).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, project_root
from .context import SecretCache
from .http import HttpClients
from .ports import PageStore, QueueBackend, RunStore, SecretStore, TenantStore

if TYPE_CHECKING:
    from .admission import Admission
    from .registry import FlowRegistry
    from .steps import RunSteps

__all__ = ["App", "Ports"]


@dataclass
class Ports:
    """One adapter per port, and how to close them."""

    tenants: TenantStore
    queues: QueueBackend
    secrets: SecretStore
    runs: RunStore
    pages: PageStore
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)


class App:
    """DataSync for one process (or one test): ports, flows, caches, HTTP clients."""

    def __init__(self, settings: Settings, ports: Ports) -> None:
        self.settings = settings
        self.tenants = ports.tenants
        self.queues = ports.queues
        self.secrets = ports.secrets
        self.runs = ports.runs
        self.pages = ports.pages
        self._closers = ports.closers
        self.secret_cache = SecretCache()
        self.http = HttpClients(settings.http)
        self._registry: FlowRegistry | None = None
        self._registry_key: tuple[tuple[str, int, int], ...] = ()
        self._registry_lock = threading.Lock()
        self._steps: RunSteps | None = None
        self._admission: Admission | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> App:
        """The app over the backends ``settings`` name (from the environment by default)."""
        settings = settings or Settings.from_env()
        settings.check_cloud()
        return cls(settings, _build_ports(settings))

    @classmethod
    def in_memory(cls, settings: Settings | None = None) -> App:
        """The app over in-memory adapters (unit tests of the services)."""
        from .adapters.memory import MemoryBackend

        backend = MemoryBackend()
        return cls(
            settings or Settings(),
            Ports(
                tenants=backend.tenants,
                queues=backend.queues,
                secrets=backend.secrets,
                runs=backend.runs,
                pages=backend.pages,
            ),
        )

    # -- services ----------------------------------------------------------------------
    @property
    def registry(self) -> FlowRegistry:
        """The flows in ``settings.flows_dir``, re-discovered when a file there changes.

        A long-running runtime thus picks up a flow file dropped in (or fixed) without a
        restart; the check is one directory listing."""
        from .registry import FlowRegistry

        key = _flows_signature(self.settings.flows_dir)
        with self._registry_lock:
            if self._registry is None or key != self._registry_key:
                self._registry = FlowRegistry.discover(
                    self.settings.flows_dir,
                    project_root(),
                    import_timeout=self.settings.flow_import_timeout,
                )
                self._registry_key = key
            return self._registry

    @property
    def steps(self) -> RunSteps:
        """The run steps the activities call (one instance: it holds the tenant cache)."""
        if self._steps is None:
            from .steps import RunSteps

            self._steps = RunSteps(self)
        return self._steps

    @property
    def admission(self) -> Admission:
        """What the starter does with a job: start, skip or defer it."""
        if self._admission is None:
            from .admission import Admission

            self._admission = Admission(self)
        return self._admission

    def close(self) -> None:
        """Close the HTTP clients and every adapter (idempotent)."""
        self.http.close()
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"App({self.settings!r})"


def _flows_signature(flows_dir: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        entries = [(e.name, e.stat()) for e in os.scandir(flows_dir) if e.name.endswith(".py")]
    except FileNotFoundError:
        return ()
    return tuple(sorted((name, st.st_mtime_ns, st.st_size) for name, st in entries))


def _build_ports(settings: Settings) -> Ports:
    """Azure adapters where their settings are present, embedded SQLite otherwise.

    ``COSMOS_ENDPOINT`` → tenants, runs and checkpoints on Cosmos (one shared client);
    ``AzureWebJobsStorage`` → job queues on Storage queues and staged pages on Blob
    Storage; ``KEYVAULT_URL`` → secrets on Key Vault. The embedded backend under
    ``DATASYNC_HOME`` is opened only when some port still needs it, so a fully Azure
    configuration writes nothing to the (read-only, per-instance) app disk."""
    closers: list[Callable[[], None]] = []
    local: Any = None

    def embedded() -> Any:
        nonlocal local
        if local is None:
            from .adapters.local import LocalBackend

            local = LocalBackend(settings.home)
            closers.append(local.close)
        return local

    if settings.uses_cosmos or settings.uses_azure_queue or settings.uses_keyvault:
        from .adapters import azure
    if settings.uses_cosmos:
        database = azure.cosmos_database(settings)
        closers.append(database.close)
        tenants: TenantStore = azure.cosmos_tenant_store(settings, database)
        runs: RunStore = azure.cosmos_run_store(settings, database)
    else:
        tenants, runs = embedded().tenants, embedded().runs
    if settings.uses_azure_queue:
        queue_backend = azure.storage_queue_backend(settings)
        closers.append(queue_backend.close)
        page_store = azure.blob_page_store(settings)
        closers.append(page_store.close)
        queues: QueueBackend = queue_backend
        pages: PageStore = page_store
    else:
        queues, pages = embedded().queues, embedded().pages
    if settings.uses_keyvault:
        vault = azure.keyvault_secret_store(settings)
        closers.append(vault.close)
        secrets: SecretStore = vault
    else:
        secrets = embedded().secrets
    return Ports(
        tenants=tenants, queues=queues, secrets=secrets, runs=runs, pages=pages, closers=closers
    )
