# The two commands of the README: `make demo` and `make test`. Both set up a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export ALOHA_STORE ?= $(CURDIR)/.aloha_store
export MUJOCO_GL ?= egl
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: setup demo test bench ui mlflow-ui clean-store

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(VENV)/bin/aloha demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 tests

bench: setup
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

ui: setup
	$(VENV)/bin/aloha ui

mlflow-ui: setup
	$(VENV)/bin/aloha mlflow-ui --port 5000   # $(ALOHA_STORE): a path or a URL (its MLflow database is local)

clean-store:
	rm -rf $(ALOHA_STORE)
