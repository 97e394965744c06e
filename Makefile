# querysep developer commands. `make demo` and `make test` set up .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo app test screenshot lint format clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,gen]'
	touch $(STAMP)

setup: $(STAMP)

## Separate the bundled example with the default model.
demo: $(STAMP)
	$(BIN)/querysep separate examples/dog-and-rain.wav -q "a dog barking" -o outputs/demo --plot

## Serve the web app on http://127.0.0.1:7860 (Ctrl-C to stop).
app: $(STAMP)
	$(BIN)/querysep app

## Run the test suite (CPU only, no downloads).
test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

## Retake the README's picture of the web app (needs Chromium: apt-get install chromium).
screenshot: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QUERYSEP_SCREENSHOT=docs/images/app.png \
		$(BIN)/python -m pytest -q tests/app/test_browser.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
