# licentia: `make run` starts License Central with demo data; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench system-deps lock audit sbom docs-cli clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# every dependency exactly as requirements.lock pins it, each checked against its hashes (pip,
# the build backend and the extras too), then licentia itself, editable and with no dependency
# of its own: an editable install has no artifact to check, and the backend is the locked one
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

## make run: install into .venv and start License Central on embedded defaults (SQLite, ./.licentia, localhost)
run: $(STAMP)
	$(BIN)/licentia central serve --demo

## make test: install test extras (and, as root on Debian, the system packages), run the checks, then the whole suite
## on TEST_WORKERS processes (pytest-xdist; each test file runs whole on one of them: its module fixtures once)
TEST_WORKERS ?= 2
test: $(STAMP) system-deps check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

## make check: ruff (lint and format) over the whole tree and mypy strict over the package (the import
## layering contract and the bounded fuzzing run inside the suite)
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## system packages the suite uses: PostgreSQL 15 server binaries (initdb/pg_ctl), Debian's python3 (unprivileged-user tests), Debian's chromium (browser tests, driven by Playwright), Node.js (the JavaScript SDK's tests), curl and jq (the user-licensing walkthrough of docs/cloud.md)
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  [ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$$missing postgresql-15"; \
	  [ -x /usr/bin/python3 ] || missing="$$missing python3"; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	  command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	  command -v jq >/dev/null 2>&1 || missing="$$missing jq"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	fi

## make bench: benchmarks; results go to stdout and bench/results/ (docs/performance.md quotes them)
bench: $(STAMP) system-deps
	$(BIN)/python bench/run.py

## make fuzz: long runs of the fuzzing and property tests: License Central's API (LICENTIA_FUZZ=1), every parser
## (tests/fuzz) and the documents, under the hypothesis profile fuzz with its example database in .hypothesis/fuzz
.PHONY: fuzz
fuzz: $(STAMP)
	LICENTIA_FUZZ=1 $(BIN)/python -m pytest -q -p no:cacheprovider --hypothesis-profile=fuzz tests/fuzz \
	  tests/central/test_api_schema.py tests/core/test_document_properties.py

## make lock: refresh requirements.lock from pyproject.toml: every extra, every pin with the hashes of its files
lock: $(BIN)/python
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra all --extra test --extra bench --extra roi --extra audit --extra mutate --python-version 3.11 --generate-hashes -o requirements.lock

## make audit: known vulnerabilities of the locked dependencies (pip-audit, hashes required, not one left unchecked); it asks a vulnerability service (AUDIT_SERVICE=pypi or osv): where none answers, it says so in one line and exits 0. Not part of `make test`
AUDIT_SERVICE ?= pypi
AUDIT = $(BIN)/pip-audit --progress-spinner off --disable-pip --vulnerability-service $(AUDIT_SERVICE) $(AUDIT_ARGS)
audit: $(STAMP)
	@probe=$$(mktemp); sed -n 's/^\(cryptography==[^ ]*\).*/\1/p' requirements.lock > $$probe; \
	answered=$$($(AUDIT) --no-deps --format json -r $$probe 2>/dev/null | grep -c '"vulns"'); rm -f $$probe; \
	if [ "$$answered" = 0 ]; then \
	  echo "make audit: the vulnerability service ($(AUDIT_SERVICE)) does not answer from this machine; nothing was checked"; \
	else \
	  $(AUDIT) --require-hashes --strict -r requirements.lock; \
	fi

## make sbom: a CycloneDX SBOM (JSON) of the locked dependencies with their hashes, in dist/sbom.cdx.json; offline, the same bytes for one commit
SBOM := dist/sbom.cdx.json
sbom: $(STAMP)
	@mkdir -p $(dir $(SBOM))
	@epoch=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null)}; \
	if [ -n "$$epoch" ]; then export SOURCE_DATE_EPOCH=$$epoch; fi; \
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/cyclonedx-py requirements --pyproject pyproject.toml \
	  --output-reproducible --output-format JSON -o $(SBOM) requirements.lock
	@echo "make sbom: $(SBOM)"

## make image: the container image licentia:VERSION (and :latest) from deploy/Dockerfile with docker or podman
## (ENGINE=... names another; IMAGE=... another name); docs/deploy.md. Not part of `make test` nor CI (no engine there)
IMAGE  ?= licentia
ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
.PHONY: image
image:
	@if [ -z "$(ENGINE)" ]; then \
	  echo "make image: no container engine: install docker or podman, or name one with ENGINE=..." >&2; exit 1; \
	fi
	@$(ENGINE) info >/dev/null 2>&1 || { \
	  echo "make image: $(ENGINE) does not answer ('$(ENGINE) info' failed): start its daemon or service" >&2; exit 1; }
	version=$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml); \
	$(ENGINE) build -f deploy/Dockerfile \
	  --build-arg VERSION=$$version \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
	  -t $(IMAGE):$$version -t $(IMAGE):latest .

## make docs-cli: regenerate docs/cli.md from --help
docs-cli: $(STAMP)
	$(BIN)/python -m licentia.cli.docgen > docs/cli.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info

## make mutate: mutation testing (mutmut, setup.cfg [mutmut]) of the modules that decide what licentia accepts
## (docs/testing.md). Slow, hours on two cores: MUTATE='licentia.seats.acl*' tries one module. Not in `make test` nor CI
.PHONY: mutate
MUTATE ?=
mutate: $(STAMP)
	$(BIN)/mutmut run $(patsubst %,'%',$(MUTATE))
	$(BIN)/mutmut results
