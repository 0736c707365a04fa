# The user-facing commands. `make help` lists them.
# Native stack by default; STACK=docker uses docker-compose.yml where a Docker engine answers.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
LAKEHOUSE := $(VENV)/bin/lakehouse
INSTALLED := $(VENV)/.installed
JARS_DIR := .cache/jars
JARS := $(JARS_DIR)/.pom.sha256
UV_VERSION := $(shell sed -n 's/^uv==//p' requirements.lock)
STACK ?= native
PYTEST_ARGS ?=

.PHONY: help install jars browser postgres up down status logs sql notebook test bench pipeline demo lint lock compose-check

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or set PYTHON=" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q uv==$(UV_VERSION)
	@echo "installing the locked Python dependencies into $(VENV)" >&2
	@# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set, every process (each Spark job,
	@# test subprocess and the API) would otherwise compile Great Expectations and MLflow again (about 8 s).
	@$(VENV)/bin/uv pip sync -q --compile-bytecode --python $(PY) requirements.lock
	@# compat mode: a path entry for the repository, so new top-level packages import without a reinstall
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e . --config-settings editable_mode=compat
	@touch $@

install: $(INSTALLED) ## create the virtualenv with the locked dependencies

# Order-only on the virtualenv (it only needs pyspark's jar folder): reinstalling Python packages does not re-resolve jars.
$(JARS): infra/pom.xml infra/resolve-jars.sh | $(INSTALLED)
	@infra/resolve-jars.sh $(JARS_DIR) "$$($(PY) -c 'import pathlib, pyspark; print(pathlib.Path(pyspark.__file__).parent / "jars")')"

jars: $(JARS) ## resolve the JVM jars (Delta, Kafka connector, S3A, Kafka broker) with Maven

ifeq ($(STACK),docker)
# Compose only where a Docker engine answers; otherwise say so instead of a docker client error.
DOCKER_ENGINE = @docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers (docker info failed); start one, or use the native stack: make up" >&2; exit 1; }
up: ## start the stack and print where everything is
	$(DOCKER_ENGINE)
	docker compose up -d --build --wait
	@echo "  API http://127.0.0.1:8000/docs  MLflow http://127.0.0.1:5000  Grafana http://127.0.0.1:3000  MinIO http://127.0.0.1:9001"
down: ## stop the stack
	$(DOCKER_ENGINE)
	docker compose down
status: ## show each service's state
	$(DOCKER_ENGINE)
	docker compose ps
logs: ## tail the services' logs
	$(DOCKER_ENGINE)
	docker compose logs -f --tail 50
else
up: $(INSTALLED) $(JARS) postgres
	@$(LAKEHOUSE) up
down:
	@if [ -x $(LAKEHOUSE) ]; then $(LAKEHOUSE) stack down; fi
status: $(INSTALLED)
	@$(LAKEHOUSE) stack status
logs: $(INSTALLED)
	@$(LAKEHOUSE) stack logs --follow
endif

sql: $(INSTALLED) $(JARS) postgres ## SQL shell (beeline) on the tables by name; starts the SQL endpoint on demand
	@$(LAKEHOUSE) sql

notebook: $(INSTALLED) $(JARS) postgres ## JupyterLab on notebooks/ at 127.0.0.1:8888 (token in the URL printed)
	@$(LAKEHOUSE) notebook

# Debian's Chromium draws the status page in its browser test (tests/serving/test_status_page.py).
CHROMIUM := /usr/bin/chromium
browser: ## headless Chromium for the status page test (apt-get when root, otherwise says what to install)
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (Debian) for the status page browser test" >&2; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
			echo "warning: apt-get install chromium failed: the status page browser test will be skipped" >&2; \
	else \
		echo "note: no $(CHROMIUM): the status page browser test will be skipped (install: sudo apt-get install chromium)" >&2; \
	fi

# Debian's PostgreSQL server: the native stack's operational database (orchestration/stack.py). Its major version
# is pinned here, in the settings' postgres_bin_dir and in docker-compose.yml's image (tests/infra/test_compose.py).
# Debian's package would create and start a cluster of its own on 5432, the stack's port: no main cluster, and
# one left from an earlier install is stopped.
POSTGRES_MAJOR := 15
POSTGRES_SERVER := /usr/lib/postgresql/$(POSTGRES_MAJOR)/bin/postgres
postgres: ## Debian's PostgreSQL server for the operational database (apt-get when root, otherwise says what to install)
	@if [ -x $(POSTGRES_SERVER) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing postgresql-$(POSTGRES_MAJOR) (Debian) for the operational database" >&2; \
		mkdir -p /etc/postgresql-common/createcluster.d; \
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/lakehouse.conf; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-$(POSTGRES_MAJOR) >/dev/null; \
		pg_ctlcluster $(POSTGRES_MAJOR) main stop >/dev/null 2>&1 || true; \
	else \
		echo "error: no $(POSTGRES_SERVER): install Debian's postgresql-$(POSTGRES_MAJOR) (sudo apt-get install postgresql-$(POSTGRES_MAJOR))" >&2; \
		exit 1; \
	fi

test: $(INSTALLED) $(JARS) browser postgres ## run every test; integration tests start their own Kafka, MLflow, PostgreSQL and SQL endpoint
	@$(PY) -m pytest $(PYTEST_ARGS)

pipeline: $(INSTALLED) $(JARS) ## run the batch pipeline (landing -> bronze -> ...) with progress and a summary
	@$(LAKEHOUSE) pipeline

demo: $(INSTALLED) $(JARS) ## after make up: live shoppers and market shocks on the API (A/B), readout of measured vs true lift (DEMO_MINUTES=3)
	@$(LAKEHOUSE) demo --minutes $(or $(DEMO_MINUTES),3)

bench: $(INSTALLED) $(JARS) postgres ## run the benchmarks; results in bench/results/*.json (BENCH_ARGS='--only NAME')
	@$(PY) -m bench $(BENCH_ARGS)

lint: $(INSTALLED) ## ruff
	@$(VENV)/bin/ruff check .

compose-check: $(INSTALLED) ## validate docker-compose.yml against the compose-spec schema
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

lock: ## re-resolve requirements.lock from pyproject.toml (then commit both)
	@$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
