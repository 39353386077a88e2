"""Secret values never leak: a process-wide registry of values and the tools that mask them.

- :func:`register_secret` adds a value (``ctx.secret`` does it for every value it reads).
  Values shorter than 4 characters are ignored: masking ``"ab"`` everywhere would mangle
  ordinary output and protect little.
- :func:`redact` replaces every registered value, and its URL-encoded and JSON-escaped
  forms, with ``***`` (longest first, so a value containing another is masked whole).
- :class:`RedactingFilter` masks log records — message, ``%`` args, tracebacks and stack
  info; :func:`install_redaction` applies it to every record the process makes (a log
  record factory) and to the current handlers. The function app calls it at import, so it
  covers the Functions worker's handlers too. Custom ``extra`` attributes of records are
  not inspected.
- :class:`RedactingLoggerAdapter` (``ctx.log``) masks before the record is even made, so
  it is safe without the filter; tracebacks it logs are inlined in the message, redacted.
- :func:`redact_exception` gives a short, redacted, capped error text for run records.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "RedactingFilter",
    "RedactingLoggerAdapter",
    "install_redaction",
    "redact",
    "redact_exception",
    "register_secret",
]

MIN_SECRET_LENGTH = 4
MASK = "***"

_lock = threading.Lock()
_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None  # replaced whole, read without the lock


# httpx percent-encodes a URL given as text only partly (WHATWG query / path sets), so a
# value put into a URL by an f-string shows up in error messages in these forms too.
_QUERY_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in '"#<>%')
_PATH_SAFE = "".join(c for c in _QUERY_SAFE if c not in "?`{}")


def _forms_of(value: str) -> set[str]:
    return {
        value,
        quote(value, safe=""),
        quote_plus(value, safe=""),
        quote(value, safe=_QUERY_SAFE),
        quote(value, safe=_PATH_SAFE),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


def register_secret(value: str) -> None:
    """Mask ``value`` (and its encoded forms) from now on. Short or non-str values are
    ignored (see module doc)."""
    global _pattern
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    forms = _forms_of(value)
    with _lock:
        if forms <= _forms:
            return
        _forms.update(forms)
        ordered = sorted(_forms, key=len, reverse=True)
        _pattern = re.compile("|".join(map(re.escape, ordered)))


def redact(text: str) -> str:
    """``text`` with every registered value replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def _has_secrets() -> bool:
    return _pattern is not None


# -- logging ---------------------------------------------------------------------------

_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Masks a record in place: the formatted message (``args`` become ``()``), the
    traceback (formatted into ``exc_text``; ``exc_info`` cleared) and ``stack_info``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _has_secrets():
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a bad format string must not skip redaction
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), ()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = _formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_filter = RedactingFilter()


_previous_factory: Any = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _previous_factory(*args, **kwargs)
    _filter.filter(record)
    return record


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Mask every log record of the process, whichever handler emits it — once.

    Installs a log-record factory that masks each record as it is made (so handlers added
    later, such as the Functions worker's own, never see a raw value), and adds the
    redacting filter to the current handlers of ``logger`` (default: root) as well.
    Idempotent."""
    global _previous_factory
    with _lock:
        current = logging.getLogRecordFactory()
        if current is not _redacting_factory:
            _previous_factory = current
            logging.setLogRecordFactory(_redacting_factory)
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)


def redact_exception(exc: BaseException, *, limit: int = 4000) -> str:
    """``"ExcType: message"`` (with its causes) and the last frames, redacted, at most
    ``limit`` characters."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 3:
        seen.add(id(current))
        parts.append(("" if not parts else "caused by: ") + _describe(current))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    frames = traceback.extract_tb(exc.__traceback__)[-5:]
    if frames:
        parts.append(
            "at "
            + " <- ".join(f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames))
        )
    text = redact("\n".join(parts))  # redact before cutting: no half-masked values
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…" if limit > 0 else ""
    return text


def _describe(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = "<unprintable>"
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _short(filename: str) -> str:
    return "/".join(filename.replace("\\", "/").rsplit("/", 2)[-2:])


class RedactingLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """``ctx.log``: messages prefixed ``[tenant/flow]``, masked before reaching handlers.

    ``extra`` of the adapter (``tenant_id``, ``flow_name``, ``run_id``) is merged with a
    call's own ``extra``. Exception tracebacks (``exc_info``) are formatted, masked and
    appended to the message, so handlers never see the raw exception.
    """

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        tenant, flow = extra.get("tenant_id"), extra.get("flow_name")
        prefix = f"[{tenant}/{flow}] " if tenant or flow else ""
        return f"{prefix}{msg}", kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except Exception:  # noqa: BLE001 — keep the message, still masked
            text = f"{msg} {args!r}"
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif not isinstance(exc_info, tuple):
                import sys

                exc_info = sys.exc_info()
            if exc_info[0] is not None:
                text += "\n" + _formatter.formatException(exc_info)
        text, options = self.process(text, kwargs)
        options["stacklevel"] = options.get("stacklevel", 1) + 1  # report the caller's line
        self.logger.log(level, redact(text), **options)
