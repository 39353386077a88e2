"""``python -m tests.faults.faulty <datasync args>``: the CLI with one crash point armed.

A test-only seam: production code has no fault hooks. ``DATASYNC_FAULT_POINT`` names where
this process SIGKILLs itself (a crash with no cleanup, as ``kill -9`` or an OOM kill):

- ``scan-after-enqueue``: the scheduler tick has enqueued its jobs and is about to write
  the flows' ``nextRunUtc`` back;
- ``starter-before-start``: the starter claimed the job (its run record exists) and is
  about to call the Durable client's ``start_new``.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def _crash_before(owner: Any, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def crash(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)  # never reached

    setattr(owner, name, crash)


def arm(point: str) -> None:
    if point == "scan-after-enqueue":
        from datasync.adapters.local.tenants import SqliteTenantStore

        _crash_before(SqliteTenantStore, "advance")
    elif point == "starter-before-start":
        from azure.durable_functions import DurableOrchestrationClient

        _crash_before(DurableOrchestrationClient, "start_new")
    else:
        raise SystemExit(f"unknown DATASYNC_FAULT_POINT {point!r}")


if __name__ == "__main__":
    arm(os.environ["DATASYNC_FAULT_POINT"])
    from datasync.cli import main

    main(sys.argv[1:])
