#!/bin/sh
# Inside the root (as root), run by `make bench-retention`: install this checkout's extension, run
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
report=/tmp/bench-retention.md
rm -f "$report"
setpriv --reuid=postgres --regid=postgres --init-groups \
    env HOME=/var/lib/postgresql USER=postgres \
    python3 bench/retention/run.py --out "$report"
if [ "${RUVLLM_BENCH_SCALE:-default}" = default ]; then
    python3 bench/retention/run.py --record "$report" bench/RESULTS.md
    echo "==> recorded in bench/RESULTS.md"
else
    echo "==> scale ${RUVLLM_BENCH_SCALE}: not recorded in bench/RESULTS.md (only the default scale is)"
fi
