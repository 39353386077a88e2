"""Secret values never leak: a process-wide registry of values and the tools that mask them.

- :func:`register_secret` adds a value (``ctx.secret`` does it for every value it reads).
  Values shorter than 4 characters are ignored: masking ``"ab"`` everywhere would mangle
  ordinary output and protect little.
- :func:`redact` replaces every registered value with ``***`` wherever the text holds it
  raw or in any form the standard library and httpx produce: percent-encoded with any safe
  set (``quote``, ``quote_plus``, httpx's path, query, params and userinfo encodings, also
  when they leave a ``%XX`` already in the value as it is), JSON-escaped (either
  ``ensure_ascii``), ``repr()`` of the value or of its UTF-8 bytes, and these nested in
  each other up to three levels (a JSON-escaped ``repr`` of a percent-encoded value).
  Overlapping values are masked as one span, so a value containing another is masked whole.
- :class:`RedactingFilter` masks log records — message, ``%`` args, tracebacks and stack
  info; :func:`install_redaction` applies it to every record the process makes (a log
  record factory) and to the current handlers. The function app calls it at import, so it
  covers the Functions worker's handlers too. Custom ``extra`` attributes of records are
  not inspected.
- :class:`RedactingLoggerAdapter` (``ctx.log``) masks before the record is even made, so
  it is safe without the filter; tracebacks it logs are inlined in the message, redacted.
- :func:`redact_exception` gives a short, redacted, capped error text for run records.

How it stays complete and fast: instead of listing the encodings of each value, the text
is *decoded* into views (percent-decoded, ``+``-as-space, backslash-unescaped — each only
when the text holds ``%``, ``+`` or ``\\``, and composed), each with a map back to the
original characters; a value found in any view masks the original span. Values are
looked up through an index of fixed-length substrings sampled at a fixed stride (the
stride grows with the value's length), so the cost per text depends on the text's length,
not on how many values are registered, and registering a value costs time in its size.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from bisect import bisect_right
from collections.abc import Callable, Container, Iterator, MutableMapping
from typing import Any

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "RedactingFilter",
    "RedactingLoggerAdapter",
    "install_redaction",
    "redact",
    "redact_exception",
    "register_secret",
]

MIN_SECRET_LENGTH = 4
MASK = "***"

# -- views: the text decoded, with a map back to the original -------------------------

# A token: one decoded character and the span ``[start, end)`` of the text it came from.
_Token = tuple[int, int, str]

_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*")  # a run of escaped bytes
_ESCAPE = re.compile(r"\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[\\'\"/abfnrtv])")
_SIMPLE = dict(zip("\\'\"/abfnrtv", "\\'\"/\a\b\f\n\r\t\v", strict=True))
_INTRODUCERS = frozenset("%+\\")
_MAX_DEPTH = 3  # views of views: a JSON-escaped repr of a percent-encoded value
_MAX_VIEWS = 12


def _utf8(run: list[tuple[int, int]], width: int, stray: Callable[[int], str]) -> list[_Token]:
    """Adjacent escaped bytes ``(start, byte)``, each ``width`` characters of text,
    decoded as UTF-8; a byte that is not part of valid UTF-8 becomes ``stray(byte)``."""
    if len(run) == 1 and run[0][1] < 0x80:
        start, byte = run[0]
        return [(start, start + width, chr(byte))]
    tokens: list[_Token] = []
    i = 0
    for ch in bytes(b for _, b in run).decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid byte, escaped by the codec
            ch, size = stray(code - 0xDC00), 1
        else:
            size = 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
        start = run[i][0]
        tokens.append((start, start + size * width, ch))
        i += size
    return tokens


def _lone(byte: int) -> str:
    return chr(0xDC00 + byte)  # a lone surrogate: never equal to a real character


def _relevant(tokens: list[_Token], alphabet: Container[str] | None) -> list[_Token]:
    """The tokens whose character some registered value holds (a value can only be found
    across those: where it holds none, it is in the undecoded text as well), and those
    that start an escape a further decoding needs (``\\`` of a percent-encoded JSON)."""
    if alphabet is None:
        return tokens
    return [t for t in tokens if t[2] in alphabet or t[2] in _INTRODUCERS]


_HEX = "0123456789abcdefABCDEF"
_BYTES = {  # "3a" / "3A" -> ":"; a byte past ASCII alone is not a character
    h + lo: chr(int(h + lo, 16)) if int(h + lo, 16) < 0x80 else _lone(int(h + lo, 16))
    for h in _HEX
    for lo in _HEX
}


def _percent_tokens(text: str, alphabet: Container[str] | None) -> list[_Token]:
    """``%XX`` escapes (any case), runs of them decoded as UTF-8: ``quote()`` with any
    safe set, httpx URLs."""
    tokens: list[_Token] = []
    for match in _PERCENT.finditer(text):
        start, end = match.span()
        if end - start == 3:  # the common case: one escaped byte
            ch = _BYTES[text[start + 1 : end]]
            if alphabet is None or ch in alphabet or ch in _INTRODUCERS:
                tokens.append((start, end, ch))
        else:
            run = [(i, int(text[i + 1 : i + 3], 16)) for i in range(start, end, 3)]
            tokens += _relevant(_utf8(run, 3, _lone), alphabet)
    return tokens


def _escape_tokens(text: str, alphabet: Container[str] | None) -> list[_Token]:
    """Backslash escapes of ``json.dumps`` (either mode; surrogate pairs joined) and of
    ``repr()`` of a ``str`` (``\\xNN`` a code point) or of ``bytes`` (``\\xNN`` runs that
    are UTF-8: ``repr()`` of a ``str`` never escapes a UTF-8 lead byte, so no clash)."""
    tokens: list[_Token] = []
    run: list[tuple[int, int]] = []
    for match in _ESCAPE.finditer(text):
        start, end, kind = match.start(), match.end(), text[match.start() + 1]
        if run and (kind != "x" or run[-1][0] + 4 != start):
            tokens += _utf8(run, 4, chr)
            run = []
        if kind == "x":
            run.append((start, int(text[start + 2 : end], 16)))
            continue
        if kind not in "uU":
            tokens.append((start, end, _SIMPLE[kind]))
            continue
        code = int(text[start + 2 : end], 16)
        if code > 0x10FFFF:
            continue
        last = tokens[-1] if tokens else None
        if (  # the low half of a surrogate pair right after its high half: one character
            0xDC00 <= code <= 0xDFFF
            and last is not None
            and last[1] == start
            and 0xD800 <= ord(last[2]) <= 0xDBFF
            and last[1] - last[0] == 6
        ):
            pair = 0x10000 + ((ord(last[2]) - 0xD800) << 10) + (code - 0xDC00)
            tokens[-1] = (last[0], end, chr(pair))
        else:
            tokens.append((start, end, chr(code)))
    if run:
        tokens += _utf8(run, 4, chr)
    return _relevant(tokens, alphabet)


class _View:
    """A decoded ``text``: character ``v`` is one decoded escape when ``v`` is in
    ``marks`` (it came from ``parent`` characters ``[starts[k], ends[k])``), else a
    literal copied one to one."""

    __slots__ = ("ends", "family", "marks", "parent", "produced", "starts", "text")

    def __init__(
        self,
        text: str,
        parent: _View | None = None,
        marks: list[int] | None = None,
        starts: list[int] | None = None,
        ends: list[int] | None = None,
    ) -> None:
        self.text, self.parent = text, parent
        self.marks, self.starts, self.ends = marks or [], starts or [], ends or []
        self.family = ""  # the trigger of the decoder that made it ("%" or "\\")
        self.produced: set[str] = set()  # the escape starts its decoding produced

    def _source(self, v: int) -> tuple[int, int]:
        k = bisect_right(self.marks, v) - 1
        if k >= 0 and self.marks[k] == v:
            return self.starts[k], self.ends[k]
        at = v if k < 0 else self.ends[k] + (v - self.marks[k] - 1)
        return at, at + 1

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The span of the root text that ``text[start:end]`` was decoded from."""
        view: _View = self
        while view.parent is not None:
            start, end = view._source(start)[0], view._source(end - 1)[1]
            view = view.parent
        return start, end


