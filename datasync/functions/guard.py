"""What leaves a function: errors already redacted, and never a bare ``BaseException``.

Whatever a function raises goes to the host as ``"<TypeName>: <message>"`` plus a stack
trace (the Python worker's ``serialize_exception``), and from there into Durable history,
Application Insights and, through the orchestrator, the run record. :func:`guarded` makes
the function itself hand over a safe error, so the promise holds on every host:

- the message is :func:`datasync.redact.redact_exception`'s text (secrets masked in every
  encoding it knows, causes and the last frames included, capped in length);
- the exception keeps its type name (a ``RuntimeError`` still reads ``RuntimeError: …``);
- the original is not chained (``from None``): its raw text is not in the trace either;
- ``SystemExit``, ``KeyboardInterrupt`` and other ``BaseException`` from flow code fail the
  invocation like any error instead of killing the worker's thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ..redact import redact_exception

__all__ = ["RedactedError", "guarded", "redacted"]

F = TypeVar("F", bound=Callable[..., Any])
MAX_ERROR = 2000
"""Characters of error text an invocation hands to the host (Durable keeps it in history;
large exception payloads have hung orchestrations: durable-extension #502)."""


class RedactedError(Exception):
    """Base of the stand-ins :func:`redacted` makes; each subclass bears the original
    exception's type name."""


_classes: dict[str, type[RedactedError]] = {}


def redacted(exc: BaseException) -> RedactedError:
    """An exception with ``exc``'s type name and its redacted, capped description."""
    name = type(exc).__name__
    cls = _classes.get(name)
    if cls is None:
        cls = _classes[name] = type(name, (RedactedError,), {"__module__": __name__})
    text = redact_exception(exc, limit=MAX_ERROR)
    prefix = name + ": "
    return cls(text[len(prefix) :] if text.startswith(prefix) else ("" if text == name else text))


def guarded(fn: F) -> F:
    """Wrap a function (sync or ``async``) so every error it raises is :func:`redacted`.

    The wrapper keeps ``fn``'s signature and annotations (the worker validates them)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (RedactedError, asyncio.CancelledError):
                raise
            except BaseException as exc:  # noqa: BLE001 — flow code may raise anything
                raise redacted(exc) from None

        return guarded_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def guarded_sync(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RedactedError:
            raise
        except BaseException as exc:  # noqa: BLE001 — flow code may raise anything
            raise redacted(exc) from None

    return guarded_sync  # type: ignore[return-value]
