"""The fault suite's harness: a throw-away project (flows dir, DATASYNC_HOME, logs), the CLI
as a user types it, runtimes as subprocesses that can be SIGKILLed, and flow files whose
steps stop at a *gate* so a test can kill the runtime at an exact point.

A gate (``config.gate = {"dir", "name", "step", "page"}``) blocks the given step of the
given page the *first* time any runtime reaches it (it creates ``<name>.reached``) until
``<name>.release`` exists; later passes (a resumed run) go straight through.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FAR_FUTURE = "0 0 0 1 1 *"  # once a year on Jan 1: only the start tick fires
DUE = "2020-01-01T00:00:00Z"  # a nextRunUtc in the past: due now
DUE_ID = "20200101T000000Z"

GATE_CODE = '''
import os
import time
from pathlib import Path


def gate(ctx, step):
    """Block once at config.gate's step/page until the test releases it."""
    g = ctx.config.get("gate")
    if not g or g["step"] != step or not ctx.page_key.endswith("/p%d" % g["page"]):
        return
    d = Path(g["dir"])
    try:
        fd = os.open(d / (g["name"] + ".reached"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, ctx.run_id.encode())
    os.close(fd)
    deadline = time.time() + 90
    while not (d / (g["name"] + ".release")).exists() and time.time() < deadline:
        time.sleep(0.05)
'''

# A flow against DemoApis (source + idempotent target under config.url), with gates.
GATED_FLOW = (
    """
from datasync import Page, flow
"""
    + GATE_CODE
    + """

@flow("{name}")
class Gated:
    def pull(self, ctx, cursor):
        gate(ctx, "pull")
        r = ctx.http.get(ctx.config["url"] + "/contacts",
                         params={{"after": cursor or "", "limit": ctx.config.get("page_size", 10)}},
                         headers={{"Authorization": "Bearer " + ctx.secret("src", "token")}})
        r.raise_for_status()
        body = r.json()
        return Page(records=body["items"], cursor=body["next"], has_more=body["more"])

    def push(self, ctx, records):
        ctx.http.post(ctx.config["url"] + "/batch", json={{"records": records}},
                      headers={{"Idempotency-Key": ctx.page_key,
                               "Authorization": "Bearer " + ctx.secret("dst", "token")}}
                      ).raise_for_status()
        gate(ctx, "push")
"""
)


def gated_flow(name: str = "gated") -> str:
    return GATED_FLOW.format(name=name)


def flow_entry(name: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "cron": FAR_FUTURE, "nextRunUtc": DUE, "config": config, **extra}


def tenant_doc(tid: str, *flows: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": tid,
        "tenantId": tid,
        "name": tid.title(),
        "timezone": "UTC",
        "flows": list(flows),
        **extra,
    }


def job(tid: str, flow: str, when: str = DUE) -> str:
    return json.dumps({"tenantId": tid, "flowName": flow, "scheduledFor": when})


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


class Runtime:
    """A ``python -m datasync run [--once]`` subprocess with its output in files."""

    def __init__(self, project: Project, args: list[str], env: dict[str, str]) -> None:
        n = len(project.runtimes)
        self.out_path = project.logs / f"runtime-{n}.out"
        self.err_path = project.logs / f"runtime-{n}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            # a crash point is armed by a test-only entry point (tests/faults/faulty.py)
            module = "tests.faults.faulty" if env.get("DATASYNC_FAULT_POINT") else "datasync"
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease hand-back (a crash)."""
        if not self.exited():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.wait(10)

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def wait(self, timeout: float = 90) -> int:
        """The exit code (killed after ``timeout`` seconds)."""
        deadline = time.time() + timeout
        while not self.exited():
            if time.time() > deadline:
                self.kill()
                raise AssertionError(
                    f"runtime did not exit within {timeout}s:\n" + self.stderr()[-3000:]
                )
            time.sleep(0.05)
        return self.proc.returncode

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")


class Project:
    """A temporary project: flows dir, DATASYNC_HOME, logs, and the CLI over them."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.flows = tmp / "flows"
        self.logs = tmp / "logs"
        self.gates = tmp / "gates"
        for d in (self.flows, self.logs, self.gates):
            d.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DATASYNC_HOME": str(self.home),
            "DATASYNC_FLOWS_DIR": str(self.flows),
            "DATASYNC_SCAN_SCHEDULE": FAR_FUTURE,
            "DATASYNC_HTTP_BACKOFF_BASE": "0.01",
            "DATASYNC_LOG_LEVEL": "INFO",
            "DATASYNC_QUEUE_RETRY_DELAY": "0.2",
            "DATASYNC_REQUEUE_DELAY": "0.5",
            "DATASYNC_START_CLAIM_SECONDS": "1",
            **env,
        }
        self.env.pop("AzureWebJobsStorage", None)
        self.env.pop("COSMOS_ENDPOINT", None)
        self.env.pop("KEYVAULT_URL", None)
        self.runtimes: list[Runtime] = []
        self.outputs: list[str] = []  # every CLI stdout/stderr, for the secret grep

    # -- files -----------------------------------------------------------------------------
    def write_flow(self, filename: str, text: str) -> None:
        path = self.flows / filename
        path.write_text(text)
        os.utime(path, None)

    def gate(self, name: str, step: str, page: int) -> dict[str, Any]:
        return {"dir": str(self.gates), "name": name, "step": step, "page": page}

    def reached(self, name: str) -> bool:
        return (self.gates / f"{name}.reached").exists()

    def release(self, name: str) -> None:
        (self.gates / f"{name}.release").touch()

    # -- the CLI ---------------------------------------------------------------------------
    def cli(
        self,
        *args: str,
        stdin: str | None = None,
        check: int | None = 0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "datasync", *args],
            input=stdin,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        self.outputs += [proc.stdout, proc.stderr]
        if check is not None:
            assert proc.returncode == check, (
                args,
                proc.returncode,
                proc.stdout,
                proc.stderr[-3000:],
            )
        return proc

    def apply(self, *docs: dict[str, Any], check: int = 0) -> subprocess.CompletedProcess:
        path = self.tmp / "apply.json"
        path.write_text(json.dumps(list(docs)))
        return self.cli("tenants", "apply", str(path), check=check)

    def secret(self, tenant: str, system: str, key: str, value: str) -> None:
        self.cli("secrets", "set", tenant, system, key, stdin=value + "\n")

    def runs(self, *filters: str) -> list[dict[str, Any]]:
        return json.loads(self.cli("runs", "--json", *filters).stdout)

    def poison(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("poison", "list", "--json").stdout)

    def due_for_the_scheduler(self, tid: str, when: str = DUE) -> None:
        """``tenants apply`` queues a due flow at once; put the store back as a scheduler
        tick finds it — the tenant's flows due at ``when``, nothing on the queue — so the
        tick does the enqueue (the scheduler's own handling is what a test is about)."""
        self.sql("datasync.db", "DELETE FROM queue_messages WHERE queue = ?", "flow-jobs")
        schedule = "UPDATE flow_schedule SET next_run_utc = ? WHERE tenant_id = ?"
        self.sql("datasync.db", schedule, when, tid)
        (doc,) = self.sql("datasync.db", "SELECT doc FROM tenants WHERE id = ?", tid)[0]
        data = json.loads(doc)
        for entry in data.get("flows", []):
            entry["nextRunUtc"] = when
        self.sql("datasync.db", "UPDATE tenants SET doc = ? WHERE id = ?", json.dumps(data), tid)

    def put(self, text: str) -> str:
        return self.cli("queue", "put", text).stdout.strip()

    # -- runtimes --------------------------------------------------------------------------
    def start(self, *args: str, **env: str) -> Runtime:
        if "--once" not in args:  # several runtimes per test: the console is tested elsewhere
            args = ("--no-console", *args)
        runtime = Runtime(self, ["run", *args], {**self.env, **env})
        self.runtimes.append(runtime)
        return runtime

    def run_once(self, expect: int | None = 0, timeout: float = 90, **env: str) -> Runtime:
        runtime = self.start("--once", **env)
        code = runtime.wait(timeout)
        if expect is not None:
            assert code == expect, (code, runtime.stderr()[-4000:])
        return runtime

    def stop_all(self) -> None:
        for runtime in self.runtimes:
            runtime.kill()

    # -- the stores, read as any SQLite client would ----------------------------------------
    def sql(self, db: str, query: str, *args: Any) -> list[tuple]:
        con = sqlite3.connect(self.home / db, timeout=30)
        try:
            rows = con.execute(query, args).fetchall()
            con.commit()
            return rows
        finally:
            con.close()

    def everything_written(self) -> str:
        """Every byte the system wrote: logs, CLI output, every file under DATASYNC_HOME
        (SQLite files with their WAL and SHM) except ``secrets.json``."""
        parts = list(self.outputs)
        for runtime in self.runtimes:
            parts += [runtime.stdout(), runtime.stderr()]
        for path in sorted(self.home.rglob("*")):
            if path.is_file() and path.name != "secrets.json":
                parts.append(path.read_bytes().decode("latin-1"))
        return "\n".join(parts)


def setup_gated(
    project: Project,
    apis: Any,
    tid: str,
    records: int,
    *,
    gate: dict[str, Any] | None = None,
    page_size: int = 10,
    flow: str = "gated",
    api_tenant: str | None = None,
    apply: bool = True,
    **entry: Any,
) -> dict[str, Any]:
    """A DemoApis tenant with ``records`` source records, the gated flow file, the tenant
    document and its two secrets. Returns the flow entry."""
    api = api_tenant or tid
    if api not in apis.state.tenants:
        apis.add_tenant(
            api, source_token=f"{tid}-src-token", target_token=f"{tid}-dst-token", records=records
        )
    project.write_flow(f"{flow.replace('-', '_')}.py", gated_flow(flow))
    config: dict[str, Any] = {"url": apis.tenant_url(api), "page_size": page_size}
    if gate:
        config["gate"] = gate
    item = flow_entry(flow, config, **entry)
    if apply:
        project.apply(tenant_doc(tid, item))
        project.secret(tid, "src", "token", f"{tid}-src-token")
        project.secret(tid, "dst", "token", f"{tid}-dst-token")
    return item
