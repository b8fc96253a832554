"""ruvllm_query: the request pipeline.

    validate → exact cache → embed → semantic cache → retrieve (HNSW + graph hops)
    → route (features → FastGRNN) → attention (rank, dedup, fit the context) → generate
    → session, cache → witness

Every call leaves one witness row, also when it fails (the error and its SQLSTATE are recorded
and the error is raised again). The stages' wall times go to the witness and the response.
"""
import math
import random
import time
import uuid

import numpy as np

from . import attention, cache, embedding, errors, features, generation, graph, judge, memory, models, pii, policy
from . import sessions, tenancy, witness
from .sqlglue import planner, read_only, seconds, setting, vector_from_send

CONSTRAINT_KEYS = ("max_tokens", "temperature", "top_p", "max_latency_ms", "model")
DEFAULT_MAX_TOKENS = 96
MAX_MAX_TOKENS = 2048
QUERY_HOPS = 2
EXCERPT_CHARS = 240
PROMPT_RESERVE_TOKENS = 96   # system text, question and template tokens around the context
# Nodes whose attention is under this share of the best node's are left out of the prompt: small
# models answer worse, and slower, with weakly related text in their context.
MIN_RELATIVE_SCORE = 0.1

_plan = planner()
_rng = random.Random()
_stats = {"at": 0.0, "quality": {}, "latency": {}}
_bank = {"version": None, "centroids": None}
_mem = {"at": 0.0, "mb": None}




# --- validation (pure) --------------------------------------------------------------------------

def check_query(query):
    if query is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, "query must not be NULL")
    if not isinstance(query, str) or not query.strip():
        raise errors.invalid("query must not be empty")
    if len(query) > embedding.MAX_INPUT_CHARS:
        raise errors.RuvllmError(errors.STRING_DATA_RIGHT_TRUNCATION,
                                 f"query is {len(query)} characters, over the limit of "
                                 f"{embedding.MAX_INPUT_CHARS}")
    return query


def check_constraints(constraints):
    """The constraints jsonb as a dict with checked values."""
    constraints = errors.json_object(constraints, "constraints", '{"max_tokens": 64, "temperature": 0.2}')
    unknown = sorted(set(constraints) - set(CONSTRAINT_KEYS))
    if unknown:
        raise errors.invalid(f"unknown constraint {', '.join(map(repr, unknown))}",
                             hint="Known constraints: " + ", ".join(CONSTRAINT_KEYS))

    def number(key, lo, hi, integer=False):
        v = constraints[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if integer:
            ok = ok and float(v).is_integer()
        if not ok:
            raise errors.invalid(f"constraint {key} must be a{'n integer' if integer else ' number'}, not {v!r}")
        if not lo <= v <= hi:
            raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE,
                                     f"constraint {key} must be between {lo} and {hi}, not {v}")
        return int(v) if integer else float(v)

    out = {}
    if "max_tokens" in constraints:
        out["max_tokens"] = number("max_tokens", 1, MAX_MAX_TOKENS, integer=True)
    if "temperature" in constraints:
        out["temperature"] = number("temperature", 0.0, 2.0)
    if "top_p" in constraints:
        out["top_p"] = number("top_p", 0.0, 1.0)
    if "max_latency_ms" in constraints:
        out["max_latency_ms"] = number("max_latency_ms", 1, 3_600_000)
    if "model" in constraints:
        if not isinstance(constraints["model"], str) or not constraints["model"]:
            raise errors.invalid(f"constraint model must be a model name, not {constraints['model']!r}")
        out["model"] = constraints["model"]
    return out


# --- helpers --------------------------------------------------------------------------------------

class Stopwatch:
    def __init__(self):
        self.started = time.perf_counter()
        self.ms = {}

    def lap(self, stage, since):
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - since) * 1000.0

    def total(self):
        return (time.perf_counter() - self.started) * 1000.0


def _memory_available_mb():
    # /proc/meminfo, read at most every 10 s: a system feature, not worth a syscall per request.
    now = time.monotonic()
    if now - _mem["at"] > 10:
        _mem["at"] = now
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        _mem["mb"] = int(line.split()[1]) / 1024.0
                        break
        except OSError:
            _mem["mb"] = None
    return _mem["mb"]


