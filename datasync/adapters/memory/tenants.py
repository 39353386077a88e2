"""Tenant documents in a dict, with Cosmos semantics: a document etag that changes on
every write, and a due query over the raw documents (invalid ones come back as raw rows
for the scheduler to report, as from Cosmos)."""

from __future__ import annotations

import copy
import itertools
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ...exceptions import InvalidDocument, NotFound
from ...models import SCHEDULE_KEYS, Tenant, parse_tenant
from ...names import format_utc
from ...ports import DueFlow

__all__ = ["MemoryTenantStore"]

log = logging.getLogger("datasync.tenants")

Doc = dict[str, Any]


def _active_flows(doc: Doc, cutoff: str) -> Iterator[tuple[int, Doc]]:
    """(index, entry) of a document's due flows, by the rules of the Cosmos due query."""
    if doc.get("type", "Tenant") != "Tenant" or doc.get("paused", False) is not False:
        return
    flows = doc.get("flows")
    if not isinstance(flows, list):
        return
    for index, entry in enumerate(flows):
        if not isinstance(entry, dict) or entry.get("enabled", True) is not True:
            continue
        next_run = entry.get("nextRunUtc")
        if next_run is None or (isinstance(next_run, str) and next_run <= cutoff):
            yield index, entry


class MemoryTenantStore:
    """The in-memory :class:`~datasync.ports.TenantStore` (thread-safe)."""

    def __init__(self) -> None:
        self._docs: dict[str, tuple[Doc, str]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"MemoryTenantStore({len(self._docs)} tenants)"

    def _store(self, doc: Doc) -> None:
        self._docs[doc["id"]] = (doc, f"v{next(self._versions)}")

    def put_document(self, doc: Doc) -> None:
        """Store a raw document as it is, valid or not (tests: a document broken in the
        store). It needs a string ``id``."""
        if not isinstance(doc.get("id"), str):
            raise ValueError("a stored document needs a string id")
        with self._lock:
            self._store(copy.deepcopy(doc))

    # -- reads ---------------------------------------------------------------------------
    def get_with_etag(self, tenant_id: str) -> tuple[Tenant, str]:
        with self._lock:
            found = self._docs.get(tenant_id)
            if found is None:
                raise NotFound(f"unknown tenant {tenant_id!r}")
            doc, etag = copy.deepcopy(found[0]), found[1]
        return parse_tenant(doc), etag

    def get(self, tenant_id: str) -> Tenant:
        return self.get_with_etag(tenant_id)[0]

    def iter_tenants(self) -> Iterator[Tenant]:
        with self._lock:
            ids = sorted(self._docs)
        for tenant_id in ids:
            try:
                yield self.get(tenant_id)
            except NotFound:  # deleted meanwhile
                continue
            except InvalidDocument as exc:
                log.error("skipping invalid tenant document: %s", exc)

    # -- writes --------------------------------------------------------------------------
    def upsert_many(self, tenants: list[Tenant]) -> None:
        docs = [t.to_doc() for t in tenants]
        with self._lock:
            for doc in docs:
                self._store(doc)

    def replace_if_match(self, tenant: Tenant, etag: str) -> bool:
        doc = tenant.to_doc()
        with self._lock:
            found = self._docs.get(tenant.tenant_id)
            if found is None:
                raise NotFound(f"unknown tenant {tenant.tenant_id!r}")
            if found[1] != etag:
                return False
            self._store(doc)
            return True

    def delete(self, tenant_id: str) -> None:
        """Drop a tenant (no port operation; tests). Missing: a no-op."""
        with self._lock:
            self._docs.pop(tenant_id, None)

    # -- scheduler -----------------------------------------------------------------------
    def due_flows(
        self, now: datetime, *, page_size: int = 1000, tenant_id: str | None = None
    ) -> Iterator[list[DueFlow]]:
        """Due flows as of the call (one consistent snapshot), ordered by ``nextRunUtc``
        (missing first), tenant and position. ``etag`` is the document's etag."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        cutoff = format_utc(now)
        with self._lock:
            rows = [
                DueFlow(
                    tenant_id=tid,
                    flow_index=index,
                    flow_name=entry.get("name"),
                    cron=entry.get("cron"),
                    timezone=doc.get("timezone", "UTC"),
                    next_run_utc=entry.get("nextRunUtc"),
                    etag=etag,
                    options={k: entry[k] for k in SCHEDULE_KEYS if k in entry} or None,
                )
                for tid, (doc, etag) in self._docs.items()
                if tenant_id is None or tid == tenant_id
                for index, entry in _active_flows(doc, cutoff)
            ]
        rows.sort(key=lambda r: (r.next_run_utc or "", r.tenant_id, r.flow_index))
        for start in range(0, len(rows), page_size):
            yield rows[start : start + page_size]

    def advance(self, updates: list[tuple[DueFlow, str]]) -> list[DueFlow]:
        """Move each flow on iff its entry still has the name and ``nextRunUtc`` the scan
        read (so an edit, a trigger or another scheduler in between wins)."""
        lost: list[DueFlow] = []
        with self._lock:
            changed: dict[str, Doc] = {}
            for flow, next_run in updates:
                found = self._docs.get(flow.tenant_id)
                doc = changed.get(flow.tenant_id) or (copy.deepcopy(found[0]) if found else None)
                flows = doc.get("flows") if doc is not None else None
                entry = (
                    flows[flow.flow_index]
                    if isinstance(flows, list) and 0 <= flow.flow_index < len(flows)
                    else None
                )
                if (
                    doc is None
                    or not isinstance(entry, dict)
                    or entry.get("name") != flow.flow_name
                    or entry.get("nextRunUtc") != flow.next_run_utc
                ):
                    lost.append(flow)
                    continue
                entry["nextRunUtc"] = next_run
                changed[flow.tenant_id] = doc
            for doc in changed.values():
                self._store(doc)
        return lost
