#!/usr/bin/env python3
"""bench/memory: ingestion, embedding, HNSW search, recall and graph expansion of ruvllm memory.

    make bench-memory                            # 10K and 100K nodes: ~5-6 min on 2 quiet cores
    RUVLLM_BENCH_SCALE=small make bench-memory   # 2K and 10K nodes, a smoke run of ~1 min
    RUVLLM_BENCH_SCALE=full make bench-memory    # + the 100K builds of random vectors and with
                                                 #   stock settings: ~22 min

`make bench-memory` runs this inside the ruvllm root as the postgres user. It starts its own
throwaway PostgreSQL 17 (socket only, in a temp dir), measures, and prints one markdown report; at
default and full scale bench/run.sh then records it in bench/RESULTS.md (`--record`), each
scale in its own section.

All percentiles that are compared come from this one run, measured interleaved (query i runs on
every configuration before query i+1), so load from other processes on the machine hits each
configuration alike.
"""
import datetime
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for common.py
from common import Server, cli, log, machine, make_up_settings, print_report  # noqa: E402

import corpus  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DIM = 384
K = 10
HOPS = 2
SECTION = "## bench/memory"
# ruvllm.embedder's values, the default first (measured side by side).
EMBEDDERS = ("llama", "numpy")

SCALES = {
    "small": dict(sizes=(2_000, 10_000), ingest=200, extra_bases=400, queries=100, reps=1,
                  e2e=20, embed=50, stock_build=True, random_max=10_000),
    "default": dict(sizes=(10_000, 100_000), ingest=2_000, extra_bases=2_000, queries=200, reps=2,
                    e2e=30, embed=200, stock_build=False, random_max=10_000),
}
# Two 100K builds take 5-12 min each on 2 shared cores, too long for the default run: uniform
# random vectors, and the real-like ones under stock settings. Only on request.
SCALES["full"] = dict(SCALES["default"], stock_build=True, random_max=100_000)
EF_SWEEP = (32, 64, 128, 256)

# --- timing helpers -----------------------------------------------------------------------------

def pct(ms, q):
    return float(np.percentile(ms, q)) if len(ms) else float("nan")


def interleaved(jobs, n, reps=1):
    """jobs: {name: fn(i)}; runs fn(i) for every job before moving to i+1, rotating which job goes
    first. Returns ({name: [ms]}, {name: [result of the last rep per i]})."""
    names = list(jobs)
    times = {name: [] for name in names}
    results = {name: [None] * n for name in names}
    for rep in range(reps):
        for i in range(n):
            shift = (i + rep) % len(names)
            for name in names[shift:] + names[:shift]:
                t0 = time.perf_counter()
                out = jobs[name](i)
                times[name].append((time.perf_counter() - t0) * 1000)
                results[name][i] = out
    return times, results


def rss_of(pid):
    """(RssAnon, RssFile) of a process in MiB."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            got[key] = int(rest.split()[0]) / 1024
    return got["RssAnon"], got["RssFile"]


def literal(v):
    return "[" + ",".join("%.8g" % x for x in v) + "]"


def vector_bytes(vectors):
    """pgvector's binary send format, one bytes object per row (for COPY ... FORMAT BINARY)."""
    head = struct.pack(">HH", vectors.shape[1], 0)
    body = np.ascontiguousarray(vectors, dtype=">f4")
    return [head + row.tobytes() for row in body]


# --- SQL ----------------------------------------------------------------------------------------

# The seed query of memory.search_vector, per configuration; `{table}` and the distance expression
# come from the fixed CONFIGS below, never from data.
SEARCH_SQL = """
    SELECT id, graph_id::text AS gid, content, node_type, source, {dist} AS distance
      FROM {table}
     WHERE tenant = %(tenant)s
     ORDER BY {dist}
     LIMIT %(k)s"""
CONFIGS = {
    "real-like vector": dict(table="ruvllm.nodes",
                             dist="embedding OPERATOR(public.<=>) %(q)s::public.vector",
                             index="nodes_embedding_hnsw", queries="real"),
    "real-like halfvec": dict(table="ruvllm.nodes",
                              dist="(embedding::public.halfvec(384)) OPERATOR(public.<=>) "
                                   "%(q)s::public.halfvec(384)",
                              index="bench_nodes_halfvec_hnsw", queries="real"),
    "random vector": dict(table="bench.random_nodes",
                          dist="embedding OPERATOR(public.<=>) %(q)s::public.vector",
                          index="bench_random_hnsw", queries="random"),
}

# memory.search_vector's graph walk, statement for statement (the in-backend numbers run the real
# code; this copy times the expansion alone).
HOP_SQL = """
    SELECT e.start_id::text AS a, e.end_id::text AS b, c.relname AS rel,
           ag_catalog.agtype_out(e.properties)::text AS props
      FROM ruvllm_graph._ag_label_edge e JOIN pg_catalog.pg_class c ON c.oid = e.tableoid
     WHERE e.start_id OPERATOR(ag_catalog.=) ANY(%(f)s::text[]::ag_catalog.graphid[])
    UNION ALL
    SELECT e.end_id::text, e.start_id::text, c.relname, ag_catalog.agtype_out(e.properties)::text
      FROM ruvllm_graph._ag_label_edge e JOIN pg_catalog.pg_class c ON c.oid = e.tableoid
     WHERE e.end_id OPERATOR(ag_catalog.=) ANY(%(f)s::text[]::ag_catalog.graphid[])"""
FETCH_SQL = """
    SELECT id, graph_id::text AS gid, content, node_type, source,
           embedding OPERATOR(public.<=>) %(q)s::public.vector AS distance
      FROM ruvllm.nodes
     WHERE graph_id OPERATOR(ag_catalog.=) ANY(%(g)s::text[]::ag_catalog.graphid[]) AND tenant = %(tenant)s"""
MAX_EXPANDED = 200

