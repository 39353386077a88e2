"""The Azure adapters (Cosmos DB, Storage queues and blobs, Key Vault).

Built by ``datasync.services.build_services`` when their settings are present. The Azure
SDKs are imported lazily, so the embedded runtime never pays for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...config import Settings
from ...exceptions import ConfigError

if TYPE_CHECKING:
    from .cosmos import CosmosTenantStore
    from .cosmos_db import CosmosDatabase
    from .keyvault import KeyVaultSecretStore
    from .pages import BlobPageStore
    from .runs import CosmosRunStore
    from .storage_queue import StorageQueueBackend

__all__ = [
    "blob_page_store",
    "cosmos_database",
    "cosmos_run_store",
    "cosmos_tenant_store",
    "keyvault_secret_store",
    "storage_queue_backend",
]


def cosmos_database(settings: Settings) -> CosmosDatabase:
    """The process's one Cosmos client and database (``COSMOS_ENDPOINT``; ``COSMOS_KEY``
    or managed identity), shared by the tenant and run stores."""
    if not settings.cosmos_endpoint:
        raise ConfigError("COSMOS_ENDPOINT is not set")
    from .cosmos_db import CosmosDatabase

    return CosmosDatabase(settings)


def cosmos_tenant_store(
    settings: Settings, database: CosmosDatabase | None = None
) -> CosmosTenantStore:
    """Tenants on Cosmos: container ``COSMOS_CONTAINER`` (default ``tenants``)."""
    if not settings.cosmos_endpoint:
        raise ConfigError("COSMOS_ENDPOINT is not set")
    from .cosmos import CosmosTenantStore

    return CosmosTenantStore(settings, database=database)


def cosmos_run_store(settings: Settings, database: CosmosDatabase | None = None) -> CosmosRunStore:
    """Run history and checkpoints on Cosmos: containers ``runs`` and ``checkpoints``."""
    if not settings.cosmos_endpoint:
        raise ConfigError("COSMOS_ENDPOINT is not set")
    from .runs import CosmosRunStore

    return CosmosRunStore(settings, database=database)


def storage_queue_backend(settings: Settings) -> StorageQueueBackend:
    """Job queues on the ``AzureWebJobsStorage`` account (Azurite for
    ``UseDevelopmentStorage=true``)."""
    if not settings.storage_connection:
        raise ConfigError("AzureWebJobsStorage is not set")
    from .storage_queue import StorageQueueBackend

    return StorageQueueBackend(settings.storage_connection)


def blob_page_store(settings: Settings) -> BlobPageStore:
    """Staged pages in the blob container ``datasync-pages`` of ``AzureWebJobsStorage``."""
    if not settings.storage_connection:
        raise ConfigError("AzureWebJobsStorage is not set")
    from .pages import BlobPageStore

    return BlobPageStore(settings.storage_connection)


def keyvault_secret_store(settings: Settings) -> KeyVaultSecretStore:
    """Secrets in the vault at ``KEYVAULT_URL`` (``DefaultAzureCredential``)."""
    if not settings.keyvault_url:
        raise ConfigError("KEYVAULT_URL is not set")
    from .keyvault import KeyVaultSecretStore

    return KeyVaultSecretStore(settings.keyvault_url)
