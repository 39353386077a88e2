"""One Cosmos client per process and the containers DataSync keeps in its database.

Cosmos recommends a single ``CosmosClient`` per process; :class:`CosmosDatabase` is that
client plus the database named by ``COSMOS_DATABASE`` (default ``flowsync``). Containers
are opened lazily and created when missing (key auth only: a managed identity has no
control-plane rights, so on Azure the Bicep template creates them ahead).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from ...config import Settings
from ...exceptions import ConfigError

__all__ = ["CosmosDatabase"]


class CosmosDatabase:
    """The database of ``settings``; ``container(name)`` opens (or creates) one container.

    Key auth when ``COSMOS_KEY`` is set, else ``credential`` or ``DefaultAzureCredential``
    (managed identity). ``client_kwargs`` go to ``CosmosClient``. Nothing connects until
    the first ``container`` call, so building the services never blocks.
    """

    def __init__(self, settings: Settings, *, credential: Any = None, **client_kwargs: Any) -> None:
        if not settings.cosmos_endpoint:
            raise ConfigError("COSMOS_ENDPOINT is not set")
        self.settings = settings
        self._credential = credential
        self._client_kwargs = client_kwargs
        self._client: Any = None
        self._containers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CosmosDatabase({self.settings.cosmos_endpoint!r}, {self.settings.cosmos_database})"

    def _connect(self) -> Any:
        if self._client is None:
            from azure.cosmos import CosmosClient

            s = self.settings
            assert s.cosmos_endpoint  # checked in __init__
            credential = self._credential or s.cosmos_key
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            if not s.cosmos_verify_tls:  # the local emulator's self-signed certificate only
                try:
                    from urllib3.exceptions import InsecureRequestWarning

                    warnings.simplefilter("ignore", InsecureRequestWarning)
                except ImportError:  # pragma: no cover
                    pass
            self._client = CosmosClient(
                s.cosmos_endpoint,
                credential=credential,
                connection_verify=s.cosmos_verify_tls,
                **self._client_kwargs,
            )
        return self._client

    def container(self, name: str, partition_key: str = "/tenantId") -> Any:
        """The container proxy for ``name`` (read once; created when missing)."""
        with self._lock:
            found = self._containers.get(name)
            if found is None:
                found = self._containers[name] = self._open(name, partition_key)
            return found

    def _open(self, name: str, partition_key: str) -> Any:
        from azure.core.exceptions import AzureError
        from azure.cosmos import PartitionKey
        from azure.cosmos.exceptions import CosmosResourceExistsError, CosmosResourceNotFoundError

        s = self.settings
        where = f"{s.cosmos_database}/{name} at {s.cosmos_endpoint}"
        try:
            client = self._connect()
            container = client.get_database_client(s.cosmos_database).get_container_client(name)
            try:
                container.read()
                return container
            except CosmosResourceNotFoundError:
                pass
            try:
                database = client.create_database_if_not_exists(s.cosmos_database)
                return database.create_container_if_not_exists(
                    name, partition_key=PartitionKey(path=partition_key)
                )
            except CosmosResourceExistsError:  # another instance created it meanwhile
                container.read()
                return container
        except AzureError as exc:
            status = getattr(exc, "status_code", None)
            hint = (
                " (with managed identity, create the database and container ahead, "
                "e.g. in the infrastructure template)"
                if status in (401, 403)
                else ""
            )
            raise ConfigError(
                f"cannot open Cosmos container {where}: "
                f"{type(exc).__name__}{f' {status}' if status else ''}"
                f"{hint}"
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            self._containers.clear()
