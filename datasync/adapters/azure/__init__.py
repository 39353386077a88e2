"""The Azure adapters (Cosmos DB, Storage queues, Key Vault).

Built by ``datasync.services.build_services`` when their settings are present. The Azure
SDKs are imported lazily, so the embedded runtime never pays for them."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...config import Settings
from ...exceptions import ConfigError

if TYPE_CHECKING:
    from .cosmos import CosmosTenantStore
    from .keyvault import KeyVaultSecretStore
    from .storage_queue import StorageQueueBackend

__all__ = ["cosmos_tenant_store", "storage_queue_backend", "keyvault_secret_store"]


def cosmos_tenant_store(settings: Settings) -> "CosmosTenantStore":
    """Tenants on Cosmos (``COSMOS_ENDPOINT``; ``COSMOS_KEY`` or managed identity)."""
    if not settings.cosmos_endpoint:
        raise ConfigError("COSMOS_ENDPOINT is not set")
    from .cosmos import CosmosTenantStore
    return CosmosTenantStore(settings)


def storage_queue_backend(settings: Settings) -> "StorageQueueBackend":
    """Job queues on the ``AzureWebJobsStorage`` account (Azurite for
    ``UseDevelopmentStorage=true``)."""
    if not settings.storage_connection:
        raise ConfigError("AzureWebJobsStorage is not set")
    from .storage_queue import StorageQueueBackend
    return StorageQueueBackend(settings.storage_connection)


def keyvault_secret_store(settings: Settings) -> "KeyVaultSecretStore":
    """Secrets in the vault at ``KEYVAULT_URL`` (``DefaultAzureCredential``)."""
    if not settings.keyvault_url:
        raise ConfigError("KEYVAULT_URL is not set")
    from .keyvault import KeyVaultSecretStore
    return KeyVaultSecretStore(settings.keyvault_url)
