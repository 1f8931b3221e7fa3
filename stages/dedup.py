"""Stage `dedup`: validate the raw JSONL and drop exact, conflicting and near-duplicate records.

    python -m stages.dedup      # reads params.yaml: dedup, task.label_field, paths.raw, paths.dedup, paths.metrics

Loads and validates `paths.raw` (`tuneproof.records.load_records`): a bad line stops the stage
with `file:line: what is wrong`, before anything is written. The rules are in
`tuneproof.deduplicate`.

Outputs: `<paths.dedup>/records.jsonl` (canonical records, raw line order),
`<paths.dedup>/clusters.json` (every merged group: reason, kept id, dropped ids, similarity) and
`<paths.metrics>/dedup.json` (counts; and, when `dedup.truth` names the ground truth of planted
duplicates for this raw file, recall and precision as defined in `score_against_truth`).
"""

from __future__ import annotations

from tuneproof.cli_util import run_main
from tuneproof.config import DEDUP_CLUSTERS, DEDUP_RECORDS, Paths, Task
from tuneproof.deduplicate import (DedupParams, conflict_summary, dedup_records, load_truth, score_against_truth,
                                   summary, validate)
from tuneproof.io import atomic_files, remove_outputs, write_json, write_jsonl
from tuneproof.params import load_section
from tuneproof.records import load_records, warn_label_variants


def main(params_file: str = "params.yaml") -> None:
    params = load_section(DedupParams, "dedup", params_file)
    validate(params, params_file)
    paths = load_section(Paths, "paths", params_file)
    records = load_records(paths.raw)
    warn_label_variants(records, load_section(Task, "task", params_file).label_field, "dedup")
    truth = load_truth(params.truth, paths.raw) if params.truth else None
    result = dedup_records(records, params)
    metrics = dict(result.metrics)
    if truth is not None:
        metrics["truth"] = score_against_truth(result.clusters, truth)
    # One set: the old metrics file goes first and comes back last; records.jsonl and clusters.json
    # are replaced together (other files there, such as DVC's .gitignore, are left alone).
    out_dir, metrics_file = paths.output("dedup"), paths.metrics_file("dedup")  # both checked before any removal
    remove_outputs([metrics_file])
    with atomic_files(out_dir, [DEDUP_RECORDS, DEDUP_CLUSTERS]) as out:
        write_jsonl(out / DEDUP_RECORDS, result.records)
        write_json(out / DEDUP_CLUSTERS, result.clusters)
    write_json(metrics_file, metrics)
    print(summary(metrics))
    for line in conflict_summary(records, result.clusters, metrics):
        print(line)


if __name__ == "__main__":
    run_main(main)
