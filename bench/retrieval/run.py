#!/usr/bin/env python3
"""bench/retrieval: does ruvllm_search find the evidence? Measured on the PostgreSQL 17 manual.

    make bench-retrieval                               # quality on the slice, latency at 10K and 100K
    RUVLLM_BENCH_SCALE=small make bench-retrieval      # 40 questions, latency at 10K only, not recorded

Memory is the slice of the manual bench/answers uses (bench/pgdocs.py; restored from
.ruvllm/pgdocs-cache when an earlier run of either bench left it there). The questions are the
answerable ones of bench/answers/questions.jsonl, and a question's relevant document is its gold
section: a result is relevant when its `source` is that section ("page.html#SECTION-ID"; every
chunk of a section has it). For each search mode, side by side on the same questions:
recall@10 (a relevant result among the first 10 rows), MRR and nDCG@10 (binary gains; a section
counts once, at its first row):

  dense h0, dense h2   ruvllm_search(q, 10, hops, mode => 'dense') (on a build without modes: the
                       three-argument call, which is dense)
  lexical, hybrid h0, hybrid h2
                       mode => 'lexical' / 'hybrid'; "not available" on a build without them

Then the tenant is padded with synthetic nodes to 10K and 100K (each a real chunk's words shuffled,
with its embedding moved as bench/query moves its synthetic memories, and SameTopic edges along a
chain), and each mode's search is timed in the backend (clock_timestamp around the call in
PL/pgSQL, the question's embedding included), and again without the embedding (the question's
vector computed first, memory.search_vector alone timed in PL/Python): p50 and p99 over the
questions. Quality is measured on the slice alone, before padding: the synthetic copies would
only compete with their originals.
"""
import json
import os
import random
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
import pgdocs  # noqa: E402
import qa_metrics as M  # noqa: E402
import results  # noqa: E402
from common import Server, cli, log, machine, make_up_settings, print_report  # noqa: E402

import numpy as np  # noqa: E402

SECTION = "## bench/retrieval"
K = 10
# (name, mode argument or None for the three-argument call, hops)
MODES = (("dense h0", "dense", 0), ("dense h2", "dense", 2), ("lexical", "lexical", 0),
         ("hybrid h0", "hybrid", 0), ("hybrid h2", "hybrid", 2))
SCALES = {"small": dict(questions=40, sizes=(10_000,)),
          "default": dict(questions=None, sizes=(10_000, 100_000))}
# How access recording and the graph walk are done, each kept switchable, timed side by side in
# the same run (without the embedding, on the hybrid searches): (name, the statements that set it).
_HOPS = "SELECT bench.hops_in_one_statement({})"
VARIANTS = (("access queued, a statement a hop", "RESET ruvllm.witness_async; " + _HOPS.format(False)),
            ("access in the request, a statement a hop",
             "SET ruvllm.witness_async = off; " + _HOPS.format(False)),
            ("access queued, two hops in one statement", "RESET ruvllm.witness_async; " + _HOPS.format(True)),
            ("access in the request, two hops in one statement",
             "SET ruvllm.witness_async = off; " + _HOPS.format(True)))
VARIANTS_NOTE = ("access queued: the node ids go to the witness queue and its writer upserts "
                 "`ruvllm.node_access` (`ruvllm.witness_async` on); in the request: the upsert in the "
                 "caller's statement (off; as before the queue took it). A statement a hop, or the "
                 "first two hops in one (`memory.HOPS_IN_ONE_STATEMENT`). Interleaved: each question "
                 "is searched once untimed, then by each variant, in an order that rotates from one "
                 "question to the next, so neither load that comes and goes nor warm caches favour one.")
VARIANT_MODES = ("hybrid h0", "hybrid h2")
TARGET_RECALL_X = 1.3
TARGET_P50_MS = 10.0
MIX, NOISE, CHAIN_LINKS = 0.3, 0.3, 3   # as bench/query's synthetic memories

