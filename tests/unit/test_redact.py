"""Secret values never reach log output or stored error texts."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from urllib.parse import quote

import pytest

from datasync.redact import (
    RedactingLoggerAdapter,
    install_redaction,
    redact,
    redact_exception,
    register_secret,
)


def new_secret(prefix: str = "s3cr3t") -> str:
    """A fresh value per test: the registry is process-wide and never shrinks."""
    return f'{prefix}-{uuid.uuid4().hex[:12]}/+&"é'


@pytest.fixture
def logger():
    """A non-propagating logger whose handler writes into a StringIO, redaction installed."""
    name = f"test.redact.{uuid.uuid4().hex[:8]}"
    log = logging.getLogger(name)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    install_redaction(log)
    yield log, stream
    log.removeHandler(handler)


def test_redact_masks_value_and_encoded_forms_longest_first():
    value = new_secret()
    register_secret(value)
    register_secret(value[:8])  # a registered prefix of the value
    text = f"plain={value} url={quote(value, safe='')} json={json.dumps(value)} short={value[:8]}!"
    out = redact(text)
    assert value not in out and quote(value, safe="") not in out
    assert json.dumps(value)[1:-1] not in out and value[:8] not in out
    assert out.startswith('plain=*** url=*** json="***" short=***!')


def test_short_values_are_ignored_and_text_without_secrets_is_unchanged():
    register_secret("abc")
    register_secret("")
    assert redact("abc abcd zzz") == "abc abcd zzz"
    assert redact("") == ""


def test_filter_redacts_percent_args_and_message(logger):
    log, stream = logger
    value = new_secret()
    register_secret(value)
    log.info("token is %s, again %r", value, value)
    log.warning(f"inline {value}")
    out = stream.getvalue()
    assert value not in out
    assert "token is ***, again '***'" in out and "inline ***" in out


def test_filter_redacts_exception_tracebacks(logger):
    log, stream = logger
    value = new_secret()
    register_secret(value)

    def call_api(token):
        raise RuntimeError(f"401 for token {token}")

    try:
        call_api(value)
    except RuntimeError:
        log.exception("pull failed with %s", value)
    out = stream.getvalue()
    assert "Traceback (most recent call last)" in out and "RuntimeError: 401 for token ***" in out
    assert value not in out


def test_filter_is_installed_on_root_handlers_once():
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    try:
        install_redaction()
        install_redaction()
        assert len(handler.filters) == 1
        value = new_secret()
        register_secret(value)
        previous = root.level
        root.setLevel(logging.INFO)
        try:
            logging.getLogger("some.library").info("url https://x.test/?key=%s", value)
        finally:
            root.setLevel(previous)
        assert "key=***" in stream.getvalue() and value not in stream.getvalue()
    finally:
        root.removeHandler(handler)


def test_adapter_redacts_without_filter_and_prefixes_tenant_flow():
    log = logging.getLogger(f"test.adapter.{uuid.uuid4().hex[:8]}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # no RedactingFilter on purpose
    handler.setFormatter(logging.Formatter("%(message)s|%(run_id)s|%(funcName)s"))
    log.addHandler(handler)
    adapter = RedactingLoggerAdapter(
        log, {"tenant_id": "acme", "flow_name": "contacts", "run_id": "r1"}
    )
    value = new_secret()
    register_secret(value)
    adapter.info("calling with %s", value)
    try:
        raise ValueError(f"bad {value}")
    except ValueError:
        adapter.exception("failed")
    out = stream.getvalue()
    assert value not in out
    first = out.splitlines()[0]
    assert first == (
        "[acme/contacts] calling with ***|r1|"
        "test_adapter_redacts_without_filter_and_prefixes_tenant_flow"
    )
    assert "ValueError: bad ***" in out


def test_redact_exception_strips_value_and_caps_length():
    value = new_secret()
    register_secret(value)
    try:
        try:
            raise KeyError(value)
        except KeyError as inner:
            raise RuntimeError("x" * 10_000 + value) from inner
    except RuntimeError as exc:
        text = redact_exception(exc, limit=500)
        full = redact_exception(exc, limit=100_000)
    assert len(text) <= 500 and text.startswith("RuntimeError: xxx")
    assert value not in full and value not in text
    assert "caused by: KeyError: '***'" in full
    assert "test_redact.py" in full and "in test_redact_exception_strips_value" in full


def test_redact_exception_never_cuts_a_value_in_half():
    value = new_secret("cut-me")
    register_secret(value)
    exc = ValueError("abc " + value)
    for limit in range(5, 30):
        text = redact_exception(exc, limit=limit)
        assert len(text) <= limit and value[:6] not in text


def test_register_and_redact_are_thread_safe():
    values = [new_secret(f"t{i}") for i in range(40)]

    def work(chunk):
        for v in chunk:
            register_secret(v)
            assert v not in redact(f"x {v} y")

    threads = [threading.Thread(target=work, args=(values[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v not in redact(" ".join(values)) for v in values)
