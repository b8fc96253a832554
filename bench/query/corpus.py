"""Texts for bench/query: a knowledge base of short operational documents, and questions about it.

Documents are two or three sentences about one topic, made from templates; questions are made
from other templates over the same vocabulary, so retrieval finds related memories, and no two
questions are the same text (the response cache must not answer the end-to-end runs).
"""
import random

import topics
from topics import VOCABULARY, fill

TOPICS = {name: VOCABULARY[name] for name in ("postgres", "kubernetes", "security", "billing",
                                              "networking", "ml", "storage", "support")}
TOPIC_NAMES = sorted(TOPICS)

STATEMENTS = topics.STATEMENTS + [
    "Remember that {o} is owned by {s}; {v} it only {c}.",
]
QUESTIONS = [
    "How do I {v} {o} {c}?",
    "Who is allowed to {v} {o} {c}?",
    "Why would {s} {v} {o} {c}?",
    "When should we {v} {o}, and what does {s} need to know?",
    "What happens if {s} fails to {v} {o} {c}?",
    "Can {s} {v} {o} {c}, or is that a manual job?",
    "What is the procedure for {s} to {v} {o}?",
    "Is it safe to {v} {o} {c}?",
]


def _fill(rng, template, topic):
    return fill(rng, template, TOPICS[topic])


def documents(n, seed):
    """n distinct documents of two or three sentences of one topic: [(text, topic)]."""
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        topic = rng.choice(TOPIC_NAMES)
        sentences = rng.sample(STATEMENTS, rng.choice((2, 3)))
        text = " ".join(_fill(rng, s, topic) for s in sentences)
        if text not in seen:
            seen.add(text)
            out.append((text, topic))
    return out


def questions(n, seed):
    """n distinct questions: [str]."""
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        text = _fill(rng, rng.choice(QUESTIONS), rng.choice(TOPIC_NAMES))
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out
