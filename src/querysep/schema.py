"""Typed validation of configuration data, with one error format for every config.

Every configuration querysep reads (a training YAML and its ``key=value`` overrides, a model
folder's ``config.json``, a network's or a text encoder's arguments) is checked here with
pydantic v2. A problem becomes a :class:`~querysep.errors.ConfigError` whose one-line
message names the key, the value given and what was expected, e.g.
``model.network.config.n_fft: expected an integer, got 'many'``.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from .errors import ConfigError

__all__ = [
    "ConfigModel",
    "YamlLoader",
    "check_count",
    "config_error",
    "describe_error",
    "nested",
    "validate_arguments",
    "validate_dataclass",
    "validate_model",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class ConfigModel(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are checked."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# pydantic error type -> what was expected, in plain words
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "sequence_str": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
    "missing": None,
    "extra_forbidden": None,
}


# pydantic's own steps in an error location (not keys): "function-after[...]", "list[int]"...
_TAGS = ("function-", "lax-or-strict", "json-or-python", "constrained-")


def _path(loc: tuple[Any, ...], prefix: str) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith(_TAGS)))]
    return ".".join(p for p in (prefix, *parts) if p)


def describe_error(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """The dotted key and a one-line message for the first problem of ``exc``.

    Args:
        exc: A pydantic validation error.
        prefix: Dotted path of the validated data within the whole config.

    Returns:
        ``(key, message)``, e.g. ``("optim.lr", "expected a number, got 'fast'")``.
    """
    error = exc.errors(include_url=False)[0]
    kind = error["type"]
    key = _path(tuple(error["loc"]), prefix)
    given = error.get("input")
    if kind == _NESTED:  # a ConfigError raised inside a validator (see nested)
        ctx = error.get("ctx", {})
        inner = ".".join(p for p in (key, ctx.get("key", "")) if p)
        return inner, str(ctx.get("problem", ""))
    if kind == "missing":
        return key, "is required"
    if kind == "extra_forbidden":
        return key, "unknown key"
    if kind == "literal_error":
        choices = error.get("ctx", {}).get("expected", "")
        return key, f"must be one of {choices.replace(chr(39), '')}, got {given!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        ctx = error.get("ctx", {})
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(kind, "<=")
        bound = next(iter(ctx.values()), "")
        return key, f"must be {sign} {bound}, got {given!r}"
    if kind in ("too_short", "too_long"):
        return key, f"{error['msg'][0].lower()}{error['msg'][1:]}, got {given!r}"
    if kind == "value_error":  # a validator's own message (ValueError)
        text = str(error.get("ctx", {}).get("error", error["msg"]))
        return key, text
    if kind == "is_instance_of":  # Sequence[...] fields
        cls = str(error.get("ctx", {}).get("class", ""))
        return key, f"expected {'a list' if cls == 'Sequence' else cls}, got {given!r}"
    expected = _EXPECTED.get(kind)
    if expected is not None:
        return key, f"expected {expected}, got {given!r}"
    return key, f"{error['msg'][0].lower()}{error['msg'][1:]}, got {given!r}"


#: The training configs querysep reads, by a top-level key only that kind has (first match
#: wins: a mel VAE config has a trainer section too), and the command that runs each.
CONFIG_KINDS = (
    ("vae", "a mel VAE", "querysep ldm train-vae"),
    ("train_folds", "an audio-text (CLAP)", "querysep clap train"),
    ("members", "an audio-text (CLAP)", "querysep clap train"),
    ("trainer", "a separator", "querysep train"),
)


def other_kind(data: Any, own: str) -> str:
    """``" (this is a mel VAE config: run it with querysep ldm train-vae)"`` when ``data``
    (a parsed config) is a kind of training config other than ``own`` (a kind of
    :data:`CONFIG_KINDS`, ``"a separator"``), else ``""``: the hint a refusal adds when a
    config was given to the wrong command."""
    keys = set(data) if isinstance(data, Mapping) else set()
    for key, kind, command in CONFIG_KINDS:
        if key in keys:
            return "" if kind == own else f" (this is {kind} config: run it with {command})"
    return ""


def config_error(key: str, problem: str, what: str = "") -> ConfigError:
    """A :class:`ConfigError` about ``key``, located in ``what`` (a file or override)."""
    text = f"{key or 'config'}: {problem}"
    return ConfigError(f"{what}: {text}" if what else text, key=key, problem=problem)


def check_count(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """A count given as an argument (a batch size, a thread count, a limit), as an ``int``.

    The one check, and the one message, for "a whole number >= 1" (an ``int`` or a numpy
    integer, not a bool, nor a float however whole), with an upper bound where one is given.

    Args:
        name: The argument, for the message (``batch_size``).
        value: What was given.
        low: The least allowed.
        high: The most allowed, if any.

    Raises:
        ConfigError: ``batch_size must be a whole number >= 1, got 0`` (``... a whole number
            1-1024, got ...`` with a ``high``).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < low
        or (high is not None and value > high)
    ):
        span = f">= {low}" if high is None else f"{low}-{high}"
        raise ConfigError(f"{name} must be a whole number {span}, got {value!r}")
    return int(value)


