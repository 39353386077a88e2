"""Loopback source and target HTTP APIs for the demo, the tests and the benchmarks.

One server (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, ``TCP_NODELAY``) serves
both APIs for every tenant under ``{base_url}/{tenant}``; so a flow's ``source_url`` and
``target_url`` are both ``DemoApis.tenant_url(tenant)`` (``source_url``/``target_url``
are aliases, kept separate so callers read naturally).

Source (a CRM)
  ``GET /{tenant}/contacts?after=<id or empty>&limit=N`` with ``Authorization: Bearer
  <source token>`` → ``{"items": [...], "next": <last id of the page, or the incoming
  cursor (None if empty) when the page is empty>, "more": bool}``, ids ascending
  (``"000123"``). With ``throttle_every=k`` every k-th source request (counted across
  tenants) answers ``429`` with ``Retry-After: <retry_after>``.
Target (an ERP)
  ``POST /{tenant}/batch`` with ``Authorization: Bearer <target token>``, an
  ``Idempotency-Key`` header (400 without) and ``{"records": [...]}`` (a bare list is
  accepted too); records are stored by ``id``. A repeated key answers ``200
  {"duplicate": true}`` and stores nothing. ``GET /{tenant}/records`` →
  ``{"count", "records", "batches", "duplicateKeys", "maxReceives"}`` (no auth: it is the
  inspection endpoint); ``GET /{tenant}/stats`` the same without ``records``.
  ``maxReceives`` is the highest number of accepted batches any one id arrived in:
  ``1`` proves exactly-once.
Admin (drive a server in another process)
  ``POST /_admin/tenants`` ``{"tenant", "sourceToken", "targetToken", "records"}`` (or a
  list of those); ``POST /_admin/{tenant}/add`` ``{"count": n}``.

Process mode (benchmarks)::

    python -m datasync.demo_apis --port 0 --tenant acme:srctoken:erptoken:1000 [--throttle-every 9]

prints one JSON line ``{"url": ..., "port": ..., "tenants": [...]}`` when ready and serves
until SIGINT/SIGTERM. Tokens must not contain ``:``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import signal
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .names import validate_tenant_id

__all__ = ["DemoApis", "main"]

MAX_LIMIT = 1000
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _record(i: int) -> dict[str, Any]:
    return {
        "id": f"{i:06d}",
        "name": f"  Name {i} ",
        "email": f"USER{i}@EXAMPLE.COM",
        "updated": (_EPOCH + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass
class _Tenant:
    source_token: str
    target_token: str
    source: list[dict[str, Any]] = field(default_factory=list)
    source_ids: list[int] = field(default_factory=list)  # ints of the ids, for bisect
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    receives: dict[str, int] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    batches: int = 0
    duplicate_keys: int = 0
    source_requests: int = 0
    throttled: int = 0

    def add(self, n: int) -> int:
        start = self.source_ids[-1] + 1 if self.source_ids else 1
        for i in range(start, start + n):
            self.source.append(_record(i))
            self.source_ids.append(i)
        return len(self.source)

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self.stored),
            "batches": self.batches,
            "duplicateKeys": self.duplicate_keys,
            "maxReceives": max(self.receives.values(), default=0),
            "sourceRecords": len(self.source),
            "sourceRequests": self.source_requests,
            "throttled": self.throttled,
        }


class _ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        self.status, self.message, self.headers = status, message, headers or {}
        super().__init__(message)


class _State:
    def __init__(self, throttle_every: int, retry_after: int) -> None:
        self.lock = threading.Lock()
        self.tenants: dict[str, _Tenant] = {}
        self.throttle_every = throttle_every
        self.retry_after = retry_after
        self.source_requests = 0

    def tenant(self, tid: str) -> _Tenant:
        t = self.tenants.get(tid)
        if t is None:
            raise _ApiError(404, f"unknown tenant {tid!r}")
        return t


def _bearer(headers: Any, token: str) -> None:
    if headers.get("Authorization", "") != f"Bearer {token}":
        raise _ApiError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120  # close idle keep-alive connections (httpx drops them after 5 s)
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ----------------------------------------------------------------------
    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise _ApiError(411, "send a Content-Length")
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _json_body(self, raw: bytes) -> Any:
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise _ApiError(400, "body is not JSON") from None

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        try:
            raw = self._body()
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = parse_qs(url.query, keep_blank_values=True)
            status, body, headers = self._route(method, parts, query, raw)
        except _ApiError as err:
            status, body, headers = err.status, {"error": err.message}, err.headers
        except Exception as exc:  # noqa: BLE001 — a demo server answers, it does not die
            status, body, headers = 500, {"error": f"{type(exc).__name__}: {exc}"}, {}
        self._send(status, body, headers)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- routes ------------------------------------------------------------------------
    def _route(
        self, method: str, parts: list[str], query: dict[str, list[str]], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        state = self.server.state
        if parts[:1] == ["_admin"] and method == "POST":
            return self._admin(parts[1:], self._json_body(raw))
        if len(parts) == 2:
            tenant, what = parts
            if (method, what) == ("GET", "contacts"):
                return self._contacts(state, tenant, query)
            if (method, what) == ("POST", "batch"):
                return self._batch(state, tenant, raw)
            if method == "GET" and what in ("records", "stats"):
                with state.lock:
                    t = state.tenant(tenant)
                    body = t.stats()
                    if what == "records":
                        body = {
                            k: body[k] for k in ("count", "batches", "duplicateKeys", "maxReceives")
                        }
                        body["records"] = [t.stored[k] for k in sorted(t.stored)]
                return 200, body, {}
        raise _ApiError(404, f"no route {method} {self.path.split('?')[0]}")

    def _contacts(
        self, state: _State, tenant: str, query: dict[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        with state.lock:
            state.source_requests += 1
            t = state.tenant(tenant)
            t.source_requests += 1
            every = state.throttle_every
            if every > 0 and state.source_requests % every == 0:
                t.throttled += 1
                raise _ApiError(429, "slow down", {"Retry-After": str(state.retry_after)})
        _bearer(self.headers, t.source_token)
        after = (query.get("after") or [""])[0].strip()
        try:
            limit = int((query.get("limit") or ["100"])[0])
            start = int(after) if after else 0
        except ValueError:
            raise _ApiError(400, "after must be an id and limit an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise _ApiError(400, f"limit must be 1..{MAX_LIMIT}")
        with state.lock:
            pos = bisect.bisect_right(t.source_ids, start) if after else 0
            items = t.source[pos : pos + limit]
            more = pos + len(items) < len(t.source)
        nxt = items[-1]["id"] if items else (after or None)
        return 200, {"items": items, "next": nxt, "more": more}, {}

    def _batch(self, state: _State, tenant: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        with state.lock:
            t = state.tenant(tenant)
        _bearer(self.headers, t.target_token)
        key = self.headers.get("Idempotency-Key", "").strip()
        if not key:
            raise _ApiError(400, "Idempotency-Key header is required")
        body = self._json_body(raw)
        records = body.get("records") if isinstance(body, dict) else body
        if not isinstance(records, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), (str, int)) for r in records
        ):
            raise _ApiError(400, 'expected {"records": [{"id": ...}, ...]}')
        with state.lock:
            if key in t.keys:
                t.duplicate_keys += 1
                return 200, {"duplicate": True, "stored": 0}, {}
            t.keys.add(key)
            t.batches += 1
            for r in records:
                rid = str(r["id"])
                t.stored[rid] = r
                t.receives[rid] = t.receives.get(rid, 0) + 1
        return 200, {"duplicate": False, "stored": len(records)}, {}

    def _admin(self, parts: list[str], body: Any) -> tuple[int, Any, dict[str, str]]:
        apis = self.server.apis
        try:
            if parts == ["tenants"]:
                items = body if isinstance(body, list) else [body]
                for item in items:
                    apis.add_tenant(
                        item["tenant"],
                        source_token=item["sourceToken"],
                        target_token=item["targetToken"],
                        records=int(item.get("records", 0)),
                    )
                return 200, {"tenants": sorted(apis.state.tenants)}, {}
            if len(parts) == 2 and parts[1] == "add":
                total = apis.add_records(parts[0], int((body or {}).get("count", 0)))
                return 200, {"tenant": parts[0], "total": total}, {}
        except (KeyError, TypeError, ValueError) as exc:
            raise _ApiError(400, f"bad admin request: {exc}") from None
        raise _ApiError(404, "no such admin route")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], apis: DemoApis) -> None:
        self.apis = apis
        self.state = apis.state
        super().__init__(address, _Handler)


class DemoApis:
    """The source and target APIs on one loopback server; a context manager.

    ``throttle_every=k`` (0 = never) makes every k-th source request a 429 with
    ``Retry-After: retry_after`` (``k=1`` throttles every request).
    """

    def __init__(self, *, throttle_every: int = 0, retry_after: int = 0) -> None:
        self.state = _State(throttle_every, retry_after)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> DemoApis:
        if self._server is None:
            self._server = _Server((host, port), self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="demo-apis",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> DemoApis:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- urls --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("DemoApis is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("DemoApis is not started")
        host = self._server.server_address[0]  # str for AF_INET; typeshed allows bytes
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{self.port}"

    def tenant_url(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}"

    source_url = tenant_url
    target_url = tenant_url

    # -- data --------------------------------------------------------------------------
    def add_tenant(
        self, tenant: str, *, source_token: str, target_token: str, records: int = 0
    ) -> None:
        """Create (or reset) a tenant with ``records`` source records, ids 000001 up."""
        validate_tenant_id(tenant)
        t = _Tenant(source_token=source_token, target_token=target_token)
        t.add(records)
        with self.state.lock:
            self.state.tenants[tenant] = t

    def add_records(self, tenant: str, n: int) -> int:
        """Append ``n`` new source records (ids after the last); returns the source total."""
        with self.state.lock:
            t = self.state.tenants.get(tenant)
            if t is None:
                raise KeyError(f"unknown tenant {tenant!r}")
            return t.add(n)

    def target_records(self, tenant: str) -> list[dict[str, Any]]:
        """What the target stored for ``tenant``, ordered by id."""
        with self.state.lock:
            t = self.state.tenant(tenant)
            return [dict(t.stored[k]) for k in sorted(t.stored)]

    def stats(self, tenant: str) -> dict[str, Any]:
        """``count`` (distinct ids stored), ``batches``, ``duplicateKeys``, ``maxReceives``,
        ``sourceRecords``, ``sourceRequests``, ``throttled``."""
        with self.state.lock:
            return self.state.tenant(tenant).stats()


def _tenant_arg(text: str) -> tuple[str, str, str, int]:
    try:
        name, src, erp, count = text.split(":")
        return name, src, erp, int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TENANT:SOURCE_TOKEN:TARGET_TOKEN:RECORDS, got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasync.demo_apis", description="Loopback demo source and target APIs."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--tenant",
        type=_tenant_arg,
        action="append",
        default=[],
        metavar="TENANT:SRC_TOKEN:ERP_TOKEN:RECORDS",
    )
    parser.add_argument("--throttle-every", type=int, default=0)
    parser.add_argument("--retry-after", type=int, default=0)
    args = parser.parse_args(argv)
    apis = DemoApis(throttle_every=args.throttle_every, retry_after=args.retry_after)
    for name, src, erp, count in args.tenant:
        apis.add_tenant(name, source_token=src, target_token=erp, records=count)
    apis.start(args.host, args.port)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(
        json.dumps(
            {"url": apis.base_url, "port": apis.port, "tenants": sorted(apis.state.tenants)}
        ),
        flush=True,
    )
    try:
        while not done.wait(0.5):
            pass
    finally:
        apis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