def _decoded(view: _View, source: str, tokens: list[_Token]) -> _View | None:
    """``source`` (``view.text``, or a same-length variant of it) with ``tokens``
    replaced by their characters."""
    if not tokens:
        return None
    pieces: list[str] = []
    marks: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    produced: set[str] = set()
    last = size = 0
    for start, end, ch in tokens:
        if ch in _INTRODUCERS:
            produced.add(ch)
        if start > last:
            pieces.append(source[last:start])
            size += start - last
        pieces.append(ch)
        marks.append(size)
        starts.append(start)
        ends.append(end)
        size += 1
        last = end
    pieces.append(source[last:])
    decoded = _View("".join(pieces), view, marks, starts, ends)
    decoded.produced = produced
    return decoded


# ``alphabet``: the characters of the registered values (None: decode every escape)


def _percent(view: _View, alphabet: Container[str] | None) -> _View | None:
    return _decoded(view, view.text, _percent_tokens(view.text, alphabet))


def _plus(view: _View, alphabet: Container[str] | None) -> _View | None:
    """Percent-decoded with ``+`` as a space (``quote_plus()``, httpx params): the
    ``+`` -> space swap keeps every position, so it needs no token."""
    if alphabet is not None and " " not in alphabet:
        return None
    spaced = view.text.replace("+", " ")
    return _decoded(view, spaced, _percent_tokens(spaced, alphabet)) or _View(spaced, view)


