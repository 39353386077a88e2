"""The web console as an HTTP-triggered function (route ``console/{*path}``).

The same ASGI app ``datasync console`` serves on loopback, through
``func.AsgiMiddleware(...).handle_async`` — not the catch-all ``AsgiFunctionApp``, which
needs ``routePrefix: ""`` and would take every route of the app. The auth level is
anonymous: App Service authentication guards it on Azure and hands the console the
signed-in principal (``X-MS-CLIENT-PRINCIPAL``); without one the console answers 401.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
import azure.functions as func

from .guard import guarded
from .provider import AppProvider

__all__ = ["CONSOLE_FUNCTION", "CONSOLE_ROUTE", "blueprint", "root_of"]

CONSOLE_FUNCTION = "console"
CONSOLE_ROUTE = "console/{*path}"


def root_of(url_path: str, sub_path: str) -> str:
    """The console's mount point in ``url_path`` (e.g. ``/api/console``), given the route's
    ``{*path}`` value: whatever the host's ``routePrefix`` is."""
    url_path = url_path.rstrip("/")
    sub = sub_path.strip("/")
    if sub and url_path.endswith("/" + sub):
        return url_path[: -len(sub) - 1]
    return url_path


def _rooted(asgi: Any, root: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            path = scope.get("path") or "/"
            scope = {**scope, "root_path": root, "path": root + "/" if path == root else path}
        await asgi(scope, receive, send)

    return app


def blueprint(provider: AppProvider) -> df.Blueprint:
    bp = df.Blueprint()
    built: list[Any] = []

    def asgi() -> Any:
        if not built:
            from ..console import create_app

            built.append(create_app(provider))
        return built[0]

    @bp.function_name(CONSOLE_FUNCTION)
    @bp.route(
        route=CONSOLE_ROUTE,
        methods=[func.HttpMethod.GET, func.HttpMethod.POST],
        auth_level=func.AuthLevel.ANONYMOUS,
    )
    @guarded
    async def console(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        from urllib.parse import unquote, urlparse

        root = root_of(unquote(urlparse(req.url).path), req.route_params.get("path") or "")
        middleware = func.AsgiMiddleware(_rooted(asgi(), root))  # type: ignore[no-untyped-call]
        response: func.HttpResponse = await middleware.handle_async(req, context)
        return response

    return bp
