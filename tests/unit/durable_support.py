"""Shared by the engine tests: an engine over a blueprint's functions, and draining it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from datasync.runtime.durable import DurableEngine
from datasync.runtime.host import index_functions


def engine_for(blueprint: Any, path: Path, **kw: Any) -> DurableEngine:
    """A ``DurableEngine`` on ``path`` with ``blueprint``'s orchestrators and activities,
    indexed the way the local runtime indexes an app."""
    found = index_functions(blueprint)
    return DurableEngine(path, orchestrators=found.orchestrators, activities=found.activities, **kw)


def drain(engine: DurableEngine, timeout: float = 10.0) -> None:
    """Run episodes and activities until no instance is active; fail after ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not (engine.run_orchestration_once() or engine.run_activity_once()):
            if engine.active_count() == 0:
                return
            time.sleep(0.005)
    raise AssertionError("engine did not drain")


def output(engine: DurableEngine, instance_id: str) -> tuple[str, Any]:
    status = engine.get_status(instance_id)
    assert status is not None, instance_id
    return status.runtime_status, json.loads(status.output or "null")
