"""``ctx.http`` / ``ctx.ahttp``: httpx clients with timeouts and retries.

Retries live in a transport (:class:`RetryTransport`, :class:`AsyncRetryTransport`) wrapped
around httpx's own, so every request of the client gets them:

- retried: transport errors (connect errors and timeouts, read timeouts, connection resets /
  remote protocol errors, read and write errors) and the statuses in
  ``RetryPolicy.retry_statuses`` (408, 429, 500, 502, 503, 504);
- the wait is the response's ``Retry-After`` (delta-seconds or HTTP-date) when given, else
  exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**attempt))``;
- after the last attempt a retryable response is returned as is (``raise_for_status()``
  then raises the usual ``httpx.HTTPStatusError``) and a transport error is re-raised;
- budget: each request's retries stop once ``budget`` seconds have passed since its first
  attempt. A wait that would end past the budget is not slept: the last response is
  returned (or the last error raised) at once. An attempt already in flight may still run
  up to its ``timeout``. Since a step's calls run one after another, this bounds a step's
  time spent on one failing call; it is per request, not a shared counter for the step.

The policy comes from :class:`~datasync.config.Settings` (``DATASYNC_HTTP_ATTEMPTS``,
``DATASYNC_HTTP_BUDGET``, ``DATASYNC_HTTP_TIMEOUT``, ``DATASYNC_HTTP_BACKOFF_BASE``); the
app's :class:`HttpClients` owns the clients built from it and closes them.

Retries are logged at INFO on ``datasync.http`` with method, URL without query string or
credentials (query strings can carry tokens), status or error class, attempt and wait.
Headers are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .context import RunLog
from .exceptions import ConfigError
from .redact import redact

__all__ = [
    "RETRYABLE_ERRORS",
    "AsyncRetryTransport",
    "HttpClients",
    "RetryPolicy",
    "RetryTransport",
    "make_async_client",
    "make_client",
    "parse_retry_after",
]

log = RunLog(logging.getLogger("datasync.http"))
"""Retry lines name the tenant and run of the step that sent the request (``[t/run]``)."""

#: Transport errors worth another attempt (``PoolTimeout`` included: the pool may free up).
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

_DEFAULT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0
)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How ``ctx.http`` retries. ``attempts`` counts the first try too."""

    attempts: int = 5
    timeout: float = 30.0
    budget: float = 300.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_statuses: frozenset[int] = field(
        default_factory=lambda: frozenset({408, 429, 500, 502, 503, 504})
    )

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("http attempts must be at least 1")
        if self.timeout <= 0 or self.budget < 0 or self.backoff_base < 0 or self.backoff_cap < 0:
            raise ConfigError("http timeout must be > 0; budget and backoff must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Full-jitter wait after failed attempt number ``attempt`` (1-based)."""
        return random.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2**attempt))


_DELTA = re.compile(r"\d+(\.\d+)?")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait per a ``Retry-After`` value (delta-seconds or HTTP-date), ≥ 0.

    ``None`` when absent or unparseable. A date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover — older Pythons returned None
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def _safe_url(url: httpx.URL) -> str:
    """``scheme://host[:port]/path``: no credentials, query or fragment."""
    port = f":{url.port}" if url.port is not None else ""
    return redact(f"{url.scheme}://{url.host}{port}{url.path}")


