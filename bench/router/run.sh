#!/bin/sh
# Inside the root (as root), run by `make bench-router DATA=... CACHE=...`: train and evaluate the
# router on the RouteLLM MMLU labels, print the report, and at default scale record it in
# bench/RESULTS.md. No PostgreSQL is involved: the router, its training and the embedder are the
# ruvllm Python package, imported from the checkout.
#   sh bench/router/run.sh DATA_DIR CACHE_DIR
set -eu
cd /src
data=$1 cache=$2
report=/tmp/bench-router.md
rm -f "$report"
# One single-threaded OpenBLAS per process: the embedding workers are one process per core, and
# a multi-threaded BLAS on busy cores measured ~5x slower.
OPENBLAS_NUM_THREADS=1 python3 bench/router/run.py --data "$data" --cache "$cache" --out "$report"
if [ "${RUVLLM_BENCH_SCALE:-default}" = default ]; then
    python3 bench/router/run.py --record "$report" bench/RESULTS.md
    echo "==> recorded in bench/RESULTS.md"
else
    echo "==> scale ${RUVLLM_BENCH_SCALE}: not recorded in bench/RESULTS.md (only the default scale is)"
fi
