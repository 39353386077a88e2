"""Per-tenant secrets in Azure Key Vault: ``tenants--{tenant}--{system}--{key}``.

``SecretClient`` + ``DefaultAzureCredential`` (managed identity on Azure). The name rules
(:func:`datasync.names.secret_name`) keep every name valid for Key Vault as it is. No
message raised or logged here ever carries a secret value.
"""

from __future__ import annotations

from typing import Any

from ...exceptions import ConfigError, SecretNotFound
from ...names import secret_name

__all__ = ["KeyVaultSecretStore"]


class KeyVaultSecretStore:
    """The Key Vault :class:`~datasync.ports.SecretStore`.

    ``credential`` defaults to ``DefaultAzureCredential()``; ``client_kwargs`` go to
    ``SecretClient`` (tests pass ``verify_challenge_resource=False`` and
    ``connection_verify=False`` for a local HTTPS test server). ``client`` may be injected.
    """

    def __init__(
        self,
        vault_url: str | None,
        *,
        credential: Any = None,
        client: Any = None,
        **client_kwargs: Any,
    ) -> None:
        if client is None:
            if not vault_url:
                raise ConfigError("KEYVAULT_URL is not set")
            if not vault_url.startswith("https://"):
                raise ConfigError(f"KEYVAULT_URL must be an https:// URL, got {vault_url!r}")
            from azure.keyvault.secrets import SecretClient

            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            client = SecretClient(vault_url, credential, **client_kwargs)
        self.vault_url = vault_url
        self.client = client

    def __repr__(self) -> str:
        return f"KeyVaultSecretStore({self.vault_url!r})"

    def get(self, tenant: str, system: str, key: str) -> str:
        """The latest version's value; :class:`SecretNotFound` when missing or disabled."""
        from azure.core.exceptions import ResourceNotFoundError

        name = secret_name(tenant, system, key)
        try:
            secret = self.client.get_secret(name)
        except ResourceNotFoundError:
            raise SecretNotFound(tenant, system, key) from None
        if secret.value is None:
            raise SecretNotFound(tenant, system, key)
        return str(secret.value)

    def set(self, tenant: str, system: str, key: str, value: str) -> None:
        """Store ``value`` as a new version of the secret."""
        self.client.set_secret(secret_name(tenant, system, key), value)

    def close(self) -> None:
        self.client.close()
