"""Activity functions: thin wrappers that hand one step to :mod:`datasync.steps`."""
from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from .. import steps
from ..services import get_services
from . import names

bp = df.Blueprint()


@bp.activity_trigger(input_name="args", activity=names.BEGIN_RUN)
def begin_run(args: dict[str, Any]) -> dict[str, Any]:
    return steps.begin_run(get_services(), args)


@bp.activity_trigger(input_name="args", activity=names.PULL_PAGE)
def pull_page(args: dict[str, Any]) -> dict[str, Any]:
    return steps.pull_page(get_services(), args)


@bp.activity_trigger(input_name="args", activity=names.TRANSFORM_PAGE)
def transform_page(args: dict[str, Any]) -> dict[str, Any]:
    return steps.transform_page(get_services(), args)


@bp.activity_trigger(input_name="args", activity=names.PUSH_PAGE)
def push_page(args: dict[str, Any]) -> dict[str, Any]:
    return steps.push_page(get_services(), args)


@bp.activity_trigger(input_name="args", activity=names.FINISH_RUN)
def finish_run(args: dict[str, Any]) -> dict[str, Any]:
    return steps.finish_run(get_services(), args)
