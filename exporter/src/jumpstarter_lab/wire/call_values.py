"""Arguments and results of driver calls, carried as google.protobuf.Value.

Encoding follows upstream's JSON-mode rules (dataclasses and models become
objects, tuples lists, enums their value) so both implementations read each
other's values. bytes travel as base64 text and are restored where the
receiving signature or dataclass field says `bytes`.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import inspect
import types
import typing
from pathlib import PurePath
from typing import Any

from google.protobuf import struct_pb2

from .errors import DriverInvalidArgument


def to_plain(value: Any) -> Any:
    """Reduce a Python value to JSON-compatible data."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):  # pydantic models, as sent by upstream-style drivers
        return to_plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot send a value of type {type(value).__name__} in a driver call")


def encode(value: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    _fill(message, to_plain(value))
    return message


def _fill(message: struct_pb2.Value, plain: Any) -> None:
    if plain is None:
        message.null_value = struct_pb2.NULL_VALUE
    elif isinstance(plain, bool):
        message.bool_value = plain
    elif isinstance(plain, (int, float)):
        message.number_value = plain
    elif isinstance(plain, str):
        message.string_value = plain
    elif isinstance(plain, dict):
        message.struct_value.SetInParent()  # update() and extend() of nothing set nothing: [] and {} arrived as null
        message.struct_value.update(plain)
    else:
        message.list_value.SetInParent()
        message.list_value.extend(plain)


MAX_DEPTH = 32  # lists and objects within each other in one argument or result


def decode(value: struct_pb2.Value, depth: int = 0) -> Any:
    """A Value as plain data; DriverInvalidArgument for one nested deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise DriverInvalidArgument(f"a value is nested more than {MAX_DEPTH} deep")
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        # Value carries every number as a double; give back ints where they were ints.
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: decode(item, depth + 1) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [decode(item, depth + 1) for item in value.list_value.values]
    return None


def coerce(value: Any, hint: Any) -> Any:
    """Shape decoded data to a type hint: bytes from base64, dataclasses from dicts, containers recursively.

    Anything that does not fit is returned unchanged; the callee's own checks decide.
    """
    if hint is Any or hint is None or value is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        refusal = None
        for arm in typing.get_args(hint):
            if arm is type(None):
                continue
            try:
                shaped = coerce(value, arm)
            except (TypeError, ValueError) as e:  # this arm cannot take it (not base64 for bytes): the next may
                refusal = refusal or e
                continue
            if shaped is not value or _fits(value, arm):
                return shaped
        if refusal is not None:
            raise refusal
        return value
    if hint is bytes and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as e:
            raise ValueError(f"expected base64-encoded bytes: {e}") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if inspect.isclass(hint) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        hints = _field_hints(hint)
        names = {f.name for f in dataclasses.fields(hint) if f.init}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"unknown field(s) for {hint.__name__}: {', '.join(sorted(unknown))}")
        return hint(**{k: coerce(v, hints.get(k, Any)) for k, v in value.items()})
    if origin in (list, tuple, set, frozenset) and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return origin(coerce(v, inner) for v in value) if origin is not tuple else tuple(value)
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(hint)
        inner = args[1] if len(args) == 2 else Any
        return {k: coerce(v, inner) for k, v in value.items()}
    return value


def _fits(value: Any, hint: Any) -> bool:
    base = typing.get_origin(hint) or hint
    return inspect.isclass(base) and _instance(value, base) is True


def _instance(value: Any, cls: type) -> bool | None:
    """isinstance(), or None for a class that refuses the check (a TypedDict, a Protocol that is not
    runtime_checkable): such a hint says too little to tell."""
    try:
        return isinstance(value, cls)
    except TypeError:
        return None


def _field_hints(cls: type) -> dict[str, Any]:
    """The type hints of a dataclass's fields; none when its annotations do not resolve here (a name imported
    only for type checkers): its fields are then taken as they come."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # NameError, or anything an annotation's expression raises
        return {}


def mismatch(value: Any, hint: Any) -> str | None:
    """What is wrong with a (coerced) value for a type hint, in words; None when it fits or the hint
    says too little to tell. Containers are checked through their items."""
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, (str, typing.TypeVar)):
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is None or hint is type(None):
        return None if value is None else f"expected null, got {_kind(value)}"
    if origin in (typing.Union, types.UnionType):
        return None if any(mismatch(value, arm) is None for arm in args) else f"expected {_name(hint)}, got {_kind(value)}"
    if origin is typing.Literal:
        return None if value in args else f"expected one of {', '.join(map(repr, args))}, got {value!r}"
    if hint is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {_kind(value)}"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"expected an integer, got {_kind(value)}"
    if hint is float:
        return (None if isinstance(value, (int, float)) and not isinstance(value, bool)
                else f"expected a number, got {_kind(value)}")
    base = origin or hint
    if not inspect.isclass(base):
        return None
    if base in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple, set, frozenset)):
            return f"expected a list, got {_kind(value)}"
        inner = args[0] if args and base is not tuple else Any
        return next((f"item {i}: {m}" for i, v in enumerate(value) if (m := mismatch(v, inner))), None)
    if base is dict:
        if not isinstance(value, dict):
            return f"expected an object, got {_kind(value)}"
        inner = args[1] if len(args) == 2 else Any
        return next((f"{k!r}: {m}" for k, v in value.items() if (m := mismatch(v, inner))), None)
    if issubclass(base, enum.Enum) or issubclass(base, PurePath):
        return None  # shaped by the callee
    fits = _instance(value, base)
    if fits is None:
        return None
    if not fits:
        return f"expected {_name(hint)}, got {_kind(value)}"
    if dataclasses.is_dataclass(base):
        hints = _field_hints(base)
        return next((f"field '{f.name}': {m}" for f in dataclasses.fields(base)
                     if (m := mismatch(getattr(value, f.name), hints.get(f.name, Any)))), None)
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
