#!/bin/sh
# Container entrypoint: initialise the cluster on first start, create the database with ruvllm,
# then run PostgreSQL in the foreground as the postgres user.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
db=${POSTGRES_DB:-ruvllm}
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups env HOME=/var/lib/postgresql OPENBLAS_NUM_THREADS=1 "$@"; }

mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pwfile && chown postgres /tmp/pwfile
    as_postgres initdb -D "$PGDATA" -U postgres --pwfile=/tmp/pwfile -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256
    rm -f /tmp/pwfile
    echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
    cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = '*'
shared_preload_libraries = 'age,ruvllm'
# The background worker runs the learning loops in this database (RUVLLM_LOOPS=off: none).
ruvllm.databases = '$( [ "${RUVLLM_LOOPS:-on}" = off ] || echo "$db" )'
shared_buffers = '${RUVLLM_SHARED_BUFFERS:-1GB}'
maintenance_work_mem = '512MB'
CONF
    as_postgres pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start
    as_postgres psql -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE \"$db\""
    as_postgres psql -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION ruvllm CASCADE"
    as_postgres pg_ctl -D "$PGDATA" -w stop
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    env HOME=/var/lib/postgresql OPENBLAS_NUM_THREADS=1 postgres -D "$PGDATA"
