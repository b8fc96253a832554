"""Retrieval on a real database (issue 15): lexical (BM25 over the generated tsvector), dense
(HNSW) and hybrid search, graph neighbours ranked with the hits, filters inside the tenant, first-
class metadata on the rows, and user text that never becomes tsquery syntax."""
import json
import random

import psycopg
import pytest

from helpers import ask, login, scalar
from ruvllm import lexical

TARGET = "The night shift traced ERR-7731-XQ to the loading dock scanner, whose battery had run flat."
QUESTION = "What is error code ERR-7731-XQ?"


def tickets():
    """Thirty short error-code notes, alike in wording and each with its own code: a sentence
    embedding blurs the codes, so the one passage with the asked-for code is not the nearest."""
    rng = random.Random(1)
    subjects = ["the replication slot", "the witness writer", "the HNSW index build", "the backup job",
                "a VACUUM run", "the connection pooler", "the archive command", "a checkpoint",
                "the router training", "the cache"]
    causes = ["the disk is full", "a lock times out", "memory runs out", "the network drops",
              "a file is missing"]
    letters = "ABCDEFGHJKLMNPRSTUVWYZ"
    return [f"Error code ERR-{rng.randint(1000, 9999)}-{rng.choice(letters)}{rng.choice(letters)}: {s} "
            f"{rng.choice(['stops with', 'reports', 'fails with', 'logs', 'returns'])} this error when "
            f"{rng.choice(causes)}." for s in subjects * 3]


def ingest_tickets(conn):
    scalar(conn, "SELECT ruvllm_ingest_many(%s::text[])", (tickets(),))
    return scalar(conn, "SELECT ruvllm_ingest(%s, 'Fact', 'tickets/night-shift')", (TARGET,))


def search(conn, query, k=3, hops=0, mode="hybrid", filter=None):
    cur = conn.execute("SELECT * FROM ruvllm_search(%s, %s, %s, %s, %s::jsonb)",
                       (query, k, hops, mode, json.dumps(filter or {})))
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def top(rows, k):
    return [r["id"] for r in sorted(rows, key=lambda r: r["rank"])[:k]]


def test_a_rare_code_is_found_by_lexical_and_hybrid_where_dense_misses_it(db):
    target = ingest_tickets(db)
    # The premise: the embedding alone does not put the passage with the code in its top 3.
    assert target not in top(search(db, QUESTION, mode="dense"), 3)
    lexical = search(db, QUESTION, mode="lexical")
    assert top(lexical, 1) == [target]
    hybrid = search(db, QUESTION)
    assert target in top(hybrid, 3)
    row = next(r for r in hybrid if r["id"] == target)
    # Its signals: BM25 score and rank, the fused score, and its true cosine distance.
    assert row["lexical_rank"] == 1 and row["lexical_score"] > 0
    assert row["hop"] == 0 and row["via_rel"] is None and 0 < row["score"] <= 1
    true = scalar(db, "SELECT embedding <=> ruvllm_embed(%s) FROM ruvllm.nodes WHERE id = %s", (QUESTION, target))
    assert row["distance"] == pytest.approx(true, abs=1e-4)
    assert row["similarity"] == pytest.approx(1 - true, abs=1e-4)
    # Rows come best first; rank is their position.
    assert [r["rank"] for r in hybrid] == list(range(1, len(hybrid) + 1))
    assert [r["score"] for r in hybrid] == sorted((r["score"] for r in hybrid), reverse=True)
    # Dense rows carry no lexical score when the lexical list did not find them.
    dense = search(db, QUESTION, mode="dense")
    assert all(r["dense_rank"] is not None and r["lexical_score"] is None for r in dense)


def test_a_name_is_found_by_its_words(db):
    db.execute("SELECT ruvllm_ingest_many(%s::text[])", (tickets(),))
    note = scalar(db, "SELECT ruvllm_ingest('The May on-call rota was drawn up by Zbigniew Kowalczyk after the outage.')")
    for mode in ("lexical", "hybrid"):
        assert top(search(db, "Who is Kowalczyk?", mode=mode), 1) == [note], mode


