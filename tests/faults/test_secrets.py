"""Secrets never leak: flows fail in every way with their secret in hand; nothing the
system wrote (logs, CLI output, every file under DATASYNC_HOME but secrets.json, SQLite
WAL included) holds a secret value in any encoding — httpx's URL userinfo encoding and
repr() of a value holding both quote characters included."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests.faults.flaky_api import FlakyApi
from tests.faults.harness import flow_entry, tenant_doc

pytestmark = pytest.mark.faults

LEAKY_FLOW = """
import logging
import os

from datasync import Page, PermanentError, flow

third_party = logging.getLogger("some.library")


@flow("leaky")
class Leaky:
    async def pull(self, ctx, cursor):
        s = ctx.secret("api", "key")
        mode, url = ctx.config["mode"], ctx.config["url"]
        if mode == "raise":
            raise RuntimeError(f"login with {s} refused")
        if mode == "cause":
            try:
                {}[s]
            except KeyError as exc:
                raise PermanentError("lookup failed") from exc
        if mode == "log":
            ctx.log.info("key is %s", s)
            ctx.log.warning("key=" + s)
            try:
                raise ValueError(s)
            except ValueError:
                ctx.log.exception("failed with %s", s)
            third_party.error("a library logs %s", s)
        if mode == "query":
            r = ctx.http.get(f"{url}/nowhere/{s}?token={s}")
            r.raise_for_status()
        if mode == "params":
            r = await ctx.ahttp.get(url + "/contacts", params={"token": s, "after": ""})
            r.raise_for_status()
        if mode == "transient" and not os.path.exists(ctx.config["marker"]):
            open(ctx.config["marker"], "w").close()
            raise ConnectionError(f"{s} did not work this time")
        return Page(records=[{"id": "1", "name": "one"}], cursor="1", has_more=False)

    def push(self, ctx, records):
        s = ctx.secret("api", "key")
        if ctx.config["mode"] == "record":
            raise ValueError(f"record {records[0]['id']} rejected: credential {s} expired")
"""

MODES = ("raise", "cause", "log", "query", "params", "record", "transient")
FAILING = {"raise", "cause", "query", "params", "record"}


def secret_of(mode: str) -> str:
    return f"Zq7 {mode}/s3cr3t{{k}}+9f=2e&x"


def forms(value: str) -> set[bytes]:
    """Every way a value could be written: raw, URL-encoded (as urllib and httpx encode a
    query or a path), JSON-escaped."""
    query_safe = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in '"#<>%')
    path_safe = "".join(c for c in query_safe if c not in "?`{}")
    texts = {
        value,
        quote(value, safe=""),
        quote_plus(value, safe=""),
        quote(value, safe=query_safe),
        quote(value, safe=path_safe),
        json.dumps(value)[1:-1],
    }
    return {t.encode() for t in texts} | {value.encode("utf-16-le")}


def test_no_secret_value_is_written_anywhere(project):
    with FlakyApi(records=5) as api:
        api.script["GET /contacts"] = ["500"] * 50  # the "params" mode retries
        config = {"url": api.url, "marker": str(project.gates / "failed-once")}
        docs = [
            tenant_doc(f"t-{mode}", flow_entry("leaky", {**config, "mode": mode})) for mode in MODES
        ]
        project.write_flow("leaky.py", LEAKY_FLOW)
        project.apply(*docs)
        for mode in MODES:
            project.secret(f"t-{mode}", "api", "key", secret_of(mode))
        runtime = project.run_once(expect=1)
    runs = project.runs()
    status = {r["tenantId"][2:]: r["status"] for r in runs}
    assert status == {m: "Failed" if m in FAILING else "Completed" for m in MODES}, runs
    errors = {r["tenantId"][2:]: r["error"] for r in runs}
    assert all("***" in errors[m] for m in ("raise", "query", "params", "record")), errors
    assert "PermanentError: lookup failed" in errors["cause"]
    assert "key is ***" in runtime.stderr() and "a library logs ***" in runtime.stderr()
    project.poison()

    written = project.everything_written().encode("latin-1")
    for mode in MODES:
        for form in forms(secret_of(mode)):
            assert form not in written, (mode, form)
    # the secrets.json exception is real: the values are there, so the grep would find them
    assert secret_of("raise").encode() in (project.home / "secrets.json").read_bytes()


ENCODED_FLOW = """
import logging

