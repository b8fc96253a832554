"""Memory on a real database: embeddings, ingestion, graph edges, retrieval, bad input."""
import json

import psycopg
import pytest
from psycopg.sql import SQL, Identifier, Literal

from helpers import login, scalar, wait_for
from ruvllm import memory

TOPICS = ["vacuum and dead tuples", "write-ahead log archiving", "replication slots and standbys",
          "HNSW index build memory", "row-level security policies", "partition pruning in plans"]
# Six paragraphs on different topics, ~100 words each: too long for one chunk, and no two alike
# (alike paragraphs would merge as near-duplicates).
LONG_DOC = "\n\n".join(
    f"Paragraph {i} is about {topic}. " + " ".join(
        f"Note {j} on {topic}: step {j * 7 + i} matters when {topic} meets load level {j}." for j in range(8))
    for i, topic in enumerate(TOPICS))


def edges(conn, rel):
    return scalar(conn, f'SELECT count(*) FROM ruvllm_graph."{rel}"')


def test_embed_is_unit_norm_and_semantic(db):
    v = scalar(db, "SELECT ruvllm_embed('How do I back up PostgreSQL?')::text")
    vec = json.loads(v)
    assert len(vec) == 384
    assert sum(x * x for x in vec) == pytest.approx(1.0, abs=1e-4)
    near = scalar(db, "SELECT ruvllm_embed('How do I back up PostgreSQL?') <=> ruvllm_embed('Taking a backup of a Postgres database')")
    far = scalar(db, "SELECT ruvllm_embed('How do I back up PostgreSQL?') <=> ruvllm_embed('A recipe for banana bread')")
    assert near < far


def test_embed_batch_matches_single(db):
    single = scalar(db, "SELECT ruvllm_embed('graph attention')::text")
    batch = scalar(db, "SELECT (ruvllm_embed(ARRAY['graph attention', 'a much longer second sentence about vectors']))[1]::text")
    assert json.loads(single) == pytest.approx(json.loads(batch), abs=1e-5)


def test_embedders_agree_and_the_setting_is_checked(db):
    # ruvllm.embedder: llama (the default, llama.cpp over the GGUF file make install wrote) or numpy.
    assert scalar(db, "SHOW ruvllm.embedder") == "llama"
    texts = ["How do I back up PostgreSQL?", "hi", "Grüße aus München 🐘", LONG_DOC]
    def vectors():
        return [json.loads(scalar(db, "SELECT ruvllm_embed(%s)::text", (t,))) for t in texts]
    llama = vectors()
    db.execute("SET ruvllm.embedder = numpy")
    numpy_ = vectors()
    for a, b in zip(llama, numpy_):
        assert sum(x * y for x, y in zip(a, b)) >= 0.9999
    assert llama != numpy_  # two forward passes, not one
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SET ruvllm.embedder = onnx")


def test_embed_reports_truncation(db):
    notices = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    db.execute("SELECT ruvllm_embed(%s)", (LONG_DOC,))
    assert any("only the first 256" in n for n in notices), notices


def test_ingest_stores_node_vertex_and_metadata(db):
    node = scalar(db, "SELECT ruvllm_ingest('Vacuum reclaims space from dead tuples.', 'Fact', 'docs/vacuum', '{\"tags\": [\"ops\"], \"confidence\": 0.9}')")
    row = db.execute("SELECT node_type, source, metadata, tenant FROM ruvllm.nodes WHERE id = %s", (node,)).fetchone()
    assert row[0] == "Fact" and row[1] == "docs/vacuum" and row[3] == ""
    assert row[2]["tags"] == ["ops"] and row[2]["version"] == 1
    # The vertex is visible to users' Cypher, carrying the node id.
    db.execute("SET search_path = ag_catalog, public")
    ids = db.execute("SELECT * FROM cypher('ruvllm_graph', $$ MATCH (n:Node) RETURN n.node_id $$) AS (id agtype)").fetchall()
    assert [json.loads(r[0]) for r in ids] == [str(node)]


def test_long_document_is_chunked_with_follows_edges(db):
    head = scalar(db, "SELECT ruvllm_ingest(%s, 'Document', 'long.md')", (LONG_DOC,))
    n = scalar(db, "SELECT count(*) FROM ruvllm.nodes WHERE source = 'long.md'")
    assert n >= 3
    assert edges(db, "Follows") == n - 1
    assert scalar(db, "SELECT content FROM ruvllm.nodes WHERE id = %s", (head,)).startswith("Paragraph 0 is about vacuum")


