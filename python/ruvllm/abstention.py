"""Whether memory holds an answer at all, before anything is routed or generated.

A question is *supported* by a retrieved hit (hop 0) by

    support = sqrt(similarity × coverage)

where similarity is the hit's cosine similarity to the question (MiniLM) and coverage the share of
the question's term weight (the IDF of its lexemes, from the tenant's lexical statistics) that the
hit contains. The question's support is its best hit's. A question without lexical terms (or a
search without them) is supported by similarity alone.

Why both: on the PostgreSQL manual (bench/answers), questions the manual does not answer still
find passages of cosine 0.4-0.57 ("the default value of turbo_vacuum_mode" is near every
"the default value of ..."), as close as many questions it answers (0.50 and up), while the rare
term that makes the question (turbo_vacuum_mode, innodb, MongoDB) is in no passage: coverage
separates them. Taken together, per hit, the answerable questions scored 0.48 and up and the
unanswerable ones at most 0.47 there (see bench/RESULTS.md, bench/answers).

ruvllm.abstain_below is the threshold on this scale: a question whose support is below it is
declined ("Not found in memory.") and nothing is generated.
"""
import math


def hit_support(similarity, coverage):
    """One hit's support for the question, in [0, 1]; coverage None: similarity alone."""
    similarity = min(1.0, max(0.0, float(similarity)))
    if coverage is None:
        return similarity
    return math.sqrt(similarity * min(1.0, max(0.0, float(coverage))))


def question_support(rows):
    """The best support among the search's hits (rows with hop 0; their distance and coverage)."""
    return max((hit_support(1.0 - float(r["distance"]), r.get("coverage"))
                for r in rows if r["hop"] == 0), default=0.0)
