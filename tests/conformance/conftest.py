"""Fixtures: the worker venv, bridge processes (one per app directory), a throw-away
DATASYNC_HOME and flows dir filled through the project's own CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from .worker_venv import ROOT, WorkerVenvError, ensure_worker_venv

BRIDGE = Path(__file__).resolve().parent / "worker_bridge.py"
APP = Path(os.environ.get("DATASYNC_CONFORMANCE_APP") or ROOT).resolve()
"""The app under test: this project (``DATASYNC_CONFORMANCE_APP`` points at another tree,
e.g. a candidate fix in a scratch copy)."""

# Settings that would switch a port to Azure: the suite runs on the embedded backends.
AZURE_SETTINGS = (
    "AzureWebJobsStorage",
    "COSMOS_ENDPOINT",
    "COSMOS_KEY",
    "KEYVAULT_URL",
    "AzureWebJobsStorage__accountName",
)


class BridgeError(AssertionError):
    pass


class Bridge:
    """One worker process (the real library in the 3.13 venv) for one app directory."""

    def __init__(
        self, python: Path, app_dir: Path, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> None:
        self.app_dir = app_dir
        self.timeout = timeout
        self.init_reply: dict[str, Any] = {}  # what "init" answered, when a test keeps it
        child_env = {k: v for k, v in os.environ.items() if k not in AZURE_SETTINGS}
        child_env.pop("PYTHONPATH", None)
        child_env.update(env or {})
        self.proc = subprocess.Popen(
            [str(python), str(BRIDGE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
            cwd=str(app_dir),
        )
        self._stderr: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(self.proc.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(self.timeout)
        if not result or not result[0]:
            self.close()
            raise BridgeError(
                f"worker bridge gave no answer to {op!r} within "
                f"{self.timeout}s; its stderr:\n{self.stderr[-4000:]}"
            )
        reply = json.loads(result[0])
        if not reply.pop("ok"):
            raise BridgeError(f"bridge failed on {op!r}: {reply['error']}\n{reply['traceback']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._drain.join(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="session")
def worker_python() -> Path:
    """The 3.13 venv's python; a missing 3.13 FAILS the suite (never skips)."""
    try:
        return ensure_worker_venv()
    except WorkerVenvError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


def run_cli(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m datasync …`` in the main venv, on the app under test."""
    child_env = {k: v for k, v in os.environ.items() if k not in AZURE_SETTINGS}
    child_env.update(env, PYTHONPATH=str(APP), DATASYNC_PROJECT_ROOT=str(APP))
    proc = subprocess.run(
        [sys.executable, "-m", "datasync", *args],
        input=stdin,
        text=True,
        capture_output=True,
        cwd=str(APP),
        env=child_env,
        timeout=60,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"datasync {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def bridge_factory(worker_python: Path) -> Iterator[Any]:
    bridges: list[Bridge] = []

    def start(app_dir: Path, env: dict[str, str] | None = None) -> Bridge:
        bridge = Bridge(worker_python, app_dir, env)
        bridges.append(bridge)
        return bridge

    yield start
    for bridge in bridges:
        bridge.close()
