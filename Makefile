# Two commands: `make book` (the main job) and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt
PROFILE ?= cpu
STAMP := $(VENV)/.raddino-installed

.PHONY: book test test-slow lint format venv clean

venv: $(STAMP)

# Re-install only when the requirements or the package metadata change.
$(STAMP): pyproject.toml constraints.txt requirements/cpu.txt requirements/test.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/cpu.txt -r requirements/test.txt
	# Official DINOv2 code: a test-only parity reference; --no-deps so that it cannot pull a torch.
	$(BIN)/pip install --no-deps dinov2==0.0.1.dev2
	# torchxrayvision ships the real label files of public CXR datasets; tests read only its data/.
	$(BIN)/pip install --no-deps torchxrayvision==1.5.7
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.14.1'), torch.__version__"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check raddino tests benchmarks notebooks
	$(BIN)/ruff format --check raddino tests benchmarks notebooks

format: $(STAMP)
	$(BIN)/ruff check --fix raddino tests benchmarks notebooks
	$(BIN)/ruff format raddino tests benchmarks notebooks

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Until the book exists this runs the largest end-to-end pipeline there is (see scripts/pipeline.sh).
book: $(STAMP)
	PROFILE=$(PROFILE) PATH="$(abspath $(BIN)):$$PATH" bash scripts/pipeline.sh

clean:
	rm -rf runs book/_build
