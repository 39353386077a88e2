"""``python -m datasync …`` / ``datasync …``: the command line (see DESIGN.md, "CLI").

Exit codes: 0 ok, 1 a run failed, 2 bad input or usage (printed as ``error: …``, no
traceback). Services are built lazily inside commands, so ``--help`` never touches storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .exceptions import (
    ConfigError,
    DataSyncError,
    FlowError,
    NotFound,
    SecretNotFound,
    ValidationError,
)
from .redact import redact

if TYPE_CHECKING:
    from . import operations
    from .models import Tenant
    from .ports import QueueItem
    from .records import PageRecord, PageSummary, RunRecord

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
    """A compact, aligned plain-text table (no colours, stable for scripts and eyes); cells
    are masked (:func:`datasync.redact.redact`) before they are measured."""
    cells = [[str(c) for c in headers]] + [
        ["" if c is None else redact(str(c)) for c in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def _json(data: Any) -> None:
    click.echo(redact(json.dumps(data, indent=2, ensure_ascii=False)))


def _echo(text: str) -> None:
    """A line of data (a run's error, a reason …), masked."""
    click.echo(redact(text))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _short(text: str | None, width: int = _ERROR_WIDTH) -> str:
    """One line of at most ``width`` characters, masked before it is cut."""
    text = " ".join(redact(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- the group -----------------------------------------------------------------------------
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="datasync")
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
@click.option(
    "--console-port",
    type=click.IntRange(1, 65535),
    default=8765,
    show_default=True,
    help="Serve the web console on 127.0.0.1 at this port (not with --once).",
)
@click.option("--no-console", is_flag=True, help="Do not serve the web console.")
def run(once: bool, console_port: int, no_console: bool) -> None:
    """The local runtime: timer, queue, orchestrations and activities of function_app.py,
    and the web console on loopback."""
    from .runtime.host import run_local

    sys.exit(run_local(once=once, console_port=None if no_console else console_port))


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
@click.option("--json", "as_json", is_flag=True, help="The tenant document afterwards, as JSON.")
def trigger(tenant: str, flow: str, as_json: bool) -> None:
    """Force a run: make FLOW of TENANT due now (queued at once)."""
    from . import operations

    now = _now()
    doc, note = operations.trigger(_app(), tenant, flow, now)
    if as_json:
        _json(doc.to_doc())
        return
    click.echo(f"triggered flow {flow} of tenant {tenant}: due now ({_time(now)})")
    if note:
        click.echo(note)


@cli.command()
@click.argument("tenant")
@click.argument("flow", required=False)
@click.option("--json", "as_json", is_flag=True, help="The tenant document afterwards, as JSON.")
def pause(tenant: str, flow: str | None, as_json: bool) -> None:
    """Pause a tenant, or disable one of its flows."""
    from . import operations

    doc = operations.pause(_app(), tenant, flow)
    if as_json:
        _json(doc.to_doc())
        return
    click.echo(
        f"paused tenant {tenant}" if flow is None else f"disabled flow {flow} of tenant {tenant}"
    )


@cli.command()
@click.argument("tenant")
@click.argument("flow", required=False)
@click.option("--json", "as_json", is_flag=True, help="The tenant document afterwards, as JSON.")
def resume(tenant: str, flow: str | None, as_json: bool) -> None:
    """Resume a tenant, or enable one of its flows; next runs are recomputed from now."""
    from . import operations

    now = _now()
    doc = operations.resume(_app(), tenant, flow, now=now)
    if as_json:
        _json(doc.to_doc())
        return
    upcoming = operations.next_runs(doc, now)
    if flow is None:
        click.echo(f"resumed tenant {tenant}")
        _table(
            ["flow", "enabled", "next run"],
            [[f.name, _yes(f.enabled), _time(upcoming[f.name]) or "none"] for f in doc.flows],
        )
    else:
        click.echo(
            f"enabled flow {flow} of tenant {tenant}: next run {_time(upcoming[flow]) or 'none'}"
        )
        if doc.paused:
            click.echo(f"tenant {tenant} is paused: the run will not start until it is resumed")


# -- runs ----------------------------------------------------------------------------------
_RUN_HEADERS = [
    "instance id",
    "status",
    "scheduled",
    "started",
    "late",
    "finished",
    "pages",
    "in",
    "out",
    "resumes",
    "error",
]


def _seconds(value: float | None) -> str:
    """``1.234 s`` / ``2 m 05 s`` / ``1 h 02 m``; blank for None."""
    if value is None:
        return ""
    if abs(value) < 60:
        return f"{value:.3f} s" if abs(value) < 10 else f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def _run_row(r: RunRecord) -> list[Any]:
    from .operations import lateness_of

    return [
        r.instance_id,
        r.status,
        _time(r.scheduled_for),
        _time(r.started_at),
        _seconds(lateness_of(r)),
        _time(r.finished_at),
        r.pages,
        r.records_in,
        r.records_out,
        r.resumes,
        _short(r.reason or r.error),
    ]


@cli.group(invoke_without_command=True)
@click.option("--tenant", help="Only this tenant.")
@click.option("--flow", help="Only this flow.")
@click.option(
    "--status", help="Pending, Running, Completed, Failed, Skipped, Superseded or Terminated."
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Run records as JSON.")
@click.option("--watch", is_flag=True, help="A live table, refreshed every 2 s (Ctrl-C ends it).")
@click.pass_context
def runs(
    ctx: click.Context,
    tenant: str | None,
    flow: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
    watch: bool,
) -> None:
    """Run history, newest first; `runs show ID` for one run page by page."""
    if ctx.invoked_subcommand is not None:
        return
    from . import operations

    if watch:
        if as_json:
            _fail("--watch and --json do not go together: use --json alone for a snapshot")
        _watch(tenant, flow, status, min(limit, 50))
        return
    items = operations.list_runs(_app(), tenant=tenant, flow=flow, status=status, limit=limit)
    if as_json:
        _json([r.to_json() for r in items])
    elif not items:
        click.echo("no runs")
    else:
        _table(_RUN_HEADERS, [_run_row(r) for r in items])


def _watch(tenant: str | None, flow: str | None, status: str | None, limit: int) -> None:
    """``runs --watch``: the newest runs as a live table (rich.live), every 2 s, until Ctrl-C."""
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from . import operations

    app = _app()
    operations.list_runs(app, tenant=tenant, flow=flow, status=status, limit=1)  # bad input: exit 2

    def table() -> Table:
        items = operations.list_runs(app, tenant=tenant, flow=flow, status=status, limit=limit)
        view = Table(
            title=f"runs at {_time(_now())} (every 2 s; Ctrl-C to stop)",
            title_justify="left",
            box=None,
        )
        for header in _RUN_HEADERS:
            view.add_column(header, no_wrap=header != "error")
        for r in items:
            view.add_row(*[str(c) for c in _run_row(r)])
        if not items:
            view.add_row("no runs yet", *[""] * (len(_RUN_HEADERS) - 1))
        return view

    with (
        contextlib.suppress(KeyboardInterrupt),
        Live(table(), console=Console(), auto_refresh=False) as live,
    ):
        while True:
            time.sleep(2.0)
            live.update(table(), refresh=True)


@runs.command("show")
@click.argument("instance_id", metavar="ID")
@click.option(
    "--pages",
    "page_limit",
    type=click.IntRange(min=1, max=10_000),
    default=50,
    show_default=True,
    help="Page rows to show.",
)
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    help="Show the pages after this page number (paging through a long run).",
)
@click.option("--json", "as_json", is_flag=True, help="The run and its pages as JSON.")
def runs_show(instance_id: str, page_limit: int, after: int, as_json: bool) -> None:
    """One run in detail: times, lateness, status and why, then page by page."""
    from . import operations

    detail = operations.run_detail(_app(), instance_id, after=after, limit=page_limit)
    if as_json:
        _json(detail.to_json())
        return
    _show_run(detail)


def _show_run(detail: operations.RunDetail) -> None:
    from .operations import duration_of, lateness_of, rerun_of

    r = detail.run
    reason = r.reason
    fields: list[tuple[str, Any]] = [
        ("run", r.instance_id),
        ("tenant", r.tenant_id),
        ("flow", r.flow_name),
        ("status", r.status + (f": {_short(reason, 200)}" if reason else "")),
        ("scheduled for", _time(r.scheduled_for)),
        ("started", _time(r.started_at) or "not started"),
        ("lateness", _seconds(lateness_of(r))),
        ("finished", _time(r.finished_at)),
        ("duration", _seconds(duration_of(r))),
        ("pages", f"{r.pages}  (records {r.records_in} in, {r.records_out} out)"),
        ("resumes", r.resumes),
        ("rerun of", rerun_of(r) or ""),
        ("reruns", ", ".join(detail.reruns)),
        ("trace id", r.trace_id or ""),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        if value not in ("", None):
            _echo(f"{key.ljust(width)}  {value}")
    if r.error:
        _echo(f"{'error'.ljust(width)}  " + r.error.splitlines()[0])
        for line in r.error.splitlines()[1:]:
            _echo(" " * (width + 2) + line)
    for entry in detail.audit:
        _echo(
            f"{'audit'.ljust(width)}  {entry.at or ''} {entry.action} by {entry.actor}"
            + (f": {entry.detail}" if entry.detail else "")
        )
    _echo("")
    summary = detail.summary
    if not detail.pages:
        _echo("no page records" + (f" after page {detail.after}" if detail.after else ""))
    if summary is not None and summary.first_page is not None:
        before = [p for p in detail.pages if p.page < summary.first_page]
        after = [p for p in detail.pages if p.page > summary.first_page]
    else:
        before, after = detail.pages, []
    rows = _page_rows(before)
    spans_fold = (
        summary is not None
        and (summary.first_page or 0) > detail.after
        and bool(after or not detail.more)
    )
    if summary is not None and spans_fold:
        rows.append(_summary_row(summary))
    rows += _page_rows(after)
    if rows:
        _table(_PAGE_HEADERS, rows)
    if summary is not None:
        _echo(_summary_line(summary))
    if detail.more:
        last = detail.pages[-1].page
        _echo(f"more pages: datasync runs show {r.instance_id} --after {last}")


def _step_cell(page: PageRecord, name: str) -> str:
    step = page.step(name)
    if step is None:
        return ""
    text = _seconds(step.duration_seconds)
    if step.attempts > 1:
        text += f" ×{step.attempts}"
    if step.error:
        text += " error: " + _short(step.error, 40)
    return text


_PAGE_HEADERS = ["page", "cursor before → after", "in", "out", "pull", "transform", "push"]


def _page_rows(pages: list[PageRecord]) -> list[list[Any]]:
    return [
        [
            p.page,
            f"{_short(p.cursor_before or '∅', 24)} → {_short(p.cursor_after or '∅', 24)}",
            "" if p.records_in is None else p.records_in,
            "" if p.records_out is None else p.records_out,
            _step_cell(p, "pull"),
            _step_cell(p, "transform"),
            _step_cell(p, "push"),
        ]
        for p in pages
    ]


def _summary_row(s: PageSummary) -> list[Any]:
    """The folded pages as one row of the page table (what their steps took: a line below)."""
    span = f"{s.first_page}–{s.last_page}"
    return [span, f"… {s.pages} pages summarised …", s.records_in, s.records_out, "", "", ""]


def _summary_line(s: PageSummary) -> str:
    errors = f", {s.errors} with an error" if s.errors else ""
    return (
        f"pages {s.first_page}–{s.last_page} (summarised): {s.pages} pages, "
        f"{s.records_in} records in, {s.records_out} out, per page "
        f"{_seconds(s.min_duration_seconds)} – {_seconds(s.max_duration_seconds)}, "
        f"{_seconds(s.total_duration_seconds)} in all, {s.attempts} step attempts{errors}"
    )


@cli.command()
@click.argument("instance_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="What was queued, as JSON.")
def rerun(instance_id: str, as_json: bool) -> None:
    """Run a Failed or Terminated run again, from the flow's saved checkpoint.

    The new run is instance ID-rerun<N>: same scheduledFor, its record says which run it
    reruns. It goes through flow-jobs like any job (a running `datasync run` starts it)."""
    from . import operations

    done = operations.rerun(_app(), instance_id, now=_now())
    if as_json:
        _json(done.to_json())
        return
    click.echo(
        f"queued {done.instance_id}: rerun {done.rerun} of {instance_id} "
        f"(scheduledFor {done.original.scheduled_for}, from the saved checkpoint)"
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
    from . import operations

    reason = " ".join(reason.split()) or _TERMINATE_REASON
    done = operations.stop_runs(_app(), tenant, target, reason=reason)
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


# -- reset / backfill ----------------------------------------------------------------------
@cli.command()
@click.argument("tenant")
@click.argument("flow")
@click.option("--cursor", help="Set the saved cursor to this value instead of forgetting it.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="The checkpoint afterwards, as JSON.")
def reset(tenant: str, flow: str, cursor: str | None, yes: bool, as_json: bool) -> None:
    """Forget FLOW's saved cursor and state (the next run is a full resync), or set the
    cursor with --cursor. Refused while a run of the flow is active."""
    from . import operations

    app = _app()
    before = operations.check_reset(app, tenant, flow)
    if not yes:
        now_text = (
            "no saved cursor" if before.cursor is None else f"cursor {_cursor(before.cursor)}"
        )
        keys = len(before.state or {})
        change = (
            "forget it and the state: the next run starts from the beginning"
            if cursor is None
            else f"set the cursor to {_cursor(cursor)} and forget the state"
        )
        click.echo(
            f"flow {flow} of tenant {tenant}: {now_text}, state with {keys} key"
            f"{'' if keys == 1 else 's'}; this will {change}.",
            err=True,
        )
        try:
            ok = click.confirm("Continue?", default=False, err=True)
        except click.Abort:
            ok = False
        if not ok:
            _fail("reset cancelled: nothing changed (pass --yes to skip this question)")
    after = operations.reset(app, tenant, flow, cursor=cursor)
    if as_json:
        _json({"tenantId": tenant, "flowName": flow, "cursor": after.cursor, "state": after.state})
    elif cursor is None:
        click.echo(f"reset flow {flow} of tenant {tenant}: cursor and state forgotten")
    else:
        click.echo(f"reset flow {flow} of tenant {tenant}: cursor set to {_cursor(cursor)}")


def _cursor(value: Any) -> str:
    from .redact import redact

    return _short(redact(json.dumps(value, ensure_ascii=False)), 60)


class _UtcTime(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 time with a UTC offset (``2026-11-23T14:00:00Z``), as aware UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        from .names import parse_utc

        try:
            return parse_utc(value)
        except DataSyncError as err:
            self.fail(str(err), param, ctx)


@cli.command()
@click.argument("tenant")
@click.argument("flow")
@click.option("--from", "start", type=_UtcTime(), required=True, help="First time (ISO 8601).")
@click.option("--to", "end", type=_UtcTime(), required=True, help="Last time (ISO 8601).")
@click.option("--dry-run", is_flag=True, help="List the occurrences; queue nothing.")
@click.option("--json", "as_json", is_flag=True, help="The occurrences as JSON.")
def backfill(
    tenant: str, flow: str, start: datetime, end: datetime, dry_run: bool, as_json: bool
) -> None:
    """One run per occurrence of FLOW's cron from --from to --to (both included), through
    flow-jobs; occurrences that already have a run record are left alone."""
    from . import operations

    done = operations.backfill(_app(), tenant, flow, start, end, dry_run=dry_run, now=_now())
    if as_json:
        _json(done.to_json())
        return
    from .names import instance_id

    _table(
        ["scheduledFor", "instance id", "action"],
        [
            [
                _time(t),
                (iid := instance_id(tenant, flow, t)),
                f"has a run ({done.existing[iid]})"
                if iid in done.existing
                else ("would queue" if dry_run else "queued"),
            ]
            for t in done.occurrences
        ],
    )
    verb = "would queue" if dry_run else "queued"
    click.echo(
        f"{len(done.occurrences)} occurrence(s) in range; {verb} "
        f"{len(done.occurrences) - len(done.existing)}, {len(done.existing)} already ran"
    )
    if done.note:
        click.echo(f"note: {done.note}")


# -- schedule ------------------------------------------------------------------------------
@cli.group()
def schedule() -> None:
    """When flows run: next occurrences and last runs."""


@schedule.command("show")
@click.argument("tenant")
@click.argument("flow")
@click.option("--json", "as_json", is_flag=True, help="The schedule as JSON.")
def schedule_show(tenant: str, flow: str, as_json: bool) -> None:
    """FLOW's next 10 occurrences (UTC and the tenant's zone) and its last 10 runs."""
    from . import operations
    from .operations import lateness_of

    view = operations.schedule_show(_app(), tenant, flow, now=_now())
    if as_json:
        _json(view.to_json())
        return
    click.echo(f"flow {flow} of tenant {tenant}: cron {view.cron!r} in {view.timezone}")
    click.echo(
        f"nextRunUtc {_time(view.next_run_utc) or '(not set)'}; jitter {view.jitter_seconds} s; "
        f"enabled {_yes(view.enabled)}; tenant paused {_yes(view.paused)}"
    )
    if view.note:
        click.echo(view.note)
    click.echo("")
    click.echo("next occurrences")
    if view.upcoming:
        _table(
            ["UTC", view.timezone, "due (with jitter)"],
            [[_time(o.scheduled_for), o.local.isoformat(), _time(o.due)] for o in view.upcoming],
        )
    else:
        click.echo("none (the schedule ends: see endAt)")
    click.echo("")
    click.echo("last runs")
    if view.recent:
        _table(
            ["scheduled", "started", "late", "status", "instance id"],
            [
                [
                    _time(r.scheduled_for),
                    _time(r.started_at),
                    _seconds(lateness_of(r)),
                    r.status,
                    r.instance_id,
                ]
                for r in view.recent
            ],
        )
    else:
        click.echo("no runs yet")


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


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="The jobs as JSON.")
def queue_list(as_json: bool) -> None:
    """Jobs on flow-jobs: due now, waiting for their time (look-ahead) or deferred (why)."""
    from . import operations

    app = _app()
    items = operations.queue_list(app)
    if as_json:
        _json([i.to_json() for i in items])
        return
    depth = operations.queue_depth(app)
    if not items:
        click.echo(
            "no jobs waiting on flow-jobs"
            if depth == 0
            else f"{depth} message(s) on flow-jobs, none visible to a peek (hidden until due)"
        )
    else:
        _table(
            ["id", "state", "tenant", "flow", "scheduledFor", "visible at", "dequeues", "note"],
            [
                [
                    i.id,
                    i.state if i.rerun is None else f"{i.state} (rerun {i.rerun})",
                    i.tenant_id or "",
                    i.flow_name or "",
                    _time(i.scheduled_for),
                    _time(i.visible_at),
                    i.dequeue_count,
                    _short(i.note, 60),
                ]
                for i in items
            ],
        )
        if depth > len(items):
            click.echo(
                f"listed {len(items)} of {depth} messages: a Storage-queue peek sees at most "
                "32 visible ones"
            )


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
@click.option("--json", "as_json", is_flag=True, help='{"id", "newId"} as JSON.')
def poison_replay(message_id: str, as_json: bool) -> None:
    """Move poison message ID back to flow-jobs."""
    from . import operations

    new_id = operations.poison_replay(_app(), message_id)
    if as_json:
        _json({"id": message_id, "newId": new_id})
        return
    click.echo(f"replayed {message_id} to flow-jobs as {new_id}")


@poison.command("delete")
@click.argument("message_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The deleted message, as JSON.")
def poison_delete(message_id: str, as_json: bool) -> None:
    """Drop poison message ID for good."""
    from . import operations

    item = operations.poison_delete(_app(), message_id)
    if as_json:
        _json(_poison_json(item))
        return
    click.echo(f"deleted poison message {message_id}")


# -- console -------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="TCP port."
)
def console(port: int) -> None:
    """The web console on 127.0.0.1 (read-only unless DATASYNC_CONSOLE_ACTIONS=true)."""
    import importlib

    try:
        serve = importlib.import_module("datasync.console").serve
    except (ImportError, AttributeError) as err:
        _fail(f"the console is not available: {err}")
    from .logs import configure_logging

    configure_logging()  # the console logs its URL (and a generated token) at start
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is meant to stop
        serve(_app(), host="127.0.0.1", port=port)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="datasync")
