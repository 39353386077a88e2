"""W3C trace context helpers and the run span's deterministic id (no SDK import).

The run span is the parent of every page span, but the activities that emit page spans
and the ``finish_run`` activity that emits the run span itself may run in different
processes, at different times. Its span id is therefore derived, not random:
``sha256("<trace id>/<instance id>")``'s first 8 bytes — every activity of the run computes
the same id from the ``traceparent`` it was given and its instance id.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["format_traceparent", "parse_traceparent", "run_span_id"]

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def parse_traceparent(value: object) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a version-00 ``traceparent``; None when
    ``value`` is not one (or has an all-zero id)."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    trace_id, span_id, flags = (int(part, 16) for part in match.groups())
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, flags


def format_traceparent(trace_id: int, span_id: int, flags: int = 1) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def run_span_id(trace_id: int, instance_id: str) -> int:
    """The run span's id: the same for every activity of the run, in any process."""
    digest = hashlib.sha256(f"{trace_id:032x}/{instance_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1
