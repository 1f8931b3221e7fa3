"""A forced failed attempt, end to end on a tiny model: learning rate 0 leaves the fine-tune equal
to the base, so it cannot fit its own training sample. compare must say FINE-TUNE FAILED (the
attempt failed), never PROMPT SUFFICES (prompting won) (issue 12).

Every stage runs in process (dedup -> split -> baseline -> train -> evaluate -> probe -> compare)
on the walkthrough's headline data, with enough records that the test set can earn a verdict.
"""

from __future__ import annotations

import json

from stages import baseline, compare, dedup, evaluate, probe, split, train
from tuneproof.io import write_jsonl

from conftest import ROOT
from params_file import set_dotted
from readme_project import RAW, headline_records, walkthrough_params


def test_learning_rate_zero_is_a_failed_attempt_not_prompt_suffices(project_dir, tiny_model_dir):
    write_jsonl(project_dir / RAW, headline_records(per_topic=40, seed=3))
    params = {**walkthrough_params(tiny_model_dir), "paths.base_model": str(tiny_model_dir),
              # 0.4: TF-IDF leak groups keep headlines that share a subject and a tail together (largest 25
              # of 109), so test needs a larger share to reach compare's 30 records
              "split.test_ratio": 0.4, "split.val_ratio": 0.1,
              "train.learning_rate": 0.0, "train.max_steps": 2, "train.eval_steps": 1, "train.val_records": 4,
              "train.max_length": 4096, "evaluate.train_sample": 16, "baseline.strategies": ["zero_shot", "few_shot"],
              "baseline.few_shot_k": [2], "baseline.val_records": 4, "probe.max_new_tokens": 4,
              "probe.text": str(ROOT / "eval" / "general_text.txt"),
              "probe.instructions": str(ROOT / "eval" / "general_instructions.jsonl")}
    del params["base_model.source"]
    set_dotted(project_dir / "params.yaml", params)
    (project_dir / "data" / "production").mkdir(parents=True)  # paths.production, committed empty: the drift check is not run
    for stage in (dedup, split, baseline, train, evaluate, probe, compare):
        stage.main()

    result = json.loads((project_dir / "metrics" / "compare.json").read_text())
    assert json.loads((project_dir / "metrics" / "split.json").read_text())["records"]["test"] >= 30
    assert result["checks"]["evidence"] == "PASS"
    assert result["verdict"] == "FINE-TUNE FAILED" and result["checks"]["learnt"] == "FAIL"
    report = (project_dir / "reports" / "report.md").read_text()
    assert report.splitlines()[0] == "# tuneproof verdict: FINE-TUNE FAILED"
    assert "train.learning_rate" in report  # the next steps name the knob
