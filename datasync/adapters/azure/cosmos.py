"""Tenant documents on Cosmos DB (SQL API): database ``flowsync``, container ``tenants``,
partition key ``/tenantId``.

The scheduler's due query is one parameterised cross-partition query, read page by page
with continuation tokens, so a tick never holds all tenants. ``advance`` writes each
tenant's ``nextRunUtc`` values back with an etag ``IfNotModified`` replace; a concurrent
edit (412) is re-read and only flows whose ``nextRunUtc`` is still the value the scan read
are moved on — the others are reported as lost.

Emulator notes (``@vercel/cosmosdb-server``; the code keeps real Cosmos semantics):

- reading a missing item answers 500 there, not 404; ``scripts/cosmos-server.js`` maps it;
- GROUP BY, DISTINCT, OFFSET/LIMIT, transactional batch and TTL are missing — not used;
- ``partition_key=`` on queries is ignored there; queries here filter in WHERE instead;
- its certificate is self-signed: ``COSMOS_VERIFY_TLS=false`` (never on Azure).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from ...config import Settings
from ...exceptions import ConfigError, InvalidDocument, NotFound
from ...models import SCHEDULE_KEYS, Tenant, parse_tenant
from ...names import format_utc
from ...ports import DueFlow
from .cosmos_db import CosmosDatabase

__all__ = ["DUE_QUERY", "SYSTEM_KEYS", "CosmosTenantStore"]

log = logging.getLogger("datasync.cosmos")

SYSTEM_KEYS = frozenset({"_rid", "_self", "_etag", "_ts", "_attachments", "_lsn"})
"""Properties Cosmos adds to every item; stripped before a document becomes a Tenant."""

DUE_QUERY = (
    "SELECT c.tenantId, f.name, f.cron, f.nextRunUtc, c.timezone, c._etag, "
    "f.jitter, f.catchUp, f.catchUpWindow, f.startAt, f.endAt, f.pausedUntil, "
    "ARRAY(SELECT VALUE {n: g.name, e: g.enabled, r: g.nextRunUtc} FROM g IN c.flows) "
    "AS slots "
    "FROM c JOIN f IN c.flows "
    "WHERE c.type = 'Tenant' "
    "AND (NOT IS_DEFINED(c.paused) OR c.paused = false) "
    "AND (NOT IS_DEFINED(f.enabled) OR f.enabled = true) "
    "AND (NOT IS_DEFINED(f.nextRunUtc) OR IS_NULL(f.nextRunUtc) OR f.nextRunUtc <= @now)"
)
"""Due flows. ``slots`` is a small (name, enabled, nextRunUtc) view of the tenant's flows
array: Cosmos has no JOIN index, so each row's position in ``flows`` is found client-side
(the JOIN yields one document's rows together, in array order)."""

_ADVANCE_ATTEMPTS = 5


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in SYSTEM_KEYS}


