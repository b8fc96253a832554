#!/bin/sh
# The local development server, run inside the root (as root) by `make up/down/psql/demo`.
#   server.sh start | stop | psql | demo
# Data lives in /var/lib/ruvllm/pgdata (the checkout's .ruvllm/pgdata), so it survives down/up
# and rebuilt roots.
set -eu
cd /src

pgdata=/var/lib/ruvllm/pgdata
port=${RUVLLM_PORT:-5433}
db=ruvllm
# One BLAS thread per backend: backends run side by side, and oversubscribed OpenBLAS threads
# make small matmuls orders of magnitude slower.
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups env HOME=/var/lib/postgresql OPENBLAS_NUM_THREADS=1 "$@"; }
psql_local() { as_postgres psql -X -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$(cat /src/.ruvllm/port)" "$@"; }

say() { printf '==> %s\n' "$*"; }

start() {
    say "build and install the extension"
    make install >/tmp/ruvllm-install.log 2>&1 || { cat /tmp/ruvllm-install.log; exit 1; }
    mkdir -p /var/run/postgresql
    chown postgres:postgres "$pgdata" /var/run/postgresql
    chmod 700 "$pgdata"
    if [ ! -s "$pgdata/PG_VERSION" ]; then
        say "initdb (first start)"
        # The password guards the TCP listener; local socket connections inside the root are trusted.
        python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >/src/.ruvllm/password
        chmod 600 /src/.ruvllm/password
        install -o postgres -m 600 /src/.ruvllm/password /tmp/pwfile
        as_postgres initdb -D "$pgdata" -U postgres --pwfile=/tmp/pwfile -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >/tmp/initdb.log 2>&1 \
            || { cat /tmp/initdb.log; exit 1; }
        echo "include_if_exists = 'ruvllm.conf'" >>"$pgdata/postgresql.conf"
    fi
    # Rewritten at every start so settings follow the checkout; see README "Server settings".
    cat >"$pgdata/ruvllm.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '/var/run/postgresql'
shared_preload_libraries = 'age,ruvllm'
# The background worker runs the learning loops in the demo database (RUVLLM_LOOPS=off: none).
ruvllm.databases = '$( [ "${RUVLLM_LOOPS:-on}" = off ] || echo "$db" )'
# Sized for the HNSW index of 100K 384-d memories (~200 MB) to stay in shared memory.
shared_buffers = '2GB'
effective_cache_size = '8GB'
maintenance_work_mem = '1GB'
max_parallel_maintenance_workers = 1
logging_collector = on
log_directory = 'log'
EOF
    chown postgres:postgres "$pgdata/ruvllm.conf"
    echo "$port" >/src/.ruvllm/port
    if as_postgres pg_ctl -D "$pgdata" status >/dev/null 2>&1; then
        say "server already running"
    else
        say "start PostgreSQL 17 on 127.0.0.1:$port"
        as_postgres pg_ctl -D "$pgdata" -w -t 60 -l "$pgdata/startup.log" start >/dev/null \
            || { cat "$pgdata/startup.log"; exit 1; }
    fi
    if [ "$(psql_local -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
        psql_local -d postgres -qc "CREATE DATABASE $db"
    fi
    PGOPTIONS="-c client_min_messages=warning" psql_local -d "$db" -q \
        -c "CREATE EXTENSION IF NOT EXISTS ruvllm CASCADE" -c "ALTER EXTENSION ruvllm UPDATE"
    printf 'postgresql://postgres:%s@127.0.0.1:%s/%s\n' "$(cat /src/.ruvllm/password)" "$port" "$db" \
        >/src/.ruvllm/conninfo
    say "ready: $(psql_local -d "$db" -tAc "SELECT 'ruvllm ' || extversion FROM pg_extension WHERE extname = 'ruvllm'")"
    say "connect with: psql \"\$(make -s conninfo)\"   or   make psql"
}

stop() {
    say "stop PostgreSQL"
    as_postgres pg_ctl -D "$pgdata" -w -t 60 stop -m fast >/dev/null
}

psql_cmd() {
    if [ -n "${SQL:-}" ]; then
        psql_local -d "$db" -c "$SQL"
    else
        psql_local -d "$db"
    fi
}

demo() {
    # RUVLLM_DEMO_DOCS=postgres (`make demo DOCS=postgres`): also load a slice of the PostgreSQL manual.
    as_postgres python3 /src/demo/run_demo.py --host /var/run/postgresql --port "$(cat /src/.ruvllm/port)" \
        --dbname "$db" ${RUVLLM_DEMO_DOCS:+--docs "$RUVLLM_DEMO_DOCS"}
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    psql) psql_cmd ;;
    demo) demo ;;
    *) echo "usage: server.sh start|stop|psql|demo" >&2; exit 2 ;;
esac
