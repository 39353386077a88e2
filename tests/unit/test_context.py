"""FlowContext: cached secrets registered for redaction, per-loop async clients, safe repr."""

from __future__ import annotations

import logging
import threading

import pytest

from datasync.context import FlowContext, SecretCache
from datasync.exceptions import SecretNotFound
from datasync.http import HttpClients, RetryPolicy
from datasync.registry import call_step

HTTP = HttpClients(RetryPolicy())


class CountingSecrets:
    def __init__(self, values: dict[tuple[str, str, str], str]) -> None:
        self.values = values
        self.calls = 0
        self.lock = threading.Lock()

    def get(self, tenant: str, system: str, key: str) -> str:
        with self.lock:
            self.calls += 1
        try:
            return self.values[(tenant, system, key)]
        except KeyError:
            raise SecretNotFound(tenant, system, key) from None

    def set(self, tenant, system, key, value):
        self.values[(tenant, system, key)] = value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_ctx(secrets, cache=None, **kw) -> FlowContext:
    args = {
        "tenant_id": "acme",
        "flow_name": "contacts-to-erp",
        "run_id": "Workflow-acme--contacts-to-erp-20261123T140000Z",
        "page_key": "Workflow-acme--contacts-to-erp-20261123T140000Z/p1",
        "config": {"source_url": "http://x", "api_key": "cfg-secret-value"},
        "state": {},
        "secrets": secrets,
        "cache": cache,
        "http": HTTP,
    }
    args.update(kw)
    return FlowContext(**args)


def test_secret_is_read_once_per_ttl_across_contexts():
    store = CountingSecrets({("acme", "crm", "token"): "tok-123", ("beta", "crm", "token"): "b"})
    clock = Clock()
    cache = SecretCache(ttl=60, clock=clock)
    for _ in range(50):  # a page loop: one context per step
        assert make_ctx(store, cache).secret("crm", "token") == "tok-123"
    assert store.calls == 1
    assert make_ctx(store, cache, tenant_id="beta").secret("crm", "token") == "b"
    assert store.calls == 2  # keyed by tenant too
    clock.now += 61
    make_ctx(store, cache).secret("crm", "token")
    assert store.calls == 3


def test_missing_secret_raises_and_is_not_cached():
    store = CountingSecrets({})
    ctx = make_ctx(store, SecretCache())
    for _ in range(2):
        with pytest.raises(SecretNotFound):
            ctx.secret("erp", "token")
    assert store.calls == 2
    store.values[("acme", "erp", "token")] = "now-there"
    assert ctx.secret("erp", "token") == "now-there"


def test_cache_is_bounded_and_invalidates_per_tenant():
    cache = SecretCache(ttl=60, max_entries=3)
    loads = []
    for i in range(5):
        cache.get(("t", "s", str(i)), lambda i=i: loads.append(i) or f"v{i}")
    assert len(cache) == 3
    cache.get(("t", "s", "4"), lambda: loads.append("again") or "v4")
    cache.get(("t", "s", "0"), lambda: loads.append("reload") or "v0")
    assert loads == [0, 1, 2, 3, 4, "reload"]  # newest kept, oldest evicted
    cache.get(("u", "s", "k"), lambda: "u")
    cache.invalidate("t")
    assert len(cache) == 1
    assert "v4" not in repr(cache)


def test_cache_is_thread_safe():
    store = CountingSecrets({("acme", "crm", "token"): "tok"})
    cache = SecretCache()
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(200):
                assert make_ctx(store, cache).secret("crm", "token") == "tok"
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and store.calls <= 8


def test_defaults_and_repr_keep_values_out():
    store = CountingSecrets({("acme", "crm", "token"): "tok-xyz-secret"})
    ctx = FlowContext(
        tenant_id="acme",
        flow_name="f",
        run_id="r",
        page_key="r/p1",
        config=None,
        state=None,
        secrets=store,
        http=HTTP,
    )
    assert ctx.config == {} and ctx.state == {}
    ctx.state["n"] = 1
    assert ctx.state == {"n": 1}
    full = make_ctx(store)
    full.secret("crm", "token")
    text = repr(full)
    assert "acme" in text and "contacts-to-erp" in text
    assert "tok-xyz-secret" not in text and "cfg-secret-value" not in text


def test_secret_values_are_registered_for_redaction(caplog):
    from datasync.redact import redact

    store = CountingSecrets({("acme", "crm", "token"): "s3cr3t-Value-for-redaction"})
    ctx = make_ctx(store, SecretCache())
    value = ctx.secret("crm", "token")
    assert "s3cr3t-Value-for-redaction" not in redact(f"Authorization: Bearer {value}")
    with caplog.at_level(logging.INFO, logger="datasync.flow.contacts-to-erp"):
        ctx.log.info("calling with %s", value)
    assert caplog.records, "ctx.log logs under datasync.flow.<name>"
    assert "s3cr3t-Value-for-redaction" not in caplog.text


def test_http_is_the_apps_client_and_ahttp_is_one_client_per_loop():
    ctx = make_ctx(CountingSecrets({}))
    assert ctx.http is HTTP.sync is make_ctx(CountingSecrets({})).http
    other = HttpClients(RetryPolicy())
    assert make_ctx(CountingSecrets({}), http=other).http is not ctx.http  # per app
    other.close()

    async def step(c):
        return c.ahttp

    seen: dict[str, list] = {}

    def work(name):
        seen[name] = [call_step(step, ctx) for _ in range(2)]

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["a"][0] is seen["a"][1]  # same thread, same loop: reused
    assert seen["a"][0] is not seen["b"][0]  # another thread's loop: its own client
    assert HTTP.for_loop() is call_step(step, ctx)  # sync access uses this thread's loop


def test_async_step_makes_real_requests_with_ahttp():
    from datasync.demo_apis import DemoApis

    async def pull(c):
        r = await c.ahttp.get(
            c.config["source_url"] + "/contacts",
            params={"after": "", "limit": 5},
            headers={"Authorization": "Bearer " + c.secret("crm", "token")},
        )
        r.raise_for_status()
        return r.json()["items"]

    with DemoApis() as apis:
        apis.add_tenant("acme", source_token="tok", target_token="x", records=7)
        store = CountingSecrets({("acme", "crm", "token"): "tok"})
        ctx = make_ctx(store, config={"source_url": apis.source_url("acme")})
        for _ in range(3):  # the loop and client survive between steps
            assert len(call_step(pull, ctx)) == 5


def test_a_missing_config_key_is_a_permanent_error_naming_the_key():
    from datasync.context import FlowConfig
    from datasync.exceptions import MissingConfigKey, PermanentError

    config = FlowConfig({"url": "http://x"})
    assert config["url"] == "http://x" and config.get("other") is None
    with pytest.raises(MissingConfigKey) as info:
        config["source_url"]
    assert isinstance(info.value, KeyError) and isinstance(info.value, PermanentError)
    assert str(info.value) == "flow config has no key 'source_url'"