def test_near_duplicate_merges_into_existing_node(db):
    a = scalar(db, "SELECT ruvllm_ingest('The background worker trains the router every ten minutes from the replay buffer.')")
    b = scalar(db, "SELECT ruvllm_ingest('The background worker trains the router every ten minutes from the replay buffer!')")
    assert a == b
    assert scalar(db, "SELECT count(*) FROM ruvllm.nodes") == 1
    assert scalar(db, "SELECT metadata->>'version' FROM ruvllm.nodes") == "2"


def test_same_topic_edges_link_similar_nodes(db):
    db.execute("SELECT ruvllm_ingest('HNSW indexes make vector similarity search fast in pgvector.')")
    db.execute("SELECT ruvllm_ingest('pgvector HNSW index speeds up nearest neighbour vector search.')")
    db.execute("SELECT ruvllm_ingest('Sourdough bread needs a long fermentation.')")
    assert edges(db, "SameTopic") == 1
    weight = scalar(db, "SELECT ag_catalog.agtype_out(properties)::text FROM ruvllm_graph.\"SameTopic\"")
    assert 0.6 <= json.loads(weight)["weight"] <= 1.0


def test_bulk_forms_ingest_many_rows(db):
    ids = scalar(db, "SELECT ruvllm_ingest_many(ARRAY['alpha fact about tables', 'beta fact about indexes', 'gamma fact about roles'], 'Fact')")
    assert len(ids) == 3 and len(set(ids)) == 3
    ids2 = scalar(db, """SELECT ruvllm_ingest_many('[{"content": "delta about WAL archiving", "node_type": "Concept", "source": "wal.md"},
                                               {"content": "epsilon about replication slots"}]'::jsonb)""")
    assert len(ids2) == 2
    assert scalar(db, "SELECT node_type FROM ruvllm.nodes WHERE id = %s", (ids2[0],)) == "Concept"
    db.execute("CREATE TABLE docs(body text)")
    db.execute("INSERT INTO docs SELECT 'document number ' || i || ' about topic ' || (i * 7919 % 1000) FROM generate_series(1, 50) i")
    ids3 = scalar(db, "SELECT ruvllm_ingest_many(array_agg(body ORDER BY body)) FROM docs")
    assert len(ids3) == 50
    assert scalar(db, "SELECT count(*) FROM ruvllm.nodes") >= 50


def test_link_and_search_with_hops(db):
    a = scalar(db, "SELECT ruvllm_ingest('To rotate the witness log, drop old daily partitions.')")
    b = scalar(db, "SELECT ruvllm_ingest('Retention settings are stored in a table DBAs can read.')")
    c = scalar(db, "SELECT ruvllm_ingest('Zebras live in Africa.')")
    db.execute("SELECT ruvllm_link(%s, %s, 'Cites', 0.8)", (a, b))
    db.execute("SELECT ruvllm_link(%s, %s, 'Derived', 0.5)", (b, c))
    rows = db.execute("SELECT id, hop, via_rel, via_node, edge_weight FROM ruvllm_search('How do I rotate the witness log?', 1, 2)").fetchall()
    assert rows[0][:2] == (a, 0)
    by_id = {r[0]: r for r in rows}
    assert by_id[b][1:] == (1, "Cites", a, pytest.approx(0.8))
    assert by_id[c][1:] == (2, "Derived", b, pytest.approx(0.5))
    assert db.execute("SELECT count(*) FROM ruvllm_search('witness log', 1, 0)").fetchone()[0] == 1
    # Served nodes record the time; the unrelated one reached at hop 2 too, nothing else exists.
    assert scalar(db, "SELECT ruvllm_witness_flush(10000)")
    assert scalar(db, "SELECT count(*) FROM ruvllm.node_access") == 3
    db.execute("SELECT ruvllm_run_loop('deep')")
    assert scalar(db, "SELECT count(*) FROM ruvllm.nodes WHERE last_accessed IS NOT NULL") == 3


