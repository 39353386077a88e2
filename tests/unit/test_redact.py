"""Secret values never reach log output or stored error texts."""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import time
import timeit
import uuid
from urllib.parse import quote, quote_plus

import httpx
import pytest

from datasync.redact import (
    MASK,
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


# -- every form the standard library and httpx produce ---------------------------------

# Characters that every encoder treats specially: URL delimiters, both quotes, the
# backslash, '%' (with hex digits after it, as an already-encoded value has), '+', space,
# controls, non-ASCII in the BMP and beyond, and a non-printable one repr() escapes.
SPECIAL = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\t\n\x0b\x00\x7féß中😀\u200b\U000e0001"
PLAIN = "abcdefXYZ0123456789"


def random_secret(rng: random.Random, length: int | None = None) -> str:
    length = length or rng.randint(8, 40)
    chars = [rng.choice(SPECIAL if rng.random() < 0.5 else PLAIN) for _ in range(length)]
    if rng.random() < 0.3:  # an already percent-encoded part, left alone by httpx
        chars.insert(rng.randrange(len(chars)), "%" + rng.choice(["41", "2F", "c3", "25"]))
    return "".join(chars)


def random_safe(rng: random.Random) -> str:
    printable = [chr(c) for c in range(0x21, 0x7F)]
    return "".join(rng.sample(printable, rng.randint(0, len(printable))))


def encodings(value: str, rng: random.Random) -> list[tuple[str, str, str]]:
    """``(name, text, expected)``: the value written in one form inside other text, and
    that text as it must read once masked."""
    out: list[tuple[str, str, str]] = []

    def inline(name: str, form: str, lead: int = 0, trail: int = 0) -> None:
        masked = form[:lead] + MASK + form[len(form) - trail :]
        out.append((name, f"<<{form}>>", f"<<{masked}>>"))

    inline("raw", value)
    for i in range(4):
        safe = random_safe(rng)
        inline(f"quote safe={safe!r}", quote(value, safe=safe))
        inline(f"quote_plus safe={safe!r} #{i}", quote_plus(value, safe=safe))
    inline("quote default", quote(value))
    inline("json", json.dumps(value), 1, 1)
    inline("json ensure_ascii=False", json.dumps(value, ensure_ascii=False), 1, 1)
    inline("repr", repr(value), 1, 1)
    inline("repr bytes", repr(value.encode()), 2, 1)
    quoted = repr(value)  # '...' or "...", as the value's quotes decide
    edge = len(json.dumps(quoted[0])) - 1
    inline("json of repr", json.dumps(quoted), edge, edge)
    inline("repr of quote", repr(quote(value, safe=random_safe(rng))), 1, 1)
    inline("quote of json", quote(json.dumps(value), safe=""), 3, 3)

    def url(name: str, build, expected: str) -> None:
        try:  # httpx refuses ASCII controls in a URL; a value holding one never gets there
            built = build()
        except httpx.InvalidURL:
            return
        out.append((name, str(built), expected))

    url(
        "httpx userinfo",
        lambda: httpx.URL("http://h.test/p", username="user", password=value),
        "http://user:***@h.test/p",
    )
    url(
        "httpx params",
        lambda: httpx.URL("http://h.test/p", params={"token": value, "after": "1"}),
        "http://h.test/p?token=***&after=1",
    )
    url(
        "httpx path",
        lambda: httpx.URL("http://h.test/").copy_with(path="/x/" + value + "/y"),
        "http://h.test/x/***/y",
    )
    try:  # the password put into the URL text with an f-string, as a flow would
        typed = httpx.URL(f"http://user:{value}@h.test/p")
    except httpx.InvalidURL:
        pass
    else:
        if typed.host == "h.test" and typed.path == "/p" and typed.username == "user":
            out.append(("httpx userinfo f-string", str(typed), "http://user:***@h.test/p"))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_every_form_of_a_random_secret_is_masked_whole(seed):
    rng = random.Random(seed)
    value = random_secret(rng) + uuid.uuid4().hex[:6]
    register_secret(value)
    for name, text, expected in encodings(value, rng):
        assert redact(text) == expected, (name, value, text)


def test_a_password_in_url_userinfo_is_masked_in_the_httpx_error_and_log(logger):
    log, stream = logger
    value = f"pa ss[{uuid.uuid4().hex[:6]}]|^%41"
    register_secret(value)
    url = httpx.URL(f"http://user:{value}@127.0.0.1:9/x")
    request = httpx.Request("GET", url)
    response = httpx.Response(401, request=request)
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    log.error("request failed: %s", caught.value)
    text = redact_exception(caught.value)
    assert "user:***@127.0.0.1:9/x" in text and "user:***@127.0.0.1:9/x" in stream.getvalue()
    assert str(url.raw_path) not in text  # not even the encoded form
    encoded = str(url).split("user:", 1)[1].split("@", 1)[0]
    assert encoded not in text and encoded not in stream.getvalue()


def test_a_value_with_both_quote_characters_is_masked_in_its_repr():
    value = f"""it's "{uuid.uuid4().hex[:8]}" """
    register_secret(value)
    try:
        {}[value]
    except KeyError as exc:
        text = redact_exception(exc)
    assert text.startswith("KeyError: '***'"), text
    assert redact(repr({"password": value})) == "{'password': '***'}"


def test_text_with_escapes_but_no_secret_is_left_exactly_as_it_is():
    register_secret(new_secret())
    for text in [
        "100% sure: a+b=c, path C:\\new\\table, %41%42%zz %c3%a9 \\u00e9 \\x41 \\",
        json.dumps({"k": 'é\n"q"'}) + " " + quote("a b/é", safe="") + " " + repr('it\'s "x"'),
        "trailing %4 and %",
    ]:
        assert redact(text) == text


def test_a_short_value_inside_a_long_one_is_masked_with_it():
    long = f"outer-{uuid.uuid4().hex}-secret"
    inner = long[6:14]
    register_secret(inner)
    register_secret(long)
    assert redact(f"a {long} b {inner} c {quote(long, safe='')}") == "a *** b *** c ***"


def best_time(fn, repeat: int = 7, number: int = 200) -> float:
    return min(timeit.repeat(fn, repeat=repeat, number=number)) / number


def test_masking_time_does_not_grow_with_the_number_of_secrets():
    """Thousands of PEM-sized secrets cost a log line about what a hundred do."""
    rng = random.Random(7)
    line = "GET https://api.example.test/v2/contacts?after=12345&limit=100 -> 200 (a+b) \\n"

    def pem() -> str:
        body = "".join(rng.choice(PLAIN + "+/") for _ in range(2000))
        return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"

    for _ in range(100):
        register_secret(pem())
    few = best_time(lambda: redact(line))
    started = time.perf_counter()
    for _ in range(3000):
        register_secret(pem())
    per_register = (time.perf_counter() - started) / 3000
    many = best_time(lambda: redact(line))
    assert many < few * 3, (few, many)
    assert per_register < 0.005, per_register  # time in the size of the value, not the count
    value = pem()
    register_secret(value)
    assert redact(line + json.dumps(value)) == line + '"***"'