def _unescaped(view: _View, alphabet: Container[str] | None) -> _View | None:
    return _decoded(view, view.text, _escape_tokens(view.text, alphabet))


_Decoder = Callable[[_View, Container[str] | None], _View | None]
_DECODERS: tuple[tuple[str, str, _Decoder], ...] = (  # (trigger, family, decoder)
    ("%", "%", _percent),
    ("+", "%", _plus),
    ("\\", "\\", _unescaped),
)


def _decodings(text: str, alphabet: Container[str]) -> Iterator[_View]:
    """Every distinct decoding of ``text`` (and of those) that changes it.

    A view is decoded again by the same family only where that decoding produced a new
    escape (``%25`` gives ``%``): what else it left undecoded it will leave again."""
    root = _View(text)
    seen, frontier, count = {text}, [root], 1
    for _ in range(_MAX_DEPTH):
        following: list[_View] = []
        for view in frontier:
            for trigger, family, decode in _DECODERS:
                found = view.produced if family == view.family else view.text
                if trigger not in found or count >= _MAX_VIEWS:
                    continue
                decoded = decode(view, alphabet)
                if decoded is not None and decoded.text not in seen:
                    decoded.family = family
                    seen.add(decoded.text)
                    following.append(decoded)
                    count += 1
                    yield decoded
        frontier = following


# -- the index: sampled fixed-length substrings -----------------------------------------


