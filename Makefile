PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-all repro ui clean

install:  ## create .venv and install bertforge with its pinned dependencies
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"

test:  ## fast test suite (the CI command)
	$(BIN)/python -m pytest -q -m "not slow"

test-all:  ## everything, including slow end-to-end runs
	$(BIN)/python -m pytest -q

repro:
	. $(BIN)/activate && dvc repro

ui:  ## MLflow dashboard on 127.0.0.1:5000 (one worker, ~0.5 GiB)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000 --workers 1
