"""ruvllm_query: the request pipeline, as stages over one Request.

    validate → session → exact cache → embed → semantic cache → retrieve (HNSW + BM25 + graph)
    → abstain (no memory relevant enough: "Not found in memory.") → route (features → FastGRNN)
    → attend (rank, dedup, the evidence spans within the budget) → generate (a model, or the
    extractive tier's best span) → check (grounding, citations, sources, confidence)
    → record (session, cache)

ruvllm.answer_style = documents runs 0.2.0's pipeline instead: whole nodes in the prompt, its
prompt, no abstention and no grounding check (grounded is then null).

STAGES runs in order. Each stage reads what the stages before it put on the Request and adds its
own part; a cache stage that finds an answer sets request.response, and the stages after it do
not run. A new stage is a function (plpy, request) in STAGES, with the fields it adds on Request.

Every call leaves one witness row, also when it fails (the error and its SQLSTATE are recorded
and the error is raised again). The timed stages' wall times go to the witness and the response.
"""
import contextlib
import dataclasses
import time
import uuid

from . import abstention, attention, cache, embedding, errors, evidence, generation, grounding, memory, models
from . import inference, pii, routing, sessions, tenancy, unit_vectors, witness
from .request import DEFAULT_MAX_TOKENS, QUERY_HOPS, check_constraints, check_query, settings
from .sqlglue import read_only

EXCERPT_CHARS = 240
PROMPT_RESERVE_TOKENS = 96   # system text, question and template tokens around the context
# Nodes whose attention is under this share of the best node's are left out of the prompt: small
# models answer worse, and slower, with weakly related text in their context.
MIN_RELATIVE_SCORE = 0.1
# The evidence budget when the router falls back to its default decision, and 0.2.0's budget
# for answer_style documents then (its safe default's context size).
DEFAULT_EVIDENCE_TOKENS = evidence.DEFAULT_BUDGET_TOKENS
DOCUMENTS_DEFAULT_CONTEXT = 1024
# 0.3.0's token counting (one text a call, as each is needed) instead of one call per request:
# only bench/query sets it, in its own PL/Python function, to time both in the same run.
PER_TEXT_TOKEN_COUNTS = False
# Evidence units are scored by the vectors ingest stored (unit_vectors.py); False embeds them in
# the request, as before they were stored: only bench/query sets it, to time both in one run.
STORED_UNIT_VECTORS = True
NOT_FOUND = evidence.NOT_FOUND
TIMED = ("embedding", "retrieval", "routing", "attention", "generation")
ROUTING_KEYS = ("model", "context_size", "temperature", "top_p", "confidence", "model_probs",
                "used_default", "explored", "policy_version")


class Stopwatch:
    def __init__(self):
        self.started = time.perf_counter()
        self.ms = {}

    @contextlib.contextmanager
    def timed(self, stage):
        """Adds the block's wall time to the stage's, unless the block raises."""
        since = time.perf_counter()
        yield
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - since) * 1000.0

    def total(self):
        return (time.perf_counter() - self.started) * 1000.0


@dataclasses.dataclass
class Request:
    """One ruvllm_query call: its arguments, then what each stage found, by the stage that sets it."""
    query: object
    session_id: object
    constraints: object
    backend: object = None             # a GenerationBackend; None: the default one (llama.cpp)
    request_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    clock: Stopwatch = dataclasses.field(default_factory=Stopwatch)
    trace: dict = None                 # the witness row's values, filled in as the stages go
    # validate: the arguments above, checked, and what the request runs under
    tenant: str = ""
    mask: object = None                # text -> text: PII masking of what is stored
    cfg: dict = None
    pool: models.Pool = None
    # load_session
    session: dict = None
    use_cache: bool = False
    # exact_cache
    query_hash: str = None
    constraints_key: str = None
    # embed
    vec: object = None
    token_count: int = None
    # retrieve
    rows: list = None
    node_vecs: object = None
    ages: list = None
    # route
    routing: dict = None
    hidden: object = None              # the router's new hidden state, for the session
    spec: generation.ModelSpec = None
    # attend
    gen: generation.GenerationBackend = None
    tokens: generation.RequestTokens = None   # the request's token counts (and tokenizer calls)
    max_tokens: int = None
    history: list = None
    context: list = None               # [(row index, text, attention score)]: what the prompt carries
    selection: evidence.Selection = None  # the evidence spans and their scores (also for the extractive tier)
    # abstain, check
    abstained: bool = False
    grounded: object = None            # True/False; None when not checked (answer_style documents)
    # generate
    result: generation.GenerationResult = None
    # check
    sources: list = None
    confidence: float = None
    # a cache hit, or record: what ruvllm_query returns
    response: dict = None

    def __post_init__(self):
        self.trace = {"request_id": self.request_id,
                      "session_id": self.session_id if isinstance(self.session_id, str) else None,
                      "query": self.query if isinstance(self.query, str) else None,
                      "created_at": witness.now_utc(), "cache_hit": False}

    def session_turn(self):
        if not self.session_id:
            return None
        return (self.session["turn_count"] if self.session else 0) + 1


