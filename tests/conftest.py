"""Test fixtures: one throwaway PostgreSQL 17 per test session, a template database with ruvllm
installed, and a fresh clone of that template for every test that asks for `db`.

The server runs the real extensions (pgvector, AGE, PL/Python) and the real models; nothing is
mocked. Tests run inside the ruvllm root (`make test`), where PostgreSQL 17 lives.
"""
import os

import pytest

# The server's numpy inherits this: under concurrent backends a multi-threaded OpenBLAS turns a
# 0.2 ms matmul into 12 ms on two cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

PG_BIN = os.environ.get("RUVLLM_PG_BIN", "/usr/lib/postgresql/17/bin")
HAVE_PG = os.path.exists(os.path.join(PG_BIN, "pg_ctl"))

if HAVE_PG:
    import psycopg
    from pytest_postgresql import factories

    def _install_ruvllm(host, port, user, dbname, password, **_):
        with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password,
                             autocommit=True) as conn:
            conn.execute("CREATE EXTENSION ruvllm CASCADE")

    postgresql_proc = factories.postgresql_proc(
        executable=os.path.join(PG_BIN, "pg_ctl"),
        host="127.0.0.1",
        port=None,  # a free port, so test runs beside each other (and `make up`) don't collide
        unixsocketdir="/tmp",
        # age preloaded: Cypher works in every session without LOAD 'age'.
        # The launcher holds a worker slot, and witness writers start on demand: room for both.
        postgres_options="-c shared_preload_libraries=age,ruvllm -c max_connections=40"
                         " -c max_worker_processes=16",
        load=[_install_ruvllm],
    )
    db_connection = factories.postgresql("postgresql_proc", dbname="ruvllm_test")


@pytest.fixture
def db(request):
    """A psycopg connection (autocommit) to a fresh database with ruvllm installed."""
    if not HAVE_PG:
        pytest.skip("PostgreSQL 17 is not here: run the tests with `make test`")
    conn = request.getfixturevalue("db_connection")
    conn.autocommit = True
    yield conn


@pytest.fixture
def pg(request):
    """The PostgreSQL process (host, port, user) for tests that open their own connections."""
    if not HAVE_PG:
        pytest.skip("PostgreSQL 17 is not here: run the tests with `make test`")
    return request.getfixturevalue("postgresql_proc")
