"""Distillation: a teacher's answers for the pipeline's prompts (the optional `distill` stage).

Teachers:
  * LocalTeacher - a Hugging Face model folder, prompted by the one formatter (tuneproof.prompting,
    the task's system prompt) and decoded by the one generation path (greedy, `generate.*`);
  * EndpointTeacher - an OpenAI-compatible `/chat/completions` endpoint (stdlib urllib), the same
    messages, temperature 0, `max_tokens` = generate.max_new_tokens. The key is read from the
    environment variable whose NAME is distill.api_key_env and only ever sent in the
    Authorization header: it is redacted from every message and written nowhere.

Each answer is cached the moment it arrives, under AnswerCache's folder, by the sha256 of the
teacher's identity, the messages (system prompt included) and the decoding settings; so a killed
run resumes without re-asking for finished records, and a re-run or an added record pays only
for what is new. The cache is not a DVC output (DVC deletes those before a run) and is kept.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

from tuneproof.config import TEACHER_KEY
from tuneproof.cost import answer_rates
from tuneproof.generation import GenerateParams
from tuneproof.io import TuneproofError, dumps, read_json, sha256_text, sha256_tree, write_json
from tuneproof.progress import progress
from tuneproof.prompting import build_messages
from tuneproof.text import normalise

CACHE_DIR = Path(".tuneproof/cache/distill")  # answers already paid for (not a DVC output; kept across runs)
RETRY_STATUS = {408, 429} | set(range(500, 600))  # rate limits, timeouts and server errors: worth another try


@dataclass(frozen=True)
class DistillParams:
    """params.yaml `distill` (the optional stage; off while `run` is [])."""

    run: list[Literal["local", "openai"]] = field(default_factory=list)
    prompts: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 120.0
    on_failure: Literal["stop", "skip"] = "stop"


class RecordFailed(Exception):
    """One record's request failed for good (retries spent, or an answer that is no answer)."""


@dataclass(frozen=True)
class AnswerCache:
    """One JSON file per answer, `<folder>/<key[:2]>/<key>.json`, each written atomically."""

    folder: Path = CACHE_DIR

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        return read_json(self._path(key)) if self._path(key).is_file() else None

    def put(self, key: str, entry: dict) -> None:
        write_json(self._path(key), entry)


def answer_key(identity: dict, messages: list[dict], decoding: dict) -> str:
    """The cache key of one answer: what decides it, and nothing else."""
    return sha256_text(dumps({"teacher": identity, "messages": messages, "decoding": decoding}))


class LocalTeacher:
    """A local Hugging Face model folder, decoded greedily by tuneproof.generation in batches of
    generate.batch_size (each batch's answers are cached before the next starts)."""

    def __init__(self, model_dir: str | Path, gen: GenerateParams):
        from tuneproof.modeling import load_model, load_tokenizer

        if not (Path(model_dir) / "config.json").is_file():
            raise TuneproofError(f"distill.model: {model_dir} is not a Hugging Face model folder (no config.json)")
        self.tokenizer, self.model, self.gen = load_tokenizer(model_dir), load_model(model_dir), gen
        parameter = next(self.model.parameters())
        self.identity = {"kind": "local", "files": sha256_tree(model_dir),
                         "device": str(parameter.device), "dtype": str(parameter.dtype)}
        self.decoding = {"greedy": True, "max_new_tokens": gen.max_new_tokens}

    def answer_all(self, jobs: dict[str, list[dict]]) -> Iterator[tuple[str, dict | RecordFailed]]:
        from tuneproof.generation import count_tokens, generate
        from tuneproof.prompting import render_prompt

        keys = list(jobs)
        for start in range(0, len(keys), self.gen.batch_size):
            chunk = keys[start:start + self.gen.batch_size]
            begin = time.monotonic()
            answers = generate(self.model, self.tokenizer, [render_prompt(self.tokenizer, jobs[k]) for k in chunk],
                               self.gen.max_new_tokens, self.gen.batch_size, self.gen.prefix_cache, desc="distill")
            seconds = (time.monotonic() - begin) / len(chunk)
            for key, text, tokens in zip(chunk, answers, count_tokens(self.tokenizer, answers)):
                yield key, _entry(text, tokens, seconds)


