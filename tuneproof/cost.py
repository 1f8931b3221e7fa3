"""What answers cost, from per-answer measurements (`seconds`, `tokens`): the distill stage's
metrics over every answer, and compare's teacher line over the test answers."""

from __future__ import annotations

from typing import Sequence


def answer_rates(entries: Sequence[dict]) -> tuple[float | None, float | None]:
    """(mean seconds per answer, tokens per second over the answers that counted their tokens);
    None where nothing was measured."""
    seconds = [e["seconds"] for e in entries if isinstance(e.get("seconds"), (int, float))]
    timed = [e for e in entries if e.get("tokens") and e.get("seconds")]
    per_answer = round(sum(seconds) / len(seconds), 4) if seconds else None
    rate = round(sum(e["tokens"] for e in timed) / sum(e["seconds"] for e in timed), 2) if timed else None
    return per_answer, rate
