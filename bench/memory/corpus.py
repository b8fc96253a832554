"""Texts and vectors for bench/memory.

Embedding 100K texts in the backend costs ~11 ms each (18 min), so the large corpus is built from
a few thousand real all-MiniLM-L6-v2 embeddings of synthetic knowledge-base sentences: each corpus
vector is one base embedding plus small weights of two others and a little isotropic noise,
renormalised. That keeps the cluster structure and low intrinsic dimension of real embeddings,
which is what HNSW's recall and speed depend on; uniform random vectors have neither.
"""
import random

import numpy as np

import topics
from topics import VOCABULARY, fill

TOPICS = VOCABULARY
TOPIC_NAMES = sorted(TOPICS)

STATEMENTS = topics.STATEMENTS
QUESTIONS = [
    "How do I {v} {o}?",
    "Who can {v} {o} {c}?",
    "Why does {s} {v} {o}?",
    "When should we {v} {o}?",
    "What happens if {s} fails to {v} {o}?",
    "Can {s} {v} {o} {c}?",
]


def _fill(rng, template, topic):
    return fill(rng, template, TOPICS[topic])


def documents(n, seed):
    """n distinct short documents (two sentences of one topic): [(text, topic index)]."""
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        ti = rng.randrange(len(TOPIC_NAMES))
        topic = TOPIC_NAMES[ti]
        a, b = rng.sample(STATEMENTS, 2)
        text = _fill(rng, a, topic) + " " + _fill(rng, b, topic)
        if text not in seen:
            seen.add(text)
            out.append((text, ti))
    return out


def questions(n, seed, exclude=()):
    """n distinct short questions, none in exclude: [(text, topic index)]."""
    rng = random.Random(seed)
    seen, out = set(exclude), []
    while len(out) < n:
        ti = rng.randrange(len(TOPIC_NAMES))
        text = _fill(rng, rng.choice(QUESTIONS), TOPIC_NAMES[ti])
        if text not in seen:
            seen.add(text)
            out.append((text, ti))
    return out


# How far a corpus vector strays from its base: a second base of the same topic at weight up to
# MIX_TOPIC, one of any topic up to MIX_ANY, and isotropic noise of norm NOISE (before
# renormalising). Chosen so two variants of one base sit at cosine ~0.88, like texts on one
# subject, and almost never reach ruvllm.dedup_similarity (0.95): ingestion would have merged
# such pairs, so a stored memory holds few of them.
MIX_TOPIC = 0.6
MIX_ANY = 0.3
NOISE = 0.3


def real_like(bases, topics, n, seed):
    """n unit vectors made from the real embeddings `bases` (nb x 384, unit rows) with topic ids
    `topics`; returns (vectors n x 384 float32, base index of each)."""
    rng = np.random.default_rng(seed)
    nb, dim = bases.shape
    order = np.argsort(topics, kind="stable")
    counts = np.bincount(topics)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    base = rng.integers(0, nb, n)
    t = topics[base]
    same = order[starts[t] + (rng.random(n) * counts[t]).astype(int)]
    other = rng.integers(0, nb, n)
    v = (bases[base]
         + rng.uniform(0, MIX_TOPIC, (n, 1)) * bases[same]
         + rng.uniform(0, MIX_ANY, (n, 1)) * bases[other]
         + rng.standard_normal((n, dim)) * (NOISE / np.sqrt(dim)))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32), base


def uniform_random(n, dim, seed):
    """n vectors uniform on the unit sphere (normalised Gaussians)."""
    v = np.random.default_rng(seed).standard_normal((n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def same_topic_edges(vectors, topics, lo, hi, links=5, block=2048):
    """Edges like ingestion's SameTopic: each node in [lo, hi) to its `links` most similar earlier
    nodes of the same topic. Returns (src, dst, weight) arrays of node positions."""
    src, dst, weight = [], [], []
    for t in np.unique(topics[:hi]):
        members = np.flatnonzero(topics[:hi] == t)
        new = members[members >= lo]
        for start in range(0, len(new), block):
            rows = new[start:start + block]
            sims = vectors[rows] @ vectors[members].T
            # Only earlier nodes: ingestion links a new node to what is already stored.
            sims[members[None, :] >= rows[:, None]] = -np.inf
            k = min(links, len(members))
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            w = np.take_along_axis(sims, top, axis=1)
            ok = np.isfinite(w)
            src.append(np.repeat(rows, k).reshape(-1, k)[ok])
            dst.append(members[top][ok])
            weight.append(w[ok])
    if not src:
        return np.empty(0, int), np.empty(0, int), np.empty(0, np.float32)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(weight).astype(np.float32)
