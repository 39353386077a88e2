"""The Functions app, as ``function_app.py`` builds it: :func:`build_function_app`.

=========================  ==================  =========================================
function                   trigger             does
=========================  ==================  =========================================
``schedule_flows``         timer               enqueue due jobs (:mod:`datasync.scanner`)
``start_flow``             queue flow-jobs     admit the job, start ``sync_flow``
                                               (:mod:`datasync.admission`)
``sync_flow``              orchestration       page loop, checkpoints, continue_as_new
``begin_run`` …            activity            one run step each (:mod:`datasync.steps`)
=========================  ==================  =========================================

Each module has a ``blueprint(...)`` factory, so every ``function_app.py`` import gets its
own functions bound to its own :class:`AppProvider`.
"""

from __future__ import annotations

import azure.durable_functions as df

from .. import telemetry
from ..redact import install_redaction
from . import activities, console, orchestrator, scheduler, starter
from .provider import AppProvider

__all__ = ["AppProvider", "build_function_app"]


def build_function_app(provider: AppProvider) -> df.DFApp:
    """The ``DFApp`` with every DataSync function, each reaching its app via ``provider``.

    Also installs log redaction for the whole process (the worker's handlers included)."""
    install_redaction()
    telemetry.setup_from_env()  # idempotent; off unless a telemetry setting is set
    app = df.DFApp()
    for blueprint in (
        scheduler.blueprint(provider),
        starter.blueprint(provider),
        orchestrator.blueprint(),
        activities.blueprint(provider),
        console.blueprint(provider),
    ):
        app.register_functions(blueprint)
    return app
