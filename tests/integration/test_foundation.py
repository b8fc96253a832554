"""Smoke tests of the foundation: extensions, the Python package, generation, clean removal."""
import re

import psycopg
import pytest

from helpers import scalar


def test_required_extensions_are_installed(db):
    rows = dict(db.execute("SELECT extname, extversion FROM pg_extension").fetchall())
    for name in ("vector", "age", "plpython3u", "ruvllm"):
        assert name in rows, f"{name} missing from {sorted(rows)}"


def test_pgvector_and_age_work(db):
    assert scalar(db, "SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector") == pytest.approx(1.0)
    db.execute("SET search_path = ag_catalog, public")
    db.execute("SELECT create_graph('smoke_graph')")
    db.execute("SELECT * FROM cypher('smoke_graph', $$ CREATE (:Thing {name: 'a'})-[:REL]->(:Thing {name: 'b'}) $$) AS (v agtype)")
    names = db.execute(
        "SELECT * FROM cypher('smoke_graph', $$ MATCH (a)-[:REL]->(b) RETURN b.name $$) AS (n agtype)"
    ).fetchall()
    assert [r[0] for r in names] == ['"b"']


def test_python_package_version_matches_extension(db):
    info = scalar(db, "SELECT ruvllm_info()")
    ext = scalar(db, "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'")
    assert info["python_package"] == ext
    assert info["library"] == ext
    assert info["extension"] == ext
    # Loaded from the per-version directory, not from wherever `import ruvllm` would find one.
    assert f"/ruvllm-python/{ext}/ruvllm/" in info["python_package_path"]
    assert re.match(r"\d+\.\d+", info["numpy"])
    assert info["llama_cpp"], "llama_cpp must be importable by the server's Python"


def test_generate_returns_text_from_bundled_model(db):
    text = scalar(db, "SELECT ruvllm_generate('What is the capital of France? Answer in one word.', 16)")
    assert isinstance(text, str)
    assert re.search(r"[A-Za-z]{2,}", text), f"no words in {text!r}"
    assert "paris" in text.lower()


def test_generate_rejects_bad_input_with_sqlstate(db):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT ruvllm_generate('', 8)")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT ruvllm_generate('hi', 0)")
    with pytest.raises(psycopg.errors.UndefinedObject) as exc:
        db.execute("SELECT ruvllm_generate('hi', 8, 'no-such-model')")
    assert "smollm2-135m-instruct" in (exc.value.diag.message_hint or "")


def test_create_and_drop_extension_leave_nothing_behind(pg):
    """CREATE EXTENSION ruvllm CASCADE in a fresh database, then DROP ... CASCADE removes it all."""
    admin = dict(host=pg.host, port=pg.port, user=pg.user, password=pg.password, autocommit=True)
    with psycopg.connect(dbname="postgres", **admin) as conn:
        conn.execute("DROP DATABASE IF EXISTS ruvllm_dropcheck")
        conn.execute("CREATE DATABASE ruvllm_dropcheck")
    try:
        with psycopg.connect(dbname="ruvllm_dropcheck", **admin) as conn:
            conn.execute("CREATE EXTENSION ruvllm CASCADE")
            assert scalar(conn, "SELECT count(*) FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph'") == 1
            assert scalar(conn, "SELECT ruvllm_info()->>'extension'")
            # Cypher first, so AGE's label caches are warm in this backend when the graph goes.
            conn.execute("SELECT ruvllm_ingest('a node for the graph')")
            assert scalar(conn, "SELECT count(*) FROM ag_catalog.cypher('ruvllm_graph', $$ MATCH (n:Node) RETURN n $$) AS (n ag_catalog.agtype)") == 1
            conn.execute("DROP EXTENSION ruvllm CASCADE")
            assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('ruvllm', 'ruvllm_graph')") == 0
            assert scalar(conn, "SELECT count(*) FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph'") == 0
            assert scalar(conn, "SELECT count(*) FROM ag_catalog.ag_label l JOIN ag_catalog.ag_graph g ON g.graphid = l.graph WHERE g.name = 'ruvllm_graph'") == 0
            assert scalar(conn, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'ruvllm%'") == 0
            # And it installs again cleanly afterwards.
            conn.execute("CREATE EXTENSION ruvllm")
            assert scalar(conn, "SELECT count(*) FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph'") == 1
    finally:
        with psycopg.connect(dbname="postgres", **admin) as conn:
            conn.execute("DROP DATABASE IF EXISTS ruvllm_dropcheck WITH (FORCE)")
