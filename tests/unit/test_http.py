"""ctx.http retries: Retry-After, backoff, budget, bodies re-sent, sync and async, loopback."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from datasync.exceptions import ConfigError
from datasync.http import (
    AsyncRetryTransport,
    RetryPolicy,
    RetryTransport,
    make_async_client,
    make_client,
    parse_retry_after,
)

URL = "https://api.example.test/items?token=query-secret-123"


class Script:
    """A MockTransport handler answering from a list (a response, or an exception to raise)."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def client(script: Script, clock: FakeClock, **policy) -> httpx.Client:
    transport = RetryTransport(
        httpx.MockTransport(script), policy=RetryPolicy(**policy), sleep=clock.sleep, clock=clock
    )
    return httpx.Client(transport=transport)


def aclient(script: Script, clock: FakeClock, **policy) -> httpx.AsyncClient:
    transport = AsyncRetryTransport(
        httpx.MockTransport(script), policy=RetryPolicy(**policy), sleep=clock.asleep, clock=clock
    )
    return httpx.AsyncClient(transport=transport)


def ok(body=b"ok"):
    return httpx.Response(200, content=body)


# -- parse_retry_after -------------------------------------------------------------------


def test_parse_retry_after_seconds_dates_and_garbage():
    now = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=42), usegmt=True), now) == 42.0
    assert parse_retry_after("Mon, 23 Nov 2026 13:00:00 GMT", now) == 0.0  # in the past
    for junk in (None, "", "soon", "-5", "1e3", "Mon, 99 Foo 2026"):
        assert parse_retry_after(junk, now) is None, junk


# -- sync --------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_waits_that_long():
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), ok())
    clock = FakeClock()
    r = client(script, clock).get(URL)
    assert r.status_code == 200 and r.text == "ok"
    assert len(script.requests) == 2
    assert clock.sleeps == [7.0]


def test_429_with_retry_after_http_date_waits_until_then():
    when = datetime.now(UTC) + timedelta(seconds=20)
    script = Script(httpx.Response(429, headers={"Retry-After": format_datetime(when, True)}), ok())
    clock = FakeClock()
    assert client(script, clock).get(URL).status_code == 200
    assert len(clock.sleeps) == 1 and 17.0 <= clock.sleeps[0] <= 20.0


def test_503_then_200_uses_jittered_backoff():
    script = Script(httpx.Response(503), httpx.Response(503), ok())
    clock = FakeClock()
    r = client(script, clock, backoff_base=0.5).get(URL)
    assert r.status_code == 200 and len(script.requests) == 3
    assert 0 <= clock.sleeps[0] <= 1.0 and 0 <= clock.sleeps[1] <= 2.0  # base * 2**attempt


def test_connect_error_then_success_and_error_reraised_when_exhausted():
    script = Script(httpx.ConnectError("refused"), ok())
    clock = FakeClock()
    assert client(script, clock).get(URL).status_code == 200
    assert len(script.requests) == 2 and len(clock.sleeps) == 1

    always = Script(httpx.ConnectError("refused"))
    with pytest.raises(httpx.ConnectError):
        client(always, FakeClock(), attempts=3).get(URL)
    assert len(always.requests) == 3


def test_exhaustion_returns_the_last_503_for_raise_for_status():
    script = Script(httpx.Response(503, text="busy"))
    clock = FakeClock()
    r = client(script, clock, attempts=4).get(URL)
    assert r.status_code == 503 and r.text == "busy"
    assert len(script.requests) == 4 and len(clock.sleeps) == 3
    with pytest.raises(httpx.HTTPStatusError):
        r.raise_for_status()


def test_non_retryable_status_is_returned_at_once():
    script = Script(httpx.Response(404), ok())
    clock = FakeClock()
    assert client(script, clock).get(URL).status_code == 404
    assert len(script.requests) == 1 and clock.sleeps == []


def test_budget_stops_before_a_wait_that_would_pass_it():
    script = Script(httpx.Response(429, headers={"Retry-After": "400"}), ok())
    clock = FakeClock()
    r = client(script, clock, budget=300).get(URL)
    assert r.status_code == 429 and len(script.requests) == 1 and clock.sleeps == []


def test_budget_counts_from_the_first_attempt():
    script = Script(httpx.Response(503, headers={"Retry-After": "100"}))
    clock = FakeClock()
    r = client(script, clock, budget=250, attempts=10).get(URL)
    # waits of 100 s at t=0 and t=100 fit; a third at t=200 would end at 300 > 250.
    assert r.status_code == 503 and clock.sleeps == [100.0, 100.0]
    assert len(script.requests) == 3