def _entry(text: str | None, tokens: int | None, seconds: float) -> dict | RecordFailed:
    if not isinstance(text, str) or not text.strip():
        return RecordFailed("the teacher's answer is empty")
    return {"completion": text.strip(), "tokens": tokens, "seconds": round(seconds, 4)}


@dataclass
class EndpointTeacher:
    """An OpenAI-compatible chat endpoint, asked `concurrency` records at a time; 408/429/5xx and
    connection errors are retried `retries` times, waiting backoff_s x 2^attempt between tries."""

    base_url: str
    model: str
    gen: GenerateParams
    api_key_env: str | None = None
    concurrency: int = 4
    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    requests: int = field(default=0, init=False)  # HTTP requests sent, retries included

    def __post_init__(self):
        self._lock, self._key = threading.Lock(), None
        if self.api_key_env:
            self._key = os.environ.get(self.api_key_env, "").strip()
            if not self._key:
                raise TuneproofError(f"distill.api_key_env: the environment variable {self.api_key_env} is unset or "
                                     "empty; export the endpoint's key in it (never put the key in params.yaml)")
        self.url = self.base_url.rstrip("/") + "/chat/completions"
        self.identity = {"kind": "openai", "base_url": self.base_url.rstrip("/"), "model": self.model}
        self.decoding = {"temperature": 0, "max_tokens": self.gen.max_new_tokens}

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _post(self, messages: list[dict]) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        body = json.dumps({"model": self.model, "messages": messages, **self.decoding}).encode()
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            return json.load(response)

    def ask(self, messages: list[dict]) -> dict | RecordFailed:
        """One record's answer entry; TuneproofError when the endpoint itself is wrong (bad key,
        wrong URL or model, unreachable), which no other record would escape either."""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            begin = time.monotonic()
            with self._lock:  # counted from every worker thread
                self.requests += 1
            try:
                reply = self._post(messages)
            except urllib.error.HTTPError as exc:
                detail = self._redact(exc.read(300).decode("utf-8", "replace"))
                if exc.code in (401, 403):
                    raise TuneproofError(f"distill.api_key_env: {self.url} refused the key in ${self.api_key_env} "
                                         f"(HTTP {exc.code}); set the right key in that variable") from None
                if exc.code == 404:
                    raise TuneproofError(f"distill.base_url / distill.model: {self.url} answered 404 for model "
                                         f"{self.model!r} ({detail.strip()[:120]}); check both") from None
                if exc.code not in RETRY_STATUS:
                    return RecordFailed(f"HTTP {exc.code}: {detail.strip()[:200]}")
                error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout
                error = f"connection error: {self._redact(str(getattr(exc, 'reason', exc)))}"
            else:
                try:
                    text = reply["choices"][0]["message"]["content"]
                except (KeyError, IndexError, TypeError):
                    return RecordFailed(f"not a chat completion: {self._redact(json.dumps(reply))[:200]}")
                # the answer's share of wall time with `concurrency` requests in flight, as a local
                # teacher's is its share of a batch: a per-answer cost, not one request's latency
                return _entry(text, (reply.get("usage") or {}).get("completion_tokens"),
                              (time.monotonic() - begin) / self.concurrency)
        if error.startswith("connection error"):
            raise TuneproofError(f"distill.base_url: cannot reach {self.url} after {self.retries + 1} tries "
                                 f"({error}); start the server or correct distill.base_url")
        return RecordFailed(f"{error} after {self.retries + 1} tries")

    def answer_all(self, jobs: dict[str, list[dict]]) -> Iterator[tuple[str, dict | RecordFailed]]:
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = {pool.submit(self.ask, messages): key for key, messages in jobs.items()}
            for future in progress(as_completed(futures), "distill", total=len(futures), unit="answer"):
                yield futures[future], future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a fatal error stops the queue at once


