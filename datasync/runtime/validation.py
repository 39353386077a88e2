"""The Python worker's load-time checks, for the embedded runtime (the host rule).

On Azure the Python language worker (``azure-functions-runtime``) checks every function of
``function_app.py`` when it indexes the app and refuses the whole app at the first one
that fails: no function loads, and the host logs ``FunctionLoadError: cannot load the
<name> function: <reason>``. The embedded runtime must be no kinder, so it runs the same
checks, written here from the worker's rules (``Registry.add_indexed_function``); the
conformance suite (``tests/conformance``) proves the messages identical to the worker's.

What is checked, per function, in the worker's order:

1. bindings: no ``inout`` direction; a ``$return`` binding must be ``out``;
2. a ``context`` parameter that no binding names must be annotated ``azure.functions.Context``;
3. every Python parameter has a binding and every binding has a parameter;
4. each parameter's annotation is a class or a ``typing`` generic (``typing.Dict[str, Any]``,
   ``Dict``, ``Any`` and ``dict`` pass; PEP 585 ``dict[str, Any]``, ``list[str]`` and
   ``X | None`` do not), ``Out[T]`` exactly on ``out`` bindings, and the binding's own
   converter accepts the type;
5. a ``$return`` binding's annotation is a class, not ``Out``, accepted by its converter.

Not modelled: HTTP v2 streaming types and SDK-type (deferred) bindings beyond what the
``azurefunctions.extensions.base`` registry says when the app has imported it.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import typing
from collections.abc import Iterable
from typing import Any

__all__ = ["is_typing_generic", "validate_app", "validate_function"]

IN, OUT, INOUT = 0, 1, 2  # BindingInfo.Direction, as the decorators number it
UNDEFINED = 0  # BindingInfo.DataType.undefined

# ``typing``'s own alias classes: what the worker calls a generic type. PEP 585 aliases
# (``dict[str, Any]``, ``types.GenericAlias``) and ``X | Y`` are neither of these.
_TYPING_ALIASES = tuple(getattr(typing, name) for name in ("_GenericAlias", "_SpecialGenericAlias"))
_NOT_GENERIC_ORIGINS = (typing.Union, tuple, typing.ClassVar, collections.abc.Callable)


class _LoadError(Exception):
    def __init__(self, function_name: str, reason: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {reason}")


def is_typing_generic(tp: Any) -> bool:
    """True for ``Generic`` subclasses and ``typing`` aliases such as ``List[int]`` or
    ``Dict`` — but not ``Union``, ``Tuple``, ``ClassVar`` or ``Callable`` forms."""
    if isinstance(tp, type) and issubclass(tp, typing.Generic):
        return True
    return isinstance(tp, _TYPING_ALIASES) and tp.__origin__ not in _NOT_GENERIC_ORIGINS


def _origin(tp: Any) -> Any:
    if isinstance(tp, typing._GenericAlias):  # type: ignore[attr-defined]
        return None if tp.__origin__ is typing.ClassVar else tp.__origin__
    return typing.Generic if tp is typing.Generic else None


def _args(tp: Any) -> tuple[Any, ...]:
    if isinstance(tp, typing._GenericAlias):  # type: ignore[attr-defined]
        args: tuple[Any, ...] = tp.__args__
        return args
    return ()


def _named(tp: Any, name: str) -> bool:
    return isinstance(tp, type) and tp.__name__ == name


# -- the converters' view of a type --------------------------------------------------------


def _deferred_registry() -> Any:
    """SDK-type bindings exist only when the app imported the extensions base package."""
    if "azurefunctions.extensions.base" not in sys.modules:
        return None
    try:
        import azurefunctions.extensions.base as base  # type: ignore[import-not-found]

        return base.get_binding_registry()
    except ImportError:
        return None


class _Generic:
    """What a binding with no converter of its own gets (the worker's generic binding)."""

    @staticmethod
    def check_input_type_annotation(pytype: Any) -> bool:
        return issubclass(pytype, (str, bytes))

    @staticmethod
    def check_output_type_annotation(pytype: Any) -> bool:
        return issubclass(pytype, (str, bytes, bytearray))


def _converter(binding_type: str, deferred: bool = False) -> Any:
    found = None
    if not deferred:
        import azure.functions as func

        # azure.functions leaves get_binding_registry unannotated
        found = func.get_binding_registry().get(binding_type)  # type: ignore[no-untyped-call]
    else:
        registry = _deferred_registry()
        found = registry.get(binding_type) if registry is not None else None
    return found or _Generic


def _implicit_output(binding_type: str) -> bool:
    converter = _converter(binding_type)
    if converter is _Generic:
        return binding_type != "durableClient"
    return bool(getattr(converter, "has_implicit_output", lambda: False)())


def _accepts_input(binding_type: str, pytype: Any, deferred: bool) -> bool:
    return bool(_converter(binding_type, deferred).check_input_type_annotation(pytype))


def _accepts_output(binding_type: str, pytype: Any) -> bool:
    return bool(_converter(binding_type).check_output_type_annotation(pytype))


def _is_deferred(annotation: Any) -> bool:
    registry = _deferred_registry()
    return bool(registry is not None and registry.check_supported_type(annotation))


# -- the checks ----------------------------------------------------------------------------


def _check_directions(name: str, bindings: list[Any]) -> None:
    for binding in bindings:
        if binding.direction == INOUT:
            raise _LoadError(name, '"inout" bindings are not supported')
        if binding.name == "$return" and binding.direction != OUT:
            raise _LoadError(name, '"$return" binding must have direction set to "out"')


def _check_context(
    name: str, params: dict[str, Any], bound: dict[str, Any], hints: dict[str, Any]
) -> None:
    if "context" not in params or "context" in bound:
        return
    params.pop("context")
    if "context" in hints:
        annotation = hints["context"]
        if not _named(annotation, "Context"):
            raise _LoadError(
                name,
                'the "context" parameter is expected to be of type '
                f'azure.functions.Context, got "{annotation!r}"',
            )


def _settlement_param(
    params: dict[str, Any], bound: dict[str, Any], hints: dict[str, Any]
) -> str | None:
    """The one unbound parameter a Service Bus settlement client may fill, if any."""
    unbound = set(params) - set(bound)
    registry = _deferred_registry()
    if len(unbound) != 1 or registry is None:
        return None
    (param,) = unbound
    try:
        if registry.check_supported_grpc_client_type(hints.get(param)):
            return param
    except Exception:  # noqa: BLE001 - the worker treats a failing check as "not supported"
        pass
    return None


def _check_params(
    name: str, params: dict[str, Any], bound: dict[str, Any], hints: dict[str, Any]
) -> None:
    if set(params) - set(bound):
        settlement = _settlement_param(params, bound, hints)
        if settlement is None:
            raise _LoadError(
                name,
                "the following parameters are declared in Python but not "
                "in the function definition (function.json or function "
                f"decorators):  {set(params) - set(bound)!r}",
            )
        params.pop(settlement)
    if set(bound) - set(params):
        raise _LoadError(
            name,
            "Extra parameters in binding definition — the following "
            "parameters are declared as bindings but are not present in "
            f"Python: {set(bound) - set(params)!r}",
        )
    for param in params.values():
        _check_param(name, param.name, bound[param.name], hints)


def _check_param(name: str, param: str, binding: Any, hints: dict[str, Any]) -> None:
    has_annotation = param in hints
    annotation = hints.get(param)
    deferred = _is_deferred(annotation)
    if not has_annotation:
        is_out = False
    elif is_typing_generic(annotation) and _origin(annotation) is not None:
        is_out = _named(_origin(annotation), "Out")
    else:
        is_out = _named(annotation, "Out")
    binding_out = binding.direction == OUT

    pytype: Any = annotation
    if is_out:
        args = _args(annotation)
        if len(args) != 1:
            raise _LoadError(name, f"binding {param} has invalid Out annotation {annotation!r}")
        pytype = args[0]
    if has_annotation and not isinstance(pytype, type) and not is_typing_generic(pytype):
        raise _LoadError(name, f"binding {param} has invalid non-type annotation {annotation!r}")
    if binding_out and has_annotation and not is_out:
        raise _LoadError(
            name,
            f'binding {param} is declared to have the "out" direction, '
            "but its annotation in Python is not a subclass of "
            "azure.functions.Out",
        )
    if not binding_out and is_out:
        raise _LoadError(
            name,
            f'binding {param} is declared to have the "in" direction in '
            "the binding decorator, but its annotation is "
            "azure.functions.Out in Python",
        )
    if not has_annotation:
        return
    kind = binding.type
    if pytype in (str, bytes) and not _implicit_output(binding.type):
        kind = "generic"
    ok = _accepts_output(kind, pytype) if is_out else _accepts_input(kind, pytype, deferred)
    if ok:
        return
    if binding.data_type != UNDEFINED:  # None (not given) counts as defined, as there
        raise _LoadError(
            name,
            f'binding type "{param!r}" and dataType "{binding.type}" in '
            "the binding decorator do not match the corresponding "
            "function parameter's Python type annotation "
            f"{pytype.__name__}",
        )
    raise _LoadError(
        name,
        f"type of {param} binding in the binding decorator "
        f'"{binding.type}" does not match its Python annotation '
        f'"{pytype.__name__}"',
    )


def _check_return(name: str, bindings: list[Any], hints: dict[str, Any]) -> None:
    explicit = next((b for b in bindings if b.name == "$return"), None)
    if explicit is None or "return" not in hints:
        return
    annotation = hints["return"]
    origin = _origin(annotation) if is_typing_generic(annotation) else None
    if origin is not None and origin.__name__ == "Out":
        raise _LoadError(name, "return annotation should not be azure.functions.Out")
    if not isinstance(annotation, type):
        raise _LoadError(name, f"has invalid non-type return annotation {annotation!r}")
    if not _accepts_output(explicit.type, annotation):
        raise _LoadError(
            name,
            f'Python return annotation "{annotation.__name__}" does not '
            f'match binding type "{explicit.type}"',
        )


def validate_function(function: Any) -> str | None:
    """The worker's reason to refuse one ``azure.functions`` ``Function``, or None."""
    name = function.get_function_name()
    user = function.get_user_function()
    try:
        params = dict(inspect.signature(user).parameters)
        hints = typing.get_type_hints(user)
    except Exception as exc:  # noqa: BLE001 - the worker fails on these too, unwrapped
        return f"cannot load the {name} function: {type(exc).__name__}: {exc}"
    bindings = list(function.get_bindings())
    bound = {b.name: b for b in bindings if b.name != "$return"}
    try:
        _check_directions(name, bindings)
        _check_context(name, params, bound, hints)
        _check_params(name, params, bound, hints)
        _check_return(name, bindings, hints)
    except _LoadError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. issubclass() on an alias in a converter
        return f"cannot load the {name} function: {type(exc).__name__}: {exc}"
    return None


def _functions(app: Any) -> Iterable[Any]:
    builders = getattr(app, "_function_builders", None)
    if builders is not None:  # without get_functions()'s side effects
        return [builder._function for builder in builders]
    functions: Iterable[Any] = app.get_functions()
    return functions


def validate_app(app: Any) -> list[str]:
    """Every reason the worker would refuse ``app``, in the worker's order (it stops at
    the first, so ``validate_app(app)[0]`` is what the host would log); ``[]`` = loads."""
    problems: list[str] = []
    seen: set[str] = set()
    for function in _functions(app):
        name = function.get_function_name()
        if name in seen:  # azure.functions' own indexing rule
            problems.append(
                f"Function {name} does not have a unique function name. Please "
                "change @app.function_name() or the function method name to be "
                "unique."
            )
            continue
        seen.add(name)
        problem = validate_function(function)
        if problem is not None:
            problems.append(problem)
    return problems
