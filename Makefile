# Every target bootstraps .venv from pyproject.toml on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit browser bench fuzz soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/jwtkit serve

test: lint typecheck unit browser

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not browser"

# Playwright's sync API keeps an event loop on the main thread, so browser tests run in
# their own process. Exit 5 means none were collected, which is not a failure here.
browser: $(STAMP)
	$(BIN)/pytest -m browser; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The API fuzz tests of `make test`, longer: JWTKIT_FUZZ_EXAMPLES per operation (docs/http.md)
fuzz: $(STAMP)
	JWTKIT_FUZZ_EXAMPLES=$${JWTKIT_FUZZ_EXAMPLES:-1000} $(BIN)/pytest tests/web/test_fuzz_openapi.py --timeout=3600

# 5 minutes at 80% of the server's measured maximum (docs/benchmarks.md#soak); options in SOAK, e.g.
# make soak SOAK="--store=redis --duration=20"
soak: $(STAMP)
	$(BIN)/python -m benchmarks soak $(SOAK)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
