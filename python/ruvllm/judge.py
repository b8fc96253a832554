"""Answer quality: an LLM judge with a rubric, groundedness signals, and user feedback.

    judge       the smallest enabled model rates the answer 1..5 against a rubric (grounded in
                the context, complete, coherent, concise); parsed from its first digit and
                mapped to [0, 1] as (score - 1) / 4
    grounded    the grounding check's score (grounding.py, the same check ruvllm_query runs):
                the share of the answer's content words in sentences its context supports;
                0 when the request path already found the answer ungrounded (the text the user
                got was then the extractive answer, not the model's)
    relevance   cosine similarity between the answer's and the question's embeddings

    automatic quality  = 0.25 * judge + 0.45 * grounded + 0.30 * relevance
                         (judge failed or unparsable: 0.60 * grounded + 0.40 * relevance)
    with a user rating = 0.5 * automatic + 0.5 * (rating - 1) / 4

The judge gets a small weight on purpose: the bundled judge is a 135M-parameter model whose
ratings are noisy, while the embedding signals are cheap and stable. Similarities are clipped
to [0, 1]. A judge failure never fails anything: the formula without the judge is used.
"""
import re

import numpy as np

from . import evidence, grounding

# Context sentences the judge's grounding check embeds, at most (a background cost per answer).
MAX_CONTEXT_UNITS = 32

W_JUDGE, W_GROUNDED, W_RELEVANCE = 0.25, 0.45, 0.30
W_GROUNDED_NO_JUDGE, W_RELEVANCE_NO_JUDGE = 0.60, 0.40
W_RATING = 0.5

RUBRIC = ("Rate the answer to the question from 1 (bad) to 5 (excellent). A good answer is "
          "grounded in the context, complete, coherent and concise. Reply with one digit.")
_DIGIT = re.compile(r"[1-5]")


def parse_score(text):
    """The first digit 1..5 in the judge's reply, or None."""
    if not text:
        return None
    m = _DIGIT.search(text)
    return int(m.group(0)) if m else None


def judge_prompt(question, answer, context_texts, max_context_chars=800):
    context = "\n".join(f"- {t}" for t in context_texts)[:max_context_chars] or "(none)"
    return (f"{RUBRIC}\n\nContext:\n{context}\n\nQuestion: {question}\n\nAnswer: {answer}\n\n"
            f"Rating (1-5):")


def _clip01(x):
    return float(min(1.0, max(0.0, x)))


def groundedness(answer, context_texts, embed=None, witnessed=None, **thresholds):
    """grounding.check's score of answer against the sentences of context_texts (numbered as
    the sources are); witnessed: the request path's grounded flag (False: 0)."""
    if witnessed is False or not context_texts or not answer:
        return 0.0
    units = []
    for n, text in enumerate(context_texts, start=1):
        units += [(n, s) for s in evidence.split_sentences(text)]
    units = units[:MAX_CONTEXT_UNITS]
    vecs = embed([t for _, t in units]) if embed is not None and units else [None] * len(units)
    result = grounding.check(answer, [(n, t, v) for (n, t), v in zip(units, vecs)], embed=embed,
                             **thresholds)
    return _clip01(result.score)


def relevance(answer_vec, query_vec):
    return _clip01(float(np.dot(answer_vec, query_vec)))


def automatic_quality(judge_score, grounded, relevant):
    """judge_score: 1..5 or None."""
    if judge_score is None:
        return _clip01(W_GROUNDED_NO_JUDGE * grounded + W_RELEVANCE_NO_JUDGE * relevant)
    return _clip01(W_JUDGE * (judge_score - 1) / 4.0 + W_GROUNDED * grounded + W_RELEVANCE * relevant)


def combined_quality(automatic, rating=None):
    """automatic: [0, 1] or None (not judged yet); rating: 1..5 or None."""
    if rating is None:
        return automatic
    user = (rating - 1) / 4.0
    if automatic is None:
        return _clip01(user)
    return _clip01((1.0 - W_RATING) * automatic + W_RATING * user)
