"""Emulators for the integration tests: Azurite + the Cosmos emulator server on free
loopback ports (started here, stopped after the session), and a Key Vault test server.

``emulators`` yields the four settings (``AzureWebJobsStorage``, ``COSMOS_ENDPOINT``,
``COSMOS_KEY``, ``COSMOS_VERIFY_TLS``) that point DataSync at them. The tests skip only
when ``node_modules`` lacks the emulators (``make emulators-install``); a failure to start
them is an error, not a skip.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import os
import socket
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from datasync.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _load_emulators():
    loader = importlib.machinery.SourceFileLoader(
        "datasync_emulators", str(ROOT / "scripts" / "emulators")
    )
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


emu = _load_emulators()


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def emulators(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Start Azurite and the Cosmos server; yield the settings that point at them."""
    problem = emu.missing_install()
    if problem:
        if os.environ.get("CI"):  # `make test` installs them: in CI a skip would hide a gap
            pytest.fail(f"emulators not installed in CI: {problem}")
        pytest.skip(f"emulators not installed: {problem} (run: make emulators-install)")
    base = tmp_path_factory.mktemp("emulators")
    blob, queue, table, cosmos = _free_ports(4)
    procs = []
    try:
        azurite = emu.start_azurite(
            base / "azurite", base / "azurite.log", blob=blob, queue=queue, table=table
        )
        procs.append(azurite)
        server = emu.start_cosmos(base / "cosmos", base / "cosmos.log", port=cosmos)
        procs.append(server)
        for port, proc, what, log in (
            (queue, azurite, "Azurite", "azurite.log"),
            (cosmos, server, "Cosmos emulator server", "cosmos.log"),
        ):
            try:
                emu.wait_for_port(port, proc, what)
            except RuntimeError as exc:
                text = (base / log).read_text(errors="replace")[-2000:]
                pytest.fail(f"{exc}\n{log}:\n{text}", pytrace=False)
        yield emu.settings(cosmos, emu.storage_connection(blob, queue, table))
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture(autouse=True)
def _quiet_self_signed_tls():
    """The emulators' self-signed certificates: no InsecureRequestWarning per request."""
    with warnings.catch_warnings():
        try:
            from urllib3.exceptions import InsecureRequestWarning

            warnings.simplefilter("ignore", InsecureRequestWarning)
        except ImportError:  # pragma: no cover
            pass
        yield


_counter = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test uses (queues and containers are shared per session)."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def unique_name():
    """``unique_name("jobs")`` → a queue/container name no other test uses."""
    return unique


@pytest.fixture
def cosmos_settings(emulators, tmp_path) -> Settings:
    """Settings on the emulators with a fresh container (created by the store on first use)."""
    env = {**emulators, "COSMOS_CONTAINER": unique("tenants"), "DATASYNC_HOME": str(tmp_path)}
    return Settings.from_env(env)


@pytest.fixture
def cosmos_store(cosmos_settings):
    from datasync.adapters.azure.cosmos import CosmosTenantStore

    store = CosmosTenantStore(cosmos_settings)
    yield store
    store.close()


@pytest.fixture
def queues(emulators):
    from datasync.adapters.azure.storage_queue import StorageQueueBackend

    backend = StorageQueueBackend(emulators["AzureWebJobsStorage"])
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def keyvault_server():
    from keyvault_server import KeyVaultTestServer

    with KeyVaultTestServer() as server:
        yield server
