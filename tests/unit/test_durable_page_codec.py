"""The embedded page store's codec: what it stages reads back exactly as the standard
library's JSON would give it, and what that JSON refuses is refused alike (the embedded
runtime is no kinder than the blob page store on Azure)."""

from __future__ import annotations

import enum
import json
import math
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from datasync.adapters.local.db import Database
from datasync.adapters.local.pages import decode_records, encode_records
from datasync.adapters.local.runs import RUN_SCHEMA, SqlitePageStore


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def _stdlib(records: Any) -> Any:
    return json.loads(json.dumps(records, separators=(",", ":")))


PLAIN = [
    {"id": 1, "name": "  Ann ", "email": None, "vip": True, "score": 1.5, "tags": ["a", "b"]},
    {"id": 2**63, "neg": -(2**63), "nested": {"deep": [{"x": -0.0}, [], {}]}, "ü": '✓ \n"q"'},
]
ODD = [
    [{"big": 2**70}],  # past 64 bits: orjson would read it back as a float
    [{"nan": math.nan}],  # orjson would write null
    [{"inf": -math.inf}],
    [{"level": Level.HIGH}],  # an int subclass
    [{"t": ("a", 1)}],  # a tuple: a list in JSON
    [{1: "int key"}],  # json turns the key into "1"
    [{"lone": "\ud800"}],  # a lone surrogate: escaped by json, refused by orjson
]
REFUSED = [
    [{"u": uuid.uuid4()}],  # orjson writes UUIDs; json refuses them
    [{"c": Color.RED}],  # orjson writes enums
    [{"when": datetime(2026, 12, 1, tzinfo=UTC)}],  # orjson writes datetimes
    [{"s": {1, 2}}],
]


@pytest.mark.parametrize("records", [PLAIN, *ODD], ids=lambda r: repr(r)[:40])
def test_staged_records_read_back_as_the_standard_json_gives_them(records):
    decoded = decode_records(encode_records(records))
    expected = _stdlib(records)
    assert json.dumps(decoded) == json.dumps(expected)  # NaN-safe, types and key order


def test_plain_pages_take_the_fast_path():
    assert isinstance(encode_records(PLAIN), bytes)
    assert all(isinstance(encode_records(r), str) for r in ODD)


@pytest.mark.parametrize("records", REFUSED, ids=lambda r: repr(r)[:40])
def test_what_json_refuses_is_refused(records):
    with pytest.raises(TypeError) as ours:
        encode_records(records)
    with pytest.raises(TypeError) as theirs:
        json.dumps(records)
    assert str(ours.value) == str(theirs.value)


def test_the_page_store_round_trips_fast_and_old_pages(tmp_path: Path):
    db = Database(tmp_path / "datasync.db", RUN_SCHEMA)
    store = SqlitePageStore(db)
    store.put("run/p1/a1", PLAIN)
    assert store.get("run/p1/a1") == _stdlib(PLAIN)
    with db.write() as con:  # a page staged as text before this codec
        con.execute("INSERT INTO pages VALUES (?, ?)", ("run/p2/a1", json.dumps(PLAIN)))
    assert store.get("run/p2/a1") == _stdlib(PLAIN)
    store.delete_prefix("run/")
    db.close()