SETUP_SQL = """
CREATE SCHEMA bench;
CREATE TABLE bench.bases (base int PRIMARY KEY, content text NOT NULL);
CREATE TABLE bench.stage (seq int PRIMARY KEY, base int NOT NULL,
                          embedding vector(384) NOT NULL, random_embedding vector(384) NOT NULL);
CREATE TABLE bench.node_seq (seq int PRIMARY KEY, id uuid NOT NULL,
                             graph_id ag_catalog.graphid NOT NULL);
CREATE TABLE bench.edge_stage (src int NOT NULL, dst int NOT NULL, weight real NOT NULL);
CREATE TABLE bench.random_nodes (LIKE ruvllm.nodes INCLUDING DEFAULTS);
CREATE INDEX ON bench.random_nodes (tenant);
-- memory.search_vector itself, without embedding the query: "search + expansion" as the backend
-- runs it.
CREATE FUNCTION bench.search_vector(q text, k int, hops int) RETURNS int
LANGUAGE plpython3u SET search_path = pg_catalog, pg_temp AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import memory, sqlglue
return len(memory.search_vector(plpy, sqlglue.parse_vector(q), k, hops))
$$;
"""

# The same statement shape as memory.ingest_many's insert: vertex and node in one statement.
LOAD_NODES_SQL = """
    WITH input AS MATERIALIZED (
        SELECT s.seq, pg_catalog.gen_random_uuid() AS id, s.embedding, b.content,
               ag_catalog._graphid(ag_catalog._label_id('ruvllm_graph', 'Node'),
                                   pg_catalog.nextval('ruvllm_graph."Node_id_seq"')) AS gid
          FROM bench.stage s JOIN bench.bases b ON b.base = s.base
         WHERE s.seq >= %(lo)s AND s.seq < %(hi)s
    ), vertices AS (
        INSERT INTO ruvllm_graph."Node" (id, properties)
        SELECT gid, pg_catalog.jsonb_build_object('node_id', id)::text::ag_catalog.agtype FROM input
    ), seqs AS (
        INSERT INTO bench.node_seq (seq, id, graph_id) SELECT seq, id, gid FROM input
    )
    INSERT INTO ruvllm.nodes (id, embedding, content, node_type, source, tenant, metadata,
                              graph_id, minhash_bands)
    SELECT id, embedding, content, 'Document', 'bench/memory', '', '{"version": 1}', gid, '{}'
      FROM input"""
LOAD_RANDOM_SQL = """
    INSERT INTO bench.random_nodes
    SELECT n.id, s.random_embedding, n.content, n.node_type, n.source, n.tenant, n.metadata,
           n.graph_id, n.minhash_bands, n.created_at, n.last_accessed
      FROM bench.stage s JOIN bench.node_seq q USING (seq) JOIN ruvllm.nodes n ON n.id = q.id
     WHERE s.seq >= %(lo)s AND s.seq < %(hi)s"""
LOAD_EDGES_SQL = """
    INSERT INTO ruvllm_graph."SameTopic" (start_id, end_id, properties)
    SELECT s.graph_id, d.graph_id,
           pg_catalog.jsonb_build_object('weight', e.weight, 'confidence', 1.0,
               'created_by', 'bench', 'created_at', pg_catalog.now())::text::ag_catalog.agtype
      FROM bench.edge_stage e
      JOIN bench.node_seq s ON s.seq = e.src
      JOIN bench.node_seq d ON d.seq = e.dst"""


# --- the benchmark ------------------------------------------------------------------------------

