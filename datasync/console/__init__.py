"""The DataSync web console: one ASGI app (Starlette + Jinja2, SVG charts drawn on the server).

- :func:`create_app` — the ASGI app over an :class:`~datasync.app.App` (or a provider).
- :func:`serve` — serve it on loopback with uvicorn until stopped (``datasync console``).
- :func:`start_in_background` — the same on a daemon thread (``datasync run``); returns
  the function that stops it.

On Azure the same app is the HTTP-triggered function ``console`` (route
``console/{*path}``, see :mod:`datasync.functions.console`), behind App Service
authentication. Read-only unless ``DATASYNC_CONSOLE_ACTIONS=true``; see
:mod:`datasync.console.auth` for who may act.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError, ValidationError
from .web import create_app

if TYPE_CHECKING:
    from ..app import App

__all__ = [
    "BackgroundConsole",
    "PortInUse",
    "console_url",
    "create_app",
    "serve",
    "start_in_background",
]

log = logging.getLogger("datasync.console")

LastTick = Callable[[], datetime | None]
"""When the scheduler last ticked (aware UTC), or None when it has not yet."""

DEFAULT_PORT = 8765
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def console_url(host: str, port: int) -> str:
    """The address to open in a browser."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _check_host(app: App, host: str) -> None:
    if host not in LOOPBACK and not app.settings.on_azure:
        raise ValidationError(
            f"the console binds to loopback only (127.0.0.1, ::1 or localhost), not {host!r}: "
            "actions are guarded by a token, not by a sign-in; on Azure use the "
            "console function behind App Service authentication"
        )


def _announce(app: App, asgi: Any, url: str) -> None:
    console = asgi.state.console
    if not app.settings.console_actions:
        log.info(
            "web console at %s (read-only; DATASYNC_CONSOLE_ACTIONS=true enables actions)", url
        )
    elif app.settings.console_token:
        log.info("web console at %s (actions: sign in with DATASYNC_CONSOLE_TOKEN)", url)
    else:  # the generated token is shown once, here, so the operator can sign in
        log.info("web console at %s (actions: sign in with token %s)", url, console.token)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; PortInUse (a ConfigError) when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PortInUse(
            f"the console cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(another console or program has it? choose another port with --port)"
        ) from None
    return sock


class PortInUse(ConfigError):
    """The console's port cannot be bound."""


def _server(app: App, host: str, port: int, last_tick: LastTick | None) -> Any:
    import uvicorn

    _check_host(app, host)
    asgi = create_app(app, last_tick=last_tick)
    config = uvicorn.Config(
        asgi,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    return asgi, uvicorn.Server(config)


def serve(
    app: App,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    last_tick: LastTick | None = None,
) -> None:
    """Serve the console until Ctrl-C / SIGTERM (blocks). ``last_tick``: when the
    scheduler last ticked, for the overview (the runtime's own record of it).
    :class:`PortInUse` when the port is taken."""
    asgi, server = _server(app, host, port, last_tick)
    sock = _listen(host, port)
    _announce(app, asgi, console_url(host, sock.getsockname()[1]))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class BackgroundConsole:
    """A console served on a daemon thread; call it to stop it (idempotent)."""

    def __init__(self, server: Any, thread: threading.Thread, host: str, port: int) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return console_url(self.host, self.port)

    def __call__(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


def start_in_background(
    app: App,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    *,
    last_tick: LastTick | None = None,
) -> BackgroundConsole:
    """Start the console on a daemon thread; returns once it listens (port 0: any free
    port, see ``.port``). :class:`PortInUse` when the port is taken. ``last_tick``: as
    :func:`serve`."""
    asgi, server = _server(app, host, port, last_tick)
    sock = _listen(host, port)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - uvicorn raises SystemExit on a failed start
            failure.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=run, name="datasync-console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if failure or not thread.is_alive():
            raise OSError(f"the console did not start on {host}:{port}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise OSError(f"the console did not start on {host}:{port} within 10 s")
        time.sleep(0.02)
    handle = BackgroundConsole(server, thread, host, sock.getsockname()[1])
    _announce(app, asgi, handle.url)
    return handle
