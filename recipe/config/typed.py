"""Plain values (from YAML) into a dataclass, checked against its type hints: unknown keys (with a
did-you-mean), missing ones and wrong types each become one `ConfigError` line naming the key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Optional, Union

from recipe.config.schema import ConfigError


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is not None:
        return getattr(origin, "__name__", str(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def describe(value) -> str:
    """A value as an error message shows it: its type, and the value itself unless it is a container."""
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def build_value(tp, value, path: str):
    """Check `value` against the type `tp` and return it converted (dataclasses instantiated)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return build_value(arg, value, path)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {describe(value)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            close = suggest(str(value), [str(a) for a in typing.get_args(tp)])
            hint = f" (did you mean {close!r}?)" if close else ""
            raise ConfigError(f"{path}: expected one of {_type_name(tp)}, got {value!r}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {describe(value)}")
        return build_dataclass(tp, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {describe(value)}")
        (item,) = typing.get_args(tp) or (Any,)
        return [build_value(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {describe(value)}")
        _, item = typing.get_args(tp) or (str, Any)
        return {str(k): build_value(item, v, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {describe(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {describe(value)}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{path}: expected {tp.__name__}, got {describe(value)}")
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {path}")


def suggest(word: str, options: list[str]) -> Optional[str]:
    """The option a mistyped key most likely meant (for "did you mean"), or None."""
    close = difflib.get_close_matches(word, options, n=1)
    if close:
        return close[0]
    return next((o for o in options if word and (o.startswith(word) or word in o)), None)


def build_dataclass(cls, values: dict, path: str = ""):
    """Instantiate dataclass `cls` from a plain mapping, rejecting unknown keys and mistyped values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{path}." if path else ""
    for key in values:
        if key not in fields:
            close = suggest(str(key), list(fields))
            hint = f" (did you mean '{prefix}{close}'?)" if close else f" (known keys: {', '.join(fields)})"
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in values:
            kwargs[name] = build_value(hints[name], values[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{prefix}{name}'")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a dataclass' own __post_init__ checks
        raise ConfigError(f"{path or 'config'}: {str(e).splitlines()[0]}") from None
