"""The embedded runtime is as strict as the Python worker: it refuses an app the worker
would refuse, with the worker's own message, instead of running it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

BAD_APP = """
from typing import Any

import azure.durable_functions as df

from datasync.functions import AppProvider, build_function_app

datasync_app = AppProvider()
app = build_function_app(datasync_app)
extra = df.Blueprint()


@extra.activity_trigger(input_name="args", activity="audit_page")
def audit_page(args: dict[str, Any]) -> dict[str, Any]:     # PEP 585: the worker says no
    return args


app.register_functions(extra)
"""


def _project(tmp_path: Path, app_text: str) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "host.json", root / "host.json")
    shutil.copytree(ROOT / "flows", root / "flows")
    (root / "function_app.py").write_text(app_text)
    return root


def _run(root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATASYNC_PROJECT_ROOT": str(root),
        "DATASYNC_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT),
    }
    for name in ("COSMOS_ENDPOINT", "AzureWebJobsStorage", "KEYVAULT_URL"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "datasync", *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("args", [("run", "--once"), ("run",)])
def test_run_refuses_an_app_the_worker_refuses(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = _run(_project(tmp_path, BAD_APP), tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert (
        "error: cannot load the audit_page function: binding args has invalid non-type "
        "annotation dict[str, typing.Any]"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "durable.db").exists()  # nothing ran


def test_the_shipped_app_loads(tmp_path: Path) -> None:
    proc = _run(
        _project(tmp_path, (ROOT / "function_app.py").read_text()), tmp_path, "run", "--once"
    )
    assert proc.returncode == 0, proc.stderr
    assert "local runtime up" in proc.stderr
