"""The app's blueprints, registered by ``function_app.py``.

=========================  ==================  =========================================
function                   trigger             does
=========================  ==================  =========================================
``schedule_flows``         timer               enqueue due jobs (scanner.scan_and_enqueue)
``start_flow``             queue flow-jobs     start one ``sync_flow`` per job (dedupe)
``sync_flow``              orchestration       page loop, checkpoints, continue_as_new
``begin_run`` …            activity            one flow step each (datasync.steps)
=========================  ==================  =========================================
"""
from __future__ import annotations

from .activities import bp as activities
from .orchestrator import bp as orchestrator
from .scheduler import bp as scheduler
from .starter import bp as starter

__all__ = ["BLUEPRINTS"]

BLUEPRINTS = (scheduler, starter, orchestrator, activities)
