"""host.json, local.settings.json.example, .funcignore and infra/main.bicep say what the
Functions host, Durable Functions and Flex Consumption actually do (see infra/README.md)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Settings only the embedded runtime / CLI reads: never an app setting on Azure.
EMBEDDED_ONLY = {
    "DATASYNC_PROJECT_ROOT",
    "DATASYNC_LOG_LEVEL",
    "DATASYNC_ACTIVITY_WORKERS",
    "DATASYNC_QUEUE_RETRY_DELAY",
    "DATASYNC_LOG_FORMAT",
}
# Test hooks: read by code (until removed) but never documented as a setting.
TEST_HOOKS = {"DATASYNC_FAULT_POINT"}
# Set on Azure by the Bicep only (the host or the platform reads them, not the app).
AZURE_ONLY = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    # the Durable Task Scheduler backend (durableBackend = 'durableTaskScheduler'): host.json's
    # storageProvider overridden by app settings, read by the Durable extension only
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName",
}
FLEX_MIN_MAXIMUM_INSTANCES = 40  # the documented floor (newer docs say 1: 40 fits both)
FLEX_MAX_MAXIMUM_INSTANCES = 1000
DEMO_MODULES = ("datasync.demo", "datasync.demo_apis")


def _timespan(value: str) -> float:
    """Seconds in a host.json ``hh:mm:ss[.fff]`` time span."""
    h, m, s = value.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.fixture(scope="module")
def host() -> dict:
    return json.loads((ROOT / "host.json").read_text())


@pytest.fixture(scope="module")
def example() -> dict:
    return json.loads((ROOT / "local.settings.json.example").read_text())


@pytest.fixture(scope="module")
def bicep() -> str:
    return (ROOT / "infra" / "main.bicep").read_text()


def _bicep_app_settings(bicep: str) -> set[str]:
    return set(re.findall(r"\{\s*name:\s*'([^']+)',\s*value:", bicep))


# -- host.json ----------------------------------------------------------------------------


def test_durable_never_overwrites_a_running_instance(host):
    durable = host["extensions"]["durableTask"]
    assert durable["overridableExistingInstanceStates"] == "NonRunningStates"
    assert "AnyState" not in (ROOT / "host.json").read_text()


def test_a_started_run_is_picked_up_within_seconds(host):
    # Durable (Azure Storage provider): control and work-item queues back off to at most this.
    storage = host["extensions"]["durableTask"]["storageProvider"]
    assert 0 < _timespan(storage["maxQueuePollingInterval"]) <= 2
    # The starter's queue trigger (flow-jobs) backs off to at most this.
    assert 0 < _timespan(host["extensions"]["queues"]["maxPollingInterval"]) <= 2


def test_queue_trigger_settings_are_sane(host):
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # what the CLI/scanner put on the queue
    assert queues["maxDequeueCount"] == 5
    assert 1 <= queues["batchSize"] <= 32  # the host's allowed range
    assert 0 <= queues["newBatchThreshold"] < queues["batchSize"] * 2
    assert _timespan(queues["visibilityTimeout"]) >= 1


def test_successful_invocations_reach_application_insights(host):
    levels = host["logging"]["logLevel"]
    assert levels["Host.Results"] == "Information"  # the requests table (success and failure)
    assert levels.get("Function", levels["default"]) == "Information"
    assert levels["DurableTask.AzureStorage"] == "Warning"
    assert levels["DurableTask.Core"] == "Warning"
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    excluded = {t.strip() for t in sampling["excludedTypes"].split(";")}
    assert {"Request", "Exception"} <= excluded  # failures are never sampled away


def test_function_timeout_is_valid_on_flex_consumption(host):
    # Flex Consumption: default 30 min, no enforced maximum; "-1" (unbounded) is not used here.
    seconds = _timespan(host["functionTimeout"])
    assert 60 <= seconds <= 4 * 3600


def test_host_json_is_what_the_embedded_runtime_reads(host, monkeypatch):
    from datasync.config import Settings
    from datasync.runtime.host import HostConfig

    config = HostConfig.load(ROOT, Settings.from_env({}))
    queues = host["extensions"]["queues"]
    assert config.batch_size == queues["batchSize"]
    assert config.max_dequeue_count == queues["maxDequeueCount"]
    assert config.visibility_timeout == _timespan(queues["visibilityTimeout"])
    assert config.task_hub == host["extensions"]["durableTask"]["hubName"]


# -- settings -----------------------------------------------------------------------------

_SETTING = re.compile(
    r"(DATASYNC|COSMOS|KEYVAULT)_[A-Z0-9_]+|AzureWebJobs\w*[^_]|"
    r"%[A-Za-z0-9_]+%"
)


def _settings_read() -> dict[str, set[str]]:
    """Every setting name that appears as a string literal in the app's code → the files."""
    found: dict[str, set[str]] = {}
    files = [ROOT / "function_app.py", *(ROOT / "datasync").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _SETTING.fullmatch(node.value)
            ):
                name = node.value.strip("%")
                found.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_setting_the_app_reads_is_in_the_example(example):
    documented = set(example["Values"]) | set(example["EmbeddedRuntimeOnly"])
    read = set(_settings_read()) - TEST_HOOKS
    assert read - documented == set()
    assert {
        "DATASYNC_SCAN_SCHEDULE",
        "AzureWebJobsStorage",
        "COSMOS_ENDPOINT",
        "KEYVAULT_URL",
    } <= read  # the scan above does find settings


