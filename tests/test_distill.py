"""The optional distill stage: a local-model teacher (always run, tiny model), an endpoint teacher's
retries and errors against a stdlib HTTP server that fails on purpose, and real OpenAI-compatible
servers: `transformers serve` on the embedded default (always), llama-cpp-python on its GGUF (when
that package is installed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from params_file import set_params
from stages import distill as stage
from stages.base_model import embedded_gguf
from tuneproof.distill import AnswerCache, EndpointTeacher, LocalTeacher, distill_records, given_agreement
from tuneproof.config import TEACHER_KEY
from tuneproof.generation import GenerateParams, generate
from tuneproof.io import TuneproofError, read_json, read_jsonl, write_jsonl
from tuneproof.modeling import load_model, load_tokenizer
from tuneproof.prompting import format_prompt
from tuneproof.records import iter_records, load_records, parse_prompt
from tiny_model import build_tiny_model_dir

PROMPTS = ["my card was declined for order 12345", "where is my parcel, it is late",
           "I cannot log in to my account", "cancel my subscription please"]
SYSTEM = "Answer in one short line."


def configure(project: Path, **distill) -> None:
    set_params(project, distill={"prompts": "data/prompts.jsonl", **distill}, prompt={"system": SYSTEM},
               generate={"max_new_tokens": 6, "batch_size": 2})


def write_prompts(project: Path, prompts=PROMPTS) -> None:
    # one line carries a completion of its own: the teacher's replaces it
    lines = [{"prompt": p} for p in prompts]
    lines[0]["completion"] = "a human answer"
    write_jsonl(project / "data/prompts.jsonl", lines)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A tiny random model that writes text (untied embeddings; the tied one only repeats a newline)."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("teacher") / "model", tied=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_teacher_fills_the_dataset_and_a_rerun_asks_nothing(project_dir, teacher_dir, tmp_path):
    configure(project_dir, run=["local"], model=str(teacher_dir))
    write_prompts(project_dir)
    cache = AnswerCache(tmp_path / "cache")
    stage.main(cache=cache)
    out = load_records(project_dir / "data/distill/records.jsonl")  # what dedup reads, validated the same way
    metrics = read_json(project_dir / "metrics/distill.json")
    assert metrics["teacher_calls"] == 4 and metrics["cache_hits"] == 0 and metrics["failed"] == 0
    # the one formatter (task system prompt) and the one generation path decided every answer
    tokenizer, model = load_tokenizer(teacher_dir), load_model(teacher_dir)
    expected = generate(model, tokenizer, [format_prompt(tokenizer, r, SYSTEM) for r in out], 6, 2)
    assert [r["completion"] for r in out] == [e.strip() for e in expected]
    assert [r["messages"][0]["content"] for r in out] == PROMPTS
    # each line keeps what its answer cost and the answer its input gave (compare's teacher line)
    details = [line[TEACHER_KEY] for line in read_jsonl(project_dir / "data/distill/records.jsonl")]
    assert details[0]["given"] == ["a human answer"] and not any("given" in d for d in details[1:])
    assert [d["tokens"] for d in details] == [len(tokenizer(e.strip(), add_special_tokens=False)["input_ids"])
                                              for e in expected]
    assert all(d["seconds"] > 0 for d in details)
    assert (metrics["given_records"], metrics["agreement_with_given"]) == (1, 0.0)  # a random model's answer

    stage.main(cache=cache)  # a re-run pays for nothing
    assert read_json("metrics/distill.json")["teacher_calls"] == 0
    assert read_json("metrics/distill.json")["cache_hits"] == 4
    write_prompts(project_dir, [*PROMPTS, "the mug arrived broken"])  # an added record pays only for itself
    stage.main(cache=cache)
    assert read_json("metrics/distill.json")["teacher_calls"] == 1


def test_agreement_with_the_given_answers_is_measured_on_normalised_text():
    records = [{"completion": "Spam.", TEACHER_KEY: {"given": ["spam"]}},
               {"completion": "ham", TEACHER_KEY: {"given": ["spam", "junk mail"]}},
               {"completion": "Junk  mail!", TEACHER_KEY: {"given": ["spam", "junk mail"]}},
               {"completion": "anything", TEACHER_KEY: {"seconds": 1.0}}]  # gave no answer: not counted
    assert given_agreement(records) == {"given_records": 3, "agreement_with_given": 0.6667}
    assert given_agreement(records[3:]) == {"given_records": 0, "agreement_with_given": None}


def test_a_killed_run_resumes_without_reasking(project_dir, teacher_dir, tmp_path):
    records = list(iter_records(write_prompts(project_dir) or "data/prompts.jsonl", parse_prompt))
    teacher = LocalTeacher(teacher_dir, GenerateParams(max_new_tokens=6, batch_size=1))
    cache = AnswerCache(tmp_path / "cache")
    answers = teacher.answer_all

    def killed_after_two(jobs):
        for n, item in enumerate(answers(jobs)):
            if n == 2:
                raise KeyboardInterrupt  # as a kill between two answers
            yield item

    teacher.answer_all = killed_after_two
    with pytest.raises(KeyboardInterrupt):
        distill_records(records, teacher, SYSTEM, cache)
    teacher.answer_all = answers
    result = distill_records(records, teacher, SYSTEM, cache)
    assert (result.metrics["teacher_calls"], result.metrics["cache_hits"]) == (2, 2)


class FlakyEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-style endpoint that fails on purpose: 401 without the right key, 503 on every
    first request of a prompt, and always 500 for prompts containing "doomed"."""

    seen: dict[str, int] = {}

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        FlakyEndpoint.seen[prompt] = FlakyEndpoint.seen.get(prompt, 0) + 1
        if self.headers.get("Authorization") != "Bearer right-key":
            return self._send(401, {"error": f"bad key {self.headers.get('Authorization')}"})
        if "doomed" in prompt:
            return self._send(500, {"error": "boom"})
        if FlakyEndpoint.seen[prompt] == 1:
            return self._send(503, {"error": "busy"})
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": f"answer to {prompt}"}}],
                         "usage": {"completion_tokens": 3}})

    def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_url():
    FlakyEndpoint.seen = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def endpoint_params(project: Path, url: str, **extra) -> None:
    configure(project, run=["openai"], model="m", base_url=url, api_key_env="TP_TEST_KEY", retries=2,
              backoff_s=0.0, **extra)


