"""``FlowContext``: what a flow step gets as ``ctx``.

- ``ctx.http`` is one ``httpx.Client`` per process (thread-safe, connection pooling,
  retries from :mod:`datasync.http`), created on first use: :func:`shared_http`.
- ``ctx.ahttp`` is an ``httpx.AsyncClient`` for the event loop the step runs on (an
  ``AsyncClient`` is bound to its loop; :func:`datasync.registry.call_step` keeps one loop
  per thread, so in practice this is one client per worker thread).
- ``ctx.secret(system, key)`` reads the :class:`~datasync.ports.SecretStore` through a
  :class:`SecretCache` (a page loop must not hit Key Vault per record) and registers every
  value with :mod:`datasync.redact`, so it is masked in logs and error texts.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

from .registry import on_loop_close, thread_loop

if TYPE_CHECKING:
    import httpx

    from .ports import SecretStore

__all__ = ["FlowContext", "SecretCache", "shared_http", "async_http", "close_shared_clients"]

# datasync.http / datasync.redact are imported on first use: httpx is slow to import and
# ``import datasync`` (which imports this module) must stay light.


class SecretCache:
    """A small thread-safe TTL cache of secret values keyed by (tenant, system, key).

    Only found values are cached (a missing secret is asked again next time). When full,
    expired entries go first, then the oldest.
    """

    def __init__(self, ttl: float = 60.0, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple[str, str, str], tuple[float, str]] = OrderedDict()

    def get(self, key: tuple[str, str, str], load: Callable[[], str]) -> str:
        """The cached value for ``key``, or ``load()`` (outside the lock) cached for ``ttl``."""
        now = self._clock()
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = load()
        if self.ttl > 0 and self.max_entries > 0:
            with self._lock:
                self._data.pop(key, None)
                self._data[key] = (self._clock() + self.ttl, value)
                if len(self._data) > self.max_entries:
                    self._evict(now)
        return value

    def _evict(self, now: float) -> None:
        for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
            del self._data[k]
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def invalidate(self, tenant: str | None = None) -> None:
        """Forget every entry, or a tenant's entries (e.g. after ``secrets set``)."""
        with self._lock:
            if tenant is None:
                self._data.clear()
            else:
                for k in [k for k in self._data if k[0] == tenant]:
                    del self._data[k]

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __repr__(self) -> str:           # keys only: never the values
        return f"SecretCache(entries={len(self)}, ttl={self.ttl})"


# -- shared HTTP clients ---------------------------------------------------------------

_http_lock = threading.Lock()
_http: httpx.Client | None = None
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = \
    weakref.WeakKeyDictionary()


def shared_http() -> httpx.Client:
    """The process-wide ``httpx.Client`` (retries per ``RetryPolicy.from_env()``)."""
    global _http
    with _http_lock:
        if _http is None or _http.is_closed:
            from .http import RetryPolicy, make_client
            _http = make_client(RetryPolicy.from_env())
        return _http


def async_http(loop: asyncio.AbstractEventLoop | None = None) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` for ``loop`` (default: the running loop, else this thread's
    step loop), created on first use."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = thread_loop()
    with _http_lock:
        client = _async_clients.get(loop)
        if client is None or client.is_closed:
            from .http import RetryPolicy, make_async_client
            client = make_async_client(RetryPolicy.from_env())
            _async_clients[loop] = client
            on_loop_close(loop, client.aclose)
        return client


def close_shared_clients() -> None:
    """Close the shared clients (async ones whose loop is idle; the rest are dropped)."""
    global _http
    with _http_lock:
        client, _http = _http, None
        pending = list(_async_clients.items())
        _async_clients.clear()
    if client is not None:
        client.close()
    for loop, aclient in pending:
        if not loop.is_closed() and not loop.is_running():
            try:
                loop.run_until_complete(aclient.aclose())
            except Exception:  # noqa: BLE001 — best effort at shutdown
                pass


# -- the context -----------------------------------------------------------------------

class FlowContext:
    """``ctx`` of a flow step. See DESIGN.md "Flow API"."""

    __slots__ = ("tenant_id", "flow_name", "run_id", "page_key", "config", "state",
                 "_secrets", "_cache", "_log")

    def __init__(self, *, tenant_id: str, flow_name: str, run_id: str, page_key: str = "",
                 config: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
                 secrets: SecretStore, cache: SecretCache | None = None) -> None:
        self.tenant_id = tenant_id
        self.flow_name = flow_name
        self.run_id = run_id
        self.page_key = page_key
        self.config: dict[str, Any] = config if config is not None else {}
        self.state: dict[str, Any] = state if state is not None else {}
        self._secrets = secrets
        self._cache = cache if cache is not None else SecretCache()
        self._log: logging.LoggerAdapter | None = None

    def secret(self, system: str, key: str) -> str:
        """The tenant's secret ``system``/``key`` (``SecretNotFound`` when missing)."""
        from .redact import register_secret
        tenant = self.tenant_id
        value = self._cache.get((tenant, system, key),
                                lambda: self._secrets.get(tenant, system, key))
        register_secret(value)
        return value

    @property
    def http(self) -> httpx.Client:
        return shared_http()

    @property
    def ahttp(self) -> httpx.AsyncClient:
        return async_http()

    @property
    def log(self) -> logging.LoggerAdapter:
        """``datasync.flow.<name>`` with tenant/flow/run in ``extra``; secrets are masked."""
        if self._log is None:
            from .redact import RedactingLoggerAdapter
            self._log = RedactingLoggerAdapter(
                logging.getLogger(f"datasync.flow.{self.flow_name}"),
                {"tenant_id": self.tenant_id, "flow_name": self.flow_name,
                 "run_id": self.run_id})
        return self._log

    def __repr__(self) -> str:           # no config, state or secrets: they may hold values
        return (f"FlowContext(tenant_id={self.tenant_id!r}, flow_name={self.flow_name!r}, "
                f"run_id={self.run_id!r})")
