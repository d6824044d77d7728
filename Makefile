# Switchboard — the two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP_CACHE ?= $(HOME)/.cache/pip
export PIP_CACHE_DIR := $(PIP_CACHE)

.PHONY: demo test chaos unit bench prereqs install kafka clean

prereqs:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "switchboard: Python 3.11+ is required (found: $$($(PYTHON) --version 2>&1)). Install it, or run make PYTHON=python3.11"; exit 1; }
	@if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then \
	  command -v java >/dev/null 2>&1 || { echo "switchboard: Java 17+ is missing (needed to run the local Kafka broker). Install OpenJDK 17, or set KAFKA_BOOTSTRAP_SERVERS to your own Kafka, or use docker compose up"; exit 1; }; \
	  java -version 2>&1 | awk -F'"' '/version/ { split($$2, v, "."); if (v[1] < 17) { print "switchboard: Java 17+ is required, found " $$2; exit 1 } }' || exit 1; \
	  command -v mvn >/dev/null 2>&1 || { echo "switchboard: Maven (mvn) is missing (it fetches Apache Kafka from Maven Central). Install Maven, or set KAFKA_BOOTSTRAP_SERVERS"; exit 1; }; \
	fi

$(VENV)/.installed: pyproject.toml | prereqs
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Switchboard and its test tools into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

install: prereqs $(VENV)/.installed

kafka: install
	@if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then $(PY) -c 'from hub.broker import ensure_kafka_jars; ensure_kafka_jars()'; fi

demo: install kafka
	@$(VENV)/bin/switchboard demo

test: install kafka
	@$(PY) -m pytest -q -m "not chaos"

chaos: install kafka
	@$(PY) -m pytest -q -m chaos

bench: install kafka
	@$(VENV)/bin/switchboard bench --out reports/bench.json

unit: install
	@$(PY) -m pytest -q tests/unit tests/routing tests/sandbox

clean:
	rm -rf $(VENV) .switchboard .pytest_cache
