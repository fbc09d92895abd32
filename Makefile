.PHONY: setup run test lint format browser-deps web-deps bench

VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8080

setup:
	./scripts/setup-venv.sh

# Build the sample workspace (digits), train, export, then start the web platform.
run: setup
	DLFORGE_HOME=$(CURDIR)/.dlforge $(VENV)/bin/dlforge quickstart
	DLFORGE_HOME=$(CURDIR)/.dlforge $(VENV)/bin/dlforge ui --host 127.0.0.1 --port $(PORT)

browser-deps:
	./scripts/install-browser-deps.sh

# The PostgreSQL store tests run when a local server can be started (else they skip).
test: setup browser-deps
	$(VENV)/bin/ruff check .
	DLFORGE_TEST_POSTGRES_URL=$$(./scripts/start-test-postgres.sh) $(PY) -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check src tests benchmarks

format: setup
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix .
