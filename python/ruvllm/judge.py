"""Answer quality: an LLM judge with a rubric, groundedness signals, and user feedback.

    judge       the smallest enabled model rates the answer 1..5 against a rubric (grounded in
                the context, complete, coherent, concise); parsed from its first digit and
                mapped to [0, 1] as (score - 1) / 4
    grounded    best cosine similarity between the answer's embedding and the context nodes'
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


def groundedness(answer_vec, context_vecs):
    if context_vecs is None or len(context_vecs) == 0:
        return 0.0
    return _clip01(float(np.max(np.asarray(context_vecs, dtype=np.float32) @ answer_vec)))


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
