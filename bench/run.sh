#!/bin/sh
# Inside the root (as root), run by the bench-* targets of env/dev.mk:
#   sh bench/run.sh [--no-pg] [--raw] NAME RECORDED_SCALE... [-- RUN_PY_ARG...]
# Installs this checkout's extension, runs bench/NAME/run.py --out REPORT [RUN_PY_ARG...] as the
# unprivileged postgres user (PostgreSQL refuses root), then, when RUVLLM_BENCH_SCALE (default:
# default) is one of the RECORDED_SCALEs, records the report in bench/RESULTS.md (run.py --record,
# as root: the checkout is not writable by postgres).
#   --no-pg  the bench starts no PostgreSQL: no install, and run.py runs as root
#   --raw    run.py also writes its raw results (--raw FILE); they outlive the run (the root's /tmp
#            does not) in .ruvllm/bench-NAME.json, even when it fails, and its report can be
#            rendered again with `python3 bench/NAME/run.py --report-from .ruvllm/bench-NAME.json`
set -eu
cd /src
as_postgres() {
    setpriv --reuid=postgres --regid=postgres --init-groups \
        env HOME=/var/lib/postgresql USER=postgres "$@"
}
as=as_postgres raw=
while :; do
    case ${1:-} in
        --no-pg) as=; shift ;;
        --raw) raw=yes; shift ;;
        *) break ;;
    esac
done
name=$1; shift
recorded=
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    recorded="$recorded $1"; shift
done
if [ $# -gt 0 ]; then shift; fi
report=/tmp/bench-$name.md rawfile=/tmp/bench-$name.json
rm -f "$report" "$rawfile"
if [ -n "$raw" ]; then set -- --raw "$rawfile" "$@"; fi
if [ -n "$as" ]; then sh env/install-extension.sh; fi
rc=0
$as python3 "bench/$name/run.py" --out "$report" "$@" || rc=$?
if [ -n "$raw" ] && [ -s "$rawfile" ]; then
    cp "$rawfile" ".ruvllm/bench-$name.json"
    echo "==> raw results in .ruvllm/bench-$name.json"
fi
[ "$rc" = 0 ] || exit "$rc"
scale=${RUVLLM_BENCH_SCALE:-default}
case "$recorded " in
    *" $scale "*)
        rc=0
        python3 "bench/$name/run.py" --record "$report" bench/RESULTS.md || rc=$?
        case $rc in
            0) echo "==> recorded in bench/RESULTS.md" ;;
            3) echo "==> a run over a subset: not recorded in bench/RESULTS.md" ;;
            *) exit "$rc" ;;
        esac ;;
    *)
        echo "==> scale $scale: not recorded in bench/RESULTS.md (recorded only at:$recorded)" ;;
esac
