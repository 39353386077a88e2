"""Benchmark 9 (``--peers``): the same sync with Prefect 3 and dlt, beside plain httpx and
DataSync, against one loopback API server; records/s and ratios to the plain loop.

The peers run in their own venv, ``.venv-peers/`` (gitignored, built here on first use
with pip: ``prefect>=3,<4``, ``dlt[duckdb]>=1,<2``, ``httpx``), never in the project's
venv or in CI. Prefect runs one task per step (pull, push) per page; dlt pulls the pages
and loads them into duckdb (it has no push to the target API).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import ROOT, Metric, run_json
from .sync import SOURCE_TOKEN, TARGET_TOKEN, ApiServer

__all__ = ["PEERS_VENV", "ensure_venv", "run"]

PEERS_VENV = ROOT / ".venv-peers"
REQUIREMENTS = ["prefect>=3,<4", "dlt[duckdb]>=1,<2", "httpx"]


def ensure_venv() -> Path:
    """The peers' interpreter, building the venv (about a minute) when it is missing."""
    exe = PEERS_VENV / "bin" / "python"
    if not (PEERS_VENV / ".installed").exists():
        print(f"  building {PEERS_VENV.name}/ ({', '.join(REQUIREMENTS)}) ...", flush=True)
        subprocess.run(
            [sys.base_prefix + "/bin/python3", "-m", "venv", str(PEERS_VENV)], check=True
        )
        subprocess.run([str(exe), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
        (PEERS_VENV / ".installed").write_text("\n".join(REQUIREMENTS) + "\n")
    return exe


def _peer(exe: Path, script: str, *args: str, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [str(exe), str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **env},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool = False) -> list[Metric]:
    records, page_size = (10_000, 500) if quick else (100_000, 500)
    try:
        exe = ensure_venv()
    except (OSError, subprocess.CalledProcessError) as exc:
        reason = f"could not build {PEERS_VENV.name}/: {exc}"
        return [
            Metric.skip(f"peers.{name}_vs_plain_ratio", "x", "report", reason)
            for name in ("prefect", "dlt")
        ]
    tenants = {f"peer-{n}": records for n in ("plain", "ds", "prefect", "dlt")}
    size = str(page_size)
    with ApiServer(tenants) as api, tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        plain = run_json(["-m", "benchmarks.sync", "plain", api.url, "peer-plain", size])
        ds = run_json(["-m", "benchmarks.sync", "datasync", api.url, "peer-ds", size])
        env = {
            "PREFECT_HOME": str(Path(tmp) / "prefect"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        prefect = _peer(
            exe,
            "peer_prefect.py",
            api.url,
            "peer-prefect",
            size,
            SOURCE_TOKEN,
            TARGET_TOKEN,
            env=env,
        )
        dlt = _peer(
            exe,
            "peer_dlt.py",
            api.url,
            "peer-dlt",
            size,
            SOURCE_TOKEN,
            tmp,
            env={"RUNTIME__LOG_LEVEL": "WARNING"},
        )
        for name in ("plain", "ds", "prefect"):
            st = api.stats(f"peer-{name}")
            if st["count"] != records or st["maxReceives"] != 1:
                raise RuntimeError(f"{name} did not move every record exactly once: {st}")
    if dlt["records"] != records:
        raise RuntimeError(f"dlt loaded {dlt['records']} of {records} records")
    plain_rate = records / plain["seconds"]
    rates = {
        "datasync": records / ds["seconds"],
        "prefect": records / prefect["seconds"],
        "dlt": records / dlt["seconds"],
    }
    print(
        f"  {records} records in pages of {page_size}: plain httpx {plain_rate:,.0f}/s, "
        + ", ".join(f"{k} {v:,.0f}/s ({v / plain_rate:.2f}x)" for k, v in rates.items())
    )
    metrics = [Metric.report("peers.plain_httpx_records_per_second", plain_rate, "records/s")]
    for name, rate in rates.items():
        metrics += [
            Metric.report(f"peers.{name}_records_per_second", rate, "records/s"),
            Metric.report(f"peers.{name}_vs_plain_ratio", rate / plain_rate, "x"),
        ]
    return metrics