class _Tier:
    """Values of at least ``width + stride - 1`` characters, each indexed by the
    ``stride`` substrings of ``width`` characters that start in one window of it. The text
    is sampled every ``stride`` characters: some sample falls in the window of any
    occurrence, so each occurrence is found, at ``len(text) / stride`` lookups a text."""

    __slots__ = ("keys", "min_length", "stride", "width")

    def __init__(self, width: int, stride: int) -> None:
        self.width, self.stride = width, stride
        self.min_length = width + stride - 1
        self.keys: dict[str, str | tuple[str, ...]] = {}  # values are immutable: no lock

    def add(self, needle: str) -> None:
        keys, width, stride = self.keys, self.width, self.stride
        last = len(needle) - self.min_length  # windows start in [0, last]
        candidates = sorted({last // 2, 0, last, last // 4, 3 * last // 4})

        def crowded(start: int) -> int:
            return sum(needle[o : o + width] in keys for o in range(start, start + stride))

        window = min(candidates, key=crowded)
        for o in range(window, window + stride):
            key = needle[o : o + width]
            held = keys.get(key)
            if held is None:
                keys[key] = needle
            elif isinstance(held, str):
                if held != needle:
                    keys[key] = (held, needle)
            elif needle not in held:
                keys[key] = (*held, needle)

    def find(self, text: str, spans: list[tuple[int, int]]) -> None:
        keys, width = self.keys, self.width
        if not keys or len(text) < self.min_length:
            return
        hits = [
            q for q in range(0, len(text) - width + 1, self.stride) if text[q : q + width] in keys
        ]
        for q in hits:
            key = text[q : q + width]
            held = keys.get(key)
            for needle in (held,) if isinstance(held, str) else held or ():
                o = needle.find(key)
                while o >= 0:
                    p = q - o
                    if p >= 0 and text.startswith(needle, p):
                        spans.append((p, p + len(needle)))
                    o = needle.find(key, o + 1)


# Short values are sampled at every character, long ones sparsely: a text costs about
# len(text) * (sum of 1/stride over the tiers in use) dictionary lookups.
_TIERS = (_Tier(4, 1), _Tier(4, 3), _Tier(6, 6), _Tier(8, 16))

_lock = threading.Lock()
_registered: set[str] = set()
_needles: set[str] = set()
_alphabet: set[str] = set()  # every character of every needle
_active: tuple[_Tier, ...] = ()  # the tiers that hold a needle


def _tier_for(needle: str) -> _Tier:
    return next(t for t in reversed(_TIERS) if len(needle) >= t.min_length)


def register_secret(value: str) -> None:
    """Mask ``value`` (in every form :func:`redact` knows) from now on. Short or non-str
    values are ignored (see module doc). Costs time in ``len(value)`` only."""
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH or value in _registered:
        return
    # Also the value's own decodings: httpx leaves a "%XX" already in a value as it is (so
    # the percent-decoded view of the text holds the decoded value), and quote_plus with
    # "+" in its safe set writes both " " and "+" as "+" (so the "+" view holds it).
    needles = {value}
    for decode in (_percent, _plus):
        decoded = decode(_View(value), None)
        if decoded is not None and len(decoded.text) >= MIN_SECRET_LENGTH:
            needles.add(decoded.text)
    global _active
    with _lock:
        for needle in needles - _needles:
            _alphabet.update(needle)  # before the index: a reader never misses a token
            _tier_for(needle).add(needle)
            _needles.add(needle)
        _active = tuple(tier for tier in _TIERS if tier.keys)
        _registered.add(value)


def _spans(text: str) -> list[tuple[int, int]]:
    """The spans of ``text`` that hold a registered value in some form, merged."""
    found: list[tuple[int, int]] = []
    tiers = _active
    for tier in tiers:
        tier.find(text, found)
    if "%" in text or "+" in text or "\\" in text:
        for view in _decodings(text, _alphabet):
            local: list[tuple[int, int]] = []
            for tier in tiers:
                tier.find(view.text, local)
            found += (view.original(a, b) for a, b in local)
    if len(found) < 2:
        return found
    found.sort()
    merged: list[tuple[int, int]] = []
    for a, b in found:
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def redact(text: str) -> str:
    """``text`` with every registered value, in any form it knows, replaced by ``***``."""
    if not _registered or not text:
        return text
    spans = _spans(text)
    if not spans:
        return text
    pieces: list[str] = []
    last = 0
    for a, b in spans:
        pieces += (text[last:a], MASK)
        last = b
    pieces.append(text[last:])
    return "".join(pieces)


def _has_secrets() -> bool:
    return bool(_registered)


# -- logging ---------------------------------------------------------------------------

_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Masks a record in place: the formatted message (``args`` become ``()``), the
    traceback (formatted into ``exc_text``; ``exc_info`` cleared) and ``stack_info``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _has_secrets() or _still_masked(record):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a bad format string must not skip redaction
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), ()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = _formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._redacted = (record.msg, record.exc_text, record.stack_info)
        return True


def _still_masked(record: logging.LogRecord) -> bool:
    """Whether ``record`` is as this filter left it (the factory masked it, a handler's
    filter sees it next): masking it again would cost a second pass for nothing."""
    done = getattr(record, "_redacted", None)
    return (
        done is not None
        and not record.args
        and record.exc_info is None
        and done[0] is record.msg
        and done[1] is record.exc_text
        and done[2] is record.stack_info
    )


_filter = RedactingFilter()


_previous_factory: Any = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _previous_factory(*args, **kwargs)
    _filter.filter(record)
    return record


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Mask every log record of the process, whichever handler emits it — once.

    Installs a log-record factory that masks each record as it is made (so handlers added
    later, such as the Functions worker's own, never see a raw value), and adds the
    redacting filter to the current handlers of ``logger`` (default: root) as well.
    Idempotent."""
    global _previous_factory
    with _lock:
        current = logging.getLogRecordFactory()
        if current is not _redacting_factory:
            _previous_factory = current
            logging.setLogRecordFactory(_redacting_factory)
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)


def redact_exception(exc: BaseException, *, limit: int = 4000) -> str:
    """``"ExcType: message"`` (with its causes) and the last frames, redacted, at most
    ``limit`` characters."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 3:
        seen.add(id(current))
        parts.append(("" if not parts else "caused by: ") + _describe(current))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    frames = traceback.extract_tb(exc.__traceback__)[-5:]
    if frames:
        parts.append(
            "at "
            + " <- ".join(f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames))
        )
    text = redact("\n".join(parts))  # redact before cutting: no half-masked values
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…" if limit > 0 else ""
    return text


def _describe(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = "<unprintable>"
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _short(filename: str) -> str:
    return "/".join(filename.replace("\\", "/").rsplit("/", 2)[-2:])


class RedactingLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """``ctx.log``: messages prefixed ``[tenant/flow]``, masked before reaching handlers.

    ``extra`` of the adapter (``tenant_id``, ``flow_name``, ``run_id``) is merged with a
    call's own ``extra``. Exception tracebacks (``exc_info``) are formatted, masked and
    appended to the message, so handlers never see the raw exception.
    """

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        tenant, flow = extra.get("tenant_id"), extra.get("flow_name")
        prefix = f"[{tenant}/{flow}] " if tenant or flow else ""
        return f"{prefix}{msg}", kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except Exception:  # noqa: BLE001 — keep the message, still masked
            text = f"{msg} {args!r}"
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif not isinstance(exc_info, tuple):
                import sys

                exc_info = sys.exc_info()
            if exc_info[0] is not None:
                text += "\n" + _formatter.formatException(exc_info)
        text, options = self.process(text, kwargs)
        options["stacklevel"] = options.get("stacklevel", 1) + 1  # report the caller's line
        if logging.getLogRecordFactory() is not _redacting_factory:  # else it masks
            text = redact(text)
        self.logger.log(level, text, **options)