# --- the stages -----------------------------------------------------------------------------------

# English runs about four characters to a token: the character bound a question's length in
# tokens implies (ruvllm.max_query_tokens).
QUERY_CHARS_PER_TOKEN = 4


def validate(plpy, req):
    """The tenant, the arguments checked, the settings and model pool; a forced model must be enabled."""
    req.tenant = tenancy.current(plpy)
    req.trace["tenant"] = req.tenant
    req.cfg = settings(plpy)
    req.mask = pii.masker(pii.kinds_from_setting(req.cfg["pii_mask"]))
    req.query = check_query(req.query)
    req.session_id = sessions.check_session_id(req.session_id)
    req.constraints = check_constraints(req.constraints)
    # Counted in characters too, before anything is embedded: the embedder's tokens undercount
    # what a generating model sees (a 50,000-character word is one [UNK] to MiniLM and 12,000
    # tokens to SmolLM2), and no model token is shorter than a character.
    max_chars = QUERY_CHARS_PER_TOKEN * req.cfg["max_query_tokens"]
    if len(req.query) > max_chars:
        raise errors.RuvllmError(
            errors.STRING_DATA_RIGHT_TRUNCATION,
            f"query is {len(req.query)} characters, over {QUERY_CHARS_PER_TOKEN} x ruvllm.max_query_tokens ({max_chars})",
            hint="Shorten the query (an admin may raise ruvllm.max_query_tokens).")
    req.pool = models.Pool.load(plpy)
    if "model" in req.constraints:
        # Unknown, disabled or its file changed: rejected before any work (an abstention too).
        req.pool.spec(req.constraints["model"])


def load_session(plpy, req):
    """The conversation so far, and whether the cache may answer."""
    req.session = sessions.load(plpy, req.tenant, req.session_id) if req.session_id else None
    # A continuing conversation's answer depends on its history: no cache for it.
    req.use_cache = req.cfg["cache_ttl"] > 0 and not (req.session and req.session["history"])


def exact_cache(plpy, req):
    """The same question under the same constraints, by hash: one index lookup, nothing embedded."""
    req.query_hash, req.constraints_key = cache.query_hash(req.query), cache.constraints_key(req.constraints)
    if req.use_cache:
        _serve_hit(plpy, req, cache.lookup_exact(plpy, req.tenant, req.query_hash, req.constraints_key))


def embed(plpy, req):
    with req.clock.timed("embedding"):
        req.vec, req.token_count, _truncated = embedding.embed_one(req.query)
    req.trace["query_embedding"] = req.vec
    limit = req.cfg["max_query_tokens"]
    if req.token_count > limit:
        raise errors.RuvllmError(
            errors.STRING_DATA_RIGHT_TRUNCATION,
            f"query is {req.token_count} tokens, over ruvllm.max_query_tokens ({limit})",
            hint="Shorten the query (an admin may raise ruvllm.max_query_tokens).")


def semantic_cache(plpy, req):
    """A cached answer to a question this similar (ruvllm.cache_similarity) under the same constraints."""
    if req.use_cache:
        _serve_hit(plpy, req, cache.lookup_semantic(plpy, req.tenant, req.vec, req.constraints_key,
                                                    req.cfg["cache_similarity"]))