def test_the_old_call_shapes_still_work(db):
    target = ingest_tickets(db)
    assert scalar(db, "SELECT count(*) FROM ruvllm_search(%s)", (QUESTION,)) >= 10
    assert scalar(db, "SELECT count(*) FROM ruvllm_search(%s, 3)", (QUESTION,)) >= 3
    by_position = db.execute("SELECT id, hop, rank FROM ruvllm_search(%s, 3, 0)", (QUESTION,)).fetchall()
    assert len(by_position) == 3 and target in [r[0] for r in by_position]
    # (q, k, hops) is hybrid with no filter.
    assert by_position == db.execute("SELECT id, hop, rank FROM ruvllm_search(%s, 3, 0, 'hybrid', '{}')",
                                     (QUESTION,)).fetchall()
    named = db.execute("SELECT id FROM ruvllm_search(%s, hops => 0, k => 3, mode => 'lexical')",
                       (QUESTION,)).fetchall()
    assert named[0][0] == target
    # The columns of 0.2.0 come first, in their order.
    cols = [c.name for c in db.execute("SELECT * FROM ruvllm_search('x', 1, 0)").description]
    assert cols[:9] == ["id", "content", "node_type", "source", "distance", "hop", "via_rel", "via_node",
                        "edge_weight"]


def test_bad_modes_and_filters_are_refused_with_a_hint(db):
    for sql, params in [("SELECT * FROM ruvllm_search('q', 3, 0, 'bm25')", None),
                        ("SELECT * FROM ruvllm_search('q', 3, 0, NULL)", None),
                        ("SELECT * FROM ruvllm_search('q', 3, 0, 'hybrid', %s::jsonb)", ('{"tenant": "globex"}',)),
                        ("SELECT * FROM ruvllm_search('q', 3, 0, 'hybrid', %s::jsonb)", ('{"since": "last week"}',)),
                        ("SELECT * FROM ruvllm_search('q', 3, 0, 'hybrid', %s::jsonb)", ('{"node_type": "Memo"}',)),
                        ("SELECT * FROM ruvllm_search('q', 3, 0, 'hybrid', %s::jsonb)", ('{"metadata": "x"}',))]:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            db.execute(sql, params)
        assert e.value.diag.message_hint, sql


def test_filters_hold_for_every_row_neighbours_included(db):
    # A conversation's turns with first-class metadata, and documents from two sources.
    said = ["The replication slot on the standby keeps WAL since Tuesday.",
            "Who owns WAL retention for the reporting replica? Alice does.",
            "Bob thinks the slot retention should be capped at fifty gigabytes.",
            "A stale replication slot filled the disk once last year.",
            "Retention of WAL for slots is watched by the nightly check now.",
            "We moved the replica, so its slot was dropped and made again.",
            "Nobody should drop a replication slot without asking the DBA on call.",
            "WAL kept for the analytics slot reached ten percent of the volume."]
    turns = [{"content": said[i], "node_type": "Fact", "source": f"chat/{'may' if i < 4 else 'june'}/{i}",
              "metadata": {"timestamp": f"2024-0{5 if i < 4 else 6}-0{i % 4 + 1}T10:00:00Z",
                           "speaker": "alice" if i % 2 else "bob"}} for i in range(8)]
    docs = [{"content": "Replication slots keep WAL until standbys consume it; drop unused slots.",
             "node_type": "Document", "source": "manual/slots.md"},
            {"content": "The WAL retention of a replication slot is capped by max_slot_wal_keep_size.",
             "node_type": "Document", "source": "manual/wal.md"}]
    db.execute("SELECT ruvllm_ingest_many(%s::jsonb)", (json.dumps(turns + docs),))
    q = "replication slot WAL retention"
    cases = [
        ({"since": "2024-06-01"}, lambda r: r["metadata"].get("timestamp", "9999") >= "2024-06-01"),
        ({"until": "2024-06-01"}, lambda r: r["metadata"].get("timestamp", "9999") < "2024-06-01"),
        ({"since": "2024-05-02", "until": "2024-05-04"},
         lambda r: "2024-05-02" <= r["metadata"]["timestamp"] < "2024-05-04"),
        ({"source": "manual/wal.md"}, lambda r: r["source"] == "manual/wal.md"),
        ({"source": {"prefix": "chat/may/"}}, lambda r: r["source"].startswith("chat/may/")),
        ({"node_type": "Document"}, lambda r: r["node_type"] == "Document"),
        ({"node_type": ["Fact"], "metadata": {"speaker": "alice"}},
         lambda r: r["node_type"] == "Fact" and r["metadata"]["speaker"] == "alice"),
    ]
    for flt, holds in cases:
        for mode in ("hybrid", "dense", "lexical"):
            rows = search(db, q, k=10, hops=2, mode=mode, filter=flt)
            assert rows, (flt, mode)
            assert all(holds(r) for r in rows), (flt, mode, [(r["source"], r["metadata"]) for r in rows])
    # A filter that leaves few nodes still gets them all (the HNSW scan goes on past the filter).
    assert len(search(db, q, k=4, mode="dense", filter={"metadata": {"speaker": "bob"}})) == 4
    # Nodes without a metadata timestamp are placed in time by when they were stored.
    assert {r["source"] for r in search(db, q, k=10, filter={"node_type": "Document", "since": "2000-01-01"})} \
        == {"manual/slots.md", "manual/wal.md"}
    assert search(db, q, k=10, filter={"node_type": "Document", "until": "2000-01-01"}) == []
    # The rows carry the metadata, and the prompt's fields by name.
    row = search(db, q, k=10, filter={"source": "chat/may/1"})[0]
    assert row["metadata"]["speaker"] == "alice" and row["metadata"]["timestamp"] == "2024-05-02T10:00:00+00:00"
    assert row["created_at"] is not None


