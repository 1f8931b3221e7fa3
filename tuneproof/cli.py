"""The `tuneproof` command (installed by `make install`):

    tuneproof check-data data/raw/support_tickets.jsonl            # validate + stats before any run
    tuneproof check-data FILE --model models/base --allow-long     # report over-long records, exit 0
    tuneproof pr-report --base origin/main --out pr-comment.md     # working tree vs a Git ref
    tuneproof pr-report --exp my-exp                               # a DVC experiment vs main

Exit status: 0 ok, 1 check-data found over-long records (without --allow-long), 2 bad input
(`error: FILE:LINE: ...`, the same messages as the dedup stage).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar

from tuneproof import data_check
from tuneproof import pr_report as pr_report_lib
from tuneproof import sweep as sweep_lib
from tuneproof.cli_util import run_main
from tuneproof.config import Paths, Prompt, Task
from tuneproof.io import TuneproofError, write_json, write_text
from tuneproof.params import PARAMS_FILE, from_dict, load_section, read_params
from tuneproof.records import load_records, warn_label_variants

T = TypeVar("T")


def _section(data: dict, cls: type[T], name: str, params_file: str, absent: T) -> T:
    """A shared params section when present, else `absent` (check-data also runs on a bare file)."""
    return from_dict(cls, data[name], f"{params_file}: {name}") if name in data else absent


def _train_max_length(data: dict, params_file: str) -> int | None:
    """The train stage's resolved max_length (its default when the key is unset); None without a train section."""
    if "train" not in data:
        return None
    from tuneproof.train_config import TrainParams

    return from_dict(TrainParams, data["train"], f"{params_file}: train").max_length


def check_data(args: argparse.Namespace) -> int:
    """Validate FILE, print its summary; 1 when records are too long for training (unless --allow-long)."""
    records = load_records(args.file)  # raises `FILE:LINE: ...` on the first bad line, before torch loads
    params_file = args.params or PARAMS_FILE
    # Without --params, a missing params.yaml is fine: check-data also runs on a bare file.
    data = read_params(params_file) if args.params or Path(params_file).is_file() else {}
    task = _section(data, Task, "task", params_file, Task(label_field=None))
    prompt = _section(data, Prompt, "prompt", params_file, Prompt(system=None))
    model_dir = args.model or (data.get("paths") or {}).get("base_model")
    if not model_dir:
        raise TuneproofError(f"no model to tokenize with: pass --model DIR or set paths.base_model in {params_file}")
    if not (Path(model_dir) / "config.json").is_file():
        raise TuneproofError(f"{model_dir}: not a model directory (no config.json); run `dvc repro base_model` "
                             "or pass --model DIR")

    from transformers import AutoConfig

    from tuneproof.modeling import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    limit = data_check.context_limit(getattr(config, "max_position_embeddings", None),
                                     tokenizer.model_max_length, _train_max_length(data, params_file))
    lengths = data_check.token_lengths(tokenizer, records, prompt.system)
    too_long = data_check.over_long(lengths, limit)
    labels = data_check.label_counts(records, task.label_field) if task.label_field else None
    warn_label_variants(records, task.label_field, "check-data")
    print(data_check.format_report(args.file, len(records), data_check.input_format(args.file), task.label_field,
                                   labels, prompt.system, model_dir, lengths, limit, too_long))
    if too_long and not args.allow_long:
        print(f"error: {args.file}: {len(too_long)} records exceed {limit.tokens} tokens; shorten or drop them, "
              "raise train.max_length, or pass --allow-long", file=sys.stderr)
        return 1
    return 0


def pr_report(args: argparse.Namespace) -> int:
    """Write (or print) the markdown PR comment for the working tree or --exp against --base."""
    repo = Path.cwd()
    if args.out and Path(args.out).is_dir():  # checked first: nothing is computed for an output we must refuse
        raise TuneproofError(f"--out {args.out}: is a folder; name a file for the markdown comment")
    paths = load_section(Paths, "paths", args.params)
    base = args.base or pr_report_lib.default_base(repo)
    markdown = pr_report_lib.build(repo, base, args.exp, paths.metrics, paths.reports)
    if args.out:
        write_text(args.out, markdown)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(markdown)
    return 0


def sweep_pick(args: argparse.Namespace) -> int:
    """Print the experiments ranked by validation score and the command that applies the best;
    with --record, also keep them in paths.sweep, where compare's report counts them."""
    paths = load_section(Paths, "paths", args.params)
    result = sweep_lib.collect(Path.cwd(), args.params, f"{paths.metrics}/train.json")
    print(sweep_lib.format_pick(result))
    if args.record:
        write_json(paths.output("sweep"), sweep_lib.record(result))
        print(f"recorded in {paths.sweep}: commit it with the winner's params; compare reports the count")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneproof", description="Fine-tune only when it provably beats prompting.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    check = verbs.add_parser("check-data", help="validate a JSONL file and print counts, labels and token lengths")
    check.add_argument("file", metavar="FILE", help="JSONL: {prompt, completion} or {messages} per line")
    check.add_argument("--model", metavar="DIR",
                       help="model dir whose tokenizer counts tokens (default: paths.base_model)")
    check.add_argument("--params", help="params file for task.label_field, prompt.system, paths.base_model and "
                       "train.max_length (default: params.yaml if present)")
    check.add_argument("--allow-long", action="store_true", help="report over-long records but exit 0")
    check.set_defaults(func=check_data)

    pr = verbs.add_parser("pr-report", help="markdown PR comment: params, metrics and verdict vs a Git ref")
    pr.add_argument("--base", metavar="REF", help="Git ref to compare with (default: main, else origin/main)")
    pr.add_argument("--exp", metavar="EXP", help="DVC experiment to report instead of the working tree")
    pr.add_argument("--out", metavar="FILE", help="write the markdown here instead of stdout")
    pr.add_argument("--params", default=PARAMS_FILE, help="params file giving paths.metrics and paths.reports")
    pr.set_defaults(func=pr_report)

    sweep = verbs.add_parser("sweep-pick", help="pick the sweep's best experiment on validation only (never test)")
    sweep.add_argument("--params", default=PARAMS_FILE, help="params file giving paths.metrics (train.json)")
    sweep.add_argument("--record", action="store_true",
                       help="also write the configurations tried to paths.sweep, for compare's report")
    sweep.set_defaults(func=sweep_pick)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run the verb, return its exit status (TuneproofError: message, exit 2)."""
    args = build_parser().parse_args(argv)
    status = 0

    def run() -> None:
        nonlocal status
        status = args.func(args)

    run_main(run)
    return status


if __name__ == "__main__":
    sys.exit(main())
