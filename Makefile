# Two commands: `make book` (the main job) and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt
PROFILE ?= cpu
STAMP := $(VENV)/.raddino-installed

.PHONY: book test test-slow lint format venv clean browser

venv: $(STAMP)

# Re-install only when the requirements or the package metadata change.
$(STAMP): pyproject.toml constraints.txt requirements/cpu.txt requirements/test.txt requirements/book.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/cpu.txt -r requirements/test.txt -r requirements/book.txt
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

test: $(STAMP) lint browser
	$(BIN)/python -m pytest -q -m "not slow" --durations=10

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Execute the chapters under profiles/$(PROFILE).yml (skipping unchanged ones), then build the
# offline HTML into book/_build/html. `PROFILE=smoke make book` takes a few minutes.
book: $(STAMP)
	$(BIN)/raddino book --profile $(PROFILE)

# Headless Chromium for tests/test_book_browser.py (Debian package; CI runs as root). When it
# cannot be installed the browser test skips with that reason.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium) \
	  || echo "chromium could not be installed: tests/test_book_browser.py will be skipped"

clean:
	rm -rf runs book/_build
