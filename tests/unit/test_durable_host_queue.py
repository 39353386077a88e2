"""The local queue trigger admits a message as soon as it is received: a slow message does
not hold back the ones received after it (no batch barrier), and, as the host does, a new
batch is fetched once ``newBatchThreshold`` or fewer are running, so at most ``batchSize +
newBatchThreshold`` run at once. A real app (the shipped one plus a probe queue function)
on the real host."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from datasync.config import Settings
from datasync.runtime.host import LocalHost

ROOT = Path(__file__).resolve().parents[2]

PROBE_APP = (
    (ROOT / "function_app.py").read_text()
    + """

import asyncio as _asyncio
import time as _time

import azure.durable_functions as _df
import azure.functions as _func

_probe = _df.Blueprint()
PROBE_LOG: list[tuple[str, str, float]] = []
PROBE_RUNNING = [0, 0]  # now, most at once


@_probe.queue_trigger(arg_name="msg", queue_name="probe", connection="AzureWebJobsStorage")
async def probe(msg: _func.QueueMessage) -> None:
    text = msg.get_body().decode()
    PROBE_RUNNING[0] += 1
    PROBE_RUNNING[1] = max(PROBE_RUNNING[1], PROBE_RUNNING[0])
    PROBE_LOG.append(("start", text, _time.monotonic()))
    await _asyncio.sleep(1.5 if text == "slow" else 0.3 if text.startswith("busy") else 0)
    PROBE_LOG.append(("end", text, _time.monotonic()))
    PROBE_RUNNING[0] -= 1


app.register_functions(_probe)
"""
)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "project"
    root.mkdir()
    config = json.loads((ROOT / "host.json").read_text())
    config["extensions"]["queues"]["batchSize"] = 4
    config["extensions"]["queues"]["newBatchThreshold"] = 1
    (root / "host.json").write_text(json.dumps(config))
    shutil.copytree(ROOT / "flows", root / "flows")
    (root / "function_app.py").write_text(PROBE_APP)
    monkeypatch.setenv("DATASYNC_PROJECT_ROOT", str(root))
    for name in ("COSMOS_ENDPOINT", "AzureWebJobsStorage", "KEYVAULT_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {"DATASYNC_HOME": str(tmp_path / "home"), "DATASYNC_FLOWS_DIR": str(root / "flows")}
    runtime = LocalHost(Settings.from_env(env), root=root).start()
    try:
        yield runtime
    finally:
        runtime.stop()
        sys.modules.pop("function_app", None)


def _wait(what, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.timeout(60)
def test_a_slow_message_does_not_hold_back_the_next_ones(host: LocalHost) -> None:
    log = sys.modules["function_app"].PROBE_LOG
    queue = host.app.queues.queue("probe")
    queue.send("slow")
    _wait(lambda: any(text == "slow" for _, text, _ in log))
    for i in range(3):
        queue.send(f"fast-{i}")
    _wait(lambda: sum(kind == "end" for kind, _, _ in log) == 4)
    ends = {text: at for kind, text, at in log if kind == "end"}
    assert all(ends[f"fast-{i}"] < ends["slow"] for i in range(3)), log


@pytest.mark.timeout(60)
def test_at_most_batch_size_plus_new_batch_threshold_run_at_once(host: LocalHost) -> None:
    module = sys.modules["function_app"]
    queue = host.app.queues.queue("probe")
    queue.send_many([f"busy-{i}" for i in range(12)])
    _wait(lambda: sum(kind == "end" for kind, _, _ in module.PROBE_LOG) == 12, 20)
    assert 4 <= module.PROBE_RUNNING[1] <= 5  # host.json batchSize 4 + newBatchThreshold 1
