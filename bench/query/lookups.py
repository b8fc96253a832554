"""bench/query's measures of two request-path stages, each side by side with what it replaced:

  * response-cache lookups (exact and semantic) at CACHED answers in ruvllm.response_cache,
    timed in the backend around cache.lookup_exact / cache.lookup_semantic, hits and misses,
    with the plans PostgreSQL chose (EXPLAIN ANALYZE of the same statement as a generic plan,
    which is what PL/Python's saved plans become);
  * the token-counting stage of attention: tokenizer calls, texts tokenised and milliseconds per
    request, with the request's texts counted in one count_tokens_many (the backend's LRU of
    counts) and with 0.3.0's counting (query.PER_TEXT_TOKEN_COUNTS: each text when it is needed,
    by llama_cpp.Llama.tokenize, no cache), on the same number of distinct questions.

Used by run.py (phases `cache` and `tokens`; `--only cache,tokens` runs just these).
"""
import hashlib
import json
import re
import time

import numpy as np
from psycopg import sql as psql

DIM = 384
# Shares of the cached answers: most under the constraints the probes use, the rest under
# others and in other tenants, so the semantic lookup's filters have rows to skip.
OTHER_CONSTRAINTS = ('{"max_tokens":64}', '{"model":"gemma-3-270m"}')
OTHER_TENANTS = ("tenant-a", "tenant-b")
PROBE_CONSTRAINTS = '{"max_tokens":32}'
MIN_SIMILARITY = 0.97   # ruvllm.cache_similarity's default
# A semantic hit probe: a cached question's vector moved by this much noise (cosine ~0.99).
HIT_NOISE = 0.1
_SPACE = re.compile(r"\s+")

# The statements before issue 16 (python/ruvllm/cache.py at 64457c9), kept to time side by side.
BEFORE = {
    "exact": """
        SELECT id, response::text AS response, 1.0::float8 AS similarity
          FROM ruvllm.response_cache
         WHERE tenant = $1 AND query_hash = $2 AND constraints_key = $3
           AND expires_at > pg_catalog.clock_timestamp()
         ORDER BY created_at DESC LIMIT 1""",
    "semantic": """
        SELECT id, response::text AS response,
               1 - (query_embedding OPERATOR(public.<=>) $2) AS similarity
          FROM ruvllm.response_cache
         WHERE tenant = $1 AND constraints_key = $3 AND expires_at > pg_catalog.clock_timestamp()
         ORDER BY query_embedding OPERATOR(public.<=>) $2
         LIMIT 1""",
}

