"""An embedded Durable Functions backend: history in SQLite, replay through the real SDK.

What the Durable extension and its Azure Storage provider do for a Functions app, this
package does in-process for ``python -m datasync run``:

* :mod:`.store` keeps each instance's history (the event shapes of
  ``azure-functions-durable``), an inbox of events not yet delivered and the activity work
  items, all in one SQLite file (every SQL statement lives there);
* :mod:`.planner` is the pure part of an episode: given the bookkeeping, the delivered event
  and what the orchestrator returned, it assigns ids, applies ``RetryOptions`` the way DTFx's
  RetryInterceptor does and decides the next status (the clock is passed in);
* :mod:`.sdk` holds every use of SDK internals (each checked against
  azure-functions-durable 1.7.0) and the replay protocol: replay schema V3 with the
  extension's timer settings, as the extension of bundle ``[4.*, 5.0.0)`` sends them;
* :mod:`.wording` has the extension's texts: the start conflict, activity and orchestrator
  failure reasons;
* :mod:`.engine` ties them together: leases (several runtimes may share ``DATASYNC_HOME``;
  a lease not renewed expires and another runtime takes the work over), wake-ups and a
  history cache.

Event ids and retry id allocation follow ``shared/notes/durable-local.md`` §C.
"""

from __future__ import annotations

from .engine import DurableEngine, Episode, InstanceStatus
from .events import ACTIVE_STATUSES
from .sdk import (
    ReplaySchema,
    close_durable_client_session,
    fresh_durable_client_session,
)
from .wording import DEDUPE_STATUSES, InstanceExistsError, UnknownOrchestratorError

__all__ = [
    "ACTIVE_STATUSES",
    "DEDUPE_STATUSES",
    "DurableEngine",
    "Episode",
    "InstanceExistsError",
    "InstanceStatus",
    "ReplaySchema",
    "UnknownOrchestratorError",
    "close_durable_client_session",
    "fresh_durable_client_session",
]
