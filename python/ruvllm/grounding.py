"""Whether an answer stands on its evidence: the grounding check ruvllm_query runs on every
generated answer, and the groundedness the judge scores.

An answer is split into sentences. A sentence with content words (words that are not stopwords)
is *supported* when

    overlap    = |content words of the sentence found in the evidence| / |content words of it|
                 >= min_overlap (ruvllm.grounding_overlap), or
    similarity = best cosine (MiniLM) between the sentence and an evidence unit
                 >= min_similarity (ruvllm.grounding_similarity).

A sentence that cites [n] is held to what source n carried; a citation of a source that is not
there supports nothing. The answer is *grounded* when every sentence with content words is
supported (one invented sentence is enough to fail: the point is that a user may trust each one).
An answer without a single content word is not grounded.

`score` is the share of the answer's content words that sit in supported sentences, in [0, 1]:
the judge's groundedness signal.

Words are compared lower-cased, with a light suffix strip ("rotated", "rotates", "rotating" and
"rotate" are one word), so the check is cheap: no model beyond the embedder, whose sentence
vectors the evidence selection has already computed for the evidence side.
"""
import dataclasses
import re

import numpy as np

DEFAULT_MIN_OVERLAP = 0.6
DEFAULT_MIN_SIMILARITY = 0.8

_WORD = re.compile(r"[a-z0-9_]+")
_CITATION = re.compile(r"\[(\d{1,3})\]")

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing done down during each either else etc few for
from further had has have having he her here hers herself him himself his how however i if in into
is it its itself just let may me might more most must my myself no nor not now of off on once only
or other our ours ourselves out over own per same shall she should so some such than that the their
theirs them themselves then there these they this those through thus to too under until up upon us
use used uses using very via was we were what when where whether which while who whom whose why will
with within without would yes yet you your yours yourself yourselves one two get gets got make makes
made way ways thing things like well
""".split())


def stem(word):
    """A light suffix strip, so inflections of one word compare equal."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def content_words(text):
    """The text's content words, stemmed, in order (repeats kept)."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def citations(text):
    """The source numbers a text cites ([1] -> 1), in order of first appearance."""
    seen = []
    for m in _CITATION.finditer(text):
        n = int(m.group(1))
        if n not in seen:
            seen.append(n)
    return seen


def strip_citations(text):
    return _CITATION.sub("", text)


@dataclasses.dataclass
class SentenceCheck:
    text: str
    words: int             # content words
    overlap: float
    similarity: float
    supported: bool
    best_source: int       # 1-based source number that supports it best (0: none)


@dataclasses.dataclass
class Check:
    grounded: bool
    score: float
    sentences: list


def check(answer, evidence, *, min_overlap=DEFAULT_MIN_OVERLAP, min_similarity=DEFAULT_MIN_SIMILARITY,
          embed=None, sentence_split=None):
    """Check answer against evidence: [(source number (1-based), text, unit vector or None)].

    embed(texts) -> (n, d) unit vectors for the answer's sentences; None checks overlap only (a
    sentence is then supported by overlap alone).
    """
    if sentence_split is None:
        from .evidence import split_sentences as sentence_split
    sentences = [s for s in sentence_split(answer or "") if s.strip()]
    by_source = {}
    for n, text, vec in evidence:
        entry = by_source.setdefault(n, {"words": set(), "vecs": []})
        entry["words"].update(content_words(text))
        if vec is not None:
            entry["vecs"].append(np.asarray(vec, dtype=np.float32))
    all_words = set().union(*(e["words"] for e in by_source.values())) if by_source else set()
    words_of = [content_words(strip_citations(s)) for s in sentences]
    checked_idx = [i for i, w in enumerate(words_of) if w]
    sims = {}
    if embed is not None and checked_idx and any(e["vecs"] for e in by_source.values()):
        vecs = np.asarray(embed([strip_citations(sentences[i]).strip() or sentences[i] for i in checked_idx]),
                          dtype=np.float32)
        for row, i in zip(vecs, checked_idx):
            sims[i] = {n: float(np.max(np.stack(e["vecs"]) @ row)) if e["vecs"] else 0.0
                       for n, e in by_source.items()}
    out, supported_words, total_words = [], 0, 0
    for i, sentence in enumerate(sentences):
        words = words_of[i]
        if not words:
            out.append(SentenceCheck(sentence, 0, 0.0, 0.0, True, 0))
            continue
        cited = citations(sentence)
        allowed = [n for n in cited if n in by_source] if cited else list(by_source)
        if cited and len(allowed) < len(cited):
            allowed = []   # a citation of a source that is not there: nothing may support it
        best_n, best_overlap, best_sim = 0, 0.0, 0.0
        uniq = set(words)
        for n in allowed:
            ov = len(uniq & by_source[n]["words"]) / len(uniq)
            sim = sims.get(i, {}).get(n, 0.0)
            if (ov, sim) > (best_overlap, best_sim) or best_n == 0:
                best_n, best_overlap, best_sim = n, ov, sim
        if not cited and allowed:
            # Uncited: the words may come from several sources together.
            best_overlap = max(best_overlap, len(uniq & all_words) / len(uniq))
            best_sim = max([best_sim] + [v for n, v in sims.get(i, {}).items()])
        ok = bool(allowed) and (best_overlap >= min_overlap or best_sim >= min_similarity)
        out.append(SentenceCheck(sentence, len(words), round(best_overlap, 4), round(best_sim, 4), ok,
                                 best_n if ok else 0))
        total_words += len(words)
        supported_words += len(words) if ok else 0
    grounded = total_words > 0 and supported_words == total_words
    score = supported_words / total_words if total_words else 0.0
    return Check(grounded=grounded, score=float(score), sentences=out)


def add_citations(answer, result):
    """The answer with a citation [n] after each supported sentence that cites nothing: n is the
    source that supports it best. Other text is left as it was."""
    pieces, rest = [], answer
    for s in result.sentences:
        at = rest.find(s.text)
        if at < 0:
            return answer   # the sentences no longer line up with the text: leave it alone
        pieces.append(rest[:at])
        body = s.text
        if s.supported and s.best_source and not citations(body):
            stripped = body.rstrip()
            tail = body[len(stripped):]
            end = ""
            if stripped and stripped[-1] in ".!?":
                stripped, end = stripped[:-1], stripped[-1]
            body = f"{stripped} [{s.best_source}]{end}{tail}"
        pieces.append(body)
        rest = rest[at + len(s.text):]
    pieces.append(rest)
    return "".join(pieces)