def set_hops_in_one_statement(conn, on):
    """memory.HOPS_IN_ONE_STATEMENT in this session's backend (its Python is set up by a search)."""
    conn.execute("SELECT count(*) FROM ruvllm_search('warm up', 1, 0)")
    conn.execute(f"DO $$ from ruvllm import memory; memory.HOPS_IN_ONE_STATEMENT = {bool(on)} $$ LANGUAGE plpython3u")


def test_two_hops_in_one_statement_rank_as_one_statement_a_hop(db):
    target = ingest_tickets(db)
    ids = scalar(db, "SELECT array_agg(id ORDER BY content) FROM ruvllm.nodes")
    # A chain off the target and a second path to one of its nodes: hop-2 paths compete.
    for a, b, rel, w in ((target, ids[0], "Cites", 0.9), (ids[0], ids[1], "Derived", 0.8),
                         (ids[1], ids[2], "Cites", 0.7), (target, ids[2], "Derived", 0.2)):
        db.execute("SELECT ruvllm_link(%s, %s, %s, %s::real)", (a, b, rel, w))
    cases = [(q, k, hops, mode, flt) for q in (QUESTION, "the backup job fails when the disk is full")
             for k, hops in ((1, 2), (3, 2), (2, 3)) for mode in ("hybrid", "dense")
             for flt in (None, {"node_type": "Document"})]

    def runs():
        return [[(r["id"], r["hop"], r["via_rel"], r["via_node"], round(r["score"], 9), r["rank"])
                 for r in search(db, q, k, hops, mode, flt)] for q, k, hops, mode, flt in cases]
    set_hops_in_one_statement(db, False)
    per_hop = runs()
    set_hops_in_one_statement(db, True)
    assert runs() == per_hop
    assert any(row[1] == 2 for rows in per_hop for row in rows)   # hop 2 was reached


def test_filters_and_term_statistics_hold_within_tenants(db, pg):
    db.execute("SELECT ruvllm_create_tenant('acme'), ruvllm_create_tenant('globex')")
    app = login(db, pg, "app", "ruvllm_user")
    app.execute("SET ruvllm.tenant = 'globex'")
    secret = scalar(app, "SELECT ruvllm_ingest('Globex merger codename ZEPHYR-42 is led by alice.', 'Fact', "
                         "'board/minutes', '{\"speaker\": \"alice\"}')")
    app.execute("SET ruvllm.tenant = 'acme'")
    app.execute("SELECT ruvllm_ingest('Acme picnic is on Friday.', 'Fact', 'hr/notes', '{\"speaker\": \"bob\"}')")
    for flt in ({}, {"metadata": {"speaker": "alice"}}, {"source": {"prefix": "board/"}}, {"node_type": "Fact"},
                {"source": "board/minutes"}, {"since": "1970-01-01"}):
        for mode in ("hybrid", "dense", "lexical"):
            ids = [r["id"] for r in search(app, "ZEPHYR-42 merger codename", k=10, hops=2, mode=mode, filter=flt)]
            assert secret not in ids, (flt, mode)
    # Term statistics are the tenant's own, like the rest of memory.
    assert {r[0] for r in app.execute("SELECT DISTINCT tenant FROM ruvllm.lexical_stats")} == {"acme"}
    assert scalar(app, "SELECT count(*) FROM ruvllm.lexical_stats WHERE lexeme = 'zephyr'") == 0
    assert scalar(db, "SELECT sum(docs) FROM ruvllm.lexical_stats WHERE tenant = 'globex' AND lexeme = 'zephyr'") == 1
    app.execute("SET ruvllm.tenant = 'globex'")
    assert top(search(app, "ZEPHYR-42", mode="lexical"), 1) == [secret]


