"""Backups: a database using ruvllm, dumped with pg_dump and restored into a new database (custom
format through pg_restore, plain SQL through psql), has every ruvllm table's rows, the graph's
vertices and edges, the promoted policy's decisions and the same search results; and it goes on
working (new memory gets fresh ids, new witness rows are written)."""
import json
import os
import subprocess

import numpy as np
import psycopg
import pytest

from helpers import KNOWLEDGE, scalar

PG_BIN = os.environ.get("RUVLLM_PG_BIN", "/usr/lib/postgresql/17/bin")
QUESTION = "How is the witness log rotated?"

# Every table ruvllm's schemas hold, partitions and archived days included, with its row count.
TABLE_COUNTS = """
SELECT c.oid::regclass::text, (xpath('/row/n/text()',
        query_to_xml(format('SELECT count(*) AS n FROM ONLY %s', c.oid::regclass), false, true, '')))[1]::text::bigint
  FROM pg_class c
 WHERE c.relnamespace::regnamespace::text IN ('ruvllm', 'ruvllm_graph', 'ruvllm_archive')
   AND c.relkind = 'r'
 ORDER BY 1
"""
SEQUENCES = """
SELECT c.oid::regclass::text, pg_sequence_last_value(c.oid) FROM pg_class c
 WHERE c.relnamespace::regnamespace::text IN ('ruvllm', 'ruvllm_graph') AND c.relkind = 'S' ORDER BY 1
"""
EDGES = """
SELECT a.id, e.rel, b.id, e.properties FROM (
    SELECT 'Cites' AS rel, start_id, end_id, agtype_out(properties)::text AS properties FROM ruvllm_graph."Cites"
    UNION ALL SELECT 'Follows', start_id, end_id, agtype_out(properties)::text FROM ruvllm_graph."Follows"
    UNION ALL SELECT 'SameTopic', start_id, end_id, agtype_out(properties)::text FROM ruvllm_graph."SameTopic"
    UNION ALL SELECT 'Derived', start_id, end_id, agtype_out(properties)::text FROM ruvllm_graph."Derived") e
  JOIN ruvllm.nodes a ON a.graph_id = e.start_id JOIN ruvllm.nodes b ON b.graph_id = e.end_id
 ORDER BY 1, 2, 3
"""


def connect(pg, dbname):
    return psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=dbname, autocommit=True)


def run(pg, *argv, stdin=None):
    env = dict(os.environ, PGHOST=pg.host, PGPORT=str(pg.port), PGUSER=pg.user)
    return subprocess.run([os.path.join(PG_BIN, argv[0]), *argv[1:]], env=env, input=stdin,
                          capture_output=True, timeout=600)


def snapshot(conn):
    """What must come back: row counts, sequences, the graph's edges by node id, the router's
    decision, and a tenant's search results. The search goes first: it records accesses."""
    conn.execute("SET ruvllm.tenant = 'acme'")
    decision = scalar(conn, "SELECT ruvllm_route(%s)", (QUESTION,))["decision"]
    state = {
        "decision": {k: decision[k] for k in ("model", "context_size", "policy_version", "used_default")},
        "search": conn.execute("""SELECT id, hop, via_rel, via_node, round(distance::numeric, 5)
                                    FROM ruvllm_search(%s, 5, 2) ORDER BY hop, distance, id""",
                               (QUESTION,)).fetchall(),
        # The generated lexemes and the term statistics came back too.
        "lexical": conn.execute("""SELECT id, round(lexical_score::numeric, 4)
                                     FROM ruvllm_search('daily partition retention', 5, 0, 'lexical')
                                    ORDER BY rank""").fetchall(),
    }
    conn.execute("RESET ruvllm.tenant")
    # The writer records the searches' accesses: they are counted below.
    assert scalar(conn, "SELECT ruvllm_witness_flush(10000)")
    conn.execute("SET search_path = public, ag_catalog")  # graphid's operators
    state.update({
        "tables": conn.execute(TABLE_COUNTS).fetchall(),
        "sequences": conn.execute(SEQUENCES).fetchall(),
        "edges": conn.execute(EDGES).fetchall(),
        "graph_ids": conn.execute("SELECT id, graph_id::text FROM ruvllm.nodes ORDER BY id").fetchall(),
        "unit_vectors": conn.execute("SELECT node_id, layout, md5(vectors) FROM ruvllm.node_units ORDER BY 1").fetchall(),
        "policies": conn.execute("SELECT version, status, md5(router) FROM ruvllm.policies ORDER BY 1").fetchall(),
        "models": conn.execute("SELECT name, enabled, cost_per_token FROM ruvllm.models ORDER BY 1").fetchall(),
        "tenants": conn.execute("SELECT tenant, role_name FROM ruvllm.tenant_roles ORDER BY 1").fetchall(),
        "witness": conn.execute("""SELECT request_id, tableoid::regclass::text, rating, correction
                                     FROM ruvllm.witness ORDER BY 1""").fetchall(),
    })
    conn.execute("RESET search_path")
    return state


