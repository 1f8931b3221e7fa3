"""Editing a test project's params.yaml: the one helper every test uses."""

from __future__ import annotations

from pathlib import Path

import yaml


def _file(where: Path) -> Path:
    return where if where.name == "params.yaml" else where / "params.yaml"


def set_params(where: Path, **sections: object) -> None:
    """Update params.yaml (`where`: the file or its folder) section by section. A section given as a
    dict is updated key by key, a dotted key ("leakage.threshold") setting a nested one; any other
    value replaces the section whole."""
    path = _file(where)
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        if not isinstance(values, dict):
            params[section] = values
            continue
        for dotted, value in values.items():
            *parents, key = dotted.split(".")
            target = params[section]
            for parent in parents:
                target = target[parent]
            target[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def set_dotted(where: Path, values: dict[str, object]) -> None:
    """set_params with whole dotted keys ("train.lora.r"), each of which params.yaml must already
    have: a README step's key with a typo would otherwise be a silent no-op."""
    params = yaml.safe_load(_file(where).read_text())
    by_section: dict[str, dict] = {}
    for dotted, value in values.items():
        section, _, rest = dotted.partition(".")
        target = params[section]
        *parents, key = rest.split(".")
        for parent in parents:
            target = target[parent]
        assert key in target, f"{dotted} is not a key of params.yaml"
        by_section.setdefault(section, {})[rest] = value
    set_params(where, **by_section)