def _model_stats(plpy):
    """Mean judged quality and generation latency per model over the last day, cached for 60 s."""
    now = time.monotonic()
    if now - _stats["at"] > 60:
        _stats["at"] = now
        rows = plpy.execute(_plan(plpy, "stats", """
            SELECT model, avg(quality)::float8 AS quality, avg(generation_ms)::float8 AS latency
              FROM ruvllm.witness
             WHERE created_at > pg_catalog.now() - interval '1 day' AND error IS NULL
               AND NOT cache_hit AND model IS NOT NULL
             GROUP BY model""", []))
        _stats["quality"] = {r["model"]: r["quality"] for r in rows if r["quality"] is not None}
        _stats["latency"] = {r["model"]: r["latency"] for r in rows if r["latency"] is not None}
    return _stats["quality"], _stats["latency"]


def _pattern_centroids(plpy):
    """The newest pattern bank's centroids (the deep loop's); fetched again only when it changes."""
    version = plpy.execute(_plan(plpy, "bank_version", """
        SELECT max(bank_version) AS v FROM ruvllm.patterns""", []))[0]["v"]
    if version != _bank["version"]:
        rows = plpy.execute(_plan(plpy, "bank", """
            SELECT public.vector_send(centroid) AS v FROM ruvllm.patterns
             WHERE bank_version = $1 ORDER BY id""", ["int"]), [version]) if version else []
        _bank["centroids"] = np.stack([vector_from_send(r["v"]) for r in rows]) if rows else None
        _bank["version"] = version
    return _bank["centroids"]


def _concurrent_requests(plpy):
    return plpy.execute(_plan(plpy, "active", """
        SELECT count(*)::int AS n FROM pg_catalog.pg_stat_activity
         WHERE state = 'active' AND backend_type = 'client backend'""", []))[0]["n"]


def _node_vectors(plpy, ids):
    """Embeddings (binary, no text parsing) and ages of the retrieved nodes, in ids order."""
    if not ids:
        return np.zeros((0, embedding.DIM), dtype=np.float32), []
    rows = plpy.execute(_plan(plpy, "vectors", """
        SELECT id, public.vector_send(embedding) AS v,
               extract(epoch FROM pg_catalog.now() - created_at)::float8 AS age
          FROM ruvllm.nodes WHERE id = ANY($1::uuid[])""", ["text[]"]), [[str(i) for i in ids]])
    by_id = {str(r["id"]): r for r in rows}
    vecs = np.stack([vector_from_send(by_id[str(i)]["v"]) for i in ids])
    return vecs, [by_id[str(i)]["age"] for i in ids]


def _settings(plpy):
    return {
        "k": int(setting(plpy, "ruvllm.query_k", "8")),
        "ef_search": int(setting(plpy, "ruvllm.ef_search", "64")),
        "confidence_threshold": float(setting(plpy, "ruvllm.confidence_threshold", "0.2")),
        "max_query_tokens": int(setting(plpy, "ruvllm.max_query_tokens", "512")),
        "cache_similarity": float(setting(plpy, "ruvllm.cache_similarity", "0.97")),
        "cache_ttl": seconds(setting(plpy, "ruvllm.cache_ttl", "3600")),
        "max_loaded_models": int(setting(plpy, "ruvllm.max_loaded_models", "2")),
        "explore_rate": float(setting(plpy, "ruvllm.explore_rate", "0.05")),
        "generation_threads": int(setting(plpy, "ruvllm.generation_threads", "1")),
    }


# --- routing --------------------------------------------------------------------------------------

def route_request(plpy, query, vec, token_count, rows, node_vecs, pool, cfg, constraints,
                  h_prev=None, user_frequency=0, explore=True):
    """Features → the promoted router → a decision over the enabled models, plus what it saw."""
    version, router = policy.current(plpy)
    names = pool.names()
    quality, latency = _model_stats(plpy)
    state = features.SystemState(
        latency_budget_ms=constraints.get("max_latency_ms"),
        device="cpu",
        memory_available_mb=_memory_available_mb(),
        concurrent_requests=_concurrent_requests(plpy),
        model_quality=[quality.get(n, 0.5) for n in names],
        model_latency_ms=[latency.get(n, 0.0) for n in names],
        max_tokens=constraints.get("max_tokens"),
        forced_model="model" in constraints,
        forced_temperature="temperature" in constraints,
        n_models=len(names),
    )
    x = features.build(query, token_count, vec, rows, cfg["k"], state,
                       user_frequency=user_frequency, ef_search=cfg["ef_search"],
                       embeddings=node_vecs, centroids=_pattern_centroids(plpy))
    if h_prev is not None and h_prev.shape != (router.hidden,):
        h_prev = None   # the session started under a policy of another shape
    decision, h = router.decide(x, h_prev, confidence_threshold=cfg["confidence_threshold"])
    # The policy may know models that are now disabled, or not know new ones: its probabilities
    # are mapped onto the enabled pool by name.
    probs = {n: float(p) for n, p in zip(router.model_names, decision.probs) if n in names}
    model = decision.model_name
    if model not in names:
        model = max(probs, key=probs.get) if probs else names[0]
    # epsilon-greedy: a share of traffic goes to a random model, so the router keeps seeing them all.
    explored = explore and len(names) > 1 and _rng.random() < cfg["explore_rate"]
    if explored:
        model = _rng.choice(names)
    return {
        "explored": bool(explored),
        "policy_version": version,
        "model": model,
        "context_size": int(decision.context_size),
        "temperature": float(decision.temperature),
        "top_p": float(decision.top_p),
        "confidence": float(decision.confidence),
        "used_default": bool(decision.used_default),
        "model_probs": probs,
    }, x, h


