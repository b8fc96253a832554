"""Graph attention that ranks the retrieved memory subgraph for the LLM context.

Memory search returns the k nearest nodes (hop 0) and their graph neighbours up to a few hops
away, each tagged with the relation that reached it (``via_rel``) and that edge's weight. This
module scores those nodes against the query, drops near-duplicates and packs the best ones into
the chosen model's context budget.

Scoring, for n nodes with unit vectors n(i) and the unit query q (both d-dimensional):

    heads       split the d dims into H contiguous blocks of d_h = d / H (384 = 4 x 96)
    s_h(i)    = <q_h, n_h(i)> / sqrt(d_h) * (sqrt(d_h) * tau * H)  =  tau * H * <q_h, n_h(i)>
    logit_h(i) = s_h(i) + bias(i)
    a_h        = softmax over the nodes of logit_h
    score(i)   = mean over heads of a_h(i)            (sums to 1 over the nodes)

The scale makes the mean over heads of s_h equal ``tau * cos(q, n)``: the block dot products of
unit vectors are ~1/H of the cosine each, so without the H they would shrink as heads are added,
and without the sqrt(d_h) the usual 1/sqrt(d_h) would flatten scores of unit vectors (whose dot
products are at most 1, not O(sqrt(d)) as for unnormalised activations) to near uniform. With
tau = 10, two nodes whose cosines to the query differ by 0.1 differ by a factor e in attention,
the spread between "on topic" and "related" in MiniLM space. The heads have no learned
projections: a head is a block of the embedding, so a node that matches the query strongly in
one block but not overall still gets some attention from that head, which a single dot product
would average away.

    bias(i) = rel_bias[via_rel]
            + edge_weight_scale * log(max(edge_weight, min_edge_weight))   (hop > 0 only)
            + hop * log(hop_decay)
            + log(max(0.5 ** (age_s / recency_half_life_s), min_recency))  (age None: 0)

A bias of b multiplies a node's attention by about e**b, so a bias of -0.1 costs as much as a
cosine 0.01 lower. Default relation biases: a direct HNSW hit (None) and a Cites neighbour get
0 (the hit is the evidence the query asked for; a cited source is what that evidence stands on);
Follows gets -0.1 (the next chunk of a document the model already sees is useful continuation
but partly redundant with it); Derived -0.1 (a fact or summary derived from the hit carries the
same content, slightly less first-hand); SameTopic -0.2 (topic similarity was judged at
ingestion against other nodes, not against this query); AgentStep -0.3 (an agent's trace is
about how an earlier task went, rarely the answer itself). Edge weights of 1 are neutral, lower
weights push a neighbour down, and a weight of 0 (clamped to min_edge_weight) all but removes
it. A missing edge weight counts as 1. Negative ages (clock skew) count as 0.

All defaults live in the frozen AttentionConfig so the router or training can tune them.

Near-duplicates: walking the nodes best first, a node whose cosine to an already kept node is
at least ``dedup_similarity`` is dropped and recorded on the node that kept its place. Kept
scores are not renormalised: a score is the node's share of the attention over everything that
was retrieved.

Context selection keeps nodes in rank order while sum(count_tokens(text) + overhead) fits the
budget; a node that does not fit is skipped, so a smaller later node may still fit. When the
best node alone is too large its text is cut at a word boundary to fit, so the context is never
empty when there are nodes.

Everything is float32 (config values are Python floats so numpy 2 keeps float32). The module
does numerics only; it never imports plpy, and malformed input raises RuvllmError 22023.
"""

import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from ruvllm import errors

REL_NAMES = ("Cites", "Follows", "SameTopic", "AgentStep", "Derived")

DEFAULT_REL_BIAS = MappingProxyType({
    None: 0.0,
    "Cites": 0.0,
    "Follows": -0.1,
    "SameTopic": -0.2,
    "AgentStep": -0.3,
    "Derived": -0.1,
})

