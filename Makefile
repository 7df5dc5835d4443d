# moodscope: `make demo` and `make test` set everything up themselves (.venv + the package).
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORE_STAMP := $(VENV)/.installed-core
PIP_CONSTRAINT := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
# Two cores is the design point; tests use both.
PYTEST_WORKERS ?= 2
# The tests that need real data find the shared Emotify dev copy here unless told otherwise.
ifneq ($(wildcard ../shared/emotify-dev/data.csv),)
export MOODSCOPE_EMOTIFY_DIR ?= $(abspath ../shared/emotify-dev)
endif

.PHONY: venv demo test lint bench model reproduce cnn-lstm-variants results clean browser speech-tools \
	tag-readers

venv: $(STAMP)

# The dev extra includes research (PyTorch): constraints.txt pins the CPU build that this
# project's machines carry on disk. pip prints each package as it goes (a first install
# downloads ~1 GB with PyTorch): minutes, not silence.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@echo "== moodscope: setting up $(VENV) (package + test tools + research extra) =="
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on $(PIP_CONSTRAINT) -e '.[dev]'
	@echo "== moodscope: $(VENV) ready =="
	touch $(STAMP) $(CORE_STAMP)

# Predicting alone (the demo): the package without PyTorch (~0.5 GB, see docs/benchmarks.md).
$(CORE_STAMP): pyproject.toml
	@echo "== moodscope: setting up $(VENV) (package only: predicting, no PyTorch) =="
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e .
	touch $(CORE_STAMP)

demo: $(CORE_STAMP)
	$(BIN)/moodscope demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests

# Debian's Chromium with its driver, and Firefox ESR, for the browser tests (tests/test_web.py);
# .ci/run calls this, since CI may run on a fresh machine (as root). Nothing happens when all
# three are there.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		&& command -v firefox-esr >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium chromium-driver firefox-esr >/dev/null; }

# The programs whose view of the tags tests/test_tag_readers.py checks: ffprobe, exiftool,
# kid3-cli, Quod Libet's operon (exfalso) and MusicBrainz Picard (its reader, run by the
# system python3); mpcenc (musepack-tools) makes the tests' Musepack files. .ci/run calls
# this too; nothing happens when all are there.
tag-readers:
	@command -v ffprobe >/dev/null && command -v exiftool >/dev/null \
		&& command -v kid3-cli >/dev/null && command -v operon >/dev/null \
		&& command -v mpcenc >/dev/null \
		&& test -f /usr/lib/picard/picard/formats/__init__.py || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		ffmpeg libimage-exiftool-perl kid3-cli exfalso picard musepack-tools >/dev/null; }

# The text-to-speech programs whose voices make the speech of the not-music set
# (moodscope.research.nonmusic, tests/test_nonmusic.py). .ci/run calls this too.
speech-tools:
	@command -v espeak-ng >/dev/null && command -v flite >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		espeak-ng flite >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

# The library-scale table (benchmarks/bench_tag.py) tags this many 60-s files (the issue's
# 2,000; fewer for a quicker run: `make bench BENCH_LIBRARY_FILES=500`).
BENCH_LIBRARY_FILES ?= 2000
bench: $(STAMP)
	MOODSCOPE_BENCH_LIBRARY_FILES=$(BENCH_LIBRARY_FILES) \
		$(BIN)/python -m benchmarks.run_all --out docs/benchmarks.md

# The shipped default model and its card, rebuilt from the Emotify data.
DEFAULT_RECIPE ?= --model logistic_regression --model-kwargs '{"C": 0.01}' \
	--features musicnn_msd_full --aggregate track --soft --segments 20
# The card's checks: invariance on this many dev tracks; a folder of music from outside
# Emotify that the not-music judgement must leave alone (`make model OTHER_MUSIC=DIR
# OTHER_MUSIC_WHAT="words"`; the shipped card used the soundtracks of Debian's
# wesnoth-1.16-music, extremetuxracer-data and frozen-bubble-data); the model it replaces.
INVARIANCE_TRACKS ?= 24
OTHER_MUSIC ?=
OTHER_MUSIC_WHAT ?= music from outside Emotify
BASELINE ?=
model: $(STAMP)
	$(BIN)/python tools/build_default_model.py --data "$(MOODSCOPE_EMOTIFY_DIR)" $(DEFAULT_RECIPE) \
		--invariance-tracks $(INVARIANCE_TRACKS) \
		$(if $(OTHER_MUSIC),--other-music "$(OTHER_MUSIC)" --other-music-what "$(OTHER_MUSIC_WHAT)") \
		$(if $(BASELINE),--baseline "$(BASELINE)")

