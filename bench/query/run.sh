#!/bin/sh
# Inside the root (as root), run by `make bench-query`: install this checkout's extension, run
# the benchmark as the unprivileged postgres user (PostgreSQL refuses root), then, at default
# scale, record its report in bench/RESULTS.md (the checkout is not writable by postgres).
set -eu
cd /src
log=/tmp/ruvllm-install.log
printf '==> build and install the extension ... '
start=$(date +%s)
if ! make install >"$log" 2>&1; then
    echo failed; cat "$log"; exit 1
fi
echo "$(( $(date +%s) - start ))s"
report=/tmp/bench-query.md raw=/tmp/bench-query.json
rm -f "$report" "$raw"
rc=0
setpriv --reuid=postgres --regid=postgres --init-groups \
    env HOME=/var/lib/postgresql USER=postgres \
    python3 bench/query/run.py --out "$report" --raw "$raw" || rc=$?
# The raw numbers outlive the run (the root's /tmp does not): the report can be rendered again
# with `python3 bench/query/run.py --report-from .ruvllm/bench-query.json`.
if [ -s "$raw" ]; then
    cp "$raw" .ruvllm/bench-query.json
    echo "==> raw results in .ruvllm/bench-query.json"
fi
[ "$rc" = 0 ] || exit "$rc"
if [ "${RUVLLM_BENCH_SCALE:-default}" = default ]; then
    python3 bench/query/run.py --record "$report" bench/RESULTS.md
    echo "==> recorded in bench/RESULTS.md"
else
    echo "==> scale ${RUVLLM_BENCH_SCALE}: not recorded in bench/RESULTS.md (only the default scale is)"
fi
