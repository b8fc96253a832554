"""Evidence, not documents: the sentences of the ranked memory nodes that answer the question.

After attention has ranked the retrieved nodes, each node is split into sentences. A sentence
that leans on the one before it (it starts with "This", "It", "They", "Because", ...) is taken
together with that one, so a span never reads out of context. A sentence that leans forward is
no unit alone and is read with what follows: a heading (a title, or the term a passage defines:
"archive_command (string) The local shell command ..."), or the announcement of a list
("... accepts these representations:" and its items), at most MAX_LEAD of them in a row. Such a
run or a single sentence is a *unit*, and a unit is read under the node's last heading before
it (the setting or function it is about: "deadlock_timeout (integer) ... The default is one
second"): that is what is scored, what the extractive answer quotes, and what the prompt carries
(the heading counted in the budget). Units of the best nodes (at most MAX_CANDIDATES, in rank
order) are the candidates for the question. The candidates sharing most of the question's
content words (ties in rank order) are embedded, at most MAX_EMBEDDED of them, and scored:

    score = cosine(MiniLM(unit), question)                         semantic match
          + LEXICAL_WEIGHT * |question words in unit| / |question words|   the question's own terms
          + NODE_WEIGHT * node attention / best node attention     what the graph attention saw
          + NAME_WEIGHT, if the question asks for a name and the unit names something new

A question that asks *which* setting, function, command, ... is answered by a name, so a unit
that names something the question does not (a snake_case or function name, an option, an SQL
word in capitals, an operator, a configuration file) is likelier its answer than one that only
restates the question (asks_for_name, names_something_new). On the PostgreSQL manual's questions
(bench/answers/replay.py) the best unit held the gold answer for 92 of 158 questions with it,
79 without.

and the best are kept, best first, while they fit the token budget (the model's tokens, plus
NODE_OVERHEAD_TOKENS for each node's "[n] " prefix), score at least RELATIVE_FLOOR x the best,
and there are at most MAX_UNITS of them. The best unit is always kept (cut at a word boundary if
it alone is over the budget). Units that overlap merge; a node's kept sentences are shown in
their document order, runs that are not adjacent joined by " ... ".

The nodes stay whole in ruvllm_query's `sources`; the prompt carries only the selected spans,
numbered as the sources are, so a citation [n] means sources[n-1].

`extractive_answer` is the `extractive` tier's answer: the best span (and the second, when it
scores nearly as well), verbatim under its heading, each followed by its citation.

The units' vectors are those ingest stored (unit_vectors.py), where it did; the others are
embedded here and kept in a small LRU by text: the nodes that answer one question come back for
the next, and embedding is most of the cost here.
"""
import collections
import dataclasses
import re
import sys

import numpy as np

from . import grounding

# The answer when no memory is relevant enough (and the extractive tier's when it has nothing).
NOT_FOUND = "Not found in memory."

# The budget of the router's safe default: a 135M model answers better, and sooner, from a few
# sentences than from pages.
DEFAULT_BUDGET_TOKENS = 256
MAX_CANDIDATES = 64
MAX_EMBEDDED = 12
MAX_UNITS = 4
RELATIVE_FLOOR = 0.75
LEXICAL_WEIGHT = 0.5
NODE_WEIGHT = 0.1
NAME_WEIGHT = 0.3
NODE_OVERHEAD_TOKENS = 4
# The extractive answer adds its second-best unit when that scores within this share of the best.
EXTRACTIVE_SECOND = 0.92
# A line of at most this many words without a sentence end is a heading (is_heading).
HEADING_WORDS = 8
# A "sentence" longer than this (a table row run, a code block) is cut into pieces of this many words.
MAX_SENTENCE_WORDS = 60
# At most this many sentences that lean forward are read with the sentence after them.
MAX_LEAD = 8
GAP = " ... "
VECTOR_CACHE_SIZE = 4096
# The version of how a text is split into units (split_sentences, candidate_units): vectors stored
# at ingest under another version are not the units of today's splitter. Raise it with any change
# that can change a text's units or how they read.
UNIT_LAYOUT = 1

# Openers that point back at the sentence before.
ANAPHORS = frozenset("""
this it these they that those such its their there then so thus he she also however but and or
because otherwise here both each either instead hence therefore finally later afterwards
""".split())
# Pronouns that, among a sentence's first PRONOUN_WINDOW words, refer to something said before.
PRONOUNS = frozenset("it this they them these those its their".split())
PRONOUN_WINDOW = 3
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "no.", "fig.", "dr.", "mr.", "ms.")

