"""``datasync run`` serves the web console beside the runtime, on loopback; a taken port
costs the console (one warning), never the runtime."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATASYNC_HOME": str(home), "DATASYNC_PROJECT_ROOT": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "datasync", "run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 60) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)  # drains and closes the pipe
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode


def test_run_serves_the_console_with_the_last_scheduler_tick(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start(tmp_path / "home", "--console-port", str(port))
    try:
        _read_until(proc, rf"web console at http://127\.0\.0\.1:{port}")
        _read_until(proc, r"scheduler tick at")
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200
        tick = re.search(r'id="last-tick">([^<]*)<', page.text)
        assert tick is not None and tick.group(1).strip() not in ("", "unknown")
    finally:
        assert _stop(proc) == 0


def test_a_taken_console_port_leaves_the_runtime_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _start(tmp_path / "home", "--console-port", str(port))
        try:
            out = _read_until(proc, r"local runtime up")
            out += _read_until(proc, r"scheduler tick at")
            assert "web console not started" in out and "Traceback" not in out
        finally:
            assert _stop(proc) == 0
