"""What README's walkthroughs start from: a fresh clone of the project, commands run with the
test venv's tools, and the headline data and params.yaml keys of "Bring your own data"."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the venv running pytest: its dvc and tuneproof commands
RAW = "data/raw/headlines.jsonl"

# Headline = subject + event + tail, drawn per topic: the subject and the event give the topic away
# (learnable), and texts sharing one slot stay below the split audit's similarity threshold.
TOPICS = {
    "sports": (["The striker", "Our goalkeeper", "The rookie pitcher", "The tennis champion", "The relay team",
                "The home side", "The veteran coach", "The cycling squad"],
               ["scored twice in the derby", "saved a late penalty", "threw a shutout at the ballpark",
                "won the final in five sets", "took gold at the championships", "lost the league game on a late goal",
                "rested three starters before the playoffs", "broke the course record on the mountain stage"]),
    "weather": (["Forecasters", "The met office", "Storm chasers", "Pilots at the airport", "Farmers in the valley",
                 "Coastal towns", "Ski resorts", "Commuters in the capital"],
                ["expect heavy rain and thunder", "warn of a heatwave above 38 degrees", "report thick fog and icy roads",
                 "brace for snow and gale force winds", "see frost on the fields at dawn",
                 "track a hurricane heading for land", "wait for the flood water to recede", "shelter from a hailstorm"]),
    "finance": (["The central bank", "Shares of the chipmaker", "The retailer", "Bond investors", "The startup",
                 "The currency", "The pension fund", "Oil traders"],
                ["held interest rates at four percent", "jumped after quarterly earnings beat estimates",
                 "cut its profit forecast for the year", "sold off as yields climbed",
                 "raised a new funding round from investors", "slid against the dollar on inflation data",
                 "doubled its dividend payout", "priced in a cut to borrowing costs"]),
}
TAILS = ["", " on Monday", " this weekend", " after a tense week", ", reports say", " for the first time in years",
         " overnight", " despite early doubts"]


def headline_records(per_topic: int = 32, seed: int = 0) -> list[dict]:
    """~100 {"prompt", "completion"} lines: headlines labelled with their topic, plus planted
    duplicates (two exact copies, a case/punctuation variant, two copies with a word added)."""
    rng = random.Random(seed)
    records = []
    for label, (subjects, events) in TOPICS.items():
        triples = [(s, e, t) for s in subjects for e in events for t in TAILS]
        records += [{"prompt": f"{s} {e}{t}.", "completion": label} for s, e, t in rng.sample(triples, per_topic)]
    rng.shuffle(records)
    variants = {20: records[20]["prompt"].upper().rstrip("."),  # same text once normalised: an exact duplicate
                30: records[30]["prompt"][:-1] + " again.",      # one word added: a near duplicate
                40: "Today " + records[40]["prompt"][0].lower() + records[40]["prompt"][1:]}
    return [*records, dict(records[3]), dict(records[10]),
            *({"prompt": text, "completion": records[i]["completion"]} for i, text in variants.items())]


def fresh_copy(dest: Path) -> Path:
    """The project's git-tracked files as they are in the working tree (uncommitted edits included,
    deleted files left out), committed in a new git repo: what a fresh clone looks like. New
    modules of the packages that are not yet added to git come along too (the tracked code may
    import them already); other untracked files, such as a previous run's outputs, do not."""
    names = []
    for extra in ([], ["--others", "--exclude-standard", "--", "tuneproof/*.py", "stages/*.py"]):
        listed = subprocess.run(["git", "ls-files", "-z", *extra], cwd=ROOT, check=True, capture_output=True, text=True)
        names += filter(None, listed.stdout.split("\0"))
    for name in names:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh clone"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return dest


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def walkthrough_params(model_dir: Path) -> dict[str, object]:
    """The params.yaml keys the README's walkthrough sets (dotted key -> value)."""
    return {
        "paths.raw": RAW,
        "base_model.source": str(model_dir),
        "task.label_field": "completion",
        "prompt.system": "Classify the news headline by topic. Answer with one word: sports, weather or finance.",
        "score.kind": "label",
        "score.primary": "macro_f1",
        "score.fields": [],
        "score.style": {},
        "dedup.truth": None,
        "generate.max_new_tokens": 4,
    }