_PARAGRAPH = re.compile(r"\n\s*\n")
_LIST_ITEM = re.compile(r"^([-*+]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9`])")
_LEADING_CITATIONS = re.compile(r"^((?:\[\d{1,3}\]\s*)+)")
_FIRST_WORD = re.compile(r"[A-Za-z]+")

# What a name looks like in technical text: snake_case or a call, an option, a configuration
# file, an operator between spaces, an SQL word (or words) in capitals.
_NAME = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b|\b\w+\(\)|(?<!\w)--?[a-z][\w-]+"
                   r"|\b[\w-]+\.(?:conf|sql)\b|(?<=\s)[@<>|&?#=~!-]{1,3}(?=\s)|\b[A-Z]{4,}(?:\s+[A-Z]{3,})*\b")
_QUESTION_TOKEN = re.compile(r"[\w@<>|&?#().=~!-]+")
# "What <noun> ..." asks for a name when the noun is one of these (within its first two words).
NAME_NOUNS = frozenset("""
setting parameter function command view operator role method tool file option clause index type
extension catalog column table lock mode level variable program utility
""".split())

_vectors = collections.OrderedDict()


def _split_prose(text):
    pieces = [p.strip() for p in _SENTENCE_END.split(text) if p.strip()]
    out = []
    for piece in pieces:
        m = _LEADING_CITATIONS.match(piece)
        if m and out:
            # "... partitions. [1] Next" : the citation belongs to the sentence before it.
            out[-1] = f"{out[-1]} {m.group(1).strip()}"
            piece = piece[m.end():].strip()
            if not piece:
                continue
        if out and out[-1].lower().endswith(_ABBREVIATIONS):
            out[-1] = f"{out[-1]} {piece}"
            continue
        out.append(piece)
    cut = []
    for sentence in out:
        words = sentence.split()
        for i in range(0, len(words), MAX_SENTENCE_WORDS):
            cut.append(" ".join(words[i:i + MAX_SENTENCE_WORDS]))
    return cut


def split_sentences(text):
    """The text's sentences, whitespace collapsed. Markdown headings are left out; list items and
    paragraphs never run into each other."""
    out = []
    for paragraph in _PARAGRAPH.split(text or ""):
        buf = []
        for line in paragraph.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                out.extend(_split_prose(" ".join(buf)))
                buf = []
                continue
            if _LIST_ITEM.match(line) and buf:
                out.extend(_split_prose(" ".join(buf)))
                buf = []
            buf.append(line)
        out.extend(_split_prose(" ".join(buf)))
    return out


def is_heading(sentence):
    """Whether the "sentence" is a title or the term a passage defines ("Index Types",
    "archive_command (string)"): a few words, no sentence end. It is not an answer by itself; the
    sentence after it is read with it."""
    words = sentence.split()
    return 0 < len(words) <= HEADING_WORDS and not sentence.rstrip().endswith((".", "!", "?"))


def leans_forward(sentence):
    """Whether the sentence is no unit alone but is read with the one after it: a heading, or a
    sentence that announces what follows ("... accepts these representations:")."""
    return is_heading(sentence) or sentence.rstrip().endswith(":")


def leans_back(sentence):
    """Whether the sentence needs the one before it to make sense: it opens with a word that
    points back ("This", "It", "Because"), or has a pronoun among its first words ("Rotating it
    means ...")."""
    words = [w.lower() for w in _FIRST_WORD.findall(sentence)[:PRONOUN_WINDOW]]
    return bool(words) and (words[0] in ANAPHORS or any(w in PRONOUNS for w in words[1:]))


def asks_for_name(question):
    """Whether the question asks for a name: "Which ...", or "What setting/function/... ..."."""
    words = re.findall(r"[a-z_]+", (question or "").lower())
    if not words:
        return False
    return words[0] == "which" or (
        words[0] == "what" and any(w in NAME_NOUNS or w.rstrip("s") in NAME_NOUNS for w in words[1:3]))


def names_something_new(text, question):
    """Whether the text names something (see _NAME) that the question does not."""
    asked = {t.lower() for t in _QUESTION_TOKEN.findall(question or "")}
    return any(w.lower() not in asked for m in _NAME.finditer(text) for w in m.group(0).split())


@dataclasses.dataclass
class Unit:
    node: int             # position of its node in the candidate nodes (rank order)
    first: int            # its sentences: first..last of that node
    last: int
    text: str
    score: float = 0.0
    similarity: float = 0.0
    overlap: float = 0.0
    names_new: bool = False   # names something the question does not, and the question asks for a name
    vec: object = None
    heading: int = None   # the node's last heading before the unit's sentences (index), if any
    read: str = ""        # the unit under its heading: what is scored and what the answer quotes
    ordinal: int = 0      # its place among its node's units (the stored vectors' order)


