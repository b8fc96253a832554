"""Fusion of retrieval signals into one ranking (pure: no database, unit-tested on hand-made lists).

Dense (HNSW cosine) and lexical (BM25) hits are fused by reciprocal rank fusion: a node scores
sum over the lists it is in of 1 / (RRF_K + rank), ranks from 1. RRF needs no calibration between
a cosine distance and a BM25 score, whose scales differ per query and per corpus.

Graph neighbours of the fused hits then compete for the same ranking: a neighbour reached over an
edge scores parent score x edge weight (clamped to [0, 1]) x GRAPH_DAMPING, or its own RRF score
when a list also found it and that is higher; over several paths the best one counts. With RRF_K = 60 the top ranks
of one list score 1/61 .. 1/70 and a node both lists rank first 2/61, so with GRAPH_DAMPING = 0.5 a
full-weight neighbour of a hit both lists agree on scores like the top hit of a single list and
enters the top k, while a neighbour of a hit only one list found (1/61 x 0.5, the score of rank 61)
does not push out a hit.
"""

RRF_K = 60
GRAPH_DAMPING = 0.5


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
