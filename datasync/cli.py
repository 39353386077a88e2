"""``python -m datasync …`` / ``datasync …``: the command line (see DESIGN.md, "CLI").

Exit codes: 0 ok, 1 a run failed, 2 bad input or usage (printed as ``error: …``, no
traceback). Services are built lazily inside commands, so ``--help`` never touches storage.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .exceptions import (
    ConfigError,
    DataSyncError,
    FlowError,
    NotFound,
    SecretNotFound,
    ValidationError,
)

if TYPE_CHECKING:
    from . import operations
    from .config import Settings
    from .models import Tenant
    from .ports import QueueItem

__all__ = ["cli", "main"]

_USAGE_ERRORS = (ValidationError, NotFound, FlowError, SecretNotFound, ConfigError)
_ERROR_WIDTH = 60


class _Group(click.Group):
    """Turns DataSync errors into ``error: …`` on stderr and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DataSyncError as err:
            _fail(str(err), 2 if isinstance(err, _USAGE_ERRORS) else 1)


def _fail(message: str, code: int = 2) -> None:
    for line in (message or "failed").splitlines():
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def _app() -> Any:
    """The command's :class:`~datasync.app.App`, built on first use, closed at exit."""
    root = click.get_current_context().find_root()
    app = root.meta.get("datasync.app")
    if app is None:
        from .app import App

        app = App.from_settings()
        root.meta["datasync.app"] = app
        root.call_on_close(app.close)
    return app


def _now() -> datetime:
    from .names import utcnow

    return utcnow()


def _time(value: Any) -> str:
    """A time as stored (``2026-11-23T14:00:00Z``); blank for None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        from .names import format_utc

        return format_utc(value)
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A compact, aligned plain-text table (no colours, stable for scripts and eyes)."""
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _short(text: str | None, width: int = _ERROR_WIDTH) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- the group -----------------------------------------------------------------------------
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data dir of the embedded backends (sets DATASYNC_HOME).",
)
def cli(home: Path | None) -> None:
    """DataSync: scheduled, multi-tenant data syncs (Azure Functions + Durable Functions)."""
    if home is not None:
        os.environ["DATASYNC_HOME"] = str(home.resolve())


@cli.command()
@click.option(
    "--once", is_flag=True, help="One scheduler tick now, then work until nothing is pending."
)
def run(once: bool) -> None:
    """The local runtime: timer, queue, orchestrations and activities of function_app.py."""
    from .runtime.host import run_local

    sys.exit(run_local(once=once))


@cli.command()
def demo() -> None:
    """A full offline demo: local APIs, sample tenants, a real sync, a summary."""
    from .demo import run_demo

    sys.exit(run_demo())


# -- tenants -------------------------------------------------------------------------------
@cli.group()
def tenants() -> None:
    """Tenant documents and their flows' next runs."""


@tenants.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--json", "as_json", is_flag=True, help="The documents as stored, as JSON (changes on stderr)."
)
def tenants_apply(file: str, as_json: bool) -> None:
    """Validate and upsert tenant documents from FILE (a JSON object or list; - = stdin).

    What the file leaves out and the CLI manages is kept: the tenant's paused, a flow's
    enabled, and a stored nextRunUtc that is pending or whose cron and timezone did not
    change. Prints what changed per tenant."""
    from . import operations

    try:
        if file == "-":
            text = click.open_file("-").read()  # stdin as click.get_text_stream gave it
        else:
            text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        _fail(f"{file}: cannot read: {getattr(err, 'strerror', None) or err}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        _fail(f"{file}: invalid JSON: line {err.lineno} column {err.colno}: {err.msg}")
    applied = operations.apply(_app(), obj, _now())
    click.echo(f"applied {len(applied)} tenant{'' if len(applied) == 1 else 's'}", err=as_json)
    for item in applied:
        click.echo(_applied_line(item), err=as_json)
    if as_json:
        _json([a.tenant.to_doc() for a in applied])
    else:
        _tenant_rows([a.tenant for a in applied])


def _applied_line(item: operations.Applied) -> str:
    line = f"{item.tenant.tenant_id}: {item.change}"
    if item.fields:
        line += " " + ", ".join(item.fields)
    if item.kept:
        line += "; kept " + ", ".join(item.kept) + " (not in the file)"
    return line


def _tenant_rows(items: list[Tenant]) -> None:
    rows: list[list[str]] = []
    for t in items:
        head = [t.tenant_id, t.name or "", t.timezone, _yes(t.paused)]
        if not t.flows:
            rows.append([*head, "", "", "", ""])
        for i, f in enumerate(t.flows):
            rows.append(
                (head if i == 0 else [""] * 4)
                + [f.name, _yes(f.enabled), f.cron, _time(f.next_run_utc)]
            )
    _table(["tenant", "name", "timezone", "paused", "flow", "enabled", "cron", "nextRunUtc"], rows)


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="The documents as stored, as JSON.")
def tenants_list(as_json: bool) -> None:
    """Tenants and their flows' next runs."""
    from . import operations

    items = operations.list_tenants(_app())
    if as_json:
        _json([t.to_doc() for t in items])
    elif not items:
        click.echo("no tenants")
    else:
        _tenant_rows(items)


