#!/usr/bin/env python3
"""bench/query: ruvllm_query end to end over a seeded knowledge base.

    make bench-query                            # default scale: 10K and 100K memories, ~15-20 min
    RUVLLM_BENCH_SCALE=small make bench-query   # 2K and 10K memories, every phase, ~3 min

`make bench-query` runs this inside the ruvllm root as the postgres user. It starts its own
throwaway PostgreSQL 17 (127.0.0.1, a free port, data in a temp dir) and measures, in one run:

  * end-to-end latency of ruvllm_query (client side and the witness row's total_ms), with the
    witness's stage breakdown (embedding, retrieval, routing, attention, generation, other);
  * orchestration = total_ms - generation_ms (everything but generation) at both memory sizes;
  * response-cache hits (the same questions asked again);
  * generation tokens/s of ruvllm_generate against the same GGUF, prompt and settings in a bare
    Python process (llama_cpp.Llama as generation.LlamaCppBackend builds it), interleaved;
  * RSS of one backend before and after it has used the embedder and both models.

It prints one markdown section; at default scale bench/run.sh records it in
bench/RESULTS.md (`--record`). `--bare` is the bare generation process (internal).
"""
import argparse
import contextlib
import datetime
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for results.py, common.py
import results  # noqa: E402
from common import CHILD_ENV, Server, cli, log, machine, print_report  # noqa: E402

import numpy as np  # noqa: E402

import corpus  # noqa: E402
import lookups  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
from ruvllm import evidence, lexical, unit_vectors  # noqa: E402  (pure: no plpy)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SECTION = "## bench/query"
DIM = 384
MAX_TOKENS = 32          # per ruvllm_query in the end-to-end runs
MODELS = ("smollm2-135m-instruct", "gemma-3-270m")
CHOSEN = ("extractive",) + MODELS   # the models ruvllm_query may choose
STAGES = ("embedding", "retrieval", "routing", "attention", "generation")

SCALES = {
    # A smoke run: every phase, a few calls each.
    "small": dict(real=300, sizes=(2_000, 10_000), queries=8, warmup=1, cache=5,
                  gen_reps=2, gen_tokens=32, budget_s=60, stub=10, cached=10_000, probes=30,
                  token_queries=10),
    "default": dict(real=2_000, sizes=(10_000, 100_000), queries=100, warmup=3, cache=50,
                    gen_reps=5, gen_tokens=128, budget_s=270, stub=100, cached=10_000, probes=200,
                    token_queries=100),
}
# The end-to-end run at one size stops after `queries` calls or `budget_s` seconds, whichever
# comes first (at least MIN_QUERIES), so the whole run stays under 20 minutes.
MIN_QUERIES = 20

# The same prompt for both sides of the generation comparison, per model: the chat model gets it
# as the user turn (as ruvllm_generate does), the base model continues it.
GEN_PROMPTS = {
    "smollm2-135m-instruct": "Explain how PostgreSQL uses its write-ahead log to recover after a "
                             "crash, step by step.",
    "gemma-3-270m": "PostgreSQL keeps a write-ahead log so that after a crash it can",
}

# What `make up` runs with (env/server.sh); bench/common.py's Server adds where it listens.
SERVER_SETTINGS = {
    "shared_buffers": "'2GB'",
    "effective_cache_size": "'8GB'",
    "maintenance_work_mem": "'1GB'",
    "max_parallel_maintenance_workers": "1",
    "max_connections": "20",
}
# The bare generation process gets the server's CHILD_ENV (one BLAS thread, as `make up` runs
# backends; bench/common.py).


def label(size):
    return f"{size // 1000}K" if size >= 1000 else str(size)


def pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


# --- waiting for other benchmarks ---------------------------------------------------------------