SETUP_SQL = """
CREATE TABLE bench.cache_stage (tenant text, query text, query_hash text, constraints_key text,
                                embedding vector(384), response text);
-- Cache lookups in the backend, one statement for all probes: kind exact | semantic, how
-- before | after | iterative (after: ruvllm's cache module as it is; before: BEFORE's
-- statements; iterative: after, under pgvector 0.8's hnsw.iterative_scan = strict_order).
CREATE FUNCTION bench.cache_lookups(kind text, how text, before_sql text, hashes text[],
                                    ckeys text[], vecs real[], min_similarity float8, tenant text)
RETURNS jsonb
LANGUAGE plpython3u SET search_path = pg_catalog, pg_temp AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json, time
import numpy as np
from psycopg import sql as psql
from ruvllm import cache, sqlglue
n = len(ckeys)
vectors = np.asarray(vecs, dtype=np.float32).reshape(n, 384) if vecs else None
if how == "before":
    # Kept for the session, as cache.py keeps its plans.
    plan = GD.get(("bench before", before_sql))
    if plan is None:
        types = ["text", "text", "text"] if kind == "exact" else ["text", "public.vector", "text"]
        plan = GD[("bench before", before_sql)] = plpy.prepare(before_sql, types)
if how == "iterative":
    iterative = GD.get("bench iterative")
    if iterative is None:
        iterative = GD["bench iterative"] = plpy.prepare(
            "SELECT pg_catalog.set_config('hnsw.iterative_scan', 'strict_order', true)")
out = []
for i in range(n):
    t0 = time.perf_counter()
    if how in ("after", "iterative"):
        if how == "iterative":
            plpy.execute(iterative)
        if kind == "exact":
            hit = cache.lookup_exact(plpy, tenant, hashes[i], ckeys[i])
        else:
            hit = cache.lookup_semantic(plpy, tenant, vectors[i], ckeys[i], min_similarity)
    else:
        if kind == "exact":
            rows = plpy.execute(plan, [tenant, hashes[i], ckeys[i]])
        else:
            rows = plpy.execute(plan, [tenant, sqlglue.vector_literal(vectors[i]), ckeys[i]])
        hit = None
        if rows and float(rows[0]["similarity"]) >= min_similarity:
            hit = json.loads(rows[0]["response"])
            hit["cache_id"] = rows[0]["id"]
    out.append({"ms": (time.perf_counter() - t0) * 1000, "hit": hit is not None,
                "id": None if hit is None else hit["cache_id"]})
return json.dumps(out)
$$;
-- The token-counting stage of attention, generation stubbed: how = after (the request's texts
-- in one count_tokens_many, the backend's LRU) or before (0.3.0's: query.PER_TEXT_TOKEN_COUNTS,
-- each text counted when needed by Llama.tokenize, no cache). Per request: the pipeline's
-- calls of the backend, tokenizer calls, texts tokenised, and ms in them.
CREATE FUNCTION bench.token_counting(qs text[], how text, warm_models text[]) RETURNS jsonb
LANGUAGE plpython3u SET search_path = pg_catalog, pg_temp AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json, time
from ruvllm import generation, query as pipeline

class Counting(generation.GenerationBackend):
    def __init__(self, how):
        self.real = generation.default_backend()
        self.max_loaded = self.real.max_loaded
        self.how = how
        self.reset()
    def reset(self):
        self.calls = self.tokenizer_calls = self.texts = 0
        self.ms = 0.0
    def count_tokens(self, model, text):
        # before: 0.3.0's LlamaCppBackend.count_tokens, asked one text at a time (no cache)
        t0 = time.perf_counter()
        self.calls += 1
        self.tokenizer_calls += 1
        self.texts += 1
        n = len(self.real._llama(model).tokenize(text.encode("utf-8"), add_bos=False, special=False))
        self.ms += (time.perf_counter() - t0) * 1000
        return n
    def count_tokens_many(self, model, texts):
        if self.how == "before":
            return [self.count_tokens(model, t) for t in texts]
        t0 = time.perf_counter()
        self.calls += 1
        counts = self.real.token_counts
        calls, done = counts.calls, counts.texts
        out = self.real.count_tokens_many(model, texts)
        self.tokenizer_calls += counts.calls - calls
        self.texts += counts.texts - done
        self.ms += (time.perf_counter() - t0) * 1000
        return out
    def generate(self, model, prompt, **kw):
        return generation.GenerationResult("(stub)", 0, 0, 0.0, "stop")

stub = Counting(how)
constraints = json.dumps({"max_tokens": 31})
# Not counted: each model loaded (and its tokenizer ready) before the first measured request;
# abstention off for this statement's transaction, so the warm-up question is answered.
if warm_models:
    plpy.execute("SELECT pg_catalog.set_config('ruvllm.abstain_below', '0', true)")
for name in warm_models or ():
    pipeline.run(plpy, "Which models does the bench load first?", None,
                 json.dumps({"max_tokens": 31, "model": name}), backend=stub)
calls = []
for q in qs:
    stub.reset()
    t0 = time.perf_counter()
    pipeline.PER_TEXT_TOKEN_COUNTS = how == "before"
    try:
        r = pipeline.run(plpy, q, None, constraints, backend=stub)
    finally:
        pipeline.PER_TEXT_TOKEN_COUNTS = False
    calls.append({"ms": (time.perf_counter() - t0) * 1000, "request_id": r["request_id"],
                  "cache_hit": bool(r.get("cache_hit")), "count_calls": stub.calls,
                  "tokenizer_calls": stub.tokenizer_calls, "texts": stub.texts,
                  "count_ms": stub.ms, "model": (r.get("routing") or {}).get("model"),
                  "latency_ms": r.get("latency_ms")})
return json.dumps(calls)
$$;
"""

