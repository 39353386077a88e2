"""Tenant documents and jobs (run records: :mod:`datasync.records`).

Validation is strict (no coercion of ``"yes"`` to ``true``, of numbers to strings or of
dates without an offset). :func:`parse_tenant` / :func:`parse_tenants` turn every problem
into short messages that name the tenant and the camelCase document path, e.g.
``tenant acme: flows[0].cron: cron '0 * * * *' has 5 fields; ...``.

Unknown keys are errors (``extra="forbid"``): the message names the key's path and
suggests the closest known key (``tenant acme: flows[0].crон: unknown key; did you mean
'cron'?``), so a typo such as ``"pasued": true`` is never silently ignored.
``Tenant.to_doc()`` omits ``nextRunUtc`` when it is unset (``None``), as "missing"
already means "compute from now".
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .exceptions import InvalidDocument, NotFound, ValidationError
from .names import (
    format_utc,
    instance_id,
    parse_utc,
    rerun_instance_id,
    validate_flow_name,
    validate_tenant_id,
)
from .records import RUN_STATUSES, RunRecord
from .schedule import (
    DEFAULT_OPTIONS,
    MAX_CATCH_UP_WINDOW,
    MAX_JITTER,
    ScheduleOptions,
    revision,
    validate_cron,
    validate_timezone,
)

__all__ = [
    "RUN_STATUSES",
    "FlowEntry",
    "InvalidDocuments",
    "Job",
    "RunRecord",
    "Tenant",
    "parse_schedule_options",
    "parse_tenant",
    "parse_tenants",
]


_CONFIG = ConfigDict(
    strict=True,
    extra="forbid",
    alias_generator=to_camel,
    validate_by_name=True,
    validate_by_alias=True,
    serialize_by_alias=True,
    validate_assignment=True,
)


class _FieldProblem(ValueError):
    """Raised by cross-field checks to report a problem at a precise document path."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        self.loc = loc
        super().__init__(message)


