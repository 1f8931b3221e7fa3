"""README's "Distil a teacher", followed on a fresh copy of the project with a tiny local teacher:
dvc add the prompts; set the params the section's table names; dvc repro distill@local; dvc repro
(up to dedup here, which reads the distilled file through paths.raw). About 30 s on 2 CPU cores."""

from __future__ import annotations

import re

from params_file import set_dotted
from readme_project import ROOT, fresh_copy, run

from tuneproof.io import read_json, write_jsonl
from tuneproof.records import load_records
from tiny_model import build_tiny_model_dir

PROMPTS = [f"please help with order {n}: {issue}" for n, issue in
           enumerate(["my card was declined", "the parcel is late", "I cannot log in", "cancel my plan",
                      "the mug arrived broken", "change my address"], start=100)]


def readme_section() -> str:
    match = re.search(r"^## Distil a teacher\n(.*?)(?=^## )", (ROOT / "README.md").read_text(), re.S | re.M)
    assert match, "README.md has no '## Distil a teacher' section"
    return match.group(1)


def test_readme_distil_a_teacher(tmp_path):
    section = readme_section()
    project = fresh_copy(tmp_path / "project")
    listed = run(["dvc", "stage", "list"], project)
    assert listed.returncode == 0 and "distill" not in listed.stdout  # off by default: no stage at all

    write_jsonl(project / "data/raw/prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    step1 = re.search(r"```bash\n\s*(dvc add data/raw/prompts\.jsonl[^\n]*)", section).group(1)
    assert run(["bash", "-c", step1], project).returncode == 0
    teacher = build_tiny_model_dir(tmp_path / "teacher", tied=False)
    values = {"distill.run": ["local"], "distill.prompts": "data/raw/prompts.jsonl", "distill.model": str(teacher),
              "paths.raw": "data/distill/records.jsonl", "dedup.truth": None}
    for key in values:
        assert f"`{key}`" in section, f"the README's table does not name {key}"
    set_dotted(project / "params.yaml", {**values, "generate.max_new_tokens": 6})

    first = run(["dvc", "repro", "distill@local"], project)
    assert first.returncode == 0, first.stderr
    metrics = read_json(project / "metrics/distill.json")
    assert (metrics["teacher_calls"], metrics["cache_hits"], metrics["records_out"]) == (6, 0, 6)
    assert [r["messages"][0]["content"] for r in load_records(project / "data/distill/records.jsonl")] == PROMPTS

    rest = run(["dvc", "repro", "dedup"], project)  # DVC orders distill before dedup through paths.raw
    assert rest.returncode == 0, rest.stderr
    assert "distill@local' didn't change" in rest.stdout
    assert read_json(project / "metrics/dedup.json")["records_in"] == 6

    again = run(["dvc", "repro", "-f", "distill@local"], project)  # forced: every answer comes from the cache
    assert again.returncode == 0, again.stderr
    assert read_json(project / "metrics/distill.json")["teacher_calls"] == 0
    assert read_json(project / "metrics/distill.json")["cache_hits"] == 6
