"""One ``backend`` fixture, three backends: the same contract tests run on each.

- ``memory``: :mod:`datasync.adapters.memory` with a :class:`ManualClock`;
- ``sqlite``: :class:`~datasync.adapters.local.LocalBackend` in a temp ``DATASYNC_HOME``,
  on the same hand-driven clock (queue visibility and run timestamps);
- ``azure`` (marked ``emulator``): Cosmos emulator for tenants, runs and checkpoints,
  Azurite for queues and staged pages, the Key Vault test server for secrets. Run
  timestamps follow the clock; queue time is Azurite's own, so ``wait`` really sleeps.

The emulators come from ``tests/integration/conftest.py`` (imported below, so the fixtures
are the same code; a session running both folders starts a second set of emulators).
Where an emulator differs from real Azure the fixture handles it and says so; the adapters
stay on real semantics. Known, and handled outside this file: the Cosmos emulator server
answers 500 for a missing item, which ``scripts/cosmos-server.js`` maps to the real 404.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from datasync.adapters.memory import ManualClock
from datasync.ports import MessageQueue, PageStore, QueueBackend, RunStore, SecretStore, TenantStore

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # keyvault_server, as there

from tests.integration.conftest import (  # noqa: E402,F401  (fixtures used by name)
    _quiet_self_signed_tls,
    emulators,
    keyvault_server,
    unique,
)


@dataclass
class Backend:
    """The ports of one backend, plus what a test needs to drive it."""

    name: str
    tenants: TenantStore
    queues: QueueBackend
    runs: RunStore
    pages: PageStore
    secrets: SecretStore
    clock: ManualClock
    put_document: Callable[[dict[str, Any]], None]  # store a raw (maybe invalid) document
    keeps_reason: bool = True  # poison reason on the item (Azure: in the log)
    real_time_queues: bool = False  # queue visibility follows the wall clock
    _queue_names: dict[str, str] = field(default_factory=dict)

    def queue(self, name: str) -> MessageQueue:
        """A queue no other test uses (Azurite is shared by the session)."""
        if self.name == "azure":
            name = self._queue_names.setdefault(name, unique(name))
        return self.queues.queue(name)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass for queue visibility (and run timestamps)."""
        if self.real_time_queues:
            time.sleep(seconds)
        self.clock.advance(seconds)


def _memory(clock: ManualClock) -> Iterator[Backend]:
    from datasync.adapters.memory import MemoryBackend

    b = MemoryBackend(clock=clock)
    yield Backend(
        "memory", b.tenants, b.queues, b.runs, b.pages, b.secrets, clock, b.tenants.put_document
    )


def _sqlite(clock: ManualClock, home: Path) -> Iterator[Backend]:
    import json

    from datasync.adapters.local import LocalBackend

    b = LocalBackend(home, clock=clock)

    def put_document(doc: dict[str, Any]) -> None:
        with b.db.write() as con:
            con.execute(
                "INSERT OR REPLACE INTO tenants (id, doc, etag) VALUES (?, ?, 1)",
                (doc["id"], json.dumps(doc)),
            )

    try:
        yield Backend(
            "sqlite", b.tenants, b.queues, b.runs, b.pages, b.secrets, clock, put_document
        )
    finally:
        b.close()


def _azure(clock: ManualClock, request: pytest.FixtureRequest, home: Path) -> Iterator[Backend]:
    from keyvault_server import FakeCredential

    from datasync.adapters.azure.cosmos import CosmosTenantStore
    from datasync.adapters.azure.cosmos_db import CosmosDatabase
    from datasync.adapters.azure.keyvault import KeyVaultSecretStore
    from datasync.adapters.azure.pages import BlobPageStore
    from datasync.adapters.azure.runs import CosmosRunStore
    from datasync.adapters.azure.storage_queue import StorageQueueBackend
    from datasync.config import Settings

    settings_env = request.getfixturevalue("emulators")
    vault = request.getfixturevalue("keyvault_server")
    vault.secrets.clear()  # one server per session, a clean vault per test
    settings = Settings.from_env(
        {**settings_env, "COSMOS_CONTAINER": unique("tenants"), "DATASYNC_HOME": str(home)}
    )
    database = CosmosDatabase(settings)
    tenants = CosmosTenantStore(settings, database=database)
    runs = CosmosRunStore(
        settings,
        database=database,
        runs_container=unique("runs"),
        checkpoints_container=unique("checkpoints"),
        clock=clock,
    )
    queues = StorageQueueBackend(settings_env["AzureWebJobsStorage"])
    pages = BlobPageStore(settings_env["AzureWebJobsStorage"], container=unique("pages"))
    secrets = KeyVaultSecretStore(
        vault.url,
        credential=FakeCredential(),
        verify_challenge_resource=False,
        connection_verify=False,
    )

    def put_document(doc: dict[str, Any]) -> None:
        tenants.container.upsert_item({"tenantId": doc["id"], "type": "Tenant", **doc})

    try:
        yield Backend(
            "azure",
            tenants,
            queues,
            runs,
            pages,
            secrets,
            clock,
            put_document,
            keeps_reason=False,
            real_time_queues=True,
        )
    finally:
        for close in (secrets.close, pages.close, queues.close, database.close):
            close()


AZURE_MARKS = [
    pytest.mark.emulator,  # the emulators' self-signed certificates
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(params=["memory", "sqlite", pytest.param("azure", marks=AZURE_MARKS)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    clock = ManualClock()
    if request.param == "memory":
        yield from _memory(clock)
    elif request.param == "sqlite":
        yield from _sqlite(clock, tmp_path / "home")
    else:
        yield from _azure(clock, request, tmp_path / "home")