@pytest.fixture
def source(db, pg):
    """A database with memory and edges in a tenant, answered and rated queries, a session,
    cache entries, a judged loop run, a promoted trained policy, a disabled bundled model and a
    retention setting."""
    from ruvllm import policy

    for name in ("ruvllm_dump_src", "ruvllm_restored_fc", "ruvllm_restored_sql"):
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    db.execute("CREATE DATABASE ruvllm_dump_src TEMPLATE template0")
    with connect(pg, "ruvllm_dump_src") as src:
        src.execute("CREATE EXTENSION ruvllm CASCADE")
        src.execute("SELECT ruvllm_create_tenant('acme')")
        src.execute("SET ruvllm.tenant = 'acme'")
        ids = scalar(src, "SELECT ruvllm_ingest_many(%s::jsonb)",
                     (json.dumps([{"content": c, "node_type": t} for c, t in KNOWLEDGE]),))
        src.execute("SELECT ruvllm_link(%s, %s, 'Cites', 0.7)", (ids[0], ids[3]))
        src.execute("SELECT ruvllm_ingest(%s, 'Document', 'manual')", (" ".join(
            f"Sentence {i} of a long manual page about partitions and retention." for i in range(60)),))
        first = scalar(src, "SELECT ruvllm_query(%s, 'chat-1', '{\"max_tokens\": 8}')", (QUESTION,))
        scalar(src, "SELECT ruvllm_query('And what does VACUUM do?', 'chat-1', '{\"max_tokens\": 8}')")
        src.execute("SELECT ruvllm_feedback(%s, 5, %s)",
                    (first["request_id"], "Drop the oldest daily partition of ruvllm.witness."))
        assert scalar(src, "SELECT ruvllm_witness_flush(10000)")
        src.execute("RESET ruvllm.tenant")
        src.execute("SET ruvllm.judge_max_per_run = 2")
        src.execute("SELECT ruvllm_run_loop('instant')")
        # A trained-like policy that decides with confidence, promoted over version 1.
        router = policy.initial_router(["smollm2-135m-instruct", "gemma-3-270m"], seed=3)
        router.params["b_model"][:] = np.array([-4.0, 4.0], dtype=np.float32)
        router.params["b_ctx"][:] = np.array([0, 6.0, 0, 0, 0], dtype=np.float32)
        src.execute("""INSERT INTO ruvllm.policies (status, router, model_names, reason, parent_version, promoted_at)
                       VALUES ('promoted', %s, ARRAY['smollm2-135m-instruct', 'gemma-3-270m'], 'test', 1, now())""",
                    (router.to_bytes(),))
        src.execute("UPDATE ruvllm.policies SET status = 'retired' WHERE version = 1")
        src.execute("UPDATE ruvllm.models SET cost_per_token = 3.5 WHERE name = 'gemma-3-270m'")
        src.execute("SELECT ruvllm_set_retention('sessions', '2 days')")
        want = snapshot(src)
    # What the fixture made is really there (so equality below is not of empty sets).
    counts = dict(want["tables"])
    for table in ("ruvllm.nodes", "ruvllm.node_access", "ruvllm.node_units", "ruvllm.sessions", "ruvllm.response_cache",
                  "ruvllm.loop_runs", "ruvllm.replay", "ruvllm.tenants", "ruvllm.retention",
                  'ruvllm_graph."Node"', 'ruvllm_graph."SameTopic"', 'ruvllm_graph."Follows"',
                  'ruvllm_graph."Cites"', 'ruvllm_graph."Derived"'):
        assert counts[table] > 0, table
    assert sum(n for t, n in want["tables"] if t.startswith("ruvllm.witness_p")) == 2
    assert want["decision"]["policy_version"] == 2 and not want["decision"]["used_default"]
    assert any(hop > 0 for _, hop, *_ in want["search"])
    assert want["lexical"]
    yield want
    for name in ("ruvllm_dump_src", "ruvllm_restored_fc", "ruvllm_restored_sql"):
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def assert_restored(pg, dbname, want):
    with connect(pg, dbname) as restored:
        got = snapshot(restored)
        for key in want:
            assert got[key] == want[key], key
        # It goes on working: new memory gets fresh vertex ids, answers are witnessed.
        restored.execute("SET ruvllm.tenant = 'acme'")
        new = scalar(restored, "SELECT ruvllm_ingest('Restored databases keep learning.')")
        assert scalar(restored, "SELECT count(DISTINCT graph_id) = count(*) FROM ruvllm.nodes")
        r = scalar(restored, "SELECT ruvllm_query('Do restored databases keep learning?', NULL, '{\"max_tokens\": 4}')")
        assert str(new) in [s["id"] for s in r["sources"]]
        assert scalar(restored, "SELECT ruvllm_witness_flush(10000)")
        assert scalar(restored, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s",
                      (r["request_id"],)) == 1


def test_custom_format_dump_restores_everything(source, pg, db, tmp_path):
    dump = tmp_path / "ruvllm.dump"
    out = run(pg, "pg_dump", "-Fc", "-f", str(dump), "ruvllm_dump_src")
    assert out.returncode == 0, out.stderr.decode()
    db.execute("CREATE DATABASE ruvllm_restored_fc TEMPLATE template0")
    out = run(pg, "pg_restore", "-d", "ruvllm_restored_fc", str(dump))
    assert out.returncode == 0 and not out.stderr, out.stderr.decode()
    assert_restored(pg, "ruvllm_restored_fc", source)


def test_plain_sql_dump_restores_everything(source, pg, db):
    out = run(pg, "pg_dump", "ruvllm_dump_src")
    assert out.returncode == 0, out.stderr.decode()
    db.execute("CREATE DATABASE ruvllm_restored_sql TEMPLATE template0")
    out = run(pg, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "ruvllm_restored_sql", stdin=out.stdout)
    assert out.returncode == 0, out.stderr.decode()
    assert b"ERROR" not in out.stderr, out.stderr.decode()
    assert_restored(pg, "ruvllm_restored_sql", source)