_NESTED = "querysep_config"


def nested(exc: ConfigError) -> PydanticCustomError:
    """``exc`` in a form a validator can raise, so pydantic adds the enclosing keys."""
    return PydanticCustomError(
        _NESTED, "{problem}", {"key": exc.key or "", "problem": exc.problem or str(exc)}
    )


def _raise(exc: ValidationError, what: str, prefix: str) -> typing.NoReturn:
    key, problem = describe_error(exc, prefix)
    raise config_error(key, problem, what) from None


def _unwrap(tp: Any) -> list[Any]:
    """The types ``tp`` admits: ``Annotated`` and ``X | None`` taken apart."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(tp) for t in _unwrap(arg) if t is not type(None)]
    return [tp]


def _field_types(tp: Any) -> dict[str, Any]:
    """Field name -> annotation of a dataclass or pydantic model (``{}`` for others)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: f.annotation for name, f in tp.model_fields.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        try:
            return typing.get_type_hints(tp, include_extras=True)
        except (NameError, TypeError):  # pragma: no cover - an annotation it cannot resolve
            return {}
    return {}


def bool_for_number(tp: Any, data: Any, key: str = "") -> tuple[str, str] | None:
    """The first place in ``data`` where ``true``/``false`` stands for a number.

    pydantic reads ``true`` as 1 where an integer or a number is expected (``members:
    true`` would train one member); querysep's configs refuse it, as any other wrong type.

    Returns:
        ``(dotted key, what was expected)``, or ``None`` when there is no such place.
    """
    kinds = _unwrap(tp)
    if isinstance(data, bool):
        if bool in kinds or not any(k in (int, float) for k in kinds):
            return None
        return key, "an integer" if int in kinds and float not in kinds else "a number"
    structured = [fields for kind in kinds if (fields := _field_types(kind))]
    if structured and isinstance(data, Mapping):  # refused only if no alternative takes it
        first = None
        for fields in structured:
            found = next(
                (
                    hit
                    for name, value in data.items()
                    if name in fields
                    and (hit := bool_for_number(fields[name], value, f"{key}.{name}".strip(".")))
                ),
                None,
            )
            if found is None:
                return None
            first = first or found
        return first
    for kind in kinds:
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin in (list, tuple, Sequence) and isinstance(data, list | tuple) and args:
            items = args if origin is tuple and Ellipsis not in args else [args[0]] * len(data)
            for index, (item_type, value) in enumerate(zip(items, data, strict=False)):
                found = bool_for_number(item_type, value, f"{key}.{index}".strip("."))
                if found:
                    return found
            return None
    return None


def bool_problem(tp: Any, data: Any) -> tuple[str, str] | None:
    """``(dotted key, one-line problem)`` for a ``true``/``false`` given as a number in
    ``data`` (see :func:`bool_for_number`), or ``None``."""
    found = bool_for_number(tp, data)
    if not found:
        return None
    key, expected = found
    value = data
    for part in key.split(".") if key else ():
        value = value[int(part)] if isinstance(value, list | tuple) else value[part]
    return key, f"expected {expected}, got {value!r}"


