"""Activity functions: decode the input contract, call one run step, encode the output.

With telemetry on, each runs inside its span (:meth:`datasync.telemetry.live.Live.step`):
a child of the run span, found from the input's ``traceparent``; ``finish_run`` also
emits the run span itself. With it off, the step is called directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import azure.durable_functions as df

from .. import telemetry
from ..contracts import BeginInput, FinishInput, PullInput, PushInput, TransformInput
from .bindings import BEGIN_RUN, FINISH_RUN, PULL_PAGE, PUSH_PAGE, TRANSFORM_PAGE, Payload
from .guard import guarded
from .provider import AppProvider

if TYPE_CHECKING:
    from ..app import App

__all__ = ["blueprint"]


def _traced(step: str, args: Payload, current: App, call: Callable[[], Payload]) -> Payload:
    live = telemetry.active()
    if live is None:
        return call()
    result: Payload = live.step(current, step, args, call)
    return result


def blueprint(app: AppProvider) -> df.Blueprint:
    """The five activities, over the app ``app`` provides."""
    bp = df.Blueprint()

    @bp.activity_trigger(input_name="args", activity=BEGIN_RUN)
    @guarded
    def begin_run(args: Payload) -> Payload:
        current = app()
        return _traced(
            "begin",
            args,
            current,
            lambda: current.steps.begin(BeginInput.from_json(args)).to_json(),
        )

    @bp.activity_trigger(input_name="args", activity=PULL_PAGE)
    @guarded
    def pull_page(args: Payload) -> Payload:
        current = app()
        return _traced(
            "pull", args, current, lambda: current.steps.pull(PullInput.from_json(args)).to_json()
        )

    @bp.activity_trigger(input_name="args", activity=TRANSFORM_PAGE)
    @guarded
    def transform_page(args: Payload) -> Payload:
        current = app()
        return _traced(
            "transform",
            args,
            current,
            lambda: current.steps.transform(TransformInput.from_json(args)).to_json(),
        )

    @bp.activity_trigger(input_name="args", activity=PUSH_PAGE)
    @guarded
    def push_page(args: Payload) -> Payload:
        current = app()
        return _traced(
            "push", args, current, lambda: current.steps.push(PushInput.from_json(args)).to_json()
        )

    @bp.activity_trigger(input_name="args", activity=FINISH_RUN)
    @guarded
    def finish_run(args: Payload) -> Payload:
        current = app()
        return _traced(
            "finish",
            args,
            current,
            lambda: current.steps.finish(FinishInput.from_json(args)).to_json(),
        )

    return bp
