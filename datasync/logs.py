"""Log output of the embedded runtime and the CLI: one stderr handler, its format, noise.

Two formats (``DATASYNC_LOG_FORMAT``):

- ``text`` (default): ``2026-12-01T14:00:00.123Z INFO    datasync.steps: message``
- ``json``: one object per line, ``{"ts", "level", "logger", "message"}`` plus ``tenant``,
  ``run`` and ``flow`` when the record carries ``datasync_tenant`` / ``datasync_run`` /
  ``datasync_flow``, and ``error`` (``"Type: message"``, never a traceback) when it has an
  exception.

Times are UTC with the date and milliseconds. Redaction happens when a record is made
(:func:`datasync.redact.install_redaction`); both formats emit that masked text, and the
exception text of a JSON line is masked again here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from .redact import install_redaction, redact

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "configure_logging", "utc_timestamp"]

LOG_FORMATS = ("text", "json")
_FIELDS = (("datasync_tenant", "tenant"), ("datasync_run", "run"), ("datasync_flow", "flow"))
_NOISY = ("azure", "httpx", "httpcore", "urllib3", "aiohttp")


def utc_timestamp(created: float) -> str:
    """``2026-12-01T14:00:00.123Z`` for a ``LogRecord.created`` value."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger>: <message>`` (tracebacks as the standard formatter)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return utc_timestamp(record.created)


def _error_text(record: logging.LogRecord) -> str | None:
    """``"Type: message"`` of the record's exception (masked), else None."""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        try:
            message = str(exc)
        except Exception:  # noqa: BLE001 - an exception that cannot print itself
            message = "<unprintable>"
        name = type(exc).__name__
        return redact(f"{name}: {message}" if message else name)
    if record.exc_text:  # the redacting filter formatted (and masked) the traceback already
        lines = [line for line in record.exc_text.splitlines() if line.strip()]
        return redact(lines[-1].strip()) if lines else None
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string still gives a line
            message = f"{record.msg} {record.args!r}"
        data: dict[str, Any] = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for attr, key in _FIELDS:
            value = getattr(record, attr, None)
            if value is not None:
                data[key] = str(value)
        error = _error_text(record)
        if error:
            data["error"] = error
        return json.dumps(data, ensure_ascii=False, default=str)


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(
    level: str | None = None, fmt: str | None = None, *, settings: Settings | None = None
) -> None:
    """One stderr handler on the root logger (replaced formatter when called again).

    ``level`` / ``fmt`` default to ``DATASYNC_LOG_LEVEL`` / ``DATASYNC_LOG_FORMAT`` (read
    through :meth:`Settings.from_env`; a bad value is a :class:`ConfigError`)."""
    if level is None or fmt is None:
        if settings is None:
            from .config import Settings

            settings = Settings.from_env()
        level = level or settings.log_level
        fmt = fmt or settings.log_format
    if fmt not in LOG_FORMATS:
        from .exceptions import ConfigError

        raise ConfigError(f"DATASYNC_LOG_FORMAT must be text or json, got {fmt!r}")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_datasync", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._datasync = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(_formatter(fmt))
    root.setLevel(level.upper())
    install_redaction()
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
