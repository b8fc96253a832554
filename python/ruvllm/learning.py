"""The bodies of the learning loops (loops.py runs and records them).

Instant loop, for each new answered request (oldest first, ruvllm.judge_max_per_run a run):
  judge it (judge.py) and complete its witness row (quality, judge score, groundedness,
  relevance, response embedding); move the weight of every edge between its context nodes by
  ±5% with quality (w *= 1 + 0.05 * (2q - 1)); offer it to the replay buffer (reservoir
  sampling); write it back to memory as a QAPair when quality >= ruvllm.quality_threshold.

Background loop: train the router on the replay buffer plus the last day's judged requests.
  Utility U = quality - lambda * generation seconds - mu * cost (cost = cost_per_token x tokens
  / 1000). Only the chosen model's utility is observed; the others' are estimated by that
  model's mean utility (oracle rows, where every model answered the same question, give all of
  them). Labels: the chosen model when its utility is at least the best estimate of the others,
  else that best other model, weighted by the utility gap; the context bin, temperature and
  top_p of above-median answers. Loss and schedule are training.train's (CE + CE + SmoothL1 +
  EWC; dense, hard-threshold, retrain), EWC anchored at the current policy with the Fisher on the
  replay buffer. The new version is promoted only if its held-out utility is not lower than the
  current policy's on the same held-out requests; otherwise it is kept as a candidate with the
  reason.

Deep loop: k-means++ over the last week's query embeddings into a new pattern bank (best model,
  context size and mean quality per cluster); merge near-duplicate memory nodes; prune edges
  under the weight floor; copy searches' access times from ruvllm.node_access into ruvllm.nodes; apply retention
  (ruvllm_apply_retention), which archives whole witness days after ruvllm.witness_archive_after
  unless a DBA set the witness's retention.
"""
import json
import random
import time

import numpy as np

from . import embedding, errors, evidence, generation, graph, grounding, inference, judge, memory, models
from . import patterns, policy, tenancy, training
from .router import CONTEXT_BINS
from .sqlglue import parse_vector, planner, setting, vector_literal

EDGE_STEP = 0.05
EDGE_MIN, EDGE_MAX = 0.01, 10.0
EDGE_FLOOR = 0.05
MIN_TRAIN_SAMPLES = 32
HELDOUT_FRACTION = 0.25
# bench/router (MMLU, validation split): EWC at lambda 1 protected nothing, 1000 kept 0.3-point
# forgetting but barely learned new traffic; 100 is the live system's compromise. Long schedules
# overfit (30 epochs at lr 1e-2 went from validation APGR 0.66 to 0.53), hence a short one.
EWC_LAMBDA = 100.0
TRAIN_EPOCHS, TRAIN_LR = 10, 3e-3
PATTERN_WINDOW_DAYS = 7
MAX_PATTERN_QUERIES = 5000
MAX_COMPRESS_NODES = 500

_plan = planner()




# --- pure helpers (unit-tested) -----------------------------------------------------------------

def edge_factor(quality):
    """Multiplier for the weight of an edge that fed an answer of this quality: 0.95 .. 1.05."""
    return 1.0 + EDGE_STEP * (2.0 * float(quality) - 1.0)


def reservoir_slot(seen_before, capacity, rng):
    """Algorithm R: the slot the (seen_before + 1)-th sample takes, or None to drop it."""
    if seen_before < capacity:
        return seen_before
    j = rng.randrange(seen_before + 1)
    return j if j < capacity else None


def estimate_utilities(models_used, utilities, model_names, oracle=None):
    """(n, N) utilities: observed for the model used, else that model's mean observed utility.

    oracle: optional list of dicts {model: utility} for samples where every model was run.
    A model never observed gets the lowest observed utility (it has to earn its place).
    """
    n, names = len(models_used), list(model_names)
    obs = {m: [] for m in names}
    for m, u in zip(models_used, utilities):
        if m in obs:
            obs[m].append(u)
    floor = min((u for us in obs.values() for u in us), default=0.0)
    mean = {m: (float(np.mean(us)) if us else floor) for m, us in obs.items()}
    out = np.empty((n, len(names)), dtype=np.float64)
    for i in range(n):
        for j, m in enumerate(names):
            if oracle and oracle[i] and m in oracle[i]:
                out[i, j] = oracle[i][m]
            elif models_used[i] == m:
                out[i, j] = utilities[i]
            else:
                out[i, j] = mean[m]
    return out


