# The two commands a newcomer needs are `make demo` and `make test`; each builds the
# virtual environment from the pinned versions first when it is missing or stale.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# Nothing in the stack may phone home.
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export GX_ANALYTICS_ENABLED := false
export SCARF_ANALYTICS := false
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False

.PHONY: install demo test lint airflow dbt-docs clean bench bench-activation

install: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check pip==25.3
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

demo: $(INSTALLED)
	$(BIN)/cdp demo

test: $(INSTALLED)
	$(BIN)/pytest

# Identity stitching figures at 1M and 5M records and on a long chain (not a test).
bench: $(INSTALLED)
	$(BIN)/python -m bench.identity

# Identities hashed and delivered per second to a local Google Customer Match stand-in.
bench-activation: $(INSTALLED)
	$(BIN)/python -m bench.activation

lint: $(INSTALLED)
	$(BIN)/ruff check plugins dags tests
	$(BIN)/ruff format --check plugins dags tests

airflow: $(INSTALLED)
	$(BIN)/cdp airflow

dbt-docs: $(INSTALLED)
	eval "$$($(BIN)/cdp warehouse env)" && cd dbt_project && ../$(BIN)/dbt docs generate

clean:
	-$(BIN)/cdp warehouse stop
	rm -rf .state dbt_project/target dbt_project/logs