@dataclasses.dataclass
class NodeEvidence:
    index: int            # the node's row index (as in the attention context)
    score: float          # its attention score
    spans: list           # the kept text of the node, in document order
    sentences: list       # indices of the kept sentences

    @property
    def text(self):
        return GAP.join(self.spans)


@dataclasses.dataclass
class Selection:
    nodes: list           # [NodeEvidence] with evidence, in attention rank order: the sources
    units: list           # the kept Units, best first
    candidates: int       # units scored

    def context(self):
        """[(row index, evidence text, attention score)]: what the prompt carries, numbered [1]..."""
        return [(n.index, n.text, n.score) for n in self.nodes]

    def source_number(self, unit):
        """1-based number of the source a unit comes from."""
        return self._position[unit.node] + 1

    def evidence_units(self):
        """[(source number, text, vector)] for the grounding check."""
        return [(self.source_number(u), u.read, u.vec) for u in self.units]


def _embed_cached(texts, embed):
    missing = [t for t in dict.fromkeys(texts) if t not in _vectors]
    if missing:
        vecs = embed(missing)
        for t, v in zip(missing, vecs):
            _vectors[t] = np.asarray(v, dtype=np.float32)
    out = []
    for t in texts:
        _vectors.move_to_end(t)
        out.append(_vectors[t])
    while len(_vectors) > VECTOR_CACHE_SIZE:
        _vectors.popitem(last=False)
    return out


def _default_embed(texts):
    from . import embedding
    return embedding.embed(texts).vectors


def candidate_units(nodes, max_candidates=MAX_CANDIDATES):
    """(units, sentences per node) over nodes [(row index, text, score)] in rank order. A node's
    units depend on its text alone (UNIT_LAYOUT), whatever its place."""
    units, sentences = [], []
    for pos, (_index, text, _score) in enumerate(nodes):
        sents = split_sentences(text)
        sentences.append(sents)
        ordinal = 0
        for i, s in enumerate(sents):
            if len(units) >= max_candidates:
                return units, sentences
            if leans_forward(s) and i + 1 < len(sents):
                continue   # read with what follows
            # A unit ends at a sentence that does not lean forward; it begins at the run of those
            # that do just before it (a heading, a list's announcement and its short items).
            first = i
            while first > 0 and i - first < MAX_LEAD and leans_forward(sents[first - 1]):
                first -= 1
            if first == i and i > 0 and leans_back(s):
                first = i - 1
            heading = next((h for h in range(first - 1, -1, -1) if is_heading(sents[h])), None)
            text = " ".join(sents[first:i + 1])
            units.append(Unit(pos, first, i, text, heading=heading, ordinal=ordinal,
                              read=text if heading is None else f"{sents[heading]}{GAP}{text}"))
            ordinal += 1
    return units, sentences


def unit_reads(text):
    """What each unit of a node's text is read as (Unit.read), in order: what ingest embeds and
    stores for the node (unit_vectors.py)."""
    return [u.read for u in candidate_units([(0, text, 0.0)], max_candidates=sys.maxsize)[0]]


@dataclasses.dataclass
class Candidates:
    """The units select scores (at most max_embedded, in node and document order) and the
    sentences of every node; once scored, the units best first (ranked). What select may count
    the tokens of is then known before it runs (texts)."""
    units: list
    sentences: list
    ranked: list = None

    def score(self, query_vec, nodes, embed=None, vectors=None):
        """Scores the units (see the module docstring) and ranks them, best first. vectors: the
        units' vectors where known already (a list parallel to units, None where not); the others
        are embedded."""
        vecs = list(vectors) if vectors is not None else [None] * len(self.units)
        missing = [i for i, v in enumerate(vecs) if v is None]
        if missing:
            got = _embed_cached([self.units[i].read for i in missing], embed or _default_embed)
            for i, v in zip(missing, got):
                vecs[i] = v
        q = np.asarray(query_vec, dtype=np.float32)
        best_node = max((float(s) for _, _, s in nodes), default=0.0) or 1.0
        for u, v in zip(self.units, vecs):
            u.vec = v
            u.similarity = float(v @ q)
            u.score = u.similarity + LEXICAL_WEIGHT * u.overlap + NODE_WEIGHT * float(nodes[u.node][2]) / best_node \
                + (NAME_WEIGHT if u.names_new else 0.0)
        self.ranked = sorted(self.units, key=lambda u: -u.score)   # stable: ties keep rank and document order
        return self

    def texts(self, relative_floor=RELATIVE_FLOOR):
        """The sentences select may count the tokens of: those of the units it may keep (once
        scored: the best, and those within relative_floor of it; else all)."""
        units = self.units
        if self.ranked:
            top = self.ranked[0].score
            units = [u for i, u in enumerate(self.ranked) if i == 0 or u.score >= relative_floor * top]
        return [self.sentences[u.node][i] for u in units
                for i in unit_pieces(u)]


