#!/bin/sh
# Inside the root (as root): build and install this checkout's extension (`make install`), its
# output kept in /tmp/ruvllm-install.log and shown only when it fails. Run by env/run-tests.sh and
# bench/run.sh.
set -eu
cd /src
log=/tmp/ruvllm-install.log
printf '==> build and install the extension ... '
start=$(date +%s)
if ! make install >"$log" 2>&1; then
    echo failed; cat "$log"; exit 1
fi
echo "$(( $(date +%s) - start ))s"
