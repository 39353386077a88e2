"""The texts the Durable extension and the Python worker produce, word for word.

Read in Azure/azure-functions-durable-extension v2.13.7 (unchanged in v3.0.0-rc.2),
Azure/durabletask (DurableTask.AzureStorage), Azure/azure-functions-host and
azure-functions-runtime 1.3.0; each text names its source.
"""

from __future__ import annotations

import json

__all__ = [
    "DEDUPE_STATUSES",
    "PROCESS_DIED",
    "InstanceExistsError",
    "UnknownOrchestratorError",
    "activity_failure",
    "died_failure",
    "missing_activity_failure",
    "orchestrator_failure",
    "timeout_failure",
    "timespan",
    "unknown_orchestrator_message",
    "worker_exception_text",
]

PROCESS_DIED = "ActivityProcessDied"
"""Type name of the embedded runtime's own failure for a work item whose process kept dying
(:func:`died_failure`); the orchestrator does not retry it."""

DEDUPE_STATUSES = ("Running", "ContinuedAsNew", "Pending", "Suspended")
"""Statuses a start may not replace: ``overridableExistingInstanceStates`` defaults to
``NonRunningStates`` (Options/DurableTaskOptions.cs), whose dedupe list is exactly these
(OverridableStates.cs ``ToDedupeStatuses``). Any other status is silently replaced."""


class InstanceExistsError(Exception):
    """A start hit an instance in a status it may not replace.

    The message is DurableTask.AzureStorage's (AzureStorageOrchestrationService.cs,
    ``CreateTaskOrchestrationAsync``; the extension sets ``ThrowExceptionOnInvalidDedupeStatus``
    in AzureStorageDurabilityProviderFactory.cs)."""

    exception_type = "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException"

    def __init__(self, status: str) -> None:
        super().__init__(f"An Orchestration instance with the status {status} already exists.")
        self.status = status


class UnknownOrchestratorError(LookupError):
    """A start named an orchestrator the app does not have (an ``ArgumentException`` in
    the extension: the HTTP API answers 400)."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(unknown_orchestrator_message(name, known))
        self.name = name


def unknown_orchestrator_message(name: str, known: list[str]) -> str:
    """DurableTaskExtension.cs ``GetInvalidOrchestratorFunctionMessage``."""
    message = (
        f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
        "function. Additional info: "
    )
    if known:
        return message + (
            "The following are the known orchestrator functions: '" + "', '".join(known) + "'."
        )
    return message + "No orchestrator functions are currently registered!"


def worker_exception_text(exc: BaseException) -> str:
    """What the Python worker sends the host for a failed invocation:
    ``"<TypeName>: <str(exc)>"`` (azure_functions_runtime/utils/tracing.py
    ``serialize_exception``, with its fallback text when ``str(exc)`` itself fails)."""
    try:
        return str(type(exc).__name__) + ": " + str(exc)
    except Exception:  # noqa: BLE001 - str(exc) itself failed: the worker's fallback
        return "Unhandled exception in function. Could not serialize original exception message."


def _friendly(message: str) -> str:
    """The message as the extension gets it back from the host.

    The host wraps the worker's message in ``RpcException``:
    ``$"Result: {result}\\nException: {message}\\nStack: {stack}"``
    (azure-functions-host src/WebJobs.Script/Workers/Rpc/RpcException.cs), and the extension
    cuts out the text after ``"\\nException:"`` up to ``"\\nStack:"``
    (OutOfProcExceptionHelpers.cs ``TryGetFullOutOfProcMessage``): the space after the colon
    stays, so the friendly message starts with one space."""
    return " " + message


def _cause(type_name: str, message: str) -> str:
    """TaskFailed ``Details``: the extension serializes the cause with its error converter
    (Newtonsoft, ``TypeNameHandling.Objects``: ErrorSerializerSettingsFactory.cs). We keep that
    JSON object's ``$type``/``Message`` and leave out the .NET and Python stack traces (which the
    real one nests in ``InnerException``)."""
    return json.dumps(
        {"$type": type_name, "Message": message, "InnerException": None, "StackTrace": None},
        separators=(",", ":"),
    )


def activity_failure(activity: str, exc: BaseException) -> tuple[str, str]:
    """TaskFailed ``(Reason, Details)`` for an activity that raised ``exc``.

    Listener/TaskActivityShim.cs: ``$"Activity function '{name}' failed: {Message}"`` where
    Message is the friendly message above, so for ``ValueError("boom")`` the reason is
    ``"Activity function 'x' failed:  ValueError: boom"`` (two spaces)."""
    friendly = _friendly(worker_exception_text(exc))
    return (
        f"Activity function '{activity}' failed: {friendly}",
        _cause("System.Exception, System.Private.CoreLib", friendly),
    )


def missing_activity_failure(activity: str) -> tuple[str, str]:
    """Listener/TaskNonexistentActivityShim.cs: an activity the app does not have."""
    message = f"Activity function '{activity}' does not exist."
    return (
        f"Activity function '{activity}' failed: {message}",
        _cause(
            "Microsoft.Azure.WebJobs.FunctionFailedException, "
            "Microsoft.Azure.WebJobs.Extensions.DurableTask",
            message,
        ),
    )


def orchestrator_failure(orchestrator: str, error: str) -> str:
    """The failed instance's output: Listener/OutOfProcOrchestrationShim.cs raises
    ``OrchestrationFailureException($"Orchestrator function '{Name}' failed: {execution.Error}")``
    with the SDK's ``error`` (``str(exc)``), and DTFx stores the exception's message as the
    result (TaskOrchestrationContext.cs ``FailOrchestration``)."""
    return f"Orchestrator function '{orchestrator}' failed: {error}"


def timespan(seconds: float) -> str:
    """``seconds`` as .NET prints a ``TimeSpan`` (``[d.]hh:mm:ss[.fffffff]``): ``00:10:00``."""
    ticks = round(seconds * 10_000_000)
    whole, fraction = divmod(ticks, 10_000_000)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    if days:
        text = f"{days}.{text}"
    if fraction:
        text += f".{fraction:07d}"
    return text


def timeout_failure(activity: str, seconds: float) -> tuple[str, str]:
    """TaskFailed for an activity that ran past ``functionTimeout``.

    The WebJobs SDK's FunctionExecutor raises ``FunctionTimeoutException("Timeout value of
    {0} was exceeded by function: {1}")`` with the TimeSpan and the short name
    ``Functions.<name>``; TaskActivityShim.cs (``FunctionTimeoutError``) words it as any
    failure, and no out-of-proc text is cut out of it (so one space after ``failed:``)."""
    message = f"Timeout value of {timespan(seconds)} was exceeded by function: Functions.{activity}"
    return (
        f"Activity function '{activity}' failed: {message}",
        _cause(
            "Microsoft.Azure.WebJobs.Host.FunctionTimeoutException, Microsoft.Azure.WebJobs.Host",
            message,
        ),
    )


def died_failure(activity: str, deaths: int) -> tuple[str, str]:
    """TaskFailed the embedded runtime delivers for a work item whose process died ``deaths``
    times while running it (``os._exit``, an OOM kill, a segfault: each time another runtime
    took it over). Its own text, in the worker's ``Type: message`` form: on Azure the host
    restarts the worker instead and the Durable extension re-delivers the work item."""
    friendly = _friendly(
        f"{PROCESS_DIED}: the process running {activity} died {deaths} times (exit without result)"
    )
    return (
        f"Activity function '{activity}' failed: {friendly}",
        _cause("System.Exception, System.Private.CoreLib", friendly),
    )