@tenants.command("show")
@click.argument("tenant_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The document as stored, as JSON.")
def tenants_show(tenant_id: str, as_json: bool) -> None:
    """One tenant document."""
    from . import operations

    tenant = operations.show_tenant(_app(), tenant_id)
    if as_json:
        _json(tenant.to_doc())
        return
    doc = tenant.to_doc()
    click.echo(f"tenant    {tenant.tenant_id}")
    click.echo(f"name      {tenant.name or ''}")
    click.echo(f"timezone  {tenant.timezone}")
    click.echo(f"paused    {_yes(tenant.paused)}")
    if "maxConcurrentRuns" in doc:
        click.echo(f"maxConcurrentRuns  {doc['maxConcurrentRuns']}")
    click.echo("")
    _table(
        ["flow", "enabled", "cron", "nextRunUtc", "overlap", "config"],
        [
            [
                f.name,
                _yes(f.enabled),
                f.cron,
                _time(f.next_run_utc),
                f.overlap,
                _short(json.dumps(f.config or {}, separators=(",", ":")), 50),
            ]
            for f in tenant.flows
        ],
    )


# -- flows ---------------------------------------------------------------------------------
@cli.group()
def flows() -> None:
    """The registered flows (files in the flows directory)."""


@flows.command("list")
@click.option("--json", "as_json", is_flag=True, help='[{"name", "file"}] as JSON.')
def flows_list(as_json: bool) -> None:
    """The registered flows and where each came from; exit 2 if a flow file is broken."""
    registry = _app().registry
    specs = sorted(registry.specs(), key=lambda s: s.name)
    if as_json:
        _json([{"name": s.name, "file": str(s.file)} for s in specs])
    elif specs:
        _table(["flow", "file"], [[s.name, str(s.file)] for s in specs])
    else:
        click.echo("no flows")
    if registry.errors:
        _fail("\n".join(str(e) for e in registry.errors))


# -- secrets -------------------------------------------------------------------------------
@cli.group()
def secrets() -> None:
    """Per-tenant secrets (Key Vault on Azure, a 0600 file locally)."""


@secrets.command("set")
@click.argument("tenant")
@click.argument("system")
@click.argument("key")
def secrets_set(tenant: str, system: str, key: str) -> None:
    """Store a secret; the value is read from stdin (never from the command line)."""
    from . import operations

    stream = click.open_file("-")  # stdin as click.get_text_stream gave it (deprecated 8.5)
    if stream.isatty():
        value = click.prompt("value", hide_input=True, default="", show_default=False, err=True)
    else:
        value = stream.read()
        if value.endswith("\n"):
            value = value[:-2] if value.endswith("\r\n") else value[:-1]
    if not value:
        _fail(
            "empty secret value: pipe the value on stdin, e.g. "
            'printf %s "$TOKEN" | datasync secrets set TENANT SYSTEM KEY'
        )
    operations.set_secret(_app(), tenant, system, key, value)
    click.echo(f"stored secret for tenant {tenant}, system {system}, key {key}")


# -- trigger / pause / resume --------------------------------------------------------------
@cli.command()
@click.argument("tenant")
@click.argument("flow")
def trigger(tenant: str, flow: str) -> None:
    """Force a run: make FLOW of TENANT due now."""
    from . import operations

    doc, note = operations.trigger(_app(), tenant, flow, _now())
    click.echo(
        f"triggered flow {flow} of tenant {tenant}: nextRunUtc {_time(doc.flow(flow).next_run_utc)}"
    )
    if note:
        click.echo(note)


@cli.command()
@click.argument("tenant")
@click.argument("flow", required=False)
def pause(tenant: str, flow: str | None) -> None:
    """Pause a tenant, or disable one of its flows."""
    from . import operations

    operations.pause(_app(), tenant, flow)
    click.echo(
        f"paused tenant {tenant}" if flow is None else f"disabled flow {flow} of tenant {tenant}"
    )


@cli.command()
@click.argument("tenant")
@click.argument("flow", required=False)
def resume(tenant: str, flow: str | None) -> None:
    """Resume a tenant, or enable one of its flows; next runs are recomputed from now."""
    from . import operations

    doc = operations.resume(_app(), tenant, flow, now=_now())
    if flow is None:
        click.echo(f"resumed tenant {tenant}")
        _table(
            ["flow", "enabled", "nextRunUtc"],
            [[f.name, _yes(f.enabled), _time(f.next_run_utc)] for f in doc.flows],
        )
    else:
        click.echo(
            f"enabled flow {flow} of tenant {tenant}: nextRunUtc "
            f"{_time(doc.flow(flow).next_run_utc)}"
        )
        if doc.paused:
            click.echo(f"tenant {tenant} is paused: the run will not start until it is resumed")