INJECTIONS = ["'a' & !b", "ERR-7731-XQ:*", "a:* | b", "'", "''", "\\", "\\'", "ERR-7731-XQ' | 'x", "!!! & | ( )",
              "<-> <2> ERR-7731-XQ", "'ERR-7731-XQ':A & xq:*B", "O'Reilly's \\\\server\\share", "(((", ")",
              "éèñ 漢字 ERR-7731-XQ", "x" * 3000 + " ERR-7731-XQ", " ".join(f"w{i}" for i in range(4000))]


@pytest.mark.parametrize("text", INJECTIONS, ids=range(len(INJECTIONS)))
def test_lexical_input_is_never_tsquery_syntax(db, text):
    target = ingest_tickets(db)
    for mode in ("lexical", "hybrid"):
        rows = search(db, text, k=3, mode=mode)   # no syntax error (42601), no error at all
        if "ERR-7731-XQ" in text:
            assert target in top(rows, 3), mode
    # No term of the question is parsed as an operator: "!b" is the word b, not "not b".
    scalar(db, "SELECT ruvllm_ingest('Plan b for the witness log.')")
    assert any("Plan b" in r["content"] for r in search(db, "'a' & !b", k=3, mode="lexical"))


def test_very_long_input_is_refused_clearly(db):
    ingest_tickets(db)
    assert len(search(db, "ERR-7731-XQ " * 8000, mode="lexical")) >= 1     # 96,000 characters
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        search(db, "x" * 100_001, mode="lexical")


def test_ingest_counts_terms_and_the_deep_loop_recounts_them(db):
    db.execute("SELECT ruvllm_ingest_many(%s::text[])", (tickets(),))
    db.execute("SELECT ruvllm_ingest(%s)", (TARGET,))
    counts = """SELECT lexeme, sum(docs)::int FROM ruvllm.lexical_stats
                 WHERE lexeme IN ('', 'error', 'xq') GROUP BY lexeme"""
    assert dict(db.execute(counts).fetchall()) == {"": 31, "error": 30, "xq": 1}
    assert scalar(db, "SELECT count(*) FROM ruvllm.lexical_stats WHERE lexeme = ''") == 2   # one row per ingest
    db.execute("SELECT ruvllm_run_loop('deep')")
    # One row per lexeme again, counting what memory holds after the loop (it may merge nodes).
    assert scalar(db, "SELECT count(*) FROM ruvllm.lexical_stats WHERE lexeme = ''") == 1
    assert dict(db.execute(counts).fetchall()) == {
        "": scalar(db, "SELECT count(*)::int FROM ruvllm.nodes"),
        "error": scalar(db, "SELECT count(*)::int FROM ruvllm.nodes WHERE lexemes @@ 'error'::tsquery"),
        "xq": 1}


def reference_bm25(db, question):
    """Each node's BM25 for the question and its coverage, computed here from the node's lexemes
    and the tenant's statistics with lexical.bm25: {id: (score, coverage)}, and the idf used."""
    terms = scalar(db, "SELECT tsvector_to_array(to_tsvector('english', %s))", (question,))
    df = dict(db.execute("SELECT lexeme, sum(docs)::float8 FROM ruvllm.lexical_stats WHERE lexeme = ANY(%s) "
                         "GROUP BY lexeme", (terms,)).fetchall())
    docs, total = db.execute("SELECT sum(docs)::float8, sum(lexemes)::float8 FROM ruvllm.lexical_stats "
                             "WHERE lexeme = ''").fetchone()
    idf = {t: lexical.idf(docs, df.get(t, 0)) for t in terms}
    out = {}
    for node, tf, length in db.execute("""
            SELECT n.id, jsonb_object_agg(u.lexeme, coalesce(cardinality(u.positions), 1)), length(n.lexemes)
              FROM ruvllm.nodes n, unnest(n.lexemes) u GROUP BY n.id"""):
        held = sum(w for t, w in idf.items() if t in tf)
        out[node] = (lexical.bm25(tf, length, idf, total / docs),
                     held / sum(idf.values()) if sum(idf.values()) > 0 else None)
    return out, idf, total / docs


