"""The BI views (docs/bi.md) through clients that know nothing of ruvllm: the PostgreSQL JDBC driver,
as Metabase, Tableau or DBeaver use it (tests/clients/BiViews.java, run by the host's JDK that
`make test` binds into the root), and plain psycopg. Every view reads, every column arrives as a
plain JDBC type with its description, and both clients read the same values."""
import datetime
import decimal
import json
import math
import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import ask, seed, witness_rows

VIEWS = ("requests", "daily_quality", "daily_latency", "model_usage", "problem_requests",
         "feedback_agreement")
CLIENT = Path(__file__).resolve().parents[1] / "clients" / "BiViews.java"

# What the PostgreSQL JDBC driver reports for each plain type the views may use: the JDBC type
# (java.sql.Types) and the Java class of the values. JDBC has no UUID type, so the driver reports
# uuid as OTHER, but its values are java.util.UUID: a standard class every tool can show, not the
# driver's PGobject (which is what agtype, jsonb, vector and other extension types arrive as).
PLAIN_JDBC = {
    "uuid": ("OTHER", "java.util.UUID"),
    "text": ("VARCHAR", "java.lang.String"),
    "timestamptz": ("TIMESTAMP", "java.sql.Timestamp"),
    "date": ("DATE", "java.sql.Date"),
    "int2": ("SMALLINT", "java.lang.Integer"),
    "int4": ("INTEGER", "java.lang.Integer"),
    "int8": ("BIGINT", "java.lang.Long"),
    "float4": ("REAL", "java.lang.Float"),
    "float8": ("DOUBLE", "java.lang.Double"),
    "numeric": ("NUMERIC", "java.math.BigDecimal"),
    "bool": ("BIT", "java.lang.Boolean"),
}
# docs/bi.md promises no jsonb anywhere; a (view, column) allowed one would be listed here.
JSONB_COLUMNS = set()


def java_client():
    """(java, driver jar), or a skip saying which is missing."""
    java_home, jar = os.environ.get("RUVLLM_JAVA_HOME"), os.environ.get("RUVLLM_JDBC_JAR")
    java = os.path.join(java_home, "bin", "java") if java_home else None
    if not java or not os.access(java, os.X_OK):
        pytest.skip("no Java here: `make test` binds the host's JDK into the root when `java` is on the "
                    f"host's PATH (RUVLLM_JAVA_HOME={java_home!r})")
    if not jar or not os.path.isfile(jar):
        pytest.skip("no PostgreSQL JDBC driver here: `make test` binds the newest "
                    "~/.m2/repository/org/postgresql/postgresql/*/postgresql-*.jar into the root "
                    f"(RUVLLM_JDBC_JAR={jar!r})")
    return java, jar


