"""What travels between the orchestrator and its activities: one dataclass per message.

Each has one encoder (:meth:`Contract.to_json`, camelCase keys) and one decoder
(:meth:`Contract.from_json`, strict: a missing or unknown key is a ``ValidationError``).
The orchestrator passes the JSON form through Durable (its history stores it), the
activities decode it; page records never travel here, only their page-store key.

====================  ==========================  ==========================
activity              input                       output
====================  ==========================  ==========================
``begin_run``         :class:`BeginInput`         :class:`Carry`
``pull_page``         :class:`PullInput`          :class:`PullOutput`
``transform_page``    :class:`TransformInput`     :class:`TransformOutput`
``push_page``         :class:`PushInput`          :class:`PushOutput`
``finish_run``        :class:`FinishInput`        :class:`FinishOutput`
====================  ==========================  ==========================

The orchestration's own input is :class:`RunInput` (the job, plus the :class:`Carry` after a
``continue_as_new``).
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any, ClassVar, TypeVar

from .exceptions import ValidationError

__all__ = [
    "BeginInput",
    "Carry",
    "Contract",
    "FinishInput",
    "FinishOutput",
    "PullInput",
    "PullOutput",
    "PushInput",
    "PushOutput",
    "RunInput",
    "TransformInput",
    "TransformOutput",
]

C = TypeVar("C", bound="Contract")
_TRACE = frozenset({"traceparent"})
Cursor = str | int | None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@cache
def _keys(cls: type) -> tuple[tuple[str, str, bool, type[Contract] | None], ...]:
    """(field, json key, required, nested contract class) per field of ``cls``."""
    hints = {f.name: f for f in dataclasses.fields(cls)}
    nested: dict[str, type[Contract]] = getattr(cls, "_nested", {})
    return tuple(
        (
            name,
            _camel(name),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            nested.get(name),
        )
        for name, f in hints.items()
    )


@cache
def _quiet_defaults(cls: type) -> dict[str, Any]:
    """Default value per field of ``cls._quiet`` (written only when it differs)."""
    quiet: frozenset[str] = getattr(cls, "_quiet", frozenset())
    return {f.name: f.default for f in dataclasses.fields(cls) if f.name in quiet}


class Contract:
    """Mixin for the message dataclasses: camelCase JSON in and out.

    Fields named in ``_quiet`` are left out of the JSON while they hold their default (the
    decoder restores it): the optional additions (``traceparent``, ``pipeline``, …) leave
    every message of a plain run byte for byte as it was before them."""

    _nested: ClassVar[dict[str, type[Contract]]] = {}
    _quiet: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        klass: type = type(self)  # a plain type: mypy does not see type[C] as Hashable
        quiet = _quiet_defaults(klass)
        for name, key, _, nested in _keys(klass):
            value = getattr(self, name)
            if name in quiet and value == quiet[name]:
                continue
            out[key] = value.to_json() if nested is not None and value is not None else value
        return out

    @classmethod
    def from_json(cls: type[C], data: Any) -> C:
        if not isinstance(data, dict):
            raise ValidationError(
                f"{cls.__name__}: expected a JSON object, got {type(data).__name__}"
            )
        klass: type = cls  # a plain type: mypy does not see type[C] as Hashable
        keys = _keys(klass)
        unknown = set(data) - {key for _, key, _, _ in keys}
        if unknown:
            raise ValidationError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, key, required, nested in keys:
            if key not in data:
                if required:
                    raise ValidationError(f"{cls.__name__}: missing {key!r}")
                continue
            value = data[key]
            kwargs[name] = (
                nested.from_json(value) if nested is not None and value is not None else value
            )
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True, slots=True)
class PullOutput(Contract):
    """``key`` names the staged records in the page store (None for an empty page)."""

    key: str | None
    count: int
    cursor: Cursor
    has_more: bool
    state: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Carry(Contract):
    """Where a run stands: cursor, ``ctx.state`` and the run's cumulative counters."""

    _nested: ClassVar[dict[str, type[Contract]]] = {"prefetched": PullOutput}
    _quiet: ClassVar[frozenset[str]] = frozenset({"pipeline", "transform", "prefetched"})

    cursor: Cursor = None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    pages: int = 0
    records_in: int = 0
    records_out: int = 0
    pipeline: bool = True
    """Pull page N+1 while page N is transformed and pushed (the flow class's ``pipeline``
    attribute, default true; ``begin_run`` reports it, ``continue_as_new`` carries it)."""
    transform: bool = True
    """Whether the flow has a ``transform`` (``begin_run`` reports it): without one, the
    pulled page is pushed as staged, with no ``transform_page`` activity in between."""
    prefetched: PullOutput | None = None
    """The next page, already pulled (its state merged), when a generation ended while it
    was in flight: the next generation transforms and pushes it without pulling again."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunInput(Contract):
    """The ``sync_flow`` orchestration's input: the job, and after ``continue_as_new``
    the carried position."""

    _nested: ClassVar[dict[str, type[Contract]]] = {"carry": Carry}
    _quiet: ClassVar[frozenset[str]] = _TRACE

    tenant_id: str
    flow_name: str
    scheduled_for: str
    pages_per_generation: int = 10
    carry: Carry | None = None
    traceparent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class BeginInput(Contract):
    _quiet: ClassVar[frozenset[str]] = _TRACE

    tenant_id: str
    flow_name: str
    run_id: str
    scheduled_for: str
    traceparent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PullInput(Contract):
    _quiet: ClassVar[frozenset[str]] = _TRACE

    tenant_id: str
    flow_name: str
    run_id: str
    page_key: str
    cursor: Cursor = None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    traceparent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TransformInput(Contract):
    _quiet: ClassVar[frozenset[str]] = _TRACE

    tenant_id: str
    flow_name: str
    run_id: str
    page_key: str
    key: str
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    traceparent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TransformOutput(Contract):
    key: str | None
    count: int
    state: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class PushInput(Contract):
    """Push the staged page ``key`` (if ``count``), then checkpoint cursor, state and the
    run's cumulative counters."""

    _quiet: ClassVar[frozenset[str]] = _TRACE

    tenant_id: str
    flow_name: str
    run_id: str
    page_key: str
    key: str | None
    count: int
    cursor: Cursor
    pages: int
    records_in: int
    records_out: int
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    traceparent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PushOutput(Contract):
    state: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class FinishInput(Contract):
    _quiet: ClassVar[frozenset[str]] = _TRACE

    tenant_id: str
    flow_name: str
    run_id: str
    status: str
    error: str | None = None
    traceparent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FinishOutput(Contract):
    status: str