def test_embedded_only_settings_are_kept_out_of_the_host_values(example):
    assert set(example["EmbeddedRuntimeOnly"]) == EMBEDDED_ONLY
    assert EMBEDDED_ONLY.isdisjoint(example["Values"])
    only_runtime = {
        name
        for name, files in _settings_read().items()
        if all(
            f.startswith(("datasync/runtime/", "datasync/cli.py", "datasync/demo")) for f in files
        )
    }
    assert only_runtime - TEST_HOOKS <= EMBEDDED_ONLY


def test_the_example_has_what_func_start_needs_and_no_leftovers(example):
    values = example["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["DATASYNC_SCAN_SCHEDULE"]  # the timer binding needs it
    assert all(isinstance(v, str) for v in values.values())  # func start reads strings only
    for name in TEST_HOOKS | {"AzureWebJobsFeatureFlags"}:
        assert name not in values and name not in example["EmbeddedRuntimeOnly"]


def test_worker_indexing_flag_is_set_nowhere():
    paths = [
        ROOT / "host.json",
        ROOT / "local.settings.json.example",
        ROOT / "function_app.py",
        ROOT / "infra" / "main.bicep",
        *(ROOT / "datasync").rglob("*.py"),
    ]
    for path in paths:
        assert "EnableWorkerIndexing" not in path.read_text(), path


# -- infra/main.bicep ---------------------------------------------------------------------


def test_bicep_sets_no_embedded_only_setting(bicep, example):
    settings = _bicep_app_settings(bicep)
    assert "DATASYNC_SCAN_SCHEDULE" in settings and "AzureWebJobsStorage__accountName" in settings
    assert settings.isdisjoint(
        EMBEDDED_ONLY | TEST_HOOKS | {"DATASYNC_HOME", "AzureWebJobsFeatureFlags"}
    )
    assert settings - AZURE_ONLY <= set(example["Values"])


def test_bicep_maximum_instance_count_is_within_flex_bounds(bicep):
    match = re.search(r"((?:@\w+\([^)]*\)\s*)+)param maximumInstanceCount int = (\d+)", bicep)
    assert match, "maximumInstanceCount parameter not found"
    decorators, default = match.group(1), int(match.group(2))
    low = int(re.search(r"@minValue\((\d+)\)", decorators).group(1))
    high = int(re.search(r"@maxValue\((\d+)\)", decorators).group(1))
    assert FLEX_MIN_MAXIMUM_INSTANCES <= low <= default <= high <= FLEX_MAX_MAXIMUM_INSTANCES


# -- .funcignore: what `func azure functionapp publish` ships -----------------------------


def _funcignore_denies() -> re.Pattern[str]:
    """Core Tools' matcher for .funcignore: each pattern is a regex prefix of the path
    relative to the app root (``**`` → any text, ``*`` → one path segment), no negations
    here. Not git's rules: ``package*.json`` would not match ``package.json``."""
    lines = [line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()]
    patterns = [line.lstrip("/") for line in lines if line and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns)
    regexes = [
        re.sub(r"[-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(), p)
        .replace("**", "(.+)")
        .replace("*", "([^/]+)")
        for p in patterns
    ]
    return re.compile("^((" + ")|(".join(regexes) + "))")


def _shipped(paths: list[str]) -> set[str]:
    denies = _funcignore_denies()
    return {p for p in paths if not denies.match(p)}


def test_funcignore_keeps_dev_files_and_demo_servers_out():
    left_out = [
        "package.json",
        "package-lock.json",
        "node_modules/azurite/package.json",
        ".venv/bin/python",
        ".venv-worker/bin/python",
        "tests/unit/test_cli.py",
        "benchmarks/__main__.py",
        "scripts/emulators",
        "infra/main.bicep",
        "README.md",
        "CHANGELOG.md",
        "CONTRIBUTING.md",
        "local.settings.json",
        "local.settings.json.example",
        "datasync/demo.py",
        "datasync/demo_apis.py",
        "datasync/__pycache__/config.cpython-311.pyc",
        "datasync.egg-info/PKG-INFO",
        "Makefile",
        "requirements-dev.txt",
    ]
    assert _shipped(left_out) == set()
    kept = [
        "function_app.py",
        "host.json",
        "requirements.txt",
        "flows/contacts_to_erp.py",
        "datasync/__init__.py",
        "datasync/functions/starter.py",
        "datasync/config.py",
        "datasync/adapters/azure/__init__.py",
    ]
    assert _shipped(kept) == set(kept)


def test_what_runs_on_azure_ships_and_never_imports_the_demo_servers():
    """Import function_app, the Azure adapters and the flows in a fresh interpreter (as the
    worker would): every module file it loads from the project ships; no demo module loads."""
    script = (
        "import json, sys\n"
        "import function_app, datasync.adapters.azure\n"
        "from datasync.registry import FlowRegistry\n"
        f"FlowRegistry.discover({str(ROOT / 'flows')!r}, None)\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'files': sorted(\n"
        "    getattr(m, '__file__', None) or '' for m in list(sys.modules.values()))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(out.stdout)
    assert not set(DEMO_MODULES) & set(loaded["modules"])
    ours = [
        Path(f).resolve().relative_to(ROOT).as_posix()
        for f in loaded["files"]
        if f
        and Path(f).resolve().is_relative_to(ROOT)
        and ".venv" not in Path(f).resolve().relative_to(ROOT).parts
    ]
    assert "function_app.py" in ours and "datasync/functions/starter.py" in ours
    assert any(p.startswith("flows/") for p in ours)
    assert _shipped(ours) == set(ours)
