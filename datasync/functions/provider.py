"""``AppProvider``: how a function reaches its :class:`~datasync.app.App`.

The Functions host imports ``function_app.py`` and then invokes functions; the app is built
from the app settings on the first invocation that needs it (not at import: a bad setting
then fails that invocation with a clear message instead of failing indexing). The embedded
runtime and tests :meth:`install` an app of their own instead."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import App

__all__ = ["AppProvider"]


class AppProvider:
    """Holds one lazily built :class:`App`; calling it returns the app."""

    def __init__(self) -> None:
        self._app: App | None = None
        self._lock = threading.Lock()

    def __call__(self) -> App:
        app = self._app
        if app is not None:
            return app
        with self._lock:
            if self._app is None:
                from ..app import App

                self._app = App.from_settings()
            return self._app

    def install(self, app: App | None) -> None:
        """Use ``app`` from now on (None: build from the settings on next use)."""
        with self._lock:
            self._app = app

    @property
    def installed(self) -> bool:
        return self._app is not None
