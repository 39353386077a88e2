"""Log output: UTC timestamps with the date, text or JSON lines, masked secrets."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from datasync.config import Settings
from datasync.exceptions import ConfigError
from datasync.logs import JsonFormatter, TextFormatter, configure_logging
from datasync.redact import install_redaction, register_secret

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def emit(formatter: logging.Formatter, *args, **kwargs) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("datasync.test_logs")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.log(*args, **kwargs)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().rstrip("\n")


def test_text_lines_carry_the_utc_date_and_milliseconds():
    line = emit(TextFormatter(), logging.WARNING, "disk %s", "low")
    stamp, level, rest = line.split(" ", 2)
    assert STAMP.match(stamp), line
    assert level == "WARNING"
    assert rest.strip() == "datasync.test_logs: disk low"


def test_json_lines_carry_run_fields_and_no_traceback():
    try:
        raise ValueError("bad cursor 'x'")
    except ValueError:
        line = emit(
            JsonFormatter(),
            logging.ERROR,
            "run %s failed",
            "Workflow-acme--sync-20261201T140000Z",
            exc_info=True,
            extra={
                "datasync_tenant": "acme",
                "datasync_run": "Workflow-acme--sync-20261201T140000Z",
                "datasync_flow": "sync",
            },
        )
    assert "\n" not in line
    data = json.loads(line)
    assert STAMP.match(data["ts"])
    assert data["level"] == "ERROR"
    assert data["logger"] == "datasync.test_logs"
    assert data["message"] == "run Workflow-acme--sync-20261201T140000Z failed"
    assert data["tenant"] == "acme" and data["flow"] == "sync"
    assert data["run"] == "Workflow-acme--sync-20261201T140000Z"
    assert data["error"] == "ValueError: bad cursor 'x'"
    assert "Traceback" not in line


def test_json_line_without_run_fields_has_only_the_four_keys():
    data = json.loads(emit(JsonFormatter(), logging.INFO, "tick"))
    assert set(data) == {"ts", "level", "logger", "message"}


def test_json_lines_show_a_registered_secret_masked():
    secret = "s3cr3t-json-log-value-9f2b"
    register_secret(secret)
    install_redaction()
    try:
        raise RuntimeError(f"login with {secret} refused")
    except RuntimeError:
        line = emit(JsonFormatter(), logging.ERROR, "token %r sent", secret, exc_info=True)
    assert secret not in line
    data = json.loads(line)
    assert data["message"] == "token '***' sent"
    assert data["error"] == "RuntimeError: login with *** refused"


def test_log_format_setting_is_checked():
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"DATASYNC_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="DATASYNC_LOG_FORMAT must be text or json, got 'xml'"):
        Settings.from_env({"DATASYNC_LOG_FORMAT": "xml"})


def test_configure_logging_switches_the_format(capsys):
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        for handler in [h for h in root.handlers if getattr(h, "_datasync", False)]:
            root.removeHandler(handler)
        configure_logging("INFO", "json")
        logging.getLogger("datasync.x").info("hello")
        err = capsys.readouterr().err.strip().splitlines()
        assert json.loads(err[-1])["message"] == "hello"
        configure_logging("INFO", "text")
        logging.getLogger("datasync.x").info("again")
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].endswith("INFO    datasync.x: again")
        with pytest.raises(ConfigError):
            configure_logging("INFO", "yaml")
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_datasync", False)]:
            root.removeHandler(handler)
        root.handlers[:] = before[0]
        root.setLevel(before[1])
