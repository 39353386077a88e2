"""The staged-page codec of the embedded page store: the standard library's JSON, faster.

A page of 500 records is written twice and read twice per page of a sync. ``orjson`` does
that 5-10× faster than :mod:`json`, but it is kinder than :mod:`json` in places (it writes
``uuid.UUID``, ``enum.Enum`` and ``NaN``, which :mod:`json` refuses or writes as
``NaN``) and reads integers past 64 bits as floats. The embedded runtime must be no kinder
than Azure (whose blob page store uses :mod:`json`), so :func:`encode_records` uses
``orjson`` only for records made of plain JSON values (checked on the way), and falls back
to :mod:`json` for anything else, with the same result or the same error. What ``orjson``
wrote is stored as bytes (a BLOB) and read back with ``orjson``; text is read with
:mod:`json` (pages staged before, or by the fallback).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["decode_records", "encode_records"]

_SCALARS = (str, int, bool, type(None))


def _plain(value: Any) -> bool:
    """Whether ``value`` holds only what :mod:`json` and ``orjson`` write alike: dicts
    with str keys, lists, str, int within 64 bits, bool, None and finite floats (exact
    types: subclasses such as enums go to :mod:`json`)."""
    stack = [value]
    pop, push, isfinite = stack.pop, stack.append, math.isfinite
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            for key, inner in item.items():
                if type(key) is not str:
                    return False
                inner_kind = type(inner)
                if inner_kind is str or inner is None or inner_kind is bool:
                    continue
                push(inner)
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not -(2**63) <= item < 2**64:
                return False
        elif kind is float:
            if not isfinite(item):
                return False
        elif kind not in _SCALARS:
            return False
    return True


def encode_records(records: list[dict[str, Any]]) -> str | bytes:
    """``records`` as JSON: bytes from ``orjson`` for plain values, else the text
    ``json.dumps`` writes (raising what it raises)."""
    if type(records) is list and _plain(records):
        try:
            return orjson.dumps(records)
        except TypeError:  # e.g. a str with a lone surrogate: json escapes it
            pass
    return json.dumps(records, separators=(",", ":"))


def decode_records(stored: str | bytes) -> list[dict[str, Any]]:
    """What :func:`encode_records` stored, as the records it was given."""
    records: list[dict[str, Any]] = (
        orjson.loads(stored) if isinstance(stored, bytes) else json.loads(stored)
    )
    return records