FILL_SQL = """
    INSERT INTO ruvllm.response_cache (tenant, query, query_hash, constraints_key, query_embedding,
                                       response, request_id, expires_at)
    SELECT tenant, query, query_hash, constraints_key, embedding, response::jsonb,
           gen_random_uuid(), now() + interval '1 day'
      FROM bench.cache_stage"""


def query_hash(q):
    """cache.query_hash's value (the bench does not import the package's plpy-side modules)."""
    return hashlib.sha256(_SPACE.sub(" ", q.strip().lower()).encode("utf-8")).hexdigest()


def fake_answer(q, excerpts):
    """An entry of the size cache.store writes: text, confidence, three sources, routing."""
    return json.dumps({
        "request_id": "00000000-0000-0000-0000-000000000000", "text": f"An answer to: {q} [1]",
        "confidence": 0.8, "grounded": True, "abstained": False,
        "sources": [{"id": "00000000-0000-0000-0000-00000000000%d" % i, "excerpt": e[:200],
                     "score": 0.3, "hop": 0, "distance": 0.2, "evidence": [e[:120]]}
                    for i, e in enumerate(excerpts)],
        "routing": {"model": "smollm2-135m-instruct", "context_size": 256, "temperature": 0.3,
                    "top_p": 0.9, "confidence": 0.7, "used_default": False, "explored": False,
                    "policy_version": 1}, "cache_hit": False})


