"""Job queues on Azure Storage queues (``AzureWebJobsStorage``; Azurite locally).

Message bodies are base64 on the wire (``TextBase64EncodePolicy``/``DecodePolicy``): that
is what the Functions host's queue trigger expects and what it writes itself. Visibility
timeouts, ``dequeue_count`` and pop receipts are the service's own.

Differences from the embedded queue, all service limits:

- ``move_to`` sends the body to the target queue, then deletes it here (two calls, not
  atomic: a crash in between leaves it in both, which the instance-id dedupe absorbs).
  Storage messages carry no metadata, so the reason goes to the log (Application Insights
  on Azure) and :attr:`QueueItem.reason` is ``None`` for items read back.
- ``peek_all`` sees at most 32 messages (the service's peek limit), and only visible ones.
- ``send_at`` computes each delay against the service's clock, read from the ``Date``
  header of a response (whole seconds; the skew is re-read every minute), rounded to
  whole seconds and capped at 7 days (the service's limit).
- ``count_due`` is ``count``: hidden messages and their times cannot be listed.
- ``remove(id)`` has no direct API: it receives until it finds the message and releases
  the others at once — their ``dequeue_count`` goes up, so use it on queues nothing
  consumes (``flow-jobs-poison``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ...exceptions import ConfigError, NotFound
from ...ports import QueueItem
from .storage import DEV_STORAGE_CONNECTION, expand_connection_string, storage_client

__all__ = [
    "DEV_STORAGE_CONNECTION",
    "StorageMessageQueue",
    "StorageQueueBackend",
    "expand_connection_string",
]

log = logging.getLogger("datasync.queue")

PEEK_LIMIT = 32  # the service returns at most 32 messages per peek / receive
_NEVER_EXPIRE = -1  # message time-to-live: keep jobs until handled (default is 7 days)
MAX_DELAY = 604_800  # the service's limit on an initial visibility timeout (7 days)
_SKEW_TTL = 60.0  # seconds a measured clock skew is reused


def _seconds(value: float, minimum: int) -> int:
    return max(minimum, math.ceil(value))


class StorageMessageQueue:
    """One named Storage queue as a :class:`~datasync.ports.MessageQueue`."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client  # azure.storage.queue.QueueClient with base64 policies
        self.name = name
        self._ready = False
        self._lock = threading.Lock()
        self._skew: tuple[float, float] | None = None  # (service - local seconds, measured at)

    def __repr__(self) -> str:
        return f"StorageMessageQueue({self.name!r})"

    def _ensure(self) -> Any:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    from azure.core.exceptions import ResourceExistsError

                    with contextlib.suppress(ResourceExistsError):
                        self.client.create_queue()
                    self._ready = True
        return self.client

    @staticmethod
    def _item(msg: Any) -> QueueItem:
        return QueueItem(
            id=msg.id,
            body=msg.content if msg.content is not None else "",
            dequeue_count=msg.dequeue_count or 0,
            pop_receipt=msg.pop_receipt or "",
            inserted_at=msg.inserted_on,
            next_visible_at=msg.next_visible_on,
        )

    def send(self, text: str, *, visibility_delay: float = 0.0) -> str:
        """Enqueue ``text``; ``visibility_delay`` (seconds, up to 7 days) hides it until due."""
        delay = _seconds(visibility_delay, 0) if visibility_delay > 0 else None
        msg = self._ensure().send_message(
            text, visibility_timeout=delay, time_to_live=_NEVER_EXPIRE
        )
        return str(msg.id)

    def send_many(self, texts: Iterable[str]) -> None:
        """Enqueue each text (one call per message; a few in parallel for big batches)."""
        texts = list(texts)
        if len(texts) <= 4:
            for text in texts:
                self.send(text)
            return
        self._ensure()
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="queue-send") as pool:
            for _ in pool.map(self.send, texts):
                pass

    def clock_skew(self) -> float:
        """Seconds the service's clock is ahead of this machine's (its ``Date`` header, read
        from a queue-properties call; cached for a minute)."""
        cached = self._skew
        if cached is not None and time.monotonic() - cached[1] < _SKEW_TTL:
            return cached[0]
        seen: list[str] = []

        def hook(response: Any) -> None:
            date = response.http_response.headers.get("Date")
            if date:
                seen.append(date)

        before = time.time()
        self._ensure().get_queue_properties(raw_response_hook=hook)
        after = time.time()
        skew = 0.0
        if seen:
            try:
                service = parsedate_to_datetime(seen[-1]).timestamp() + 0.5  # whole seconds
                skew = service - (before + after) / 2
            except (TypeError, ValueError):
                log.debug("queue %s sent an unreadable Date header", self.name)
        self._skew = (skew, time.monotonic())
        return skew

    def send_at(self, items: Iterable[tuple[str, datetime]]) -> None:
        """Enqueue each text hidden until its time by the service's clock (see module)."""
        items = list(items)
        if not items:
            return
        skew = self.clock_skew()

        def one(item: tuple[str, datetime]) -> None:
            # at send time: a big batch takes a while, and each delay counts from its own
            # arrival at the service
            delay = round(item[1].timestamp() - (time.time() + skew))
            self.send(item[0], visibility_delay=float(min(max(delay, 0), MAX_DELAY)))

        if len(items) <= 4:
            for item in items:
                one(item)
            return
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="queue-send") as pool:
            for _ in pool.map(one, items):
                pass

    def receive(self, max_messages: int, visibility_timeout: float) -> list[QueueItem]:
        if max_messages <= 0:
            return []
        pages = self._ensure().receive_messages(
            messages_per_page=min(max_messages, PEEK_LIMIT),
            max_messages=max_messages,
            visibility_timeout=_seconds(visibility_timeout, 1),
        )
        return [self._item(m) for m in pages]

    def delete(self, item: QueueItem) -> None:
        """Delete a received message; a stale pop receipt or a gone message is a no-op."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            self._ensure().delete_message(item.id, item.pop_receipt)
        except ResourceNotFoundError:
            log.debug("message %s already gone from %s", item.id, self.name)
        except HttpResponseError as exc:
            if exc.status_code != 400:  # 400 PopReceiptMismatch: someone else holds it now
                raise
            log.debug("message %s in %s is held by another receiver", item.id, self.name)

    def extend(self, item: QueueItem, visibility_timeout: float) -> QueueItem:
        """Keep a received message hidden longer; returns it with its new pop receipt."""
        from azure.core.exceptions import HttpResponseError

        try:
            msg = self._ensure().update_message(
                item.id, item.pop_receipt, visibility_timeout=_seconds(visibility_timeout, 0)
            )
        except HttpResponseError as exc:
            if exc.status_code in (400, 404):
                raise NotFound(f"message {item.id} is no longer held by this receiver") from None
            raise
        return replace(
            item,
            pop_receipt=msg.pop_receipt,
            next_visible_at=msg.next_visible_on or item.next_visible_at,
        )

    def peek_all(self) -> list[QueueItem]:
        """Up to 32 visible messages, oldest first, without hiding them (service limit)."""
        return [self._item(m) for m in self._ensure().peek_messages(max_messages=PEEK_LIMIT)]

    def remove(self, message_id: str) -> QueueItem:
        """Take one message out by id (see the module note: meant for the poison queue)."""
        client = self._ensure()
        seen: set[str] = set()
        while True:
            batch = list(
                client.receive_messages(
                    messages_per_page=PEEK_LIMIT, max_messages=PEEK_LIMIT, visibility_timeout=30
                )
            )
            if not batch:
                break
            found = None
            for msg in batch:
                if msg.id == message_id and found is None:
                    found = msg
                else:  # hand the others straight back
                    client.update_message(msg.id, msg.pop_receipt, visibility_timeout=0)
            if found is not None:
                client.delete_message(found.id, found.pop_receipt)
                return self._item(found)
            if all(m.id in seen for m in batch):
                break
            seen.update(m.id for m in batch)
        raise NotFound(f"no visible message {message_id!r} in queue {self.name}")

    def count(self) -> int:
        """Approximate message count (the service's figure; includes hidden messages)."""
        return self._ensure().get_queue_properties().approximate_message_count or 0

    def count_due(self, before: datetime) -> int:
        """The service cannot list hidden messages or their times: :meth:`count` (jobs
        scheduled for later included)."""
        return self.count()

    def move_to(self, item: QueueItem, target: Any, reason: str) -> None:
        """Send ``item``'s body to ``target``, then delete it here; ``reason`` is logged."""
        target.send(item.body)
        self.delete(item)
        log.warning(
            "moved message %s from %s to %s (dequeue count %d): %s",
            item.id,
            self.name,
            target.name,
            item.dequeue_count,
            reason[:2000],
        )


class StorageQueueBackend:
    """Queues of one storage account. ``connection`` is any form of ``AzureWebJobsStorage``
    (see :mod:`.storage`); keyless forms authenticate with ``credential``, by default
    ``DefaultAzureCredential`` (managed identity on Azure)."""

    def __init__(self, connection: str, *, credential: Any = None, **client_kwargs: Any) -> None:
        from azure.storage.queue import QueueServiceClient

        if not connection:
            raise ConfigError("AzureWebJobsStorage is not set")
        self.service = storage_client(
            QueueServiceClient, connection, "queue", credential=credential, **client_kwargs
        )
        self._queues: dict[str, StorageMessageQueue] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StorageQueueBackend({self.service.url!r})"

    def queue(self, name: str) -> StorageMessageQueue:
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                client = self.service.get_queue_client(
                    name,
                    message_encode_policy=TextBase64EncodePolicy(),
                    message_decode_policy=TextBase64DecodePolicy(),
                )
                queue = self._queues[name] = StorageMessageQueue(client, name)
            return queue

    def close(self) -> None:
        self.service.close()