def retrieve(plpy, req):
    """Hybrid search: dense and lexical hits fused, graph neighbours ranked with them; each row
    keeps its cosine distance (lexical-only hits too), which confidence and attention read."""
    with req.clock.timed("retrieval"):
        # The rows carry their embeddings (binary) and ages: no second statement for them.
        req.rows = memory.search_vector(plpy, req.vec, req.cfg["k"], QUERY_HOPS, req.tenant,
                                        query=req.query, mode="hybrid", ef_search=req.cfg["ef_search"],
                                        read_only=req.cfg["read_only"])
        req.node_vecs, req.ages = memory.row_vectors(req.rows)


def abstain(plpy, req):
    """No retrieved memory supports the question enough (ruvllm.abstain_below, on the scale of
    abstention.question_support): the answer says so, and nothing is routed or generated."""
    if req.cfg["answer_style"] != "evidence":
        return
    if abstention.question_support(req.rows) >= req.cfg["abstain_below"]:
        return
    req.abstained, req.grounded = True, None
    req.hidden = req.session["router_state"] if req.session else None   # the session's router state stays
    req.routing = {"model": None, "context_size": None, "temperature": None, "top_p": None,
                   "confidence": None, "model_probs": {}, "used_default": None, "explored": False,
                   "policy_version": None}
    req.result = generation.GenerationResult(NOT_FOUND, 0, 0, 0.0, "abstained")
    req.context, req.sources, req.confidence = [], [], 0.0
    req.trace.update(confidence=0.0, response=NOT_FOUND, prompt_tokens=0, completion_tokens=0,
                     context_node_ids=[], abstained=True, grounded=None)
    record(plpy, req)


def route(plpy, req):
    """The router's decision, then what the constraints force."""
    constraints, session = req.constraints, req.session
    with req.clock.timed("routing"):
        decision, x, req.hidden = routing.route_request(
            plpy, req.query, req.vec, req.token_count, req.rows, req.node_vecs, req.pool, req.cfg,
            constraints, h_prev=session["router_state"] if session else None,
            user_frequency=session["turn_count"] if session else 0, explore="model" not in constraints)
        if "model" in constraints:
            decision["model"] = constraints["model"]
        for key in ("temperature", "top_p"):
            if key in constraints:
                decision[key] = constraints[key]
        req.spec = req.pool.spec(decision["model"])
    req.routing = decision
    _trace_routing(req.trace, decision)
    req.trace["features"] = [round(float(v), 6) for v in x]


def attend(plpy, req):
    """The retrieved nodes ranked by attention; then the evidence spans of the best of them that
    fit the budget (answer_style documents: the best whole nodes that fit)."""
    spec = req.spec
    extractive = spec.prompt_style == "extractive"
    # The backend counts tokens for the budget here and generates in the next stage; the
    # extractive tier has no model, and no tokenizer.
    gen = req.gen = None if extractive else (req.backend or inference.backend_for(plpy))
    if gen is not None:
        gen.max_loaded = req.cfg["max_loaded_models"]
        gen.n_threads = req.cfg["generation_threads"] or None
    # Every count of the request in one tokenizer call: the texts are announced before the
    # first count (the session's turns, the question, and the sentences evidence may keep or
    # the nodes attention may keep); only cutting an over-long best text asks again.
    if PER_TEXT_TOKEN_COUNTS and not extractive:
        count = req.tokens = generation.PerTextTokens(lambda text: gen.count_tokens(spec, text))
    else:
        count = req.tokens = generation.RequestTokens(
            (lambda texts: [evidence.approx_tokens(t) for t in texts]) if extractive
            else (lambda texts: gen.count_tokens_many(spec, texts)))
    req.max_tokens = req.constraints.get("max_tokens", DEFAULT_MAX_TOKENS)
    req.history = history = sessions.prompt_turns(req.session)
    rows = req.rows
    style = req.cfg["answer_style"]
    with req.clock.timed("attention"):
        ranked = attention.rank(req.vec, req.node_vecs, [r["hop"] for r in rows],
                                [r["via_rel"] for r in rows], [r["edge_weight"] for r in rows], req.ages)
        if ranked:
            ranked = [n for n in ranked if n.score >= MIN_RELATIVE_SCORE * ranked[0].score]
        if style == "evidence" or extractive:
            nodes = [(n.index, rows[n.index]["content"], n.score) for n in ranked]
            # Scored first: only the sentences of units that may be kept are counted.
            prepared = evidence.candidates(req.query, nodes)
            vectors = None
            if STORED_UNIT_VECTORS and prepared.units:
                ids = [rows[index]["id"] for index, _text, _score in nodes]
                stored = unit_vectors.fetch(plpy, [ids[u.node] for u in prepared.units])
                vectors = unit_vectors.for_units(prepared.units, ids, stored)
            prepared.score(req.vec, nodes, vectors=vectors)
            count.want(prepared.texts())
        else:
            count.want(rows[n.index]["content"] for n in ranked)
        turns = [text for turn in history for text in turn]
        count.want(turns + [req.query])
        history_tokens = sum(count(text) for text in turns)
        room = spec.n_ctx - req.max_tokens - PROMPT_RESERVE_TOKENS - history_tokens - count(req.query)
        if style == "evidence" or extractive:
            wanted = DEFAULT_EVIDENCE_TOKENS if req.routing["used_default"] else req.routing["context_size"]
            budget = min(wanted, room)
            req.selection = evidence.select(req.query, req.vec, nodes, budget, count, prepared=prepared) \
                if budget > 0 else evidence.select(req.query, req.vec, [], 0, count)
            req.context = req.selection.context()
        else:
            wanted = DOCUMENTS_DEFAULT_CONTEXT if req.routing["used_default"] and \
                req.routing["context_size"] < DOCUMENTS_DEFAULT_CONTEXT else req.routing["context_size"]
            budget = min(wanted, room)
            req.context = attention.select_context(
                ranked, [r["content"] for r in rows], budget, count) if budget > 0 else []


