"""Names and times: the rules every identifier and timestamp in DataSync follows.

- tenant ids, secret ``system``/``key``: 1–40 of ``[A-Za-z0-9-]``; flow names: 1–40 of
  ``[a-z0-9-]``; neither may start or end with ``-`` or contain ``--``. These rules keep
  Key Vault secret names and Durable instance ids valid without any escaping.
- times are stored and printed as ISO 8601 UTC with ``Z`` and seconds precision
  (``2026-11-23T14:00:00Z``); input accepts any ISO 8601 with an offset.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .exceptions import ValidationError

__all__ = [
    "MAX_INSTANCE_ID",
    "MAX_NAME",
    "compact_utc",
    "format_utc",
    "instance_id",
    "page_key",
    "parse_instance_id",
    "parse_utc",
    "precise_utcnow",
    "rerun_instance_id",
    "sanitize_instance_id",
    "secret_name",
    "utcnow",
    "validate_flow_name",
    "validate_secret_part",
    "validate_tenant_id",
]

MAX_NAME = 40
MAX_INSTANCE_ID = 256
_MIXED = re.compile(r"[A-Za-z0-9-]+")
_LOWER = re.compile(r"[a-z0-9-]+")
_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(value: object, what: str, pattern: re.Pattern[str], chars: str) -> str:
    rule = f"must be 1–{MAX_NAME} of {chars} and '-', not starting or ending with '-', without '--'"
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        reason = "is empty"
    elif len(value) > MAX_NAME:
        reason = f"is {len(value)} characters long"
    elif not pattern.fullmatch(value):
        bad = next(c for c in value if not pattern.fullmatch(c))
        reason = f"contains {bad!r}"
    elif value.startswith("-") or value.endswith("-"):
        reason = "starts or ends with '-'"
    elif "--" in value:
        reason = "contains '--'"
    else:
        return value
    raise ValidationError(f"{what} {_short(value)} {rule} ({reason})")


def validate_tenant_id(s: object) -> str:
    """Return ``s`` if it is a valid tenant id, else raise :class:`ValidationError`."""
    return _check(s, "tenant id", _MIXED, "A-Z, a-z, 0-9")


def validate_flow_name(s: object) -> str:
    """Return ``s`` if it is a valid flow name (lower case), else raise."""
    return _check(s, "flow name", _LOWER, "a-z, 0-9")


def validate_secret_part(s: object, what: str = "system") -> str:
    """Return ``s`` if it is a valid secret ``system`` or ``key`` (``what`` names it)."""
    return _check(s, f"secret {what}", _MIXED, "A-Z, a-z, 0-9")


def _aware_utc(dt: object) -> datetime:
    if not isinstance(dt, datetime):
        raise ValidationError(f"expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValidationError(f"datetime {dt.isoformat()} has no timezone")
    return dt.astimezone(UTC).replace(microsecond=0)


def format_utc(dt: datetime) -> str:
    """``2026-11-23T14:00:00Z``: UTC, seconds precision (microseconds truncated)."""
    return _aware_utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(s: str) -> datetime:
    """Parse ISO 8601 with an offset (``Z`` or ``±hh:mm``) into aware UTC, whole seconds."""
    if not isinstance(s, str):
        raise ValidationError(f"expected an ISO 8601 time string, got {_short(s)}")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValidationError(f"not an ISO 8601 time: {_short(s)}") from None
    if dt.tzinfo is None:
        raise ValidationError(f"time {_short(s)} has no UTC offset (add 'Z' or '+hh:mm')")
    return _aware_utc(dt)


def compact_utc(dt: datetime) -> str:
    """``20261123T140000Z`` (the instance id form)."""
    return _aware_utc(dt).strftime("%Y%m%dT%H%M%SZ")


def sanitize_instance_id(s: str) -> str:
    """Replace what Durable forbids in instance ids (``/ \\ # ?`` and control characters)
    with ``-`` and cap the length at 256. With valid names this is a no-op."""
    return _FORBIDDEN.sub("-", s)[:MAX_INSTANCE_ID]


def instance_id(tenant_id: str, flow_name: str, scheduled_for: datetime) -> str:
    """``Workflow-acme--contacts-to-erp-20261123T140000Z`` (names are validated).

    Names never contain ``--``, so the ``--`` between tenant and flow makes the id
    unambiguous: ``acme-eu`` + ``sync`` and ``acme`` + ``eu-sync`` differ."""
    validate_tenant_id(tenant_id)
    validate_flow_name(flow_name)
    return sanitize_instance_id(f"Workflow-{tenant_id}--{flow_name}-{compact_utc(scheduled_for)}")


_INSTANCE = re.compile(
    r"Workflow-(?P<tenant>[A-Za-z0-9-]{1,40})--(?P<flow>[a-z0-9-]{1,40})-"
    r"(?P<when>\d{8}T\d{6}Z)(?:-rerun(?P<rerun>[1-9]\d{0,3}))?"
)
MAX_RERUN = 9999


def rerun_instance_id(instance: str, rerun: int) -> str:
    """``<instance id>-rerun<N>``: the instance of the N-th ``rerun`` of a run
    (``instance`` is the run's normal id; N is 1–9999)."""
    if isinstance(rerun, bool) or not isinstance(rerun, int) or not 1 <= rerun <= MAX_RERUN:
        raise ValidationError(f"rerun must be an integer 1–{MAX_RERUN}, got {_short(rerun)}")
    tenant, flow, when, _ = parse_instance_id(instance)
    return f"{instance_id(tenant, flow, when)}-rerun{rerun}"


def parse_instance_id(instance: str) -> tuple[str, str, datetime, int | None]:
    """``(tenant, flow, scheduledFor, rerun or None)`` of a DataSync instance id
    (``Workflow-acme--sync-20261123T140000Z`` or ``…-rerun2``); :class:`ValidationError`
    for anything else."""
    match = _INSTANCE.fullmatch(instance) if isinstance(instance, str) else None
    if match is None:
        raise ValidationError(f"not a DataSync instance id: {_short(instance)}")
    try:
        tenant = validate_tenant_id(match["tenant"])
        flow = validate_flow_name(match["flow"])
        when = datetime.strptime(match["when"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except (ValidationError, ValueError):
        raise ValidationError(f"not a DataSync instance id: {_short(instance)}") from None
    rerun = int(match["rerun"]) if match["rerun"] else None
    return tenant, flow, when, rerun


def secret_name(tenant: str, system: str, key: str) -> str:
    """Key Vault secret name ``tenants--{tenant}--{system}--{key}`` (parts validated)."""
    validate_tenant_id(tenant)
    validate_secret_part(system, "system")
    validate_secret_part(key, "key")
    return f"tenants--{tenant}--{system}--{key}"


def utcnow() -> datetime:
    """Now, aware UTC, truncated to the second."""
    return datetime.now(UTC).replace(microsecond=0)


def precise_utcnow() -> datetime:
    """Now, aware UTC, with microseconds (lateness and durations are measured with it)."""
    return datetime.now(UTC)


def page_key(run_id: str, page: int) -> str:
    """``ctx.page_key`` = ``<instance id>/p<page>``: stable for a run and page across
    retries, replays and resumes."""
    return f"{run_id}/p{page}"
