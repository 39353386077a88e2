"""The example flow: contacts from a CRM into an ERP. Copy this file to start a new flow.

- ``pull`` asks the source for the contacts after the saved cursor, one page at a time.
- ``transform`` keeps ``id``, a trimmed ``name`` and a lower-cased ``email`` (when present).
- ``push`` posts the page to the target with ``Idempotency-Key: ctx.page_key``, so a retried
  or replayed push is stored once.

Config (the flow entry's ``config`` in the tenant document): ``source_url``,
``target_url``, optional ``page_size`` (default 100). Secrets: ``crm/token`` and
``erp/token`` (``python -m datasync secrets set TENANT crm token``).
"""

from __future__ import annotations

from typing import Any

from datasync import Page, PermanentError, flow


def _url(ctx, key: str) -> str:
    url = ctx.config.get(key)
    if not isinstance(url, str) or not url:
        raise PermanentError(f"flow {ctx.flow_name}: config.{key} is missing")
    return url.rstrip("/")


@flow("contacts-to-erp")
class ContactsToErp:
    def pull(self, ctx, cursor) -> Page:
        """One page of contacts after ``cursor`` (``None`` on the first ever run)."""
        r = ctx.http.get(
            _url(ctx, "source_url") + "/contacts",
            params={
                "after": "" if cursor is None else str(cursor),
                "limit": ctx.config.get("page_size", 100),
            },
            headers={"Authorization": "Bearer " + ctx.secret("crm", "token")},
        )
        r.raise_for_status()
        body = r.json()
        return Page(records=body["items"], cursor=body["next"], has_more=body["more"])

    def transform(self, ctx, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for c in records:
            rec = {"id": c["id"], "name": (c.get("name") or "").strip()}
            if c.get("email"):
                rec["email"] = c["email"].strip().lower()
            out.append(rec)
        return out

    def push(self, ctx, records: list[dict[str, Any]]) -> None:
        """Idempotent per ``ctx.page_key``: the target ignores a key it has seen."""
        ctx.http.post(
            _url(ctx, "target_url") + "/batch",
            json={"records": records},
            headers={
                "Idempotency-Key": ctx.page_key,
                "Authorization": "Bearer " + ctx.secret("erp", "token"),
            },
        ).raise_for_status()
        ctx.state["pushed_pages"] = ctx.state.get("pushed_pages", 0) + 1
        ctx.log.debug("pushed %d contacts (page %s)", len(records), ctx.page_key)
