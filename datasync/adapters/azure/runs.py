"""Run history and checkpoints on Cosmos DB, in the tenants' database (``flowsync``).

Containers (both partitioned by ``/tenantId``, created when missing with key auth; the
Bicep template creates them for managed identity):

- ``runs``: one item per run, ``id`` = the instance id, the ``runs --json`` fields plus
  ``type: "Run"``, ``createdAt`` (the order of ``recent``) and ``claimedAt`` (when
  ``create`` or ``take_over_pending`` last claimed it);
- ``checkpoints``: one item per tenant+flow, ``id`` = ``{tenant}--{flow}`` (the name rules
  forbid ``--`` inside either, so ids never collide): cursor, ``ctx.state``, and the run
  and counters that saved them.

The starter's dedupe, ``create``, is one ``create_item``: Cosmos keeps ``id`` unique per
partition (the tenant), so of racing starters exactly one succeeds and the others get 409.
Where the SQLite store uses a transaction, this one does an etag-guarded read-modify-write
(``IfNotModified`` replace, re-read on 412; ``create_item`` for a new run, re-read on 409).

Fencing (:func:`~datasync.ports.fence_checkpoint`): the checkpoint item names the run
that owns it (``runId``, claimed by ``begin``) and its page (``pages``). ``checkpoint`` is
an etag-conditional write of that item (``create_item`` when there is none, else an
``IfNotModified`` replace): on 412/409 it re-reads and decides again, so of two writers the
fence sees each one's write in turn, never neither. ``finish`` is the same over the run
item (:func:`~datasync.ports.fence_finish`).

``checkpoint`` writes two items. A transactional batch would make that one write, but the
emulator has no batch, so: the checkpoint item first, then the run's counters (an
``patch`` with a filter predicate, so it only moves them forward). That order is safe because
the counters are cumulative values computed by the orchestrator, not increments: a
retried ``push_page`` writes the same checkpoint and the same counters again, so nothing
is counted twice; and the checkpoint item carries the counters too, so if a run fails for
good between the two writes, the next ``begin`` of that run takes them from its
checkpoint. The cursor — what decides that nothing is lost or pushed twice — is committed
by the first write alone.

Run detail lives in the ``runs`` container too, in the run's partition: one item per page
(``type: "Page"``, ``id`` = ``<instance id>.p<page>``), one summary of the folded pages
(``type: "PageSummary"``, ``<instance id>.summary``) and the audit log (``type: "Audit"``,
partition = its tenant, ``_`` for none). A page write is an etag-guarded read-modify-write;
folding is guarded by the summary's ``lastPage`` (pages fold in order), so a retried fold
counts nothing twice. Queries of run history filter ``type = 'Run'``.

Operations that only know an instance id (``get``, ``finish``, ``mark_resumed``) find its
partition from a per-process cache filled by every read and write, else by one
cross-partition query on ``id``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ...config import Settings
from ...exceptions import ConfigError, NotFound, PermanentError, TransientError
from ...models import RunRecord
from ...names import compact_utc, format_utc, precise_utcnow, utcnow
from ...ports import (
    CREATED,
    DONE,
    EXISTS,
    Admitted,
    Checkpoint,
    Clock,
    FencedWrite,
    admission_check,
    claims_checkpoint,
    fence_checkpoint,
    fence_finish,
)
from ...records import (
    MAX_ERROR,
    AuditEntry,
    PageRecord,
    PageSummary,
    StepWrite,
    apply_step,
    bucket,
    fold,
    fold_candidate,
    masked,
    parse_token,
    run_duration,
    seconds_since,
    short_reason,
)
from .cosmos import SYSTEM_KEYS
from .cosmos_db import CosmosDatabase

__all__ = ["CHECKPOINTS_CONTAINER", "RUNS_CONTAINER", "CosmosRunStore"]

log = logging.getLogger("datasync.cosmos")

RUNS_CONTAINER = "runs"
CHECKPOINTS_CONTAINER = "checkpoints"
ACTIVE = ("Pending", "Running")
_TERMINAL = ("Completed", "Failed", "Terminated", "Skipped", "Superseded")
_ATTEMPTS = 10
_GATE_ATTEMPTS = 60  # racing admissions of one tenant: each round lets at least one through
_CACHE_SIZE = 10_000
Doc = dict[str, Any]


def _strip(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k not in SYSTEM_KEYS}


def _record(doc: Doc) -> RunRecord:
    return RunRecord.from_json(doc)


def _item(run: RunRecord, created_at: str) -> Doc:
    return {"id": run.instance_id, "type": "Run", **run.to_json(), "createdAt": created_at}


class CosmosRunStore:
    """The Cosmos :class:`~datasync.ports.RunStore` (semantics of ``SqliteRunStore``).

    ``database`` is shared with the tenant store when given (one client per process);
    else one is made from ``settings`` (``credential`` and ``client_kwargs`` as for
    :class:`~.cosmos_db.CosmosDatabase`). Container names may be overridden (tests).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        database: CosmosDatabase | None = None,
        runs_container: str = RUNS_CONTAINER,
        checkpoints_container: str = CHECKPOINTS_CONTAINER,
        credential: Any = None,
        clock: Clock | None = None,
        **client_kwargs: Any,
    ) -> None:
        if database is None and not settings.cosmos_endpoint:
            raise ConfigError("COSMOS_ENDPOINT is not set")
        self.settings = settings
        self._owns_database = database is None
        self._database = database or CosmosDatabase(
            settings, credential=credential, **client_kwargs
        )
        self._runs_name = runs_container
        self._checkpoints_name = checkpoints_container
        self._partitions: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock

    def _now(self) -> str:
        return format_utc((self._clock or utcnow)())

    def __repr__(self) -> str:
        return (
            f"CosmosRunStore({self.settings.cosmos_endpoint!r}, "
            f"{self.settings.cosmos_database}/{self._runs_name}+{self._checkpoints_name})"
        )

    @property
    def runs(self) -> Any:
        return self._database.container(self._runs_name)

    @property
    def checkpoints(self) -> Any:
        return self._database.container(self._checkpoints_name)

    def close(self) -> None:
        if self._owns_database:
            self._database.close()

    # -- finding a run -------------------------------------------------------------------
    def _remember(self, doc: Doc) -> Doc:
        with self._lock:
            self._partitions[doc["id"]] = doc["tenantId"]
            self._partitions.move_to_end(doc["id"])
            while len(self._partitions) > _CACHE_SIZE:
                self._partitions.popitem(last=False)
        return doc

    def _read(self, tenant: str, instance_id: str) -> Doc | None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            return self._remember(self.runs.read_item(instance_id, partition_key=tenant))
        except CosmosResourceNotFoundError:
            return None

    def _locate(self, instance_id: str) -> Doc | None:
        """The run item for an instance id, from its cached partition or by a query."""
        with self._lock:
            tenant = self._partitions.get(instance_id)
        if tenant is not None:
            doc = self._read(tenant, instance_id)
            if doc is not None:
                return doc
        found = list(
            self.runs.query_items(
                "SELECT * FROM c WHERE c.id = @id",
                parameters=[{"name": "@id", "value": instance_id}],
                enable_cross_partition_query=True,
            )
        )
        return self._remember(found[0]) if found else None

    def _update(
        self,
        tenant: str,
        instance_id: str,
        change: Callable[[Doc | None], Doc | None],
        current: Doc | None = None,
    ) -> tuple[bool, Doc | None]:
        """Read-modify-write one run item. ``change(item or None)`` returns the new item, or
        None to leave it; returns (written, item as stored now)."""
        from azure.core import MatchConditions
        from azure.cosmos.exceptions import (
            CosmosAccessConditionFailedError,
            CosmosResourceExistsError,
            CosmosResourceNotFoundError,
        )

        for attempt in range(_ATTEMPTS):
            if attempt or current is None:
                current = self._read(tenant, instance_id)
            new = change(_strip(current) if current is not None else None)
            if new is None:
                return False, current
            try:
                if current is None:
                    return True, self._remember(self.runs.create_item(new))
                return True, self._remember(
                    self.runs.replace_item(
                        instance_id,
                        new,
                        etag=current["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                )
            except (
                CosmosAccessConditionFailedError,
                CosmosResourceExistsError,
                CosmosResourceNotFoundError,
            ):
                log.debug("run %s changed while updating it; re-reading", instance_id)
        raise TransientError(f"run {instance_id} kept changing; gave up after {_ATTEMPTS} tries")

    # -- checkpoints ---------------------------------------------------------------------
    def _checkpoint_item(self, tenant: str, flow: str) -> Doc | None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            doc: Doc = self.checkpoints.read_item(f"{tenant}--{flow}", partition_key=tenant)
            return doc
        except CosmosResourceNotFoundError:
            return None

    def load_checkpoint(self, tenant: str, flow: str) -> Checkpoint:
        doc = self._checkpoint_item(tenant, flow)
        if doc is None:
            return Checkpoint()
        return Checkpoint(cursor=doc.get("cursor"), state=dict(doc.get("state") or {}))

    def _put_checkpoint(self, saved: Doc | None, item: Doc) -> bool:
        """Create the checkpoint item, or replace it iff it is still ``saved``; False when
        another writer came first (409 or 412: re-read and decide again)."""
        from azure.core import MatchConditions
        from azure.cosmos.exceptions import (
            CosmosAccessConditionFailedError,
            CosmosResourceExistsError,
            CosmosResourceNotFoundError,
        )

        try:
            if saved is None:
                self.checkpoints.create_item(item)
            else:
                self.checkpoints.replace_item(
                    item["id"],
                    item,
                    etag=saved["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (
            CosmosAccessConditionFailedError,
            CosmosResourceExistsError,
            CosmosResourceNotFoundError,
        ):
            log.debug("checkpoint %s changed while writing it; re-reading", item["id"])
            return False
        return True

    def checkpoint(
        self,
        instance_id: str,
        tenant: str,
        flow: str,
        cp: Checkpoint,
        *,
        pages: int,
        records_in: int,
        records_out: int,
        detail: StepWrite | None = None,
        keep_pages: int = 500,
    ) -> FencedWrite:
        """Checkpoint item first (fenced), then the run's counters (see the module note),
        then the push's page detail."""
        from azure.cosmos.exceptions import (
            CosmosAccessConditionFailedError,
            CosmosResourceNotFoundError,
        )

        counters = {"pages": pages, "recordsIn": records_in, "recordsOut": records_out}
        for _ in range(_ATTEMPTS):
            saved = self._checkpoint_item(tenant, flow)
            result = fence_checkpoint(
                saved.get("runId") if saved else None,
                saved.get("pages") if saved else None,
                instance_id,
                pages,
            )
            if result.outcome != "applied":
                break
            item = {
                "id": f"{tenant}--{flow}",
                "tenantId": tenant,
                "flowName": flow,
                "cursor": cp.cursor,
                "state": cp.state,
                "runId": instance_id,
                **counters,
                "updatedAt": self._now(),
            }
            if self._put_checkpoint(saved, item):
                break
        else:
            raise TransientError(
                f"checkpoint {tenant}--{flow} kept changing; gave up after {_ATTEMPTS} tries"
            )

        # the run's own counters, forward only: a conditional patch (412: not forward;
        # 404: no run record, nothing to count, as SQLite)
        with contextlib.suppress(CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
            self.runs.patch_item(
                instance_id,
                partition_key=tenant,
                patch_operations=[
                    {"op": "set", "path": f"/{key}", "value": value}
                    for key, value in counters.items()
                ],
                filter_predicate=f"FROM c WHERE NOT IS_DEFINED(c.pages) OR c.pages < {pages:d}",
            )
        if detail is not None:
            self.write_step(detail, keep_pages=keep_pages)
        return result

    def reset_checkpoint(self, tenant: str, flow: str, checkpoint: Checkpoint | None) -> None:
        """Delete the checkpoint item (gone already: fine), or upsert one with cursor and
        state only: no ``runId`` and no ``pages``, so the next ``begin`` claims it."""
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        item_id = f"{tenant}--{flow}"
        if checkpoint is None:
            with contextlib.suppress(CosmosResourceNotFoundError):
                self.checkpoints.delete_item(item_id, partition_key=tenant)
            return
        self.checkpoints.upsert_item(
            {
                "id": item_id,
                "tenantId": tenant,
                "flowName": flow,
                "cursor": checkpoint.cursor,
                "state": checkpoint.state,
                "updatedAt": self._now(),
            }
        )

    def _claim(self, run: RunRecord, resume: bool) -> None:
        """Make ``run`` the owner of its tenant+flow checkpoint (see ``RunStore.begin``)."""
        tenant, flow = run.tenant_id, run.flow_name
        for _ in range(_ATTEMPTS):
            saved = self._checkpoint_item(tenant, flow)
            owner = saved.get("runId") if saved else None
            if owner == run.instance_id:
                return
            active = False
            if owner is not None and resume:
                other = self._read(tenant, owner)
                active = other is not None and other.get("status") in ACTIVE
            if not claims_checkpoint(owner, run.instance_id, resume=resume, owner_active=active):
                return
            base = (
                _strip(saved)
                if saved
                else {"id": f"{tenant}--{flow}", "tenantId": tenant, "flowName": flow}
            )
            item = {
                "cursor": None,
                "state": {},
                **base,
                "runId": run.instance_id,
                "pages": run.pages,
                "recordsIn": run.records_in,
                "recordsOut": run.records_out,
                "updatedAt": self._now(),
            }
            if self._put_checkpoint(saved, item):
                return
        raise TransientError(
            f"checkpoint {tenant}--{flow} kept changing; gave up after {_ATTEMPTS} tries"
        )

    # -- the run lifecycle ---------------------------------------------------------------
    def create(self, run: RunRecord) -> bool:
        """``create_item``: the service's own uniqueness on ``id`` decides; 409 → False."""
        from azure.cosmos.exceptions import CosmosResourceExistsError

        now = self._now()
        try:
            self._remember(self.runs.create_item({**_item(run, now), "claimedAt": now}))
        except CosmosResourceExistsError:
            return False
        return True

    def admit(self, run: RunRecord, *, exclusive_flow: bool, max_active: int | None) -> Admitted:
        """The check and the claim as one compare-and-set on the tenant's admission gate
        (see :meth:`_admit_gated`); with no limit to check, :meth:`create`."""
        if not exclusive_flow and max_active is None:
            return CREATED if self.create(run) else EXISTS
        return self._admit_gated(run, exclusive_flow=exclusive_flow, max_active=max_active)

    def _gate_slots(self, tenant: str, slots: dict[str, Doc]) -> tuple[list[RunRecord], Doc]:
        """The tenant's active runs and the gate's slots still needed.

        A slot stays while its run item is active (or not written yet, for up to
        ``start_claim_seconds``); a lagging read only keeps a slot longer, never drops
        one too soon. Active runs admitted without the gate (``begin`` of a record-less
        run) count too."""
        active = {r.instance_id: r for r in self.active(tenant)}
        kept: Doc = {}
        now = (self._clock or utcnow)()  # the clock the slots' "at" was written with
        young = format_utc(now - timedelta(seconds=self.settings.start_claim_seconds))
        for instance_id, slot in slots.items():
            if not isinstance(slot, dict):
                continue
            if instance_id in active:
                kept[instance_id] = slot
                continue
            doc = self._read(tenant, instance_id)
            if doc is not None and doc.get("status") in ACTIVE:
                active[instance_id] = _record(doc)
            elif doc is None and str(slot.get("at") or "") >= young:
                active[instance_id] = RunRecord(  # claimed, its item about to be written
                    instance_id=instance_id,
                    tenant_id=tenant,
                    flow_name=str(slot.get("flow") or ""),
                    scheduled_for=str(slot.get("scheduledFor") or ""),
                    status="Pending",
                )
            else:
                continue
            kept[instance_id] = slot
        return list(active.values()), kept

    def _admit_gated(
        self, run: RunRecord, *, exclusive_flow: bool, max_active: int | None
    ) -> Admitted:
        """One gate item per tenant (``type: "Admission"``, ``id`` = ``admission--<tenant>``,
        in the runs container, the tenant's partition) lists the runs it admitted
        (``slots``). An admission reads it, decides over the active runs and the slots, and
        writes the gate with its own slot added iff the gate is unchanged (``create_item`` /
        an ``IfNotModified`` replace; 409/412: re-read and decide again), then creates the
        run item. So of racing admissions each decides over every earlier one's slot: no
        two can both pass a check that only one may pass. (The emulator's batch is not
        atomic, so the gate is the transaction.)"""
        from azure.core import MatchConditions
        from azure.cosmos.exceptions import (
            CosmosAccessConditionFailedError,
            CosmosResourceExistsError,
            CosmosResourceNotFoundError,
        )

        tenant = run.tenant_id
        gate_id = f"admission--{tenant}"
        for attempt in range(_GATE_ATTEMPTS):
            if self._read(tenant, run.instance_id) is not None:
                return EXISTS
            gate = self._item_or_none(tenant, gate_id)
            slots = gate.get("slots") if gate is not None else None
            active, kept = self._gate_slots(tenant, slots if isinstance(slots, dict) else {})
            if run.instance_id in kept:
                return EXISTS  # another admission claimed this very run
            verdict = admission_check(
                run, active, exclusive_flow=exclusive_flow, max_active=max_active
            )
            if verdict is not None:
                return verdict
            now = self._now()
            kept[run.instance_id] = {
                "flow": run.flow_name,
                "scheduledFor": run.scheduled_for,
                "at": now,
            }
            item = {"id": gate_id, "tenantId": tenant, "type": "Admission", "slots": kept}
            try:
                if gate is None:
                    self.runs.create_item(item)
                else:
                    self.runs.replace_item(
                        gate_id,
                        item,
                        etag=gate["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (
                CosmosAccessConditionFailedError,
                CosmosResourceExistsError,
                CosmosResourceNotFoundError,
            ):
                log.debug("admission gate of %s changed; deciding again", tenant)
                time.sleep(random.uniform(0.0, 0.01 * min(attempt + 1, 10)))
                continue
            try:
                self._remember(self.runs.create_item({**_item(run, now), "claimedAt": now}))
            except CosmosResourceExistsError:
                return EXISTS  # its slot ends with the existing record
            return CREATED
        raise TransientError(
            f"the admission gate of tenant {tenant} kept changing; "
            f"gave up after {_GATE_ATTEMPTS} tries"
        )

    def take_over_pending(self, instance_id: str, *, older_than: datetime) -> bool:
        """An etag-guarded replace of a stale Pending item's ``claimedAt``: of racing
        callers one replace wins, the others get 412, re-read and find the claim fresh."""
        doc = self._locate(instance_id)
        if doc is None:
            return False
        now = (self._clock or utcnow)()
        cutoff, stamp = format_utc(min(older_than, now)), format_utc(now)

        def change(cur: Doc | None) -> Doc | None:
            if cur is None or cur.get("status") != "Pending":
                return None
            claimed = cur.get("claimedAt") or cur.get("createdAt") or ""
            return {**cur, "claimedAt": stamp} if claimed < cutoff else None

        return self._update(doc["tenantId"], instance_id, change, doc)[0]

    def begin(self, run: RunRecord) -> RunRecord:
        precise = (self._clock or precise_utcnow)()
        now = format_utc(precise)
        saved = self._checkpoint_item(run.tenant_id, run.flow_name)
        ours = saved if saved and saved.get("runId") == run.instance_id else None
        resumed = False

        def change(cur: Doc | None) -> Doc:
            nonlocal resumed
            resumed = False
            if cur is None:
                return _item(
                    RunRecord(
                        instance_id=run.instance_id,
                        tenant_id=run.tenant_id,
                        flow_name=run.flow_name,
                        scheduled_for=run.scheduled_for,
                        status="Running",
                        started_at=now,
                        lateness_seconds=seconds_since(run.scheduled_for, precise),
                    ),
                    now,
                )
            if cur.get("status") in DONE:
                raise PermanentError(
                    f"run {run.instance_id} is {cur.get('status')}; it does not run again"
                )
            if cur.get("startedAt") is None:  # Pending → Running
                return {
                    **cur,
                    "status": "Running",
                    "startedAt": now,
                    "latenessSeconds": seconds_since(cur["scheduledFor"], precise),
                }
            # started before (its begin re-ran, or a failed run started again): a resume,
            # counters as its last checkpoint saved them when the run item lags behind
            resumed = True
            counters: Doc = (
                {k: ours[k] for k in ("pages", "recordsIn", "recordsOut") if k in ours}
                if ours and int(ours.get("pages") or 0) > int(cur.get("pages") or 0)
                else {}
            )
            return {
                **cur,
                **counters,
                "status": "Running",
                "finishedAt": None,
                "error": None,
                "resumes": int(cur.get("resumes") or 0) + 1,
            }

        _, doc = self._update(run.tenant_id, run.instance_id, change)
        assert doc is not None
        stored = _record(doc)
        self._claim(stored, resumed)
        return stored

    def finish(
        self, instance_id: str, status: str, error: str | None = None, *, reason: str | None = None
    ) -> FencedWrite:
        doc = self._locate(instance_id)
        if doc is None:
            return fence_finish(None, status)
        precise = (self._clock or precise_utcnow)()
        now = format_utc(precise)
        result = fence_finish(None, status)

        def change(cur: Doc | None) -> Doc | None:
            nonlocal result
            result = fence_finish(cur.get("status") if cur else None, status)
            if cur is None or result.outcome != "applied":
                return None
            return {
                **cur,
                "status": status,
                "error": masked(error, MAX_ERROR),
                "finishedAt": now,
                "reason": short_reason(reason or error),
                "durationSeconds": run_duration(_record(cur), precise),
            }

        self._update(doc["tenantId"], instance_id, change, doc)
        return result

    def mark_resumed(self, instance_id: str) -> None:
        doc = self._locate(instance_id)
        if doc is None:
            return
        self._update(
            doc["tenantId"],
            instance_id,
            lambda cur: (
                None if cur is None else {**cur, "resumes": int(cur.get("resumes") or 0) + 1}
            ),
            doc,
        )

    def record(self, run: RunRecord) -> None:
        """Upsert the whole record (``createdAt`` and ``claimedAt`` kept when they exist;
        ``error`` and ``reason`` masked)."""
        run = replace(run, error=masked(run.error, MAX_ERROR), reason=masked(run.reason))

        def change(cur: Doc | None) -> Doc:
            new = _item(run, cur["createdAt"] if cur and cur.get("createdAt") else self._now())
            if cur and cur.get("claimedAt"):
                new["claimedAt"] = cur["claimedAt"]
            return new

        self._update(run.tenant_id, run.instance_id, change)

    # -- reads ---------------------------------------------------------------------------
    def get(self, instance_id: str) -> RunRecord:
        doc = self._locate(instance_id)
        if doc is None:
            raise NotFound(f"no run {instance_id!r}")
        return _record(doc)

    def recent(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Newest first (``createdAt``, then instance id, both descending).

        Ordered by ``createdAt`` alone on the server (no composite index needed) and read
        until ``limit`` plus any ties with the last one; ties are ordered here."""
        if limit <= 0:
            return []
        where, params = ["c.type = 'Run'"], []
        for field, value in (("tenantId", tenant), ("flowName", flow), ("status", status)):
            if value is not None:
                where.append(f"c.{field} = @{field}")
                params.append({"name": f"@{field}", "value": value})
        scope: dict[str, Any] = (
            {"partition_key": tenant}
            if tenant is not None
            else {"enable_cross_partition_query": True}
        )
        pages = self.runs.query_items(
            f"SELECT * FROM c WHERE {' AND '.join(where)} ORDER BY c.createdAt DESC",
            parameters=params,
            max_item_count=min(max(limit, 10), 1000),
            **scope,
        ).by_page()
        docs: list[Doc] = []
        for page in pages:
            for doc in page:
                if len(docs) >= limit and doc.get("createdAt") != docs[-1].get("createdAt"):
                    break
                docs.append(doc)
            else:
                continue
            break
        docs.sort(key=lambda d: (d.get("createdAt") or "", d["id"]), reverse=True)
        return [_record(d) for d in docs[:limit]]

    def active(self, tenant: str, flow: str | None = None) -> list[RunRecord]:
        """Pending or Running runs of a tenant (and flow): one single-partition query."""
        query = (
            "SELECT * FROM c WHERE c.tenantId = @t AND c.type = 'Run' "
            "AND (c.status = 'Pending' OR c.status = 'Running')"
        )
        params = [{"name": "@t", "value": tenant}]
        if flow is not None:
            query += " AND c.flowName = @f"
            params.append({"name": "@f", "value": flow})
        return [
            _record(self._remember(d))
            for d in self.runs.query_items(query, parameters=params, partition_key=tenant)
        ]

    # -- run detail ----------------------------------------------------------------------
    def _item_or_none(self, tenant: str, item_id: str) -> Doc | None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        try:
            doc: Doc = self.runs.read_item(item_id, partition_key=tenant)
            return doc
        except CosmosResourceNotFoundError:
            return None

    def _rmw(self, tenant: str, item_id: str, change: Callable[[Doc | None], Doc | None]) -> None:
        """Etag-guarded read-modify-write of one detail item (``change`` None: leave it)."""
        from azure.core import MatchConditions
        from azure.cosmos.exceptions import (
            CosmosAccessConditionFailedError,
            CosmosResourceExistsError,
            CosmosResourceNotFoundError,
        )

        for _ in range(_ATTEMPTS):
            current = self._item_or_none(tenant, item_id)
            new = change(_strip(current) if current is not None else None)
            if new is None:
                return
            try:
                if current is None:
                    self.runs.create_item(new)
                else:
                    self.runs.replace_item(
                        item_id,
                        new,
                        etag=current["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                return
            except (
                CosmosAccessConditionFailedError,
                CosmosResourceExistsError,
                CosmosResourceNotFoundError,
            ):
                log.debug("%s changed while updating it; re-reading", item_id)
        raise TransientError(f"{item_id} kept changing; gave up after {_ATTEMPTS} tries")

    def write_step(self, write: StepWrite, *, keep_pages: int) -> None:
        tenant, instance = write.tenant_id, write.instance_id

        def page(cur: Doc | None) -> Doc:
            doc = apply_step(cur, write)
            return {**doc, "id": f"{instance}.p{write.page}", "type": "Page"}

        self._rmw(tenant, f"{instance}.p{write.page}", page)
        q = fold_candidate(write.page, keep_pages) if write.step == "push" else None
        if q is None:
            return
        old = self._item_or_none(tenant, f"{instance}.p{q}")
        if old is None:
            return

        def summary(cur: Doc | None) -> Doc | None:
            if cur is not None and int(cur.get("lastPage") or 0) >= q:
                return None  # folded already (a retried push)
            doc = fold(cur, _strip(old))
            return {**doc, "id": f"{instance}.summary", "type": "PageSummary", "tenantId": tenant}

        self._rmw(tenant, f"{instance}.summary", summary)
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        with contextlib.suppress(CosmosResourceNotFoundError):
            self.runs.delete_item(f"{instance}.p{q}", partition_key=tenant)

    def _tenant_of(self, instance_id: str) -> str | None:
        with self._lock:
            tenant = self._partitions.get(instance_id)
        if tenant is not None:
            return tenant
        doc = self._locate(instance_id)
        return doc["tenantId"] if doc else None

    def pages(self, instance_id: str, *, after: int = 0, limit: int = 100) -> list[PageRecord]:
        tenant = self._tenant_of(instance_id)
        if tenant is None or limit <= 0:
            return []
        docs = self.runs.query_items(
            "SELECT * FROM c WHERE c.tenantId = @t AND c.type = 'Page' AND c.instanceId = @i "
            "AND c.page > @a ORDER BY c.page",
            parameters=[
                {"name": "@t", "value": tenant},
                {"name": "@i", "value": instance_id},
                {"name": "@a", "value": after},
            ],
            partition_key=tenant,
            max_item_count=min(limit, 1000),
        )
        out: list[PageRecord] = []
        for doc in docs:
            out.append(PageRecord.from_doc(doc))
            if len(out) >= limit:
                break
        return out

    def page_summary(self, instance_id: str) -> PageSummary | None:
        tenant = self._tenant_of(instance_id)
        doc = self._item_or_none(tenant, f"{instance_id}.summary") if tenant else None
        return PageSummary.from_doc(doc) if doc is not None else None

    @staticmethod
    def _filters(
        tenant: str | None,
        flow: str | None,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> tuple[list[str], list[dict[str, Any]]]:
        where, params = ["c.type = 'Run'"], []
        for name, value in (("tenantId", tenant), ("flowName", flow), ("status", status)):
            if value is not None:
                where.append(f"c.{name} = @{name}")
                params.append({"name": f"@{name}", "value": value})
        if since is not None:
            where.append("c.scheduledFor >= @since")
            params.append({"name": "@since", "value": format_utc(since)})
        if until is not None:
            where.append("c.scheduledFor < @until")
            params.append({"name": "@until", "value": format_utc(until)})
        return where, params

    @staticmethod
    def _scope(tenant: str | None) -> dict[str, Any]:
        return (
            {"partition_key": tenant}
            if tenant is not None
            else {"enable_cross_partition_query": True}
        )

    def query(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """``ORDER BY scheduledFor DESC`` on the server (no composite index needed), read
        by pages until ``limit`` plus the ties of the last one; ties ordered here."""
        position = parse_token(before) if before is not None else None
        if limit <= 0:
            return []
        where, params = self._filters(tenant, flow, status, since, until)
        if position is not None:
            where.append("(c.scheduledFor < @bs OR (c.scheduledFor = @bs AND c.id < @bi))")
            params += [
                {"name": "@bs", "value": position[0]},
                {"name": "@bi", "value": position[1]},
            ]
        pages = self.runs.query_items(
            f"SELECT * FROM c WHERE {' AND '.join(where)} ORDER BY c.scheduledFor DESC",
            parameters=params,
            max_item_count=min(max(limit, 10), 1000),
            **self._scope(tenant),
        ).by_page()
        docs: list[Doc] = []
        for page in pages:
            for doc in page:
                if len(docs) >= limit and doc.get("scheduledFor") != docs[-1].get("scheduledFor"):
                    break
                docs.append(doc)
            else:
                continue
            break
        docs.sort(key=lambda d: (d.get("scheduledFor") or "", d["id"]), reverse=True)
        return [_record(self._remember(d)) for d in docs[:limit]]

    def count(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        where, params = self._filters(tenant, flow, status, since, until)
        found = self.runs.query_items(
            f"SELECT VALUE COUNT(1) FROM c WHERE {' AND '.join(where)}",
            parameters=params,
            **self._scope(tenant),
        )
        return sum(int(n) for n in found)

    def status_counts(self, since: datetime, bucket_seconds: int) -> list[tuple[str, str, int]]:
        where, params = self._filters(None, None, None, since, None)
        counts: dict[tuple[str, str], int] = {}
        for doc in self.runs.query_items(
            f"SELECT c.scheduledFor, c.status FROM c WHERE {' AND '.join(where)}",
            parameters=params,
            enable_cross_partition_query=True,
            max_item_count=1000,
        ):
            key = (bucket(doc["scheduledFor"], bucket_seconds), doc["status"])
            counts[key] = counts.get(key, 0) + 1
        return [(b, st, n) for (b, st), n in sorted(counts.items())]

    def audit(self, entry: AuditEntry) -> None:
        now = (self._clock or utcnow)()
        e = entry.stored(format_utc(now), f"audit.{compact_utc(now)}.{uuid.uuid4().hex[:12]}")
        self.runs.create_item(
            {
                **e.to_json(),
                "type": "Audit",
                "tenantId": e.tenant_id or "_",
                "auditTenant": e.tenant_id,
            }
        )

    def audit_log(
        self,
        *,
        tenant: str | None = None,
        flow: str | None = None,
        instance_id: str | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        if limit <= 0:
            return []
        where, params = ["c.type = 'Audit'"], []
        for name, value in (("tenantId", tenant), ("flowName", flow), ("instanceId", instance_id)):
            if value is not None:
                where.append(f"c.{name} = @{name}")
                params.append({"name": f"@{name}", "value": value})
        docs = list(
            self.runs.query_items(
                f"SELECT * FROM c WHERE {' AND '.join(where)}",
                parameters=params,
                **self._scope(tenant),
            )
        )
        docs.sort(key=lambda d: (d.get("at") or "", d["id"]), reverse=True)
        return [
            AuditEntry.from_json({**_strip(d), "tenantId": d.get("auditTenant")})
            for d in docs[:limit]
        ]

    def annotate(
        self,
        instance_id: str,
        *,
        reason: str | None = None,
        trace_id: str | None = None,
        rerun_of: str | None = None,
    ) -> None:
        fields = {
            k: v
            for k, v in (
                ("reason", short_reason(reason)),
                ("traceId", trace_id),
                ("rerunOf", rerun_of),
            )
            if v is not None
        }
        doc = self._locate(instance_id)
        if doc is None or not fields:
            return
        self._update(
            doc["tenantId"],
            instance_id,
            lambda cur: None if cur is None else {**cur, **fields},
            doc,
        )

    def prune(self, older_than: datetime) -> int:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        cutoff = format_utc(older_than)
        old = list(
            self.runs.query_items(
                "SELECT c.id, c.tenantId, c.status, c.finishedAt, c.createdAt FROM c "
                "WHERE c.type = 'Run' AND c.createdAt < @cut",  # finished before: made before
                parameters=[{"name": "@cut", "value": cutoff}],
                enable_cross_partition_query=True,
            )
        )
        gone = 0
        for doc in old:
            if (
                doc.get("status") not in _TERMINAL
                or (doc.get("finishedAt") or doc.get("createdAt") or "") >= cutoff
            ):
                continue
            tenant, instance = doc["tenantId"], doc["id"]
            details = [
                d["id"]
                for d in self.runs.query_items(
                    "SELECT c.id FROM c WHERE c.tenantId = @t AND c.instanceId = @i AND "
                    "(c.type = 'Page' OR c.type = 'PageSummary')",
                    parameters=[
                        {"name": "@t", "value": tenant},
                        {"name": "@i", "value": instance},
                    ],
                    partition_key=tenant,
                )
            ]
            for item_id in [*details, instance]:
                with contextlib.suppress(CosmosResourceNotFoundError):
                    self.runs.delete_item(item_id, partition_key=tenant)
            with self._lock:
                self._partitions.pop(instance, None)
            gone += 1
        return gone