def unit_pieces(unit):
    """The sentence indices a unit is read from: its heading's, then its own."""
    return ([] if unit.heading is None else [unit.heading]) + list(range(unit.first, unit.last + 1))


def candidates(question, nodes, max_candidates=MAX_CANDIDATES, max_embedded=MAX_EMBEDDED):
    """The Candidates of nodes [(row index, text, attention score)] (rank order) for the question."""
    units, sentences = candidate_units(nodes, max_candidates)
    qwords = set(grounding.content_words(question))
    for u in units:
        u.overlap = len(qwords & set(grounding.content_words(u.read))) / len(qwords) if qwords else 0.0
    # Embedding is the cost here: only the units sharing most of the question's words (then in
    # rank order) are embedded and scored.
    units = sorted(units, key=lambda u: -u.overlap)[:max_embedded]
    if asks_for_name(question):
        for u in units:
            u.names_new = names_something_new(u.read, question)
    units.sort(key=lambda u: (u.node, u.first, u.last))
    return Candidates(units, sentences)


def select(question, query_vec, nodes, budget_tokens, count_tokens, *, embed=None,
           max_candidates=MAX_CANDIDATES, max_embedded=MAX_EMBEDDED, max_units=MAX_UNITS,
           relative_floor=RELATIVE_FLOOR, prepared=None):
    """The evidence of nodes [(row index, text, attention score)] (rank order) for the question,
    within budget_tokens of count_tokens(text). See the module docstring. prepared: the nodes'
    candidates(question, nodes), maybe scored, when the caller has made them (to count their
    texts first)."""
    prep = prepared if prepared is not None else candidates(question, nodes, max_candidates, max_embedded)
    units, sentences = prep.units, prep.sentences
    empty = Selection([], [], 0)
    empty._position = {}
    if not units or budget_tokens < 1:
        return empty
    ranked = (prep if prep.ranked is not None else prep.score(query_vec, nodes, embed)).ranked
    top = ranked[0].score
    kept, chosen, remaining = [], {}, int(budget_tokens)
    for u in ranked:
        if len(kept) >= max_units or (kept and u.score < relative_floor * top):
            break
        have = chosen.get(u.node, set())
        own = unit_pieces(u)
        new = [i for i in own if i not in have]
        if not new:
            continue
        cost = sum(int(count_tokens(sentences[u.node][i])) for i in new) + \
            (0 if have else NODE_OVERHEAD_TOKENS)
        if cost > remaining:
            if kept:
                continue
            # The best unit alone is over the budget: its first words, not nothing.
            from .attention import _cut_to_fit
            room = max(1, remaining - NODE_OVERHEAD_TOKENS)
            cut = _cut_to_fit(u.text, room, count_tokens, about=cost)
            u = dataclasses.replace(u, text=cut, read=cut, heading=None)
            kept.append(u)
            chosen[u.node] = {"cut": u.text}
            break
        kept.append(u)
        chosen.setdefault(u.node, set()).update(new)
        remaining -= cost
    out, position = [], {}
    for pos in sorted(chosen):
        picked = chosen[pos]
        index, _text, score = nodes[pos]
        if isinstance(picked, dict):   # a cut unit
            out.append(NodeEvidence(index, float(score), [picked["cut"]], []))
        else:
            idx = sorted(picked)
            runs, run = [], [idx[0]]
            for i in idx[1:]:
                if i == run[-1] + 1:
                    run.append(i)
                else:
                    runs.append(run)
                    run = [i]
            runs.append(run)
            out.append(NodeEvidence(index, float(score),
                                    [" ".join(sentences[pos][i] for i in r) for r in runs], idx))
        position[pos] = len(out) - 1
    sel = Selection(out, kept, len(units))
    sel._position = position
    return sel


def extractive_answer(selection):
    """The best span, and the second when it scores nearly as well, verbatim, each with its
    citation; NOT_FOUND when there is no evidence."""
    if not selection.units:
        return NOT_FOUND
    best = selection.units[0]
    picked = [best]
    for u in selection.units[1:2]:
        overlapping = u.node == best.node and u.first <= best.last and best.first <= u.last
        if u.score >= EXTRACTIVE_SECOND * best.score and not overlapping:
            picked.append(u)
    picked.sort(key=lambda u: (selection.source_number(u), u.first))
    return " ".join(f"{u.read} [{selection.source_number(u)}]" for u in picked)


def approx_tokens(text):
    """A tokenizer-free count for the extractive tier, which has no model: ~4 characters a token."""
    return max(1, (len(text) + 3) // 4)
