"""The ``sync_flow`` orchestrator: deterministic, replayed — no I/O, clock or randomness.

Input: the job (``tenantId``, ``flowName``, ``scheduledFor``) plus, after a
``continue_as_new``, the carried ``cursor``, ``state``, page number and counters.
"""
from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from ..names import page_key
from . import names

bp = df.Blueprint()

STEP_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=3)
"""Activity-level retries (on top of ``ctx.http``'s own per-request retries)."""

MAX_ERROR = 2000


def _error_text(exc: Exception) -> str:
    """The activity's own message, without the SDK's ``Reason \\n Details`` framing."""
    return str(exc).split(" \n ", 1)[0].strip()[:MAX_ERROR]


@bp.orchestration_trigger(context_name="context", orchestration=names.ORCHESTRATOR)
def sync_flow(context: df.DurableOrchestrationContext):
    job: dict[str, Any] = context.get_input()
    base = {"tenantId": job["tenantId"], "flowName": job["flowName"],
            "runId": context.instance_id}
    carry: dict[str, Any] | None = job.get("carry")
    try:
        if carry is None:
            start = yield context.call_activity_with_retry(
                names.BEGIN_RUN, STEP_RETRY, {**base, "scheduledFor": job["scheduledFor"]})
            carry = {"cursor": start["cursor"], "state": start["state"],
                     "pages": start["pages"], "recordsIn": start["recordsIn"],
                     "recordsOut": start["recordsOut"]}
        limit = int(job.get("pagesPerGeneration") or 10)
        for _ in range(limit):
            page_no = carry["pages"] + 1
            step = {**base, "pageKey": page_key(context.instance_id, page_no)}
            pulled = yield context.call_activity_with_retry(
                names.PULL_PAGE, STEP_RETRY, {**step, "cursor": carry["cursor"],
                                              "state": carry["state"]})
            out = {"key": None, "count": 0, "state": pulled["state"]}
            if pulled["count"]:
                out = yield context.call_activity_with_retry(
                    names.TRANSFORM_PAGE, STEP_RETRY, {**step, "key": pulled["key"],
                                                       "state": pulled["state"]})
            counters = {"pages": page_no, "recordsIn": carry["recordsIn"] + pulled["count"],
                        "recordsOut": carry["recordsOut"] + out["count"]}
            pushed = yield context.call_activity_with_retry(
                names.PUSH_PAGE, STEP_RETRY, {**step, **counters, "key": out["key"],
                                              "count": out["count"], "cursor": pulled["cursor"],
                                              "state": out["state"]})
            stuck = not pulled["count"] and pulled["hasMore"] and pulled["cursor"] == carry["cursor"]
            carry = {**counters, "cursor": pulled["cursor"], "state": pushed["state"]}
            if stuck:
                raise ValueError("flow returned an empty page with has_more=True and an "
                                 "unchanged cursor; stopping instead of looping forever")
            if not pulled["hasMore"]:
                yield context.call_activity(names.FINISH_RUN, {**base, "status": "Completed"})
                return {"status": "Completed", **counters}
        context.continue_as_new({**job, "carry": carry})
        return None
    except Exception as exc:
        error = _error_text(exc)
        yield context.call_activity(names.FINISH_RUN, {**base, "status": "Failed",
                                                       "error": error})
        raise RuntimeError(error) from None