class _Retrier:
    """The decision logic shared by the sync and async transports."""

    def __init__(self, policy: RetryPolicy | None, clock: Callable[[], float]) -> None:
        self.policy = policy or RetryPolicy()
        self.clock = clock

    def wait_for(
        self,
        request: httpx.Request,
        attempt: int,
        started: float,
        response: httpx.Response | None,
        error: Exception | None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop now."""
        policy = self.policy
        if response is not None and response.status_code not in policy.retry_statuses:
            return None
        if attempt >= policy.attempts:
            return None
        wait = None
        if response is not None:
            wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is None:
            wait = policy.backoff(attempt)
        remaining = policy.budget - (self.clock() - started)
        what = str(response.status_code) if response is not None else type(error).__name__
        if wait > remaining:
            log.info(
                "not retrying %s %s after %s (attempt %d/%d): wait %.2fs exceeds the "
                "remaining budget %.2fs",
                request.method,
                _safe_url(request.url),
                what,
                attempt,
                policy.attempts,
                wait,
                max(remaining, 0.0),
            )
            return None
        log.info(
            "retrying %s %s after %s (attempt %d/%d), waiting %.2fs",
            request.method,
            _safe_url(request.url),
            what,
            attempt,
            policy.attempts,
            wait,
        )
        return wait


class RetryTransport(httpx.BaseTransport):
    """Retries requests sent through ``transport`` per ``policy`` (see module doc)."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport or httpx.HTTPTransport(limits=_DEFAULT_LIMITS)
        self._retrier = _Retrier(policy, clock)
        self._sleep = sleep

    @property
    def policy(self) -> RetryPolicy:
        return self._retrier.policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # a body must be re-sendable
        started = self._retrier.clock()
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            try:
                response = self.transport.handle_request(request)
            except RETRYABLE_ERRORS as exc:
                wait = self._retrier.wait_for(request, attempt, started, None, exc)
                if wait is None:
                    raise
            else:
                wait = self._retrier.wait_for(request, attempt, started, response, None)
                if wait is None:
                    return response
                response.close()
            self._sleep(wait)

    def close(self) -> None:
        self.transport.close()


class AsyncRetryTransport(httpx.AsyncBaseTransport):
    """The ``async`` twin of :class:`RetryTransport`."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport or httpx.AsyncHTTPTransport(limits=_DEFAULT_LIMITS)
        self._retrier = _Retrier(policy, clock)
        self._sleep = sleep

    @property
    def policy(self) -> RetryPolicy:
        return self._retrier.policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        started = self._retrier.clock()
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            try:
                response = await self.transport.handle_async_request(request)
            except RETRYABLE_ERRORS as exc:
                wait = self._retrier.wait_for(request, attempt, started, None, exc)
                if wait is None:
                    raise
            else:
                wait = self._retrier.wait_for(request, attempt, started, response, None)
                if wait is None:
                    return response
                await response.aclose()
            await self._sleep(wait)

    async def aclose(self) -> None:
        await self.transport.aclose()


def _user_agent() -> str:
    from . import __version__

    return f"datasync/{__version__}"


def _env_proxies() -> dict[str, str | None]:
    """``HTTP(S)_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` as httpx mount patterns.

    httpx ignores them once a custom transport is given, so they are mounted here.
    """
    try:
        from httpx._utils import get_environment_proxies
    except ImportError:  # pragma: no cover — private helper moved
        return {}
    return dict(get_environment_proxies())


def _proxy_mounts(retrying: Callable[[Any], Any], transport: object) -> dict[str, Any]:
    """Environment proxies as httpx mounts, each wrapped by ``retrying(proxy)``.

    Empty when the caller supplied its own transport (tests): proxies are not honoured then."""
    if transport is not None:
        return {}
    return {
        pattern: None if proxy is None else retrying(proxy)
        for pattern, proxy in _env_proxies().items()
    }


def make_client(
    policy: RetryPolicy | None = None, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """A sync client retrying per ``policy`` (default: ``RetryPolicy()``).

    ``transport`` replaces the network transport *under* the retry layer (tests pass an
    ``httpx.MockTransport``); environment proxies are only honoured without it.
    """
    policy = policy or RetryPolicy()
    mounts = _proxy_mounts(
        lambda proxy: RetryTransport(
            httpx.HTTPTransport(proxy=proxy, limits=_DEFAULT_LIMITS), policy=policy
        ),
        transport,
    )
    return httpx.Client(
        transport=RetryTransport(transport, policy=policy),
        mounts=mounts or None,
        timeout=httpx.Timeout(policy.timeout),
        follow_redirects=False,
        headers={"User-Agent": _user_agent()},
    )


def make_async_client(
    policy: RetryPolicy | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An async client retrying per ``policy``; see :func:`make_client`."""
    policy = policy or RetryPolicy()
    mounts = _proxy_mounts(
        lambda proxy: AsyncRetryTransport(
            httpx.AsyncHTTPTransport(proxy=proxy, limits=_DEFAULT_LIMITS), policy=policy
        ),
        transport,
    )
    return httpx.AsyncClient(
        transport=AsyncRetryTransport(transport, policy=policy),
        mounts=mounts or None,
        timeout=httpx.Timeout(policy.timeout),
        follow_redirects=False,
        headers={"User-Agent": _user_agent()},
    )


class HttpClients:
    """The clients behind ``ctx.http`` and ``ctx.ahttp``, owned by one app and closed by it.

    One ``httpx.Client`` (thread-safe, pooled) created on first use, and one
    ``httpx.AsyncClient`` per event loop (an async client is bound to its loop; steps run
    on one loop per worker thread, see :func:`datasync.registry.call_step`)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def sync(self) -> httpx.Client:
        with self._lock:
            if self._sync is None or self._sync.is_closed:
                self._sync = make_client(self.policy)
            return self._sync

    def for_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> httpx.AsyncClient:
        """The async client of ``loop`` (default: the running loop, else this thread's
        step loop), created on first use and closed with the loop or by :meth:`close`."""
        from .registry import on_loop_close, thread_loop

        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = thread_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None or client.is_closed:
                client = make_async_client(self.policy)
                self._async[loop] = client
                on_loop_close(loop, client.aclose)
            return client

    def close(self) -> None:
        """Close the sync client, and each async client whose loop is idle (the others are
        closed by their loop's finalizer)."""
        with self._lock:
            client, self._sync = self._sync, None
            pending = list(self._async.items())
            self._async.clear()
        if client is not None:
            client.close()
        for loop, aclient in pending:
            if not loop.is_closed() and not loop.is_running():
                try:
                    loop.run_until_complete(aclient.aclose())
                except Exception:  # best effort at shutdown
                    log.debug("closing an async http client failed", exc_info=True)
