#!/bin/sh
# Inside the root (as root): build and install this checkout's extension (`make install`), its
# output kept in /tmp/ruvllm-install.log and shown only when it fails; then the earlier releases
# that env/export-releases.sh took from git history (their install script and Python package, for
# the upgrade test). Run by env/run-tests.sh and bench/run.sh.
set -eu
cd /src
log=/tmp/ruvllm-install.log
printf '==> build and install the extension ... '
start=$(date +%s)
if ! make install >"$log" 2>&1; then
    echo failed; cat "$log"; exit 1
fi
echo "$(( $(date +%s) - start ))s"
current=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" ruvllm.control)
sharedir=$(pg_config --sharedir) pkglibdir=$(pg_config --pkglibdir)
for dir in .ruvllm/releases/*/; do
    [ -d "$dir" ] || continue
    version=$(basename "$dir")
    [ "$version" != "$current" ] || continue
    install -m 644 "$dir/sql/ruvllm--$version.sql" "$sharedir/extension/"
    mkdir -p "$pkglibdir/ruvllm-python/$version/ruvllm"
    install -m 644 "$dir"/python/ruvllm/*.py "$pkglibdir/ruvllm-python/$version/ruvllm/"
    echo "__version__ = '$version'" >"$pkglibdir/ruvllm-python/$version/ruvllm/_version.py"
    echo "==> release $version installed beside it (from git history, for the upgrade test)"
done
