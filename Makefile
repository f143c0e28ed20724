# geo_assets: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
export DAGSTER_HOME := $(CURDIR)/storage
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test test-fast ui dg-dev bench clean-data lock

setup:
	bash scripts/setup.sh

# Set up, then materialize the whole asset graph on the built-in synthetic source.
demo: setup
	$(VENV)/bin/geo-assets run

# Set up (with chromium for the UI test), check that Dagster loads the definitions,
# then run every test, slow ones included.
test:
	bash scripts/setup.sh --browser
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/dg check defs
	$(VENV)/bin/python -m pytest -p no:cacheprovider

test-fast: setup
	$(VENV)/bin/python -m pytest -p no:cacheprovider -m "not slow"

ui: setup
	$(VENV)/bin/dagster dev -w workspace.yaml

# The same code location through dg (the defs folder, pyproject's [tool.dg]).
dg-dev: setup
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/dg dev

# Re-resolve pyproject's dependencies and pin them in constraints.txt (setup.sh installs with it).
lock:
	bash scripts/lock.sh

bench: setup
	$(VENV)/bin/geo-assets bench

clean-data:
	rm -rf storage/images storage/tables storage/cache storage/reports storage/geo.duckdb models/blurred models/unblurred
