# licentia: `make run` starts License Central with demo data; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench system-deps lock docs-cli clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install -q -c requirements.lock -e '.[all,test]'
	touch $(STAMP)

## make run: install into .venv and start License Central on embedded defaults (SQLite, ./.licentia, localhost)
run: $(STAMP)
	$(BIN)/licentia central serve --demo

## make test: install test extras (and, as root on Debian, the system packages) and run the whole suite
test: $(STAMP) system-deps
	$(BIN)/python -m pytest

## system packages the suite uses: PostgreSQL 15 server binaries (initdb/pg_ctl), Debian's python3 (unprivileged-user tests), Debian's chromium (browser tests, driven by Playwright)
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  [ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$$missing postgresql-15"; \
	  [ -x /usr/bin/python3 ] || missing="$$missing python3"; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	fi

## make bench: benchmarks; results go to stdout and bench/results/ (docs/performance.md quotes them)
bench: $(STAMP) system-deps
	$(BIN)/pip install -q -c requirements.lock -e '.[bench]'
	$(BIN)/python bench/run.py

## make fuzz: long runs of the fuzzing and property tests: License Central's API (LICENTIA_FUZZ=1), documents (hypothesis profile fuzz)
.PHONY: fuzz
fuzz: $(STAMP)
	LICENTIA_FUZZ=1 $(BIN)/python -m pytest -q -p no:cacheprovider --hypothesis-profile=fuzz $(wildcard tests/central/test_api_schema.py tests/core/test_document_properties.py)

## make lock: refresh requirements.lock from pyproject.toml
lock: $(BIN)/python
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra all --extra test --extra bench --extra roi --python-version 3.11 -o requirements.lock

## make docs-cli: regenerate docs/cli.md from --help
docs-cli: $(STAMP)
	$(BIN)/python -m licentia.cli.docgen > docs/cli.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info
