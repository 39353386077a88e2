"""Benchmark 5: the same paths on the emulators (Cosmos emulator server + Azurite).

A scheduler tick over N tenants stored in Cosmos with jobs sent to an Azurite queue, and
a sync run by the local runtime with tenants, runs and checkpoints in Cosmos, jobs on
Azurite queues and staged pages in Azurite blobs (durable history stays in SQLite, as
with ``func start``'s local runtime here). No hard target: the figures say which emulator
call bounds them. Skipped, with a message, when ``node_modules`` lacks the emulators.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import socket
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .common import ROOT, Metric, run_json

__all__ = ["emulators", "run"]


def _emu_module() -> Any:
    loader = importlib.machinery.SourceFileLoader(
        "datasync_emulators", str(ROOT / "scripts" / "emulators")
    )
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    loader.exec_module(module)
    return module


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextmanager
def emulators(base: Path) -> Iterator[dict[str, str]]:
    """Azurite and the Cosmos emulator server on free loopback ports (like the tests)."""
    emu = _emu_module()
    blob, queue, table, cosmos = _free_ports(4)
    procs = []
    try:
        procs.append(
            emu.start_azurite(
                base / "azurite", base / "azurite.log", blob=blob, queue=queue, table=table
            )
        )
        procs.append(emu.start_cosmos(base / "cosmos", base / "cosmos.log", port=cosmos))
        emu.wait_for_port(queue, procs[0], "Azurite")
        emu.wait_for_port(cosmos, procs[1], "Cosmos emulator server")
        yield emu.settings(cosmos, emu.storage_connection(blob, queue, table))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except Exception:  # noqa: BLE001 - it did not stop in time: kill it
                proc.kill()


class _Timer:
    """Wraps methods of an object's class and sums the seconds spent in each."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, obj: Any, name: str, label: str) -> None:
        fn = getattr(obj, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t0
                self.calls[label] += 1

        setattr(obj, name, timed)


def case_tick(tenants: int) -> dict[str, Any]:
    """Load ``tenants`` into Cosmos, then one timed tick (jobs to Azurite)."""
    import logging

    logging.getLogger("azure").setLevel(logging.WARNING)
    from datasync.app import App
    from datasync.config import Settings
    from datasync.models import parse_tenant
    from datasync.ports import FLOW_JOBS
    from datasync.scanner import scan_and_enqueue

    from .scheduler import FLOWS, NOW, tenant_docs

    svc = App.from_settings(Settings.from_env())
    try:
        docs = list(tenant_docs(tenants))
        due = sum(n for _, n in docs)
        t0 = time.perf_counter()
        batch = [parse_tenant(d) for d, _ in docs]
        svc.tenants.upsert_many(batch)
        load_s = time.perf_counter() - t0
        queue = svc.queues.queue(FLOW_JOBS)
        queue.count()  # creates the queue
        timer = _Timer()
        # the store's due query is a generator: time its pages by wrapping next()
        store = svc.tenants
        due_flows = store.due_flows

        def timed_due(now: Any, **kw: Any) -> Iterator[Any]:
            it = due_flows(now, **kw)
            while True:
                t = time.perf_counter()
                try:
                    page = next(it)
                except StopIteration:
                    timer.seconds["cosmos due query"] += time.perf_counter() - t
                    return
                timer.seconds["cosmos due query"] += time.perf_counter() - t
                timer.calls["cosmos due query"] += 1
                yield page

        store.due_flows = timed_due  # type: ignore[method-assign]
        timer.wrap(queue, "send", "azurite queue send")
        timer.wrap(store, "advance", "cosmos advance (read + replace per tenant)")
        t0 = time.perf_counter()
        result = scan_and_enqueue(store, queue, NOW, known_flows=set(FLOWS))
        seconds = time.perf_counter() - t0
        queued = queue.count()
        queue.client.clear_messages()  # the sync case starts from empty
    finally:
        svc.close()
    if result.due != due or result.invalid:
        raise RuntimeError(f"tick on the emulators: expected {due} due, got {result}")
    return {
        "tenants": tenants,
        "due": result.due,
        "queued": queued,
        "seconds": seconds,
        "load_seconds": load_s,
        "split": dict(timer.seconds),
        "calls": dict(timer.calls),
    }


def case_sync(url: str, records: int) -> dict[str, Any]:
    """A ``records``-record sync by the local runtime on the emulators."""
    from .sync import datasync

    return datasync(url, "bench-emu", 500)


def run(quick: bool = False) -> list[Metric]:
    tenants, records = (500, 2_000) if quick else (5_000, 10_000)
    problem = _emu_module().missing_install()
    if problem:
        print(f"  skipped: {problem}")
        return [
            Metric.skip(name, unit, "report", f"emulators not installed: {problem}")
            for name, unit in (
                (f"emulators.tick_seconds.{tenants}_tenants", "s"),
                ("emulators.due_flows_per_second", "flows/s"),
                ("emulators.cosmos_upserts_per_second", "upserts/s"),
                (f"emulators.sync_records_per_second.{records}_records", "records/s"),
            )
        ]
    from .sync import ApiServer

    with tempfile.TemporaryDirectory(prefix="bench-emu-") as tmp, emulators(Path(tmp)) as settings:
        env = {
            **settings,
            "DATASYNC_HOME": str(Path(tmp) / "home"),
            "COSMOS_DATABASE": f"bench{uuid.uuid4().hex[:8]}",
        }
        t = run_json(["-m", "benchmarks.emulators", "tick", str(tenants)], env=env)
        with ApiServer({"bench-emu": records}) as api:
            s = run_json(
                ["-m", "benchmarks.emulators", "sync", api.url, str(records)],
                env={
                    **env,
                    "DATASYNC_HOME": str(Path(tmp) / "home2"),
                    "COSMOS_DATABASE": f"bench{uuid.uuid4().hex[:8]}",
                },
            )
            stats = api.stats("bench-emu")
    if s["code"] != 0 or stats["count"] != records or stats["maxReceives"] != 1:
        raise RuntimeError(f"sync on the emulators did not move every record once: {s} {stats}")
    split = ", ".join(
        f"{k} {v:.2f} s in {t['calls'].get(k, 0)} calls "
        f"({1000 * v / max(1, t['calls'].get(k, 0)):.1f} ms each)"
        for k, v in sorted(t["split"].items(), key=lambda kv: -kv[1])
    )
    split += " (queue sends run 8 at a time: their seconds add up across threads)"
    bound = max(t["split"].items(), key=lambda kv: kv[1])[0] if t["split"] else "?"
    print(
        f"  tick over {tenants} tenants in Cosmos: {t['seconds']:.2f} s for {t['due']} due "
        f"({t['due'] / t['seconds']:,.0f}/s); split: {split}; bounded by: {bound}"
    )
    print(
        f"  loading {tenants} tenants (one upsert each): {t['load_seconds']:.1f} s "
        f"({tenants / t['load_seconds']:,.0f} upserts/s)"
    )
    print(
        f"  sync of {records} records (pages of 500): {s['seconds']:.2f} s "
        f"({records / s['seconds']:,.0f} records/s, wall {s['wall_seconds']:.2f} s)"
    )
    return [
        Metric.report(f"emulators.tick_seconds.{tenants}_tenants", t["seconds"], "s"),
        Metric.report("emulators.due_flows_per_second", t["due"] / t["seconds"], "flows/s"),
        Metric.report(
            "emulators.cosmos_upserts_per_second", tenants / t["load_seconds"], "upserts/s"
        ),
        Metric.report(
            f"emulators.sync_records_per_second.{records}_records",
            records / s["seconds"],
            "records/s",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["tick", "sync"])
    parser.add_argument("args", nargs="+")
    a = parser.parse_args()
    out = case_tick(int(a.args[0])) if a.case == "tick" else case_sync(a.args[0], int(a.args[1]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
