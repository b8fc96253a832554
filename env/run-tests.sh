#!/bin/sh
# Inside the root (as root): install this checkout's extension, then run pytest as the
# unprivileged postgres user (PostgreSQL refuses to run as root).
set -eu
cd /src
log=/tmp/ruvllm-install.log
printf '==> build and install the extension ... '
start=$(date +%s)
if ! make install >"$log" 2>&1; then
    echo failed; cat "$log"; exit 1
fi
echo "$(( $(date +%s) - start ))s"
# -p no:cacheprovider: the checkout is not writable by postgres, and the cache is not needed.
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    env HOME=/var/lib/postgresql USER=postgres \
    python3 -m pytest -p no:cacheprovider "$@"
