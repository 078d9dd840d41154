# The README's two commands: `make run` (set up, then the main job on the embedded teacher) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test setup

setup: $(VENV)/.installed

# torch first, pinned: it is the CPU build on this machine's disk; an unpinned one pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The main job: the compiled AMR program for the embedded teacher over the bundled sample instructions.
# --resume: a second `make run` continues (or reprints) the same run instead of refusing its folder.
run: setup
	$(VENV)/bin/amr-dspy synthesize --input sample --program artifacts/local-0.5b/amr-bootstrap-2core.json \
		--out runs/sample --resume

test: setup
	$(PY) -m pytest