@dataclass(frozen=True)
class DistillResult:
    records: list[dict]   # the input records (input order) with the teacher's completions and TEACHER_KEY details; failed ones left out
    failures: list[dict]  # {"id", "error"} of each record with no answer
    metrics: dict


def distill_records(records: Sequence[dict], teacher, system: str | None,
                    cache: AnswerCache = AnswerCache()) -> DistillResult:
    """Every record's completion replaced by the teacher's answer to its messages (the task's system
    prompt first, as tuneproof.prompting serves it), its own answers kept under TEACHER_KEY: cached
    answers first, then one teacher call per distinct uncached prompt, each cached as it arrives."""
    messages = [build_messages(r, system) for r in records]
    keys = [answer_key(teacher.identity, m, teacher.decoding) for m in messages]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a repeated prompt is asked once
    answers = {k: cache.get(k) for k in first}
    jobs = {k: messages[first[k]] for k, a in answers.items() if a is None}
    errors: dict[str, str] = {}
    begin = time.monotonic()
    for key, entry in teacher.answer_all(jobs) if jobs else ():
        if isinstance(entry, RecordFailed):
            errors[key] = str(entry)
        else:
            cache.put(key, entry)
            answers[key] = entry
    wall = time.monotonic() - begin
    out, failures = [], []
    for record, key in zip(records, keys):
        if key in errors:
            failures.append({"id": record["id"], "error": errors[key]})
        else:
            answer = answers[key]
            # the answers the input line gave (a completion, its references, or references alone):
            # compare scores teacher and student against them
            given = [*([] if record["completion"] is None else [record["completion"]]), *record.get("references", ())]
            details = {"seconds": answer["seconds"], "tokens": answer["tokens"], **({"given": given} if given else {})}
            out.append({**record, "completion": answer["completion"], TEACHER_KEY: details})
    paid = [answers[k] for k in jobs if k not in errors]
    every = [answers[k] for k in dict.fromkeys(keys) if k not in errors]
    seconds_per_answer, tokens_per_second = answer_rates(every)
    metrics = {
        "records_in": len(records), "records_out": len(out), "failed": len(failures),
        "teacher": teacher.identity["kind"], "teacher_calls": len(jobs), "cache_hits": len(keys) - len(jobs),
        "requests": getattr(teacher, "requests", len(jobs)), "seconds_this_run": round(wall, 3),
        # cost of the teacher as measured when each answer was paid for (cached answers included)
        "teacher_seconds_per_record": seconds_per_answer, "teacher_tokens_per_second": tokens_per_second,
        "completion_tokens_this_run": sum(a.get("tokens") or 0 for a in paid),
        **given_agreement(out),
    }
    return DistillResult(out, failures, metrics)


def given_agreement(records: Sequence[dict]) -> dict:
    """How often the teacher said what the input line itself gave (after the one text normalisation):
    an early sign of a teacher that does not do the task, before a pipeline run is spent on it."""
    given = [r for r in records if "given" in r[TEACHER_KEY]]
    same = sum(normalise(r["completion"]) in {normalise(g) for g in r[TEACHER_KEY]["given"]} for r in given)
    return {"given_records": len(given), "agreement_with_given": round(same / len(given), 4) if given else None}


def as_training_lines(records: Sequence[dict]) -> list[dict]:
    """Records as raw JSONL lines in one format (records.load_records refuses a mixed file):
    `{"prompt", "completion"}` when every record is a single user turn, else chat `messages`; each
    line also carries its TEACHER_KEY details."""
    if all(len(r["messages"]) == 1 and r["messages"][0]["role"] == "user" for r in records):
        return [{"prompt": r["messages"][0]["content"], "completion": r["completion"], TEACHER_KEY: r[TEACHER_KEY]}
                for r in records]
    return [{"messages": [*r["messages"], {"role": "assistant", "content": r["completion"]}], TEACHER_KEY: r[TEACHER_KEY]}
            for r in records]