def fill_cache(conn, rng, real_vecs, real_texts, n, vector_bytes):
    """n cached answers (80% under PROBE_CONSTRAINTS in the default tenant, 5% in each of
    OTHER_TENANTS); returns what the probes need: {tenant: [(query_hash, vector)]} of those
    under PROBE_CONSTRAINTS."""
    conn.execute("TRUNCATE ruvllm.response_cache")
    base = rng.integers(0, len(real_vecs), n)
    vecs = real_vecs[base] + rng.standard_normal((n, DIM)).astype(np.float32) * (0.5 / np.sqrt(DIM))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = vecs.astype(np.float32)
    probe_rows = {}
    with conn.cursor() as cur:
        cur.execute("TRUNCATE bench.cache_stage")
        with cur.copy("COPY bench.cache_stage FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["text", "text", "text", "text", "bytea", "text"])
            for j in range(n):
                u = rng.random()
                tenant = OTHER_TENANTS[j % 2] if u < 0.1 else ""
                ckey = OTHER_CONSTRAINTS[j % 2] if 0.1 <= u < 0.2 else PROBE_CONSTRAINTS
                q = f"Cached question {j} about {real_texts[base[j]][:60]}?"
                h = query_hash(q)
                excerpts = [real_texts[(base[j] + i) % len(real_texts)] for i in range(3)]
                cp.write_row((tenant, q, h, ckey, vector_bytes(vecs[j]), fake_answer(q, excerpts)))
                if ckey == PROBE_CONSTRAINTS:
                    probe_rows.setdefault(tenant, []).append((h, vecs[j]))
    conn.execute(FILL_SQL)
    conn.execute("VACUUM ANALYZE ruvllm.response_cache")
    return probe_rows


def probes(rng, rows, n):
    """(exact hit, exact miss, semantic hit, semantic miss) probes: (hashes, vectors) each."""
    pick = rng.choice(len(rows), n, replace=False)
    hashes = [rows[i][0] for i in pick]
    near = np.array([rows[i][1] for i in pick]) + rng.standard_normal((n, DIM)).astype(np.float32) \
        * (HIT_NOISE / np.sqrt(DIM))
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    far = rng.standard_normal((n, DIM)).astype(np.float32)
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    missing = [hashlib.sha256(b"absent %d" % i).hexdigest() for i in range(n)]
    return {"exact hit": (hashes, None), "exact miss": (missing, None),
            "semantic hit": (None, near.astype(np.float32)), "semantic miss": (None, far.astype(np.float32))}


def time_lookups(conn, kind, how, hashes, vecs, tenant=""):
    n = len(hashes) if hashes is not None else len(vecs)
    flat = [] if vecs is None else [float(x) for x in vecs.reshape(-1)]
    r = conn.execute("SELECT bench.cache_lookups(%s, %s, %s, %s::text[], %s::text[], %s::real[], %s, %s)",
                     [kind, how, BEFORE[kind], hashes or [""] * n, [PROBE_CONSTRAINTS] * n, flat,
                      MIN_SIMILARITY, tenant]).fetchone()[0]
    return r


def plans(conn, sql_by_name, params_by_name):
    """EXPLAIN (ANALYZE, BUFFERS) of each statement as a generic plan (PL/Python's saved plans
    become generic after five executions when that is not costlier; forcing it shows that one)."""
    out = {}
    conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        for name, sql in sql_by_name.items():
            types = "text, text, text" if "exact" in name else "text, public.vector, text"
            conn.execute("DEALLOCATE ALL")
            conn.execute(f"PREPARE bench_lookup ({types}) AS {sql}")
            args = params_by_name[name]
            # EXECUTE takes no bound parameters: the values as literals, quoted by psycopg.
            rows = conn.execute(psql.SQL("EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_lookup ({}, {}, {})").format(
                *map(psql.Literal, args))).fetchall()
            out[name] = "\n".join(r[0] for r in rows)
    finally:
        conn.execute("DEALLOCATE ALL")
        conn.execute("RESET plan_cache_mode")
    return out


def plan_shape(text):
    """The plan's nodes, outermost first, and its execution time: 'Limit > Index Scan using x (0.12 ms)'."""
    nodes = []
    for line in text.splitlines():
        s = line.strip().lstrip("->").strip()
        m = re.match(r"([A-Z][A-Za-z ]+?)(?: using (\S+))?(?: on \S+)?(?: \w+)?\s+\(cost", s)
        if m:
            nodes.append(m.group(1) + (f" using {m.group(2)}" if m.group(2) else ""))
    ms = re.search(r"Execution Time: ([\d.]+) ms", text)
    return " > ".join(nodes) + (f" ({float(ms.group(1)):.2f} ms)" if ms else "")


def measure_cache(conn, rng, real_vecs, real_texts, n_cached, n_probes, vector_bytes, cache_sql):
    """The cache phase: fill, probe before and after, plans. cache_sql: {'exact', 'semantic'}
    statements of python/ruvllm/cache.py now (for their plans)."""
    by_tenant = fill_cache(conn, rng, real_vecs, real_texts, n_cached, vector_bytes)
    rows = by_tenant[""]
    ps = probes(rng, rows, min(n_probes, len(rows)))
    small = OTHER_TENANTS[0]
    ps_small = probes(rng, by_tenant[small], min(n_probes, len(by_tenant[small])))
    res = {}

    def measure(probe_set, hows, suffix="", tenant="", kinds=("exact", "semantic")):
        for probe, (hashes, vecs) in probe_set.items():
            kind = probe.split()[0]
            if kind not in kinds:
                continue
            for how in hows:
                # Not counted: the statements' plans are made (the first five executions get
                # custom plans, the sixth makes the generic one: ~9 ms, once per backend).
                time_lookups(conn, kind, how, hashes[:8] if hashes else None,
                             vecs[:8] if vecs is not None else None, tenant)
            for how in hows * 2:   # interleaved, each twice
                r = time_lookups(conn, kind, how, hashes, vecs, tenant)
                res.setdefault(f"{probe}|{how}{suffix}", []).extend(r)
    measure(ps, ("before", "after"))
    # A tenant with 5% of the cache: HNSW's first ef_search candidates are mostly other
    # tenants' rows, which the filter drops; pgvector 0.8's iterative scan searches on.
    measure(ps_small, ("after", "iterative"), "|small", small, kinds=("semantic",))
    # Then as a ruvllm_user, whom row-level security filters (tenant = ruvllm_current_tenant()).
    conn.execute("DROP ROLE IF EXISTS bench_user")
    conn.execute("CREATE ROLE bench_user IN ROLE ruvllm_user")
    conn.execute("GRANT USAGE ON SCHEMA bench TO bench_user")
    conn.execute("SET ROLE bench_user")
    try:
        measure(ps, ("before", "after"), "|user")
    finally:
        conn.execute("RESET ROLE")
    vec0 = "[" + ",".join("%.7g" % x for x in ps["semantic hit"][1][0]) + "]"
    args = {"exact": ["", ps["exact hit"][0][0], PROBE_CONSTRAINTS],
            "semantic": ["", vec0, PROBE_CONSTRAINTS]}
    sql = {f"{k} before": BEFORE[k] for k in BEFORE}
    sql.update({f"{k} after": v for k, v in cache_sql.items()})
    explained = plans(conn, sql, {name: args[name.split()[0]] for name in sql})
    total = conn.execute("SELECT count(*) FROM ruvllm.response_cache").fetchone()[0]
    return dict(cached=total, probe_rows=len(rows), small_rows=len(by_tenant[small]), small_tenant=small,
                probes=n_probes, results=res, plans=explained)


def measure_tokens(conn, questions_before, questions_after, models):
    """The tokens phase: the same number of distinct questions with each counting path (the
    cache is emptied first; models: loaded before anything is measured)."""
    conn.execute("TRUNCATE ruvllm.response_cache")
    conn.execute("SELECT bench.token_counting('{}', 'after', %s)", [list(models)])
    out = {}
    half = len(questions_before) // 2
    # Interleaved halves, so neither side gets the quieter minute.
    for how, qs in (("before", questions_before[:half]), ("after", questions_after[:half]),
                    ("before", questions_before[half:]), ("after", questions_after[half:])):
        out.setdefault(how, []).extend(
            conn.execute("SELECT bench.token_counting(%s, %s, '{}')", [qs, how]).fetchone()[0])
    return out


def _pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


def report_lines(out):
    """The report's paragraphs and table rows for these two phases (markdown lines)."""
    L = []
    c = out.get("cache_lookups")
    if c:
        L.append(f"**Response-cache lookups** at {c['cached']} cached answers ({c['probe_rows']} in "
                 f"the probes' tenant and constraints, the rest in two other tenants or under other "
                 f"constraints), in the backend (PL/Python, around `cache.lookup_exact` / "
                 f"`cache.lookup_semantic`, parsing the entry included), {c['probes']} probes of each "
                 f"kind x 2, before (the statements of 64457c9) and after interleaved. Semantic hit: a "
                 f"cached question's vector plus noise of norm {HIT_NOISE}; miss: a random vector "
                 f"(nothing at cosine ≥ {MIN_SIMILARITY}). Targets: exact ≤ 1 ms, semantic ≤ 2 ms.")
        L.append("")
        L.append("| lookup | before p50 / p99 (ms) | after p50 / p99 (ms) | hits before / after | target |")
        L.append("| --- | --- | --- | --- | --- |")
        for probe, suffix in [(p, s) for s in ("", "|user")
                              for p in ("exact hit", "exact miss", "semantic hit", "semantic miss")]:
            b, a = c["results"].get(f"{probe}|before{suffix}", []), c["results"].get(f"{probe}|after{suffix}", [])
            if not a:
                continue
            bms, ams = [r["ms"] for r in b], [r["ms"] for r in a]
            limit = 1.0 if probe.startswith("exact") else 2.0
            met = "met" if _pct(ams, 50) <= limit and _pct(ams, 99) <= limit else \
                ("p50 met" if _pct(ams, 50) <= limit else "**not met**")
            who = ", as a ruvllm_user (row-level security)" if suffix else ", as the superuser"
            L.append(f"| {probe}{who} | {_pct(bms, 50):.3f} / {_pct(bms, 99):.3f} | {_pct(ams, 50):.3f} / "
                     f"{_pct(ams, 99):.3f} | {sum(r['hit'] for r in b)}/{len(b)} / "
                     f"{sum(r['hit'] for r in a)}/{len(a)} | ≤ {limit:g} ms: {met} |")
        small = [(p, c["results"].get(f"{p}|after|small", []), c["results"].get(f"{p}|iterative|small", []))
                 for p in ("semantic hit", "semantic miss")]
        if any(a for _, a, _ in small):
            L.append("")
            L.append(f"In a tenant with {c.get('small_rows')} of the {c['cached']} answers "
                     f"({c.get('small_tenant')}), the semantic lookup as it is and under "
                     f"`hnsw.iterative_scan = strict_order` (pgvector 0.8):")
            L.append("")
            L.append("| lookup | as it is p50 / p99 (ms) | iterative p50 / p99 (ms) | hits as it is / iterative |")
            L.append("| --- | --- | --- | --- |")
            for probe, a, i in small:
                L.append(f"| {probe} | {_pct([r['ms'] for r in a], 50):.3f} / {_pct([r['ms'] for r in a], 99):.3f} | "
                         f"{_pct([r['ms'] for r in i], 50):.3f} / {_pct([r['ms'] for r in i], 99):.3f} | "
                         f"{sum(r['hit'] for r in a)}/{len(a)} / {sum(r['hit'] for r in i)}/{len(i)} |")
        L.append("")
        L.append("Plans (generic, EXPLAIN ANALYZE of one hit): " + "; ".join(
            f"{name}: {plan_shape(text)}" for name, text in c["plans"].items()) + ".")
        L.append("")
    t = out.get("token_counting")
    if t:
        def col(rows, key, fmt="{:.2f}"):
            xs = [r[key] for r in rows if not r["cache_hit"]]
            return f"{fmt.format(_pct(xs, 50))} / {fmt.format(_pct(xs, 99))}"
        b, a = t["before"], t["after"]
        n_b = sum(not r["cache_hit"] for r in b)
        n_a = sum(not r["cache_hit"] for r in a)
        L.append(f"**Token counting** in attention (generation stubbed, `bench.token_counting`): "
                 f"{n_b} + {n_a} distinct questions (cache hits left out), before = 0.3.0's counting "
                 f"(`query.PER_TEXT_TOKEN_COUNTS`: each text when it is needed, a prompt cut by binary "
                 f"search, `Llama.tokenize`, no cache) and after = the request's texts gathered and "
                 f"counted in one `count_tokens_many` (the backend's LRU of counts by model and text); "
                 f"interleaved halves. Per request, p50 / p99:")
        L.append("")
        L.append("| per request | before | after |")
        L.append("| --- | --- | --- |")
        L.append(f"| tokenizer calls | {col(b, 'tokenizer_calls', '{:.0f}')} | {col(a, 'tokenizer_calls', '{:.0f}')} |")
        L.append(f"| texts tokenised | {col(b, 'texts', '{:.0f}')} | {col(a, 'texts', '{:.0f}')} |")
        L.append(f"| count_tokens_many calls by the pipeline | {col(b, 'count_calls', '{:.0f}')} | "
                 f"{col(a, 'count_calls', '{:.0f}')} |")
        L.append(f"| ms in token counting | {col(b, 'count_ms', '{:.3f}')} | {col(a, 'count_ms', '{:.3f}')} |")
        L.append(f"| request, generation stubbed (ms) | {col(b, 'ms')} | {col(a, 'ms')} |")
        L.append("")
    return L
