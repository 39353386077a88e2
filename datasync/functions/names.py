"""Function, activity and queue names: defined once, never retyped."""
from __future__ import annotations

ORCHESTRATOR = "sync_flow"
BEGIN_RUN = "begin_run"
PULL_PAGE = "pull_page"
TRANSFORM_PAGE = "transform_page"
PUSH_PAGE = "push_page"
FINISH_RUN = "finish_run"
JOB_QUEUE = "flow-jobs"
STORAGE_CONNECTION = "AzureWebJobsStorage"
SCAN_SCHEDULE = "%DATASYNC_SCAN_SCHEDULE%"
