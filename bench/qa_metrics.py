"""Answer and ranking metrics of bench/answers and bench/retrieval (pure Python, unit-tested in
tests/unit/test_bench_pgdocs.py).

Answers are compared after normalisation: lower case, citation marks "[n]" removed, punctuation
other than what carries meaning in the manual's values (@ $ % < > = / . + - inside a token) turned
into spaces, white space collapsed. A gold answer is contained in an answer when its tokens occur
there as a contiguous run (so "3" does not match "30", nor "all" "install").
"""
import math
import re

_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_TOKEN = re.compile(r"[\w@$%<>=/+]+(?:[.\-][\w@$%<>=/+]+)*|[@<>=]+")


def tokens(text):
    """Normalised tokens of a text: lower case, without citation marks; "4.0", "1/32nd", "@>",
    "scram-sha-256" and "$user" stay one token each, a sentence's final period goes."""
    text = _CITATION.sub(" ", (text or "").lower())
    return _TOKEN.findall(text)


def normalise(text):
    return " ".join(tokens(text))


def contains(answer, golds):
    """True when one of the gold answers' token runs occurs in the answer's tokens."""
    ans = tokens(answer)
    for gold in golds:
        g = tokens(gold)
        if not g:
            continue
        for i in range(len(ans) - len(g) + 1):
            if ans[i:i + len(g)] == g:
                return True
    return False


def token_f1(answer, golds):
    """SQuAD-style token F1 of the answer against the best-matching gold answer (0 with none)."""
    ans = tokens(answer)
    best = 0.0
    for gold in golds:
        g = tokens(gold)
        if not g or not ans:
            continue
        common = 0
        pool = list(g)
        for t in ans:
            if t in pool:
                pool.remove(t)
                common += 1
        if common:
            p, r = common / len(ans), common / len(g)
            best = max(best, 2 * p * r / (p + r))
    return best


# Words that carry no claim: an answer is not unsupported for using them.
STOPWORDS = frozenset("""
a an and are as at be by can do does for from has have how if in into is it its not of on or so
that the their then there these this to was what when where which who will with you your
""".split())


def supported_share(answer, passages):
    """Share of the answer's content tokens (not stopwords) that occur in the passages; 1.0 for an
    answer without any. A verbatim extract scores 1.0; an answer inventing its terms, less."""
    seen = set()
    for p in passages:
        seen.update(tokens(p))
    content = [t for t in tokens(answer) if t not in STOPWORDS]
    if not content:
        return 1.0
    return sum(t in seen for t in content) / len(content)


def citations(text):
    """The source numbers an answer cites, in order of first citation: "[1]", "[2, 3]"."""
    seen = []
    for m in _CITATION.finditer(text or ""):
        for n in re.findall(r"\d+", m.group(0)):
            if int(n) not in seen:
                seen.append(int(n))
    return seen


def recall_at(ranked, relevant, k=10):
    """1 when a relevant document is among the first k (each question has one gold section)."""
    return 1.0 if any(d in relevant for d in ranked[:k]) else 0.0


def mrr(ranked, relevant):
    """Reciprocal rank of the first relevant document (0 when none is ranked)."""
    for i, d in enumerate(ranked, 1):
        if d in relevant:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked, relevant, k=10):
    """nDCG@k with binary gains. A document counts once: later results with a document already
    seen (another chunk of the same section) gain nothing; the ideal ranking puts the relevant
    documents first."""
    seen, dcg = set(), 0.0
    for i, d in enumerate(ranked[:k], 1):
        if d in relevant and d not in seen:
            dcg += 1.0 / math.log2(i + 1)
        seen.add(d)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def percentile(xs, q):
    """Linear-interpolated percentile (numpy's default), None for no values."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
