"""Staged page records in Blob Storage: container ``datasync-pages`` of
``AzureWebJobsStorage`` (Azurite locally).

One JSON blob per key (``<instance id>/p000001/pulled``, ``…/out``); ``delete_prefix``
lists by prefix and deletes each blob. Pages of a run that failed for good stay behind:
the infrastructure template adds a lifecycle rule that deletes blobs here after 7 days.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

from ...exceptions import ConfigError, NotFound
from .storage import storage_client

__all__ = ["PAGES_CONTAINER", "BlobPageStore"]

PAGES_CONTAINER = "datasync-pages"


class BlobPageStore:
    """The Blob :class:`~datasync.ports.PageStore`. ``connection`` is any form of
    ``AzureWebJobsStorage`` (see :mod:`.storage`); the container is created on first use."""

    def __init__(
        self,
        connection: str,
        *,
        container: str = PAGES_CONTAINER,
        credential: Any = None,
        **client_kwargs: Any,
    ) -> None:
        from azure.storage.blob import BlobServiceClient

        if not connection:
            raise ConfigError("AzureWebJobsStorage is not set")
        self.service = storage_client(
            BlobServiceClient, connection, "blob", credential=credential, **client_kwargs
        )
        self.container = self.service.get_container_client(container)
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BlobPageStore({self.container.url!r})"

    def _ensure(self) -> Any:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    from azure.core.exceptions import ResourceExistsError

                    with contextlib.suppress(ResourceExistsError):
                        self.container.create_container()
                    self._ready = True
        return self.container

    def put(self, key: str, records: list[dict[str, Any]]) -> None:
        """Store (or overwrite) the records under ``key``."""
        from azure.storage.blob import ContentSettings

        data = json.dumps(records, separators=(",", ":")).encode()
        self._ensure().upload_blob(
            key,
            data,
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )

    def get(self, key: str) -> list[dict[str, Any]]:
        """The records under ``key``; :class:`NotFound` when the blob is gone."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data = self._ensure().download_blob(key).readall()
        except ResourceNotFoundError:
            raise NotFound(f"staged page {key!r} is gone") from None
        records: list[dict[str, Any]] = json.loads(data)
        return records

    def delete_prefix(self, prefix: str) -> None:
        """Delete every blob whose name starts with ``prefix`` (a gone one is fine)."""
        from azure.core.exceptions import ResourceNotFoundError

        container = self._ensure()
        for name in [b.name for b in container.list_blobs(name_starts_with=prefix)]:
            with contextlib.suppress(ResourceNotFoundError):
                container.delete_blob(name)

    def close(self) -> None:
        self.service.close()
