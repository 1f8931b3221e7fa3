"""params.yaml is the one home of every default: each section maps onto its params dataclass
key for key (nested sections onto nested dataclasses), and a field either has no default (the
key is required) or its default is the value params.yaml gives. A default that drifts from
params.yaml would silently change a run whose params file leaves the key out."""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from pathlib import Path

import pytest

from tuneproof.params import from_dict, read_params

ROOT = Path(__file__).resolve().parents[1]

# params.yaml section -> the dataclass that loads it (found by name in tuneproof/ or stages/, so a
# class may move between the two without this test changing).
SECTIONS = {
    "paths": "Paths", "task": "Task", "prompt": "Prompt", "generate": "GenerateParams", "score": "ScoreParams",
    "distill": "DistillParams", "base_model": "BaseModelParams", "dedup": "DedupParams", "split": "SplitParams",
    "baseline": "BaselineParams", "train": "TrainParams", "evaluate": "EvaluateParams", "probe": "ProbeParams",
    "compare": "CompareParams",
}


def find_class(name: str) -> type:
    """The dataclass `name` from the one module of tuneproof/ or stages/ that defines it."""
    pattern = re.compile(rf"^class {name}\b", re.M)
    homes = [path for folder in ("tuneproof", "stages") for path in sorted((ROOT / folder).glob("*.py"))
             if pattern.search(path.read_text(encoding="utf-8"))]
    assert len(homes) == 1, f"class {name}: expected one defining module, found {homes}"
    module = ".".join(homes[0].relative_to(ROOT).with_suffix("").parts)
    return getattr(importlib.import_module(module), name)


def drift(cls: type, loaded, where: str) -> list[str]:
    """Fields of `cls` (recursively) whose default differs from the loaded params.yaml value."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        key, value = f"{where}.{field.name}", getattr(loaded, field.name)
        if dataclasses.is_dataclass(hints[field.name]):
            found += drift(hints[field.name], value, key)
        elif field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            if default != value:
                found.append(f"{key}: default {default!r:.60}, params.yaml {value!r:.60}")
    return found


def nested(cls: type) -> set[str]:
    """Names of `cls` and of the dataclasses its fields hold, at every depth."""
    hints = typing.get_type_hints(cls)
    return {cls.__name__}.union(*(nested(hints[f.name]) for f in dataclasses.fields(cls)
                                  if dataclasses.is_dataclass(hints[f.name])))


def test_every_section_has_a_params_class():
    assert set(read_params(ROOT / "params.yaml")) == set(SECTIONS)


def test_every_params_class_is_a_section_of_params_yaml():
    defined = {name for folder in ("tuneproof", "stages") for path in (ROOT / folder).glob("*.py")
               for name in re.findall(r"^class (\w+Params)\b", path.read_text(encoding="utf-8"), re.M)}
    reached = set().union(*(nested(find_class(name)) for name in SECTIONS.values()))
    assert "LoraParams" in reached and defined, "the class search is broken"
    assert not (defined - reached), f"params classes no params.yaml section loads: {sorted(defined - reached)}"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_defaults_equal_params_yaml(section):
    cls = find_class(SECTIONS[section])
    # from_dict rejects a key with no field and a required field with no key, at every depth; a
    # field with a default must appear too, or params.yaml would not show every knob
    data = read_params(ROOT / "params.yaml")[section]
    missing = [f"{section}.{key}" for key in missing_keys(cls, data)]
    assert not missing, f"params.yaml lacks {missing}: give every knob its value and comment there"
    loaded = from_dict(cls, data, f"params.yaml: {section}")
    assert not (found := drift(cls, loaded, section)), (
        f"dataclass defaults differ from params.yaml (make them equal, or drop the default): {found}")


def missing_keys(cls: type, data: dict) -> list[str]:
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        if field.name not in data:
            found.append(field.name)
        elif dataclasses.is_dataclass(hints[field.name]) and isinstance(data[field.name], dict):
            found += [f"{field.name}.{key}" for key in missing_keys(hints[field.name], data[field.name])]
    return found


@dataclasses.dataclass(frozen=True)
class _Inner:
    k: int = 1


@dataclasses.dataclass(frozen=True)
class _Outer:
    a: int
    b: float = 0.5
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_drift_and_missing_keys_are_caught():
    loaded = from_dict(_Outer, {"a": 1, "b": 0.25, "inner": {"k": 2}}, "x")
    assert drift(_Outer, loaded, "s") == ["s.b: default 0.5, params.yaml 0.25", "s.inner.k: default 1, params.yaml 2"]
    assert drift(_Outer, from_dict(_Outer, {"a": 7, "b": 0.5, "inner": {"k": 1}}, "x"), "s") == []
    assert missing_keys(_Outer, {"a": 1, "inner": {}}) == ["b", "inner.k"]
