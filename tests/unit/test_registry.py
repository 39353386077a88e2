"""Flow discovery: good, broken and duplicate files in a temporary flows/ directory."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from datasync.exceptions import DuplicateFlow, FlowLoadError, FlowNotFound, ValidationError
from datasync.registry import FlowRegistry, Page, call_step, flow

GOOD = """
from datasync import Page, flow

@flow("good-flow")
class Good:
    def pull(self, ctx, cursor):
        return Page(records=[{"id": 1}], cursor=(cursor or 0) + 1, has_more=False)

    def push(self, ctx, records):
        ctx.append(records)
"""

ASYNC = """
import asyncio
from datasync import Page, flow

@flow("async-flow")
class AsyncFlow:
    async def pull(self, ctx, cursor):
        await asyncio.sleep(0)
        return Page([{"id": "a"}], "c1", True)

    async def transform(self, ctx, records):
        await asyncio.sleep(0)
        return [dict(r, seen=True) for r in records]

    async def push(self, ctx, records):
        return len(records)
"""

SYNTAX = """
from datasync import flow

@flow("broken-syntax"
class Broken:
    pass
"""

IMPORT_ERROR = """
from datasync import flow
import no_such_module_for_datasync_tests

@flow("needs-module")
class NeedsModule:
    def pull(self, ctx, cursor): ...
    def push(self, ctx, records): ...
"""

DUP_A = """
from datasync import flow

@flow("same-name")
class A:
    def pull(self, ctx, cursor): ...
    def push(self, ctx, records): ...
"""

DUP_B = DUP_A.replace("class A", "class B")

BAD_NAME = """
from datasync import flow

@flow("Bad_Name")
class Bad:
    def pull(self, ctx, cursor): ...
    def push(self, ctx, records): ...
"""

NO_PUSH = """
from datasync import flow

@flow("no-push")
class NoPush:
    def pull(self, ctx, cursor): ...
"""


def write(d: Path, name: str, text: str) -> Path:
    path = d / name
    path.write_text(text)
    return path


@pytest.fixture
def project(tmp_path):
    flows = tmp_path / "flows"
    flows.mkdir()
    return tmp_path, flows


def discover(project) -> FlowRegistry:
    root, flows = project
    return FlowRegistry.discover(flows, root)


def errors_by_file(reg: FlowRegistry) -> dict[str, str]:
    return {e.file: e.reason for e in reg.errors if isinstance(e, FlowLoadError)}


def test_good_file_is_registered_with_its_relative_file(project):
    write(project[1], "good.py", GOOD)
    reg = discover(project)
    assert reg.errors == []
    assert reg.names() == ["good-flow"] and "good-flow" in reg and "other" not in reg
    spec = reg.get("good-flow")
    assert spec.file == "flows/good.py"
    pushed: list = []
    flow_obj = spec.create()
    page = call_step(flow_obj.pull, None, 41)
    assert page == Page(records=[{"id": 1}], cursor=42, has_more=False)
    call_step(flow_obj.push, pushed, page.records)
    assert pushed == [[{"id": 1}]]
    assert not spec.has_transform


def test_broken_files_are_reported_by_name_and_the_rest_still_load(project):
    _, flows = project
    write(flows, "a_good.py", GOOD)
    write(flows, "broken.py", SYNTAX)
    write(flows, "needs.py", IMPORT_ERROR)
    write(flows, "badname.py", BAD_NAME)
    write(flows, "nopush.py", NO_PUSH)
    write(flows, "_helper.py", "raise RuntimeError('never imported')\n")
    (flows / "notes.txt").write_text("not python")
    reg = discover(project)
    assert reg.names() == ["good-flow"]
    errs = errors_by_file(reg)
    assert set(errs) == {"flows/broken.py", "flows/needs.py", "flows/badname.py", "flows/nopush.py"}
    assert errs["flows/broken.py"].startswith("SyntaxError: ")
    assert "(line 4)" in errs["flows/broken.py"]
    assert errs["flows/needs.py"].startswith("ModuleNotFoundError: ")
    assert "no_such_module_for_datasync_tests" in errs["flows/needs.py"]
    assert "(line 3)" in errs["flows/needs.py"]
    assert "Bad_Name" in errs["flows/badname.py"]
    assert "push" in errs["flows/nopush.py"]
    for reason in errs.values():  # short, one line, no traceback dump
        assert "\n" not in reason and "Traceback" not in reason
    assert str(reg.errors[0]).startswith("flows/")


def test_unknown_flow_names_the_broken_files(project):
    write(project[1], "broken.py", SYNTAX)
    reg = discover(project)
    with pytest.raises(FlowNotFound) as info:
        reg.get("broken-syntax")
    assert str(info.value) == "unknown flow 'broken-syntax' (flows/broken.py failed to load)"
    assert isinstance(info.value, KeyError)


def test_two_flows_with_one_name_register_neither(project):
    _, flows = project
    write(flows, "one.py", DUP_A)
    write(flows, "two.py", DUP_B)
    write(flows, "good.py", GOOD)
    reg = discover(project)
    assert reg.names() == ["good-flow"]
    dups = [e for e in reg.errors if isinstance(e, DuplicateFlow)]
    assert len(dups) == 1 and dups[0].name == "same-name"
    assert dups[0].files == ["flows/one.py", "flows/two.py"]
    with pytest.raises(FlowNotFound, match=r"ambiguous.*flows/one.py, flows/two.py"):
        reg.get("same-name")


def test_duplicate_within_one_file(project):
    write(project[1], "both.py", DUP_A + DUP_B)
    reg = discover(project)
    assert reg.names() == []
    assert [type(e) for e in reg.errors] == [DuplicateFlow]


def test_async_steps_run_through_call_step(project):
    write(project[1], "async_flow.py", ASYNC)
    spec = discover(project).get("async-flow")
    obj = spec.create()
    page = call_step(obj.pull, None, None)
    assert page == Page([{"id": "a"}], "c1", True)
    assert spec.has_transform
    assert call_step(obj.transform, None, page.records) == [{"id": "a", "seen": True}]
    assert call_step(obj.push, None, page.records) == 1


def test_async_steps_work_in_several_threads(project):
    write(project[1], "async_flow.py", ASYNC)
    spec = discover(project).get("async-flow")
    results: list = []

    def work():
        for _ in range(3):
            results.append(call_step(spec.create().push, None, [{}, {}]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [2] * 12


def test_call_step_inside_a_running_loop():
    import asyncio

    async def step(x):
        await asyncio.sleep(0)
        return x * 2

    async def main():
        return call_step(step, 21)

    assert asyncio.run(main()) == 42


def test_rediscovery_finds_new_files_and_reloads_changed_ones(project):
    _, flows = project
    write(flows, "good.py", GOOD)
    first = discover(project)
    assert first.names() == ["good-flow"]
    write(flows, "async_flow.py", ASYNC)
    write(flows, "good.py", GOOD.replace("(cursor or 0) + 1", "(cursor or 0) + 100"))
    second = discover(project)
    assert second.names() == ["async-flow", "good-flow"]
    assert second.get("good-flow").cls is not first.get("good-flow").cls
    assert call_step(second.get("good-flow").create().pull, None, 0).cursor == 100
    assert call_step(first.get("good-flow").create().pull, None, 0).cursor == 1


def test_missing_flows_dir_is_an_error_not_a_crash(tmp_path):
    reg = FlowRegistry.discover(tmp_path / "nope", tmp_path)
    assert reg.names() == [] and len(reg.errors) == 1
    assert "nope" in str(reg.errors[0])


def test_decorator_outside_discovery_validates_name_and_methods():
    with pytest.raises(ValidationError):
        flow("Not Valid")
    with pytest.raises(TypeError, match="push"):

        @flow("half-a-flow")
        class Half:
            def pull(self, ctx, cursor): ...


def test_the_shipped_example_flow_is_discovered():
    root = Path(__file__).resolve().parents[2]
    reg = FlowRegistry.discover(root / "flows", root)
    assert reg.errors == []
    assert reg.get("contacts-to-erp").file == "flows/contacts_to_erp.py"


HANGS = """
import threading
import time
threading.Event().wait()  # never returns
"""

PRINTS = """
from datasync import Page, flow
print("hello from the import")


@flow("chatty")
class Chatty:
    def pull(self, ctx, cursor):
        print("hello from pull")
        return Page(records=[], cursor=None, has_more=False)

    async def push(self, ctx, records):
        print("hello from an async push")
"""


def test_a_file_whose_import_never_returns_is_reported_and_the_others_load(project):
    root, flows = project
    write(flows, "a_hangs.py", HANGS)
    write(flows, "good.py", GOOD)
    started = time.monotonic()
    reg = FlowRegistry.discover(flows, root, import_timeout=0.5)
    assert time.monotonic() - started < 3
    assert reg.names() == ["good-flow"]
    assert errors_by_file(reg) == {
        "flows/a_hangs.py": "import did not finish within 0.5 s (abandoned)"
    }


def test_what_flow_code_prints_goes_to_stderr_not_stdout(project, capsys):
    root, flows = project
    write(flows, "chatty.py", PRINTS)
    reg = FlowRegistry.discover(flows, root)
    spec = reg.get("chatty")
    call_step(spec.create().pull, None, None)
    call_step(spec.create().push, None, [])
    print("the CLI's own output")
    out, err = capsys.readouterr()
    assert out == "the CLI's own output\n"
    assert err.splitlines() == [
        "hello from the import",
        "hello from pull",
        "hello from an async push",
    ]