# -- runs ----------------------------------------------------------------------------------
@cli.command()
@click.option("--tenant", help="Only this tenant.")
@click.option("--flow", help="Only this flow.")
@click.option("--status", help="Pending, Running, Completed, Failed, Skipped or Terminated.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Run records as JSON.")
def runs(
    tenant: str | None, flow: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """Run history, newest first."""
    from . import operations

    items = operations.list_runs(_app(), tenant=tenant, flow=flow, status=status, limit=limit)
    if as_json:
        _json([r.to_json() for r in items])
    elif not items:
        click.echo("no runs")
    else:
        _table(
            [
                "instance id",
                "status",
                "started",
                "finished",
                "pages",
                "in",
                "out",
                "resumes",
                "error",
            ],
            [
                [
                    r.instance_id,
                    r.status,
                    _time(r.started_at),
                    _time(r.finished_at),
                    r.pages,
                    r.records_in,
                    r.records_out,
                    r.resumes,
                    _short(r.error),
                ]
                for r in items
            ],
        )


# -- terminate -----------------------------------------------------------------------------
_TERMINATE_REASON = "stopped with datasync terminate"


@cli.command()
@click.argument("tenant")
@click.argument("target", metavar="FLOW|INSTANCE")
@click.option("--reason", default=_TERMINATE_REASON, show_default=True, help="Why (recorded).")
@click.option("--json", "as_json", is_flag=True, help="The run records afterwards, as JSON.")
def terminate(tenant: str, target: str, reason: str, as_json: bool) -> None:
    """Stop a running run: FLOW's Pending/Running runs, or the run INSTANCE (Workflow-…).

    Terminates the orchestration through the Durable client and records the run
    Terminated. Embedded runtime (DATASYNC_HOME/durable.db) only; see README."""
    import asyncio

    from . import operations

    app = _app()
    runs = operations.terminable(app, tenant, target)
    reason = " ".join(reason.split()) or _TERMINATE_REASON
    done = asyncio.run(_terminate(app, runs, reason))
    if as_json:
        _json([t.run.to_json() for t in done])
        return
    for t in done:
        what = {
            "terminated": "terminated",
            "ended": "had already ended",
            "not-started": "had no orchestration instance",
        }[t.outcome]
        click.echo(f"{t.run.instance_id}: {what}; recorded {t.run.status}")


async def _terminate(app: Any, runs: list[Any], reason: str) -> list[operations.Termination]:
    """Run :func:`operations.terminate` with the real ``DurableOrchestrationClient`` against
    the extension's HTTP API served over the embedded engine's ``durable.db`` (the CLI is
    not the runtime: a running ``datasync run`` on the same home sees the termination)."""
    from azure.durable_functions import DurableOrchestrationClient

    from . import operations
    from .runtime.durable import (
        DurableEngine,
        close_durable_client_session,
        fresh_durable_client_session,
    )
    from .runtime.rpc import DurableRpcServer

    settings: Settings = app.settings
    path = settings.home / "durable.db"
    if not path.exists() and settings.uses_cosmos:
        _fail(
            f"no embedded Durable engine under {settings.home}: on Azure, terminate the "
            "instance through the Durable Functions HTTP API or the portal; its run record is "
            "ended at the next admission of that flow"
        )
    engine = DurableEngine(path, orchestrators={}, activities={})
    rpc = DurableRpcServer(engine).start()
    fresh_durable_client_session()
    try:
        client = DurableOrchestrationClient(rpc.binding_json())
        return await operations.terminate(app, runs, client, reason=reason)
    finally:
        await close_durable_client_session()
        rpc.stop()
        engine.close()


# -- queues --------------------------------------------------------------------------------
@cli.group()
def queue() -> None:
    """The job queue (flow-jobs)."""


@queue.command("put")
@click.argument("text")
def queue_put(text: str) -> None:
    """Put TEXT as a raw message on flow-jobs (for replays and tests)."""
    from . import operations

    click.echo(operations.queue_put(_app(), text))


@cli.group()
def poison() -> None:
    """The poison queue (flow-jobs-poison)."""


def _poison_json(item: QueueItem) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": item.id,
        "body": item.body,
        "dequeueCount": item.dequeue_count,
        "insertedAt": _time(item.inserted_at) or None,
    }
    if item.reason:
        data["reason"] = item.reason
    return data


@poison.command("list")
@click.option("--json", "as_json", is_flag=True, help="Messages as JSON.")
def poison_list(as_json: bool) -> None:
    """Messages that failed too often."""
    from . import operations

    items = operations.poison_list(_app())
    if as_json:
        _json([_poison_json(i) for i in items])
    elif not items:
        click.echo("no poison messages")
    else:
        _table(
            ["id", "inserted", "dequeues", "reason", "body"],
            [
                [
                    i.id,
                    _time(i.inserted_at),
                    i.dequeue_count,
                    _short(i.reason, 50),
                    _short(i.body, 70),
                ]
                for i in items
            ],
        )


@poison.command("replay")
@click.argument("message_id", metavar="ID")
def poison_replay(message_id: str) -> None:
    """Move poison message ID back to flow-jobs."""
    from . import operations

    new_id = operations.poison_replay(_app(), message_id)
    click.echo(f"replayed {message_id} to flow-jobs as {new_id}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="datasync")