from datasync import Page, flow

third_party = logging.getLogger("some.library")


@flow("encoded")
class Encoded:
    def pull(self, ctx, cursor):
        s = ctx.secret("api", "key")
        if ctx.config["mode"] == "userinfo":
            host = ctx.config["url"].split("//", 1)[1]
            url = f"http://user:{s}@{host}/nowhere"
            ctx.log.info("calling %s", url)
            third_party.warning("a library logs the url %r", url)
            r = ctx.http.get(url)
            r.raise_for_status()
        if ctx.config["mode"] == "quotes":
            third_party.error("a library logs its config %r", {"key": s})
            ctx.log.warning("the key is %r", s)
            {}[s]
        return Page(records=[], cursor=None, has_more=False)

    def push(self, ctx, records):
        pass
"""

# httpx percent-encodes these in userinfo (space, brackets, quotes, braces, é), keeps an
# already-encoded "%41" as it is, and leaves "'" alone: a form no fixed list of encodings has
USERINFO_SECRET = "Zq7 u[i]|^\"`{x}<>%41é'-userinfo"
QUOTES_SECRET = """it's "Zq7-both-quotes" key"""


def every_form(value: str) -> set[bytes]:
    """:func:`forms` and the ones a fixed list misses: httpx's userinfo encoding, repr()
    (of the value and of a dict holding it), quote() with more safe sets."""
    texts = {t.decode() for t in forms(value) if not t.startswith(value.encode("utf-16-le"))}
    url = httpx.URL(f"http://user:{value}@h.test/")
    texts.add(url.userinfo.decode().split(":", 1)[1])
    texts.add(repr(value)[1:-1])
    texts.add(repr({"key": value}))
    texts.add(json.dumps(repr(value))[1:-1])
    texts |= {quote(value, safe=safe) for safe in ("'", "[]", "%", "'%[]|^`{}<>\"")}
    return {t.encode() for t in texts}


def test_a_password_in_url_userinfo_or_with_both_quotes_is_never_written(project):
    with FlakyApi(records=1) as api:
        project.write_flow("encoded.py", ENCODED_FLOW)
        project.apply(
            tenant_doc("t-userinfo", flow_entry("encoded", {"url": api.url, "mode": "userinfo"})),
            tenant_doc("t-quotes", flow_entry("encoded", {"url": api.url, "mode": "quotes"})),
        )
        project.secret("t-userinfo", "api", "key", USERINFO_SECRET)
        project.secret("t-quotes", "api", "key", QUOTES_SECRET)
        runtime = project.run_once(expect=1)
    runs = {r["tenantId"]: r for r in project.runs()}
    assert {t: r["status"] for t, r in runs.items()} == {
        "t-userinfo": "Failed",
        "t-quotes": "Failed",
    }, runs
    assert "user:***@127.0.0.1" in runs["t-userinfo"]["error"], runs
    assert "KeyError: '***'" in runs["t-quotes"]["error"], runs
    log = runtime.stderr()
    assert "calling http://user:***@127.0.0.1" in log, log[-3000:]
    assert "a library logs its config {'key': '***'}" in log, log[-3000:]
    project.poison()

    written = project.everything_written().encode("latin-1")
    for value in (USERINFO_SECRET, QUOTES_SECRET):
        for form in every_form(value):
            assert form not in written, (value, form)
    stored = (project.home / "secrets.json").read_bytes()  # the one exception, as it is
    assert json.dumps(USERINFO_SECRET)[1:-1].encode() in stored
