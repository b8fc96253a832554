#!/bin/sh
# Inside the root (as root): install this checkout's extension, then run pytest as the
# unprivileged postgres user (PostgreSQL refuses to run as root).
set -eu
cd /src
sh env/install-extension.sh
# A JDBC driver jar bound in from the host (`make test`) may sit under /root, which postgres cannot
# read: the tests get a copy of their own.
if [ -n "${RUVLLM_JDBC_JAR:-}" ] && [ -f "$RUVLLM_JDBC_JAR" ]; then
    mkdir -p /tmp/ruvllm-jdbc
    cp "$RUVLLM_JDBC_JAR" /tmp/ruvllm-jdbc/
    chmod 755 /tmp/ruvllm-jdbc
    chmod 644 "/tmp/ruvllm-jdbc/${RUVLLM_JDBC_JAR##*/}"
    export RUVLLM_JDBC_JAR="/tmp/ruvllm-jdbc/${RUVLLM_JDBC_JAR##*/}"
fi
# -p no:cacheprovider: the checkout is not writable by postgres, and the cache is not needed.
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    env HOME=/var/lib/postgresql USER=postgres \
    python3 -m pytest -p no:cacheprovider "$@"