# --- the pipeline ---------------------------------------------------------------------------------

def run(plpy, query, session_id=None, constraints=None, backend=None):
    """One request. Returns the response dict; records the witness row in every case."""
    clock = Stopwatch()
    request_id = uuid.uuid4()
    created_at = witness.now_utc()
    trace = {"request_id": request_id, "session_id": session_id if isinstance(session_id, str) else None,
             "query": query if isinstance(query, str) else None, "created_at": created_at,
             "cache_hit": False}
    tenant = ""
    mask = None
    try:
        tenant = tenancy.current(plpy)
        trace["tenant"] = tenant
        mask = storage_mask(plpy)
        response = _run(plpy, query, session_id, constraints, backend, clock, request_id, trace, tenant,
                        mask)
        _finish_trace(trace, clock)
        witness.record(plpy, witness.make_row(mask=mask, **trace))
        return response
    except Exception as e:  # noqa: BLE001 - recorded, then raised again unchanged
        trace["tenant"] = tenant
        trace["error"] = getattr(e, "message", None) or str(e) or type(e).__name__
        trace["error_sqlstate"] = getattr(e, "sqlstate", None) or errors.INTERNAL_ERROR
        _finish_trace(trace, clock)
        try:
            witness.record(plpy, witness.make_row(mask=mask or pii.masker(pii.KINDS), **trace))
        except Exception:  # noqa: BLE001 - the caller's error matters more than the audit's
            pass
        raise


def _finish_trace(trace, clock):
    for stage in ("embedding", "retrieval", "routing", "attention", "generation"):
        if stage in clock.ms:
            trace[f"{stage}_ms"] = round(clock.ms[stage], 3)
    trace["total_ms"] = round(clock.total(), 3)


def storage_mask(plpy):
    """PII masking for what this request stores, per ruvllm.pii_mask."""
    return pii.masker(pii.kinds_from_setting(setting(plpy, "ruvllm.pii_mask", "none")))


