"""PageStore contract: put/get/overwrite, not-found, delete by prefix."""

from __future__ import annotations

import pytest

from datasync.exceptions import NotFound

RUN = "Workflow-acme--c-20261123T140000Z"


def test_put_get_overwrite_and_delete_by_prefix(backend):
    pages = backend.pages
    records = [
        {"id": "000001", "name": "Ann", "tags": ["x"], "n": 1.5, "none": None},
        {"id": "000002", "name": "Bö ✓"},
    ]
    pages.put(f"{RUN}/p000001/pulled", records)
    pages.put(f"{RUN}/p000001/out", records[:1])
    pages.put(f"{RUN}/p000002/pulled", [])
    pages.put("Workflow-acme--c-20261123T1400001/p000001/pulled", [{"id": "z"}])  # lookalike
    assert pages.get(f"{RUN}/p000001/pulled") == records
    pages.put(f"{RUN}/p000001/out", records[1:])  # overwrite
    assert pages.get(f"{RUN}/p000001/out") == records[1:]

    pages.delete_prefix(f"{RUN}/p000001/")
    for key in (f"{RUN}/p000001/pulled", f"{RUN}/p000001/out"):
        with pytest.raises(NotFound, match="gone"):
            pages.get(key)
    assert pages.get(f"{RUN}/p000002/pulled") == []
    assert pages.get("Workflow-acme--c-20261123T1400001/p000001/pulled") == [{"id": "z"}]
    pages.delete_prefix("Workflow-nothing/")  # no-op


def test_a_never_staged_page_is_not_found(backend):
    with pytest.raises(NotFound, match="gone"):
        backend.pages.get(f"{RUN}/p000009/out")


def test_stored_records_are_a_copy(backend):
    records = [{"id": 1, "tags": ["a"]}]
    backend.pages.put(f"{RUN}/p000001/out", records)
    records[0]["tags"].append("b")
    assert backend.pages.get(f"{RUN}/p000001/out") == [{"id": 1, "tags": ["a"]}]