def _show(value: Any) -> str:
    """A value as a user would recognise it from JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_utc(value)
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("time has no UTC offset")
        return parse_utc(value.isoformat())
    raise ValueError(f"expected an ISO 8601 time with an offset, got {_show(value)}")


SCHEDULE_KEYS = ("jitter", "catchUp", "catchUpWindow", "startAt", "endAt", "pausedUntil")
"""The flow-entry keys of :class:`~datasync.schedule.ScheduleOptions` (document names)."""


class _ScheduleFields(BaseModel):
    """The schedule options of a flow entry (shared by :class:`FlowEntry` and the scanner,
    which validates the raw options of a due-query row with it)."""

    model_config = _CONFIG

    jitter: int = Field(default=0, ge=0, le=MAX_JITTER)
    catch_up: Literal["latest", "all", "none"] = "latest"
    catch_up_window: int | None = Field(default=None, ge=1, le=MAX_CATCH_UP_WINDOW)
    start_at: datetime | None = None
    end_at: datetime | None = None
    paused_until: datetime | None = None

    @field_validator("start_at", "end_at", "paused_until", mode="before")
    @classmethod
    def _times(cls, v: Any) -> datetime | None:
        return _aware(v)

    @model_validator(mode="after")
    def _bounds(self) -> _ScheduleFields:
        if self.start_at and self.end_at and self.end_at < self.start_at:
            raise _FieldProblem(("endAt",), "must not be before startAt")
        if self.catch_up_window is not None and self.catch_up != "all":
            raise _FieldProblem(("catchUpWindow",), "is only used with catchUp 'all'")
        return self

    def schedule_options(self) -> ScheduleOptions:
        """The validated options as the scheduler uses them."""
        return ScheduleOptions(
            jitter=self.jitter,
            catch_up=self.catch_up,
            catch_up_window=self.catch_up_window,
            start_at=self.start_at,
            end_at=self.end_at,
            paused_until=self.paused_until,
        )


class FlowEntry(_ScheduleFields):
    """One flow of a tenant, as in the document's ``flows`` list."""

    model_config = _CONFIG

    name: str
    enabled: bool = True
    cron: str
    next_run_utc: datetime | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    overlap: Literal["skip", "queue", "bufferOne", "allow"] = "skip"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validate_flow_name(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        validate_cron(v)
        return v

    @field_validator("next_run_utc", mode="before")
    @classmethod
    def _next_run(cls, v: Any) -> datetime | None:
        return _aware(v)

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready, camelCase; ``nextRunUtc`` as ``...Z`` or omitted when unset; schedule
        options only when set (times as ``...Z``)."""
        doc = self.model_dump(mode="json", by_alias=True)
        if self.next_run_utc is None:
            doc.pop("nextRunUtc", None)
        else:
            doc["nextRunUtc"] = format_utc(self.next_run_utc)
        defaults = {"jitter": 0, "catchUp": "latest"}
        for key in SCHEDULE_KEYS:
            if doc.get(key) is None or doc.get(key) == defaults.get(key):
                doc.pop(key, None)
        for key, value in (
            ("startAt", self.start_at),
            ("endAt", self.end_at),
            ("pausedUntil", self.paused_until),
        ):
            if value is not None:
                doc[key] = format_utc(value)
        return doc

    def revision(self, tenant: Tenant) -> str:
        """This flow's schedule revision in ``tenant`` (see :func:`datasync.schedule.revision`)."""
        return revision(
            self.cron,
            tenant.timezone,
            self.schedule_options(),
            enabled=self.enabled,
            paused=tenant.paused,
        )


class Tenant(BaseModel):
    """A tenant document (Cosmos container ``tenants``, partition key ``/tenantId``)."""

    model_config = _CONFIG

    id: str
    type: Literal["Tenant"] = "Tenant"
    tenant_id: str
    name: str = ""
    timezone: str = "UTC"
    paused: bool = False
    max_concurrent_runs: int = Field(default=2, ge=1)
    flows: list[FlowEntry] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _fill_ids(cls, data: Any) -> Any:
        if isinstance(data, dict):
            tid_key = "tenantId" if "tenantId" in data else "tenant_id"
            if "id" in data and tid_key not in data:
                data = {**data, "tenantId": data["id"]}
            elif "id" not in data and tid_key in data:
                data = {**data, "id": data[tid_key]}
        return data

    @field_validator("id", "tenant_id")
    @classmethod
    def _tenant(cls, v: str) -> str:
        return validate_tenant_id(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        validate_timezone(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Tenant:
        if self.id != self.tenant_id:
            raise _FieldProblem(
                ("tenantId",), f"must equal id ({self.id!r}), got {self.tenant_id!r}"
            )
        seen: set[str] = set()
        for i, entry in enumerate(self.flows):
            if entry.name in seen:
                raise _FieldProblem(("flows", i, "name"), f"duplicate flow name {entry.name!r}")
            seen.add(entry.name)
        return self

    def flow(self, name: str) -> FlowEntry:
        """The flow entry called ``name``; :class:`NotFound` when absent."""
        for entry in self.flows:
            if entry.name == name:
                return entry
        raise NotFound(f"tenant {self.tenant_id} has no flow {name!r}")

    def to_doc(self) -> dict[str, Any]:
        """The document as stored: camelCase keys, ``...Z`` times, unknown keys kept."""
        doc = self.model_dump(mode="json", by_alias=True)
        doc["flows"] = [entry.to_doc() for entry in self.flows]
        return doc


# -- turning pydantic errors into short messages ---------------------------------------------


def _printable(key: str, limit: int = 60) -> str:
    """A key as it can be shown on any terminal: unprintable characters (lone surrogates,
    control characters) as ``\\uXXXX``, long keys shortened."""
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in key)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{_printable(part)}" if out else _printable(part)
    return out


# Latin look-alikes (Cyrillic and Greek letters that render like ASCII ones), so that a key
# typed with a wrong keyboard layout still gets its suggestion.
_LOOKALIKES = str.maketrans(
    "асеорхуікмнтвзАВСЕНІКМОРТХУαεικνορτυχΑΒΕΗΙΚΜΝΟΡΤΥΧ",
    "aceopxyikmhtbzABCEHIKMOPTXYaeiknoptuxABEHIKMNOPTYX",
)


def _fold(key: str) -> str:
    """``key`` reduced for comparison: look-alikes to ASCII, accents dropped, no case."""
    decomposed = unicodedata.normalize("NFKD", key.translate(_LOOKALIKES))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The document model that holds the last key of ``loc`` (``flows[0].x``: FlowEntry)."""
    model: type[BaseModel] = Tenant
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)),
            None,
        )
        inner = getattr(field.annotation, "__args__", (field.annotation,)) if field else ()
        nested = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    """``unknown key; did you mean 'cron'?`` (or the known keys when nothing is close)."""
    model = _model_at(loc)
    key = loc[-1] if loc else ""
    if model is None or not isinstance(key, str):
        return "unknown key"
    known = [f.alias or n for n, f in model.model_fields.items()]
    folded = {_fold(k): k for k in known}
    close = difflib.get_close_matches(_fold(key), list(folded), n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {folded[close[0]]!r}?"
    return f"unknown key (known keys: {', '.join(sorted(known))})"


_EXPECTED = {
    "bool_type": "true or false",
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "list_type": "a list",
    "datetime_type": "an ISO 8601 time with an offset",
}


def _message(err: Any) -> tuple[tuple[str | int, ...], str]:
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    got = _show(err.get("input"))
    if kind == "value_error" and isinstance(ctx.get("error"), BaseException):
        exc = ctx["error"]
        return (loc + exc.loc if isinstance(exc, _FieldProblem) else loc), str(exc)
    if kind in _EXPECTED:
        return loc, f"expected {_EXPECTED[kind]}, got {got}"
    if kind == "missing":
        return loc, "required"
    if kind == "extra_forbidden":
        return loc, _unknown_key(loc)
    if kind == "literal_error":
        return loc, f"expected {ctx.get('expected')}, got {got}"
    if kind == "greater_than_equal":
        return loc, f"must be at least {ctx.get('ge')}, got {got}"
    if kind == "less_than_equal":
        return loc, f"must be at most {ctx.get('le')}, got {got}"
    if kind == "int_from_float" or kind == "int_parsing":
        return loc, f"expected an integer, got {got}"
    return loc, str(err.get("msg", "invalid"))


def _label(obj: dict[str, Any], label: str | None) -> str:
    for key in ("id", "tenantId"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            try:
                return validate_tenant_id(value)
            except ValidationError:
                return _show(value)
    return label or "?"


def _unknown_flows(obj: dict[str, Any], known: Collection[str]) -> list[tuple[str, str]]:
    flows = obj.get("flows")
    if not isinstance(flows, list):
        return []
    names = sorted(known)
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "none"
    out = []
    for i, entry in enumerate(flows):
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name not in known:
            try:
                validate_flow_name(name)
            except ValidationError:
                continue  # already reported as a bad name
            out.append((f"flows[{i}].name", f"unknown flow {name!r} (registered: {shown})"))
    return out


def _flow_index(problem: tuple[str, str]) -> int:
    match = re.match(r"flows\[(\d+)\]", problem[0])
    return int(match.group(1)) if match else -1


MAX_DEPTH = 32  # nesting levels of a document, ``config`` objects included


def _unusable_text(obj: Any) -> list[tuple[str, str]]:
    """Problems no store could keep: a lone surrogate in a key or string (not valid
    Unicode, so not writable as UTF-8) and nesting deeper than :data:`MAX_DEPTH`.
    Walked without recursion, so any depth is reported rather than crashing."""
    problems: list[tuple[str, str]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), obj)]
    while stack and len(problems) < 10:
        loc, node = stack.pop()
        if len(loc) > MAX_DEPTH:
            problems.append((_path(loc[:MAX_DEPTH]), f"nested more than {MAX_DEPTH} levels deep"))
            continue
        if isinstance(node, str):
            if not _is_unicode(node):
                problems.append((_path(loc), "text is not valid Unicode (a lone surrogate)"))
        elif isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and not _is_unicode(key):
                    problems.append((_path((*loc, key)), "key is not valid Unicode"))
                else:
                    stack.append(((*loc, key), value))
        elif isinstance(node, list):
            stack.extend(((*loc, i), value) for i, value in enumerate(node))
    return sorted(problems)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_tenant(
    obj: Any, *, known_flows: Collection[str] | None = None, label: str | None = None
) -> Tenant:
    """Validate one tenant document; every problem at once in an :class:`InvalidDocument`.

    The error names the tenant by the document's ``id``/``tenantId`` when readable, else
    by ``label`` (e.g. ``"#2"``); paths are camelCase document paths (``flows[0].cron``)."""
    if not isinstance(obj, dict):
        raise InvalidDocument(label or "?", [("", f"expected a JSON object, got {_show(obj)}")])
    problems = _unusable_text(obj)
    if problems:  # before pydantic: it would fail on these without a path
        raise InvalidDocument(_label(obj, label), problems)
    tenant: Tenant | None = None
    try:
        tenant = Tenant.model_validate(obj)
    except pydantic.ValidationError as exc:
        seen: set[tuple[str, str]] = set()
        for err in exc.errors(include_url=False):
            loc, msg = _message(err)
            item = (_path(loc), msg)
            if item not in seen:
                seen.add(item)
                problems.append(item)
        if ("id", "required") in seen:  # neither id nor tenantId: say it once
            problems = [p for p in problems if p != ("tenantId", "required")]
            problems = [
                ("id", "required (id or tenantId)") if p == ("id", "required") else p
                for p in problems
            ]
        for key in ("id", "tenantId"):  # a key filled in from the other: say it once
            if key not in obj and (key != "tenantId" or "tenant_id" not in obj):
                problems = [p for p in problems if p[0] != key or p[1].startswith("required")]
    if known_flows is not None:
        problems += _unknown_flows(obj, known_flows)
    problems.sort(key=_flow_index)  # stable: top-level first, then flows in order
    if problems or tenant is None:
        raise InvalidDocument(_label(obj, label), problems or [("", "invalid document")])
    return tenant


class InvalidDocuments(InvalidDocument):
    """Several documents were invalid (from :func:`parse_tenants`).

    ``documents`` holds one :class:`InvalidDocument` per bad document; ``str(err)`` has one
    line per problem across all of them (``tenant acme: flows[0].cron: ...``). ``tenant``,
    ``path`` and ``errors`` describe the first document, as for an ``InvalidDocument``."""

    def __init__(self, documents: list[InvalidDocument]) -> None:
        self.documents = documents
        first = documents[0]
        self.errors = first.errors
        ValidationError.__init__(
            self, "\n".join(str(d) for d in documents), tenant=first.tenant, path=first.path
        )


def parse_tenants(obj: Any, *, known_flows: Collection[str] | None = None) -> list[Tenant]:
    """Validate a document or a list of documents, all of them before failing.

    Raises :class:`InvalidDocuments` (an :class:`InvalidDocument`) listing every problem of
    every document; a tenant id used twice in the input is a problem too. Documents
    without a readable id are labelled ``#n`` (n counts from 1)."""
    docs = [obj] if isinstance(obj, dict) else obj
    if not isinstance(docs, list):
        raise InvalidDocuments(
            [
                InvalidDocument(
                    "?", [("", f"expected a JSON object or a list of objects, got {_show(obj)}")]
                )
            ]
        )
    tenants: list[Tenant] = []
    bad: list[InvalidDocument] = []
    first_seen: dict[str, int] = {}
    for n, doc in enumerate(docs, start=1):
        try:
            tenant = parse_tenant(doc, known_flows=known_flows, label=f"#{n}")
        except InvalidDocument as exc:
            bad.append(exc)
            continue
        if tenant.tenant_id in first_seen:
            bad.append(
                InvalidDocument(
                    tenant.tenant_id,
                    [
                        (
                            "id",
                            f"duplicate tenant id (also document #{first_seen[tenant.tenant_id]})",
                        )
                    ],
                )
            )
            continue
        first_seen[tenant.tenant_id] = n
        tenants.append(tenant)
    if bad:
        raise InvalidDocuments(bad)
    return tenants


# -- schedule options of a raw due-query row ---------------------------------------------


def parse_schedule_options(raw: Any, where: str) -> ScheduleOptions:
    """Validate the schedule options of a stored flow entry (``raw``: the entry's
    :data:`SCHEDULE_KEYS`, or None). ``where`` prefixes the message
    (``tenant acme: flows[0]``): :class:`ValidationError` ``tenant acme: flows[0].jitter: …``."""
    if not raw:
        return DEFAULT_OPTIONS
    try:
        options = _ScheduleFields.model_validate(raw).schedule_options()
        return DEFAULT_OPTIONS if options == DEFAULT_OPTIONS else options
    except pydantic.ValidationError as exc:
        loc, msg = _message(exc.errors(include_url=False)[0])
        raise ValidationError(f"{where}.{_path(loc)}: {msg}") from None


# -- jobs -------------------------------------------------------------------


_JOB_KEYS = ("tenantId", "flowName", "scheduledFor")
_JOB_OPTIONAL = ("revision", "traceparent", "rerun", "note")
_REVISION = re.compile(r"[0-9a-f]{1,64}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_MAX_NOTE = 500


def _optional(data: dict[str, Any]) -> dict[str, Any]:
    """The optional job keys, validated (``revision``, ``traceparent``, ``rerun``, ``note``)."""
    out: dict[str, Any] = {}
    rev = data.get("revision")
    if rev is not None:
        if not isinstance(rev, str) or not _REVISION.fullmatch(rev):
            raise ValidationError(
                f"job message: revision must be 1-64 hex digits, got {_show(rev)}"
            )
        out["revision"] = rev
    trace = data.get("traceparent")
    if trace is not None:
        if not isinstance(trace, str) or not _TRACEPARENT.fullmatch(trace):
            raise ValidationError(
                f"job message: traceparent must be a W3C traceparent, got {_show(trace)}"
            )
        out["traceparent"] = trace
    rerun = data.get("rerun")
    if rerun is not None:
        if isinstance(rerun, bool) or not isinstance(rerun, int) or not 1 <= rerun <= 9999:
            raise ValidationError(f"job message: rerun must be 1-9999, got {_show(rerun)}")
        out["rerun"] = rerun
    note = data.get("note")
    if note is not None:
        if not isinstance(note, str):
            raise ValidationError(f"job message: note must be a string, got {_show(note)}")
        out["note"] = note[:_MAX_NOTE]
    return out


@dataclass(frozen=True)
class Job:
    """One queued run: ``{"tenantId", "flowName", "scheduledFor"}`` on ``flow-jobs``, plus
    optional ``revision`` (the flow's schedule revision when the scheduler enqueued it),
    ``traceparent`` (W3C, carried opaque), ``rerun`` (N of ``rerun ID``) and ``note`` (why
    the starter deferred it) — absent when None.

    The constructor trusts its caller; :meth:`from_message` validates everything."""

    tenant_id: str
    flow_name: str
    scheduled_for: datetime
    revision: str | None = None
    traceparent: str | None = None
    rerun: int | None = None
    note: str | None = field(default=None, compare=False)  # an annotation, not identity

    def to_message(self) -> str:
        data: dict[str, Any] = {
            "tenantId": self.tenant_id,
            "flowName": self.flow_name,
            "scheduledFor": format_utc(self.scheduled_for),
        }
        for key in _JOB_OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_message(cls, text: str | bytes) -> Job:
        """Parse a queue message; :class:`ValidationError` says what is wrong with it."""
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError("job message is not UTF-8 text") from None
        if not isinstance(text, str):
            raise ValidationError(f"job message must be text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"job message is not valid JSON: {exc.msg} at position {exc.pos}"
            ) from None
        if not isinstance(data, dict):
            raise ValidationError(f"job message must be a JSON object, got {_show(data)}")
        missing = [k for k in _JOB_KEYS if k not in data]
        if missing:
            raise ValidationError(f"job message is missing {', '.join(map(repr, missing))}")
        unknown = sorted(k for k in data if k not in _JOB_KEYS and k not in _JOB_OPTIONAL)
        if unknown:
            raise ValidationError(
                f"job message has unknown key {_printable(str(unknown[0]))!r} "
                f"(known: {', '.join(_JOB_KEYS + _JOB_OPTIONAL)})"
            )
        try:
            tenant = validate_tenant_id(data["tenantId"])
            flow = validate_flow_name(data["flowName"])
            when = parse_utc(data["scheduledFor"])
        except ValidationError as exc:
            raise ValidationError(f"job message: {exc}") from None
        return cls(tenant, flow, when, **_optional(data))

    @property
    def instance_id(self) -> str:
        """``Workflow-<tenant>--<flow>-<yyyyMMddTHHmmssZ>`` (+ ``-rerun<N>`` for a rerun)."""
        base = instance_id(self.tenant_id, self.flow_name, self.scheduled_for)
        return base if self.rerun is None else rerun_instance_id(base, self.rerun)
