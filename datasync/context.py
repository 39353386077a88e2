"""``FlowContext``: what a flow step gets as ``ctx``.

- ``ctx.http`` / ``ctx.ahttp`` are the app's clients (:class:`datasync.http.HttpClients`):
  one ``httpx.Client`` with retries, and one ``httpx.AsyncClient`` per event loop.
- ``ctx.secret(system, key)`` reads the :class:`~datasync.ports.SecretStore` through a
  :class:`SecretCache` (a page loop must not hit Key Vault per record) and registers every
  value with :mod:`datasync.redact`, so it is masked in logs and error texts.
- :func:`run_scope` marks the code of one step (a context variable): every line logged
  through :class:`RunLog` (``ctx.log``, ``datasync.http``'s retries, ``datasync.steps``)
  then starts with ``[tenant/run]`` and carries the record attributes
  ``datasync_tenant``, ``datasync_run`` and ``datasync_flow`` (the JSON log format emits
  them as fields).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .redact import RedactingLoggerAdapter

if TYPE_CHECKING:
    import httpx

    from .http import HttpClients
    from .ports import SecretStore

__all__ = ["FlowConfig", "FlowContext", "RunLog", "RunScope", "SecretCache", "run_scope"]


# -- the run a line belongs to ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunScope:
    """The tenant, flow and run a step works for."""

    tenant_id: str
    flow_name: str
    run_id: str

    @property
    def prefix(self) -> str:
        return f"[{self.tenant_id}/{self.run_id}] "

    def extra(self) -> dict[str, str]:
        return {
            "datasync_tenant": self.tenant_id,
            "datasync_run": self.run_id,
            "datasync_flow": self.flow_name,
        }


_scope: ContextVar[RunScope | None] = ContextVar("datasync_run_scope", default=None)


@contextmanager
def run_scope(tenant_id: str, flow_name: str, run_id: str) -> Iterator[RunScope]:
    """Lines logged through :class:`RunLog` inside belong to this run."""
    scope = RunScope(tenant_id, flow_name, run_id)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current_scope() -> RunScope | None:
    return _scope.get()


class RunLog(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines name the current :func:`run_scope` (prefix and attributes);
    outside one, lines pass unchanged."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        scope = _scope.get()
        if scope is None:
            return msg, kwargs
        kwargs["extra"] = {**scope.extra(), **(kwargs.get("extra") or {})}
        return f"{scope.prefix}{msg}", kwargs


class SecretCache:
    """A small thread-safe TTL cache of secret values keyed by (tenant, system, key).

    Only found values are cached (a missing secret is asked again next time). When full,
    expired entries go first, then the oldest.
    """

    def __init__(
        self,
        ttl: float = 60.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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

    def __repr__(self) -> str:  # keys only: never the values
        return f"SecretCache(entries={len(self)}, ttl={self.ttl})"


# -- the context -----------------------------------------------------------------------


class FlowConfig(dict[str, Any]):
    """``ctx.config``: the flow entry's ``config``. A missing key raises
    :class:`~datasync.exceptions.MissingConfigKey` (a ``KeyError`` and a
    ``PermanentError``): the run fails at once with the key's name instead of retrying."""

    def __missing__(self, key: str) -> Any:
        from .exceptions import MissingConfigKey

        raise MissingConfigKey(f"flow config has no key {key!r}")


class FlowContext:
    """``ctx`` of a flow step. See DESIGN.md "Flow API"."""

    __slots__ = (
        "_cache",
        "_http",
        "_log",
        "_secrets",
        "config",
        "flow_name",
        "page_key",
        "run_id",
        "state",
        "tenant_id",
    )

    def __init__(
        self,
        *,
        tenant_id: str,
        flow_name: str,
        run_id: str,
        page_key: str = "",
        config: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        secrets: SecretStore,
        http: HttpClients,
        cache: SecretCache | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.flow_name = flow_name
        self.run_id = run_id
        self.page_key = page_key
        self.config: dict[str, Any] = config if config is not None else {}
        self.state: dict[str, Any] = state if state is not None else {}
        self._secrets = secrets
        self._cache = cache if cache is not None else SecretCache()
        self._http = http
        self._log: logging.LoggerAdapter[logging.Logger] | None = None

    def secret(self, system: str, key: str) -> str:
        """The tenant's secret ``system``/``key`` (``SecretNotFound`` when missing)."""
        from .redact import register_secret

        tenant = self.tenant_id
        value = self._cache.get(
            (tenant, system, key), lambda: self._secrets.get(tenant, system, key)
        )
        register_secret(value)
        return value

    @property
    def http(self) -> httpx.Client:
        return self._http.sync

    @property
    def ahttp(self) -> httpx.AsyncClient:
        return self._http.for_loop()

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """``datasync.flow.<name>``: lines start ``[tenant/run]``, carry tenant, flow and run
        in ``extra`` (also as ``datasync_tenant``/``datasync_run``/``datasync_flow``);
        secrets are masked."""
        if self._log is None:
            self._log = _FlowLog(
                logging.getLogger(f"datasync.flow.{self.flow_name}"),
                {
                    "tenant_id": self.tenant_id,
                    "flow_name": self.flow_name,
                    "run_id": self.run_id,
                    **RunScope(self.tenant_id, self.flow_name, self.run_id).extra(),
                },
            )
        return self._log

    def __repr__(self) -> str:  # no config, state or secrets: they may hold values
        return (
            f"FlowContext(tenant_id={self.tenant_id!r}, flow_name={self.flow_name!r}, "
            f"run_id={self.run_id!r})"
        )


class _FlowLog(RedactingLoggerAdapter):
    """``ctx.log``: the masking adapter, with the ``[tenant/run]`` prefix."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[{extra.get('tenant_id')}/{extra.get('run_id')}] {msg}", kwargs
