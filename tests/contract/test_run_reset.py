"""RunStore.reset_checkpoint (``datasync reset``) and masking in RunStore.record.

A reset to None forgets cursor and state; a reset to a value saves it with no owner, so
the next run's begin claims it and its page 1 applies, whoever owned the checkpoint
before. ``record`` stores no secret in ``error`` or ``reason``."""

from __future__ import annotations

from datasync.models import RunRecord
from datasync.ports import Checkpoint, FencedWrite
from datasync.redact import register_secret
from tests.contract.conftest import Backend

R1 = "Workflow-acme--contacts-20261123T140000Z"
R2 = "Workflow-acme--contacts-20261123T150000Z"


def run(instance: str, status: str = "Pending") -> RunRecord:
    return RunRecord(
        instance_id=instance,
        tenant_id="acme",
        flow_name="contacts",
        scheduled_for="2026-11-23T14:00:00Z",
        status=status,
    )


def save(b: Backend, instance: str, page: int, cursor: str | None = None) -> FencedWrite:
    return b.runs.checkpoint(
        instance,
        "acme",
        "contacts",
        Checkpoint(cursor=cursor or f"c{page}", state={"page": page}),
        pages=page,
        records_in=page * 10,
        records_out=page * 10,
    )


def saved(b: Backend) -> Checkpoint:
    return b.runs.load_checkpoint("acme", "contacts")


def completed_run(b: Backend, instance: str, pages: int) -> None:
    b.runs.begin(run(instance))
    for page in range(1, pages + 1):
        assert save(b, instance, page).outcome == "applied"
    assert b.runs.finish(instance, "Completed").outcome == "applied"


def test_a_reset_to_none_forgets_cursor_and_state(backend: Backend) -> None:
    completed_run(backend, R1, 3)
    assert saved(backend) == Checkpoint(cursor="c3", state={"page": 3})
    backend.runs.reset_checkpoint("acme", "contacts", None)
    assert saved(backend) == Checkpoint()
    backend.runs.reset_checkpoint("acme", "contacts", None)  # nothing saved: still fine
    assert saved(backend) == Checkpoint()
    assert backend.runs.load_checkpoint("acme", "other") == Checkpoint()

    backend.runs.begin(run(R2))
    assert saved(backend) == Checkpoint()  # a full resync starts from nothing
    assert save(backend, R2, 1).outcome == "applied"
    assert saved(backend) == Checkpoint(cursor="c1", state={"page": 1})


def test_a_reset_to_a_value_is_loaded_and_the_next_runs_page_1_applies(backend: Backend) -> None:
    completed_run(backend, R1, 3)
    value = Checkpoint(cursor=7, state={"since": "2026-01-01", "seen": [1, 2]})
    backend.runs.reset_checkpoint("acme", "contacts", value)
    assert saved(backend) == value
    other = Checkpoint(cursor="x", state={})
    backend.runs.reset_checkpoint("acme", "other", other)  # a flow never saved before
    assert backend.runs.load_checkpoint("acme", "other") == other

    backend.runs.begin(run(R2))
    assert saved(backend) == value  # begin claims it and keeps what it holds
    first = save(backend, R2, 1)
    assert first.outcome == "applied", first.reason
    assert saved(backend) == Checkpoint(cursor="c1", state={"page": 1})
    assert backend.runs.get(R2).pages == 1


def test_a_reset_while_an_old_owner_exists_lets_the_next_run_write(backend: Backend) -> None:
    backend.runs.begin(run(R1))
    assert save(backend, R1, 3).outcome == "applied"
    backend.runs.finish(R1, "Failed", "boom")  # R1 still owns the checkpoint, at page 3
    backend.runs.reset_checkpoint("acme", "contacts", Checkpoint(cursor="restart", state={}))

    backend.runs.begin(run(R2))
    assert save(backend, R2, 1).outcome == "applied"
    late = save(backend, R1, 4, cursor="late")  # the old owner's stray write
    assert late.stale and R2 in late.reason
    assert saved(backend) == Checkpoint(cursor="c1", state={"page": 1})


def test_a_failed_run_resumed_after_a_reset_writes_from_the_reset_value(backend: Backend) -> None:
    backend.runs.begin(run(R1))
    assert save(backend, R1, 2).outcome == "applied"
    backend.runs.finish(R1, "Failed", "boom")
    backend.runs.reset_checkpoint("acme", "contacts", Checkpoint(cursor="c0", state={}))
    resumed = backend.runs.begin(run(R1))
    assert resumed.resumes == 1
    assert saved(backend) == Checkpoint(cursor="c0", state={})
    assert save(backend, R1, 3).outcome == "applied"
    assert saved(backend) == Checkpoint(cursor="c3", state={"page": 3})


def test_record_masks_the_error_and_the_reason(backend: Backend) -> None:
    secret = "s3cr3t-rec-" + backend.name + "-Kp4vY7"
    register_secret(secret)
    record = run(R1, status="Failed")
    record.error = f"HTTPStatusError: 401 for https://api.example/?token={secret}"
    record.reason = f"refused {secret}"  # set after construction: not masked yet
    backend.runs.record(record)
    stored = backend.runs.get(R1)
    assert secret not in repr(stored) and secret not in repr(backend.runs.recent())
    assert stored.error is not None and "***" in stored.error
    assert stored.error.startswith("HTTPStatusError: 401 for https://api.example/?token=")
    assert stored.reason is not None and "***" in stored.reason


def test_finish_masks_the_error(backend: Backend) -> None:
    secret = "s3cr3t-fin-" + backend.name + "-Qm8tR3"
    register_secret(secret)
    backend.runs.begin(run(R1))
    backend.runs.finish(R1, "Failed", f"ValueError: bad token {secret}\nmore {secret}")
    stored = backend.runs.get(R1)
    assert secret not in repr(stored)
    assert stored.error == "ValueError: bad token ***\nmore ***"
