"""Run records: one row of run history per instance id (``runs --json``).

Times are ``...Z`` strings; ``status`` is one of :data:`RUN_STATUSES`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .exceptions import ValidationError

__all__ = ["RUN_STATUSES", "RunRecord"]

RUN_STATUSES = ("Pending", "Running", "Completed", "Failed", "Skipped", "Superseded", "Terminated")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_RUN_KEYS = {
    "instance_id": "instanceId",
    "tenant_id": "tenantId",
    "flow_name": "flowName",
    "scheduled_for": "scheduledFor",
    "status": "status",
    "started_at": "startedAt",
    "finished_at": "finishedAt",
    "pages": "pages",
    "records_in": "recordsIn",
    "records_out": "recordsOut",
    "resumes": "resumes",
    "error": "error",
}


@dataclass
class RunRecord:
    """One run's history row. Times are ``...Z`` strings; ``status`` in RUN_STATUSES."""

    instance_id: str
    tenant_id: str
    flow_name: str
    scheduled_for: str
    status: str
    started_at: str | None = None
    finished_at: str | None = None
    pages: int = 0
    records_in: int = 0
    records_out: int = 0
    resumes: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """camelCase keys, exactly those of the ``runs --json`` contract."""
        return {_RUN_KEYS[k]: v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunRecord:
        if not isinstance(d, dict):
            raise ValidationError(f"run record must be a JSON object, got {_show(d)}")
        required = ("instanceId", "tenantId", "flowName", "scheduledFor", "status")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValidationError(f"run record is missing {', '.join(map(repr, missing))}")
        return cls(**{field: d[key] for field, key in _RUN_KEYS.items() if key in d})