def _run(plpy, query, session_id, constraints, backend, clock, request_id, trace, tenant, mask):
    query = check_query(query)
    session_id = sessions.check_session_id(session_id)
    constraints = check_constraints(constraints)
    cfg = _settings(plpy)
    pool = models.Pool.load(plpy)
    if "model" in constraints:
        pool.row(constraints["model"])  # unknown or disabled: rejected before any work
    session = sessions.load(plpy, tenant, session_id) if session_id else None
    # A continuing conversation's answer depends on its history: no cache for it.
    use_cache = cfg["cache_ttl"] > 0 and not (session and session["history"])
    qhash, ckey = cache.query_hash(query), cache.constraints_key(constraints)

    hit = cache.lookup_exact(plpy, tenant, qhash, ckey) if use_cache else None
    vec = None
    if hit is None:
        t = time.perf_counter()
        vec, token_count, _truncated = embedding.embed_one(query)
        clock.lap("embedding", t)
        trace["query_embedding"] = vec
        if token_count > cfg["max_query_tokens"]:
            raise errors.RuvllmError(
                errors.STRING_DATA_RIGHT_TRUNCATION,
                f"query is {token_count} tokens, over ruvllm.max_query_tokens ({cfg['max_query_tokens']})",
                hint="Shorten the query, or raise ruvllm.max_query_tokens.")
        if use_cache:
            hit = cache.lookup_semantic(plpy, tenant, vec, ckey, cfg["cache_similarity"])
    if hit is not None:
        return _serve_hit(plpy, hit, request_id, trace, clock, session, session_id, tenant, query, vec,
                          mask)

    t = time.perf_counter()
    rows = memory.search_vector(plpy, vec, cfg["k"], QUERY_HOPS, tenant)
    ids = [r["id"] for r in rows]
    node_vecs, ages = _node_vectors(plpy, ids)
    clock.lap("retrieval", t)

    t = time.perf_counter()
    routing, x, h = route_request(plpy, query, vec, token_count, rows, node_vecs, pool, cfg,
                                  constraints,
                                  h_prev=session["router_state"] if session else None,
                                  user_frequency=session["turn_count"] if session else 0,
                                  explore="model" not in constraints)
    if "model" in constraints:
        routing["model"] = constraints["model"]
    for key in ("temperature", "top_p"):
        if key in constraints:
            routing[key] = constraints[key]
    spec = pool.spec(routing["model"])
    clock.lap("routing", t)
    trace.update(model=routing["model"], context_size=routing["context_size"],
                 temperature=routing["temperature"], top_p=routing["top_p"],
                 routing_confidence=routing["confidence"], used_default=routing["used_default"],
                 policy_version=routing["policy_version"], model_probs=routing["model_probs"],
                 explored=routing["explored"], features=[round(float(v), 6) for v in x])

    gen = backend or generation.default_backend()
    gen.max_loaded = cfg["max_loaded_models"]
    gen.n_threads = cfg["generation_threads"] or None
    max_tokens = constraints.get("max_tokens", DEFAULT_MAX_TOKENS)
    history = [(turn["q"], turn["a"]) for turn in (session["history"] if session else [])]
    history = history[-sessions.PROMPT_TURNS:]

    t = time.perf_counter()
    ranked = attention.rank(vec, node_vecs, [r["hop"] for r in rows], [r["via_rel"] for r in rows],
                            [r["edge_weight"] for r in rows], ages)
    if ranked:
        ranked = [n for n in ranked if n.score >= MIN_RELATIVE_SCORE * ranked[0].score]
    history_tokens = sum(gen.count_tokens(spec, q) + gen.count_tokens(spec, a) for q, a in history)
    budget = min(routing["context_size"],
                 spec.n_ctx - max_tokens - PROMPT_RESERVE_TOKENS - history_tokens
                 - gen.count_tokens(spec, query))
    context = attention.select_context(ranked, [r["content"] for r in rows], budget,
                                       lambda text: gen.count_tokens(spec, text)) if budget > 0 else []
    clock.lap("attention", t)

    system, prompt, stop = generation.answer_prompt(spec, query, context)
    t = time.perf_counter()
    result = gen.generate(spec, prompt, max_tokens=max_tokens, temperature=routing["temperature"],
                          top_p=routing["top_p"], system=system, history=history, stop=stop)
    clock.lap("generation", t)

    sources = [{"id": str(rows[i]["id"]), "excerpt": rows[i]["content"][:EXCERPT_CHARS],
                "score": round(float(score), 6), "hop": rows[i]["hop"],
                "distance": round(float(rows[i]["distance"]), 6)} for i, _text, score in context]
    # How well memory supports the answer: the best cosine similarity among the context used.
    confidence = max((1.0 - float(rows[i]["distance"]) for i, _, _ in context), default=0.0)
    confidence = min(1.0, max(0.0, confidence))
    text = result.text
    trace.update(confidence=confidence, response=text, prompt_tokens=result.prompt_tokens,
                 completion_tokens=result.completion_tokens,
                 context_node_ids=[s["id"] for s in sources])
    if session_id:
        sessions.save(plpy, tenant, session_id, session, query, text, h, routing["policy_version"], vec,
                      mask=mask)
    answer = {"text": text, "confidence": confidence, "sources": sources,
              "routing": {k: routing[k] for k in ("model", "context_size", "temperature", "top_p",
                                                  "confidence", "model_probs", "used_default",
                                                  "explored", "policy_version")}}
    if use_cache and result.finish_reason != "error":
        cache.store(plpy, tenant, query, cache.query_hash(query), cache.constraints_key(constraints),
                    vec, answer, cfg["cache_ttl"], request_id, mask=mask)
    _finish_trace(trace, clock)
    return dict(request_id=str(request_id), **answer, latency_ms=_latency(trace), cache_hit=False,
                session_turn=None if not session_id else (session["turn_count"] if session else 0) + 1)


def _latency(trace):
    return {stage: trace.get(f"{stage}_ms") or 0.0
            for stage in ("embedding", "retrieval", "routing", "attention", "generation", "total")}


