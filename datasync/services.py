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
        return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                            for e in os.scandir(flows_dir) if e.name.endswith(".py")))
    except FileNotFoundError:
        return ()


def build_services(settings: Settings | None = None) -> Services:
    """Pick an adapter per port: Azure where its setting is present, embedded otherwise."""
    settings = settings or Settings.from_env()
    from .adapters.local import LocalBackend
    local = LocalBackend(settings.home)
    tenants: TenantStore = local.tenants
    queues: QueueBackend = local.queues
    secrets: SecretStore = local.secrets
    runs: RunStore = local.runs
    pages: PageStore = local.pages
    closers = [local.close]
    if settings.uses_cosmos or settings.uses_azure_queue or settings.uses_keyvault:
        from .adapters import azure
        if settings.uses_cosmos:
            tenants = azure.cosmos_tenant_store(settings)
        if settings.uses_azure_queue:
            queues = azure.storage_queue_backend(settings)
        if settings.uses_keyvault:
            secrets = azure.keyvault_secret_store(settings)
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