def read_jdbc(java, jar, host, port, dbname, user, password=None):
    """What BiViews.java reads of every view: {"driver": ..., view: {...}}."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    if password:
        env["PGPASSWORD"] = password
    # Source-file mode compiles the client in memory; a small single-threaded JVM starts fastest.
    cmd = [java, "-Duser.timezone=UTC", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
           "-XX:-UsePerfData", "-cp", jar, str(CLIENT), f"jdbc:postgresql://{host}:{port}/{dbname}",
           user, *(f"ruvllm.{v}" for v in VIEWS)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"{cmd}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    out = {"driver": lines[0]}
    out.update({v["view"].removeprefix("ruvllm."): v for v in lines[1:]})
    return out


def read_psycopg(host, port, dbname, user, password=None):
    """{view: (column names, type names, rows)} read by a fresh, plain psycopg connection."""
    out = {}
    with psycopg.connect(host=host, port=port, dbname=dbname, user=user, password=password,
                         autocommit=True) as conn:
        for view in VIEWS:
            cur = conn.execute(sql.SQL("SELECT * FROM ruvllm.{}").format(sql.Identifier(view)))
            names = [c.name for c in cur.description]
            types = [conn.adapters.types.get(c.type_code).name for c in cur.description]
            out[view] = (names, types, cur.fetchall())
    return out


def from_jdbc(value, type_name):
    """A value as BiViews.java wrote it, in the Python type psycopg gives for the same column."""
    if value is None:
        return None
    if type_name == "timestamptz":
        return datetime.datetime.fromisoformat(value)
    if type_name == "date":
        return datetime.date.fromisoformat(value)
    if type_name == "numeric":
        return decimal.Decimal(value)
    if type_name in ("float4", "float8"):
        return float(value)
    return value


def from_psycopg(value, type_name):
    return str(value) if type_name == "uuid" and value is not None else value


def sort_key(row):
    # Floats are compared with a tolerance below (Java 17 may print a float4 with more digits than
    # PostgreSQL); for ordering, a few digits do.
    return tuple(f"{v:.4g}" if isinstance(v, float) else repr(v) for v in row)


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return type(a) is type(b) and a == b


# The role both clients connect as: a login member of ruvllm_analyst, which may read the BI views
# and nothing else (the server trusts local connections); None would be the test's superuser.
@pytest.mark.parametrize("reader", ["ruvllm_analyst"], ids=["analyst"])
def test_bi_views_read_the_same_through_jdbc_and_psycopg(db, pg, reader):
    java, jar = java_client()
    seed(db)
    ok = ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})
    ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})   # a cache hit
    # A failed call whose question needs escaping on the way out: quotes, a backslash, a tab, a
    # newline, accents and CJK.
    odd = 'Grüße, "quoted" \\ back\tslash\nand 日本語?'
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        ask(db, odd, constraints={"bogus": 1})
    witness_rows(db)
    db.execute("SELECT ruvllm_feedback(%s, 1)", (ok["request_id"],))

    user = pg.user
    if reader:
        user = f"bi_{reader}"
        db.execute(f'DROP ROLE IF EXISTS "{user}"')
        db.execute(f'CREATE ROLE "{user}" LOGIN IN ROLE {reader}')
    conninfo = dict(host=db.info.host, port=db.info.port, dbname=db.info.dbname, user=user,
                 password=pg.password or None)
    jdbc = read_jdbc(java, jar, **conninfo)
    plain = read_psycopg(**conninfo)

    version = re.search(r"postgresql-([0-9.]+)\.jar$", jar)
    assert jdbc["driver"]["driver"] == "PostgreSQL JDBC Driver" and jdbc["driver"]["user"] == user
    assert version is None or jdbc["driver"]["driver_version"] == version.group(1)
    for view in VIEWS:
        got, (names, types, rows) = jdbc[view], plain[view]
        cols = got["columns"]
        assert got["remarks"], f"ruvllm.{view} has no description through JDBC"
        assert [c["name"] for c in cols] == names, view
        assert [c["type_name"] for c in cols] == types, view
        for c, classes in zip(cols, got["value_classes"]):
            col = f"ruvllm.{view}.{c['name']}"
            assert c["remarks"], f"{col} has no description through JDBC"
            if (view, c["name"]) in JSONB_COLUMNS and c["type_name"] == "jsonb":
                continue
            assert c["type_name"] in PLAIN_JDBC, f"{col} is {c['type_name']}, not a plain type"
            assert (c["jdbc_type"], c["class"]) == PLAIN_JDBC[c["type_name"]], (col, c)
            assert set(classes) <= {c["class"]}, (col, classes)
        assert rows, f"ruvllm.{view} is empty: the seed should have given it rows"
        theirs = sorted(([from_jdbc(v, t) for v, t in zip(r, types)] for r in got["rows"]), key=sort_key)
        ours = sorted(([from_psycopg(v, t) for v, t in zip(r, types)] for r in rows), key=sort_key)
        assert len(theirs) == len(ours), view
        for a, b in zip(theirs, ours):
            bad = [(n, x, y) for n, x, y in zip(names, a, b) if not same(x, y)]
            assert bad == [], f"ruvllm.{view}: JDBC and psycopg disagree on {bad}"

    # The witness rows came through as written, the odd question included.
    def column(view, name):
        at = [c["name"] for c in jdbc[view]["columns"]].index(name)
        return [r[at] for r in jdbc[view]["rows"]]
    assert len(column("requests", "request_id")) == 3 and ok["request_id"] in column("requests", "request_id")
    assert odd in column("requests", "query")
    assert sorted(column("problem_requests", "problem")) == ["failed", "low quality"]
