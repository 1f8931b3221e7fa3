"""Typed loading of params.yaml sections.

Each stage declares its section as a dataclass; `load_section` maps the YAML onto it and rejects
unknown keys, missing keys and wrong types with the dotted key's name (nanoGPT's rule: a
mistyped knob is an error, not a silent no-op).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from tuneproof.io import TuneproofError

T = TypeVar("T")
PARAMS_FILE = "params.yaml"


def read_params(path: str | Path = PARAMS_FILE) -> dict:
    """The whole params file as a dict (error if missing or not a mapping)."""
    path = Path(path)
    if not path.exists():
        raise TuneproofError(f"{path}: not found; run from the project root or pass the params file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TuneproofError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TuneproofError(f"{path}: expected a mapping of stage sections at the top level")
    return data


def load_section(cls: type[T], section: str, path: str | Path = PARAMS_FILE) -> T:
    """Load `section` of the params file into dataclass `cls`, validating keys and types."""
    data = read_params(path)
    if section not in data:
        raise TuneproofError(f"{path}: missing section '{section}'")
    return from_dict(cls, data[section], f"{path}: {section}")


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a mapping; `where` prefixes error messages (file: dotted.key)."""
    if not isinstance(data, dict):
        raise TuneproofError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TuneproofError(
            f"{where}.{unknown[0]}: unknown key; known keys are {', '.join(sorted(fields))}"
        )
    values = {}
    for name, field in fields.items():
        key = f"{where}.{name}"
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise TuneproofError(f"{key}: missing required key")
            continue
        values[name] = _convert(data[name], hints[name], key)
    return cls(**values)


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except TuneproofError as exc:
                errors.append(str(exc))
        raise TuneproofError(errors[0] if len(errors) == 1 else f"{key}: {value!r} does not match {tp}")
    if origin is Literal:
        if value not in args:
            raise TuneproofError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise TuneproofError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise TuneproofError(f"{key}: expected a mapping, got {value!r}")
        return {k: _convert(v, args[1], f"{key}.{k}") for k, v in value.items()} if args else value
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TuneproofError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TuneproofError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise TuneproofError(f"{key}: expected {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported params type {tp} for {key}")


def require(ok: bool, key: str, value: Any, expected: str, params_file: str | Path = PARAMS_FILE) -> None:
    """One style for every range check of a loaded value: `params.yaml: dedup.threshold is 1.5;
    use a Jaccard similarity in (0, 1]`."""
    if not ok:
        raise TuneproofError(f"{params_file}: {key} is {value!r}; use {expected}")
