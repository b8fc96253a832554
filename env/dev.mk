# Development targets (included by the Makefile). Each runs as root on the host and does its work
# inside the cached Debian 13 root; see env/enter.sh for how the checkout is mounted there.
ENV_DIR := $(dir $(lastword $(MAKEFILE_LIST)))
ENTER = bash $(ENV_DIR)enter.sh
export RUVLLM_PORT ?= 5433
export PORT
ifdef PORT
RUVLLM_PORT := $(PORT)
endif
export SQL

.PHONY: env test demo up down psql conninfo bench-memory
env:
	@MAKE_TARGET=env bash $(ENV_DIR)build-root.sh >/dev/null

test: env
	@$(ENTER) --layer test -- sh env/run-tests.sh $(TESTS)

up: env
	@$(ENTER) --layer server -- sh env/server.sh start

down:
	@if [ -e .ruvllm/pgdata/postmaster.pid ]; then $(ENTER) --into-server -- sh env/server.sh stop; \
	 else echo "the local server is not running"; fi

psql:
	@$(ENTER) --into-server -- sh env/server.sh psql

conninfo:
	@cat .ruvllm/conninfo 2>/dev/null || { echo "no local server yet: make up" >&2; exit 1; }

demo: up
	@$(ENTER) --into-server -- sh env/server.sh demo