def test_post_body_is_resent_identically():
    script = Script(httpx.Response(502), ok())
    clock = FakeClock()
    payload = [{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}]
    r = client(script, clock).post(URL, json=payload, headers={"Idempotency-Key": "k1"})
    assert r.status_code == 200
    assert len(script.bodies) == 2 and script.bodies[0] == script.bodies[1]
    assert b'"Ann"' in script.bodies[0]
    assert all(req.headers["Idempotency-Key"] == "k1" for req in script.requests)


def test_streamed_body_is_resent_identically():
    script = Script(httpx.Response(500), ok())
    r = client(script, FakeClock()).post(URL, content=iter([b"part1-", b"part2"]))
    assert r.status_code == 200 and script.bodies == [b"part1-part2", b"part1-part2"]


def test_retries_are_logged_without_query_string_or_headers(caplog):
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), ok())
    with caplog.at_level(logging.INFO, logger="datasync.http"):
        client(script, FakeClock()).get(URL, headers={"Authorization": "Bearer hdr-secret-9"})
    text = caplog.text
    assert "GET https://api.example.test/items" in text and "429" in text and "1/5" in text
    assert "query-secret-123" not in text and "hdr-secret-9" not in text


def test_make_client_defaults_and_injected_transport(monkeypatch):
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(301, headers={"Location": "https://elsewhere.test/"})

    with make_client(transport=httpx.MockTransport(handler)) as c:
        r = c.get("https://api.example.test/")
        assert r.status_code == 301 and len(seen) == 1  # no redirect followed
        assert seen[0].headers["User-Agent"].startswith("datasync/")
        assert c.timeout.read == 30.0
        assert isinstance(c._transport, RetryTransport)


def test_policy_from_settings():
    from datasync.config import Settings

    p = Settings.from_env(
        {
            "DATASYNC_HTTP_ATTEMPTS": "2",
            "DATASYNC_HTTP_BUDGET": "1.5",
            "DATASYNC_HTTP_TIMEOUT": "3",
            "DATASYNC_HTTP_BACKOFF_BASE": "0.01",
        }
    ).http
    assert (p.attempts, p.budget, p.timeout, p.backoff_base) == (2, 1.5, 3.0, 0.01)
    assert Settings.from_env({}).http == RetryPolicy()
    with pytest.raises(ConfigError):
        Settings.from_env({"DATASYNC_HTTP_ATTEMPTS": "many"})
    with pytest.raises(ConfigError):
        Settings.from_env({"DATASYNC_HTTP_ATTEMPTS": "0"})


# -- async -------------------------------------------------------------------------------


def test_async_client_same_behaviours():
    async def main():
        clock = FakeClock()
        s1 = Script(httpx.Response(429, headers={"Retry-After": "3"}), ok())
        async with aclient(s1, clock) as c:
            assert (await c.get(URL)).status_code == 200
        assert clock.sleeps == [3.0]

        s2 = Script(httpx.ConnectError("refused"), httpx.Response(503), ok())
        async with aclient(s2, FakeClock()) as c:
            assert (await c.post(URL, json={"a": 1})).status_code == 200
        assert len(s2.requests) == 3 and len(set(s2.bodies)) == 1

        s3 = Script(httpx.Response(503))
        async with aclient(s3, FakeClock(), attempts=3) as c:
            assert (await c.get(URL)).status_code == 503
        assert len(s3.requests) == 3

        s4 = Script(httpx.Response(429, headers={"Retry-After": "400"}), ok())
        clock4 = FakeClock()
        async with aclient(s4, clock4, budget=300) as c:
            assert (await c.get(URL)).status_code == 429
        assert clock4.sleeps == [] and len(s4.requests) == 1

        s5 = Script(httpx.ConnectError("refused"))
        async with aclient(s5, FakeClock(), attempts=2) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(URL)
        assert len(s5.requests) == 2

    asyncio.run(main())


def test_make_async_client_with_injected_transport():
    script = Script(httpx.Response(503, headers={"Retry-After": "0"}), ok())

    async def main():
        async with make_async_client(transport=httpx.MockTransport(script)) as c:
            return await c.get(URL)

    assert asyncio.run(main()).status_code == 200 and len(script.requests) == 2


# -- a real loopback server --------------------------------------------------------------


def test_env_proxies_are_mounted_behind_the_retry_layer(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "internal.test")
    with make_client() as c:
        mounted = [t for t in c._mounts.values() if t is not None]
        assert mounted and all(isinstance(t, RetryTransport) for t in mounted)


def test_real_loopback_server_429_then_200(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if len(hits) == 1:
                self.send_response(429)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"slow")
            else:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with make_client(RetryPolicy(timeout=5.0)) as c:
            r = c.get(f"http://127.0.0.1:{server.server_port}/items?x=1")
        assert r.status_code == 200 and r.text == "ok"
        assert hits == ["/items?x=1", "/items?x=1"]
    finally:
        server.shutdown()
        server.server_close()
