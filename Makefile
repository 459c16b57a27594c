# The two set-up commands: `make demo` runs the whole pipeline, `make test` the tests.
# Both build .venv first (deploy/setup_env.sh; a second call skips what is installed).
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# the test files run on two pytest processes (pytest-xdist); a file's tests stay together, in
# order, and so do the files sharing an expensive fixture (tests/conftest.py: GROUPED_FILES);
# they start in the order tests/conftest.py sorts them (slow files first), not by test count
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv demo test test-unit test-fast lint format ui bench clean

venv:
	@deploy/setup_env.sh

demo: venv
	$(BIN)/pipeline demo

# the browser test drives Debian's chromium (nothing downloads a browser); the hosts launcher's
# test logs in over ssh to a test sshd from Debian's openssh-server (tests/sshd.py)
test: venv
	@command -v chromium >/dev/null || $(SUDO) apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)
	@test -x /usr/sbin/sshd || $(SUDO) apt-get install -y -q openssh-server \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q openssh-server)
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

# plain Python only: seconds, no Spark
test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# the inner loop, a few minutes: unit, deploy recipes, and the data path's integration tests
# (image and text ingest, object storage, the training input); no model trained, no cluster,
# no browser (FAST_FILES in tests/conftest.py)
test-fast: venv
	$(BIN)/python -m pytest tests/unit tests/deploy tests/integration -m fast $(PYTEST_WORKERS) $(PYTEST_ARGS)

# ruff (style, and which package may import mlflow, petastorm, horovod), then the layer table
lint: venv
	$(BIN)/ruff check .
	$(BIN)/python dev/check_layers.py

format: venv
	$(BIN)/ruff format pipeline jobs tests

# Benchmarks need Debian's dataset-fashion-mnist (60,000 images); results: benchmarks/results/
bench: venv
	@test -d /usr/share/datasets/fashion-mnist || $(SUDO) apt-get install -y dataset-fashion-mnist
	$(BIN)/python benchmarks/ingest.py images
	$(BIN)/python benchmarks/ingest.py text
	$(BIN)/python benchmarks/retrain.py
	$(BIN)/python benchmarks/train.py

ui: venv
	$(BIN)/pipeline ui

clean:
	rm -rf data mlruns.db mlartifacts checkpoints .pytest_cache
