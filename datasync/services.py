"""Wiring: build the ports from settings once per process, and hand them to the function code.

The Functions host imports ``function_app.py`` in a worker process; the local runtime does
the same in its own process. Either way the function code calls :func:`get_services`.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings
from .ports import PageStore, QueueBackend, RunStore, SecretStore, TenantStore

if TYPE_CHECKING:
    from .registry import FlowRegistry

__all__ = ["Services", "build_services", "get_services", "reset_services"]


@dataclass
class Services:
    settings: Settings
    tenants: TenantStore
    queues: QueueBackend
    secrets: SecretStore
    runs: RunStore
    pages: PageStore
    _closers: list = field(default_factory=list, repr=False)

    _registry: Any = field(default=None, repr=False)
    _registry_key: tuple = field(default=(), repr=False)

    @property
    def registry(self) -> "FlowRegistry":
        """The flows in ``settings.flows_dir``, re-discovered when a file there changes.

        A long-running runtime thus picks up a flow file dropped in (or fixed) without a
        restart; the check is one directory listing."""
        from .config import project_root
        from .registry import FlowRegistry
        key = _flows_signature(self.settings.flows_dir)
        with _registry_lock:
            if self._registry is None or key != self._registry_key:
                self._registry = FlowRegistry.discover(self.settings.flows_dir, project_root())
                self._registry_key = key
            return self._registry

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


_registry_lock = threading.Lock()


def _flows_signature(flows_dir: Path) -> tuple:
    try:
        entries = [(e.name, e.stat()) for e in os.scandir(flows_dir) if e.name.endswith(".py")]
    except FileNotFoundError:
        return ()
    return tuple(sorted((name, st.st_mtime_ns, st.st_size) for name, st in entries))


def build_services(settings: Settings | None = None) -> Services:
    """Pick an adapter per port: Azure where its setting is present, embedded otherwise.

    ``COSMOS_ENDPOINT`` → tenants, runs and checkpoints on Cosmos (one shared client);
    ``AzureWebJobsStorage`` → job queues on Storage queues and staged pages on Blob
    Storage; ``KEYVAULT_URL`` → secrets on Key Vault. The embedded SQLite backend under
    ``DATASYNC_HOME`` is opened only when some port still needs it, so a fully Azure
    configuration writes nothing to the (read-only, per-instance) app disk."""
    settings = settings or Settings.from_env()
    closers: list = []
    local = None

    def embedded():
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
    return Services(settings=settings, tenants=tenants, queues=queues, secrets=secrets,
                    runs=runs, pages=pages, _closers=closers)


_lock = threading.Lock()
_services: Services | None = None


def get_services() -> Services:
    """The process-wide services, built on first use from the environment."""
    global _services
    with _lock:
        if _services is None:
            _services = build_services()
        return _services


def reset_services(services: Services | None = None) -> None:
    """Drop (and close) the current services; install ``services`` if given (tests, runtime)."""
    global _services
    with _lock:
        if _services is not None and _services is not services:
            _services.close()
        _services = services
