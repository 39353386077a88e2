"""Activity functions: decode the input contract, call one run step, encode the output."""

from __future__ import annotations

import azure.durable_functions as df

from ..contracts import BeginInput, FinishInput, PullInput, PushInput, TransformInput
from .bindings import BEGIN_RUN, FINISH_RUN, PULL_PAGE, PUSH_PAGE, TRANSFORM_PAGE, Payload
from .guard import guarded
from .provider import AppProvider

__all__ = ["blueprint"]


def blueprint(app: AppProvider) -> df.Blueprint:
    """The five activities, over the app ``app`` provides."""
    bp = df.Blueprint()

    @bp.activity_trigger(input_name="args", activity=BEGIN_RUN)
    @guarded
    def begin_run(args: Payload) -> Payload:
        return app().steps.begin(BeginInput.from_json(args)).to_json()

    @bp.activity_trigger(input_name="args", activity=PULL_PAGE)
    @guarded
    def pull_page(args: Payload) -> Payload:
        return app().steps.pull(PullInput.from_json(args)).to_json()

    @bp.activity_trigger(input_name="args", activity=TRANSFORM_PAGE)
    @guarded
    def transform_page(args: Payload) -> Payload:
        return app().steps.transform(TransformInput.from_json(args)).to_json()

    @bp.activity_trigger(input_name="args", activity=PUSH_PAGE)
    @guarded
    def push_page(args: Payload) -> Payload:
        return app().steps.push(PushInput.from_json(args)).to_json()

    @bp.activity_trigger(input_name="args", activity=FINISH_RUN)
    @guarded
    def finish_run(args: Payload) -> Payload:
        return app().steps.finish(FinishInput.from_json(args)).to_json()

    return bp
