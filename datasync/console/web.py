"""The console's ASGI app (Starlette): routes, rendering, sign-in, confirmation and actions.

Every handler is a plain function (Starlette runs it in its thread pool: the ports are
synchronous). Links are built from the request's ``root_path``, so the same app serves
``/`` on loopback and ``/api/console/`` as an HTTP-triggered function.
"""

from __future__ import annotations

import logging
import secrets as _secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import operations
from ..exceptions import DataSyncError, NotFound, ValidationError
from ..models import RUN_STATUSES
from ..names import utcnow
from ..redact import redact
from . import auth, charts, data
from .actions import ACTIONS, params_for, perform

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings

__all__ = ["create_app"]

log = logging.getLogger("datasync.console")

HERE = Path(__file__).parent
PAGE_SIZE = 50
PAGES_PER_VIEW = 100
MAX_FORM = 16_384
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


def _finalize(value: Any) -> Any:
    """Every value a template prints passes through the secret masker (defence in depth:
    the stores already mask what they keep)."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return Markup(redact(str(value)))
    if isinstance(value, str):
        return redact(value)
    return value


class Console:
    """The state behind the ASGI app: the DataSync app, settings, templates, the token."""

    def __init__(
        self,
        app: App | Callable[[], App],
        settings: Settings | None,
        last_tick: Callable[[], datetime | None] | None = None,
    ) -> None:
        self._app = app
        self._settings = settings
        self._last_tick = last_tick
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            finalize=_finalize,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["ago"] = _ago
        self.env.filters["secs"] = _secs
        self.env.globals["STATUS_COLOURS"] = charts.STATUS_COLOURS
        self._token: str | None = None

    @property
    def app(self) -> App:
        return self._app if not callable(self._app) else self._app()

    @property
    def settings(self) -> Settings:
        return self._settings or self.app.settings

    @property
    def token(self) -> str:
        """The local console token: the setting, else one generated for this process."""
        configured = self.settings.console_token
        if configured:
            return configured
        if self._token is None:
            self._token = _secrets.token_urlsafe(18)
        return self._token

    def last_tick(self) -> datetime | None:
        """When the scheduler last ticked: the runtime's own hook, else this process's
        telemetry heartbeat; None when unknown."""
        if self._last_tick is not None:
            value = self._last_tick()
            if value is not None:
                return value
        return data.last_tick(self.app)

    # -- who -----------------------------------------------------------------------------
    def viewer(self, request: Request) -> auth.Viewer | None:
        """None: not signed in (on Azure, no principal)."""
        actions = self.settings.console_actions
        if self.settings.on_azure:
            return auth.principal_viewer(request.headers.get(auth.PRINCIPAL_HEADER), actions)
        return auth.local_viewer(self.token, request.cookies.get(auth.TOKEN_COOKIE), actions)

    # -- rendering -----------------------------------------------------------------------
    def render(
        self,
        request: Request,
        template: str,
        status_code: int = 200,
        refresh: int | None = None,
        **context: Any,
    ) -> HTMLResponse:
        csrf = request.cookies.get(auth.CSRF_COOKIE) or auth.new_csrf()
        root = request.scope.get("root_path", "")
        viewer = context.pop("viewer", None) or self.viewer(request)
        html = self.env.get_template(template).render(
            root=root,
            viewer=viewer,
            csrf=csrf,
            refresh=refresh,
            path=request.url.path,
            query=str(request.url.query),
            on_azure=self.settings.on_azure,
            actions_on=self.settings.console_actions,
            link=lambda path, **q: _link(root, path, q),
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if auth.CSRF_COOKIE not in request.cookies:
            response.set_cookie(
                auth.CSRF_COOKIE,
                csrf,
                httponly=True,
                samesite="strict",
                path=root or "/",
                secure=self.settings.on_azure,
            )
        return response

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status_code=status, message=message)


def _link(root: str, path: str, query: dict[str, Any]) -> str:
    q = {k: v for k, v in query.items() if v not in (None, "")}
    return root + path + ("?" + urlencode(q) if q else "")


def _ago(value: datetime | str | None, now: datetime | None = None) -> str:
    """``3 min ago`` / ``in 2 h`` for a time (or ``...Z`` text)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    delta = ((now or datetime.now(UTC)) - value).total_seconds()
    text = _secs(abs(delta))
    return f"{text} ago" if delta >= 0 else f"in {text}"


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    value = float(value)
    if abs(value) < 1:
        return f"{value * 1000:.0f} ms"
    if abs(value) < 120:
        return f"{value:.1f} s"
    if abs(value) < 7200:
        return f"{value / 60:.0f} min"
    if abs(value) < 172_800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def _time_param(request: Request, name: str) -> datetime | None:
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{name}: not a date/time: {raw[:40]!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- the app -----------------------------------------------------------------------------
def create_app(
    app: App | Callable[[], App],
    *,
    settings: Settings | None = None,
    last_tick: Callable[[], datetime | None] | None = None,
) -> Starlette:
    """The console over ``app`` (an App, or a zero-argument function returning it).

    ``settings`` overrides ``app.settings`` for the console; ``last_tick`` tells when the
    scheduler last ticked (the embedded runtime passes its own)."""
    console = Console(app, settings, last_tick)

    def page(
        fn: Callable[[Request, auth.Viewer], Response],
    ) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            if not console.settings.on_azure and not _loopback_host(request):
                return console.error(request, 403, "this console answers on loopback only")
            if console.settings.on_azure and not console.settings.app_service_auth:
                return HTMLResponse(
                    "<!doctype html><title>401</title><p>App Service authentication is not "
                    "enabled for this Function App (WEBSITE_AUTH_ENABLED), so the console "
                    "cannot trust who is asking: turn it on to use the console.</p>",
                    status_code=401,
                    headers=SECURITY_HEADERS,
                )
            viewer = console.viewer(request)
            if viewer is None:
                return HTMLResponse(
                    "<!doctype html><title>401</title><p>Sign in through App Service "
                    "authentication to use the DataSync console.</p>",
                    status_code=401,
                    headers=SECURITY_HEADERS,
                )
            if not viewer.can_view:
                return console.error(request, 403, viewer.why_not or "not allowed")
            try:
                response = fn(request, viewer)
            except NotFound as exc:
                response = console.error(request, 404, str(exc))
            except ValidationError as exc:
                response = console.error(request, 400, str(exc))
            except DataSyncError as exc:
                response = console.error(request, 503, str(exc))
            except Exception as exc:  # noqa: BLE001 - the page fails, never the console
                log.error("console page %s failed: %s", request.url.path, redact(repr(exc)))
                response = console.error(request, 500, "this page failed; see the log")
            response.headers.update(SECURITY_HEADERS)
            return response

        return endpoint

    def overview(request: Request, viewer: auth.Viewer) -> Response:
        o = data.overview(console.app, last_tick=console.last_tick())
        chart = charts.status_chart(o.buckets, o.counts, o.statuses)
        return console.render(request, "overview.html", refresh=15, o=o, chart=chart)

    def freshness(request: Request, viewer: auth.Viewer) -> Response:
        tenant = request.query_params.get("tenant") or None
        rows, cut = data.board(console.app, utcnow(), tenant=tenant, limit=500)
        state = request.query_params.get("state") or None
        if state:
            rows = [r for r in rows if r.state == state]
        return console.render(
            request,
            "freshness.html",
            refresh=30,
            rows=rows,
            cut=cut,
            tenant=tenant,
            state=state,
            states=data.FRESHNESS_STATES,
        )

    def runs(request: Request, viewer: auth.Viewer) -> Response:
        q = request.query_params
        status = q.get("status") or None
        if status and status not in RUN_STATUSES:
            raise ValidationError(f"status must be one of {', '.join(RUN_STATUSES)}")
        filters: dict[str, Any] = {
            "tenant": q.get("tenant") or None,
            "flow": q.get("flow") or None,
            "status": status,
            "since": _time_param(request, "since"),
            "until": _time_param(request, "until"),
        }
        before = q.get("before") or None
        rows = console.app.runs.query(**filters, before=before, limit=PAGE_SIZE + 1)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        total = console.app.runs.count(**filters)
        from ..records import run_token

        shown = {k: v for k in ("tenant", "flow", "status", "since", "until") if (v := q.get(k))}
        older = (
            _link(
                request.scope.get("root_path", ""),
                "/runs",
                {**shown, "before": run_token(rows[-1])},
            )
            if more and rows
            else None
        )
        return console.render(
            request,
            "runs.html",
            refresh=None if before else 15,
            rows=rows,
            total=total,
            f=shown,
            older=older,
            paged=bool(before),
            statuses=RUN_STATUSES,
            last_tick=console.last_tick(),
        )

    def run_page(request: Request, viewer: auth.Viewer) -> Response:
        instance_id = request.path_params["instance_id"]
        try:
            after = max(int(request.query_params.get("after") or 0), 0)
        except ValueError:
            raise ValidationError("after must be a page number") from None
        detail = operations.run_detail(console.app, instance_id, after=after, limit=PAGES_PER_VIEW)
        timeline = charts.page_timeline(detail.pages)
        active = detail.run.status in ("Pending", "Running")
        return console.render(
            request,
            "run.html",
            refresh=5 if active and not after else None,
            d=detail,
            r=detail.run,
            timeline=timeline,
            lateness=operations.lateness_of(detail.run),
            duration=operations.duration_of(detail.run),
            rerun_of=operations.rerun_of(detail.run),
            next_after=detail.pages[-1].page if detail.more and detail.pages else None,
            prev_after=max(after - PAGES_PER_VIEW, 0) if after else None,
        )

    def tenants(request: Request, viewer: auth.Viewer) -> Response:
        rows = []
        for i, t in enumerate(console.app.tenants.iter_tenants()):
            if i >= 500:
                break
            rows.append(t)
        return console.render(request, "tenants.html", rows=rows, cut=len(rows) >= 500)

    def tenant_page(request: Request, viewer: auth.Viewer) -> Response:
        tid = request.path_params["tenant"]
        tenant = console.app.tenants.get(tid)
        now = utcnow()
        fresh = {f.flow_name: f for f in data.board(console.app, now, tenant=tid)[0]}
        return console.render(
            request,
            "tenant.html",
            refresh=30,
            t=tenant,
            fresh=fresh,
            next_runs=operations.next_runs(tenant, now),
            recent=console.app.runs.query(tenant=tid, limit=20),
            audit=console.app.runs.audit_log(tenant=tid, limit=20),
        )

    def schedule_page(request: Request, viewer: auth.Viewer) -> Response:
        tid, flow = request.path_params["tenant"], request.path_params["flow"]
        view = operations.schedule_show(console.app, tid, flow)
        tenant = console.app.tenants.get(tid)
        return console.render(
            request,
            "schedule.html",
            refresh=30,
            s=view,
            fresh=data.freshness(console.app, tenant, tenant.flow(flow), utcnow()),
            lateness_of=operations.lateness_of,
            audit=console.app.runs.audit_log(tenant=tid, flow=flow, limit=20),
        )

    def queue(request: Request, viewer: auth.Viewer) -> Response:
        jobs = operations.queue_list(console.app)
        return console.render(request, "queue.html", refresh=10, jobs=jobs[:500], total=len(jobs))

    def poison(request: Request, viewer: auth.Viewer) -> Response:
        items = operations.poison_list(console.app)
        return console.render(
            request, "poison.html", refresh=30, items=items[:500], total=len(items)
        )

    def confirm(request: Request, viewer: auth.Viewer) -> Response:
        action = ACTIONS.get(request.path_params["action"])
        if action is None:
            raise NotFound(f"no action {request.path_params['action']!r}")
        params = params_for(action, request.query_params)
        if not viewer.can_act:
            return console.error(request, 403, f"{action.title} refused: {viewer.why_not}")
        return console.render(
            request,
            "confirm.html",
            action=action,
            params=params,
            description=action.describe(params),
            back=_back(params),
        )

    async def act(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            form = await _form(request)
        except ValidationError as exc:
            return console.error(request, 400, str(exc))
        return await run_in_threadpool(_act, request, form)

    def _act(request: Request, form: dict[str, str]) -> Response:
        def inner(request: Request, viewer: auth.Viewer) -> Response:
            action = ACTIONS.get(request.path_params["action"])
            if action is None:
                raise NotFound(f"no action {request.path_params['action']!r}")
            if not viewer.can_act:
                return console.error(request, 403, f"{action.title} refused: {viewer.why_not}")
            if not auth.check_csrf(request.cookies.get(auth.CSRF_COOKIE), form.get("csrf")):
                return console.error(request, 403, "the form expired; open the page again")
            params = params_for(action, form)
            message = perform(console.app, action, params, viewer.actor)
            log.info("console: %s by %s: %s", action.name, viewer.actor, message)
            return console.render(
                request, "done.html", action=action, message=message, params=params
            )

        return page(inner)(request)

    def login_form(request: Request, viewer: auth.Viewer) -> Response:
        if console.settings.on_azure:
            return console.error(request, 404, "sign-in is done by App Service authentication")
        return console.render(
            request, "login.html", failed=False, next=_safe_next(request.query_params.get("next"))
        )

    async def login(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            form = await _form(request)
        except ValidationError as exc:
            return console.error(request, 400, str(exc))
        return await run_in_threadpool(_login, request, form)

    def _login(request: Request, form: dict[str, str]) -> Response:
        def inner(request: Request, viewer: auth.Viewer) -> Response:
            if console.settings.on_azure:
                return console.error(request, 404, "sign-in is done by App Service authentication")
            if not auth.check_csrf(request.cookies.get(auth.CSRF_COOKIE), form.get("csrf")):
                return console.error(request, 403, "the form expired; open the page again")
            import hmac

            given = form.get("token", "")
            if not hmac.compare_digest(given.encode(), console.token.encode()):
                return console.render(
                    request,
                    "login.html",
                    status_code=403,
                    failed=True,
                    next=_safe_next(form.get("next")),
                )
            root = request.scope.get("root_path", "")
            response = RedirectResponse(root + _safe_next(form.get("next")), status_code=303)
            response.set_cookie(
                auth.TOKEN_COOKIE,
                auth.token_digest(console.token),
                httponly=True,
                samesite="strict",
                path=root or "/",
            )
            return response

        return page(inner)(request)

    def logout(request: Request, viewer: auth.Viewer) -> Response:
        root = request.scope.get("root_path", "")
        response = RedirectResponse(root + "/", status_code=303)
        response.delete_cookie(auth.TOKEN_COOKIE, path=root or "/")
        return response

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("console.js", "console.css"):
            return Response("not found", status_code=404)
        return FileResponse(HERE / "static" / name, headers={"cache-control": "max-age=300"})

    routes = [
        Route("/", page(overview)),
        Route("/freshness", page(freshness)),
        Route("/runs", page(runs)),
        Route("/runs/{instance_id}", page(run_page)),
        Route("/tenants", page(tenants)),
        Route("/tenants/{tenant}", page(tenant_page)),
        Route("/tenants/{tenant}/flows/{flow}", page(schedule_page)),
        Route("/queue", page(queue)),
        Route("/poison", page(poison)),
        Route("/confirm/{action}", page(confirm)),
        Route("/act/{action}", act, methods=["POST"]),
        Route("/login", page(login_form)),
        Route("/login", login, methods=["POST"]),
        Route("/logout", page(logout), methods=["POST"]),
        Route("/static/{name}", static),
    ]
    asgi = Starlette(routes=routes)
    asgi.state.console = console
    return asgi


def _back(params: dict[str, str]) -> str:
    """Where an action's cancel link goes: the page it was started from."""
    if params.get("id", "").startswith("Workflow-"):
        return "/runs/" + params["id"]
    if "id" in params:
        return "/poison"
    if "tenant" in params:
        return "/tenants/" + params["tenant"]
    return "/"


def _safe_next(value: str | None) -> str:
    """A path inside the console to go back to (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value[:500]


def _loopback_host(request: Request) -> bool:
    """The Host header names a loopback address (a DNS-rebinding page cannot read this)."""
    host = (request.headers.get("host") or "").lower()
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in LOOPBACK_HOSTS


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise ValidationError("form too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return dict(parse_qsl(text, keep_blank_values=True))
