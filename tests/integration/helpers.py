"""What the integration tests share: statements and waits on a connection, the small knowledge base
the query tests ask about, login roles, and a private PostgreSQL server for tests that must
configure or crash one (the `db` and `pg` fixtures in tests/conftest.py give every other test the
shared server).

Test modules import from here (`from helpers import ask, scalar`), never from each other.
"""
import contextlib
import json
import os
import socket
import subprocess
import time
import uuid

import psycopg
import pytest
from psycopg import errors as pgerr

PG_BIN = os.environ.get("RUVLLM_PG_BIN", "/usr/lib/postgresql/17/bin")
HAVE_PG = os.path.exists(os.path.join(PG_BIN, "pg_ctl"))

# Short documents the query tests answer from: each question they ask has one fact that answers it.
KNOWLEDGE = [
    ("The witness log is rotated by dropping its oldest daily partition: each day of "
     "ruvllm.witness lives in its own partition, so retention never deletes row by row.", "Fact"),
    ("ruvllm_feedback(request_id, rating) stores a user rating from 1 to 5 on the witness row "
     "of that request.", "Fact"),
    ("The capital of France is Paris. Paris lies on the river Seine.", "Fact"),
    ("VACUUM reclaims the space of dead tuples left behind by updates and deletes in PostgreSQL.",
     "Document"),
    ("HNSW indexes in pgvector find approximate nearest neighbours; ef_search trades recall for "
     "speed.", "Document"),
]


def scalar(conn, sql, params=None):
    """The first column of the first row, or None when there is no row."""
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def seed(db):
    """Ingests KNOWLEDGE."""
    db.execute("SELECT ruvllm_ingest_many(%s::jsonb)",
               (json.dumps([{"content": c, "node_type": t} for c, t in KNOWLEDGE]),))


def witness_rows(db, where="true", params=None):
    """Witness rows (as dicts, oldest first) once the queued ones are committed."""
    assert scalar(db, "SELECT ruvllm_witness_flush(10000)")
    cur = db.execute(f"SELECT * FROM ruvllm.witness WHERE {where} ORDER BY created_at", params)
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def ask(db, query, session=None, constraints=None):
    """ruvllm_query's answer (a dict)."""
    return scalar(db, "SELECT ruvllm_query(%s, %s, %s::jsonb)",
                  (query, session, json.dumps(constraints or {})))


def login(db, pg, name, *member_of):
    """A fresh login role (roles are cluster-wide, so each test names its own) and a connection
    as it to the test's database."""
    role = f"{name}_{uuid.uuid4().hex[:8]}"
    db.execute(f'CREATE ROLE "{role}" LOGIN')
    for parent in member_of:
        db.execute(f'GRANT {parent} TO "{role}"')
    conn = psycopg.connect(host=pg.host, port=pg.port, user=role, dbname=db.info.dbname, autocommit=True)
    conn.role = role
    return conn


def denied(conn, sql, params=None, code=pgerr.InsufficientPrivilege):
    with pytest.raises(code) as e:
        conn.execute(sql, params)
    return e.value


def wait_for(what, fn, timeout=30.0, every=0.2):
    """Polls fn until it returns something true and returns that; fails after timeout seconds,
    naming what it waited for. The timeout is a deadline for an event, not a measured bound."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A PostgreSQL server of a test's own (see private_server); connect() goes to dbname unless
    told otherwise."""

    def __init__(self, datadir, logfile, port, dbname="postgres"):
        self.datadir, self.logfile, self.port, self.dbname = datadir, logfile, port, dbname

    def connect(self, dbname=None, timeout=60):
        # Retried: after a crash the postmaster refuses connections until recovery is done.
        dbname = dbname or self.dbname
        deadline = time.monotonic() + timeout
        while True:
            try:
                return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                       dbname=dbname, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def ctl(self, *args):
        """pg_ctl start, stop -m immediate, ... on this server, waiting for it."""
        subprocess.run([os.path.join(PG_BIN, "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                        "-w", "-t", "60", *args], check=True, capture_output=True)

    def log(self):
        with open(self.logfile, encoding="utf-8", errors="replace") as f:
            return f.read()


@contextlib.contextmanager
def private_server(base, settings=""):
    """initdb in base/data, start with the postgresql.conf lines in settings (TCP on 127.0.0.1 at a
    free port, trust auth, fsync off, log in base/server.log), yield a Server, and stop it fast.
    A server that does not stop within 30 s is stopped in immediate mode and fails the test."""
    datadir, logfile, port = base / "data", base / "server.log", free_port()
    subprocess.run([os.path.join(PG_BIN, "initdb"), "-D", str(datadir), "-U", "postgres",
                    "--auth=trust", "--no-sync", "--no-instructions"],
                   check=True, capture_output=True)
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write(f"""
port = {port}
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
log_line_prefix = '%m [%p] %b: '
{settings}
""")
    pg_ctl = os.path.join(PG_BIN, "pg_ctl")
    subprocess.run([pg_ctl, "-D", str(datadir), "-l", str(logfile), "-w", "-t", "60", "start"],
                   check=True, capture_output=True)
    srv = Server(datadir, logfile, port)
    try:
        yield srv
    finally:
        # A fast shutdown SIGTERMs background workers too: it only returns once they exit.
        stop = subprocess.run([pg_ctl, "-D", str(datadir), "-m", "fast", "-w", "-t", "30", "stop"],
                              capture_output=True, text=True)
        if stop.returncode != 0:
            subprocess.run([pg_ctl, "-D", str(datadir), "-m", "immediate", "stop"],
                           capture_output=True)
            raise AssertionError(f"the server did not stop within 30 s: {stop.stderr}\n{srv.log()[-3000:]}")