def labels_from_utilities(U, models_used, model_names):
    """Model label and weight per sample: the best estimated model, weighted by its margin."""
    idx = {m: j for j, m in enumerate(model_names)}
    labels = U.argmax(axis=1)
    srt = np.sort(U, axis=1)
    margin = srt[:, -1] - (srt[:, -2] if U.shape[1] > 1 else srt[:, -1])
    # A sample whose own model won keeps at least a small weight: it is real evidence.
    weights = np.maximum(margin, 0.0) + np.array(
        [0.1 if idx.get(m) == lab else 0.0 for m, lab in zip(models_used, labels)])
    return labels.astype(np.int64), weights.astype(np.float32)


# --- instant loop -----------------------------------------------------------------------------

def _judge_backend_and_spec(plpy):
    pool = models.Pool.load(plpy)
    names = pool.generator_names()
    if not names:
        return None, None
    try:
        gen = inference.backend_for(plpy)
        gen.n_threads = int(setting(plpy, "ruvllm.generation_threads", "1")) or None
        return gen, pool.spec(names[0])
    except errors.RuvllmError:
        return None, None


def _run_judge(gen, spec, question, answer, contexts):
    if gen is None:
        return None
    try:
        out = gen.generate(spec, judge.judge_prompt(question, answer, contexts), max_tokens=4,
                           temperature=0.0, top_p=1.0)
        return judge.parse_score(out.text)
    except Exception:  # noqa: BLE001 - a judge failure falls back, never fails the loop
        return None


def instant_loop(plpy):
    limit = int(setting(plpy, "ruvllm.judge_max_per_run", "20"))
    threshold = float(setting(plpy, "ruvllm.quality_threshold", "0.75"))
    capacity = int(setting(plpy, "ruvllm.replay_capacity", "10000"))
    rows = plpy.execute(_plan(plpy, "pending", """
        SELECT request_id, created_at, tenant, query, query_embedding::text AS qv, response,
               model, context_node_ids::text[] AS ctx, features, context_size, temperature,
               top_p, generation_ms, completion_tokens, rating, grounded
          FROM ruvllm.witness
         WHERE quality IS NULL AND error IS NULL AND NOT cache_hit AND response IS NOT NULL
           AND abstained IS NOT TRUE
         ORDER BY created_at LIMIT $1""", ["int"]), [limit])
    if not rows:
        return {"judged": 0}
    gen, spec = _judge_backend_and_spec(plpy)
    thresholds = _grounding_thresholds(plpy)
    costs = {r["name"]: float(r["cost_per_token"]) for r in plpy.execute(
        "SELECT name, cost_per_token FROM ruvllm.models")}
    answers = embedding.embed([r["response"] or " " for r in rows]).vectors
    rng = random.Random()
    stats = {"judged": 0, "judge_failed": 0, "written_back": 0, "edges_moved": 0, "replayed": 0}
    for row, answer_vec in zip(rows, answers):
        ctx_ids = row["ctx"] or []
        ctx = plpy.execute(_plan(plpy, "ctx", """
            SELECT id::text AS id, content, embedding::text AS v, graph_id::text AS gid
              FROM ruvllm.nodes WHERE id = ANY($1::uuid[])""", ["text[]"]), [ctx_ids]) if ctx_ids else []
        score = _run_judge(gen, spec, row["query"], row["response"], [c["content"] for c in ctx])
        stats["judge_failed"] += score is None
        by_id = {c["id"]: c for c in ctx}
        grounded = judge.groundedness(row["response"], [by_id[i]["content"] for i in ctx_ids if i in by_id],
                                      embed=_embed_vectors, witnessed=row["grounded"], **thresholds)
        query_vec = parse_vector(row["qv"]) if row["qv"] else answer_vec
        relevant = judge.relevance(answer_vec, query_vec)
        auto = judge.automatic_quality(score, grounded, relevant)
        quality = judge.combined_quality(auto, row["rating"])
        plpy.execute(_plan(plpy, "complete", """
            UPDATE ruvllm.witness
               SET quality = $3, judge_score = $4, groundedness = $5, relevance = $6,
                   response_embedding = $7::public.vector
             WHERE request_id = $1 AND created_at = $2""",
                           ["uuid", "timestamptz", "real", "smallint", "real", "real", "text"]),
                     [row["request_id"], row["created_at"], quality, score, grounded, relevant,
                      vector_literal(answer_vec)])
        stats["judged"] += 1
        gids = [c["gid"] for c in ctx]
        if len(gids) > 1:
            stats["edges_moved"] += graph.scale_edges_between(plpy, gids, edge_factor(quality),
                                                              EDGE_MIN, EDGE_MAX)
        if row["features"]:
            latency = (row["generation_ms"] or 0.0) / 1000.0
            cost = costs.get(row["model"], 1.0) * (row["completion_tokens"] or 0) / 1000.0
            stats["replayed"] += _offer_replay(plpy, rng, capacity, row, quality, latency, cost)
        if quality >= threshold:
            stats["written_back"] += _write_back(plpy, row, quality, ctx_ids)
    return stats


