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

.PHONY: env test test-fast demo up down psql conninfo docker-test bench-memory bench-query bench-retention bench-router bench-inference bench-answers bench-retrieval
env:
	@MAKE_TARGET=env bash $(ENV_DIR)build-root.sh >/dev/null

# The BI views' JDBC test (tests/integration/test_bi_jdbc.py) needs Java and the PostgreSQL JDBC
# driver, which the root does not have: the host's JDK (the one `java` on PATH resolves to) and the
# newest driver jar in the Maven cache are bound read-only into the root at their own paths, with
# the directory outside the JDK that Debian keeps its jvm.cfg and java.security in
# (/etc/java-17-openjdk), and named to the tests by RUVLLM_JAVA_HOME and RUVLLM_JDBC_JAR. Without
# them that test skips; set either variable to use another JDK or jar.
RUVLLM_JAVA_HOME ?= $(shell j=$$(command -v java 2>/dev/null) && dirname "$$(dirname "$$(realpath "$$j")")")
RUVLLM_JDBC_JAR ?= $(shell ls -d $(HOME)/.m2/repository/org/postgresql/postgresql/*/postgresql-*[0-9].jar 2>/dev/null | sort -V | tail -1)

# Earlier releases for the upgrade test come from git history on the host (env/releases.txt).
# test-fast: the suite without the tests marked slow (pytest.ini); TESTS adds pytest arguments to both.
test-fast: TEST_SELECT = -m "not slow"
test test-fast: env
	@sh $(ENV_DIR)export-releases.sh
	@set --; jh=$$(realpath -e '$(RUVLLM_JAVA_HOME)' 2>/dev/null) jar=$$(realpath -e '$(RUVLLM_JDBC_JAR)' 2>/dev/null); \
	 if [ -n "$$jh" ] && [ -x "$$jh/bin/java" ]; then \
	     set -- --bind "$$jh:ro"; export RUVLLM_JAVA_HOME="$$jh"; \
	     cfg=$$(realpath -e "$$jh/lib/jvm.cfg" 2>/dev/null) && cfg=$${cfg%/*} && \
	         case $$cfg/ in "$$jh"/*) ;; *) set -- "$$@" --bind "$$cfg:ro" ;; esac; \
	 else unset RUVLLM_JAVA_HOME; fi; \
	 if [ -n "$$jar" ] && [ -f "$$jar" ]; then set -- "$$@" --bind "$${jar%/*}:ro"; export RUVLLM_JDBC_JAR="$$jar"; \
	 else unset RUVLLM_JDBC_JAR; fi; \
	 $(ENTER) --layer test "$$@" -- sh env/run-tests.sh $(TEST_SELECT) $(TESTS)

up: env
	@$(ENTER) --layer server -- sh env/server.sh start

down:
	@if [ -e .ruvllm/pgdata/postmaster.pid ]; then $(ENTER) --into-server -- sh env/server.sh stop; \
	 else echo "the local server is not running"; fi

psql:
	@$(ENTER) --into-server -- sh env/server.sh psql

conninfo:
	@cat .ruvllm/conninfo 2>/dev/null || { echo "no local server yet: make up" >&2; exit 1; }

# The benches run inside the root by bench/run.sh NAME RECORDED_SCALE... (see there), which records
# a run's report in bench/RESULTS.md only at those scales.

# Memory at 10K and 100K nodes: ingest, embed, HNSW search and recall, 2-hop expansion, and what
# server settings, halfvec and real-like vs random vectors change; prints its tables and records
# them in bench/RESULTS.md (~5-6 min on 2 quiet cores, longer when other jobs share them;
# RUVLLM_BENCH_SCALE=small for a ~1 min smoke run that is not recorded, =full to add the 100K
# builds of random vectors and under stock settings, ~22 min, recorded in a section of its own).
bench-memory: env
	@$(ENTER) --layer test -- sh bench/run.sh memory default full

# ruvllm_query end to end at 10K and 100K memories, cache hits, generation in-database vs bare,
# backend RSS; prints its table and records it in bench/RESULTS.md (~15-20 min;
# RUVLLM_BENCH_SCALE=small for a ~3 min smoke run that is not recorded). ARGS go to
# bench/query/run.py: ARGS="--only cache,tokens" runs just the cache-lookup and token-counting
# phases, before and after (printed, not recorded).
bench-query: env
	@$(ENTER) --layer test -- sh bench/run.sh --raw query default -- $(ARGS)

# Generation in each backend (ruvllm.inference = in_process) against the shared supervised
# llama-server (server), side by side at C = 1, 2, 4, 8 connections: answers/s against the machine's
# prefill/decode bound measured in the same run, latency, time to first token, first call, RSS,
# cancellation latency; recorded in bench/RESULTS.md (~10-15 min; RUVLLM_BENCH_SCALE=small ~3 min).
bench-inference: env
	@$(ENTER) --layer test -- sh bench/run.sh inference default

# ruvllm_query's answers on the PostgreSQL 17 manual (bench/answers: questions.jsonl, bench/pgdocs.py):
# today's pipeline against each answer tier and the router, side by side; recorded in
# bench/RESULTS.md when every question and configuration ran. ARGS go to bench/answers/run.py
# (--questions N, --configs a,b, --inference server, --chunks N). The ingested slice of the manual
# is kept in .ruvllm/pgdocs-cache (the first run ingests it, ~5-7 min on 2 shared cores).
# RUVLLM_BENCH_SCALE=small: 12 + 3 questions, not recorded.
PGDOCS_CACHE = mkdir -p .ruvllm/pgdocs-cache && chown postgres: .ruvllm/pgdocs-cache
bench-answers: env
	@$(ENTER) --layer test -- sh -c '$(PGDOCS_CACHE) && exec sh bench/run.sh --raw answers default -- "$$@"' sh $(ARGS)

# Retrieval on the same slice and the answerable questions (the gold section is the relevant
# document): recall@10, MRR, nDCG@10 per search mode, and search p50/p99 in the backend at 10K and
# 100K nodes (the slice padded with synthetic nodes); recorded in bench/RESULTS.md. ARGS go to
# bench/retrieval/run.py. RUVLLM_BENCH_SCALE=small: 40 questions, 10K only, not recorded.
bench-retrieval: env
	@$(ENTER) --layer test -- sh -c '$(PGDOCS_CACHE) && exec sh bench/run.sh --raw retrieval default -- "$$@"' sh $(ARGS)

# Witness-log retention on 1M witness rows over 30 daily partitions: ruvllm_apply_retention with
# action drop and with archive, against a row-by-row DELETE of the same rows (and its VACUUM), each
# on its own copy of the data; prints its table and records it in bench/RESULTS.md (~3 min on 2
# shared cores, nearly all of it loading and copying the rows; RUVLLM_BENCH_SCALE=small for a ~20 s
# smoke run of 50K rows that is not recorded).
bench-retention: env
	@$(ENTER) --layer test -- sh bench/run.sh retention default

# The router on RouteLLM's MMLU labels, read in place from ../shared/datasets/routellm-mmlu
# (bound read-only into the root; RUVLLM_BENCH_DATA=DIR for another copy): baselines, APGR, cost,
# forgetting; prints its tables and records them in bench/RESULTS.md (~5 min, plus 10-30 min the
# first time to embed the prompts, cached in RUVLLM_BENCH_CACHE, default /var/tmp/ruvllm-bench;
# RUVLLM_BENCH_SCALE=small for a ~2 min smoke run that is not recorded). No PostgreSQL is involved
# (--no-pg): the router, its training and the embedder are the ruvllm Python package. One
# single-threaded OpenBLAS per process: the embedding workers are one process per core, and a
# multi-threaded BLAS on busy cores measured ~5x slower.
RUVLLM_BENCH_DATA ?= $(abspath $(ENV_DIR)../../shared/datasets/routellm-mmlu)
RUVLLM_BENCH_CACHE ?= /var/tmp/ruvllm-bench
bench-router: env
	@test -d "$(RUVLLM_BENCH_DATA)" || { echo "bench-router: no data set at $(RUVLLM_BENCH_DATA)" \
	    "(RouteLLM's routellm/evals/mmlu/responses; set RUVLLM_BENCH_DATA=DIR)" >&2; exit 1; }
	@mkdir -p "$(RUVLLM_BENCH_CACHE)"
	@$(ENTER) --layer test --bind "$(RUVLLM_BENCH_DATA):ro" --bind "$(RUVLLM_BENCH_CACHE)" -- \
	    env OPENBLAS_NUM_THREADS=1 sh bench/run.sh --no-pg router default -- \
	    --data "$$(realpath "$(RUVLLM_BENCH_DATA)")" --cache "$$(realpath "$(RUVLLM_BENCH_CACHE)")"

# Builds docker/Dockerfile with podman (installed from Debian if missing) on a debootstrap
# debian:trixie-slim, starts the image and asks it one ruvllm_query (env/docker-test.sh). Not part
# of `make test`: the first build compiles llama.cpp (see README, Docker).
docker-test:
	@bash $(ENV_DIR)docker-test.sh

# DOCS=postgres also loads a slice of the PostgreSQL 17 manual (demo/run_demo.py --docs).
demo: export RUVLLM_DEMO_DOCS = $(DOCS)
demo: up
	@$(ENTER) --into-server -- sh env/server.sh demo
