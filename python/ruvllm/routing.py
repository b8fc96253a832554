"""Routing a request: the system state the router reads, the promoted policy's decision mapped
onto the enabled models (with epsilon-greedy exploration), and ruvllm_route, which shows that
decision for a question without answering it.

The FastGRNN router itself is router.py; its feature vector is features.py.
"""
import random
import time

import numpy as np

from . import embedding, features, memory, models, policy, request, tenancy
from .sqlglue import planner, vector_from_send

_plan = planner()
_rng = random.Random()
_stats = {"at": 0.0, "quality": {}, "latency": {}}
_bank = {"version": None, "centroids": None}
_mem = {"at": 0.0, "mb": None}


def route_request(plpy, query, vec, token_count, rows, node_vecs, pool, cfg, constraints,
                  h_prev=None, user_frequency=0, explore=True):
    """Features → the promoted router → a decision over the enabled models, plus what it saw."""
    version, router = policy.current(plpy)
    # 0.2.0's pipeline (answer_style documents) had no extractive tier: it chooses among the
    # models that generate, exploration included.
    names = (pool.generator_names() if cfg.get("answer_style", "evidence") != "evidence" else None) \
        or pool.names()
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
    if decision.used_default:
        model = safe_default(model, names, cfg)
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


def safe_default(policy_default, names, cfg):
    """The model of a decision the router is not confident about: ruvllm.default_model while it
    is an enabled model (the extractive tier out of the box: on real documents it answered more
    questions than the 135M model, invented nothing, and took a third of the time; bench/answers),
    else the policy's own default. 0.2.0's pipeline (answer_style documents) has no evidence to
    quote and keeps the policy's default."""
    wanted = cfg.get("default_model")
    if wanted and wanted in names and cfg.get("answer_style", "evidence") == "evidence":
        return wanted
    return policy_default


# --- the system state ------------------------------------------------------------------------------

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
    """The newest pattern bank of the session's tenant (row-level security picks it); fetched again
    only when it changes. Banks of one run share a version, so the cache is keyed by the bank's
    first row too (a backend may act for several tenants)."""
    row = plpy.execute(_plan(plpy, "bank_version", """
        SELECT bank_version AS v, min(id) AS first FROM ruvllm.patterns
         WHERE bank_version = (SELECT max(bank_version) FROM ruvllm.patterns)
         GROUP BY bank_version""", []))
    version = (row[0]["v"], row[0]["first"]) if row else None
    if version != _bank["version"]:
        rows = plpy.execute(_plan(plpy, "bank", """
            SELECT public.vector_send(centroid) AS v FROM ruvllm.patterns
             WHERE bank_version = $1 ORDER BY id""", ["int"]), [version[0]]) if version else []
        _bank["centroids"] = np.stack([vector_from_send(r["v"]) for r in rows]) if rows else None
        _bank["version"] = version
    return _bank["centroids"]


def _concurrent_requests(plpy):
    return plpy.execute(_plan(plpy, "active", """
        SELECT count(*)::int AS n FROM pg_catalog.pg_stat_activity
         WHERE state = 'active' AND backend_type = 'client backend'""", []))[0]["n"]


# --- ruvllm_route ---------------------------------------------------------------------------------

def route(plpy, query):
    """What the router would decide for this query now, and the features it saw (writes nothing)."""
    query = request.check_query(query)
    cfg = request.settings(plpy)
    pool = models.Pool.load(plpy)
    vec, token_count, _ = embedding.embed_one(query)
    # The same retrieval ruvllm_query makes, so the features are the ones it would route on.
    rows = memory.search_vector(plpy, vec, cfg["k"], request.QUERY_HOPS, tenancy.current(plpy),
                                query=query, mode="hybrid")
    node_vecs, _ages = memory.row_vectors(rows)
    routing, x, _h = route_request(plpy, query, vec, token_count, rows, node_vecs, pool, cfg, {},
                                   explore=False)
    return {"decision": routing, "features": features.describe(x), "token_count": token_count,
            "retrieved": len(rows)}
