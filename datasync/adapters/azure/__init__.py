"""The Azure adapters (Cosmos DB, Storage queues, Key Vault).

Built by ``datasync.services.build_services`` when their settings are present."""
from __future__ import annotations

from ...config import Settings
from ...exceptions import ConfigError

__all__ = ["cosmos_tenant_store", "storage_queue_backend", "keyvault_secret_store"]


def cosmos_tenant_store(settings: Settings):
    raise ConfigError("COSMOS_ENDPOINT is set, but the Cosmos tenant store is not built yet")


def storage_queue_backend(settings: Settings):
    raise ConfigError("AzureWebJobsStorage is set, but the Storage queue adapter is not "
                      "built yet")


def keyvault_secret_store(settings: Settings):
    raise ConfigError("KEYVAULT_URL is set, but the Key Vault secret store is not built yet")
