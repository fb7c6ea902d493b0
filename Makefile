# Two commands on a fresh machine (Debian/Ubuntu, Python 3.11, no conda):
#   make lab    create .venv on first use, then open JupyterLab on the student notebooks in release/
#   make test   create .venv on first use, then run the whole test suite
# Both rebuild .venv when requirements.txt or pyproject.toml change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
LAB_ARGS ?=
# Everything below runs with the environment first on PATH (nbgrader runs `alembic` and kernels run `python` from PATH).
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env lab test lint browser sandbox hubproxy slurm grade release strip clean-env gpu-check

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no python3 found; install Python 3.11 (Debian/Ubuntu: sudo apt install python3 python3-venv)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "error: Python 3.10 or newer is needed (3.11 recommended); found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "error: could not create a virtual environment; on Debian/Ubuntu: sudo apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)
	@echo "environment ready in $(VENV)"

# JupyterLab refuses to run as root unless told (containers, CI, some hubs): tell it only then.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=release $(ALLOW_ROOT) $(LAB_ARGS)

test: $(STAMP) browser sandbox hubproxy slurm lint
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# ruff, configured in pyproject.toml: pyflakes, pycodestyle (lines <= 110), import order, blind excepts, and
# type annotations on every function of course/ and autograder/.
lint: $(STAMP)
	$(BIN)/ruff check .

# The inspector's browser test drives Debian's Chromium. Installed here when running as root (CI);
# otherwise the test says what to install.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: tests/e2e/test_inspector_browser.py needs Chromium: sudo apt install chromium"; fi; }

# The class grader runs student code in bubblewrap (autograder/sandbox/). Installed here when running as
# root (CI); otherwise the grader and its tests say what to install.
sandbox:
	@command -v bwrap >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's bubblewrap for the class grader"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	else echo "note: the class grader needs bubblewrap: sudo apt install bubblewrap"; fi; }

# tests/grader/test_dask.py grades through dask-jobqueue on a one-node Slurm cluster it starts (as root): Debian's
# slurm-wlm and munge, installed here when running as root (CI).
slurm:
	@command -v slurmctld >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's slurm-wlm and munge for the Slurm grading test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; \
	else echo "note: tests/grader/test_dask.py's Slurm test needs root and Debian's slurm-wlm and munge"; fi; }

# tests/e2e/test_hub.py runs a real JupyterHub, whose proxy (configurable-http-proxy) comes from npm, into build/node.
CHP := build/node/node_modules/.bin/configurable-http-proxy
hubproxy:
	@test -x $(CHP) || { if command -v npm >/dev/null; then echo "installing configurable-http-proxy from npm for the hub test"; \
	  npm install --prefix build/node --no-save --no-audit --no-fund --loglevel=error configurable-http-proxy@5 >/dev/null; \
	else echo "note: tests/e2e/test_hub.py needs configurable-http-proxy: install Node.js and npm, then make hubproxy"; fi; }

# Grade every submission of ASSIGNMENT (or ASSIGNMENT=--all) in this course folder, sandboxed and in parallel.
grade: $(STAMP) sandbox
	$(BIN)/python -m autograder.grade $(ASSIGNMENT)

# Regenerate the student notebooks in release/ from source/ (run after editing source/, then commit both).
release: $(STAMP)
	$(BIN)/python -m autograder.publish.release

# Strip outputs and execution counts from source/ notebooks (keeps nbgrader metadata).
strip: $(STAMP)
	$(BIN)/python -m autograder.publish.strip source

clean-env:
	rm -rf $(VENV)

# One-shot check on a GPU machine with no internet (about 8 minutes): images per second, notebook 05's
# comparison at 224 px with three seeds, and notebook 05 run end to end in full mode; figures under build/gpu-check.
GPU_DATA ?= ../shared/data/pets-sample
gpu-check: $(STAMP)
	$(BIN)/python -m benchmarks.gpu_check --data $(GPU_DATA) --out build/gpu-check