def _embed_vectors(texts):
    return embedding.embed(texts).vectors


def _grounding_thresholds(plpy):
    return {"min_overlap": float(setting(plpy, "ruvllm.grounding_overlap", str(grounding.DEFAULT_MIN_OVERLAP))),
            "min_similarity": float(setting(plpy, "ruvllm.grounding_similarity",
                                            str(grounding.DEFAULT_MIN_SIMILARITY)))}


def _offer_replay(plpy, rng, capacity, row, quality, latency_s, cost, oracle=None):
    seen = plpy.execute(_plan(plpy, "seen", """
        UPDATE ruvllm.replay_state SET seen = seen + 1 RETURNING seen - 1 AS before""", []))[0]["before"]
    slot = reservoir_slot(int(seen), capacity, rng)
    if slot is None:
        return 0
    plpy.execute(_plan(plpy, "replay", """
        INSERT INTO ruvllm.replay (slot, request_id, features, model, context_size, temperature,
                                   top_p, quality, latency_ms, cost, oracle, added_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, pg_catalog.now())
        ON CONFLICT (slot) DO UPDATE SET
            request_id = EXCLUDED.request_id, features = EXCLUDED.features, model = EXCLUDED.model,
            context_size = EXCLUDED.context_size, temperature = EXCLUDED.temperature,
            top_p = EXCLUDED.top_p, quality = EXCLUDED.quality, latency_ms = EXCLUDED.latency_ms,
            cost = EXCLUDED.cost, oracle = EXCLUDED.oracle, added_at = EXCLUDED.added_at""",
                       ["int", "uuid", "real[]", "text", "int", "real", "real", "real", "real", "real",
                        "text"]),
                 [slot, row["request_id"], row["features"], row["model"], row["context_size"],
                  row["temperature"], row["top_p"], quality, latency_s * 1000.0, cost,
                  json.dumps(oracle) if oracle is not None else None])
    return 1


def _write_back(plpy, row, quality, ctx_ids):
    # The QAPair belongs to the asker's tenant, whoever runs the loop.
    tenancy.act_as(plpy, row["tenant"])
    content = f"Question: {row['query']}\nAnswer: {row['response']}"
    node = memory.ingest_many(plpy, [(content, "QAPair", f"request:{row['request_id']}",
                                      {"confidence": round(float(quality), 4), "tags": ["writeback"],
                                       "request_id": str(row["request_id"])})])[0]
    targets = [c for c in ctx_ids if c != str(node)]
    graph.insert_edges(plpy, "Derived", [(str(node), c, float(quality), float(quality)) for c in targets],
                       "writeback")
    return 1


# --- background loop --------------------------------------------------------------------------

def _training_rows(plpy):
    replay = plpy.execute("""
        SELECT request_id::text AS rid, features, model, context_size, temperature, top_p, quality,
               latency_ms, cost, oracle::text AS oracle FROM ruvllm.replay""")
    recent = plpy.execute("""
        SELECT w.request_id::text AS rid, w.features, w.model, w.context_size, w.temperature,
               w.top_p, w.quality, w.generation_ms AS latency_ms,
               m.cost_per_token * COALESCE(w.completion_tokens, 0) / 1000.0 AS cost,
               NULL::text AS oracle
          FROM ruvllm.witness w LEFT JOIN ruvllm.models m ON m.name = w.model
         WHERE w.created_at > pg_catalog.now() - interval '1 day' AND w.quality IS NOT NULL
           AND w.features IS NOT NULL AND NOT w.cache_hit AND w.error IS NULL AND w.abstained IS NOT TRUE""")
    seen, out = set(), []
    for r in list(replay) + list(recent):
        if r["rid"] in seen or not r["features"] or len(r["features"]) != 128:
            continue
        seen.add(r["rid"])
        out.append(r)
    return out


