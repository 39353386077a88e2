"""DataSync: scheduled, multi-tenant data syncs on Azure Functions + Durable Functions.

A flow is a class in ``flows/<name>.py``::

    from datasync import flow, Page

    @flow("contacts-to-erp")
    class ContactsToErp:
        def pull(self, ctx, cursor): ...        # -> Page(records, cursor, has_more)
        def transform(self, ctx, records): ...  # optional
        def push(self, ctx, records): ...       # idempotent per ctx.page_key
"""

from __future__ import annotations

from .app import App
from .config import Settings
from .context import FlowContext
from .exceptions import (
    ConfigError,
    DataSyncError,
    DuplicateFlow,
    FlowError,
    FlowLoadError,
    FlowNotFound,
    InvalidDocument,
    MissingConfigKey,
    NotFound,
    PermanentError,
    SecretNotFound,
    TransientError,
    ValidationError,
)
from .models import FlowEntry, Job, RunRecord, Tenant
from .registry import FlowRegistry, Page, flow

__version__ = "0.1.0"

__all__ = [
    "App",
    "ConfigError",
    "DataSyncError",
    "DuplicateFlow",
    "FlowContext",
    "FlowEntry",
    "FlowError",
    "FlowLoadError",
    "FlowNotFound",
    "FlowRegistry",
    "InvalidDocument",
    "Job",
    "MissingConfigKey",
    "NotFound",
    "Page",
    "PermanentError",
    "RunRecord",
    "SecretNotFound",
    "Settings",
    "Tenant",
    "TransientError",
    "ValidationError",
    "__version__",
    "flow",
]
