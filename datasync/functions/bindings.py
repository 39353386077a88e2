"""Names of the app's functions, activities, queue and settings: defined once, never retyped.

They are the contract with the Functions host (function and binding names) and with the
orchestrator's ``call_activity`` calls."""

from __future__ import annotations

from typing import Any, Dict

from ..ports import FLOW_JOBS

__all__ = [
    "BEGIN_RUN",
    "FINISH_RUN",
    "JOB_QUEUE",
    "ORCHESTRATOR",
    "PULL_PAGE",
    "PUSH_PAGE",
    "SCAN_SCHEDULE",
    "STORAGE_CONNECTION",
    "TRANSFORM_PAGE",
    "Payload",
]

ORCHESTRATOR = "sync_flow"
BEGIN_RUN = "begin_run"
PULL_PAGE = "pull_page"
TRANSFORM_PAGE = "transform_page"
PUSH_PAGE = "push_page"
FINISH_RUN = "finish_run"
JOB_QUEUE = FLOW_JOBS
STORAGE_CONNECTION = "AzureWebJobsStorage"
SCAN_SCHEDULE = "%DATASYNC_SCAN_SCHEDULE%"

Payload = Dict[str, Any]  # typing.Dict on purpose: pyproject.toml exempts this from UP006
"""The annotation of an activity's JSON input and output. It must be ``typing.Dict``: the
Python worker rejects PEP 585 generics (``dict[str, Any]``) on a bound parameter with
"binding args has invalid non-type annotation" and then loads no function at all."""