def background_loop(plpy):
    lam = float(setting(plpy, "ruvllm.utility_lambda", "0.05"))
    mu = float(setting(plpy, "ruvllm.utility_mu", "0.01"))
    rows = _training_rows(plpy)
    if len(rows) < MIN_TRAIN_SAMPLES:
        return {"trained": False, "samples": len(rows),
                "reason": f"fewer than {MIN_TRAIN_SAMPLES} judged requests with features"}
    version, current = policy.current(plpy)
    names = list(current.model_names)
    X = np.asarray([r["features"] for r in rows], dtype=np.float32)
    used = [r["model"] for r in rows]
    u = training.utility([r["quality"] for r in rows], [(r["latency_ms"] or 0) / 1000.0 for r in rows],
                         [r["cost"] or 0.0 for r in rows], lam, mu)
    U = estimate_utilities(used, list(u), names,
                           oracle=[json.loads(r["oracle"]) if r["oracle"] else None for r in rows])
    labels, weights = labels_from_utilities(U, used, names)
    good = u >= np.median(u)
    ctx = np.array([training.context_bin_index(r["context_size"] or 1024, CONTEXT_BINS) if g else -1
                    for r, g in zip(rows, good)], dtype=np.int64)
    temp = np.array([r["temperature"] if g and r["temperature"] is not None else np.nan
                     for r, g in zip(rows, good)], dtype=np.float32)
    top_p = np.array([r["top_p"] if g and r["top_p"] is not None else np.nan
                      for r, g in zip(rows, good)], dtype=np.float32)
    data = training.TrainingSet.from_arrays(X, labels, ctx, temp, top_p, weights, utilities=U)
    train_set, heldout = data.split(HELDOUT_FRACTION, seed=version)
    threshold = float(setting(plpy, "ruvllm.confidence_threshold", "0.2"))

    candidate = current.copy()
    ewc = training.EWC.from_router(current, train_set, lam=EWC_LAMBDA)
    metrics = training.train(candidate, train_set, heldout=heldout, epochs=TRAIN_EPOCHS,
                             keep_fraction=0.5, batch_size=64, lr=TRAIN_LR, ewc=ewc, seed=version,
                             confidence_threshold=threshold)
    before = metrics["heldout_before"]["utility"]
    after = metrics["heldout"]["utility"]
    promote = after >= before
    reason = (f"held-out utility {after:.4f} >= {before:.4f} of version {version}" if promote else
              f"held-out utility {after:.4f} < {before:.4f} of version {version}: kept as candidate")
    summary = {"samples": len(rows), "n_train": metrics["n_train"], "n_heldout": metrics["n_heldout"],
               "heldout_utility_before": before, "heldout_utility_after": after,
               "fallback_rate_after": metrics["heldout"]["fallback_rate"],
               "loss_before": metrics["loss_before"], "loss_after": metrics["loss_after"],
               "density": metrics["density"], "seconds": metrics["seconds"]}
    new_version = plpy.execute(_plan(plpy, "store_policy", """
        INSERT INTO ruvllm.policies (status, router, model_names, metrics, reason, parent_version,
                                     promoted_at)
        VALUES ($1, $2, $3, $4::jsonb, $5, $6, CASE WHEN $1 = 'promoted' THEN pg_catalog.now() END)
        RETURNING version""", ["text", "bytea", "text[]", "text", "text", "int"]),
                               ["promoted" if promote else "candidate", candidate.to_bytes(), names,
                                json.dumps(summary), reason, version])[0]["version"]
    return {"trained": True, "version": new_version, "promoted": promote, "parent_version": version,
            "reason": reason, **summary}


# --- deep loop --------------------------------------------------------------------------------

def deep_loop(plpy):
    out = {}
    out.update(_pattern_bank(plpy))
    out.update(_compress_memory(plpy))
    out["retention"] = json.loads(plpy.execute("SELECT public.ruvllm_apply_retention()::text AS r")[0]["r"])
    # After compression deleted nodes: the term statistics counted again, one row per lexeme.
    out["lexical_stats_rows"] = plpy.execute("SELECT ruvllm._rebuild_lexical_stats() AS n")[0]["n"]
    return out


