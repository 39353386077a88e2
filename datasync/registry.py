"""The flow API: ``@flow``, ``Page``, and discovery of the files in ``flows/``.

A flow is a **class** decorated with ``@flow("name")`` that has ``pull`` and ``push``
methods and optionally ``transform`` (identity when absent); each may be ``def`` or
``async def``. The registry creates a fresh instance per step (``FlowSpec.create()``), so
keep state in ``ctx.state``, not on ``self``.

:meth:`FlowRegistry.discover` imports every ``*.py`` in the flows directory (files starting
with ``_`` are skipped), in name order, each as a fresh module ``datasync_flows.<stem>``
(re-discovering re-executes the files: new and changed files are picked up), each on its
own thread with a time limit (``import_timeout``). A file that fails to import, does not
finish importing in time, or declares an invalid flow, is reported as a
:class:`~datasync.exceptions.FlowLoadError` naming the file; two flows with one name are a
:class:`~datasync.exceptions.DuplicateFlow` and neither is registered. The others load.
Flow files are self-contained: ``flows/`` is not put on ``sys.path``, so shared code belongs
in an installed package.

:func:`call_step` runs a sync or async step. Async steps run on an event loop kept for the
calling thread's lifetime (``httpx.AsyncClient`` is bound to its loop, so ``ctx.ahttp`` is
one client per loop — see :mod:`datasync.context`).

What flow code prints — at import or in a step — goes to ``stderr``, never to ``stdout``
(which carries the CLI's ``--json`` output): :func:`flow_code` marks the threads running
it and ``sys.stdout`` routes their writes (:class:`FlowStdout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import re
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .exceptions import DuplicateFlow, FlowError, FlowLoadError, FlowNotFound
from .names import validate_flow_name

__all__ = [
    "DEFAULT_IMPORT_TIMEOUT",
    "MODULE_PREFIX",
    "FlowRegistry",
    "FlowSpec",
    "FlowStdout",
    "Page",
    "UnknownFlow",
    "call_step",
    "close_thread_loop",
    "default_registry",
    "flow",
    "flow_code",
    "on_loop_close",
    "thread_loop",
]

MODULE_PREFIX = "datasync_flows"
DEFAULT_IMPORT_TIMEOUT = 10.0
"""Seconds one flow file may take to import (``DATASYNC_FLOW_IMPORT_TIMEOUT``)."""
T = TypeVar("T", bound=type)


@dataclass(slots=True)
class Page:
    """One pulled page: its records, the cursor to resume after it, and whether more follow."""

    records: list[dict[str, Any]]
    cursor: str | int | None = None
    has_more: bool = False


@dataclass
class FlowSpec:
    """A registered flow: its name, class, and where it came from."""

    name: str
    cls: type
    file: str  # relative to the project root, posix (``flows/contacts_to_erp.py``)
    module: str

    def create(self) -> Any:
        """A new instance of the flow class."""
        return self.cls()

    @property
    def has_transform(self) -> bool:
        return callable(getattr(self.cls, "transform", None))


class UnknownFlow(FlowNotFound):
    """:class:`FlowNotFound` with a hint: which files failed to load, or why it is ambiguous."""

    def __init__(self, name: str, hint: str = "") -> None:
        self.hint = hint
        super().__init__(name)

    def __str__(self) -> str:
        base = f"unknown flow {self.name!r}"
        return f"{base} ({self.hint})" if self.hint else base


# -- flow output -----------------------------------------------------------------------

_flow_threads = threading.local()  # .depth: > 0 while this thread runs flow code


class FlowStdout:
    """``sys.stdout`` once flow code has run: writes from a thread inside :func:`flow_code`
    go to ``sys.stderr``, every other write to the stream it replaced."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def _target(self) -> Any:
        if getattr(_flow_threads, "depth", 0) > 0:
            return sys.stderr
        return self.stream

    def write(self, text: str) -> int:
        written: int = self._target().write(text)
        return written

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, buffer, fileno, ...
        return getattr(self._target(), name)


def _route_stdout() -> None:
    if not isinstance(sys.stdout, FlowStdout):
        sys.stdout = FlowStdout(sys.stdout)


@contextlib.contextmanager
def flow_code() -> Iterator[None]:
    """Mark this thread as running flow code: its ``print()`` goes to stderr meanwhile."""
    _route_stdout()
    _flow_threads.depth = getattr(_flow_threads, "depth", 0) + 1
    try:
        yield
    finally:
        _flow_threads.depth -= 1


# -- the decorator ---------------------------------------------------------------------

_local = threading.local()  # .collector: list[FlowSpec] while discovery imports a file
_default_lock = threading.Lock()
_default_specs: list[FlowSpec] = []