_WORD_END = re.compile(r"\S+")


def _finite_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


@dataclass(frozen=True)
class AttentionConfig:
    """Weights of the attention scoring, dedup and packing; see the module docstring.

    ``rel_bias`` overrides the defaults per relation: ``AttentionConfig(rel_bias={"Cites": 0.2})``
    changes only Cites. It is stored read-only and left out of the hash.
    """

    heads: int = 4
    tau: float = 10.0
    rel_bias: object = field(default_factory=lambda: DEFAULT_REL_BIAS, hash=False)
    edge_weight_scale: float = 1.0
    min_edge_weight: float = 1e-3
    hop_decay: float = 0.7
    recency_half_life_s: float = 30 * 86400.0
    min_recency: float = 0.25
    dedup_similarity: float = 0.95
    per_node_overhead_tokens: int = 8

    def __post_init__(self):
        if not isinstance(self.heads, (int, np.integer)) or isinstance(self.heads, bool) \
                or self.heads < 1:
            raise errors.invalid(f"heads must be an integer >= 1, not {self.heads!r}")
        checks = (
            ("tau", _finite_number(self.tau) and self.tau > 0, "> 0"),
            ("edge_weight_scale", _finite_number(self.edge_weight_scale)
             and self.edge_weight_scale >= 0, ">= 0"),
            ("min_edge_weight", _finite_number(self.min_edge_weight)
             and self.min_edge_weight > 0, "> 0"),
            ("hop_decay", _finite_number(self.hop_decay) and 0 < self.hop_decay <= 1, "in (0, 1]"),
            ("recency_half_life_s", _finite_number(self.recency_half_life_s)
             and self.recency_half_life_s > 0, "> 0"),
            ("min_recency", _finite_number(self.min_recency) and 0 < self.min_recency <= 1,
             "in (0, 1]"),
            # Above 1 (say 2.0) no cosine reaches it: dedup is off.
            ("dedup_similarity", _finite_number(self.dedup_similarity)
             and self.dedup_similarity > 0, "> 0"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise errors.invalid(f"{name} must be a finite number {rule}, not {getattr(self, name)!r}")
        if not isinstance(self.per_node_overhead_tokens, (int, np.integer)) \
                or isinstance(self.per_node_overhead_tokens, bool) or self.per_node_overhead_tokens < 0:
            raise errors.invalid("per_node_overhead_tokens must be an integer >= 0, "
                                 f"not {self.per_node_overhead_tokens!r}")
        try:
            overrides = dict(self.rel_bias)
        except (TypeError, ValueError):
            raise errors.invalid("rel_bias must be a mapping from relation name (or None) to a number")
        merged = dict(DEFAULT_REL_BIAS)
        for rel, bias in overrides.items():
            if rel not in merged:
                raise errors.invalid(f"unknown rel {rel!r} in rel_bias",
                                     hint="rel is None or one of " + ", ".join(REL_NAMES))
            if not _finite_number(bias):
                raise errors.invalid(f"rel_bias[{rel!r}] must be a finite number, not {bias!r}")
            merged[rel] = float(bias)
        object.__setattr__(self, "rel_bias", MappingProxyType(merged))


_DEFAULT_CONFIG = AttentionConfig()


@dataclass
class RankedNode:
    """One node of the ranking; ``index`` points into the caller's node list."""

    index: int
    score: float                # mean attention over heads; all n scores sum to 1
    head_scores: list           # attention of each head, a_h(index)
    similarity: float = 0.0     # cosine to the query
    bias: float = 0.0           # the log-space bias that was added to every head's logit
    duplicates: list = field(default_factory=list)  # indices dropped as near-duplicates of this one


def _optional_numbers(values, name, missing):
    """float64 array of values with None replaced by `missing`; finite numbers only."""
    try:
        arr = np.array([missing if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or not np.isfinite(arr).all():
        raise errors.invalid(f"{name} must be None or finite numbers")
    return arr


def _check_inputs(query_vec, node_vecs, hops, via_rels, edge_weights, ages_s, config):
    """(q, nodes (n, d), hops, edge weights, ages) as arrays, validated; the last three are
    None when there are no nodes, ages also when ages_s is None."""
    heads = config.heads
    q = np.asarray(query_vec, dtype=np.float32)
    if q.ndim != 1 or q.size == 0 or q.size % heads:
        raise errors.invalid(f"query_vec must be a vector whose length is a multiple of heads={heads}, "
                             f"not shape {q.shape}", hint="embeddings are 384-d")
    d = q.size
    nodes = np.asarray(node_vecs, dtype=np.float32)
    if nodes.ndim == 1 and nodes.size == 0:
        nodes = nodes.reshape(0, d)
    if nodes.ndim != 2 or nodes.shape[1] != d:
        raise errors.invalid(f"node_vecs must be (n, {d}) like the query, not shape {nodes.shape}",
                             hint="embeddings are 384-d")
    n = nodes.shape[0]
    lists = {"hops": hops, "via_rels": via_rels, "edge_weights": edge_weights}
    if ages_s is not None:
        lists["ages_s"] = ages_s
    for name, values in lists.items():
        if values is None or len(values) != n:
            raise errors.invalid(f"{name} must have one entry per node ({n}), "
                                 f"not {None if values is None else len(values)}")
    if n == 0:
        return q, nodes, None, None, None
    if not (np.isfinite(q).all() and np.isfinite(nodes).all()):
        raise errors.invalid("query_vec and node_vecs must be finite")
    hop_arr = np.asarray(hops)
    # Integer dtype only: 1.5 or None makes the array float or object and is refused.
    if hop_arr.ndim != 1 or hop_arr.dtype.kind not in "iu" or (hop_arr < 0).any():
        raise errors.invalid("hops must be integers >= 0")
    try:
        unknown = sorted(map(repr, set(via_rels) - config.rel_bias.keys()))
    except TypeError:  # an unhashable entry cannot be a relation name either
        unknown = [repr(next(r for r in via_rels if not isinstance(r, (str, type(None)))))]
    if unknown:
        raise errors.invalid(f"unknown rel {unknown[0]}",
                             hint="rel is None or one of " + ", ".join(REL_NAMES))
    weights = _optional_numbers(edge_weights, "edge_weights", 1.0)
    if (weights < 0).any():
        raise errors.invalid("edge_weights must be None or finite numbers >= 0")
    ages = None if ages_s is None else _optional_numbers(ages_s, "ages_s", 0.0)
    return q, nodes, hop_arr, weights, ages


def _bias(hops, via_rels, weights, ages, config):
    rel_bias = config.rel_bias
    bias = np.array([rel_bias[r] for r in via_rels], dtype=np.float32)
    if config.edge_weight_scale:
        # Hop-0 nodes were not reached by an edge, so any weight given for them is ignored
        # (a missing weight is already 1: log 0).
        w = np.where(hops == 0, 1.0, np.maximum(weights, config.min_edge_weight)).astype(np.float32)
        bias += config.edge_weight_scale * np.log(w)
    bias += math.log(config.hop_decay) * hops.astype(np.float32)
    if ages is not None:
        # Negative ages are clock skew: no decay. In log space because 0.5 ** large underflows
        # to 0 before the floor could catch it.
        age = np.maximum(ages, 0.0).astype(np.float32)
        bias += np.maximum(age * (-math.log(2.0) / config.recency_half_life_s),
                           math.log(config.min_recency))
    return bias


def _heads_and_parts(query_vec, node_vecs, hops, via_rels, edge_weights, ages_s, config):
    q, nodes, hops, weights, ages = _check_inputs(
        query_vec, node_vecs, hops, via_rels, edge_weights, ages_s, config)
    heads = config.heads
    n, d = nodes.shape
    if n == 0:
        return np.zeros((heads, 0), dtype=np.float32), q, nodes, np.zeros(0, dtype=np.float32), \
            np.zeros((0, heads), dtype=np.float32)
    dh = d // heads
    # Block-diagonal query: one BLAS matmul gives every head's dot product, (n, H).
    q_blocks = np.zeros((heads, dh, heads), dtype=np.float32)
    q_blocks[np.arange(heads), :, np.arange(heads)] = q.reshape(heads, dh)
    sims = nodes @ q_blocks.reshape(d, heads)
    bias = _bias(hops, via_rels, weights, ages, config)
    logits = sims.T * float(config.tau * heads) + bias
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits, q, nodes, bias, sims


def head_attention(query_vec, node_vecs, hops, via_rels, edge_weights, ages_s=None,
                   config=_DEFAULT_CONFIG):
    """(heads, n) float32: each head's attention over the nodes; every row sums to 1."""
    return _heads_and_parts(query_vec, node_vecs, hops, via_rels, edge_weights, ages_s, config)[0]


def attention_scores(query_vec, node_vecs, hops, via_rels, edge_weights, ages_s=None,
                     config=_DEFAULT_CONFIG):
    """(n,) float32 node scores, the mean of the heads' attention; they sum to 1."""
    per_head = head_attention(query_vec, node_vecs, hops, via_rels, edge_weights, ages_s, config)
    return per_head.mean(axis=0, dtype=np.float32)


def rank(query_vec, node_vecs, hops, via_rels, edge_weights, ages_s=None, config=_DEFAULT_CONFIG):
    """RankedNodes best first, near-duplicates removed (see the module docstring)."""
    per_head, q, nodes, bias, sims = _heads_and_parts(
        query_vec, node_vecs, hops, via_rels, edge_weights, ages_s, config)
    n = nodes.shape[0]
    if n == 0:
        return []
    scores = per_head.mean(axis=0, dtype=np.float32)
    # Stable on -score: equal scores keep the caller's order (nearest hits first from search).
    order = np.argsort(-scores, kind="stable").tolist()
    gram = nodes @ nodes.T
    norms = np.sqrt(np.maximum(np.diagonal(gram), 1e-30))
    similar = gram >= float(config.dedup_similarity) * np.outer(norms, norms)
    np.fill_diagonal(similar, False)
    q_norm = max(float(np.linalg.norm(q)), 1e-30)
    similarity = (sims.sum(axis=1) / (norms * q_norm)).tolist()
    # Usually few pairs are near-duplicates, so the greedy walk is plain Python over neighbour
    # lists rather than a numpy row operation per node.
    neighbours = {}
    if similar.any():
        rows, cols = np.nonzero(similar)
        for i, j in zip(rows.tolist(), cols.tolist()):
            neighbours.setdefault(i, []).append(j)
    position = [0] * n
    for pos, i in enumerate(order):
        position[i] = pos
    done = [False] * n
    score_list, head_list, bias_list = scores.tolist(), per_head.T.tolist(), bias.tolist()
    kept = []
    for i in order:
        if done[i]:
            continue
        done[i] = True
        # Every node already walked is done, so these are later nodes that this one outranks.
        dups = []
        if i in neighbours:
            dups = [j for j in neighbours[i] if not done[j]]
            for j in dups:
                done[j] = True
            dups.sort(key=position.__getitem__)
        kept.append(RankedNode(index=i, score=score_list[i], head_scores=head_list[i],
                               similarity=similarity[i], bias=bias_list[i], duplicates=dups))
    return kept


# How many prefixes _cut_to_fit counts in one tokenizer call.
CUT_PROBES = 8


def _largest_fitting(n, guess, fits_many):
    """The largest k in 0..n with fits(k), fits(0) being true and fits monotone; fits_many(ks)
    -> [bool] answers for several k in one tokenizer call. The first call probes CUT_PROBES
    values around guess, later ones spread CUT_PROBES over what is still open: one call when the
    guess is near, a few more when it is not."""
    lo, hi = 0, n   # k <= lo is known to fit; k > hi is known not to
    guess = min(max(1, guess), n) if n else 0
    probes = range(max(1, guess - CUT_PROBES // 2 + 1), min(n, guess + CUT_PROBES // 2) + 1)
    while lo < hi:
        ks = sorted(set(k for k in probes if lo < k <= hi))
        if not ks:
            step = (hi - lo) / (CUT_PROBES + 1)
            ks = sorted(set(min(hi, lo + max(1, round(step * (i + 1)))) for i in range(CUT_PROBES)))
        for k, fits in zip(ks, fits_many(ks)):
            if fits:
                lo = max(lo, k)
            else:
                hi = min(hi, k - 1)
        probes = ()
    return lo


def _cut_to_fit(text, limit, count_tokens, about=None):
    """The longest prefix of text, at a word boundary, with count_tokens(prefix) <= limit.
    count_tokens.many(texts), when it has it (generation.RequestTokens), counts several prefixes
    in one tokenizer call; about: roughly how many tokens text has, for where to look first."""
    many = getattr(count_tokens, "many", None) or (lambda texts: [count_tokens(t) for t in texts])
    ends = [m.end() for m in _WORD_END.finditer(text)]
    share = limit / about if about else limit / max(1, (len(text) + 3) // 4)
    guess = sum(1 for e in ends if e <= share * len(text))
    lo = _largest_fitting(len(ends), guess,
                          lambda ks: [int(n) <= limit for n in many([text[:ends[k - 1]] for k in ks])])
    if lo:
        return text[:ends[lo - 1]]
    # Not even the first word fits (a URL, a base64 blob): cut it by characters instead.
    start = len(text) - len(text.lstrip())
    word = text[start:ends[0]] if ends else ""
    lo = _largest_fitting(len(word), int(share * len(word)),
                          lambda ks: [int(n) <= limit for n in many([word[:k] for k in ks])])
    return word[:lo]


def select_context(ranked, texts, token_budget, count_tokens, config=_DEFAULT_CONFIG):
    """[(index, text, score)] in rank order whose tokens plus per-node overhead fit token_budget.

    count_tokens(text) -> int is the chosen model's tokenizer. Only the first ranked node is ever
    cut (when it alone is over budget), at a word boundary, or inside its first word when even
    that is too long; other nodes are kept whole or skipped. Two degenerate budgets bend the
    rules so the result is not empty: when token_budget <= per_node_overhead_tokens the cut text
    gets the whole budget (the overhead is then over it), and when not even one character fits
    the text is "".
    """
    if not isinstance(token_budget, (int, np.integer)) or isinstance(token_budget, bool) \
            or token_budget < 1:
        raise errors.invalid(f"token_budget must be an integer >= 1, not {token_budget!r}")
    for node in ranked:
        if not 0 <= node.index < len(texts):
            raise errors.invalid(f"ranked node index {node.index} is outside texts (length {len(texts)})")
    overhead = int(config.per_node_overhead_tokens)
    remaining = int(token_budget)
    out = []
    for pos, node in enumerate(ranked):
        if out and remaining < overhead:
            break
        text = texts[node.index]
        size = int(count_tokens(text))
        cost = size + overhead
        if cost <= remaining:
            out.append((node.index, text, node.score))
            remaining -= cost
        elif pos == 0:
            # When the overhead alone fills the budget, the text still gets the whole budget:
            # a context with the best node's first words beats an empty one.
            limit = remaining - overhead if remaining > overhead else remaining
            cut = _cut_to_fit(text, limit, count_tokens, about=size)
            out.append((node.index, cut, node.score))
            remaining -= min(remaining, int(count_tokens(cut)) + overhead)
    return out
