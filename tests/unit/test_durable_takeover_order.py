"""Taken-over work items of one instance run one at a time, oldest first: a step that
kills its process cannot take the step beside it (pipelined pages) down again and again."""

from __future__ import annotations

import time
from pathlib import Path

from datasync.runtime.durable.store import DurableStore


def _orphaned(store: DurableStore, instance: str, *names: str) -> None:
    """Work items a runtime that died was running: still owned, leases expired."""
    with store.db.write() as con:
        for task_id, name in enumerate(names):
            con.execute(
                "INSERT INTO activities (instance_id, execution_id, task_id, name, input, "
                "lease_owner, lease_until) VALUES (?, 'e1', ?, ?, '{}', 'dead', ?)",
                (instance, task_id, name, time.time() - 1),
            )


def test_taken_over_items_of_an_instance_are_claimed_one_at_a_time(tmp_path: Path) -> None:
    store = DurableStore(tmp_path / "durable.db")
    try:
        _orphaned(store, "i1", "push_page", "pull_page")
        _orphaned(store, "i2", "pull_page")
        now = time.time()
        first = store.claim_activity("new", now, now + 6)
        assert first is not None
        row, _claim = first
        assert (row["instance_id"], row["name"], row["deaths"]) == ("i1", "push_page", 1)
        # i1's pull waits while its push (which died once) runs; another instance does not
        other = store.claim_activity("new", now, now + 6)
        assert other is not None and other[0]["instance_id"] == "i2"
        assert store.claim_activity("new", now, now + 6) is None
        with store.db.write() as con:  # the push finished: its work item is gone
            con.execute("DELETE FROM activities WHERE id = ?", (row["id"],))
        nxt = store.claim_activity("new", now, now + 6)
        assert nxt is not None and (nxt[0]["name"], nxt[0]["deaths"]) == ("pull_page", 1)
    finally:
        store.close()


def test_items_that_never_died_are_claimed_side_by_side(tmp_path: Path) -> None:
    store = DurableStore(tmp_path / "durable.db")
    try:
        with store.db.write() as con:
            for task_id, name in enumerate(("push_page", "pull_page")):
                con.execute(
                    "INSERT INTO activities (instance_id, execution_id, task_id, name, input) "
                    "VALUES ('i1', 'e1', ?, ?, '{}')",
                    (task_id, name),
                )
        now = time.time()
        a = store.claim_activity("w", now, now + 6)
        b = store.claim_activity("w", now, now + 6)
        assert a is not None and b is not None
        assert {a[0]["name"], b[0]["name"]} == {"push_page", "pull_page"}
    finally:
        store.close()
