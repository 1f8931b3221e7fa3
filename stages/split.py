"""Stage `split`: leak-free, stratified train/val/test split plus an independent contamination audit.

    python -m stages.split       # reads params.yaml: split, task.label_field, paths.dedup/split/metrics

Input: `<paths.dedup>/records.jsonl` (canonical records). Outputs: `<paths.split>/{train,val,test}.jsonl`,
`<paths.split>/audit.json` and the manifest `<paths.metrics>/split.json`. How records are grouped
and assigned: `tuneproof.splitting`; the audit, which fails the stage (nothing written) on a
val/test record that nearly copies a train record: `tuneproof.leak_audit`.
"""

from __future__ import annotations

import sys

from tuneproof.cli_util import run_main
from tuneproof.config import SPLIT_AUDIT, SPLITS, Paths, Task, split_file
from tuneproof.io import atomic_files, remove_outputs, write_json, write_jsonl
from tuneproof.params import load_section
from tuneproof.records import read_deduplicated
from tuneproof.splitting import SplitParams, check_label_field, manifest, run_split, summary, validate


def main(params_file: str = "params.yaml") -> None:
    params = load_section(SplitParams, "split", params_file)
    validate(params, params_file)
    paths = load_section(Paths, "paths", params_file)
    task = load_section(Task, "task", params_file)
    records = read_deduplicated(paths.dedup)
    check_label_field(records, task.label_field)
    result, report = run_split(records, params, task.label_field)
    out = paths.output("split")
    files = {s: out / split_file(s) for s in SPLITS}
    metrics_file = paths.metrics_file("split")
    remove_outputs([metrics_file])  # the manifest goes first and comes back last
    with atomic_files(out, [*(path.name for path in files.values()), SPLIT_AUDIT]) as tmp:  # one set
        for split, path in files.items():
            write_jsonl(tmp / path.name, result.splits[split])
        write_json(tmp / SPLIT_AUDIT, report)
    metrics = manifest(result, report, files, task.label_field)
    write_json(metrics_file, metrics)
    for warning in metrics["warnings"]:
        print(f"split: WARNING: {warning}", file=sys.stderr)
    for line in summary(metrics, report, params, out, out / SPLIT_AUDIT):
        print(line)


if __name__ == "__main__":
    run_main(main)
