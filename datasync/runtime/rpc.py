"""The Durable extension's HTTP API on loopback, so the real ``DurableOrchestrationClient``
works unchanged against the embedded engine (see ``shared/notes/durable-local.md`` §E).

Status codes and error bodies are the extension's (HttpApiHandler.cs and
HttpRequestMessageExtensions.cs ``CreateErrorResponse``, azure-functions-durable-extension
v2.13.7): a start that hits a running instance throws OrchestrationAlreadyExistsException,
which ``HandleRequestAsync`` answers with **500** and
``{"Message": "Something went wrong while processing your request", "ExceptionMessage":
"An Orchestration instance with the status Running already exists.", "ExceptionType": ...,
"StackTrace": ...}``; the SDK's ``start_new`` then raises ``Exception(<that dict>)``. An
unknown orchestrator is an ArgumentException: 400, and the SDK raises its ExceptionMessage."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .durable import DurableEngine, InstanceExistsError, UnknownOrchestratorError

__all__ = ["DurableRpcServer"]

log = logging.getLogger("datasync.durable.rpc")
PREFIX = "/durabletask/"
RUNNING_STATUSES = ("Running", "Pending", "ContinuedAsNew", "Suspended")  # status GET → 202


def error_body(
    message: str, exc: BaseException | None = None, exception_type: str | None = None
) -> dict[str, Any]:
    """The extension's ``CreateErrorResponse`` body (without a .NET stack trace)."""
    if exc is None:
        return {"Message": message}
    return {
        "Message": message,
        "ExceptionMessage": str(exc),
        "ExceptionType": exception_type or type(exc).__name__,
        "StackTrace": None,
    }


class DurableRpcServer:
    """Serves start/status/terminate/purge for one engine on ``127.0.0.1:<port>``."""

    def __init__(self, engine: DurableEngine, task_hub: str = "DataSyncHub") -> None:
        self.engine = engine
        self.task_hub = task_hub
        self.started: list[str] = []  # instance ids created through this server
        self._started_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                parts = [unquote(p) for p in url.path[len(PREFIX) :].split("/") if p]
                body = self._body()
                if parts[:1] == ["orchestrators"] and len(parts) in (2, 3):
                    name = parts[1]
                    instance_id = parts[2] if len(parts) == 3 else None
                    server._start(self, name, instance_id, body)
                elif parts[:1] == ["instances"] and len(parts) == 3 and parts[2] == "terminate":
                    server._terminate(self, parts[1], parse_qs(url.query).get("reason", [""])[0])
                else:
                    self._reply(404, {"Message": f"not supported: POST {url.path}"})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = [unquote(p) for p in url.path[len(PREFIX) :].split("/") if p]
                if parts[:1] == ["instances"] and len(parts) == 2:
                    server._status(self, parts[1])
                else:
                    self._reply(404, {"Message": f"not supported: GET {url.path}"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="durable-rpc", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def binding_json(self) -> str:
        """The ``durableClient`` binding payload the host passes to a client function."""
        base = self.base_url
        mgmt = f"{base}instances/INSTANCEID"
        return json.dumps(
            {
                "taskHubName": self.task_hub,
                "creationUrls": {
                    "createNewInstancePostUri": f"{base}orchestrators/{{functionName}}",
                    "createAndWaitOnNewInstancePostUri": f"{base}orchestrators/{{functionName}}",
                },
                "managementUrls": {
                    "id": "INSTANCEID",
                    "statusQueryGetUri": mgmt,
                    "sendEventPostUri": f"{mgmt}/raiseEvent/{{eventName}}",
                    "terminatePostUri": f"{mgmt}/terminate?reason={{text}}",
                    "rewindPostUri": f"{mgmt}/rewind?reason={{text}}",
                    "purgeHistoryDeleteUri": mgmt,
                },
                "baseUrl": base,
                "requiredQueryStringParameters": "",
                "rpcBaseUrl": base,
            }
        )

    def _status(self, handler: Any, instance_id: str) -> None:
        """HandleGetStatusRequestAsync: 404 unknown, 202 while running, else 200."""
        status = self.engine.get_status(instance_id)
        if status is None:
            handler._reply(404)
        else:
            handler._reply(
                202 if status.runtime_status in RUNNING_STATUSES else 200, status.to_json()
            )

    def _terminate(self, handler: Any, instance_id: str, reason: str) -> None:
        """HandleTerminateInstanceRequestAsync: 404 unknown, 410 already ended, else 202."""
        if self.engine.get_status(instance_id) is None:
            handler._reply(404)
        else:
            handler._reply(202 if self.engine.terminate(instance_id, reason) else 410)

    def _start(self, handler: Any, name: str, instance_id: str | None, body: bytes) -> None:
        import uuid

        instance_id = instance_id or uuid.uuid4().hex
        try:
            input_json = json.loads(body) if body else None  # the client double-encodes
        except ValueError as exc:
            handler._reply(
                400, error_body("Invalid JSON content", exc, "Newtonsoft.Json.JsonReaderException")
            )
            return
        try:
            self.engine.start_new(name, instance_id, input_json)
        except UnknownOrchestratorError as exc:
            handler._reply(
                400,
                error_body(
                    "One or more of the arguments submitted is incorrect",
                    exc,
                    "System.ArgumentException",
                ),
            )
            return
        except InstanceExistsError as exc:
            handler._reply(
                500,
                error_body(
                    "Something went wrong while processing your request", exc, exc.exception_type
                ),
            )
            return
        except Exception as exc:
            log.exception("starting %s as %s failed", name, instance_id)
            handler._reply(
                500, error_body("Something went wrong while processing your request", exc)
            )
            return
        with self._started_lock:
            self.started.append(instance_id)
        mgmt = f"{self.base_url}instances/{instance_id}"
        handler._reply(
            202,
            {
                "id": instance_id,
                "statusQueryGetUri": mgmt,
                "sendEventPostUri": f"{mgmt}/raiseEvent/{{eventName}}",
                "terminatePostUri": f"{mgmt}/terminate?reason={{text}}",
                "purgeHistoryDeleteUri": mgmt,
            },
        )

    def start(self) -> DurableRpcServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
