"""Never imported: lets ``mypy`` check that every adapter satisfies its port."""

from __future__ import annotations

from ..ports import MessageQueue, PageStore, QueueBackend, RunStore, SecretStore, TenantStore
from .azure.cosmos import CosmosTenantStore
from .azure.keyvault import KeyVaultSecretStore
from .azure.pages import BlobPageStore
from .azure.runs import CosmosRunStore
from .azure.storage_queue import StorageMessageQueue, StorageQueueBackend
from .local import LocalBackend, SqliteMessageQueue
from .memory import MemoryBackend, MemoryMessageQueue


def _local(b: LocalBackend, q: SqliteMessageQueue) -> None:
    tenants: TenantStore = b.tenants
    queues: QueueBackend = b.queues
    queue: MessageQueue = q
    runs: RunStore = b.runs
    pages: PageStore = b.pages
    secrets: SecretStore = b.secrets
    del tenants, queues, queue, runs, pages, secrets


def _memory(b: MemoryBackend, q: MemoryMessageQueue) -> None:
    tenants: TenantStore = b.tenants
    queues: QueueBackend = b.queues
    queue: MessageQueue = q
    runs: RunStore = b.runs
    pages: PageStore = b.pages
    secrets: SecretStore = b.secrets
    del tenants, queues, queue, runs, pages, secrets


def _azure(
    t: CosmosTenantStore,
    qb: StorageQueueBackend,
    q: StorageMessageQueue,
    r: CosmosRunStore,
    p: BlobPageStore,
    s: KeyVaultSecretStore,
) -> None:
    tenants: TenantStore = t
    queues: QueueBackend = qb
    queue: MessageQueue = q
    runs: RunStore = r
    pages: PageStore = p
    secrets: SecretStore = s
    del tenants, queues, queue, runs, pages, secrets
