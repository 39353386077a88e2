"""What leaves a function: redacted errors that keep their type name, never a BaseException."""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
import typing
from urllib.parse import quote

import pytest

from datasync.functions.guard import RedactedError, guarded
from datasync.redact import install_redaction, register_secret

SECRET = "pa$$-w0rd/With:odd=chars"


@pytest.fixture(autouse=True)
def secret() -> None:
    register_secret(SECRET)


def _text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_an_error_with_a_secret_leaves_redacted_and_keeps_its_type_name() -> None:
    @guarded
    def step(args: typing.Dict[str, typing.Any]) -> None:  # noqa: UP006
        try:
            raise KeyError("inner " + quote(SECRET, safe=""))
        except KeyError:
            raise RuntimeError(f"upstream said token={SECRET}") from None

    with pytest.raises(RedactedError) as info:
        step({})
    exc = info.value
    assert type(exc).__name__ == "RuntimeError"
    assert f"{type(exc).__name__}: {exc}".startswith("RuntimeError: upstream said token=***")
    text = _text(exc)  # what the worker sends as stack trace
    for form in (SECRET, quote(SECRET, safe=""), quote(SECRET)):
        assert form not in text
    assert "KeyError" not in text  # the raw chain is not attached


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_base_exceptions_from_flow_code_become_ordinary_errors(error: BaseException) -> None:
    @guarded
    def step() -> None:
        raise error

    with pytest.raises(Exception) as info:  # an Exception: the worker survives it
        step()
    assert type(info.value).__name__ == type(error).__name__


def test_async_functions_are_guarded_and_stay_coroutines() -> None:
    @guarded
    async def start(msg: str) -> None:
        raise ValueError(SECRET)

    assert inspect.iscoroutinefunction(start)
    assert list(inspect.signature(start).parameters) == ["msg"]
    with pytest.raises(RedactedError, match=r"\*\*\*") as info:
        asyncio.run(start("x"))
    assert SECRET not in str(info.value)


def test_a_guarded_error_is_not_wrapped_twice() -> None:
    @guarded
    def inner() -> None:
        raise OSError(SECRET)

    @guarded
    def outer() -> None:
        inner()

    with pytest.raises(RedactedError) as info:
        outer()
    assert type(info.value).__name__ == "OSError"
    assert str(info.value).count("OSError") == 0  # the message is not "OSError: OSError…"


def test_log_records_are_masked_for_handlers_added_after_install(caplog) -> None:
    install_redaction()
    records: list[str] = []

    class Late(logging.Handler):  # like the worker's own handler
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Late()
    logger = logging.getLogger("datasync.test.late")
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(SECRET)
        except RuntimeError:
            logger.error("token %s failed", SECRET, exc_info=True)
    finally:
        logger.removeHandler(handler)
    assert records and all(SECRET not in r for r in records)
    assert "***" in records[0] and "RuntimeError" in records[0]
