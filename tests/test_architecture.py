"""The house's import rule: stages/ -> tuneproof/ -> third-party, never back.

Only tests may import a stage; a stage never imports another stage (what two stages share lives
in the library). The shipped packages (tuneproof/, stages/) never import the demo generator (demo/)
or the test helpers (tests/), which pyproject.toml leaves out of the wheel. Launching a stage by name (`python -m stages.train`, a string) is not an import.
dvc.yaml lists as a stage's deps exactly the library modules it runs (imports, lazy ones too).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"stages", "tests"}  # stages are checked by the second test; tests may import stages


def stage_imports(source: str, package: str | None = None) -> set[str]:
    """The stages a module imports: `stages` or `stages.<name>`, from `import stages.x`,
    `from stages import x`, `from stages.x import y`, and relative imports inside `package`
    (`from . import x` in stages/)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "stages"}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the importing package
                module = ".".join(filter(None, [package or "", module])) if node.level == 1 else ""
            if module == "stages":
                found |= {f"stages.{alias.name}" for alias in node.names}
            elif module.startswith("stages."):
                found.add(".".join(module.split(".")[:2]))
    return found


def library_imports(path: Path) -> set[str]:
    """tuneproof/*.py files `path` imports, lazily or not (annotation-only TYPE_CHECKING imports aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for guard in ast.walk(tree)
                   if isinstance(guard, ast.If) and getattr(guard.test, "id", None) == "TYPE_CHECKING"
                   for node in ast.walk(guard)}
    modules = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "tuneproof":
            modules |= {f"tuneproof.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    files = {m.replace(".", "/") + ".py" for m in modules if m.startswith("tuneproof.")}
    return {f for f in files if (ROOT / f).is_file()}


def library_closure(stage: Path) -> set[str]:
    """Every tuneproof/*.py file that running `stage` can import."""
    seen, todo = set(), [stage]
    while todo:
        for dep in library_imports(todo.pop()) - seen:
            seen.add(dep)
            todo.append(ROOT / dep)
    return seen


def python_files(skip: set[str]) -> list[Path]:
    """The repository's .py files outside hidden folders (.venv, .git) and `skip` (top-level folder names)."""
    files = []
    for folder, dirs, names in os.walk(ROOT):
        top = Path(folder) == ROOT
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (top and d in skip)]
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return sorted(files)


@pytest.mark.parametrize("source, package, expected", [
    ("import stages.train", None, {"stages.train"}),
    ("import stages", None, {"stages"}),
    ("from stages import split, dedup as d", None, {"stages.split", "stages.dedup"}),
    ("from stages.compare import decide", None, {"stages.compare"}),
    ("def f():\n    from stages.train import TrainParams", None, {"stages.train"}),  # lazy imports count
    ("from . import split", "stages", {"stages.split"}),
    ("from .split import assign_splits", "stages", {"stages.split"}),
    ("import stagesplit\nfrom tuneproof.stages_util import x", None, set()),
    ("cmd = ['python', '-m', 'stages.train']", None, set()),  # launching by name is fine
])
def test_stage_imports_are_found_in_every_form(source, package, expected):
    assert stage_imports(source, package) == expected


def test_nothing_outside_stages_and_tests_imports_a_stage():
    offenders = {str(path.relative_to(ROOT)): sorted(found) for path in python_files(SKIP_DIRS)
                 if (found := stage_imports(path.read_text(encoding="utf-8")))}
    assert python_files(SKIP_DIRS), "no library files found: the walk is broken"
    assert not offenders, f"import a library module instead (move the code to tuneproof/): {offenders}"


def test_no_stage_imports_another_stage():
    stages = sorted((ROOT / "stages").glob("*.py"))
    assert len(stages) > 1
    offenders = {}
    for path in stages:
        own = f"stages.{path.stem}"
        found = stage_imports(path.read_text(encoding="utf-8"), "stages") - {own}
        if found:
            offenders[path.name] = sorted(found)
    assert not offenders, f"a stage imports another stage; share the code through tuneproof/: {offenders}"


def test_shipped_packages_never_import_demo_or_test_code():
    shipped = sorted((ROOT / "tuneproof").glob("*.py")) + sorted((ROOT / "stages").glob("*.py"))
    unshipped = {"demo", "tests", "conftest", *(p.stem for p in (ROOT / "tests").glob("*.py"))}
    offenders = {}
    for path in shipped:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if bad := [n for n in names if n.split(".")[0] in unshipped]:
                offenders.setdefault(str(path.relative_to(ROOT)), []).extend(bad)
    assert len(shipped) > 10 and "tiny_model" in unshipped
    assert not offenders, f"the wheel ships without demo/ and tests/; move what is needed into tuneproof/: {offenders}"


def test_dvc_deps_are_the_library_modules_each_stage_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    wrong = {}
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a foreach stage (distill) declares its deps under `do`
        listed = {d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith("tuneproof/")}
        module = ROOT / "stages" / f"{name}.py"
        if module.is_file() and listed != (imported := library_closure(module)):
            wrong[name] = {"missing": sorted(imported - listed), "not imported": sorted(listed - imported)}
    assert "tuneproof/records.py" in library_closure(ROOT / "stages" / "train.py")
    assert not wrong, f"dvc.yaml deps differ from what the stage imports: {wrong}"