def _pattern_bank(plpy):
    """One bank per tenant, of that tenant's recent questions: a tenant's routing never reads
    clusters of another's."""
    rows = plpy.execute(_plan(plpy, "recent_queries", """
        SELECT tenant, query_embedding::text AS v, model, quality, context_size FROM ruvllm.witness
         WHERE created_at > pg_catalog.now() - make_interval(days => $1)
           AND query_embedding IS NOT NULL AND error IS NULL
         ORDER BY created_at DESC LIMIT $2""", ["int", "int"]), [PATTERN_WINDOW_DAYS, MAX_PATTERN_QUERIES])
    by_tenant = {}
    for r in rows:
        by_tenant.setdefault(r["tenant"], []).append(r)
    banks = {t: tenant_rows for t, tenant_rows in by_tenant.items() if len(tenant_rows) >= 4}
    if not banks:
        return {"patterns": 0, "pattern_queries": len(rows)}
    bank = plpy.execute("SELECT COALESCE(max(bank_version), 0) + 1 AS v FROM ruvllm.patterns")[0]["v"]
    made = 0
    for tenant, tenant_rows in sorted(banks.items()):
        made += _tenant_bank(plpy, bank, tenant, tenant_rows)
    plpy.execute(_plan(plpy, "old_banks", "DELETE FROM ruvllm.patterns WHERE bank_version < $1 - 1",
                       ["int"]), [bank])
    return {"patterns": made, "pattern_queries": len(rows), "bank_version": bank,
            "pattern_tenants": len(banks)}