def generate(plpy, req):
    if req.spec.prompt_style == "extractive":
        with req.clock.timed("generation"):
            text = evidence.extractive_answer(req.selection)
        req.result = generation.GenerationResult(text, 0, 0, req.clock.ms["generation"] / 1000.0, "stop")
        return
    system, prompt, stop = generation.answer_prompt(req.spec, req.query, req.context,
                                                    style=req.cfg["answer_style"])
    with req.clock.timed("generation"):
        req.result = req.gen.generate(req.spec, prompt, max_tokens=req.max_tokens,
                                      temperature=req.routing["temperature"], top_p=req.routing["top_p"],
                                      system=system, history=req.history, stop=stop)


def check(plpy, req):
    """Whether the answer stands on its evidence (a generated answer that does not is replaced by
    the extractive one), its sources, and how well memory supports it (confidence)."""
    rows = req.rows
    if req.selection is not None:
        text = req.result.text
        if req.spec.prompt_style == "extractive":
            req.grounded = bool(req.selection.units)   # verbatim spans (or nothing to say)
        else:
            with req.clock.timed("check"):
                result = grounding.check(text, req.selection.evidence_units(),
                                         min_overlap=req.cfg["grounding_overlap"],
                                         min_similarity=req.cfg["grounding_similarity"],
                                         embed=lambda texts: embedding.embed(texts).vectors)
                req.grounded = result.grounded
                text = grounding.add_citations(text, result) if result.grounded else \
                    evidence.extractive_answer(req.selection)
        if not req.selection.units:
            req.abstained = True   # nothing in memory to answer from
            text = NOT_FOUND
        if text != req.result.text:
            req.result = dataclasses.replace(req.result, text=text)
    req.sources = [{"id": str(rows[i]["id"]), "excerpt": rows[i]["content"][:EXCERPT_CHARS],
                    "score": round(float(score), 6), "hop": rows[i]["hop"],
                    "distance": round(float(rows[i]["distance"]), 6)} for i, _text, score in req.context]
    if req.selection is not None:
        for source, node in zip(req.sources, req.selection.nodes):
            source["evidence"] = list(node.spans)
    # The best cosine similarity among the context used.
    confidence = max((1.0 - float(rows[i]["distance"]) for i, _, _ in req.context), default=0.0)
    req.confidence = min(1.0, max(0.0, confidence))
    req.trace.update(confidence=req.confidence, response=req.result.text,
                     prompt_tokens=req.result.prompt_tokens,
                     prompt_cached_tokens=req.result.cached_prompt_tokens,
                     completion_tokens=req.result.completion_tokens,
                     context_node_ids=[s["id"] for s in req.sources],
                     grounded=req.grounded, abstained=req.abstained)