class Bench:
    def __init__(self, scale):
        self.scale_name = scale
        self.cfg = SCALES[scale]
        self.sized = make_up_settings()
        self.out = {}          # numbers for the report
        self.levers = []       # rows of the levers table
        self.sweep = []        # rows of the ef_search table
        self.notes = []

    # -- ingest and embed, in a database of its own ---------------------------------------------

    def ingest_and_embed(self, server):
        cfg = self.cfg
        texts = corpus.documents(cfg["ingest"] + cfg["extra_bases"], seed=1)
        ingest_docs = texts[:cfg["ingest"]]
        extra = texts[cfg["ingest"]:]
        quest = corpus.questions(cfg["queries"], seed=2, exclude=[t for t, _ in texts])

        admin = server.connect("postgres")
        admin.execute("CREATE DATABASE ingest")
        conn = server.connect("ingest")
        conn.execute("CREATE EXTENSION ruvllm CASCADE")
        # Loads the model into this backend, so the first batch is not charged for it.
        conn.execute("SELECT ruvllm_embed('warm up')")

        log(f"ingest {len(ingest_docs)} documents with ruvllm_ingest_many")
        batch = 500
        t0 = time.perf_counter()
        for start in range(0, len(ingest_docs), batch):
            conn.execute("SELECT ruvllm_ingest_many(%s::text[])",
                         [[t for t, _ in ingest_docs[start:start + batch]]])
        secs = time.perf_counter() - t0
        nodes = conn.execute("SELECT count(*) FROM ruvllm.nodes").fetchone()[0]
        edges = conn.execute("SELECT count(*) FROM ruvllm_graph._ag_label_edge").fetchone()[0]
        self.out["ingest"] = dict(docs=len(ingest_docs), secs=secs, rate=len(ingest_docs) / secs,
                                  nodes=nodes, edges=edges, batch=batch)

        log(f"embed p50: {cfg['embed']} short queries, one statement each, per embedder")
        qtexts = [t for t, _ in quest]
        # One connection per ruvllm.embedder, interleaved query by query; the default (llama) is
        # `conn`, which ingested above.
        others = {}
        for kind in EMBEDDERS[1:]:
            others[kind] = server.connect("ingest")
            others[kind].execute(f"SET ruvllm.embedder = {kind}")
        conns = {EMBEDDERS[0]: conn, **others}
        for c in conns.values():
            for t in qtexts[:10]:
                c.execute("SELECT ruvllm_embed(%s::text)", [t], prepare=True).fetchone()
        times, _ = interleaved({kind: (lambda i, c=c: c.execute(
            "SELECT ruvllm_embed(%s::text)", [qtexts[i % len(qtexts)]], prepare=True).fetchone())
            for kind, c in conns.items()}, cfg["embed"])
        self.out["embed"] = times[EMBEDDERS[0]]
        self.out["embedders"] = {kind: dict(p50=pct(times[kind], 50), p99=pct(times[kind], 99))
                                 for kind in conns}
        # Agreement with sentence-transformers' vectors (the unit tests' references), and docs/s of
        # ruvllm_embed(text[]) over the ingest's documents, each embedder in turn, best of two.
        ref = json.loads((REPO / "tests/fixtures/minilm_reference.json").read_text())
        refv = np.array([c_["vector"] for c_ in ref["cases"]], dtype=np.float64)
        refv /= np.linalg.norm(refv, axis=1, keepdims=True)
        doc_texts = [t for t, _ in ingest_docs[:500]]
        for kind, c in conns.items():
            got = np.array([r[0] for r in c.execute(
                "SELECT e::real[] FROM unnest(ruvllm_embed(%s::text[])) WITH ORDINALITY AS u(e, n) "
                "ORDER BY n", [[c_["text"] for c_ in ref["cases"]]])], dtype=np.float64)
            got /= np.linalg.norm(got, axis=1, keepdims=True)
            self.out["embedders"][kind]["min_cosine"] = float(np.einsum("ij,ij->i", got, refv).min())
        for _round in range(2):
            for kind, c in conns.items():
                t0 = time.perf_counter()
                c.execute("SELECT cardinality(ruvllm_embed(%s::text[]))", [doc_texts]).fetchone()
                rate = len(doc_texts) / (time.perf_counter() - t0)
                e = self.out["embedders"][kind]
                e["docs_per_s"] = max(e.get("docs_per_s", 0.0), rate)
        self.out["embedders_docs"] = len(doc_texts)
        for c in others.values():
            c.close()
        # What one query's embedding adds to a fresh backend's memory, per embedder: private
        # (RssAnon) and mapped model file pages (RssFile, shared by every backend that maps them),
        # after the Python set-up (ruvllm_info) so that only the embedder is charged.
        for kind in conns:
            c = server.connect("ingest")
            c.execute(f"SET ruvllm.embedder = {kind}")
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            c.execute("SELECT ruvllm_info()").fetchone()
            before = rss_of(pid)
            c.execute("SELECT ruvllm_embed('how do I make the nightly backup job faster')").fetchone()
            after = rss_of(pid)
            self.out["embedders"][kind]["rss_anon"] = after[0] - before[0]
            self.out["embedders"][kind]["rss_file"] = after[1] - before[1]
            c.close()
        self.out["embed_query_words"] = float(np.mean([len(t.split()) for t in qtexts]))

        # The corpus bases: what ingestion stored (so the real pipeline made them), plus more texts
        # embedded in one batched call; then the held-out questions used as queries.
        topic_of = {t: ti for t, ti in ingest_docs}
        base_texts, base_topics, base_vecs = [], [], []
        for content, vec in conn.execute("SELECT content, embedding::real[] FROM ruvllm.nodes ORDER BY id"):
            if content in topic_of:
                base_texts.append(content)
                base_topics.append(topic_of[content])
                base_vecs.append(vec)
        log(f"embed {len(extra) + len(quest)} more texts (corpus bases and queries)")
        t0 = time.perf_counter()
        embedded = [row[0] for row in conn.execute(
            "SELECT e::real[] FROM unnest(ruvllm_embed(%s::text[])) WITH ORDINALITY AS u(e, n) ORDER BY n",
            [[t for t, _ in extra] + qtexts])]
        self.out["batch_embed_ms"] = (time.perf_counter() - t0) * 1000 / len(embedded)
        base_texts += [t for t, _ in extra]
        base_topics += [ti for _, ti in extra]
        base_vecs += embedded[:len(extra)]
        self.bases = np.array(base_vecs, dtype=np.float32)
        self.base_texts = base_texts
        self.base_topics = np.array(base_topics)
        self.queries_real = np.array(embedded[len(extra):], dtype=np.float32)
        self.query_texts = qtexts
        conn.close()
        admin.execute("DROP DATABASE ingest")
        admin.close()

    # -- the corpus ---------------------------------------------------------------------------

    def make_corpus(self):
        n = self.cfg["sizes"][-1]
        log(f"make {n} real-like and {n} uniform random vectors, and SameTopic-like edges")
        self.vectors, self.base_of = corpus.real_like(self.bases, self.base_topics, n, seed=3)
        self.random = corpus.uniform_random(n, DIM, seed=4)
        self.queries_random = corpus.uniform_random(len(self.queries_real), DIM, seed=5)
        self.topic_of_node = self.base_topics[self.base_of]
        # Similarity profile, to show how "real-like" relates to real and to random.
        prof = {}
        for name, q, data in (("real (bases)", self.queries_real, self.bases),
                              ("real-like", self.queries_real, self.vectors),
                              ("random", self.queries_random, self.random[:self.cfg["random_max"]])):
            sims = np.sort(q @ data.T, axis=1)[:, ::-1]
            prof[name] = (len(data), float(np.median(sims[:, 0])), float(np.median(sims[:, K - 1])),
                          float(np.median(sims[:, 100])) if sims.shape[1] > 100 else float("nan"))
        self.out["profile"] = prof
        self.out["variant_to_base"] = float(np.median(
            np.einsum("ij,ij->i", self.vectors, self.bases[self.base_of])))
        order = np.argsort(self.base_of, kind="stable")
        pairs = np.flatnonzero(self.base_of[order][1:] == self.base_of[order][:-1])
        cos = np.einsum("ij,ij->i", self.vectors[order[pairs]], self.vectors[order[pairs + 1]])
        self.out["variant_pairs"] = (float(np.median(cos)), float(np.mean(cos >= 0.95)))

    def setup_db(self, server):
        admin = server.connect("postgres")
        admin.execute("CREATE DATABASE bench")
        admin.close()
        conn = server.connect("bench")
        conn.execute("CREATE EXTENSION ruvllm CASCADE")
        conn.execute(SETUP_SQL)
        self.vector_indexdef = conn.execute(
            "SELECT pg_get_indexdef('ruvllm.nodes_embedding_hnsw'::regclass)").fetchone()[0]
        self.index_with = re.search(r"WITH \((.*)\)\s*$", self.vector_indexdef).group(1)
        # Built after each bulk load instead: 100K single inserts into HNSW cost far more than a build.
        conn.execute("DROP INDEX ruvllm.nodes_embedding_hnsw")
        with conn.cursor() as cur:
            with cur.copy("COPY bench.bases (base, content) FROM STDIN") as copy:
                for i, t in enumerate(self.base_texts):
                    copy.write_row((i, t))
            with cur.copy("COPY bench.stage (seq, base, embedding, random_embedding) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                # bytea's binary form is the raw bytes, which vector_recv reads as a vector.
                copy.set_types(["int4", "int4", "bytea", "bytea"])
                for i, (b, e, r) in enumerate(zip(self.base_of.tolist(), vector_bytes(self.vectors),
                                                  vector_bytes(self.random))):
                    copy.write_row((i, b, e, r))
        return conn

    def load(self, conn, lo, hi):
        t0 = time.perf_counter()
        conn.execute(LOAD_NODES_SQL, {"lo": lo, "hi": hi})
        if lo < self.cfg["random_max"]:
            conn.execute(LOAD_RANDOM_SQL, {"lo": lo, "hi": min(hi, self.cfg["random_max"])})
        src, dst, w = corpus.same_topic_edges(self.vectors, self.topic_of_node, lo, hi)
        conn.execute("TRUNCATE bench.edge_stage")
        with conn.cursor() as cur:
            with cur.copy("COPY bench.edge_stage (src, dst, weight) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "int4", "float4"])
                for row in zip(src.tolist(), dst.tolist(), w.tolist()):
                    copy.write_row(row)
        conn.execute(LOAD_EDGES_SQL)
        conn.execute("VACUUM ANALYZE ruvllm.nodes")
        conn.execute("VACUUM ANALYZE bench.random_nodes")
        conn.execute("ANALYZE ruvllm_graph.\"SameTopic\"")
        conn.execute("ANALYZE ruvllm_graph.\"Node\"")
        return time.perf_counter() - t0

    def build(self, conn, name, sql):
        t0 = time.perf_counter()
        conn.execute(sql)
        secs = time.perf_counter() - t0
        size = conn.execute("SELECT pg_relation_size(%s::regclass)", [name]).fetchone()[0]
        return secs, size

    def build_indexes(self, conn):
        builds = {}
        builds["real-like vector"] = self.build(conn, "ruvllm.nodes_embedding_hnsw", self.vector_indexdef)
        builds["real-like halfvec"] = self.build(
            conn, "ruvllm.bench_nodes_halfvec_hnsw",
            "CREATE INDEX bench_nodes_halfvec_hnsw ON ruvllm.nodes USING hnsw "
            f"((embedding::halfvec(384)) halfvec_cosine_ops) WITH ({self.index_with})")
        if self.n > self.cfg["random_max"]:
            return builds
        builds["random vector"] = self.build(
            conn, "bench.bench_random_hnsw",
            "CREATE INDEX bench_random_hnsw ON bench.random_nodes USING hnsw "
            f"(embedding vector_cosine_ops) WITH ({self.index_with})")
        return builds

    # -- search ---------------------------------------------------------------------------------

    def configs(self):
        """The configurations measured at the current size (random vectors up to random_max)."""
        return {name: c for name, c in CONFIGS.items()
                if c["queries"] != "random" or self.n <= self.cfg["random_max"]}

    def query_params(self):
        return {"real": [literal(q) for q in self.queries_real],
                "random": [literal(q) for q in self.queries_random]}

    def truth(self, server, params):
        """Exact top-K of each query: the same statement with index scans off (a full scan)."""
        conn = server.connect("bench", "-c enable_indexscan=off -c enable_bitmapscan=off")
        out = {}
        kinds = {c["queries"]: c["table"] for c in self.configs().values()}
        for kind, table in kinds.items():
            sql = SEARCH_SQL.format(table=table, dist="embedding OPERATOR(public.<=>) %(q)s::public.vector")
            plan = str(conn.execute("EXPLAIN " + sql, {"q": params[kind][0], "tenant": "", "k": K}).fetchall())
            assert "hnsw" not in plan, plan
            out[kind] = [{r[0] for r in conn.execute(sql, {"q": q, "tenant": "", "k": K}, prepare=True)}
                         for q in params[kind]]
        conn.close()
        return out

    def search_conn(self, server, ef):
        return server.connect("bench", f"-c hnsw.ef_search={ef} -c hnsw.iterative_scan=relaxed_order")

    def check_plans(self, conn, params, quiet=False):
        """Names of the configurations whose search is not an index scan."""
        full = set()
        for name, c in self.configs().items():
            sql = SEARCH_SQL.format(table=c["table"], dist=c["dist"])
            plan = str(conn.execute("EXPLAIN " + sql,
                                    {"q": params[c["queries"]][0], "tenant": "", "k": K}).fetchall())
            if c["index"] not in plan:
                full.add(name)
                if quiet:
                    continue
                # pgvector's cost model prefers a full scan on small tables; that is what the
                # product would run too, so it is measured, and said.
                note = (f"At {self.n // 1000}K nodes the planner chose a full scan, not "
                        f"{c['index']}, for {name} ({self.settings_name} settings).")
                log(note)
                if note not in self.notes:
                    self.notes.append(note)
        return full

    def search_jobs(self, conn, params):
        jobs = {}
        for name, c in self.configs().items():
            sql = SEARCH_SQL.format(table=c["table"], dist=c["dist"])
            qs = params[c["queries"]]
            jobs[name] = (lambda sql, qs: lambda i: conn.execute(
                sql, {"q": qs[i], "tenant": "", "k": K}, prepare=True).fetchall())(sql, qs)
        return jobs

    def measure_search(self, conn, params, truth, reps, warm=True):
        n = len(params["real"])
        jobs = self.search_jobs(conn, params)
        if warm:
            interleaved(jobs, n, 1)
        times, results = interleaved(jobs, n, reps)
        out = {}
        for name, c in self.configs().items():
            exact = truth[c["queries"]]
            recall = np.mean([len({r[0] for r in rows} & exact[i]) / K
                              for i, rows in enumerate(results[name])])
            out[name] = dict(p50=pct(times[name], 50), p99=pct(times[name], 99), recall=float(recall),
                             rows=results[name])
        return out

    def sweep_ef(self, server, params, truth):
        for ef in EF_SWEEP:
            conn = self.search_conn(server, ef)
            full = self.check_plans(conn, params, quiet=True)
            res = self.measure_search(conn, params, truth, 1)
            self.sweep.append((ef, {name: (r["p50"], r["recall"], name in full)
                                    for name, r in res.items()}))
            conn.close()

    # -- expansion and end to end -------------------------------------------------------------

    def expand(self, conn, q, seeds):
        """memory.search_vector's walk from the seeds; returns the number of nodes reached."""
        by_gid = {r[1] for r in seeds}
        frontier = list(by_gid)
        for _hop in range(HOPS):
            if not frontier or len(by_gid) >= MAX_EXPANDED:
                break
            reached = {}
            for a, b, _rel, _props in conn.execute(HOP_SQL, {"f": frontier}, prepare=True):
                if b not in by_gid and b not in reached:
                    reached[b] = a
            if not reached:
                break
            rows = conn.execute(FETCH_SQL, {"q": q, "g": list(reached), "tenant": ""},
                                prepare=True).fetchall()
            rows = sorted(rows, key=lambda r: r[5])[:MAX_EXPANDED - len(by_gid)]
            frontier = [r[1] for r in rows]
            by_gid.update(frontier)
        return len(by_gid)

    def measure_graph(self, server, params, seeds, n):
        ef = self.ef
        walk = self.search_conn(server, ef)
        ro = server.connect("bench", "-c default_transaction_read_only=on")
        rw = server.connect("bench")
        e2e = server.connect("bench")
        for c in (ro, rw, e2e):  # model and package loaded before timing
            c.execute("SELECT ruvllm_embed('warm up')")
            c.execute("SELECT bench.search_vector(%s, %s, 0)", [params["real"][0], K])
        qs = params["real"]
        texts = self.query_texts
        jobs = {
            "expand": lambda i: self.expand(walk, qs[i], seeds[i]),
            "search+2hop ro": lambda i: ro.execute("SELECT bench.search_vector(%s, %s, %s)",
                                                   [qs[i], K, HOPS], prepare=True).fetchone()[0],
            "search ro": lambda i: ro.execute("SELECT bench.search_vector(%s, %s, 0)",
                                              [qs[i], K], prepare=True).fetchone()[0],
            "search+2hop rw": lambda i: rw.execute("SELECT bench.search_vector(%s, %s, %s)",
                                                   [qs[i], K, HOPS], prepare=True).fetchone()[0],
            "ruvllm_search": lambda i: e2e.execute("SELECT count(*) FROM ruvllm_search(%s, %s, %s)",
                                                   [texts[i], K, HOPS], prepare=True).fetchone()[0],
        }
        # Warm the walk's pages (the searches are warm already).
        for i in range(min(n, 20)):
            self.expand(walk, qs[i], seeds[i])
        times, results = interleaved(jobs, n)
        for c in (walk, ro, rw, e2e):
            c.close()
        return {name: dict(p50=pct(t, 50), p99=pct(t, 99), rows=float(np.mean(results[name])))
                for name, t in times.items()}

    # -- the run ------------------------------------------------------------------------------

    def run(self):
        t_start = time.time()
        self.load_before = os.getloadavg()
        work = tempfile.mkdtemp(prefix="ruvllm-bench-memory-")
        server = Server(work, name="bench/memory")
        try:
            server.start(self.sized)
            self.versions = self.server_versions(server)
            self.ingest_and_embed(server)
            self.make_corpus()
            conn = self.setup_db(server)
            self.ef = max(int(conn.execute("SHOW ruvllm.ef_search").fetchone()[0]), K)
            params = self.query_params()
            lo = 0
            self.scales = {}
            self.settings_name = "sized"
            for n in self.cfg["sizes"]:
                self.n = n
                log(f"load nodes {lo}..{n} with vertices and edges")
                load_s = self.load(conn, lo, n)
                edges = conn.execute("SELECT count(*) FROM ruvllm_graph.\"SameTopic\"").fetchone()[0]
                log(f"{n} nodes, {edges} edges: build the HNSW indexes")
                builds = self.build_indexes(conn)
                tables_mb = conn.execute(
                    "SELECT pg_total_relation_size('ruvllm.nodes') - pg_indexes_size('ruvllm.nodes')"
                ).fetchone()[0] / 2**20
                log(f"exact top-{K} of {len(params['real'])} queries (full scans)")
                truth = self.truth(server, params)
                log("search: " + ", ".join(self.configs()) + ", interleaved")
                sconn = self.search_conn(server, self.ef)
                self.check_plans(sconn, params)
                search = self.measure_search(sconn, params, truth, self.cfg["reps"])
                sconn.close()
                for name, r in search.items():
                    secs, size = builds[name]
                    self.levers.append((name, "sized", n, secs, size, r["p50"], r["p99"], r["recall"]))
                last = n == self.cfg["sizes"][-1]
                if last:
                    log("ef_search sweep")
                    self.sweep_ef(server, params, truth)
                    self.stock_phase(server, conn, params, truth, n)
                    conn = server.connect("bench")
                # The halfvec index is the bench's; searches through the product run without it.
                conn.execute("DROP INDEX ruvllm.bench_nodes_halfvec_hnsw")
                log("2-hop expansion and end-to-end search")
                seeds = search["real-like vector"]["rows"]
                graph, writes = self.with_write_stats(
                    conn, lambda: self.measure_graph(server, params, seeds, self.cfg["e2e"]))
                graph["writes"] = writes
                self.scales[n] = dict(load_s=load_s, edges=edges, builds=builds, search=search,
                                      graph=graph, table_mb=tables_mb)
                if not last:
                    # Rebuilt after the next load.
                    conn.execute("DROP INDEX ruvllm.nodes_embedding_hnsw")
                    conn.execute("DROP INDEX IF EXISTS bench.bench_random_hnsw")
                lo = n
            conn.close()
        finally:
            try:
                server.stop()
            finally:
                shutil.rmtree(work, ignore_errors=True)
        self.load_after = os.getloadavg()
        self.total_s = time.time() - t_start

    def with_write_stats(self, conn, fn):
        """fn(), and what its searches wrote: rows inserted into, updated in and HOT-updated in
        ruvllm.node_access, and rows updated in ruvllm.nodes."""
        before = self.write_stats(conn)
        out = fn()
        time.sleep(1)  # backends flush their statistics when they exit
        after = self.write_stats(conn)
        return out, {k: after[k] - before[k] for k in before}

    def write_stats(self, conn):
        conn.execute("SELECT pg_stat_clear_snapshot()")
        ins, upd, hot = conn.execute(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relid = 'ruvllm.node_access'::regclass").fetchone()
        nodes_upd = conn.execute("SELECT n_tup_upd FROM pg_stat_user_tables "
                                 "WHERE relid = 'ruvllm.nodes'::regclass").fetchone()[0]
        return dict(ins=ins, upd=upd, hot=hot, nodes_upd=nodes_upd)

    def stock_phase(self, server, conn, params, truth, n):
        """Stock PostgreSQL settings: the index build, then searches through the sized build."""
        conn.close()
        log("restart with stock settings" + ("; build the vector index again there"
                                             if self.cfg["stock_build"] else ""))
        server.restart({})
        conn = server.connect("bench")
        secs = size = None
        if self.cfg["stock_build"]:
            secs, size = self.build(
                conn, "ruvllm.bench_stock_build",
                "CREATE INDEX bench_stock_build ON ruvllm.nodes USING hnsw "
                f"(embedding vector_cosine_ops) WITH ({self.index_with})")
            conn.execute("DROP INDEX ruvllm.bench_stock_build")
        self.stock_settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                               for name in ("shared_buffers", "maintenance_work_mem",
                                            "max_parallel_maintenance_workers",
                                            "effective_cache_size")}
        conn.close()
        log("search with stock settings")
        self.settings_name = "stock"
        sconn = self.search_conn(server, self.ef)
        self.check_plans(sconn, params)
        res = self.measure_search(sconn, params, truth, self.cfg["reps"])
        sconn.close()
        sized = {row[0]: row for row in self.levers if row[2] == n and row[1] == "sized"}
        for name, r in res.items():
            b_secs, b_size = (secs, size) if name == "real-like vector" and secs else (None, sized[name][4])
            self.levers.append((name, "stock", n, b_secs, b_size, r["p50"], r["p99"], r["recall"]))
        # The sized numbers again, right after: load from other jobs changes over a run, and the
        # stock rows should be read against neighbours in time.
        server.restart(self.sized)
        self.settings_name = "sized"
        log("search with sized settings again")
        sconn = self.search_conn(server, self.ef)
        res = self.measure_search(sconn, params, truth, self.cfg["reps"])
        sconn.close()
        for name, r in res.items():
            self.levers.append((name, "sized, again", n, None, sized[name][4], r["p50"], r["p99"],
                                r["recall"]))

    def server_versions(self, server):
        conn = server.connect("postgres")
        out = {"postgres": conn.execute("SHOW server_version").fetchone()[0]}
        for ext in ("vector", "age"):
            row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = %s",
                               [ext]).fetchone()
            out[ext] = row[0] if row else "?"
        self.sized_shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in self.sized}
        conn.close()
        return out

    # -- the report -----------------------------------------------------------------------------

    def report(self):
        o, sizes = self.out, self.cfg["sizes"]
        cpu, cores, mem_gib, system = machine()
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        ms = lambda v: f"{v:.1f}" if v >= 10 else f"{v:.2f}"
        L = []
        # A full run keeps its own section, so the default run's table stays beside it.
        L.append(SECTION if self.scale_name != "full" else SECTION + ", full scale")
        L.append("")
        scale_env = "" if self.scale_name == "default" else f"RUVLLM_BENCH_SCALE={self.scale_name} "
        L.append(f"`{scale_env}make bench-memory`, {now}: {cpu}, {cores} cores, "
                 f"{mem_gib:.0f} GiB, {system}; PostgreSQL "
                 f"{self.versions['postgres']}, pgvector {self.versions['vector']}, AGE "
                 f"{self.versions['age']}. Load average {self.load_before[0]:.1f} at the start, "
                 f"{self.load_after[0]:.1f} at the end (1-minute averages; the run's own work counts "
                 f"in the second); the run took {self.total_s / 60:.1f} min. Times are client round "
                 f"trips over the Unix socket, warm (each query set runs once untimed first).")
        L.append("")
        ing = o["ingest"]
        e = o["embed"]
        a, b = sizes
        sa, sb = self.scales[a], self.scales[b]
        L.append(f"| measure | {a // 1000}K nodes | {b // 1000}K nodes | target |")
        L.append("| --- | --- | --- | --- |")
        L.append(f"| bulk ingest, `ruvllm_ingest_many` ({ing['docs']} two-sentence docs in batches of "
                 f"{ing['batch']}, empty memory) | {ing['rate']:.0f} docs/s | | |")
        L.append(f"| embed p50 / p99, `ruvllm_embed` of a {o['embed_query_words']:.0f}-word query | "
                 f"{ms(pct(e, 50))} / {ms(pct(e, 99))} ms | | ≤ 4 ms p50 |")
        v = "real-like vector"
        L.append(f"| HNSW search p50 / p99 (k = {K}, ef_search {self.ef}) | "
                 f"{ms(sa['search'][v]['p50'])} / {ms(sa['search'][v]['p99'])} ms | "
                 f"{ms(sb['search'][v]['p50'])} / {ms(sb['search'][v]['p99'])} ms | |")
        L.append(f"| recall@{K} vs exact scan ({len(self.queries_real)} queries) | "
                 f"{sa['search'][v]['recall']:.3f} | {sb['search'][v]['recall']:.3f} | ≥ 0.95 |")
        g = "expand"
        L.append(f"| 2-hop expansion p50 / p99 from {K} seeds (the SQL walk alone; nodes reached) | "
                 f"{ms(sa['graph'][g]['p50'])} / {ms(sa['graph'][g]['p99'])} ms "
                 f"({sa['graph'][g]['rows']:.0f}) | {ms(sb['graph'][g]['p50'])} / "
                 f"{ms(sb['graph'][g]['p99'])} ms ({sb['graph'][g]['rows']:.0f}) | |")
        for key, label, target in (
                ("search ro", "search alone p50, `memory.search_vector(k=10, hops=0)` in the backend", ""),
                ("search+2hop ro", "search + 2-hop p50, `memory.search_vector` in the backend, "
                                   "read-only (accesses not recorded)", "≤ 5 ms"),
                ("search+2hop rw", "search + 2-hop p50, the same recording its accesses "
                                   "(`ruvllm.node_access` upsert), as ruvllm searches", ""),
                ("ruvllm_search", "`ruvllm_search(q, 10, 2)` end to end p50 (embed + search + "
                                  "2-hop + access upsert)", "")):
            L.append(f"| {label} | {ms(sa['graph'][key]['p50'])} ms | {ms(sb['graph'][key]['p50'])} ms "
                     f"| {target} |")
        params_ = self.index_with.replace("'", "")
        L.append(f"| HNSW build time / index size ({params_}) | "
                 f"{sa['builds'][v][0]:.0f} s / {sa['builds'][v][1] / 2**20:.0f} MB | "
                 f"{sb['builds'][v][0]:.0f} s / {sb['builds'][v][1] / 2**20:.0f} MB | |")
        L.append("")
        L.append("### Levers")
        L.append("")
        sized = ", ".join(f"{k} {v}" for k, v in self.sized_shown.items())
        stock = getattr(self, "stock_settings", None)
        L.append(f"\"sized\" is what `make up` sets (env/server.sh: {sized}); \"stock\" is "
                 + (("PostgreSQL's defaults (" + ", ".join(f"{k} {v}" for k, v in stock.items()) + ")")
                    if stock else "PostgreSQL's defaults")
                 + ". halfvec is an expression index `((embedding::halfvec(384)) halfvec_cosine_ops)` "
                   "over the same table, queried with the same expression; its recall is against the "
                   "exact float32 scan. Stock and \"sized, again\" rows search the indexes built with "
                   "sized settings, after a restart each, one right after the other. The stock "
                   "build time is a build of the same index under stock settings."
                 + ("" if self.cfg["stock_build"] and self.cfg["random_max"] >= b else
                    " Two 100K builds take 5-12 min each on this machine and are left to "
                    "`RUVLLM_BENCH_SCALE=full`: uniform random vectors (measured up to "
                    f"{self.cfg['random_max'] // 1000}K here), and real-like ones with stock settings."))
        L.append("")
        L.append("| vectors | storage | settings | nodes | build | index | search p50 | p99 | recall@10 |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, setting, n, secs, size, p50, p99, rec in self.levers:
            corpus_name, storage = name.rsplit(" ", 1)
            if secs is not None:
                build = f"{secs:.0f} s"
            elif setting == "stock" and storage == "vector" and corpus_name == "real-like":
                build = "(RUVLLM_BENCH_SCALE=full)"
            else:
                build = "(the sized build)"
            L.append(f"| {corpus_name} | {storage} | {setting} | {n // 1000}K | {build} | "
                     f"{size / 2**20:.0f} MB | {ms(p50)} ms | {ms(p99)} ms | {rec:.3f} |")
        L.append("")
        L.append(f"ef_search at {b // 1000}K nodes, sized settings (p50 ms / recall@10; "
                 f"`ruvllm.ef_search` is {self.ef}):")
        L.append("")
        names = [name for name in CONFIGS if name in self.sweep[0][1]]
        L.append("| ef_search | " + " | ".join(names) + " |")
        L.append("| --- |" + " --- |" * len(names))
        for ef, res in self.sweep:
            L.append(f"| {ef} | " + " | ".join(
                f"{ms(res[nm][0])} / {res[nm][1]:.3f}" + (" (planner: full scan)" if res[nm][2] else "")
                for nm in names) + " |")
        L.append("")
        emb = o.get("embedders")
        if emb:
            L.append(f"**Embedders** (`ruvllm.embedder`, one backend each, the same queries interleaved; "
                     f"agreement: minimum cosine to sentence-transformers' vectors of the "
                     f"{len(json.loads((REPO / 'tests/fixtures/minilm_reference.json').read_text())['cases'])}"
                     f" reference texts; docs/s: `ruvllm_embed(text[])` of {o['embedders_docs']} "
                     f"two-sentence documents, best of two):")
            L.append("")
            L.append("| embedder | query p50 / p99 | vs numpy | docs/s | min cosine vs sentence-transformers "
                     "| a fresh backend's RSS after one query: private + model file pages |")
            L.append("| --- | --- | --- | --- | --- | --- |")
            for kind, r in emb.items():
                L.append(f"| {kind}{' (default)' if kind == EMBEDDERS[0] else ''} | {ms(r['p50'])} / "
                         f"{ms(r['p99'])} ms | {r['p50'] / emb['numpy']['p50']:.2f}x "
                         f"| {r['docs_per_s']:.0f} | {r['min_cosine']:.6f} "
                         f"| +{r['rss_anon']:.0f} + {r['rss_file']:.0f} MiB |")
            L.append("")
            L.append("Under `llama`, a call of more than 1,024 tokens goes to the numpy forward "
                     "(faster for bulk): its docs/s is numpy's.")
            L.append("")
        L.append("### How the data was made")
        L.append("")
        prof = o["profile"]
        nb = len(self.bases)
        L.append(
            f"Embedding {b // 1000}K texts in the backend would take ~{b * 0.011 / 60:.0f} min, so the "
            f"corpus is built from {nb} real all-MiniLM-L6-v2 embeddings: the {ing['nodes']} nodes that "
            f"the ingest step stored plus {nb - ing['nodes']} more texts embedded in one "
            f"`ruvllm_embed(text[])` call ({o['batch_embed_ms']:.1f} ms per text). The texts are "
            f"two-sentence knowledge-base snippets generated from templates and word lists over "
            f"{len(corpus.TOPICS)} topics (bench/topics.py; templates in bench/memory/corpus.py). "
            f"Each corpus vector is one of these "
            f"bases + U(0, {corpus.MIX_TOPIC}) x a base of the same topic + U(0, {corpus.MIX_ANY}) x any "
            f"base + Gaussian noise of norm {corpus.NOISE}, renormalised (median cosine to its own base "
            f"{o['variant_to_base']:.2f}; two variants of one base: median "
            f"{o['variant_pairs'][0]:.2f}, {o['variant_pairs'][1]:.2%} at or above the 0.95 that "
            f"ingestion merges as near-duplicates). Queries are {len(self.queries_real)} held-out questions from "
            f"the same generator, embedded for real. \"random\" vectors are uniform on the unit sphere "
            f"(normalised Gaussians), queried with random vectors. Each node gets SameTopic edges to its "
            f"5 most similar earlier nodes of its topic, as ingestion links a new node to what is "
            f"stored ({sa['edges']} edges at {a // 1000}K, {sb['edges']} at {b // 1000}K), written as "
            f"AGE vertices and edges with the statements ingestion uses; `minhash_bands` are empty "
            f"(not used by search). Loading took {sa['load_s']:.0f} s for {a // 1000}K and "
            f"{sb['load_s']:.0f} s for the next {(b - a) // 1000}K.")
        L.append("")
        L.append("Median cosine similarity of a query to its 1st / 10th / 101st nearest vector:")
        L.append("")
        L.append("| vectors | count | 1st | 10th | 101st |")
        L.append("| --- | --- | --- | --- | --- |")
        for name, (count, s1, s10, s101) in prof.items():
            L.append(f"| {name} | {count} | {s1:.2f} | {s10:.2f} | {s101:.2f} |")
        L.append("")
        for n_, s_ in ((a, sa), (b, sb)):
            w = s_["graph"]["writes"]
            L.append(f"At {n_ // 1000}K: the searches that record their accesses (search + 2-hop "
                     f"rw and `ruvllm_search`, {self.cfg['e2e']} timed calls each, plus a warm-up) "
                     f"inserted {w['ins']} rows into `ruvllm.node_access` and updated {w['upd']}, "
                     f"{w['hot']} of the updates HOT; `ruvllm.nodes` had {w['nodes_upd']} row updates.")
        L.append("A search upserts one `node_access` row (node id, time, hit count) per node it "
                 "returns and leaves `ruvllm.nodes` alone: an update of a `nodes` row that is not "
                 "HOT inserts it into the HNSW index again (a whole ef_construction search). The "
                 "upsert changes no indexed column, so its updates are HOT wherever the page has "
                 "room. The deep loop copies the times into `ruvllm.nodes.last_accessed`: one "
                 "update per node accessed since its last run (not measured here).")
        L.append("")
        for note in self.notes:
            L.append(note)
        return "\n".join(L).rstrip() + "\n"


def _section_span(text, header):
    """(start, end) of the section that begins with the line `header`, or None."""
    start = 0 if text.startswith(header + "\n") else text.find("\n" + header + "\n") + 1
    if start <= 0 and not text.startswith(header + "\n"):
        return None
    nxt = text.find("\n## ", start + len(header))
    return start, (len(text) if nxt < 0 else nxt + 1)


def record(report_path, results_path):
    """Replace (or add) the report's section (its first line) in bench/RESULTS.md."""
    section = Path(report_path).read_text()
    header = section.split("\n", 1)[0]
    results = Path(results_path)
    if results.exists():
        text = results.read_text()
    else:
        text = ("# Benchmark results\n\nEach section is written by its benchmark's own run "
                "(see the command in it); numbers are not edited by hand.\n")
    span = _section_span(text, header)
    if span is None:
        # A new section goes after the default bench/memory section when there is one.
        after = _section_span(text, SECTION) if header != SECTION else None
        span = (after[1], after[1]) if after else (len(text), len(text))
    start, end = span
    before, rest = text[:start].rstrip("\n"), text[end:].lstrip("\n")
    text = before + "\n\n" + section.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    results.write_text(text)


def main():
    args, scale = cli("memory", __doc__, record, SCALES)
    bench = Bench(scale)
    bench.run()
    print_report(bench.report(), args.out)


if __name__ == "__main__":
    main()
