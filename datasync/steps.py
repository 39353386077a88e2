"""What the activities do: one flow step each, over the ports.

Page records travel between activities through the :class:`~datasync.ports.PageStore`
(history carries a key and counts, never the data), and ``ctx.state`` travels in the
activity inputs and outputs. ``push_page`` pushes and then checkpoints cursor, state and
run counters in one write, so a crash between the two re-pushes with the same
``page_key`` and an idempotent target ends with each record once.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from .context import FlowContext, SecretCache
from .exceptions import PermanentError
from .models import RunRecord, Tenant
from .ports import Checkpoint
from .registry import Page, call_step
from .services import Services

__all__ = ["begin_run", "pull_page", "transform_page", "push_page", "finish_run"]

log = logging.getLogger("datasync.steps")
_secret_cache = SecretCache()


TENANT_TTL = 2.0
"""Seconds a tenant document read by one step is reused by the next steps of its run: a
page costs three activities, and re-reading (and validating) the document each time was a
visible share of a page's cost. An edit is seen by the next page after at most this long."""
_tenants: dict[tuple[int, str], tuple[float, Tenant]] = {}


def _tenant(svc: Services, tenant_id: str) -> Tenant:
    key, now = (id(svc.tenants), tenant_id), time.monotonic()
    hit = _tenants.get(key)
    if hit is not None and now - hit[0] < TENANT_TTL:
        return hit[1]
    tenant = svc.tenants.get(tenant_id)
    if len(_tenants) > 4096:
        _tenants.clear()
    _tenants[key] = (now, tenant)
    return tenant


def _context(svc: Services, args: dict[str, Any]) -> FlowContext:
    tenant = _tenant(svc, args["tenantId"])
    entry = tenant.flow(args["flowName"])
    return FlowContext(tenant_id=args["tenantId"], flow_name=args["flowName"],
                       run_id=args["runId"], page_key=args.get("pageKey", ""),
                       config=dict(entry.config or {}), state=dict(args.get("state") or {}),
                       secrets=svc.secrets, cache=_secret_cache)


def _records(value: Any, step: str, flow: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise PermanentError(f"flow {flow!r}: {step} must return a list of dicts, "
                             f"got {type(value).__name__}")
    return value


def begin_run(svc: Services, args: dict[str, Any]) -> dict[str, Any]:
    """Mark the run Running and hand back where to start: checkpoint and counters."""
    run = svc.runs.begin(RunRecord(instance_id=args["runId"], tenant_id=args["tenantId"],
                                   flow_name=args["flowName"],
                                   scheduled_for=args["scheduledFor"], status="Running"))
    cp = svc.runs.load_checkpoint(args["tenantId"], args["flowName"])
    return {"cursor": cp.cursor, "state": cp.state, "pages": run.pages,
            "recordsIn": run.records_in, "recordsOut": run.records_out}


def pull_page(svc: Services, args: dict[str, Any]) -> dict[str, Any]:
    spec = svc.registry.get(args["flowName"])
    ctx = _context(svc, args)
    page = call_step(spec.create().pull, ctx, args.get("cursor"))
    if not isinstance(page, Page):
        raise PermanentError(f"flow {spec.name!r}: pull must return a Page, "
                             f"got {type(page).__name__}")
    records = _records(page.records, "pull", spec.name)
    key = None
    if records:
        key = f"{args['pageKey']}/pulled"
        svc.pages.put(key, records)
    cursor = page.cursor if page.cursor is not None else args.get("cursor")
    return {"key": key, "count": len(records), "cursor": cursor,
            "hasMore": bool(page.has_more), "state": ctx.state}


def transform_page(svc: Services, args: dict[str, Any]) -> dict[str, Any]:
    spec = svc.registry.get(args["flowName"])
    flow = spec.create()
    ctx = _context(svc, args)
    records = svc.pages.get(args["key"])
    transform = getattr(flow, "transform", None)
    if transform is not None:
        records = _records(call_step(transform, ctx, records), "transform", spec.name)
    key = f"{args['pageKey']}/out"
    svc.pages.put(key, records)
    return {"key": key, "count": len(records), "state": ctx.state}


def push_page(svc: Services, args: dict[str, Any]) -> dict[str, Any]:
    """Push (if the page has records), then checkpoint cursor, state and counters."""
    spec = svc.registry.get(args["flowName"])
    ctx = _context(svc, args)
    if args.get("count"):
        records = svc.pages.get(args["key"])
        if records:
            call_step(spec.create().push, ctx, records)
    svc.runs.checkpoint(args["runId"], args["tenantId"], args["flowName"],
                        Checkpoint(cursor=args.get("cursor"), state=ctx.state),
                        pages=args["pages"], records_in=args["recordsIn"],
                        records_out=args["recordsOut"])
    svc.pages.delete_prefix(args["pageKey"] + "/")
    return {"state": ctx.state}


def finish_run(svc: Services, args: dict[str, Any]) -> dict[str, Any]:
    svc.runs.finish(args["runId"], args["status"], args.get("error"))
    return {"status": args["status"]}