@pytest.mark.parametrize("question", [QUESTION, "the disk is full when the backup job fails", "battery"])
def test_the_c_bm25_scorer_equals_the_python_reference(db, question):
    target = ingest_tickets(db)
    expected, idf, avgdl = reference_bm25(db, question)
    terms, weights = list(idf), list(idf.values())
    got = {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT id, ruvllm._bm25(lexemes, %s, %s, %s, 1.2, 0.75), ruvllm._term_coverage(lexemes, %s, %s) "
        "FROM ruvllm.nodes", (terms, weights, avgdl, terms, weights))}
    assert got.keys() == expected.keys()
    for node, (score, coverage) in expected.items():
        assert got[node][0] == pytest.approx(score, rel=1e-12, abs=1e-12), node
        assert got[node][1] == (None if coverage is None else pytest.approx(coverage, rel=1e-12)), node
    assert max(s for s, _c in expected.values()) > 0
    if question == QUESTION:
        assert max(expected, key=lambda n: expected[n][0]) == target
    # The search statement scores with it: its lexical hits carry the reference's scores.
    rows = search(db, question, k=10, mode="lexical")
    assert rows
    for r in rows:
        assert r["lexical_score"] == pytest.approx(expected[r["id"]][0], rel=1e-6)
    # Without positions (a stripped tsvector) every term occurs once.
    stripped = scalar(db, "SELECT ruvllm._bm25(strip(lexemes), %s, %s, %s, 1.2, 0.75) FROM ruvllm.nodes "
                          "WHERE id = %s", (terms, weights, avgdl, target))
    tf = {t: 1 for t in scalar(db, "SELECT tsvector_to_array(lexemes) FROM ruvllm.nodes WHERE id = %s", (target,))}
    length = scalar(db, "SELECT length(lexemes) FROM ruvllm.nodes WHERE id = %s", (target,))
    assert stripped == pytest.approx(lexical.bm25(tf, length, idf, avgdl), rel=1e-12)


def test_the_bm25_scorer_refuses_mismatched_terms(db):
    with pytest.raises(psycopg.errors.ArraySubscriptError):
        db.execute("SELECT ruvllm._bm25('a b'::tsvector, '{a,b}', '{1}', 1, 1.2, 0.75)")
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        db.execute("SELECT ruvllm._bm25('a b'::tsvector, '{a,NULL}', '{1,1}', 1, 1.2, 0.75)")
    # No terms: nothing to score, nothing covered.
    assert scalar(db, "SELECT ruvllm._bm25('a b'::tsvector, '{}', '{}', 1, 1.2, 0.75)") == 0
    assert scalar(db, "SELECT ruvllm._term_coverage('a b'::tsvector, '{}', '{}')") is None
    # A node with none of the question's terms covers none of it: 0, not "no terms to cover".
    assert scalar(db, "SELECT ruvllm._term_coverage('a b'::tsvector, '{c}', '{2.5}')") == 0
    assert scalar(db, "SELECT ruvllm._term_coverage('a b'::tsvector, '{b,c}', '{1,3}')") == 0.25


def test_the_query_vector_travels_in_binary_form(db):
    assert scalar(db, "SELECT ruvllm._vector_recv(vector_send('[1,-2.5,3e-8]')) = '[1,-2.5,3e-8]'::vector")
    # vector_recv's own checks hold, and the bytes must be one vector exactly.
    with pytest.raises(psycopg.errors.DataException):
        db.execute("SELECT ruvllm._vector_recv('\\x000100007fc00000'::bytea)")      # NaN
    with pytest.raises(psycopg.errors.InvalidBinaryRepresentation):
        db.execute("SELECT ruvllm._vector_recv(vector_send('[1,2]') || '\\x00'::bytea)")
    with pytest.raises(psycopg.Error):
        db.execute("SELECT ruvllm._vector_recv('\\x0002'::bytea)")                   # cut short


def test_ruvllm_query_retrieves_hybrid(db):
    target = ingest_tickets(db)
    db.execute("SET ruvllm.query_k = 3")
    db.execute("SET ruvllm.answer_style = documents")   # sources: every retrieved node that fits
    assert target not in top(search(db, QUESTION, mode="dense"), 3)
    answer = ask(db, QUESTION, constraints={"max_tokens": 8})
    assert str(target) in [s["id"] for s in answer["sources"]]
    source = next(s for s in answer["sources"] if s["id"] == str(target))
    true = scalar(db, "SELECT embedding <=> ruvllm_embed(%s) FROM ruvllm.nodes WHERE id = %s", (QUESTION, target))
    assert source["distance"] == pytest.approx(true, abs=1e-4)
