"""A loopback source + idempotent target that misbehave on cue.

``GET /contacts?after=<id>&limit=N`` pages through ``records`` (ids ``000001``…);
``POST /batch`` (``Idempotency-Key`` required) stores records by id, counting receives.

Faults are scripted per route (``"GET /contacts"``, ``"POST /batch"``): each request takes
the next entry of ``script[route]`` (``"ok"`` when the script is used up):

=============  ====================================================================
``ok``         answer normally
``429``        429 with ``Retry-After: 1`` (delta-seconds)
``429-date``   429 with ``Retry-After`` as an HTTP-date one second ahead
``500`` …      that status (500, 502, 503, 504)
``reset``      drop the connection with a TCP RST before answering
``reset-after`` (POST) store the batch, then RST: the acknowledgement is lost
``timeout``    answer only after ``hang`` seconds (longer than the client waits)
``slow``       answer normally, but drip the body out in pieces
=============  ====================================================================

``broken_after = "<cursor>"`` makes every source request for that cursor answer 503
until it is set back to ``None`` (a dependency that stays down).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FlakyApi"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _send(
        self, status: int, body: Any, headers: dict[str, str] | None = None, drip: float = 0.0
    ) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if drip:
                step = max(1, len(data) // 5)
                for i in range(0, len(data), step):
                    self.wfile.write(data[i : i + step])
                    self.wfile.flush()
                    time.sleep(drip)
            else:
                self.wfile.write(data)
        except OSError:  # the client gave up (timeout): nothing to answer
            self.close_connection = True

    def _handle(self, method: str) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        route = f"{method} {url.path}"
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        query = parse_qs(url.query, keep_blank_values=True)
        after = (query.get("after") or [""])[0]
        fault = api.next_fault(route)
        if route == "GET /contacts" and api.broken_after is not None and after == api.broken_after:
            fault = "503"
        with api.lock:
            api.log.append((route, after, fault))
        if fault == "reset":
            return self._reset()
        if fault == "timeout":
            time.sleep(api.hang)
            fault = "ok"
        if fault == "429":
            return self._send(429, {"error": "slow down"}, {"Retry-After": "1"})
        if fault == "429-date":
            return self._send(
                429,
                {"error": "slow down"},
                {"Retry-After": formatdate(time.time() + 1, usegmt=True)},
            )
        if fault.isdigit():
            return self._send(int(fault), {"error": f"injected {fault}"})
        drip = 0.1 if fault == "slow" else 0.0
        if route == "GET /contacts":
            start = int(after) if after else 0
            limit = int((query.get("limit") or ["10"])[0])
            items = [
                {"id": f"{i:06d}", "name": f"n{i}"}
                for i in range(start + 1, min(start + limit, api.records) + 1)
            ]
            nxt = items[-1]["id"] if items else (after or None)
            return self._send(
                200,
                {"items": items, "next": nxt, "more": start + len(items) < api.records},
                drip=drip,
            )
        if route == "POST /batch":
            key = self.headers.get("Idempotency-Key", "")
            if not key:
                return self._send(400, {"error": "Idempotency-Key is required"})
            records = json.loads(raw or b"[]")
            with api.lock:
                duplicate = key in api.keys
                if duplicate:
                    api.duplicate_keys += 1
                else:
                    api.keys.add(key)
                    for r in records:
                        api.receives[r["id"]] = api.receives.get(r["id"], 0) + 1
            if fault == "reset-after":
                return self._reset()
            return self._send(200, {"duplicate": duplicate}, drip=drip)
        return self._send(404, {"error": f"no route {route}"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: FlakyApi) -> None:
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)


class FlakyApi:
    """The misbehaving APIs; a context manager. ``url`` is the base for both."""

    def __init__(self, records: int, *, hang: float = 1.5) -> None:
        self.records = records
        self.hang = hang
        self.script: dict[str, list[str]] = {}
        self.broken_after: str | None = None
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, str]] = []  # (route, after, fault)
        self.keys: set[str] = set()
        self.receives: dict[str, int] = {}
        self.duplicate_keys = 0
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    def next_fault(self, route: str) -> str:
        with self.lock:
            script = self.script.get(route)
            return script.pop(0) if script else "ok"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "count": len(self.receives),
                "duplicateKeys": self.duplicate_keys,
                "maxReceives": max(self.receives.values(), default=0),
            }

    def __enter__(self) -> FlakyApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