def test_endpoint_retries_and_lists_a_failed_record(project_dir, flaky_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TP_TEST_KEY", "right-key")
    write_prompts(project_dir, [*PROMPTS, "a doomed prompt"])
    endpoint_params(project_dir, flaky_url)
    with pytest.raises(TuneproofError, match=r"1 record\(s\) got no answer.*HTTP 500 after 3 tries"):
        stage.main(cache=AnswerCache(tmp_path / "cache"))
    assert not (project_dir / "data/distill/records.jsonl").exists()
    assert read_json("metrics/distill.json")["failures"] == [{"id": "L000005", "error": "HTTP 500 after 3 tries"}]

    endpoint_params(project_dir, flaky_url, on_failure="skip")
    stage.main(cache=AnswerCache(tmp_path / "cache"))
    out = load_records("data/distill/records.jsonl")
    assert [r["completion"] for r in out] == [f"answer to {p}" for p in PROMPTS]
    metrics = read_json("metrics/distill.json")
    assert (metrics["teacher_calls"], metrics["cache_hits"], metrics["failed"]) == (1, 4, 1)
    assert FlakyEndpoint.seen[PROMPTS[0]] == 2  # one 503, one answer; the cache kept it from the first run
    assert read_json("data/distill/failures.json")[0]["id"] == "L000005"


def test_a_bad_key_names_the_param_and_never_the_key(project_dir, flaky_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TP_TEST_KEY", "sk-wrong-secret")
    write_prompts(project_dir)
    endpoint_params(project_dir, flaky_url)
    with pytest.raises(TuneproofError, match="distill.api_key_env") as caught:
        stage.main(cache=AnswerCache(tmp_path / "cache"))
    assert "sk-wrong-secret" not in str(caught.value)
    assert "sk-wrong-secret" not in (project_dir / "params.yaml").read_text()
    assert not (project_dir / "data/distill").exists() and not (project_dir / "metrics/distill.json").exists()


def test_an_unreachable_endpoint_names_the_param_and_writes_nothing(project_dir, tmp_path):
    write_prompts(project_dir)
    configure(project_dir, run=["openai"], model="m", base_url=f"http://127.0.0.1:{free_port()}/v1", retries=1,
              backoff_s=0.0)
    with pytest.raises(TuneproofError, match="distill.base_url: cannot reach"):
        stage.main(cache=AnswerCache(tmp_path / "cache"))
    assert not (project_dir / "data/distill").exists() and not (project_dir / "metrics/distill.json").exists()


def test_an_unset_key_variable_is_named(project_dir, monkeypatch):
    monkeypatch.delenv("TP_TEST_KEY", raising=False)
    with pytest.raises(TuneproofError, match="distill.api_key_env: the environment variable TP_TEST_KEY is unset"):
        EndpointTeacher("http://127.0.0.1:1/v1", "m", GenerateParams(), api_key_env="TP_TEST_KEY")


# --- real OpenAI-compatible servers ---------------------------------------------------------------
LLAMA_PYTHON = os.environ.get("TUNEPROOF_LLAMA_PYTHON", sys.executable)  # a Python with llama-cpp-python[server]


@dataclass(frozen=True)
class Server:
    url: str
    model: str         # the name the server answers to
    key: str | None    # the key it demands (None: it checks none)


def wait_for_port(proc: subprocess.Popen, port: int, what: str, tries: int = 480) -> None:
    for _ in range(tries):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"{what} exited while starting")
            time.sleep(0.25)
    pytest.fail(f"{what} did not listen on port {port} within {tries / 4:.0f} s")


def start_transformers_serve(model_dir: Path, port: int) -> tuple[list[str], Server]:
    """`transformers serve` (transformers[serving], a dev dependency): FastAPI + uvicorn, pinned to the
    embedded default materialised by base_model, greedy at temperature 0. It checks no key."""
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir), "--host",
               "127.0.0.1", "--port", str(port)]
    return command, Server(f"http://127.0.0.1:{port}/v1", str(model_dir), None)