def record(plpy, req):
    """The turn into the session, the answer into the cache; the response."""
    text = req.result.text
    if req.session_id:
        version = req.routing["policy_version"]
        if version is None and req.session:   # an abstention was not routed
            version = req.session.get("policy_version")
        sessions.save(plpy, req.tenant, req.session_id, req.session, req.query, text, req.hidden,
                      version, req.vec, mask=req.mask)
    answer = {"text": text, "confidence": req.confidence, "sources": req.sources,
              "grounded": req.grounded, "abstained": req.abstained,
              "routing": {k: req.routing[k] for k in ROUTING_KEYS}}
    # Not an abstention: memory added later may answer the same question.
    if req.use_cache and req.result.finish_reason != "error" and not req.abstained:
        cache.store(plpy, req.tenant, req.query, req.query_hash, req.constraints_key, req.vec, answer,
                    req.cfg["cache_ttl"], req.request_id, mask=req.mask)
    _finish_trace(req)
    req.response = dict(request_id=str(req.request_id), **answer, latency_ms=_latency(req.trace),
                        cache_hit=False, session_turn=req.session_turn())


STAGES = (validate, load_session, exact_cache, embed, semantic_cache, retrieve, abstain, route, attend,
          generate, check, record)


# --- running them -------------------------------------------------------------------------------

def run(plpy, query, session_id=None, constraints=None, backend=None):
    """One request. Returns the response dict; records the witness row in every case."""
    req = Request(query, session_id, constraints, backend)
    try:
        for stage in STAGES:
            stage(plpy, req)
            if req.response is not None:
                break
        _finish_trace(req)
        witness.record(plpy, witness.make_row(mask=req.mask, **req.trace))
        return req.response
    except Exception as e:  # noqa: BLE001 - recorded, then raised again unchanged
        req.trace["tenant"] = req.tenant
        req.trace["error"] = getattr(e, "message", None) or str(e) or type(e).__name__
        req.trace["error_sqlstate"] = getattr(e, "sqlstate", None) or errors.INTERNAL_ERROR
        _finish_trace(req)
        try:
            witness.record(plpy, witness.make_row(mask=req.mask or pii.masker(pii.KINDS), **req.trace))
        except Exception:  # noqa: BLE001 - the caller's error matters more than the audit's
            pass
        raise


def _serve_hit(plpy, req, hit):
    """Answer from the cache, when there is a hit."""
    if hit is None:
        return
    decision = hit["routing"]
    _trace_routing(req.trace, decision)
    # Entries cached before grounding existed have neither key.
    grounded, abstained = hit.get("grounded"), bool(hit.get("abstained"))
    req.trace.update(cache_hit=True, confidence=hit["confidence"], response=hit["text"],
                     context_node_ids=[s["id"] for s in hit["sources"]], grounded=grounded,
                     abstained=abstained)
    if not (req.cfg["read_only"] if req.cfg else read_only(plpy)):
        cache.count_hit(plpy, hit["cache_id"])
    if req.session_id and req.vec is not None:
        sessions.save(plpy, req.tenant, req.session_id, req.session, req.query, hit["text"], None,
                      decision["policy_version"], req.vec, mask=req.mask)
    _finish_trace(req)
    req.response = {"request_id": str(req.request_id), "text": hit["text"], "confidence": hit["confidence"],
                    "sources": hit["sources"], "grounded": grounded, "abstained": abstained,
                    "routing": decision, "latency_ms": _latency(req.trace),
                    "cache_hit": True, "cache_similarity": hit["similarity"],
                    "session_turn": req.session_turn()}


def _trace_routing(trace, decision):
    # Cache entries from before exploration existed have no "explored".
    trace.update(model=decision["model"], context_size=decision["context_size"],
                 temperature=decision["temperature"], top_p=decision["top_p"],
                 routing_confidence=decision["confidence"], used_default=decision["used_default"],
                 policy_version=decision["policy_version"], model_probs=decision["model_probs"],
                 explored=bool(decision.get("explored")))


def _finish_trace(req):
    for stage in TIMED:
        if stage in req.clock.ms:
            req.trace[f"{stage}_ms"] = round(req.clock.ms[stage], 3)
    req.trace["total_ms"] = round(req.clock.total(), 3)


def _latency(trace):
    return {stage: trace.get(f"{stage}_ms") or 0.0 for stage in TIMED + ("total",)}