def _serve_hit(plpy, hit, request_id, trace, clock, session, session_id, tenant, query, vec, mask):
    routing = hit["routing"]
    trace.update(cache_hit=True, model=routing["model"], context_size=routing["context_size"],
                 temperature=routing["temperature"], top_p=routing["top_p"],
                 routing_confidence=routing["confidence"], used_default=routing["used_default"],
                 policy_version=routing["policy_version"], model_probs=routing["model_probs"],
                 explored=bool(routing.get("explored")), confidence=hit["confidence"], response=hit["text"],
                 context_node_ids=[s["id"] for s in hit["sources"]])
    if not read_only(plpy):
        cache.count_hit(plpy, hit["cache_id"])
    if session_id and vec is not None:
        sessions.save(plpy, tenant, session_id, session, query, hit["text"], None,
                      routing["policy_version"], vec, mask=mask)
    _finish_trace(trace, clock)
    return {"request_id": str(request_id), "text": hit["text"], "confidence": hit["confidence"],
            "sources": hit["sources"], "routing": routing, "latency_ms": _latency(trace),
            "cache_hit": True, "cache_similarity": hit["similarity"],
            "session_turn": None if not session_id else (session["turn_count"] if session else 0) + 1}


# --- ruvllm_route ---------------------------------------------------------------------------------

def route(plpy, query):
    """What the router would decide for this query now, and the features it saw (writes nothing)."""
    query = check_query(query)
    cfg = _settings(plpy)
    pool = models.Pool.load(plpy)
    vec, token_count, _ = embedding.embed_one(query)
    rows = memory.search_vector(plpy, vec, cfg["k"], QUERY_HOPS, tenancy.current(plpy))
    node_vecs, _ages = _node_vectors(plpy, [r["id"] for r in rows])
    routing, x, _h = route_request(plpy, query, vec, token_count, rows, node_vecs, pool, cfg, {},
                                   explore=False)
    return {"decision": routing, "features": features.describe(x), "token_count": token_count,
            "retrieved": len(rows)}


# --- ruvllm_feedback ------------------------------------------------------------------------------

def feedback(plpy, request_id, rating, correction=None, wait_s=3.0):
    """Rating (1..5) onto the witness row; a correction into memory as a high-confidence QAPair."""
    if request_id is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, "request_id must not be NULL")
    if rating is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, "rating must not be NULL")
    if not 1 <= rating <= 5:
        raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE,
                                 f"rating must be between 1 and 5, not {rating}")
    if correction is not None:
        memory.check_content(correction, "correction")
    tenant = tenancy.current(plpy)
    find = _plan(plpy, "find", """
        SELECT created_at, query, context_node_ids::text[] AS ctx, judge_score, groundedness,
               relevance FROM ruvllm.witness
         WHERE request_id = $1::uuid AND tenant = $2 AND error IS NULL""", ["text", "text"])
    rows = plpy.execute(find, [str(request_id), tenant])
    deadline = time.monotonic() + wait_s
    while not rows and time.monotonic() < deadline and _queue_pending(plpy):
        # The row may still be in the witness queue: the writer commits within milliseconds.
        time.sleep(0.02)
        rows = plpy.execute(find, [str(request_id), tenant])
    if not rows:
        raise errors.RuvllmError(errors.NO_DATA_FOUND, f"no answered request {request_id}",
                                 hint="Give feedback on a request_id that ruvllm_query returned "
                                      "to this tenant.")
    row = rows[0]
    quality = None
    if row["groundedness"] is not None:
        # Already judged: the rating joins the automatic signals now (judge.py has the formula).
        quality = judge.combined_quality(
            judge.automatic_quality(row["judge_score"], row["groundedness"], row["relevance"] or 0.0),
            rating)
    plpy.execute(_plan(plpy, "rate", """
        UPDATE ruvllm.witness SET rating = $3, correction = $4, feedback_at = pg_catalog.now(),
                                  quality = COALESCE($5, quality)
         WHERE request_id = $1::uuid AND created_at = $2""",
                       ["text", "timestamptz", "int", "text", "real"]),
                 [str(request_id), row["created_at"], rating, correction, quality])
    if correction is None:
        return None
    node = memory.ingest_many(plpy, [(f"Question: {row['query']}\nAnswer: {storage_mask(plpy)(correction)}", "QAPair",
                                      f"feedback:{request_id}",
                                      {"confidence": 0.95, "tags": ["feedback", "correction"],
                                       "request_id": str(request_id)})])[0]
    context = [c for c in (row["ctx"] or []) if c != str(node)]
    graph.insert_edges(plpy, "Derived", [(str(node), c, 1.0, 0.95) for c in context], "feedback")
    return node


def _queue_pending(plpy):
    stats = plpy.execute(_plan(plpy, "qstats",
                               "SELECT queued, written FROM ruvllm._witness_queue_stats()", []))[0]
    return stats["written"] < stats["queued"]