def start_llama_cpp(model_dir: Path, port: int) -> tuple[list[str], Server]:
    """llama-cpp-python's server on the embedded GGUF itself, with an API key; an sdist that took
    27 min to build here, so it runs only when TUNEPROOF_LLAMA_PYTHON names a Python that has it."""
    if subprocess.run([LLAMA_PYTHON, "-c", "import llama_cpp.server"], capture_output=True).returncode:
        pytest.skip(f"llama-cpp-python[server] is not installed for {LLAMA_PYTHON} (set TUNEPROOF_LLAMA_PYTHON to a "
                    "Python that has it); `transformers serve` covers the same steps")
    command = [LLAMA_PYTHON, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--port", str(port),
               "--api_key", "right-key", "--n_ctx", "2048", "--n_threads", "1", "--model_alias", "smollm2"]
    return command, Server(f"http://127.0.0.1:{port}/v1", "smollm2", "right-key")


@pytest.fixture(params=[start_transformers_serve, start_llama_cpp], ids=["transformers_serve", "llama_cpp"])
def real_server(request, embedded_model_dir):
    port = free_port()
    command, server = request.param(embedded_model_dir, port)
    proc = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port, command[2])
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_real_openai_compatible_server(project_dir, real_server, monkeypatch):
    """A refused key or model, a run killed between answers, its resumption, and a re-run that asks nothing."""
    prompts = [f"{p} (ticket {n})" for n, p in enumerate(PROMPTS * 2)]
    write_prompts(project_dir, prompts)
    key_env = "TP_TEST_KEY" if real_server.key else None
    configure(project_dir, run=["openai"], model=real_server.model, base_url=real_server.url, api_key_env=key_env,
              concurrency=1, retries=1, backoff_s=0.0)
    if real_server.key:
        monkeypatch.setenv("TP_TEST_KEY", "sk-wrong-secret")
        with pytest.raises(TuneproofError, match="distill.api_key_env") as caught:
            stage.main()
        assert "sk-wrong-secret" not in str(caught.value) and not (project_dir / "data/distill").exists()
        monkeypatch.setenv("TP_TEST_KEY", real_server.key)
    else:  # a model the server does not serve: every record is refused, each listed, nothing written
        configure(project_dir, model="no-such-model")
        with pytest.raises(TuneproofError, match=r"8 record\(s\) got no answer \(L000001: HTTP 400.*no-such-model"):
            stage.main()
        assert not (project_dir / "data/distill").exists()
        configure(project_dir, model=real_server.model)

    cache_dir = project_dir / stage.AnswerCache().folder
    env = {**os.environ, "PYTHONPATH": str(Path(stage.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "stages.distill"], cwd=project_dir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not list(cache_dir.glob("*/*.json")):
        time.sleep(0.05)
    proc.kill()  # SIGKILL between two answers: no cleanup runs
    proc.wait()
    cached = len(list(cache_dir.glob("*/*.json")))
    assert 0 < cached < len(prompts), "the run was not killed mid-way"
    assert not (project_dir / "data/distill/records.jsonl").exists()

    stage.main()  # resumes: asks only for what the killed run had not cached
    out = load_records("data/distill/records.jsonl")
    assert len(out) == len(prompts) and all(r["completion"].strip() for r in out)
    assert out[0]["completion"] != "a human answer"
    metrics = read_json("metrics/distill.json")
    assert (metrics["teacher_calls"], metrics["cache_hits"], metrics["failed"]) == (len(prompts) - cached, cached, 0)
    assert metrics["teacher_seconds_per_record"] > 0 and metrics["teacher_tokens_per_second"] > 0
    stage.main()
    assert read_json("metrics/distill.json")["teacher_calls"] == 0


@pytest.mark.parametrize("change, message", [
    ({}, r"distill.run is \[\]; use \[local\] or \[openai\] to distil \(distill is off"),
    ({"run": ["openai"], "model": "m", "base_url": "localhost:8080"}, "distill.base_url is 'localhost:8080'"),
    ({"run": ["local"], "model": None}, "distill.model is None"),
    ({"run": ["openai"], "model": "m", "base_url": "http://x/v1", "concurrency": 0}, "distill.concurrency is 0"),
])
def test_distill_params_are_checked_with_their_key(project_dir, change, message):
    write_prompts(project_dir)
    configure(project_dir, **change)
    with pytest.raises(TuneproofError, match=message):
        stage.main()


class ParrotTeacher:
    """A teacher that answers "Canberra" to everything, instantly (no model, no server)."""
    identity, decoding = {"kind": "parrot"}, {}

    def answer_all(self, jobs):
        for key in jobs:
            yield key, {"completion": "Canberra", "tokens": 1, "seconds": 0.1}


def test_a_prompt_with_references_but_no_completion_still_gives_its_answers(tmp_path):
    """QA prompts often come as {"prompt", "references"} (every accepted answer, none the one to train
    on): those are the answers the line gave, for the agreement metric and compare's given-answer line."""
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [{"prompt": "Capital of Australia?", "references": ["Canberra", "Canberra, ACT"]},
                       {"prompt": "Capital of Canada?", "completion": "Ottawa", "references": ["Ottawa, ON"]},
                       {"prompt": "Capital of Peru?"}])
    records = list(iter_records(path, parse_prompt))
    result = distill_records(records, ParrotTeacher(), None, AnswerCache(tmp_path / "cache"))
    assert [r[TEACHER_KEY].get("given") for r in result.records] == [
        ["Canberra", "Canberra, ACT"], ["Ottawa", "Ottawa, ON"], None]
    assert (result.metrics["given_records"], result.metrics["agreement_with_given"]) == (2, 0.5)
