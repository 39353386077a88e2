"""The orchestrator/activity messages: camelCase JSON, strict decoding, optional keys."""

from __future__ import annotations

import pytest

from datasync.contracts import (
    BeginInput,
    Carry,
    FinishInput,
    PullInput,
    PushInput,
    RunInput,
    TransformInput,
)
from datasync.exceptions import ValidationError

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
REF = {"tenantId": "acme", "flowName": "f", "runId": "r1"}
INPUTS = [
    (RunInput, {"tenantId": "acme", "flowName": "f", "scheduledFor": "2026-11-23T14:00:00Z"}),
    (BeginInput, {**REF, "scheduledFor": "2026-11-23T14:00:00Z"}),
    (PullInput, {**REF, "pageKey": "r1/p1"}),
    (TransformInput, {**REF, "pageKey": "r1/p1", "key": "k"}),
    (
        PushInput,
        {
            **REF,
            "pageKey": "r1/p1",
            "key": "k",
            "count": 1,
            "cursor": 2,
            "pages": 1,
            "recordsIn": 1,
            "recordsOut": 1,
        },
    ),
    (FinishInput, {**REF, "status": "Completed"}),
]


@pytest.mark.parametrize(("cls", "data"), INPUTS, ids=[c.__name__ for c, _ in INPUTS])
def test_every_input_carries_an_optional_traceparent(cls, data):
    assert cls.from_json(data).traceparent is None  # absent key: None (old histories)
    assert "traceparent" not in cls.from_json(data).to_json()  # unset: messages as before
    message = cls.from_json({**data, "traceparent": TRACE})
    assert message.traceparent == TRACE
    assert message.to_json()["traceparent"] == TRACE
    assert cls.from_json(message.to_json()) == message


@pytest.mark.parametrize(("cls", "data"), INPUTS, ids=[c.__name__ for c, _ in INPUTS])
def test_decoding_stays_strict(cls, data):
    with pytest.raises(ValidationError, match="unknown keys \\['traceParent'\\]"):
        cls.from_json({**data, "traceParent": TRACE})
    with pytest.raises(ValidationError, match="expected a JSON object"):
        cls.from_json([data])


def test_carry_says_whether_pages_are_pipelined_and_defaults_to_yes():
    assert Carry.from_json({}).pipeline is True
    assert Carry.from_json({}).transform is True
    # at their defaults the new keys stay out: begin's output is what it was before them
    assert Carry().to_json() == {
        "cursor": None,
        "state": {},
        "pages": 0,
        "recordsIn": 0,
        "recordsOut": 0,
    }
    carry = Carry.from_json({"cursor": 3, "pipeline": False})
    assert carry.pipeline is False
    run = RunInput.from_json({**INPUTS[0][1], "carry": carry.to_json(), "traceparent": TRACE})
    assert run.carry == carry
    assert RunInput.from_json(run.to_json()) == run