TIMED_SQL = """
CREATE SCHEMA bench;
CREATE TABLE bench.stage (id uuid PRIMARY KEY, embedding vector(384) NOT NULL, content text NOT NULL);
CREATE TABLE bench.edge_stage (src uuid NOT NULL, dst uuid NOT NULL, weight real NOT NULL);
-- One search timed inside the backend; the mode branch is planned only when it runs, so this
-- compiles on a build whose ruvllm_search has no mode argument.
CREATE FUNCTION bench.timed_search(q text, k int, h int, m text) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); n int;
BEGIN
    IF m IS NULL THEN
        SELECT count(*) INTO n FROM ruvllm_search(q, k, h);
    ELSE
        SELECT count(*) INTO n FROM ruvllm_search(q, k, h, mode => m);
    END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
-- The same search without the embedding: the question's vector is computed first (the argument)
-- and memory.search_vector alone is timed, in the backend too. Only called on a build with modes.
CREATE FUNCTION bench.timed_search_vector(q text, v vector, k int, h int, m text) RETURNS float8
LANGUAGE plpython3u AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import time
from ruvllm import memory, sqlglue
vec = sqlglue.parse_vector(v)
t0 = time.perf_counter()
memory.search_vector(plpy, vec, k, h, query=q, mode=m)
return (time.perf_counter() - t0) * 1000
$$;
-- Sets memory.HOPS_IN_ONE_STATEMENT in this backend (NULL: leaves it); returns what it was.
CREATE FUNCTION bench.hops_in_one_statement(v boolean) RETURNS boolean
LANGUAGE plpython3u AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import memory
was = memory.HOPS_IN_ONE_STATEMENT
if v is not None:
    memory.HOPS_IN_ONE_STATEMENT = v
return was
$$;
CREATE FUNCTION bench.timed_embed(q text) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); v vector;
BEGIN
    v := ruvllm_embed(q);
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
"""
# bench/query's LOAD_NODES_SQL and LOAD_EDGES_SQL (memory.ingest_many's and graph.insert_edges's
# statement shapes), here into tenant pgdocs.
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
    SELECT id, embedding, content, 'Document', 'bench/retrieval:synthetic', %s, '{"version": 1}', gid, '{}'
      FROM input"""
LOAD_EDGES_SQL = """
    INSERT INTO ruvllm_graph."SameTopic" (start_id, end_id, properties)
    SELECT s.graph_id, d.graph_id,
           pg_catalog.jsonb_build_object('weight', e.weight, 'confidence', 1.0,
               'created_by', 'bench', 'created_at', pg_catalog.now())::text::ag_catalog.agtype
      FROM bench.edge_stage e
      JOIN ruvllm.nodes s ON s.id = e.src
      JOIN ruvllm.nodes d ON d.id = e.dst"""


def extra_args(ap):
    ap.add_argument("--questions", type=int, help="answerable questions (spread over the list)")
    ap.add_argument("--sizes", help="comma list of memory sizes for the latency runs (default 10000,100000)")
    ap.add_argument("--chunks", type=int, default=pgdocs.DEFAULT_CHUNKS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache-dir", default=str(pgdocs.REPO / ".ruvllm" / "pgdocs-cache"))
    ap.add_argument("--raw", help="also write the rankings and timings as JSON to this file")


def vector_bytes(v):
    return struct.pack(">HH", len(v), 0) + np.ascontiguousarray(v, dtype=">f4").tobytes()


class Bench:
    def __init__(self, args, scale):
        self.args = args
        cfg = SCALES[scale]
        n = args.questions if args.questions is not None else cfg["questions"]
        self.sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else cfg["sizes"]
        self.all_questions = pgdocs.load_questions()
        answerable = [q for q in self.all_questions if q["answerable"]]
        if n is None or n >= len(answerable):
            self.questions = answerable
        else:
            step = len(answerable) / n
            self.questions = [answerable[int(i * step)] for i in range(n)]
        self.subset = (args.questions is not None or args.sizes is not None) or scale != "default"
        self.quality = {}     # mode name -> {recall, mrr, ndcg} or a string why not
        self.rankings = {}
        self.latency = {}     # size -> mode name -> {p50, p99} or a string
        self.embed_ms = {}
        self.facts = {}

    def available(self, conn):
        """Mode name -> None when it runs here, else why not. Dense without a mode argument is
        the three-argument call."""
        out = {}
        self.has_modes = True
        try:
            conn.execute("SELECT count(*) FROM ruvllm_search('probe', 1, 0, mode => 'dense')")
        except Exception:
            self.has_modes = False
        for name, mode, hops in MODES:
            if mode == "dense" or self.has_modes:
                out[name] = None
                if self.has_modes and mode != "dense":
                    try:
                        conn.execute("SELECT count(*) FROM ruvllm_search('probe', 1, 0, mode => %s)", (mode,))
                    except Exception as e:
                        out[name] = f"not available on this build ({str(e).splitlines()[0]})"
            else:
                out[name] = "not available on this build (ruvllm_search has no mode argument)"
        return out

    def search_sql(self, mode):
        if mode is None or (mode == "dense" and not self.has_modes):
            return "SELECT source FROM ruvllm_search(%s, %s, %s)", False
        return "SELECT source FROM ruvllm_search(%s, %s, %s, mode => %s)", True

    def measure_quality(self, conn, why):
        for name, mode, hops in MODES:
            if why[name]:
                self.quality[name] = why[name]
                continue
            sql, with_mode = self.search_sql(mode)
            recall, rr, ndcg, ranks = [], [], [], []
            for q in self.questions:
                params = (q["question"], K, hops) + ((mode,) if with_mode else ())
                ranked = [r[0] for r in conn.execute(sql, params).fetchall()][:K]
                rel = {q["source"]}
                recall.append(M.recall_at(ranked, rel, K))
                rr.append(M.mrr(ranked, rel))
                ndcg.append(M.ndcg_at(ranked, rel, K))
                ranks.append(ranked)
            self.rankings[name] = ranks
            self.quality[name] = {"recall": float(np.mean(recall)), "mrr": float(np.mean(rr)),
                                  "ndcg": float(np.mean(ndcg))}
            log(f"{name}: recall@10 {self.quality[name]['recall']:.2f}")

    def grow(self, conn, target, rng):
        have = conn.execute("SELECT count(*) FROM ruvllm.nodes WHERE tenant = %s",
                            (pgdocs.TENANT,)).fetchone()[0]
        n = target - have
        if n <= 0:
            return have
        if not hasattr(self, "real"):
            rows = conn.execute("SELECT id, embedding::real[], content FROM ruvllm.nodes "
                                "WHERE tenant = %s AND source <> 'bench/retrieval:synthetic' ORDER BY id",
                                (pgdocs.TENANT,)).fetchall()
            self.real = ([r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float32),
                         [r[2] for r in rows])
            self.chain_tail = list(self.real[0])
        ids_real, vecs, texts = self.real
        base = rng.integers(0, len(ids_real), n)
        other = rng.integers(0, len(ids_real), n)
        noise = rng.standard_normal((n, vecs.shape[1])).astype(np.float32)
        noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
        new = vecs[base] + rng.uniform(0, MIX, (n, 1)).astype(np.float32) * vecs[other] + noise
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        ids = [uuid.uuid4() for _ in range(n)]
        edges = []
        pyrng = random.Random(int(rng.integers(1 << 30)))
        for j in range(n):
            b = int(base[j])
            edges.append((self.chain_tail[b], ids[j], float(0.6 + 0.4 * pyrng.random())))
            self.chain_tail[b] = ids[j]
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("TRUNCATE bench.stage, bench.edge_stage")
            with cur.copy("COPY bench.stage (id, embedding, content) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["uuid", "bytea", "text"])
                for j in range(n):
                    words = texts[int(base[j])].split()
                    pyrng.shuffle(words)
                    cp.write_row((ids[j], vector_bytes(new[j]), " ".join(words)))
            with cur.copy("COPY bench.edge_stage (src, dst, weight) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["uuid", "uuid", "float4"])
                for e in edges:
                    cp.write_row(e)
        indexdef = conn.execute("SELECT pg_get_indexdef('ruvllm.nodes_embedding_hnsw'::regclass)").fetchone()[0]
        conn.execute("DROP INDEX ruvllm.nodes_embedding_hnsw")
        conn.execute(LOAD_NODES_SQL, (pgdocs.TENANT,))
        conn.execute(LOAD_EDGES_SQL)
        conn.execute(indexdef)
        # A build that keeps term statistics for lexical scoring counts the padded rows too.
        if conn.execute("SELECT to_regprocedure('ruvllm._rebuild_lexical_stats()') IS NOT NULL").fetchone()[0]:
            conn.execute("SELECT ruvllm._rebuild_lexical_stats()")
        conn.execute("VACUUM ANALYZE ruvllm.nodes")
        for lab in ("Node", "SameTopic", "Follows"):
            conn.execute(f'ANALYZE ruvllm_graph."{lab}"')
        total = conn.execute("SELECT count(*) FROM ruvllm.nodes WHERE tenant = %s",
                             (pgdocs.TENANT,)).fetchone()[0]
        log(f"padded to {total} nodes in {time.perf_counter() - t0:.0f} s")
        # A lexical index that ingestion fills (not the table itself) would miss rows loaded
        # this way: say so in the report.
        tsv = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'ruvllm.nodes'::regclass "
            "AND atttypid = 'tsvector'::regtype AND NOT attisdropped")]
        for col in tsv:
            missing = conn.execute(f'SELECT count(*) FROM ruvllm.nodes WHERE "{col}" IS NULL').fetchone()[0]
            if missing:
                self.facts.setdefault("notes", []).append(
                    f"ruvllm.nodes.{col} is NULL for {missing} padded rows: lexical timings at {target} "
                    "search fewer rows than a real memory of that size would have.")
        return total

    def measure_latency(self, conn, size, why):
        out = {}
        conn.execute("SELECT bench.timed_embed('warm up')")
        emb = [conn.execute("SELECT bench.timed_embed(%s)", (q["question"],)).fetchone()[0]
               for q in self.questions]
        self.embed_ms[size] = {"p50": M.percentile(emb, 50), "p99": M.percentile(emb, 99)}
        for name, mode, hops in MODES:
            if why[name]:
                out[name] = why[name]
                continue
            m = mode if self.has_modes else None
            conn.execute("SELECT bench.timed_search(%s, %s, %s, %s)", (self.questions[0]["question"], K, hops, m))
            ms = [conn.execute("SELECT bench.timed_search(%s, %s, %s, %s)",
                               (q["question"], K, hops, m)).fetchone()[0] for q in self.questions]
            out[name] = {"p50": M.percentile(ms, 50), "p99": M.percentile(ms, 99)}
            if self.has_modes:
                timed = "SELECT bench.timed_search_vector(%s, ruvllm_embed(%s), %s, %s, %s)"
                conn.execute(timed, (self.questions[0]["question"],) * 2 + (K, hops, mode))
                ms = [conn.execute(timed, (q["question"],) * 2 + (K, hops, mode)).fetchone()[0]
                      for q in self.questions]
                out[name].update(search_p50=M.percentile(ms, 50), search_p99=M.percentile(ms, 99))
            log(f"{size}: {name} p50 {out[name]['p50']:.1f} ms, without the embedding "
                f"{out[name].get('search_p50', float('nan')):.1f} ms")
        if self.has_modes:
            timed = "SELECT bench.timed_search_vector(%s, ruvllm_embed(%s), %s, %s, %s)"
            for name, mode, hops in MODES:
                if name not in VARIANT_MODES or why[name]:
                    continue
                runs = {v: [] for v, _ in VARIANTS}
                default = conn.execute("SELECT bench.hops_in_one_statement(NULL)").fetchone()[0]
                try:
                    for i, q in enumerate(self.questions):
                        args = (q["question"],) * 2 + (K, hops, mode)
                        conn.execute(timed, args)   # untimed: every variant finds the caches warm
                        for variant, setup in VARIANTS[i % len(VARIANTS):] + VARIANTS[:i % len(VARIANTS)]:
                            conn.execute(setup)
                            runs[variant].append(conn.execute(timed, args).fetchone()[0])
                finally:
                    conn.execute("RESET ruvllm.witness_async")
                    conn.execute("SELECT bench.hops_in_one_statement(%s)", (default,))
                for variant, ms in runs.items():
                    out[name][variant] = {"p50": M.percentile(ms, 50), "p99": M.percentile(ms, 99)}
                    log(f"{size}: {name}, {variant} (interleaved), without the embedding "
                        f"p50 {out[name][variant]['p50']:.1f} ms")
        self.latency[size] = out

    def run(self):
        settings = make_up_settings()
        settings["ruvllm.inference"] = "'in_process'"   # no generation here: no llama-servers
        rng = np.random.default_rng(7)
        with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
            os.chmod(tmp, 0o755)
            server = Server(tmp, name="bench/retrieval")
            server.start(settings)
            try:
                sources = [q["source"] for q in self.all_questions if q["source"]]
                self.facts["corpus"] = pgdocs.build_memory(
                    server, "pgdocs", sources, self.args.chunks, self.args.jobs,
                    self.args.cache_dir or None, log=log)
                with server.connect("pgdocs") as conn:
                    conn.execute("SELECT set_config('ruvllm.tenant', %s, false)", (pgdocs.TENANT,))
                    conn.execute(TIMED_SQL)
                    why = self.available(conn)
                    self.measure_quality(conn, why)
                    for size in self.sizes:
                        self.facts.setdefault("sizes", {})[size] = self.grow(conn, size, rng)
                        self.measure_latency(conn, size, why)
            finally:
                server.stop(check=False)

    def report(self):
        cpu, cores, mem, kernel = machine()
        c = self.facts.get("corpus", {})
        lines = [SECTION, ""]
        if self.subset:
            lines += [results.SUBSET_MARK, ""]
        lines += [
            f"`make bench-retrieval`, {time.strftime('%Y-%m-%d')}, {cpu}, {cores} cores, {mem:.0f} GiB, "
            f"{kernel}; load average at the end {os.getloadavg()[0]:.1f}.", "",
            f"Memory: {c.get('pages')} pages of the PostgreSQL 17 manual, {c.get('sections')} sections, "
            f"{c.get('nodes')} nodes (tenant `{pgdocs.TENANT}`). Questions: {len(self.questions)} "
            "answerable questions of bench/answers/questions.jsonl; relevant = the gold section.", "",
            "| mode | recall@10 | MRR | nDCG@10 |", "| --- | --- | --- | --- |"]
        for name, _mode, _h in MODES:
            q = self.quality.get(name)
            if isinstance(q, dict):
                lines.append(f"| {name} | {q['recall']:.2f} | {q['mrr']:.2f} | {q['ndcg']:.2f} |")
            else:
                lines.append(f"| {name} | {q or 'not run'} | | |")
        lines += ["", "Search in the backend (ms; the question's embedding included):", "",
                  "| mode | " + " | ".join(f"{s // 1000}K p50 | {s // 1000}K p99" for s in self.sizes) + " |",
                  "| --- |" + " --- | --- |" * len(self.sizes)]
        lines.append("| (ruvllm_embed alone) | " + " | ".join(
            f"{self.embed_ms[s]['p50']:.1f} | {self.embed_ms[s]['p99']:.1f}" if s in self.embed_ms else "— | —"
            for s in self.sizes) + " |")
        for name, _mode, _h in MODES:
            cells = []
            for s in self.sizes:
                v = self.latency.get(s, {}).get(name)
                cells.append(f"{v['p50']:.1f} | {v['p99']:.1f}" if isinstance(v, dict) else "n/a | n/a")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "The same searches without the embedding (ms; the question's vector computed first, "
                  "memory.search_vector alone timed in the backend):", "",
                  "| mode | " + " | ".join(f"{s // 1000}K p50 | {s // 1000}K p99" for s in self.sizes) + " |",
                  "| --- |" + " --- | --- |" * len(self.sizes)]
        for name, _mode, _h in MODES:
            cells = []
            for s in self.sizes:
                v = self.latency.get(s, {}).get(name)
                cells.append(f"{v['search_p50']:.1f} | {v['search_p99']:.1f}"
                             if isinstance(v, dict) and "search_p50" in v else "n/a | n/a")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if any(isinstance(self.latency.get(s, {}).get(n), dict) and VARIANTS[0][0] in self.latency[s][n]
               for s in self.sizes for n in VARIANT_MODES):
            lines += ["", "Access recording and the graph walk, side by side in the same run (ms, without "
                      "the embedding): " + VARIANTS_NOTE, "",
                      "| mode | " + " | ".join(f"{s // 1000}K p50 | {s // 1000}K p99" for s in self.sizes) + " |",
                      "| --- |" + " --- | --- |" * len(self.sizes)]
            for name in VARIANT_MODES:
                for variant, _ in VARIANTS:
                    cells = []
                    for s in self.sizes:
                        v = self.latency.get(s, {}).get(name)
                        v = v.get(variant) if isinstance(v, dict) else None
                        cells.append(f"{v['p50']:.1f} | {v['p99']:.1f}" if isinstance(v, dict) else "n/a | n/a")
                    lines.append(f"| {name}, {variant} | " + " | ".join(cells) + " |")
        lines += ["", "Targets (issue 15):", "", "| target | measured | |", "| --- | --- | --- |"]
        d = self.quality.get("dense h0")
        hybrids = [self.quality[n] for n in ("hybrid h0", "hybrid h2") if isinstance(self.quality.get(n), dict)]
        if isinstance(d, dict) and hybrids:
            best = max(hybrids, key=lambda x: x["recall"])
            x = best["recall"] / d["recall"] if d["recall"] else float("inf")
            lines.append(f"| hybrid recall@10 ≥ {TARGET_RECALL_X}× dense | {best['recall']:.2f} vs "
                         f"{d['recall']:.2f} ({x:.2f}×) | {'pass' if x >= TARGET_RECALL_X else 'miss'} |")
        else:
            lines.append(f"| hybrid recall@10 ≥ {TARGET_RECALL_X}× dense | hybrid not available | n/a |")
        big = max(self.sizes) if self.sizes else None
        hl = self.latency.get(big, {}).get("hybrid h2") if big else None
        if isinstance(hl, dict):
            lines.append(f"| hybrid p50 ≤ {TARGET_P50_MS:.0f} ms at {big // 1000}K (h2, embedding included) | "
                         f"{hl['p50']:.1f} ms | {'pass' if hl['p50'] <= TARGET_P50_MS else 'miss'} |")
            if "search_p50" in hl:
                lines.append(f"| hybrid p50 ≤ {TARGET_P50_MS:.0f} ms at {big // 1000}K (h2, without the embedding) | "
                             f"{hl['search_p50']:.1f} ms | {'pass' if hl['search_p50'] <= TARGET_P50_MS else 'miss'} |")
        else:
            lines.append(f"| hybrid p50 ≤ {TARGET_P50_MS:.0f} ms at 100K | hybrid not available"
                         f"{'' if big == 100_000 else ' (100K not run)'} | n/a |")
        for note in self.facts.get("notes", []):
            lines += ["", note]
        return "\n".join(lines) + "\n"

    def raw(self):
        return {"facts": self.facts, "quality": self.quality, "latency": self.latency,
                "embed_ms": self.embed_ms, "questions": [q["id"] for q in self.questions],
                "rankings": self.rankings}


def record(report_path, results_path):
    return results.record_section(SECTION, report_path, results_path)


def main():
    args, scale = cli("retrieval", __doc__, record, SCALES, extra=extra_args)
    bench = Bench(args, scale)
    bench.run()
    print_report(bench.report(), args.out)
    if args.raw:
        Path(args.raw).write_text(json.dumps(bench.raw(), indent=1, default=str))


if __name__ == "__main__":
    main()