def _check_flow_class(name: str, cls: Any) -> None:
    if not inspect.isclass(cls):
        raise TypeError(f"@flow({name!r}) decorates classes, not {type(cls).__name__} objects")
    missing = [m for m in ("pull", "push") if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(
            f"flow {name!r} (class {cls.__name__}) has no {' or '.join(missing)} method"
        )
    transform = getattr(cls, "transform", None)
    if transform is not None and not callable(transform):
        raise TypeError(f"flow {name!r} (class {cls.__name__}): transform is not a method")


def flow(name: str) -> Callable[[T], T]:
    """Register the decorated class as the flow ``name`` (validated: 1–40 of ``a-z0-9-``).

    During :meth:`FlowRegistry.discover` the flow goes into the registry being built;
    anywhere else into the process default registry (:func:`default_registry`).
    Raises :class:`~datasync.exceptions.ValidationError` for a bad name and ``TypeError``
    for a class without ``pull``/``push`` (discovery turns both into a ``FlowLoadError``).
    """
    validate_flow_name(name)

    def register(cls: T) -> T:
        _check_flow_class(name, cls)
        module = getattr(cls, "__module__", "") or ""
        source = sys.modules.get(module)
        file = getattr(source, "__file__", None) or module
        spec = FlowSpec(name=name, cls=cls, file=str(file), module=module)
        cls.__datasync_flow__ = name  # type: ignore[attr-defined]
        collector = getattr(_local, "collector", None)
        if collector is not None:
            collector.append(spec)
        else:
            with _default_lock:
                # re-running the same definition (e.g. a reload) replaces it
                _default_specs[:] = [
                    s
                    for s in _default_specs
                    if (s.module, s.cls.__qualname__) != (module, cls.__qualname__)
                ]
                _default_specs.append(spec)
        return cls

    return register


# -- the registry ----------------------------------------------------------------------


def _rel(path: Path, root: Path | None, flows_dir: Path) -> str:
    for base in (root, flows_dir.parent):
        if base is None:
            continue
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def _reason(exc: BaseException, path: Path) -> str:
    """A one-line reason: ``SyntaxError: invalid syntax (line 3)``; no traceback."""
    from .exceptions import ValidationError

    if isinstance(exc, SyntaxError):
        line = f" (line {exc.lineno})" if exc.lineno else ""
        return f"{type(exc).__name__}: {exc.msg}{line}"
    if isinstance(exc, ValidationError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    lineno = None
    target = str(path.resolve())
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename in (target, str(path)):
            lineno = frame.lineno
    text = " ".join(text.split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{text} (line {lineno})" if lineno else text


_discover_lock = threading.RLock()


class FlowRegistry:
    """The flows of one directory (or the process default set), resolved by name."""

    def __init__(
        self, specs: list[FlowSpec] | None = None, errors: list[FlowError] | None = None
    ) -> None:
        self.errors: list[FlowError] = list(errors or [])
        self._specs: dict[str, FlowSpec] = {}
        self._ambiguous: dict[str, list[str]] = {}
        by_name: dict[str, list[FlowSpec]] = {}
        for spec in specs or []:
            by_name.setdefault(spec.name, []).append(spec)
        for name, group in by_name.items():
            if len(group) == 1:
                self._specs[name] = group[0]
            else:
                files = list(dict.fromkeys(s.file for s in group))
                self._ambiguous[name] = files
                self.errors.append(DuplicateFlow(name, files))

    @classmethod
    def discover(
        cls,
        flows_dir: Path | str,
        project_root: Path | None = None,
        *,
        import_timeout: float = DEFAULT_IMPORT_TIMEOUT,
    ) -> FlowRegistry:
        """Import every ``*.py`` in ``flows_dir`` (not ``_*``), in name order, as fresh modules,
        each within ``import_timeout`` seconds (a file still importing then is abandoned on
        its thread and reported as broken)."""
        flows_dir = Path(flows_dir)
        if not flows_dir.is_dir():
            return cls(
                [],
                [
                    FlowLoadError(
                        _rel(flows_dir, project_root, flows_dir), "flows directory not found"
                    )
                ],
            )
        specs: list[FlowSpec] = []
        errors: list[FlowError] = []
        files = sorted(
            p for p in flows_dir.glob("*.py") if not p.name.startswith("_") and p.is_file()
        )
        with _discover_lock:
            for path in files:
                rel = _rel(path, project_root, flows_dir)
                try:
                    found = _load_within(path, import_timeout)
                except _ImportTimedOut:
                    errors.append(
                        FlowLoadError(
                            rel, f"import did not finish within {import_timeout:g} s (abandoned)"
                        )
                    )
                    continue
                except BaseException as exc:  # noqa: BLE001 — reported, not raised
                    errors.append(FlowLoadError(rel, _reason(exc, path)))
                    continue
                for spec in found:
                    spec.file = rel
                specs.extend(found)
        return cls(specs, errors)

    def get(self, name: str) -> FlowSpec:
        """The flow ``name``; :class:`UnknownFlow` (a ``FlowNotFound``) says why it is missing."""
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        if name in self._ambiguous:
            raise UnknownFlow(name, "ambiguous: registered in " + ", ".join(self._ambiguous[name]))
        broken = list(dict.fromkeys(e.file for e in self.errors if isinstance(e, FlowLoadError)))
        hint = ""
        if broken:
            hint = f"{', '.join(broken)} failed to load"
        raise UnknownFlow(name, hint)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[FlowSpec]:
        return [self._specs[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[FlowSpec]:
        return iter(self.specs())

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"FlowRegistry(flows={self.names()!r}, errors={len(self.errors)})"


def _module_name(path: Path) -> str:
    stem = re.sub(r"\W", "_", path.stem)
    return f"{MODULE_PREFIX}.{stem}"


class _ImportTimedOut(Exception):
    """A flow file did not finish importing within its time limit."""


def _load_within(path: Path, timeout: float) -> list[FlowSpec]:
    """:func:`_load` on a thread of its own, waiting at most ``timeout`` seconds; raises
    what the import raised (any ``BaseException``) or :class:`_ImportTimedOut`. Python cannot
    stop a thread: one that times out is left to finish (or not) on its own."""
    done: Future[list[FlowSpec]] = Future()

    def run() -> None:
        with flow_code():
            try:
                done.set_result(_load(path))
            except BaseException as exc:  # noqa: BLE001 — handed to discover() as is
                done.set_exception(exc)

    thread = threading.Thread(target=run, name=f"flow-import-{path.stem}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not done.done():
        raise _ImportTimedOut(path.name)
    return done.result()


def _load(path: Path) -> list[FlowSpec]:
    """Execute ``path`` as a fresh module and return the flows it declared."""
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path.name}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # dataclasses, pickling etc. look modules up here
    collected: list[FlowSpec] = []
    outer = getattr(_local, "collector", None)
    _local.collector = collected
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise
    finally:
        _local.collector = outer
    return collected


def default_registry() -> FlowRegistry:
    """The flows decorated outside discovery (e.g. defined in a test or a script)."""
    with _default_lock:
        return FlowRegistry(list(_default_specs))


# -- running steps ---------------------------------------------------------------------

_loops = threading.local()
_finalizers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Callable[[], Any]]] = (
    weakref.WeakKeyDictionary()
)


class _LoopHolder:
    """Owns a thread's step loop; closes it (after its finalizers) when the thread ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        _close_loop(self.loop)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_closed() or loop.is_running():
        return
    for finalizer in _finalizers.pop(loop, []):
        # best effort (e.g. another loop runs here)
        with contextlib.suppress(Exception):
            loop.run_until_complete(finalizer())
    loop.close()


def on_loop_close(loop: asyncio.AbstractEventLoop, finalizer: Callable[[], Any]) -> None:
    """Await ``finalizer()`` on ``loop`` before a step loop is closed (e.g. ``aclose``)."""
    _finalizers.setdefault(loop, []).append(finalizer)


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop for async steps, created on first use and kept until the
    thread ends (or :func:`close_thread_loop`)."""
    holder = getattr(_loops, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _loops.holder = _LoopHolder()
    return holder.loop


def close_thread_loop() -> None:
    """Close this thread's step loop now (its async clients first)."""
    holder = getattr(_loops, "holder", None)
    if holder is not None:
        del _loops.holder
        _close_loop(holder.loop)


_helper_lock = threading.Lock()
_helper_loop: asyncio.AbstractEventLoop | None = None


def _helper() -> asyncio.AbstractEventLoop:
    """A background loop for async steps called from a thread whose own loop is running."""
    global _helper_loop
    with _helper_lock:
        if _helper_loop is None:
            ready: Future[asyncio.AbstractEventLoop] = Future()

            def run() -> None:
                loop = thread_loop()
                ready.set_result(loop)
                with flow_code():  # this loop only runs steps
                    loop.run_forever()

            threading.Thread(target=run, name="datasync-async-steps", daemon=True).start()
            _helper_loop = ready.result()
        return _helper_loop


def call_step(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a flow step (``def`` or ``async def``) and return its result.

    An awaitable result is run to completion on this thread's loop (:func:`thread_loop`);
    if a loop is already running on this thread, on a background loop instead. What the
    step prints goes to stderr (:func:`flow_code`).
    """
    with flow_code():
        result = fn(*args)
        if not inspect.isawaitable(result):
            return result
        try:
            asyncio.get_running_loop()
            running = True
        except RuntimeError:
            running = False
        if not running:  # outside the except block: the step's own error gets no __context__
            return thread_loop().run_until_complete(_await(result))
    return asyncio.run_coroutine_threadsafe(_await(result), _helper()).result()


async def _await(awaitable: Any) -> Any:
    return await awaitable
