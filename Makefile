# Set-up and everyday commands. `make run` and `make test` need only a
# Python 3.11 interpreter on PATH; they create .venv/ on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
GEN_DIR := clients/python
GEN_STAMP := $(GEN_DIR)/parley/v1/.generated
PROTOS := $(wildcard proto/parley/v1/*.proto)

# `make run LISTEN=127.0.0.1:50061` (or PARLEY_LISTEN) serves elsewhere.
CONFIG ?= $(or $(PARLEY_CONFIG),config/demo.yaml)
DATABASE ?= $(or $(PARLEY_DATABASE),var/parley.db)
LISTEN ?= $(or $(PARLEY_LISTEN),127.0.0.1:50051)

.PHONY: venv proto run test lint format bench clean

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# The generated package must exist as a folder for the editable install;
	@# `make proto` fills it.
	mkdir -p $(GEN_DIR)/parley/v1
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The one target that generates Python code from proto/.
proto: $(GEN_STAMP)

$(GEN_STAMP): $(PROTOS) $(INSTALLED)
	rm -rf $(GEN_DIR)/parley
	mkdir -p $(GEN_DIR)/parley/v1
	$(BIN)/python -m grpc_tools.protoc -Iproto \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--python_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) \
		--mypy_out=$(GEN_DIR) --mypy_grpc_out=$(GEN_DIR) \
		$(PROTOS)
	touch $(GEN_DIR)/parley/__init__.py $(GEN_DIR)/parley/v1/__init__.py
	touch $@

run: proto
	@mkdir -p $(dir $(DATABASE))
	@echo "Starting the Parley demo on $(LISTEN) (database $(DATABASE))"
	@echo "Demo API key: $$($(BIN)/python -m server.demo_key $(CONFIG))"
	$(BIN)/python -m server --config $(CONFIG) --database $(DATABASE) --listen $(LISTEN)

test: proto
	$(BIN)/python -m pytest -q

lint: proto
	$(BIN)/ruff format --check server clients/python/parley_client tests bench
	$(BIN)/ruff check server clients/python/parley_client tests bench
	$(BIN)/mypy

format: proto
	$(BIN)/ruff format server clients/python/parley_client tests bench
	$(BIN)/ruff check --fix server clients/python/parley_client tests bench

bench: proto
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) $(GEN_DIR)/parley var
