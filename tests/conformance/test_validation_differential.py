"""``datasync.runtime.validation`` against the real worker: for each small app, the worker's
verdict (``worker_init_request``) and ``validate_app``'s first message are identical."""

from __future__ import annotations

import importlib.util
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from datasync.runtime.validation import is_typing_generic, validate_app

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(600)]  # first run builds the venv

HEADER = """\
import typing
from typing import Any, Dict, List, Optional

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp()
"""

APPS = {
    "good": """
        @app.activity_trigger(input_name="args")
        def plain_dict(args: dict) -> dict:
            return args

        @app.activity_trigger(input_name="args")
        def no_annotation(args):
            return args

        @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
        def on_message(msg: func.QueueMessage, context: func.Context) -> None:
            pass

        @app.queue_trigger(arg_name="msg", queue_name="q2", connection="AzureWebJobsStorage")
        @app.queue_output(arg_name="out", queue_name="q3", connection="AzureWebJobsStorage")
        def relay(msg: str, out: func.Out[str]) -> None:
            pass

        @app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
        def tick(timer: func.TimerRequest) -> None:
            pass
        """,
    "pep585_dict": """
        @app.activity_trigger(input_name="args")
        def begin(args: dict[str, Any]) -> dict[str, Any]:
            return args
        """,
    "pep585_list": """
        @app.activity_trigger(input_name="names")
        def names(names: list[str]) -> list[str]:
            return names
        """,
    "pep604_optional": """
        @app.activity_trigger(input_name="args")
        def maybe(args: dict | None) -> None:
            return None
        """,
    "typing_optional": """
        @app.activity_trigger(input_name="args")
        def maybe(args: Optional[dict]) -> None:
            return None
        """,
    "typing_dict": """
        @app.activity_trigger(input_name="args")
        def begin(args: Dict[str, Any]) -> Dict[str, Any]:
            return args

        @app.activity_trigger(input_name="args")
        def bare(args: typing.Dict) -> None:
            return None
        """,
    "any": """
        @app.activity_trigger(input_name="args")
        def anything(args: Any) -> Any:
            return args
        """,
    "missing_binding_param": """
        @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
        def on_message(msg: func.QueueMessage, extra: str) -> None:
            pass
        """,
    "extra_binding": """
        @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
        @app.queue_output(arg_name="out", queue_name="q2", connection="AzureWebJobsStorage")
        def on_message(msg: func.QueueMessage) -> None:
            pass
        """,
    "bad_context": """
        @app.activity_trigger(input_name="args")
        def with_context(args: dict, context: str) -> None:
            return None
        """,
    "wrong_trigger_type": """
        @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
        def on_message(msg: int) -> None:
            pass
        """,
    "out_without_out": """
        @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
        @app.queue_output(arg_name="out", queue_name="q2", connection="AzureWebJobsStorage")
        def relay(msg: func.QueueMessage, out: str) -> None:
            pass
        """,
    "out_on_input": """
        @app.activity_trigger(input_name="args")
        def act(args: func.Out[str]) -> None:
            return None
        """,
    "second_function_fails": """
        @app.activity_trigger(input_name="args")
        def first(args: dict) -> None:
            return None

        @app.activity_trigger(input_name="args")
        def second(args: list[int]) -> None:
            return None
        """,
}


def _write_apps(base: Path) -> dict[str, Path]:
    dirs = {}
    for name, body in APPS.items():
        app_dir = base / name
        app_dir.mkdir()
        (app_dir / "function_app.py").write_text(HEADER + textwrap.dedent(body))
        dirs[name] = app_dir
    return dirs


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory, bridge_factory) -> dict[str, tuple[dict, list[str]]]:
    """Per app: the worker's init result and validate_app's messages."""
    dirs = _write_apps(tmp_path_factory.mktemp("apps"))
    bridges = {name: bridge_factory(app_dir) for name, app_dir in dirs.items()}
    with ThreadPoolExecutor(4) as pool:
        inits = dict(
            zip(
                bridges,
                pool.map(
                    lambda item: item[1].call("init", app_dir=str(dirs[item[0]])), bridges.items()
                ),
                strict=True,
            )
        )
    for bridge in bridges.values():
        bridge.close()
    ours = {}
    for name, app_dir in dirs.items():
        spec = importlib.util.spec_from_file_location(
            f"_fixture_app_{name}", app_dir / "function_app.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        ours[name] = validate_app(module.app)
    return {name: (inits[name], ours[name]) for name in APPS}


@pytest.mark.parametrize("name", list(APPS))
def test_validate_app_agrees_with_the_worker(verdicts, name):
    worker, ours = verdicts[name]
    if worker["status"] == "Success":
        assert ours == [], f"the worker loads {name!r}, validate_app refuses it: {ours}"
        return
    message = worker["exception"]["message"]
    assert message.startswith("FunctionLoadError: "), message
    assert ours, f"the worker refuses {name!r} ({message}); validate_app passes it"
    assert "FunctionLoadError: " + ours[0] == message


def test_the_fixtures_cover_both_verdicts(verdicts):
    """Guard against a vacuous agreement (e.g. every app failing to import)."""
    loads = {name for name, (worker, _) in verdicts.items() if worker["status"] == "Success"}
    assert loads == {"good", "typing_dict", "any"}
    assert verdicts["pep585_dict"][1] == [
        (
            "cannot load the begin function: binding args has invalid non-type annotation "
            "dict[str, typing.Any]"
        )
    ]
    assert verdicts["second_function_fails"][1][0].startswith("cannot load the second function")


def test_validate_app_reports_every_refused_function_in_order(tmp_path):
    (tmp_path / "function_app.py").write_text(
        HEADER
        + textwrap.dedent("""
        @app.activity_trigger(input_name="a")
        def one(a: list[str]) -> None:
            return None

        @app.activity_trigger(input_name="a")
        def two(a: dict) -> None:
            return None

        @app.activity_trigger(input_name="a")
        def three(a: set[int]) -> None:
            return None
        """)
    )
    spec = importlib.util.spec_from_file_location(
        "_fixture_app_order", tmp_path / "function_app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert validate_app(module.app) == [
        "cannot load the one function: binding a has invalid non-type annotation list[str]",
        "cannot load the three function: binding a has invalid non-type annotation set[int]",
    ]


@pytest.mark.parametrize(
    "annotation, generic",
    [
        ("typing.Dict[str, typing.Any]", True),
        ("typing.Dict", True),
        ("typing.List[int]", True),
        ("dict[str, typing.Any]", False),
        ("list[str]", False),
        ("typing.Optional[int]", False),
        ("typing.Tuple[int, str]", False),
        ("typing.Callable[[], int]", False),
        ("int", False),
    ],
)
def test_what_counts_as_a_typing_generic(annotation, generic):
    import typing  # noqa: F401 - used by eval

    assert is_typing_generic(eval(annotation)) is generic
