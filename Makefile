# moodscope: `make demo` and `make test` set everything up themselves (.venv + the package).
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_CONSTRAINT := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
# Two cores is the design point; tests use both.
PYTEST_WORKERS ?= 2
# The tests that need real data find the shared Emotify dev copy here unless told otherwise.
ifneq ($(wildcard ../shared/emotify-dev/data.csv),)
export MOODSCOPE_EMOTIFY_DIR ?= $(abspath ../shared/emotify-dev)
endif

.PHONY: venv demo test lint bench model reproduce results clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_CONSTRAINT) -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/moodscope demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all --out docs/benchmarks.md

# The shipped default model and its card, rebuilt from the Emotify data.
DEFAULT_RECIPE ?= --model logistic_regression --model-kwargs '{"C": 0.01}' \
	--features musicnn_msd_full --aggregate track --soft --segments 20
model: $(STAMP)
	$(BIN)/python tools/build_default_model.py --data "$(MOODSCOPE_EMOTIFY_DIR)" $(DEFAULT_RECIPE)

# The paper reproduction and the model comparison quoted in docs/results.md.
reproduce: $(STAMP)
	$(BIN)/moodscope reproduce --data "$(MOODSCOPE_EMOTIFY_DIR)" --out runs/reproduce
results: $(STAMP)
	$(BIN)/moodscope compare --data "$(MOODSCOPE_EMOTIFY_DIR)" --out runs/compare-paper20

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-output
