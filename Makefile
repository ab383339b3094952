# gcgate developer entry points. Everything runs from a project-local virtualenv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv run test lint proto proto-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start a daemon on the embedded local endpoint, run the user-guide examples, stop it.
run: venv
	$(PY) examples/demo.py

## The whole test suite (CI runs exactly this).
test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check client daemon tests examples bench
	$(VENV)/bin/ruff format --check client daemon tests examples bench

## Regenerate the gRPC stubs from proto/ (committed; tests fail when they are stale).
proto: venv
	$(PY) -m grpc_tools.protoc -Iproto --python_out=client --pyi_out=client \
		--grpc_python_out=client proto/gcgate/v1/gateway.proto

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info client/*.egg-info