def other_benchmarks():
    """Command lines of other benchmark runs (bench/memory, query, retention, router) here."""
    mine = {os.getpid(), os.getppid()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(f"bench/{b}/run.py" in cmd for b in ("memory", "query", "retention", "router")) and "--bare" not in cmd \
                and "--record" not in cmd:
            found.append(f"{entry}: {cmd.strip()[:100]}")
    return found


def wait_for_quiet(limit_s=1200, every_s=60, max_load=1.5):
    """Another benchmark, or other heavy work, on these 2 cores would skew both: wait until none
    runs and the 1-minute load average is under max_load (up to limit_s). Returns a note when
    it gave up waiting."""
    t0 = time.monotonic()
    while True:
        others = other_benchmarks()
        load = os.getloadavg()[0]
        if not others and load < max_load:
            return None
        waited = time.monotonic() - t0
        why = f"another benchmark is running ({others[0]})" if others else f"load average {load:.1f}"
        if waited >= limit_s:
            return f"Measured although, after {limit_s // 60} min of waiting, {why}."
        log(f"{why}; waiting {every_s} s ({int(waited)} s waited so far)")
        time.sleep(every_s)


def proc_status(pid):
    """VmHWM, VmRSS, RssAnon, RssFile, RssShmem of a process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(rest.split()[0]) / 1024.0
    return out


def vector_bytes(v):
    """pgvector's binary form of one vector (int16 dim, int16 unused, big-endian float4s)."""
    return struct.pack(">HH", len(v), 0) + np.ascontiguousarray(v, dtype=">f4").tobytes()


# --- SQL ----------------------------------------------------------------------------------------

SETUP_SQL = """
CREATE SCHEMA bench;
CREATE TABLE bench.stage (id uuid PRIMARY KEY, embedding vector(384) NOT NULL, content text NOT NULL);
CREATE TABLE bench.edge_stage (src uuid NOT NULL, dst uuid NOT NULL, weight real NOT NULL);
CREATE TABLE bench.unit_stage (id uuid PRIMARY KEY, vectors bytea NOT NULL);
-- The real pipeline (query.run) with generation stubbed out, optionally under cProfile: what
-- orchestration costs when llama.cpp has not just run on the same cores and caches.
-- stored[i]: whether call i scores evidence units by their stored vectors (query.STORED_UNIT_VECTORS).
CREATE FUNCTION bench.orchestrate(qs text[], profile boolean, stored boolean[]) RETURNS jsonb
LANGUAGE plpython3u SET search_path = pg_catalog, pg_temp AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import cProfile, json, pstats, time
from ruvllm import generation, query as pipeline

class Stub(generation.GenerationBackend):
    # Answers at once; counts tokens with the real models (attention's budget needs them).
    def __init__(self):
        self.real = generation.default_backend()
        self.max_loaded = self.real.max_loaded
    def count_tokens_many(self, model, texts):
        return self.real.count_tokens_many(model, texts)
    def generate(self, model, prompt, **kw):
        return generation.GenerationResult("(stub)", 0, 0, 0.0, "stop")

stub = Stub()
constraints = json.dumps({"max_tokens": 31})
prof = cProfile.Profile() if profile else None
calls = []
for q, use_stored in zip(qs, stored):
    pipeline.STORED_UNIT_VECTORS = use_stored
    t0 = time.perf_counter()
    if prof: prof.enable()
    r = pipeline.run(plpy, q, None, constraints, backend=stub)
    if prof: prof.disable()
    calls.append({"ms": (time.perf_counter() - t0) * 1000, "request_id": r["request_id"],
                  "stored": use_stored})
pipeline.STORED_UNIT_VECTORS = True
out = {"calls": calls}
if prof:
    rows = []
    for (f, line, fn), (cc, nc, tt, ct, callers) in pstats.Stats(prof).stats.items():
        rows.append({"file": f, "fn": fn, "line": line, "calls": nc, "tt": tt * 1000, "ct": ct * 1000})
    out["profile"] = rows
return json.dumps(out)
$$;
"""
# The statement shape of memory.ingest_many's insert: the AGE vertex and the node in one statement.
LOAD_NODES_SQL = """
    WITH input AS MATERIALIZED (
        SELECT s.id, s.embedding, s.content,
               ag_catalog._graphid(ag_catalog._label_id('ruvllm_graph', 'Node'),
                                   pg_catalog.nextval('ruvllm_graph."Node_id_seq"')) AS gid
          FROM bench.stage s
    ), vertices AS (
        INSERT INTO ruvllm_graph."Node" (id, properties)
        SELECT gid, pg_catalog.jsonb_build_object('node_id', id)::text::ag_catalog.agtype FROM input
    )
    INSERT INTO ruvllm.nodes (id, embedding, content, node_type, source, tenant, metadata,
                              graph_id, minhash_bands)
    SELECT id, embedding, content, 'Document', 'bench/query:synthetic', '', '{"version": 1}', gid, '{}'
      FROM input"""
# What ingest_many counts for new nodes (lexical.COUNT_NEW_NODES), for the staged ones: without
# it BM25's document frequencies were those of the real documents alone, and the lexical probe,
# bounded by them to ~PROBE_DOCS nodes, scored up to MATCH_LIMIT.
# (The array cast: "= ANY((SELECT ...))" would compare each id with the whole array.)
LOAD_LEXICAL_STATS_SQL = lexical.COUNT_NEW_NODES.replace(
    "$1::uuid[]", "(SELECT pg_catalog.array_agg(id) FROM bench.stage)::uuid[]")
# graph.insert_edges's statement, from a staging table.
LOAD_EDGES_SQL = """
    INSERT INTO ruvllm_graph."SameTopic" (start_id, end_id, properties)
    SELECT s.graph_id, d.graph_id,
           pg_catalog.jsonb_build_object('weight', e.weight, 'confidence', 1.0,
               'created_by', 'bench', 'created_at', pg_catalog.now())::text::ag_catalog.agtype
      FROM bench.edge_stage e
      JOIN ruvllm.nodes s ON s.id = e.src
      JOIN ruvllm.nodes d ON d.id = e.dst"""
# What ingest_many stores for new nodes (unit_vectors.store), for the staged ones.
LOAD_UNITS_SQL = f"""
    INSERT INTO ruvllm.node_units (node_id, layout, vectors)
    SELECT id, {evidence.UNIT_LAYOUT}, vectors FROM bench.unit_stage"""
WITNESS_SQL = """
    SELECT request_id::text, cache_hit, model, embedding_ms, retrieval_ms, routing_ms, attention_ms,
           generation_ms, total_ms, prompt_tokens, completion_tokens, context_size, error
      FROM ruvllm.witness WHERE request_id = ANY(%s::uuid[])"""

# How far a synthetic memory strays from the real one it is made from: another real memory at
# weight up to MIX, and isotropic noise of norm NOISE, then renormalised (cosine to its base ~0.9).
MIX = 0.3
NOISE = 0.3
CHAIN_LINKS = 3   # SameTopic edges from each synthetic memory to the previous ones of its chain


# --- the bare generation process ----------------------------------------------------------------

def bare_main():
    """Serves generation requests over stdin/stdout (JSON lines) with llama_cpp.Llama built and
    called exactly as generation.LlamaCppBackend and generation.generate_text do."""
    import llama_cpp
    loaded = {}
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        key = (req["path"], req.get("n_threads"))
        llm = loaded.get(key)
        if llm is None:
            llm = loaded[key] = llama_cpp.Llama(model_path=req["path"], n_ctx=req["n_ctx"],
                                                use_mmap=True, n_threads=req.get("n_threads"),
                                                verbose=False)
        if req["op"] == "count":
            reply = {"tokens": len(llm.tokenize(req["text"].encode("utf-8"), add_bos=False, special=False))}
        else:
            kwargs = dict(max_tokens=req["max_tokens"], temperature=0.0, top_p=1.0)
            t0 = time.perf_counter()
            if req["style"] == "chat":
                r = llm.create_chat_completion(messages=[{"role": "user", "content": req["prompt"]}],
                                               **kwargs)
                text = r["choices"][0]["message"]["content"] or ""
            else:
                r = llm.create_completion(req["prompt"], **kwargs)
                text = r["choices"][0]["text"]
            secs = time.perf_counter() - t0
            reply = {"text": text.strip(), "seconds": secs, "n_threads": llm.n_threads,
                     "completion_tokens": r["usage"]["completion_tokens"],
                     "prompt_tokens": r["usage"]["prompt_tokens"]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class Bare:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--bare"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **CHILD_ENV))

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("bench/query: the bare generation process died")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(30)


# --- the benchmark ------------------------------------------------------------------------------

class Bench:
    def __init__(self, scale, only=None):
        self.scale = scale
        # A subset of the phases (--only cache,tokens): printed, never recorded.
        self.only = only
        self.cfg = SCALES[scale]
        self.out = {"e2e": {}, "grow": {}}
        self.notes = []
        self.timeline = []
        self.rng = np.random.default_rng(7)
        n_q = len(self.cfg["sizes"]) * (self.cfg["queries"] + self.cfg["warmup"]) + 8 \
            + 3 * self.cfg["stub"] + 3 + 2 * self.cfg["token_queries"] + 2
        self.questions = corpus.questions(n_q, seed=11)
        self.q_next = 0

    def take_questions(self, n):
        qs = self.questions[self.q_next:self.q_next + n]
        self.q_next += n
        assert len(qs) == n, "not enough distinct questions"
        return qs

    @contextlib.contextmanager
    def phase(self, name):
        """Times what runs inside it into the report's time by phase."""
        t0 = time.perf_counter()
        yield
        self.timeline.append((name, time.perf_counter() - t0))

    # -- data ------------------------------------------------------------------------------------

    def seed_real(self, conn):
        docs = corpus.documents(self.cfg["real"], seed=1)
        texts = [t for t, _ in docs]
        sources = [f"bench/query:{topic}" for _, topic in docs]
        for md in sorted((REPO / "demo" / "knowledge").glob("*.md")):
            texts.append(md.read_text())
            sources.append(f"demo/knowledge/{md.name}")
        conn.execute("SELECT ruvllm_embed('warm up')")
        log(f"ingest {len(texts)} real documents with ruvllm_ingest_many")
        t0 = time.perf_counter()
        batch = 100
        for i in range(0, len(texts), batch):
            conn.execute("SELECT ruvllm_ingest_many(%s::text[], 'Document', %s::text[])",
                         [texts[i:i + batch], sources[i:i + batch]])
        secs = time.perf_counter() - t0
        nodes = conn.execute("SELECT count(*) FROM ruvllm.nodes").fetchone()[0]
        edges = conn.execute("SELECT count(*) FROM ruvllm_graph._ag_label_edge").fetchone()[0]
        self.out["real"] = dict(docs=len(texts), nodes=nodes, edges=edges, secs=secs)
        log(f"  {nodes} nodes, {edges} edges in {secs:.0f} s")
        rows = conn.execute("SELECT id, embedding::real[], content FROM ruvllm.nodes ORDER BY id").fetchall()
        self.real_ids = [r[0] for r in rows]
        self.real_vecs = np.array([r[1] for r in rows], dtype=np.float32)
        self.real_texts = [r[2] for r in rows]
        self.real_first = [r[2].split(". ")[0].strip().rstrip(".")[:200] + "." for r in rows]
        # What ingest stored for the real documents' units: a synthetic memory's units read as
        # theirs do, and a unit's vector depends on how it reads alone.
        self.unit_vecs = {}
        for content, blob in conn.execute("""SELECT n.content, u.vectors FROM ruvllm.nodes n
                                               JOIN ruvllm.node_units u ON u.node_id = n.id""").fetchall():
            for read, v in zip(evidence.unit_reads(content), unit_vectors.unpack(blob)):
                self.unit_vecs[" ".join(read.split())] = v
        self.units_embedded = 0
        # Each real memory heads a chain of synthetic ones: (id, vector) of the chain's last members.
        self.chains = [[(self.real_ids[i], self.real_vecs[i])] for i in range(len(rows))]
        self.indexdef = conn.execute(
            "SELECT pg_get_indexdef('ruvllm.nodes_embedding_hnsw'::regclass)").fetchone()[0]

    def grow(self, conn, target):
        """Synthetic memories up to `target` nodes, loaded set-based; the HNSW index rebuilt."""
        have = conn.execute("SELECT count(*) FROM ruvllm.nodes").fetchone()[0]
        n = target - have
        if n <= 0:
            return
        log(f"grow {have} -> {target} memories ({n} synthetic)")
        t0 = time.perf_counter()
        nr = len(self.real_ids)
        base = self.rng.integers(0, nr, n)
        other = self.rng.integers(0, nr, n)
        vecs = (self.real_vecs[base]
                + self.rng.uniform(0, MIX, (n, 1)) * self.real_vecs[other]
                + self.rng.standard_normal((n, DIM)) * (NOISE / np.sqrt(DIM)))
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs.astype(np.float32)
        ids = [uuid.uuid4() for _ in range(n)]
        edges = []
        for j in range(n):
            chain = self.chains[base[j]]
            for dst, dvec in chain[-CHAIN_LINKS:]:
                edges.append((ids[j], dst, float(vecs[j] @ dvec)))
            chain.append((ids[j], vecs[j]))
            if len(chain) > CHAIN_LINKS:
                del chain[0]
        cos_base = np.einsum("ij,ij->i", vecs, self.real_vecs[base])
        contents = [self.real_texts[base[j]] + " " + self.real_first[other[j]] for j in range(n)]
        unit_blobs = unit_vectors.embed_nodes(contents, lambda reads: self.unit_vectors(conn, reads))
        with conn.cursor() as cur:
            cur.execute("TRUNCATE bench.stage, bench.edge_stage")
            with cur.copy("COPY bench.stage (id, embedding, content) FROM STDIN (FORMAT BINARY)") as cp:
                # bytea's binary form is the raw bytes, which vector_recv reads as a vector.
                cp.set_types(["uuid", "bytea", "text"])
                for j in range(n):
                    cp.write_row((ids[j], vector_bytes(vecs[j]), contents[j]))
            cur.execute("TRUNCATE bench.unit_stage")
            with cur.copy("COPY bench.unit_stage (id, vectors) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["uuid", "bytea"])
                for j in range(n):
                    if unit_blobs[j] is not None:
                        cp.write_row((ids[j], unit_blobs[j]))
            with cur.copy("COPY bench.edge_stage (src, dst, weight) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["uuid", "uuid", "float4"])
                for e in edges:
                    cp.write_row(e)
        staged = time.perf_counter() - t0
        # 100K single inserts into HNSW cost far more than one build: drop, load, build again.
        conn.execute("DROP INDEX ruvllm.nodes_embedding_hnsw")
        t1 = time.perf_counter()
        conn.execute(LOAD_NODES_SQL)
        conn.execute(LOAD_EDGES_SQL)
        conn.execute(LOAD_LEXICAL_STATS_SQL)
        conn.execute(LOAD_UNITS_SQL)
        loaded = time.perf_counter() - t1
        t2 = time.perf_counter()
        conn.execute(self.indexdef)
        built = time.perf_counter() - t2
        conn.execute("VACUUM ANALYZE ruvllm.nodes")
        for lab in ("Node", "SameTopic", "Follows"):
            conn.execute(f'ANALYZE ruvllm_graph."{lab}"')
        nodes, edges_n, isize = conn.execute(
            "SELECT (SELECT count(*) FROM ruvllm.nodes), (SELECT count(*) FROM ruvllm_graph._ag_label_edge), "
            "pg_relation_size('ruvllm.nodes_embedding_hnsw')").fetchone()
        self.out["units_embedded"] = self.units_embedded
        self.out["grow"][target] = dict(synthetic=n, staged=staged, loaded=loaded, index=built,
                                        nodes=nodes, edges=edges_n, index_mb=isize / 2**20,
                                        cos_base=float(np.median(cos_base)))
        log(f"  {nodes} nodes, {edges_n} edges; staged {staged:.0f} s, loaded {loaded:.0f} s, "
            f"HNSW built in {built:.0f} s")

    def unit_vectors(self, conn, reads):
        """The vectors of units (their whitespace-collapsed reads): the real documents' where known,
        else embedded as ingest would."""
        missing = [r for r in reads if r not in self.unit_vecs]
        for i in range(0, len(missing), 256):
            part = missing[i:i + 256]
            got = conn.execute("SELECT array_agg(v::text ORDER BY o) FROM unnest(ruvllm_embed(%s::text[])) "
                               "WITH ORDINALITY AS e(v, o)", [part]).fetchone()[0]
            for r, v in zip(part, got):
                self.unit_vecs[r] = np.array(json.loads(v), dtype=np.float32)
        self.units_embedded += len(missing)
        return np.stack([self.unit_vecs[r] for r in reads])

    # -- end to end --------------------------------------------------------------------------------

    def ask(self, conn, q, constraints):
        t0 = time.perf_counter()
        r = conn.execute("SELECT ruvllm_query(%s, NULL, %s::jsonb)", [q, json.dumps(constraints)]).fetchone()[0]
        return r, (time.perf_counter() - t0) * 1000

    def witness(self, conn, ids):
        assert conn.execute("SELECT ruvllm_witness_flush(30000)").fetchone()[0], "witness flush timed out"
        cur = conn.execute(WITNESS_SQL, [ids])
        cols = [c.name for c in cur.description]
        return {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}

    def e2e(self, server, size):
        cfg = self.cfg
        conn = server.connect()
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # Warm-up, not measured: loads the embedder and both models into this backend.
        for model in MODELS:
            self.ask(conn, self.take_questions(1)[0], {"model": model, "max_tokens": MAX_TOKENS})
        for q in self.take_questions(cfg["warmup"]):
            self.ask(conn, q, {"max_tokens": MAX_TOKENS})
        log(f"end to end at {label(size)}: {cfg['queries']} distinct questions, max_tokens {MAX_TOKENS}")
        qs = self.take_questions(cfg["queries"])
        client = {}
        t0 = time.perf_counter()
        for i, q in enumerate(qs):
            if i >= MIN_QUERIES and time.perf_counter() - t0 > cfg["budget_s"]:
                log(f"  time budget of {cfg['budget_s']} s reached after {i} questions")
                qs = qs[:i]
                break
            r, ms = self.ask(conn, q, {"max_tokens": MAX_TOKENS})
            client[r["request_id"]] = ms
        rows = self.witness(conn, list(client))
        assert len(rows) == len(client), f"{len(client) - len(rows)} witness rows missing"
        misses = [dict(r, client_ms=client[rid]) for rid, r in rows.items() if not r["cache_hit"]]
        hits = len(rows) - len(misses)
        errors_ = [r["error"] for r in rows.values() if r["error"]]
        assert not errors_, errors_[:3]
        self.out["e2e"][size] = dict(rows=misses, semantic_hits=hits, questions=qs,
                                     hwm=proc_status(pid)["VmHWM"])
        if hits:
            self.notes.append(f"At {label(size)}, {hits} of {len(rows)} distinct questions were "
                              "answered from the semantic cache; they are left out of the "
                              "end-to-end numbers.")
        return conn

    def cache_hits(self, conn, size):
        qs = self.out["e2e"][size]["questions"][:self.cfg["cache"]]
        log(f"cache hits: {len(qs)} questions asked again")
        client = {}
        for q in qs:
            r, ms = self.ask(conn, q, {"max_tokens": MAX_TOKENS})
            client[r["request_id"]] = ms
        rows = self.witness(conn, list(client))
        hit = [dict(r, client_ms=client[rid]) for rid, r in rows.items() if r["cache_hit"]]
        self.out["cache"] = dict(rows=hit, asked=len(qs))

    # -- generation ------------------------------------------------------------------------------

    def generation(self, server):
        cfg = self.cfg
        conn = server.connect()
        models_dir = conn.execute(
            "SELECT coalesce(nullif(current_setting('ruvllm.models_dir', true), ''), %s)",
            [os.environ.get("RUVLLM_MODELS_DIR") or "/usr/local/share/ruvllm/models"]).fetchone()[0]
        specs = {}
        for name, path, n_ctx, style in conn.execute(
                "SELECT name, path, n_ctx, prompt_style FROM ruvllm.models WHERE name = ANY(%s)", [list(MODELS)]):
            specs[name] = dict(path=path if path.startswith("/") else os.path.join(models_dir, path),
                               n_ctx=n_ctx, style=style)
        bare = Bare()
        n = cfg["gen_tokens"]
        res = {}
        try:
            for model in MODELS:
                s = specs[model]
                prompt = GEN_PROMPTS[model]
                req = dict(op="generate", prompt=prompt, max_tokens=n, **s)
                # Warm-up on both sides: loads the model (and primes llama.cpp's prompt cache alike).
                db_text = conn.execute("SELECT ruvllm_generate(%s, %s::int, %s)", [prompt, n, model]).fetchone()[0]
                ref = bare.ask(**req)
                same = db_text == ref["text"]
                tokens = ref["completion_tokens"] if same else \
                    bare.ask(op="count", text=db_text, **s)["tokens"]
                db_tps, bare_tps = [], []
                log(f"generation {model}: {cfg['gen_reps']} x {n} tokens, in-database and bare, interleaved")
                for rep in range(cfg["gen_reps"]):
                    order = ("db", "bare") if rep % 2 == 0 else ("bare", "db")
                    for side in order:
                        if side == "db":
                            t0 = time.perf_counter()
                            text = conn.execute("SELECT ruvllm_generate(%s, %s::int, %s)",
                                                [prompt, n, model]).fetchone()[0]
                            secs = time.perf_counter() - t0
                            same = same and text == db_text
                            db_tps.append(tokens / secs)
                        else:
                            r = bare.ask(**req)
                            bare_tps.append(r["completion_tokens"] / r["seconds"])
                threads2 = [bare.ask(n_threads=os.cpu_count(), **req) for _ in range(2)]
                res[model] = dict(tokens=tokens, bare_tokens=ref["completion_tokens"],
                                  prompt_tokens=ref["prompt_tokens"], same_text=same,
                                  db=float(np.median(db_tps)), bare=float(np.median(bare_tps)),
                                  n_threads=ref["n_threads"],
                                  bare_all_cores=float(np.median([r["completion_tokens"] / r["seconds"]
                                                                  for r in threads2])))
                if not same:
                    self.notes.append(f"{model}: the in-database text differed from the bare "
                                      "process's; its tokens were counted with the model's tokenizer.")
        finally:
            bare.close()
            conn.close()
        self.out["gen"] = res

    # -- orchestration with generation stubbed ---------------------------------------------------

    def stubbed(self, server):
        n = self.cfg["stub"]
        conn = server.connect()
        log(f"orchestration with generation stubbed: {n} + {n} calls (unit vectors stored / embedded "
            f"in the request, alternating), then {n} under cProfile")
        conn.execute("SELECT bench.orchestrate(%s, false, %s)", [self.take_questions(3), [True, False, True]])
        stored = [i % 2 == 0 for i in range(2 * n)]
        r = conn.execute("SELECT bench.orchestrate(%s, false, %s)",
                         [self.take_questions(2 * n), stored]).fetchone()[0]
        inside = {c["request_id"]: (c["ms"], c["stored"]) for c in r["calls"]}
        rows = self.witness(conn, list(inside))
        timed = [dict(w, inside_ms=inside[rid][0], stored=inside[rid][1])
                 for rid, w in rows.items() if not w["cache_hit"]]
        r = conn.execute("SELECT bench.orchestrate(%s, true, %s)",
                         [self.take_questions(n), [True] * n]).fetchone()[0]
        rows = self.witness(conn, [c["request_id"] for c in r["calls"]])
        conn.close()
        self.out["stub"] = dict(rows=timed, profile=r["profile"], profiled_calls=len(r["calls"]),
                                profiled_hits=sum(w["cache_hit"] for w in rows.values()))

    def profile_lines(self, top=12):
        st = self.out["stub"]
        n = st["profiled_calls"]
        prof = st["profile"]

        def name(p):
            f = p["file"]
            if f == "~":
                return p["fn"]
            short = f.split("/ruvllm/")[-1] if "/ruvllm/" in f else f.rsplit("/", 1)[-1]
            return f"{short}:{p['fn']}"
        skip = {"run", "_run", "call"}
        seen = {}
        for p in prof:
            seen[name(p)] = seen.get(name(p), 0) + 1

        def shown(p):
            return name(p) + (f"@{p['line']}" if seen[name(p)] > 1 else "")
        ours = sorted((p for p in prof if "/ruvllm/" in p["file"] and p["fn"] not in skip
                       and not p["fn"].startswith("<")), key=lambda p: -p["ct"])[:top]
        self_time = sorted(prof, key=lambda p: -p["tt"])[:8]
        cum = ", ".join(f"{shown(p)} {p['ct'] / n:.2f}" for p in ours)
        own = ", ".join(f"{shown(p)} {p['tt'] / n:.2f}" for p in self_time)
        return cum, own

    def table_stats(self, server):
        """What the run wrote to ruvllm.nodes (updates, HOT share, index growth) and to
        ruvllm.node_access (where retrieval records what it returned)."""
        conn = server.connect()
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute("""
            SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count,
                   pg_relation_size('ruvllm.nodes_embedding_hnsw'), pg_relation_size('ruvllm.nodes')
              FROM pg_stat_user_tables WHERE relid = 'ruvllm.nodes'::regclass""").fetchone()
        acc = conn.execute("""
            SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, pg_relation_size('ruvllm.node_access')
              FROM pg_stat_user_tables WHERE relid = 'ruvllm.node_access'::regclass""").fetchone()
        calls = conn.execute("SELECT count(*) FROM ruvllm.witness WHERE NOT cache_hit").fetchone()[0]
        conn.close()
        self.out["nodes_stats"] = dict(upd=row[0], hot=row[1], dead=row[2], autovacuum=row[3],
                                       index_mb=row[4] / 2**20, heap_mb=row[5] / 2**20, calls=calls,
                                       access_ins=acc[0], access_upd=acc[1], access_hot=acc[2],
                                       access_mb=acc[3] / 2**20)

    # -- cache lookups and token counting, before and after (bench/query/lookups.py) --------------

    def cache_lookups(self, server):
        from ruvllm import cache   # noqa: F401  (the statements' text only; no plpy here)
        conn = server.connect()
        n = self.cfg["cached"]
        log(f"cache lookups at {n} cached answers: {self.cfg['probes']} probes of each kind, before and after")
        self.out["cache_lookups"] = lookups.measure_cache(
            conn, self.rng, self.real_vecs, self.real_texts, n, self.cfg["probes"], vector_bytes,
            {"exact": cache.EXACT_SQL, "semantic": cache.SEMANTIC_SQL})
        conn.close()

    def token_counting(self, server):
        n = self.cfg["token_queries"]
        conn = server.connect()
        log(f"token counting: {n} distinct questions with each counting path (generation stubbed)")
        self.out["token_counting"] = lookups.measure_tokens(conn, self.take_questions(n),
                                                            self.take_questions(n), MODELS)
        conn.close()

    # -- memory ------------------------------------------------------------------------------------

    def rss(self, server):
        conn = server.connect()
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        steps = [("fresh backend (SELECT 1)", proc_status(pid))]
        conn.execute("SELECT ruvllm_embed('hello')")
        steps.append(("after ruvllm_embed (Python, embedder)", proc_status(pid)))
        qs = self.take_questions(2)
        first_ms = {}
        for q, model in zip(qs, MODELS):
            r, ms = self.ask(conn, q, {"model": model, "max_tokens": 16})
            first_ms[model] = ms
            steps.append((f"after ruvllm_query with {model}", proc_status(pid)))
        conn.close()
        self.out["rss"] = steps
        self.out["first_query_ms"] = first_ms

    # -- the run -------------------------------------------------------------------------------------

    def run(self):
        t_all = time.perf_counter()
        # The smoke run does not wait; the recorded (default-scale) run does.
        waited = wait_for_quiet() if self.scale == "default" else None
        if waited:
            self.notes.append(waited)
        self.load_start = os.getloadavg()
        self.started = datetime.datetime.now().astimezone()
        with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
            # On 127.0.0.1, as a client of `make up` connects.
            server = Server(tmp, tcp=True, name="bench/query")
            server.start(SERVER_SETTINGS)
            try:
                admin = server.connect("postgres")
                admin.execute("CREATE DATABASE bench")
                admin.close()
                conn = server.connect()
                conn.execute("CREATE EXTENSION ruvllm CASCADE")
                conn.execute(SETUP_SQL)
                conn.execute(lookups.SETUP_SQL)
                self.info = conn.execute("SELECT ruvllm_info()").fetchone()[0]
                self.pg_version = conn.execute("SHOW server_version").fetchone()[0]
                with self.phase("seed real documents"):
                    self.seed_real(conn)
                if self.only:
                    self.run_only(server, conn)
                else:
                    self.run_all(server, conn)
            finally:
                server.stop(check=False)
        self.total_s = time.perf_counter() - t_all
        self.load_end = os.getloadavg()

    def run_all(self, server, conn):
        qconn = None
        for size in self.cfg["sizes"]:
            with self.phase(f"grow to {label(size)}"):
                self.grow(conn, size)
            if qconn is not None:
                qconn.close()
            with self.phase(f"end to end at {label(size)}"):
                qconn = self.e2e(server, size)
        conn.close()
        with self.phase("cache hits"):
            self.cache_hits(qconn, self.cfg["sizes"][-1])
            qconn.close()
        with self.phase("backend RSS"):
            self.rss(server)
        with self.phase("generation in-database vs bare"):
            self.generation(server)
        with self.phase("orchestration with generation stubbed"):
            self.stubbed(server)
        self.table_stats(server)
        with self.phase("token counting before and after"):
            self.token_counting(server)
        with self.phase("cache lookups before and after"):
            self.cache_lookups(server)

    def run_only(self, server, conn):
        """The phases of --only, on the first memory size."""
        size = self.cfg["sizes"][0]
        with self.phase(f"grow to {label(size)}"):
            self.grow(conn, size)
        conn.close()
        if "tokens" in self.only:
            with self.phase("token counting before and after"):
                self.token_counting(server)
        if "cache" in self.only:
            with self.phase("cache lookups before and after"):
                self.cache_lookups(server)

    # -- raw results (the report can be rendered again from them: --report-from) -----------------

    SAVED = ("scale", "cfg", "out", "notes", "timeline", "info", "pg_version", "total_s", "load_start",
             "load_end", "machine_text", "started_text", "only")

    def save(self, path):
        cpu, cores, mem, system = machine()
        self.machine_text = f"{cpu}, {cores} cores, {mem:.0f} GiB RAM, {system}"
        self.started_text = f"{self.started:%Y-%m-%d %H:%M %Z}"
        out = dict(self.out)
        out["e2e"] = {str(k): v for k, v in out["e2e"].items()}
        out["grow"] = {str(k): v for k, v in out["grow"].items()}
        data = {k: getattr(self, k) for k in self.SAVED}
        data["out"] = out
        Path(path).write_text(json.dumps(data, default=str))

    @classmethod
    def load(cls, path):
        data = json.loads(Path(path).read_text())
        self = cls(data["scale"] if data["scale"] in SCALES else "small")
        for k in cls.SAVED:
            setattr(self, k, data.get(k))
        self.out["e2e"] = {int(k): v for k, v in self.out["e2e"].items()}
        self.out["grow"] = {int(k): v for k, v in self.out["grow"].items()}
        return self

    # -- the report ----------------------------------------------------------------------------------

    def report(self):
        if self.only:
            return self.report_only()
        cfg = self.cfg
        sizes = cfg["sizes"]
        cols = [f"{label(s)} memories" for s in sizes]
        big = sizes[-1]

        def stat(size, fn, fmt="{:.1f}"):
            rows = self.out["e2e"][size]["rows"]
            xs = [fn(r) for r in rows]
            return f"{fmt.format(pct(xs, 50))} / {fmt.format(pct(xs, 99))}"

        def stage(name):
            return lambda r: r[f"{name}_ms"] or 0.0

        def other(r):
            return r["total_ms"] - sum((r[f"{s}_ms"] or 0.0) for s in STAGES)

        def orch(r):
            return r["total_ms"] - (r["generation_ms"] or 0.0)

        L = [SECTION, ""]
        L.append(f"`make bench-query` (RUVLLM_BENCH_SCALE={self.scale}), "
                 f"{self.started_text}; {self.machine_text}; PostgreSQL {self.pg_version}, "
                 f"ruvllm {self.info.get('extension')}, llama-cpp-python {self.info.get('llama_cpp')}. "
                 f"One run, {self.total_s / 60:.1f} min ({sum(t for _, t in self.timeline) / 60:.1f} min "
                 f"measuring, the rest waiting for a quiet machine).")
        L.append("")
        real, g_big = self.out["real"], self.out["grow"].get(big, {})
        grown = [s for s in sizes if s in self.out["grow"]]
        builds = ", ".join(f"{label(s)}: {self.out['grow'][s]['index']:.0f} s" for s in grown)
        edge_counts = ", ".join(f"{label(s)}: {self.out['grow'][s]['edges']}" for s in grown)
        L.append(f"**Data.** {real['docs']} documents (templated two- or three-sentence notes on 8 "
                 f"operations topics, plus demo/knowledge) went through `ruvllm_ingest_many`: real "
                 f"all-MiniLM-L6-v2 embeddings and real SameTopic/Follows edges ({real['nodes']} nodes, "
                 f"{real['edges']} edges, {real['secs']:.0f} s). The rest are synthetic, loaded with "
                 f"set-based SQL (binary COPY, then ingest_many's vertex+node INSERT and insert_edges' "
                 f"edge INSERT): each is a real memory's vector plus up to {MIX} of another's plus "
                 f"Gaussian noise of norm {NOISE}, renormalised (median cosine to its base "
                 f"{g_big.get('cos_base', float('nan')):.2f}), with that memory's text plus the first "
                 f"sentence of the other, and {CHAIN_LINKS} SameTopic edges (weight = cosine) to the "
                 f"previous members of its base's chain, and the vectors of its evidence units as "
                 f"ingest would store them (a unit's vector depends only on how it reads: those of the "
                 f"real memories' units, {self.out.get('units_embedded', 0)} others embedded). The HNSW index (m = 32, ef_construction = 200) "
                 f"is rebuilt after each load ({builds}); edges in all: {edge_counts}.")
        L.append("")
        L.append(f"**Method.** One client connection per memory size on 127.0.0.1 (settings as `make up`: "
                 f"shared_buffers 2GB, maintenance_work_mem 1GB); after {len(MODELS)} + {cfg['warmup']} "
                 f"warm-up calls, up to {cfg['queries']} distinct questions, `ruvllm_query(q, NULL, "
                 f"'{{\"max_tokens\": {MAX_TOKENS}}}')`, router's choice of model (the untrained router's safe "
                 f"default is the extractive tier, `ruvllm.default_model`; 5% explore the models that "
                 f"generate), cache on. Stage times "
                 f"are the witness rows' (`ruvllm_witness_flush()` first); \"other\" is total_ms minus "
                 f"the five stages (validation, model pool, cache lookups and store); client = wall time "
                 f"of the statement (also the witness hand-off, which comes after total_ms). Percentiles are p50 / p99 over "
                 f"the calls counted in the table (up to {cfg['queries']} per size, or "
                 f"{cfg['budget_s']} s; p99 ≈ the worst one or two).")
        L.append("")
        L.append(f"| measure | {' | '.join(cols)} | target |")
        L.append("| --- |" + " --- |" * len(sizes) + " --- |")

        def row(label, cells, target=""):
            L.append(f"| {label} | {' | '.join(cells)} | {target} |")

        row("end to end, client (ms) p50 / p99", [stat(s, lambda r: r["client_ms"]) for s in sizes])
        row("end to end, witness total_ms p50 / p99", [stat(s, lambda r: r["total_ms"]) for s in sizes])
        for st in STAGES:
            fmt = "{:.2f}" if st != "generation" else "{:.0f}"
            row(f"· {st}_ms p50 / p99", [stat(s, stage(st), fmt) for s in sizes])
        row("· other (total − stages) p50 / p99", [stat(s, other, "{:.2f}") for s in sizes])
        orch50 = pct([orch(r) for r in self.out["e2e"][big]["rows"]], 50)
        row("**orchestration** (total_ms − generation_ms) p50 / p99",
            [stat(s, orch, "{:.2f}") for s in sizes], f"p50 ≤ 10 ms at {label(big)}: {verdict(orch50 <= 10)}")
        row("orchestration seen by the client (client − generation_ms) p50 / p99",
            [stat(s, lambda r: r["client_ms"] - (r["generation_ms"] or 0.0), "{:.2f}") for s in sizes])
        # Older saved results have one variant, without the key: their units were embedded.
        for stored in (True, False):
            srows = [r for r in self.out["stub"]["rows"] if r.get("stored", False) == stored]
            if not srows:
                continue
            how = "unit vectors stored" if stored else "units embedded in the request (as before)"
            tot50 = pct([r["total_ms"] for r in srows], 50)
            row(f"orchestration with generation stubbed, {how} ({len(srows)} calls in one statement), "
                f"witness total_ms p50 / p99",
                ["—"] * (len(sizes) - 1) + [f"{tot50:.2f} / {pct([r['total_ms'] for r in srows], 99):.2f}"],
                f"p50 ≤ 10 ms: {verdict(tot50 <= 10)}" if stored else "")
            for st in STAGES[:4] + ("other",):
                val = pct([other(r) if st == "other" else (r[st + "_ms"] or 0.0) for r in srows], 50)
                target = ""
                if stored:
                    target = (f"≤ 4 ms: {verdict(val <= 4)}" if st == "embedding"
                              else f"≤ 3 ms: {verdict(val <= 3)}")
                row(f"· stubbed, {'stored' if stored else 'embedded'}: {st}_ms p50",
                    ["—"] * (len(sizes) - 1) + [f"{val:.2f}"], target)
        row("calls measured (semantic cache hits left out)",
            [f"{len(self.out['e2e'][s]['rows'])} ({self.out['e2e'][s]['semantic_hits']})" for s in sizes])
        row("prompt / completion tokens p50",
            [f"{pct([r['prompt_tokens'] or 0 for r in self.out['e2e'][s]['rows']], 50):.0f} / "
             f"{pct([r['completion_tokens'] or 0 for r in self.out['e2e'][s]['rows']], 50):.0f}" for s in sizes])
        row("model chosen (extractive / smollm2 / gemma)",
            [" / ".join(str(sum(r["model"] == m for r in self.out["e2e"][s]["rows"])) for m in CHOSEN)
             for s in sizes])
        c = self.out["cache"]
        crow = c["rows"]
        dash = ["—"] * (len(sizes) - 1)
        row(f"cache hit (exact, {len(crow)}/{c['asked']} hit): client / witness total_ms p50 (ms)",
            dash + [f"{pct([r['client_ms'] for r in crow], 50):.2f} / {pct([r['total_ms'] for r in crow], 50):.2f}"])
        for model, g in self.out["gen"].items():
            ratio = g["db"] / g["bare"]
            row(f"generation {model}, tokens/s in-database / bare (ratio)",
                dash + [f"{g['db']:.1f} / {g['bare']:.1f} (**{ratio:.3f}**)"],
                f"≥ 0.95: {'met' if ratio >= 0.95 else '**not met**'}")
        for what, st in self.out["rss"]:
            row(f"backend RSS, {what}: VmHWM / VmRSS (anon + file + shmem) MiB",
                dash + [f"{st['VmHWM']:.0f} / {st['VmRSS']:.0f} ({st['RssAnon']:.0f} + "
                        f"{st['RssFile']:.0f} + {st['RssShmem']:.0f})"])
        row("backend peak RSS (VmHWM) after the end-to-end run, MiB",
            [f"{self.out['e2e'][s]['hwm']:.0f}" for s in sizes])
        L.append("")
        gen_lines = []
        for model, g in self.out["gen"].items():
            gen_lines.append(f"{model}: {g['tokens']} completion tokens from a {g['prompt_tokens']}-token "
                             f"prompt, llama.cpp n_threads {g['n_threads']} on both sides "
                             f"(bare with n_threads = {os.cpu_count()}, all cores: {g['bare_all_cores']:.1f} "
                             f"tokens/s; on a busy machine the threads wait on each other)")
        L.append(f"**Generation.** `SELECT ruvllm_generate(prompt, {cfg['gen_tokens']}, model)` timed at the "
                 f"client, against `llama_cpp.Llama(model_path, n_ctx from ruvllm.models, use_mmap=True, "
                 f"n_threads=None)` in a bare python3 (same environment, OPENBLAS_NUM_THREADS=1) timed around "
                 f"the create_*completion call alone; greedy, same prompt and max_tokens, "
                 f"{cfg['gen_reps']} repeats each, interleaved, medians. " + "; ".join(gen_lines) + ".")
        L.append("")
        cum, own = self.profile_lines()
        L.append(f"**Where orchestration time goes** at {label(big)} (generation stubbed, cProfile over "
                 f"{self.out['stub']['profiled_calls']} calls, ms per call; cProfile adds overhead): "
                 f"cumulative: {cum}. Self time: {own}. The stubbed calls run in one statement "
                 f"(`bench.orchestrate`), so in one transaction: the `ruvllm.node_access` rows that "
                 f"retrieval touches again are updated again before any commit.")
        L.append("")
        ns = self.out.get("nodes_stats")
        if ns and "access_ins" in ns:
            g = self.out["grow"][big]
            L.append(f"**Writes on the read path.** Retrieval records what it returned in "
                     f"`ruvllm.node_access` (an upsert per node), not in `ruvllm.nodes`: after "
                     f"{ns['calls']} answered calls in all, node_access had {ns['access_ins']} rows "
                     f"inserted and {ns['access_upd']} updated, {ns['access_hot']} of the updates HOT "
                     f"({ns['access_mb']:.1f} MiB). ruvllm.nodes had "
                     + (f"{ns['upd']} row updates in the whole run (ingestion updates the node it "
                        f"merges a near-duplicate into), {ns['hot']} of them HOT"
                        if ns['upd'] else "no row updates in the whole run")
                     + f", {ns['dead']} dead tuples, autovacuum runs: {ns['autovacuum']}; HNSW index "
                     f"{g['index_mb']:.0f} MiB after the build, {ns['index_mb']:.0f} MiB at the end.")
            L.append("")
        L.extend(lookups.report_lines(self.out))
        fq = self.out["first_query_ms"]
        L.append("**First call in a new backend** (Python set-up, embedder, model load, checksum): "
                 + ", ".join(f"{m} {ms / 1000:.1f} s" for m, ms in fq.items()) + ".")
        L.append("")
        L.append(f"Load average (1/5/15 min) at the start {'/'.join(f'{x:.1f}' for x in self.load_start)}, "
                 f"at the end {'/'.join(f'{x:.1f}' for x in self.load_end)} "
                 f"({os.cpu_count()} cores; other work on the machine shows here).")
        L.append("")
        L.append("Time by phase: " + ", ".join(f"{n} {s:.0f} s" for n, s in self.timeline) + ".")
        for n in self.notes:
            L.append("")
            L.append(n)
        return "\n".join(L).rstrip() + "\n"


def verdict(ok):
    return "met" if ok else "**not met**"


def _report_only(self):
    """--only's report: its phases' lines, marked as a subset (never recorded)."""
    L = [SECTION + f" (subset: {', '.join(sorted(self.only))})", "", results.SUBSET_MARK, ""]
    L.append(f"RUVLLM_BENCH_SCALE={self.scale}, {self.started_text}; {self.machine_text}; "
             f"{label(self.cfg['sizes'][0])} memories; {self.total_s / 60:.1f} min.")
    L.append("")
    L.extend(lookups.report_lines(self.out))
    L.append("Time by phase: " + ", ".join(f"{n} {s:.0f} s" for n, s in self.timeline) + ".")
    return "\n".join(L).rstrip() + "\n"


Bench.report_only = _report_only


def record(report_path, results_path):
    """Replace (or add) this benchmark's section of bench/RESULTS.md; other sections are kept."""
    results.record_section(SECTION, report_path, results_path)


def main():
    def options(ap):
        ap.add_argument("--raw", help="also write the raw results (JSON) to this file")
        ap.add_argument("--report-from", metavar="RAW", help="print the report of a --raw file and exit")
        ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
        ap.add_argument("--only", help="run only these phases (comma-separated: cache, tokens) on the "
                                       "first memory size; the report is printed, never recorded")
    args, scale = cli("query", __doc__, record, SCALES, options)
    if args.bare:
        bare_main()
        return
    if args.report_from:
        print_report(Bench.load(args.report_from).report(), args.out)
        return
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= {"cache", "tokens"}:
        raise SystemExit(f"bench/query: --only takes cache and tokens, not {args.only!r}")
    bench = Bench(scale, only)
    bench.run()
    if args.raw:
        bench.save(args.raw)
    print_report(bench.report(), args.out)


if __name__ == "__main__":
    main()
