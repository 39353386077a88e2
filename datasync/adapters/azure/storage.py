"""The ``AzureWebJobsStorage`` account, for the queue and blob adapters alike.

The setting takes the forms the Functions host takes:

- ``UseDevelopmentStorage=true`` — Azurite's well-known account and ports;
- a connection string with ``AccountKey`` or ``SharedAccessSignature``;
- an endpoints-only connection string (``QueueEndpoint=https://…;BlobEndpoint=https://…``)
  or ``AccountName=…`` without a key — identity-based: the client authenticates with
  ``credential`` (default ``DefaultAzureCredential``, the managed identity on Azure).
  :meth:`datasync.config.Settings.from_env` builds this form from the host's
  ``AzureWebJobsStorage__accountName`` / ``__queueServiceUri`` / ``__blobServiceUri``;
- a bare ``https://`` service URL (identity-based, used as given).
"""

from __future__ import annotations

from typing import Any

from ...exceptions import ConfigError

__all__ = ["DEV_STORAGE_CONNECTION", "expand_connection_string", "storage_client"]

DEV_STORAGE_CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
"""What ``UseDevelopmentStorage=true`` means (Azurite's well-known account and ports)."""


def expand_connection_string(value: str) -> str:
    """``UseDevelopmentStorage=true`` → the explicit Azurite string (the SDK lacks it)."""
    if value.strip().rstrip(";").replace(" ", "").lower() == "usedevelopmentstorage=true":
        return DEV_STORAGE_CONNECTION
    return value


def _parts(connection: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in connection.strip().rstrip(";").split(";"):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                "AzureWebJobsStorage is not a valid connection string: expected key=value pairs"
            )
        parts[key.strip().lower()] = value.strip()
    return parts


def _identity_url(parts: dict[str, str], service: str) -> str | None:
    """The service URL of a keyless connection string, or None when it carries a key."""
    if "accountkey" in parts or "sharedaccesssignature" in parts:
        return None
    url = parts.get(f"{service}endpoint")
    if url:
        return url
    account = parts.get("accountname")
    if account:
        suffix = parts.get("endpointsuffix", "core.windows.net")
        return f"https://{account}.{service}.{suffix}"
    raise ConfigError(f"AzureWebJobsStorage has neither a key nor a {service} endpoint")


def storage_client(
    client_cls: Any, connection: str, service: str, *, credential: Any = None, **client_kwargs: Any
) -> Any:
    """A ``QueueServiceClient`` / ``BlobServiceClient`` (``client_cls``) for ``service``
    (``"queue"`` or ``"blob"``) of the account ``connection`` names (see the module doc)."""
    if not connection:
        raise ConfigError("AzureWebJobsStorage is not set")
    connection = expand_connection_string(connection)
    if connection.startswith(("https://", "http://")):
        url: str | None = connection
    else:
        url = _identity_url(_parts(connection), service)
    try:
        if url is not None:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            return client_cls(url, credential=credential, **client_kwargs)
        return client_cls.from_connection_string(connection, credential=credential, **client_kwargs)
    except ValueError as exc:  # the SDK's message names the bad part, not the key
        raise ConfigError(
            f"AzureWebJobsStorage is not a valid connection string: {str(exc).split(':')[0]}"
        ) from None
