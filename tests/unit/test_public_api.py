"""The public API: ``from datasync import ...`` offers exactly these names, and importing the
package stays cheap (no Azure SDK until an Azure backend is built)."""

from __future__ import annotations

import json
import subprocess
import sys

import datasync
from datasync.app import App
from datasync.config import Settings
from datasync.context import FlowContext
from datasync.registry import Page, flow

EXPECTED = [
    "App",
    "ConfigError",
    "DataSyncError",
    "DuplicateFlow",
    "FlowContext",
    "FlowEntry",
    "FlowError",
    "FlowLoadError",
    "FlowNotFound",
    "FlowRegistry",
    "InvalidDocument",
    "Job",
    "MissingConfigKey",
    "NotFound",
    "Page",
    "PermanentError",
    "RunRecord",
    "SecretNotFound",
    "Settings",
    "Tenant",
    "TransientError",
    "ValidationError",
    "__version__",
    "flow",
]


def test_all_is_the_expected_sorted_list() -> None:
    assert datasync.__all__ == EXPECTED
    assert sorted(datasync.__all__) == datasync.__all__


def test_every_public_name_is_importable_and_is_the_defining_modules_object() -> None:
    namespace: dict[str, object] = {}
    exec("from datasync import *", namespace)  # what a script gets
    assert set(EXPECTED) - {"__version__"} <= set(namespace)
    for name in EXPECTED:
        assert getattr(datasync, name) is not None
    assert (datasync.App, datasync.Settings, datasync.FlowContext) == (App, Settings, FlowContext)
    assert (datasync.flow, datasync.Page) == (flow, Page)
    assert isinstance(datasync.__version__, str) and datasync.__version__


def test_the_errors_are_datasync_errors() -> None:
    for name in EXPECTED:
        value = getattr(datasync, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, datasync.DataSyncError), name


def _modules_after_import() -> set[str]:
    code = "import json, sys, datasync; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


def test_import_datasync_loads_no_azure_sdk() -> None:
    modules = _modules_after_import()
    assert not {m for m in modules if m == "azure" or m.startswith("azure.")}
    # httpx IS imported eagerly today: datasync.config's Settings holds a http.RetryPolicy and
    # datasync.app builds HttpClients. Asserted so that a change either way is a decision.
    assert "httpx" in modules