def _refuse_bool_numbers(tp: Any, data: Any, what: str, prefix: str) -> None:
    found = bool_problem(tp, data)
    if found:
        key, problem = found
        raise config_error(".".join(p for p in (prefix, key) if p), problem, what)


def validate_model(model: type[M], data: Any, *, what: str = "", prefix: str = "") -> M:
    """Build ``model`` from plain data, or raise a one-line :class:`ConfigError`.

    Args:
        model: A pydantic model class.
        data: Parsed YAML/JSON.
        what: Where the data came from (a file, an override), put before the message.
        prefix: Dotted path of ``data`` in the whole config, put before the key.
    """
    _refuse_bool_numbers(model, data, what, prefix)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _raise(exc, what, prefix)


def validate_dataclass(cls: type[T], data: Any, *, what: str = "", prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping, checking every field's type.

    Unknown keys are refused. The dataclass's own ``__post_init__`` checks still run, and a
    :class:`ConfigError` they raise gets ``what`` in front.

    Raises:
        ConfigError: Not a mapping, an unknown key, or a value of the wrong type or range.
    """
    if not isinstance(data, Mapping):
        raise config_error(prefix, f"expected a mapping, got {data!r}", what)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = ".".join(p for p in (prefix, str(unknown[0])) if p)
        raise config_error(key, f"unknown key (known: {', '.join(names)})", what)
    _refuse_bool_numbers(cls, data, what, prefix)
    try:
        return _adapter(cls).validate_python(dict(data))
    except ValidationError as exc:
        _raise(exc, what, prefix)
    except ConfigError as exc:
        raise exc.within(what, prefix) from None


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(tp: Any) -> TypeAdapter[Any]:
    if tp not in _ADAPTERS:
        _ADAPTERS[tp] = TypeAdapter(tp)
    return _ADAPTERS[tp]


def validate_arguments(
    func: Callable[..., Any], kwargs: Mapping[str, Any], *, what: str = "", prefix: str = ""
) -> dict[str, Any]:
    """Check keyword arguments against ``func``'s signature and annotations.

    Annotations may carry pydantic constraints (``Annotated[int, Field(ge=1)]``).

    Returns:
        The validated (and converted) arguments.

    Raises:
        ConfigError: An unknown or missing argument, or a value of the wrong type or range.
    """
    key = (func, "arguments")
    if key not in _ADAPTERS:
        hints = typing.get_type_hints(func, include_extras=True)
        fields: dict[str, Any] = {}
        for name, param in inspect.signature(func).parameters.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[name] = (hints.get(name, Any), default)
        model = pydantic.create_model(  # type: ignore[call-overload]
            f"{getattr(func, '__qualname__', 'func')}_args",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
        _ADAPTERS[key] = TypeAdapter(model)
    hints = typing.get_type_hints(func, include_extras=True)
    for name, value in kwargs.items():
        if name in hints:
            _refuse_bool_numbers(hints[name], value, what, ".".join(p for p in (prefix, name) if p))
    try:
        validated = _ADAPTERS[key].validate_python(dict(kwargs))
    except ValidationError as exc:
        _raise(exc, what, prefix)
    return {name: getattr(validated, name) for name in kwargs}


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader without YAML 1.1's base-60 numbers, for every config querysep
    reads: ``max_time: 12:00:00`` stays the text it looks like (the safe loader reads it as
    the integer 43200)."""


_BASE60_FREE = {
    "tag:yaml.org,2002:int": r"""^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
    "tag:yaml.org,2002:float": r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
}
YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _BASE60_FREE]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern in _BASE60_FREE.items():
    YamlLoader.add_implicit_resolver(
        _tag,
        re.compile(_pattern, re.X),
        list("-+0123456789." if "float" in _tag else "-+0123456789"),
    )
