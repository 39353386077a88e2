"""The console's actions: each one a call of the function the CLI calls (datasync.operations).

An action is described by :class:`Action` (its fields, how to describe it on the
confirmation page) and done by :func:`perform`, which returns the message shown after it.
Errors are the operations' own (``NotFound``, ``ValidationError`` …); the view shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import operations
from ..exceptions import ValidationError

if TYPE_CHECKING:
    from ..app import App

__all__ = ["ACTIONS", "Action", "perform"]


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    title: str
    fields: tuple[str, ...]  # required form fields
    optional: tuple[str, ...] = ()
    danger: bool = False

    def describe(self, params: Mapping[str, str]) -> str:
        target = " / ".join(params[f] for f in (*self.fields, *self.optional) if params.get(f))
        return f"{self.title}: {target}"


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("trigger", "Run now", ("tenant", "flow")),
        Action("pause", "Pause", ("tenant",), ("flow",)),
        Action("resume", "Resume", ("tenant",), ("flow",)),
        Action("terminate", "Terminate", ("tenant", "target"), danger=True),
        Action("rerun", "Rerun", ("id",)),
        Action("poison-replay", "Replay poison message", ("id",)),
        Action("poison-delete", "Delete poison message", ("id",), danger=True),
    )
}


def params_for(action: Action, source: Mapping[str, str]) -> dict[str, str]:
    """The action's parameters from a query or form; ValidationError names a missing one."""
    out: dict[str, str] = {}
    for name in action.fields:
        value = (source.get(name) or "").strip()
        if not value:
            raise ValidationError(f"{action.name}: '{name}' is required")
        out[name] = value[:300]
    for name in action.optional:
        value = (source.get(name) or "").strip()
        if value:
            out[name] = value[:300]
    return out


def perform(app: App, action: Action, p: Mapping[str, str], actor: str) -> str:
    """Do ``action`` as ``actor``; the message to show."""
    handlers: dict[str, Callable[[], str]] = {
        "trigger": lambda: _trigger(app, p, actor),
        "pause": lambda: _pause(app, p, actor),
        "resume": lambda: _resume(app, p, actor),
        "terminate": lambda: _terminate(app, p, actor),
        "rerun": lambda: _rerun(app, p, actor),
        "poison-replay": lambda: (
            f"poison message {p['id']} re-queued as "
            f"{operations.poison_replay(app, p['id'], actor=actor)}"
        ),
        "poison-delete": lambda: (
            f"poison message {operations.poison_delete(app, p['id'], actor=actor).id} deleted"
        ),
    }
    return handlers[action.name]()


def _trigger(app: App, p: Mapping[str, str], actor: str) -> str:
    _tenant, note = operations.trigger(app, p["tenant"], p["flow"], actor=actor)
    text = f"{p['tenant']}/{p['flow']} is due now"
    return f"{text} — but {note}" if note else text


def _pause(app: App, p: Mapping[str, str], actor: str) -> str:
    operations.pause(app, p["tenant"], p.get("flow"), actor=actor)
    return f"{_what(p)} paused" if "flow" not in p else f"{_what(p)} disabled"


def _resume(app: App, p: Mapping[str, str], actor: str) -> str:
    operations.resume(app, p["tenant"], p.get("flow"), actor=actor)
    return f"{_what(p)} resumed: it runs at its next occurrence"


def _terminate(app: App, p: Mapping[str, str], actor: str) -> str:
    done = operations.stop_runs(app, p["tenant"], p["target"], actor=actor)
    if not done:
        return f"nothing to terminate for {p['tenant']}/{p['target']}"
    return "; ".join(f"{t.run.instance_id}: {t.outcome}" for t in done)


def _rerun(app: App, p: Mapping[str, str], actor: str) -> str:
    result = operations.rerun(app, p["id"], actor=actor)
    return f"rerun {result.rerun} of {p['id']} queued as {result.instance_id}"


def _what(p: Mapping[str, str]) -> str:
    return f"{p['tenant']}/{p['flow']}" if p.get("flow") else f"tenant {p['tenant']}"
