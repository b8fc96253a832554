"""Fusion of retrieval signals into one ranking (pure: no database, unit-tested on hand-made lists).

Dense (HNSW cosine) and lexical (BM25) hits are fused by a convex combination of normalised scores
(`convex`): DENSE_WEIGHT x the cosine similarity min-max scaled over the candidates + (1 -
DENSE_WEIGHT) x the BM25 score over the best BM25 score of the query. Every candidate has both: a
lexical-only hit's cosine similarity is computed from its embedding, and a node the lexical list
did not find scores 0 there.

Reciprocal rank fusion (`rrf`, k = 60) was the first choice and is kept for comparison: it lost
exactly the case hybrid search is for. A code like ERR-7731-XQ that only one passage contains is
lexical rank 1 (1/61) but missing from the dense top; passages that both lists rank 2nd-3rd (on
common words like "error" and "code") score 1/62 + 1/63 and push it out of the top 3, in every
configuration of k, since RRF sees ranks and not that the BM25 score of the rank-1 passage was five
times the next one's (tests/integration/test_retrieval.py has the case).

Graph neighbours of the fused hits then compete for the same ranking: a neighbour reached over an
edge scores parent score x edge weight (clamped to [0, 1]) x GRAPH_DAMPING, or its own fused score
when a list also found it and that is higher; over several paths the best one counts. A full-weight
(Follows) neighbour of the best hit (score ~1) scores ~0.5 and enters the top k above the weaker
hits; a neighbour of a weak hit does not.
"""

DENSE_WEIGHT = 0.5
GRAPH_DAMPING = 0.5
RRF_K = 60


def convex(similarities, lexical_scores, dense_weight=DENSE_WEIGHT):
    """{id: fused score in [0, 1]}. similarities: {id: cosine similarity} of every candidate;
    lexical_scores: {id: BM25 score} of the lexical hits (the others score 0 there). With one
    signal only (the other dict empty), that signal alone, normalised the same way."""
    if not similarities and not lexical_scores:
        return {}
    ids = set(similarities) | set(lexical_scores)
    dense = _min_max(similarities)
    best = max(lexical_scores.values(), default=0.0)
    lex = {node: (score / best if best > 0 else 0.0) for node, score in lexical_scores.items()}
    if not lexical_scores:
        return {node: dense.get(node, 0.0) for node in ids}
    if not similarities:
        return {node: lex.get(node, 0.0) for node in ids}
    return {node: dense_weight * dense.get(node, 0.0) + (1 - dense_weight) * lex.get(node, 0.0)
            for node in ids}


def _min_max(scores):
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo <= 1e-12:
        return {node: 1.0 for node in scores}
    return {node: (s - lo) / (hi - lo) for node, s in scores.items()}


def rrf(ranked_lists, k=RRF_K):
    """{id: fused score} over lists of ids, each best first; an id absent from a list gets nothing
    from it. Duplicates inside one list count at their best rank."""
    scores = {}
    for ranked in ranked_lists:
        seen = set()
        for rank, node in enumerate(ranked, start=1):
            if node in seen:
                continue
            seen.add(node)
            scores[node] = scores.get(node, 0.0) + 1.0 / (k + rank)
    return scores


def ranks(scores):
    """{id: rank from 1} by score, best first; ties broken by id, so the order is reproducible."""
    return {node: i for i, node in enumerate(order(scores), start=1)}


def order(scores):
    """The ids of {id: score}, best first, ties by id (as text)."""
    return sorted(scores, key=lambda node: (-scores[node], str(node)))


def top(scores, k):
    return order(scores)[:k]


def edge_factor(weight):
    """An edge's weight as a factor in [0, 1]: user edges may weigh up to 1000, and an edge without
    a weight counts as 1."""
    if weight is None:
        return 1.0
    return min(max(float(weight), 0.0), 1.0)


def neighbour_score(parent_score, weight, damping=GRAPH_DAMPING):
    return parent_score * edge_factor(weight) * damping


def best_paths(frontier_scores, edges, damping=GRAPH_DAMPING):
    """For one hop: {neighbour: (graph score, parent, rel, weight)} keeping each neighbour's best
    path. frontier_scores: {parent: score}; edges: iterable of (parent, neighbour, rel, weight)."""
    best = {}
    for parent, node, rel, weight in edges:
        if parent not in frontier_scores:
            continue
        s = neighbour_score(frontier_scores[parent], weight, damping)
        if node not in best or s > best[node][0] or (s == best[node][0] and str(parent) < str(best[node][1])):
            best[node] = (s, parent, rel, weight)
    return best