def _tenant_bank(plpy, bank, tenant, rows):
    n = len(rows)
    X = np.stack([parse_vector(r["v"]) for r in rows])
    k = max(2, min(16, n // 10))
    result = patterns.kmeans(X, k, metric="cosine", seed=0)
    for c in range(result.k):
        members = [rows[i] for i in np.flatnonzero(result.assignments == c)]
        judged = [m for m in members if m["quality"] is not None]
        by_model = {}
        for m in judged:
            by_model.setdefault(m["model"], []).append(m["quality"])
        best = max(by_model, key=lambda name: np.mean(by_model[name])) if by_model else None
        best_ctx = None
        if best:
            sizes = [m["context_size"] for m in judged if m["model"] == best and m["context_size"]]
            best_ctx = max(set(sizes), key=sizes.count) if sizes else None
        plpy.execute(_plan(plpy, "pattern", """
            INSERT INTO ruvllm.patterns (bank_version, tenant, centroid, count, best_model,
                                         best_context_size, mean_quality)
            VALUES ($1, $2, $3::public.vector, $4, $5, $6, $7)""",
                           ["int", "text", "text", "int", "text", "int", "real"]),
                     [bank, tenant, vector_literal(result.centroids[c]), len(members), best, best_ctx,
                      float(np.mean([m["quality"] for m in judged])) if judged else None])
    return int(result.k)


def _compress_memory(plpy):
    similarity = float(setting(plpy, "ruvllm.dedup_similarity", "0.95"))
    pairs = plpy.execute(_plan(plpy, "dups", """
        SELECT n.id AS keep, n.graph_id::text AS keep_gid, m.id AS dup, m.gid AS dup_gid
          FROM (SELECT * FROM ruvllm.nodes ORDER BY created_at DESC LIMIT $1) n
         CROSS JOIN LATERAL (
               SELECT o.id, o.graph_id::text AS gid,
                      1 - (o.embedding OPERATOR(public.<=>) n.embedding) AS similarity
                 FROM ruvllm.nodes o
                WHERE o.id <> n.id AND o.tenant = n.tenant AND o.node_type = n.node_type
                ORDER BY o.embedding OPERATOR(public.<=>) n.embedding LIMIT 1) m
         WHERE m.similarity >= $2 AND n.created_at <= (SELECT created_at FROM ruvllm.nodes WHERE id = m.id)
        """, ["int", "float8"]), [MAX_COMPRESS_NODES, similarity])
    merged, gone = 0, set()
    for p in pairs:
        if p["keep"] in gone or p["dup"] in gone:
            continue
        graph.merge_vertex(plpy, p["keep_gid"], p["dup_gid"])
        plpy.execute(_plan(plpy, "drop_node", "DELETE FROM ruvllm.nodes WHERE id = $1", ["uuid"]), [p["dup"]])
        plpy.execute(_plan(plpy, "bump", """
            UPDATE ruvllm.nodes SET metadata = metadata || pg_catalog.jsonb_build_object('version',
                   COALESCE((metadata->>'version')::int, 1) + 1) WHERE id = $1""", ["uuid"]), [p["keep"]])
        gone.add(p["dup"])
        merged += 1
    pruned = graph.prune_edges(plpy, EDGE_FLOOR)
    touched = plpy.execute("""
        UPDATE ruvllm.nodes n SET last_accessed = a.last_accessed
          FROM ruvllm.node_access a
         WHERE a.node_id = n.id AND n.last_accessed IS DISTINCT FROM a.last_accessed""").nrows()
    return {"nodes_merged": merged, "edges_pruned": pruned, "last_accessed_copied": touched}


# --- oracle loop (by hand) --------------------------------------------------------------------

ORACLE_SAMPLE = 10
ORACLE_MAX_TOKENS = 64


def oracle_loop(plpy):
    """Every enabled model answers a sample of past questions with the same context; each answer
    is judged like the instant loop's, and the utilities go into the replay buffer as labels."""
    lam = float(setting(plpy, "ruvllm.utility_lambda", "0.05"))
    mu = float(setting(plpy, "ruvllm.utility_mu", "0.01"))
    capacity = int(setting(plpy, "ruvllm.replay_capacity", "10000"))
    pool = models.Pool.load(plpy)
    names = pool.names()
    sample = plpy.execute(_plan(plpy, "oracle_sample", """
        SELECT request_id, query, query_embedding::text AS qv, context_node_ids::text[] AS ctx,
               features, context_size, temperature, top_p
          FROM ruvllm.witness
         WHERE features IS NOT NULL AND error IS NULL AND NOT cache_hit AND response IS NOT NULL
           AND abstained IS NOT TRUE
         ORDER BY pg_catalog.random() LIMIT $1""", ["int"]), [ORACLE_SAMPLE])
    if not sample or not names:
        return {"labelled": 0, "models": names}
    gen = inference.backend_for(plpy)
    gen.n_threads = int(setting(plpy, "ruvllm.generation_threads", "1")) or None
    generators = pool.generator_names()
    judge_spec = pool.spec(generators[0]) if generators else None
    thresholds = _grounding_thresholds(plpy)
    rng = random.Random()
    labelled, generations = 0, 0
    for row in sample:
        ctx_ids = row["ctx"] or []
        ctx = plpy.execute(_plan(plpy, "ctx", """
            SELECT id::text AS id, content, embedding::text AS v, graph_id::text AS gid
              FROM ruvllm.nodes WHERE id = ANY($1::uuid[])""", ["text[]"]), [ctx_ids]) if ctx_ids else []
        by_id = {c["id"]: c for c in ctx}
        ordered = [by_id[i] for i in ctx_ids if i in by_id]
        context = [(i, c["content"], 0.0) for i, c in enumerate(ordered)]
        query_vec = parse_vector(row["qv"])
        outcomes = {}
        # Every model answers from the same evidence, as ruvllm_query would give it.
        selection = evidence.select(row["query"], query_vec, context, evidence.DEFAULT_BUDGET_TOKENS,
                                    evidence.approx_tokens)
        for name in names:
            spec = pool.spec(name)
            if spec.prompt_style == models.EXTRACTIVE:
                started = time.perf_counter()
                out = generation.GenerationResult(evidence.extractive_answer(selection), 0, 0, 0.0, "stop")
                out.seconds = time.perf_counter() - started
            else:
                system, prompt, stop = generation.answer_prompt(spec, row["query"], selection.context(),
                                                                style="evidence")
                out = gen.generate(spec, prompt, max_tokens=ORACLE_MAX_TOKENS, temperature=0.0, top_p=1.0,
                                   system=system, stop=stop)
                generations += 1
            answer_vec = embedding.embed_one(out.text or " ")[0]
            score = _run_judge(gen, judge_spec, row["query"], out.text, [c["content"] for c in ordered]) \
                if judge_spec is not None else None
            texts = [c["content"] for c in ordered]
            q = judge.automatic_quality(score, judge.groundedness(out.text, texts, embed=_embed_vectors,
                                                                  **thresholds),
                                        judge.relevance(answer_vec, query_vec))
            cost = pool.row(name)["cost_per_token"] * out.completion_tokens / 1000.0
            outcomes[name] = (q, out.seconds, cost)
        utilities = {n: float(q - lam * s - mu * c) for n, (q, s, c) in outcomes.items()}
        best = max(utilities, key=utilities.get)
        q, s, c = outcomes[best]
        labelled += _offer_replay(plpy, rng, capacity, dict(row, model=best), q, s, c, oracle=utilities)
    return {"labelled": labelled, "sampled": len(sample), "generations": generations, "models": names}
