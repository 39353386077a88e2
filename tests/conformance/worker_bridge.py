"""The host side of the Functions RPC protocol, for the real Python worker library.

Runs INSIDE the Python 3.13 worker venv (``worker_venv.py``), as its own process per app
directory — the host, too, starts one worker process per app. It speaks JSON lines: one
request object per stdin line, one response object per stdout line (the worker's and the
app's own prints go to stderr)::

    {"op": "init", "app_dir": "...", "env": {...}}      worker_init_request: index + validate
    {"op": "metadata"}                                   functions_metadata_request
    {"op": "invoke", "function": "begin_run",            invocation_request, as the host
     "input_data": [{"name": "args", "data": {"json": "..."}}],   sends it; data is one of
     "trigger_metadata": {"Id": {"string": "..."}},       string | json | bytes (base64) |
     "retry_context": {...}}                              http ({"method", "url", "headers",
                                                          "body", "params", "query"})
    {"op": "durable_start", "task_hub": "..."}           the embedded Durable HTTP API
    {"op": "durable_status", "instance_id": "..."}       an instance as the engine has it
    {"op": "durable_instances"}                          every instance id

The request messages are stand-ins of our own for the protobuf classes the worker reads
(plain classes with the fields it touches, ``WhichOneof`` for the two oneofs, and the few
enum values validation compares: BindingInfo in=0 out=1 inout=2 undefined=0,
StatusResult Failure=0 Success=1 Cancelled=2). Nothing here is generated from a .proto.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import traceback
import types
import uuid
from typing import Any, ClassVar

# -- protobuf stand-ins --------------------------------------------------------------------


class Message:
    """A protobuf message stand-in: keyword fields; unset fields read as ``None``."""

    _oneofs: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "TypedData":  # Datum.from_typed_data probes
            raise AttributeError(name)  # .TypedData: not a wrapper
        return None

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802 - protobuf's name
        for field in self._oneofs.get(group, ()):
            if self.__dict__.get(field) is not None:
                return field
        return None


def _message(name: str, **oneofs: tuple[str, ...]) -> type[Message]:
    return type(name, (Message,), {"_oneofs": oneofs})


TYPED_DATA_KINDS = (
    "string",
    "json",
    "bytes",
    "stream",
    "http",
    "int",
    "double",
    "collection_bytes",
    "collection_string",
    "collection_double",
    "collection_sint64",
    "model_binding_data",
    "collection_model_binding_data",
)


class BindingInfo(Message):
    out, inout = 1, 2
    undefined, string, binary, stream = 0, 1, 2, 3


setattr(BindingInfo, "in", 0)


class StatusResult(Message):
    Failure, Success, Cancelled = 0, 1, 2


STATUS_NAMES = {0: "Failure", 1: "Success", 2: "Cancelled"}


class RpcHttpCookie(Message):
    class SameSite:  # the enum the worker's cookie converter reads
        Lax, Strict, ExplicitNone = 1, 2, 3


setattr(RpcHttpCookie.SameSite, "None", 0)


protos = types.SimpleNamespace(
    BindingInfo=BindingInfo,
    RpcHttpCookie=RpcHttpCookie,
    StatusResult=StatusResult,
    TypedData=_message("TypedData", data=TYPED_DATA_KINDS),
    ParameterBinding=_message("ParameterBinding", rpc_data=("data", "rpc_shared_memory")),
    **{
        name: _message(name)
        for name in (
            "RpcFunctionMetadata",
            "RpcRetryOptions",
            "WorkerInitResponse",
            "WorkerMetadata",
            "RpcException",
            "FunctionMetadataResponse",
            "FunctionLoadResponse",
            "InvocationResponse",
            "InvocationRequest",
            "RpcTraceContext",
            "RetryContext",
            "WorkerInitRequest",
            "StreamingMessage",
            "RpcHttp",
            "NullableString",
            "NullableBool",
            "NullableDouble",
            "NullableTimestamp",
        )
    },
)


def typed_data(spec: dict[str, Any] | None) -> Message | None:
    """``{"string": s}`` | ``{"json": s}`` | ``{"bytes": base64}`` → a TypedData."""
    if spec is None:
        return None
    ((kind, value),) = spec.items()
    if kind == "bytes":
        value = base64.b64decode(value)
    if kind == "http":  # {"method", "url", "headers", "body": spec, "params", "query"}
        value = protos.RpcHttp(
            method=value["method"],
            url=value["url"],
            headers=dict(value.get("headers") or {}),
            body=typed_data(value.get("body") or {"bytes": ""}),
            params=dict(value.get("params") or {}),  # the route's parameters
            query=dict(value.get("query") or {}),
        )
    return protos.TypedData(**{kind: value})


def typed_data_json(td: Any) -> dict[str, Any] | None:
    if td is None:
        return None
    kind = td.WhichOneof("data")
    if kind is None:
        return None
    value = getattr(td, kind)
    if kind == "http":  # an HTTP response: status, headers, body, cookies as the host gets them
        return {"http": http_json(value)}
    if isinstance(value, (bytes, bytearray)):
        value = base64.b64encode(bytes(value)).decode()
    return {kind: value}


def _nullable(value: Any) -> Any:
    return None if value is None else value.value


def http_json(http: Any) -> dict[str, Any]:
    return {
        "status_code": http.status_code,
        "headers": dict(http.headers or {}),
        "body": typed_data_json(http.body),
        "cookies": [
            {
                "name": c.name,
                "value": c.value,
                "path": _nullable(c.path),
                "http_only": _nullable(c.http_only),
                "secure": _nullable(c.secure),
                "same_site": c.same_site,
            }
            for c in http.cookies or []
        ],
    }


def exception_json(exc: Any) -> dict[str, Any] | None:
    if exc is None:
        return None
    return {"message": exc.message, "stack_trace": exc.stack_trace}


def status_json(result: Any) -> dict[str, Any]:
    return {
        "status": STATUS_NAMES.get(result.status, result.status),
        "exception": exception_json(result.exception),
    }


def _request(**fields: Any) -> Any:
    """The ``StreamingMessage`` wrapper the worker's handlers take."""
    return types.SimpleNamespace(
        request=types.SimpleNamespace(**fields), properties={"host": "127.0.0.1", "protos": protos}
    )