def test_a_node_row_keeps_its_vector_content_and_lexemes_in_the_heap(db):
    # Nothing of these nodes goes to TOAST: a search reads every candidate's vector (and hybrid
    # search its lexemes) from the heap row, and the planner, which costs a full scan by heap pages
    # alone, sees how wide the rows really are (the next test).
    db.execute("SELECT ruvllm_ingest_many(%s::text[])",
               ([LONG_DOC, "Vacuum reclaims space from dead tuples. Autovacuum runs it for you."],))
    sizes = db.execute("SELECT pg_column_size(n.*), length(content) FROM ruvllm.nodes n").fetchall()
    assert len(sizes) >= 4 and max(chars for _, chars in sizes) > 500, sizes
    assert scalar(db, "SELECT attstorage FROM pg_attribute WHERE attrelid = 'ruvllm.nodes'::regclass "
                      "AND attname = 'embedding'") == "m"
    assert scalar(db, "SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                      "WHERE oid = 'ruvllm.nodes'::regclass") == 0, sizes


# Nodes as a bulk load leaves them, in one statement (embedding this many texts would take
# minutes): two-sentence contents (~250 characters, so with its lexemes and vector a row is over
# the 2 KB that PostgreSQL starts moving values to TOAST at), and deterministic pseudo-random
# vectors; vertices are not needed for a plan.
SYNTHETIC_NODES = """
    INSERT INTO ruvllm.nodes (embedding, content, graph_id, minhash_bands)
    SELECT (SELECT array_agg((x - floor(x)) - 0.5 ORDER BY d)
              FROM generate_series(1, 384) d, LATERAL (SELECT sin(g * 12.9898 + d * 78.233) * 43758.5453) s(x)
           )::vector(384),
           format('Note %%s: the nightly backup of cluster %%s copies its WAL archive to the standby '
                  'every %%s minutes. Operators check the replication lag dashboard before they '
                  'restart node %%s, and page the engineer on call when it stays above %%s seconds.',
                  g, g %% 97, g %% 60, g %% 13, g %% 40),
           ag_catalog._graphid(ag_catalog._label_id('ruvllm_graph', 'Node'),
                               pg_catalog.nextval('ruvllm_graph."Node_id_seq"')),
           '{}'
      FROM generate_series(1, %(n)s) g"""


def test_dense_and_hybrid_search_read_the_hnsw_index_at_5000_nodes(db):
    # pgvector costs the HNSW scan by the few index pages a search visits, PostgreSQL a full scan +
    # sort by the heap's pages: with the vectors in TOAST the heap looked ~3x smaller than it is and
    # the full scan won up to ~10K nodes (19 ms there against 2). Whole rows make the index the
    # cheaper plan from ~3.5K nodes on. The plans are the product's statements, custom and generic.
    # Built after the load, as bench/memory does: 5,000 inserts into the HNSW index take ~50 s.
    index = scalar(db, "SELECT pg_get_indexdef('ruvllm.nodes_embedding_hnsw'::regclass)")
    db.execute("DROP INDEX ruvllm.nodes_embedding_hnsw")
    db.execute(SYNTHETIC_NODES, {"n": 5000})
    db.execute(index)
    db.execute("VACUUM ANALYZE ruvllm.nodes")
    db.execute("SELECT set_config('hnsw.ef_search', current_setting('ruvllm.ef_search'), false)")
    query = scalar(db, "SELECT public.vector_send(embedding) FROM ruvllm.nodes ORDER BY id LIMIT 1")
    for mode, depth in (("dense", 10), ("hybrid", max(2 * 10, memory.MIN_CANDIDATES))):
        db.execute(f"PREPARE search_{mode}(bytea, text, text) AS {memory.candidates_sql(mode, depth)}")
        for plan_cache_mode in ("force_custom_plan", "force_generic_plan"):
            db.execute(f"SET plan_cache_mode = {plan_cache_mode}")
            # EXECUTE takes no parameters of the protocol: the values as literals, quoted by psycopg.
            plan = "\n".join(r[0] for r in db.execute(SQL("EXPLAIN EXECUTE {}({}, '', {})").format(
                Identifier(f"search_{mode}"), Literal(query), Literal("nightly backup of the WAL archive"))))
            assert "Index Scan using nodes_embedding_hnsw" in plan, f"{mode}, {plan_cache_mode}:\n{plan}"


def test_serving_nodes_another_open_transaction_served_neither_waits_nor_deadlocks(db, pg):
    # The synchronous upsert (the queue's fallback) is what takes row locks in the request.
    db.execute("SET ruvllm.witness_async = off")
    for text in ("VACUUM reclaims dead tuples.", "VACUUM FULL rewrites the table.",
                 "ANALYZE gathers planner statistics."):
        db.execute("SELECT ruvllm_ingest(%s)", (text,))
    assert scalar(db, "SELECT count(*) FROM ruvllm_search('VACUUM', 3, 0)") == 3   # first accesses
    other = login(db, pg, "toucher", "ruvllm_admin")
    db.execute(f'GRANT SET ON PARAMETER ruvllm.witness_async TO "{other.role}"')
    other.execute("SET ruvllm.witness_async = off")
    try:
        # A request still open (generating, say) holds its served nodes' access rows...
        db.execute("BEGIN")
        db.execute("SELECT count(*) FROM ruvllm_search('What does VACUUM do?', 3, 0)")
        # ...and another serving the same nodes, in another order, goes on without a lock wait.
        other.execute("SET lock_timeout = '5s'")
        assert scalar(other, "SELECT count(*) FROM ruvllm_search('planner statistics ANALYZE', 3, 0)") == 3
        db.execute("COMMIT")
    finally:
        if db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            db.execute("ROLLBACK")
        other.close()
    assert scalar(db, "SELECT min(hits) FROM ruvllm.node_access") >= 1


def access_rows(db):
    return dict(db.execute("SELECT node_id, hits FROM ruvllm.node_access").fetchall())


def test_accesses_are_recorded_by_the_writer_off_the_request_and_survive_its_rollback(db):
    ids = [scalar(db, "SELECT ruvllm_ingest(%s)", (text,)) for text in
           ("VACUUM reclaims dead tuples.", "VACUUM FULL rewrites the table.",
            "ANALYZE gathers planner statistics.")]
    db.execute("BEGIN")
    served = {r[0] for r in db.execute("SELECT id FROM ruvllm_search('VACUUM', 3, 0)")}
    searched_at = scalar(db, "SELECT now()")
    # The request wrote nothing itself: no transaction id, so no row and no lock of its own.
    assert scalar(db, "SELECT pg_current_xact_id_if_assigned() IS NULL")
    db.execute("ROLLBACK")
    assert served == set(ids)
    # The writer records them (polled: it commits on its own), with the search's time; the
    # caller's rollback does not take back that the nodes were served.
    got = wait_for("the writer's node_access rows", lambda: len(access_rows(db)) == 3 and access_rows(db))
    assert got == {i: 1 for i in ids}
    assert scalar(db, "SELECT min(last_accessed) = max(last_accessed) AND max(last_accessed) = %s "
                      "FROM ruvllm.node_access", (searched_at,))
    # Another search adds a hit, and ruvllm_witness_flush waits for access records too.
    db.execute("SELECT count(*) FROM ruvllm_search('VACUUM', 2, 0)")
    assert scalar(db, "SELECT ruvllm_witness_flush(10000)")
    assert sorted(access_rows(db).values()) == [1, 2, 2]
    db.execute("SELECT ruvllm_run_loop('deep')")
    assert scalar(db, "SELECT count(*) FROM ruvllm.nodes WHERE last_accessed IS NOT NULL") == 3


def test_read_only_transactions_record_no_access(db):
    db.execute("SELECT ruvllm_ingest('VACUUM reclaims dead tuples.')")
    db.execute("BEGIN READ ONLY")
    assert scalar(db, "SELECT count(*) FROM ruvllm_search('VACUUM', 3, 0)") == 1
    db.execute("COMMIT")
    db.execute("SET default_transaction_read_only = on")
    assert scalar(db, "SELECT count(*) FROM ruvllm_search('VACUUM', 3, 1)") == 1
    db.execute("RESET default_transaction_read_only")
    # Everything queued so far is written by now: none of it was an access.
    assert scalar(db, "SELECT ruvllm_witness_flush(10000)")
    assert access_rows(db) == {}


def test_accesses_the_queue_refuses_are_written_in_the_callers_transaction(db):
    node = scalar(db, "SELECT ruvllm_ingest('VACUUM reclaims dead tuples.')")
    db.execute("SET ruvllm.witness_async = off")
    db.execute("BEGIN")
    db.execute("SELECT count(*) FROM ruvllm_search('VACUUM', 3, 0)")
    assert access_rows(db) == {node: 1}
    db.execute("ROLLBACK")       # ... and roll back with it
    assert scalar(db, "SELECT ruvllm_witness_flush(10000)")
    assert access_rows(db) == {}
    db.execute("SELECT count(*) FROM ruvllm_search('VACUUM', 3, 0)")
    assert access_rows(db) == {node: 1}


def test_tenant_filter_still_returns_k_rows(db):
    db.execute("SELECT ruvllm_create_tenant('acme'), ruvllm_create_tenant('globex')")
    db.execute("SET ruvllm.tenant = 'acme'")
    db.execute("SELECT ruvllm_ingest_many(array_agg('acme note ' || i || ' on invoices')) FROM generate_series(1, 12) i")
    db.execute("SET ruvllm.tenant = 'globex'")
    db.execute("SELECT ruvllm_ingest_many(array_agg('globex memo ' || i || ' on invoices')) FROM generate_series(1, 40) i")
    rows = db.execute("SELECT content FROM ruvllm_search('invoices', 10, 0)").fetchall()
    assert len(rows) == 10 and all(r[0].startswith("globex") for r in rows)
    db.execute("SET ruvllm.tenant = 'acme'")
    rows = db.execute("SELECT content FROM ruvllm_search('invoices', 10, 0)").fetchall()
    assert len(rows) == 10 and all(r[0].startswith("acme") for r in rows)


@pytest.mark.parametrize("sql, params, error", [
    ("SELECT ruvllm_ingest(NULL::text)", None, psycopg.errors.NullValueNotAllowed),
    ("SELECT ruvllm_ingest('   ')", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_ingest(repeat('x', 1000001))", None, psycopg.errors.StringDataRightTruncation),
    ("SELECT ruvllm_ingest('ok', 'Blog')", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_ingest('ok', 'Fact', NULL, '[1,2]')", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_ingest('ok', 'Fact', NULL, '{\"confidence\": 7}')", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_ingest_many('[{\"content\": \"a\"}, {\"text\": \"b\"}]'::jsonb)", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_ingest_many(ARRAY['good one', ''])", None, psycopg.errors.InvalidParameterValue),
    ("SELECT * FROM ruvllm_search('q', 0)", None, psycopg.errors.NumericValueOutOfRange),
    ("SELECT * FROM ruvllm_search('q', 1001)", None, psycopg.errors.NumericValueOutOfRange),
    ("SELECT * FROM ruvllm_search('q', 5, 4)", None, psycopg.errors.NumericValueOutOfRange),
    ("SELECT * FROM ruvllm_search('', 5)", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_link(gen_random_uuid(), gen_random_uuid(), 'Cites')", None, psycopg.errors.NoDataFound),
    ("SELECT ruvllm_embed(NULL::text)", None, psycopg.errors.InvalidParameterValue),
])
def test_bad_input_is_rejected_and_nothing_is_written(db, sql, params, error):
    with pytest.raises(error):
        db.execute(sql, params)
    assert scalar(db, "SELECT count(*) FROM ruvllm.nodes") == 0
    assert scalar(db, 'SELECT count(*) FROM ruvllm_graph."Node"') == 0


def test_unknown_rel_is_rejected(db):
    a = scalar(db, "SELECT ruvllm_ingest('first node')")
    b = scalar(db, "SELECT ruvllm_ingest('second, quite different node about cooking')")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT ruvllm_link(%s, %s, 'Likes')", (a, b))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT ruvllm_link(%s, %s, 'Cites', -1)", (a, b))
    assert edges(db, "Cites") == 0


def test_long_bulk_ingest_reports_progress(db):
    notices = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    docs = [f"Ticket {i} reports that replica {i % 7} lags by {i} seconds." for i in range(300)]
    ids = scalar(db, "SELECT ruvllm_ingest_many(%s::text[])", (docs,))
    assert len(ids) == 300
    progress = [n for n in notices if n.startswith("ruvllm_ingest_many: embedded")]
    assert [n.split(" chunks")[0] for n in progress] == [
        "ruvllm_ingest_many: embedded 256 of 300", "ruvllm_ingest_many: embedded 300 of 300"], notices
    assert "chunks/s" in progress[0] and "s left" in progress[0]
