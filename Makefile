# The README's two commands: `make run` (set up, then the main job on the embedded teacher) and `make test`
# (ruff, mypy, then pytest).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test setup server setup-bigcodebench

setup: $(VENV)/.installed server

# llama.cpp's batching llama-server, built once into the user cache from the pinned llama-cpp-python sdist
# (several minutes on 2 cores; a no-op afterwards). If it cannot be built the teacher falls back to
# llama_cpp.server, and says so.
server: $(VENV)/.installed
	$(VENV)/bin/amr-dspy teacher build-server || echo "amr-dspy: llama-server was not built; the local teacher will use llama_cpp.server"

# No AMX in llama.cpp's native build: on this project's Xeon VMs cpuinfo lists AMX, but code using it crashes
# (SIGSEGV in ggml_backend_amx_mul_mat on the first matmul). Elsewhere the flags change nothing.
NO_AMX := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16,)
LLAMA_CPP_PIN := $(shell grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml)

# torch first, pinned: it is the CPU build on this machine's disk; an unpinned one pulls a multi-GB CUDA build.
# llama-cpp-python next, built here without AMX (--no-cache-dir: a wheel cached from an AMX build would be reused).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	CFLAGS="$(NO_AMX)" CXXFLAGS="$(NO_AMX)" $(PY) -m pip install --quiet --no-cache-dir '$(LLAMA_CPP_PIN)'
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The main job: the compiled AMR program for the embedded teacher (synthesize's default) over the bundled sample
# instructions.
# --resume: a second `make run` continues (or reprints) the same run instead of refusing its folder.
run: setup
	$(VENV)/bin/amr-dspy synthesize --input sample --out runs/sample --resume

# Lint and type-check first (configured in pyproject.toml), then the suite; any failure fails `make test`.
test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

# BigCodeBench's reference harness for `eval --crosscheck`, and its tasks' test-time libraries (the extra). The
# bigcodebench package goes in without its dependencies: they include vllm, transformers and API clients, used only
# for generation; its evaluator and data loader need only numpy, matplotlib, datasets and the three named here.
# The core libraries stay at their installed versions (the exclusion list was measured on them): pip refuses,
# rather than downgrades, where the extra does not fit them.
BIGCODEBENCH_PIN := bigcodebench==0.2.5
setup-bigcodebench: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps '$(BIGCODEBENCH_PIN)'
	$(PY) -m pip freeze | grep -iE '^(numpy|pandas|scipy|scikit-learn|matplotlib)==' > $(VENV)/core-constraints.txt
	$(PY) -m pip install --quiet -c $(VENV)/core-constraints.txt appdirs tempdir wget -e '.[bigcodebench]'