# The paper reproduction and the model comparisons quoted in docs/results.md (each run
# writes runs/<name>/comparison.md; features are cached, so a rerun only trains).
# Torch on one thread: the measured wall times are per core, and the 2 cores stay shared.
TORCH_THREADS ?= 1
reproduce: $(STAMP)
	OMP_NUM_THREADS=$(TORCH_THREADS) $(BIN)/moodscope reproduce \
		--data "$(MOODSCOPE_EMOTIFY_DIR)" --out runs/reproduce
COMPARE = $(BIN)/moodscope compare --data "$(MOODSCOPE_EMOTIFY_DIR)" --segments 20
# The paper's CNN-LSTM trained without the leak: every balance (one training per fold each),
# checkpoint rule and BatchNorm option, beside the majority class and the best models on the
# paper's 28 features; docs/results.md section 2.
VARIANTS = OMP_NUM_THREADS=$(TORCH_THREADS) $(BIN)/moodscope compare \
	--data "$(MOODSCOPE_EMOTIFY_DIR)" --features paper --variants smote,class_weight,none \
	--models majority,random_forest,gradient_boosting,paper_cnn_lstm
cnn-lstm-variants: $(STAMP)
	$(VARIANTS) --segments 20 --out runs/cnn-lstm-variants-20seg
	$(VARIANTS) --segments 10 --out runs/cnn-lstm-variants-10seg
TRACK = --aggregate track --config configs/track_level.yaml
TRACK_FULL = --aggregate track --config configs/track_level_full.yaml
GRU = --models attention_gru --config configs/attention_gru.yaml
results: $(STAMP) cnn-lstm-variants
	$(COMPARE) --features paper --out runs/compare-paper20 \
		--models majority,logistic_regression,random_forest,gradient_boosting,ridge
	$(COMPARE) --features paper $(GRU) --out runs/paper-more
	$(COMPARE) --features paper $(TRACK) --soft --models logistic_regression,ridge \
		--out runs/paper-track-soft
	$(COMPARE) --features musicnn_msd $(TRACK) --out runs/msd-track-hard \
		--models majority,logistic_regression,random_forest,ridge
	$(COMPARE) --features musicnn_msd $(TRACK) --soft --out runs/msd-track-soft \
		--models logistic_regression,random_forest,ridge
	$(COMPARE) --features musicnn_msd $(GRU) --out runs/msd-seq-hard
	$(COMPARE) --features musicnn_msd --soft $(GRU) --out runs/msd-seq-soft
	$(COMPARE) --features musicnn_mtt $(TRACK) --out runs/mtt-track-hard \
		--models logistic_regression,random_forest,ridge
	$(COMPARE) --features musicnn_mtt $(TRACK) --soft --out runs/mtt-track-soft \
		--models logistic_regression,random_forest,ridge
	$(COMPARE) --features musicnn_msd+musicnn_mtt $(TRACK) --models logistic_regression \
		--out runs/both-track-hard
	$(COMPARE) --features musicnn_msd+musicnn_mtt $(TRACK) --soft \
		--models logistic_regression,ridge --out runs/both-track-soft
	$(COMPARE) --features musicnn_msd_full $(TRACK_FULL) --models logistic_regression,ridge \
		--out runs/msdfull-track-hard
	$(COMPARE) --features musicnn_msd_full $(TRACK_FULL) --soft \
		--models logistic_regression,ridge --out runs/msdfull-track-soft
	$(COMPARE) --features musicnn_msd_full --soft --config configs/segment_level_full.yaml \
		--models logistic_regression --out runs/msdfull-segment-soft
	$(COMPARE) --features musicnn_mtt_full $(TRACK_FULL) --out runs/mttfull-track-hard \
		--models majority,logistic_regression,ridge
	$(COMPARE) --features musicnn_mtt_full $(TRACK_FULL) --soft \
		--models logistic_regression,ridge --out runs/mttfull-track-soft
	$(COMPARE) --features musicnn_msd_full+musicnn_mtt_full $(TRACK_FULL) --soft \
		--models logistic_regression,ridge --out runs/both-full-track-soft
	$(BIN)/python tools/learning_curve.py --data "$(MOODSCOPE_EMOTIFY_DIR)" \
		--features musicnn_msd_full --aggregate track --soft --model logistic_regression \
		--model-kwargs '{"C": 0.01}' --repeats 10 --out runs/learning_curve.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-output