class CosmosTenantStore:
    """The Cosmos :class:`~datasync.ports.TenantStore`.

    Connects lazily (first use), so building the services never blocks. ``container`` may
    be injected (tests); else it is opened through ``database`` (a shared
    :class:`~.cosmos_db.CosmosDatabase`) or a client of its own — key auth when
    ``COSMOS_KEY`` is set, ``DefaultAzureCredential`` (managed identity) otherwise.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        credential: Any = None,
        container: Any = None,
        database: CosmosDatabase | None = None,
        **client_kwargs: Any,
    ) -> None:
        if not settings.cosmos_endpoint and container is None:
            raise ConfigError("COSMOS_ENDPOINT is not set")
        self.settings = settings
        self._container = container
        self._owns_database = database is None and container is None
        self._database = (
            database
            if database is not None or container is not None
            else CosmosDatabase(settings, credential=credential, **client_kwargs)
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"CosmosTenantStore({self.settings.cosmos_endpoint!r}, "
            f"{self.settings.cosmos_database}/{self.settings.cosmos_container})"
        )

    # -- connection ----------------------------------------------------------------------
    @property
    def container(self) -> Any:
        if self._container is None:
            with self._lock:
                if self._container is None:
                    assert self._database is not None  # set unless a container was given
                    self._container = self._database.container(self.settings.cosmos_container)
        return self._container

    def close(self) -> None:
        """Close the client when this store made it (a shared database is closed by its owner)."""
        if self._owns_database and self._database is not None:
            self._database.close()

    # -- reads ---------------------------------------------------------------------------
    def _read(self, tenant_id: str) -> dict[str, Any]:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            doc: dict[str, Any] = self.container.read_item(tenant_id, partition_key=tenant_id)
            return doc
        except CosmosResourceNotFoundError:
            raise NotFound(f"unknown tenant {tenant_id!r}") from None

    def get_with_etag(self, tenant_id: str) -> tuple[Tenant, str]:
        doc = self._read(tenant_id)
        return parse_tenant(_strip(doc)), doc["_etag"]

    def get(self, tenant_id: str) -> Tenant:
        return self.get_with_etag(tenant_id)[0]

    def iter_tenants(self) -> Iterator[Tenant]:
        """Every tenant by id, page by page. Invalid documents are logged and skipped."""
        pages = self.container.query_items(
            "SELECT * FROM c WHERE c.type = 'Tenant' ORDER BY c.id",
            enable_cross_partition_query=True,
            max_item_count=100,
        ).by_page()
        for page in pages:
            for doc in page:
                try:
                    yield parse_tenant(_strip(doc))
                except InvalidDocument as exc:
                    log.warning("skipping invalid tenant document: %s", exc)

    # -- writes --------------------------------------------------------------------------
    def upsert_many(self, tenants: list[Tenant]) -> None:
        """Upsert each document (not atomic across tenants: Cosmos has no such batch)."""
        for tenant in tenants:
            self.container.upsert_item(_strip(tenant.to_doc()))

    def replace_if_match(self, tenant: Tenant, etag: str) -> bool:
        from azure.core import MatchConditions
        from azure.cosmos.exceptions import (
            CosmosAccessConditionFailedError,
            CosmosResourceNotFoundError,
        )

        try:
            self.container.replace_item(
                tenant.tenant_id,
                _strip(tenant.to_doc()),
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except CosmosAccessConditionFailedError:
            return False
        except CosmosResourceNotFoundError:
            raise NotFound(f"unknown tenant {tenant.tenant_id!r}") from None
        return True

    # -- scheduler -----------------------------------------------------------------------
    def due_flows(
        self, now: datetime, *, page_size: int = 1000, tenant_id: str | None = None
    ) -> Iterator[list[DueFlow]]:
        """Active flows with ``nextRunUtc`` missing, null or <= now, one page at a time.

        Rows are raw (the scheduler validates them); ``etag`` is the document's ``_etag``.
        Times compare as strings, which is exact for the stored ``...Z`` form."""
        if tenant_id is None:
            query = self.container.query_items(
                DUE_QUERY,
                parameters=[{"name": "@now", "value": format_utc(now)}],
                enable_cross_partition_query=True,
                max_item_count=page_size,
            )
        else:  # one partition
            query = self.container.query_items(
                DUE_QUERY,
                parameters=[{"name": "@now", "value": format_utc(now)}],
                partition_key=tenant_id,
                max_item_count=page_size,
            )
        pages = query.by_page()
        last: list[Any] = [None, -1]  # (tenant, etag) of the previous row, its flow index
        for page in pages:
            rows = [self._due(row, last) for row in page]
            if rows:
                yield rows

    @staticmethod
    def _due(row: dict[str, Any], last: list[Any]) -> DueFlow:
        """One row; its flow index is the next matching slot after the previous row's of the
        same document (a document's rows are contiguous, so one position is all we keep)."""
        key = (row.get("tenantId"), row.get("_etag"))
        start = last[1] + 1 if last[0] == key else 0
        slots = row.get("slots") or []
        name, next_run = row.get("name"), row.get("nextRunUtc")
        index = next(
            (
                i
                for i in range(start, len(slots))
                if isinstance(slots[i], dict)
                and slots[i].get("n") == name
                and slots[i].get("r") == next_run
                and slots[i].get("e", True) is True
            ),
            start,
        )
        last[0], last[1] = key, index
        return DueFlow(
            tenant_id=cast(str, row.get("tenantId")),
            flow_index=index,
            flow_name=name,
            cron=row.get("cron"),
            timezone=row.get("timezone", "UTC"),
            next_run_utc=next_run,
            etag=cast(str, row.get("_etag")),
            options={k: row[k] for k in SCHEDULE_KEYS if k in row} or None,
        )  # raw: the scheduler validates

    def advance(self, updates: list[tuple[DueFlow, str]]) -> list[DueFlow]:
        """Per tenant: read, set each flow's ``nextRunUtc``, replace ``IfNotModified``.

        A flow is moved on only while its entry still has the name and ``nextRunUtc`` the
        scan read (so an edit, a ``trigger`` or another scheduler in between wins); on 412
        the document is re-read and the rule applied again. Returns the flows that lost."""
        by_tenant: dict[str, list[tuple[DueFlow, str]]] = {}
        for flow, next_run in updates:
            by_tenant.setdefault(flow.tenant_id, []).append((flow, next_run))
        lost: list[DueFlow] = []
        for tenant_id, items in by_tenant.items():
            lost.extend(self._advance_one(tenant_id, items))
        return lost

    def _advance_one(self, tenant_id: str, items: list[tuple[DueFlow, str]]) -> list[DueFlow]:
        from azure.core import MatchConditions
        from azure.cosmos.exceptions import CosmosAccessConditionFailedError

        for _ in range(_ADVANCE_ATTEMPTS):
            try:
                doc = self._read(tenant_id)
            except NotFound:
                return [flow for flow, _ in items]
            flows = doc.get("flows")
            won, lost = [], []
            for flow, next_run in items:
                entry = (
                    flows[flow.flow_index]
                    if isinstance(flows, list) and 0 <= flow.flow_index < len(flows)
                    else None
                )
                if (
                    isinstance(entry, dict)
                    and entry.get("name") == flow.flow_name
                    and entry.get("nextRunUtc") == flow.next_run_utc
                ):
                    entry["nextRunUtc"] = next_run
                    won.append(flow)
                else:
                    lost.append(flow)
            if not won:
                return lost
            try:
                self.container.replace_item(
                    tenant_id,
                    _strip(doc),
                    etag=doc["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return lost
            except CosmosAccessConditionFailedError:
                log.info("tenant %s changed while advancing its flows; re-reading", tenant_id)
        log.warning("tenant %s kept changing; its next runs are left for the next tick", tenant_id)
        return [flow for flow, _ in items]
