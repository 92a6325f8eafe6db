# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV_STAMP := .venv-checkov/.installed-3.3.30

.PHONY: demo test lint doctor bench clean

$(STAMP): requirements.txt requirements-dev.txt package.json
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	npm install --no-audit --no-fund --silent
	touch $(STAMP)

# checkov pins an older pycep-parser than the tests use, so it lives in its own venv.
$(CHECKOV_STAMP): tools/checkov.sh
	tools/checkov.sh --install-only

demo: $(STAMP)
	$(PY) -m standin.demo

lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy

doctor: $(STAMP)
	$(VENV)/bin/azure-functions-doctor doctor --path .

test: $(STAMP) $(CHECKOV_STAMP) lint doctor
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench.normalize_bench
	$(PY) -m bench.sync_bench

clean:
	rm -rf $(VENV) .venv-checkov node_modules out .pytest_cache .mypy_cache .ruff_cache .hypothesis