# -- the host ----------------------------------------------------------------------------


class Host:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()  # one loop for the process, as in the worker
        asyncio.set_event_loop(self.loop)
        self.worker: Any = None
        self.functions: dict[str, str] = {}  # function name → function_id
        self.engine: Any = None
        self.rpc: Any = None

    def init(self, app_dir: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        for key, value in (env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(app_dir)
        sys.path.insert(0, app_dir)  # what the worker's process start does
        import azure_functions_runtime as worker

        self.worker = worker
        worker.start_threadpool_executor()
        init = types.SimpleNamespace(capabilities={}, function_app_directory=app_dir)
        response = self.loop.run_until_complete(
            worker.worker_init_request(_request(worker_init_request=init))
        )
        return {
            **status_json(response.result),
            "capabilities": dict(response.capabilities or {}),
            "worker_version": response.worker_metadata.worker_version,
        }

    def metadata(self) -> dict[str, Any]:
        response = self.loop.run_until_complete(
            self.worker.functions_metadata_request(_request(functions_metadata_request=None))
        )
        functions = []
        for fm in response.function_metadata_results or []:
            self.functions[fm.name] = fm.function_id
            functions.append(
                {
                    "name": fm.name,
                    "function_id": fm.function_id,
                    "entry_point": fm.entry_point,
                    "script_file": fm.script_file,
                    "language": fm.language,
                    "properties": dict(fm.properties or {}),
                    "raw_bindings": [json.loads(raw) for raw in fm.raw_bindings],
                    "bindings": {
                        name: {"type": b.type, "direction": b.direction, "data_type": b.data_type}
                        for name, b in (fm.bindings or {}).items()
                    },
                    "retry_options": None
                    if fm.retry_options is None
                    else {k: str(v) for k, v in vars(fm.retry_options).items()},
                }
            )
        return {**status_json(response.result), "functions": functions}

    def invoke(
        self,
        function: str,
        input_data: list[dict[str, Any]],
        trigger_metadata: dict[str, Any] | None = None,
        retry_context: dict[str, Any] | None = None,
        invocation_id: str | None = None,
    ) -> dict[str, Any]:
        if not self.functions:
            self.metadata()
        retry = {"retry_count": 0, "max_retry_count": 0, "exception": None, **(retry_context or {})}
        request = protos.InvocationRequest(
            invocation_id=invocation_id or str(uuid.uuid4()),
            function_id=self.functions[function],
            input_data=[
                protos.ParameterBinding(name=pb["name"], data=typed_data(pb["data"]))
                for pb in input_data
            ],
            trigger_metadata={k: typed_data(v) for k, v in (trigger_metadata or {}).items()},
            trace_context=protos.RpcTraceContext(
                trace_parent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                trace_state="",
                attributes={},
            ),
            retry_context=protos.RetryContext(**retry),
        )
        response = self.loop.run_until_complete(
            self.worker.invocation_request(_request(invocation_request=request))
        )
        return {
            **status_json(response.result),
            "invocation_id": response.invocation_id,
            "return_value": typed_data_json(response.return_value),
            "output_data": [
                {"name": pb.name, "data": typed_data_json(pb.data)}
                for pb in response.output_data or []
            ],
        }

    def durable_start(self, task_hub: str = "DataSyncHub") -> dict[str, Any]:
        """The project's embedded Durable backend and HTTP API, as ``LocalHost`` wires them
        (an engine over ``DATASYNC_HOME/durable.db``; orchestrators from the loaded app)."""
        from pathlib import Path

        from datasync.config import Settings
        from datasync.runtime.durable import DurableEngine
        from datasync.runtime.host import index_functions
        from datasync.runtime.rpc import DurableRpcServer

        found = index_functions(sys.modules["function_app"].app)
        home = Settings.from_env().home
        Path(home).mkdir(parents=True, exist_ok=True)
        self.engine = DurableEngine(
            Path(home) / "durable.db",
            orchestrators=found.orchestrators,
            activities=found.activities,
        )
        self.rpc = DurableRpcServer(self.engine, task_hub).start()
        return {"binding_json": self.rpc.binding_json(), "base_url": self.rpc.base_url}

    def durable_status(self, instance_id: str) -> dict[str, Any]:
        status = self.engine.get_status(instance_id)
        return {"instance": None if status is None else status.to_json()}

    def durable_instances(self) -> dict[str, Any]:
        rows = (
            self.engine.db.read()
            .execute("SELECT instance_id FROM instances ORDER BY instance_id")
            .fetchall()
        )
        return {"instances": [r["instance_id"] for r in rows]}


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr
    sys.stdout = sys.stderr
    host = Host()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            op = request.pop("op")
            reply = getattr(host, op)(**request)
            reply = {"ok": True, **reply}
        except Exception as exc:  # noqa: BLE001 - a bridge bug or a bad request: report, keep serving
            reply = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
