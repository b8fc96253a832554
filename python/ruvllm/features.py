"""The router's 128-d request feature vector.

``build()`` turns one request into the float32 vector that the FastGRNN router
(``ruvllm.router``, ``INPUT_DIM = 128``) reads; ``describe()`` names each value for
``ruvllm_route``'s jsonb output. The vector has four slices, each filled by its own function:

=========== ======= ==================== =====================================================
slice       dims    function             from
=========== ======= ==================== =====================================================
query       0..31   query_features       the request text, its token count, the user's recent
                                         query count
embedding   32..47  embedding_features   the 384-d query embedding (optionally projection
                                         directions and pattern-bank centroids)
search      48..95  search_features      the rows memory.search_vector returned
system      96..127 system_features      a SystemState: budget, device, load, model stats
=========== ======= ==================== =====================================================

Scaling. Every value is finite and of order one, mostly in [0, 1] or [-1, 1] (distances lie in
[0, 2], the norm below 2), so an untrained router's tanh/sigmoid gates start unsaturated. Counts are log-scaled as
``lg(n) = log2(1 + n) / B`` with a per-feature B chosen so a large but plausible count reaches
about 1; larger counts exceed 1 only slowly. A "share" is a fraction in [0, 1]. Unknown or
absent inputs give 0 unless stated otherwise, and dims marked pad are always 0.

Query, dims 0..31 (text features look at the first 4096 characters; counts use all of it)
    0  token_count        log2(1 + tokens) / 12          (15 tokens -> 1/3, 4095 -> 1)
    1  char_count         log2(1 + characters) / 16
    2  word_count         log2(1 + whitespace-separated words) / 12
    3  mean_word_length   non-space characters per word / 16, at most 1
    4  sentence_count     log2(1 + sentences) / 8; a non-empty text is at least one sentence
    5  line_count         log2(1 + lines) / 8
    6..13  lang_en, lang_de, lang_fr, lang_es, lang_other_latin, lang_cjk, lang_other_script,
       lang_unknown: one-hot. Mostly Chinese/Japanese/Korean letters -> cjk; other non-Latin
       letters (Cyrillic, Arabic, ...) -> other_script; Latin letters -> the language with the
       most stop-word and accent-letter hits (other_latin on no hit; ties go in the listed
       order); no letters at all -> unknown.
    14..21 domain_code, domain_math, domain_science, domain_medicine, domain_law,
       domain_finance, domain_ops, domain_general: one-hot of the domain with the most keyword
       hits (ties in the listed order; general on no hit). ops covers databases/SQL,
       servers and deployment.
    22..25 type_question, type_instruction, type_code, type_other: one-hot, first match of
       code (a ``` fence, a line that opens like code, or a high share of {}();=<>[]),
       question (ends in "?", or opens with an interrogative), instruction (opens with an
       imperative such as "write"/"explain", or says please), else other.
    26 user_frequency     log2(1 + the user's recent query count) / 8
    27 punct_share        share of non-space characters that are neither letters nor digits
    28 digit_share        share of non-space characters that are digits
    29 upper_share        share of letters that are upper case
    30 non_ascii_share    share of non-space characters outside ASCII
    31 chars_per_token    characters / tokens / 8, at most 1 (0 when tokens = 0)

Embedding, dims 32..47 (v is the 384-d embedding, u = v / |v|)
    32 norm               2 |v| / (1 + |v|): 1 for the unit vectors ruvllm's embedder returns,
                          below 2 for any vector
    33..40 pc_0..pc_7     cos(v, c_i) for the first 8 rows c_i of ``components`` (zeros past the
       last row). Without ``components``, 8 fixed random unit directions (seed 0x5EED) are
       used and the cosine is multiplied by sqrt(384) / 4 and clipped to [-1, 1]: a random
       direction's cosine with any vector has std 1/sqrt(384), so the rescale gives std 1/4.
    41 entropy            entropy of |u| / sum |u|, divided by log(384) (1 = evenly spread)
    42 sparsity           share of coordinates with |u_i| < 0.1 / sqrt(384), a tenth of the
                          root-mean-square coordinate of a unit vector (1 for a zero vector)
    43 max                max u_i
    44 min                min u_i
    45 mean_direction     sum(u) / sqrt(384): cos(u, the all-ones direction)
    46 cluster_cosine     cosine to the nearest row of ``centroids``; 0 without centroids
    47 cluster_index      (index of that centroid + 1) / number of centroids; 0 without

Search, dims 48..95 (rows as memory.search_vector returns them; hop 0 are the HNSW seeds)
    48 k                  log2(1 + k) / 10
    49 n_rows             log2(1 + rows) / 10
    50 seed_fill          hop-0 rows / k, at most 1 (below 1 when the tenant has fewer nodes)
    51..54 dist_mean, dist_std, dist_min, dist_max: cosine distances of the hop-0 rows (std is
       the population std); 0 with no hop-0 rows
    55..62 dist_hist_0..7 share of hop-0 distances in [0, .125), [.125, .25), ... [.875, 2]
    63 softmax_entropy    entropy of softmax(-distance / 0.05) over hop-0 rows / log(rows);
                          1 = the seeds are equally close, 0 = one stands out (0 for < 2 rows)
    64 top_gap            second-best minus best hop-0 distance (0 for < 2 rows)
    65 max_hop            the largest hop / 3
    66..69 hop_0_share .. hop_3_share  share of rows at hop 0, 1, 2, 3 (3 counts 3 and above)
    70 near_best_share    share of hop-0 rows within 0.05 of the best distance
    71 recall_prior       1 - 0.5 k / max(ef_search, k): 0.5 when ef_search <= k, towards 1 as
                          ef_search grows (k = 10, ef_search = 64 -> 0.921875); 0 when k = 0
    72 rows_per_seed      log2(1 + expanded rows / hop-0 rows) / 8
    73 edge_weight        log2(1 + mean edge_weight of expanded rows that carry one)
    74..78 rel_cites, rel_follows, rel_sametopic, rel_agentstep, rel_derived: share of
       expanded (hop >= 1) rows reached through each relation
    79 expanded_dist_mean mean distance of the expanded rows
    80 coherence          mean pairwise cosine of the rows' ``embeddings`` when given; else
                          the estimate mean_{i != j} s_i s_j with s = 1 - distance (exact
                          when the hits' parts orthogonal to the query are mutually orthogonal).
                          0 for < 2 rows
    81 coherence_measured 1 when coherence came from ``embeddings``
    82..87 node_query, node_document, node_agentstep, node_fact, node_qapair, node_concept:
       share of rows of each node type
    88..95 pad

System, dims 96..127 (a SystemState)
    96 latency_budget     log2(1 + latency_budget_ms) / 16; 0 when there is none
    97 device_cpu, 98 device_gpu  one-hot ("cuda" counts as gpu)
    99 memory_available   log2(1 + memory_available_mb / 1024) / 8  (GB; 255 GB -> 1)
    100 concurrent        log2(1 + concurrent_requests) / 8
    101 n_models          log2(1 + number of model slots) / 4, slots = max(n_models, length of
                          the per-model lists), at most 8
    102..109 quality_0..7 model_quality[i], which must lie in [0, 1]; 0.5 when unknown (None or
       missing) for a model slot, 0 past the last slot
    110..117 latency_0..7 log2(1 + model_latency_ms[i]) / 16; 0 when unknown
    118 max_tokens        log2(1 + max_tokens) / 16; 0 when not given
    119 forced_model      1 when the caller fixed the model
    120 forced_temperature  1 when the caller fixed the temperature
    121..127 pad

Everything is float32: numpy 2 would promote a float32 array that meets an np.float64 scalar,
so scalars are Python floats written into float32 arrays. build() takes about 0.3 ms for
k = 10 (no Python loop runs over the 384 embedding dims).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ruvllm.embedding import DIM as EMBED_DIM
from ruvllm.errors import invalid

INPUT_DIM = 128
SLICES = {
    "query": slice(0, 32),
    "embedding": slice(32, 48),
    "search": slice(48, 96),
    "system": slice(96, 128),
}

LANGUAGES = ("en", "de", "fr", "es", "other_latin", "cjk", "other_script", "unknown")
DOMAINS = ("code", "math", "science", "medicine", "law", "finance", "ops", "general")
QUERY_TYPES = ("question", "instruction", "code", "other")
N_COMPONENTS = 8
N_MODEL_SLOTS = 8
MAX_HOP = 3
# Copies of memory.NODE_TYPES / graph.RELS, frozen here: a trained router's weights are tied to
# these dims, so a type added to memory must not shift them (it gets a new dim or no share).
NODE_TYPES = ("Query", "Document", "AgentStep", "Fact", "QAPair", "Concept")
RELS = ("Cites", "Follows", "SameTopic", "AgentStep", "Derived")

_SCAN_CHARS = 4096
_HIST_BINS = 8
_HIST_WIDTH = 0.125
_SOFTMAX_TEMPERATURE = 0.05
_NEAR_BEST_MARGIN = 0.05
_COMPONENT_SEED = 0x5EED
_RANDOM_PC_SCALE = math.sqrt(EMBED_DIM) / 4.0
_SPARSE_EPS = np.float32(0.1 / math.sqrt(EMBED_DIM))
_LOG_DIM = math.log(EMBED_DIM)
_SQRT_DIM = math.sqrt(EMBED_DIM)

_QUERY_NAMES = (
    ["token_count", "char_count", "word_count", "mean_word_length", "sentence_count",
     "line_count"]
    + [f"lang_{x}" for x in LANGUAGES]
    + [f"domain_{x}" for x in DOMAINS]
    + [f"type_{x}" for x in QUERY_TYPES]
    + ["user_frequency", "punct_share", "digit_share", "upper_share", "non_ascii_share",
       "chars_per_token"]
)
_EMBEDDING_NAMES = (
    ["norm"] + [f"pc_{i}" for i in range(N_COMPONENTS)]
    + ["entropy", "sparsity", "max", "min", "mean_direction", "cluster_cosine", "cluster_index"]
)
_SEARCH_NAMES = (
    ["k", "n_rows", "seed_fill", "dist_mean", "dist_std", "dist_min", "dist_max"]
    + [f"dist_hist_{i}" for i in range(_HIST_BINS)]
    + ["softmax_entropy", "top_gap", "max_hop"]
    + [f"hop_{i}_share" for i in range(MAX_HOP + 1)]
    + ["near_best_share", "recall_prior", "rows_per_seed", "edge_weight"]
    + [f"rel_{r.lower()}" for r in RELS]
    + ["expanded_dist_mean", "coherence", "coherence_measured"]
    + [f"node_{t.lower()}" for t in NODE_TYPES]
)
_SYSTEM_NAMES = (
    ["latency_budget", "device_cpu", "device_gpu", "memory_available", "concurrent", "n_models"]
    + [f"quality_{i}" for i in range(N_MODEL_SLOTS)]
    + [f"latency_{i}" for i in range(N_MODEL_SLOTS)]
    + ["max_tokens", "forced_model", "forced_temperature"]
)


def _names():
    names = []
    for key, used in (("query", _QUERY_NAMES), ("embedding", _EMBEDDING_NAMES),
                      ("search", _SEARCH_NAMES), ("system", _SYSTEM_NAMES)):
        s = SLICES[key]
        width = s.stop - s.start
        assert len(used) <= width, key
        names += used + [f"pad_{i}" for i in range(s.start + len(used), s.stop)]
    return names


FEATURE_NAMES = _names()

# Offsets inside each slice, so the fill code reads by name and cannot drift from the docs.
_Q = {n: i for i, n in enumerate(_QUERY_NAMES)}
_E = {n: i for i, n in enumerate(_EMBEDDING_NAMES)}
_S = {n: i for i, n in enumerate(_SEARCH_NAMES)}
_Y = {n: i for i, n in enumerate(_SYSTEM_NAMES)}


def _lg(n, bits):
    return math.log2(1.0 + n) / bits


def _share(part, whole):
    return part / whole if whole else 0.0


def _finite_number(value, what, minimum=None):
    # Anything float() takes but text and booleans: plpy hands numeric columns over as Decimal.
    if isinstance(value, (bool, str, bytes)):
        raise invalid(f"{what} must be a number, not {type(value).__name__}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise invalid(f"{what} must be a number, not {type(value).__name__}") from None
    if not math.isfinite(value):
        raise invalid(f"{what} must be finite, not {value}")
    if minimum is not None and value < minimum:
        raise invalid(f"{what} must be >= {minimum}, not {value:g}")
    return value


def _count(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise invalid(f"{what} must be an integer, not {type(value).__name__}")
    if value < 0:
        raise invalid(f"{what} must be >= 0, not {value}")
    return int(value)


# --- query -------------------------------------------------------------------------------------

def _keyword_index(groups):
    # One word -> group map, so a text is scanned once whatever the number of groups; a word in
    # two groups would silently vote for only one, hence the check.
    index = {}
    for i, words in enumerate(groups):
        for w in words.split():
            assert w not in index, w
            index[w] = i
    return index


# Words that are common and (nearly) exclusive to one language; shared ones (was, es, la, que,
# un, se, tu, des, in, an) are left out because they cannot tell the languages apart.
_STOP_WORDS = _keyword_index((
    "the and is are of to what how why which with for this that does do can you it be not on "
    "were have has from my i when where who should would could there please",
    "der die das und ist sind nicht ein eine einen ich wie warum wo wer mit für auf den dem zu "
    "von sie im auch kann können bitte welche welcher nach über oder aber wird werden",
    "le les et est une du au aux pour dans pas ne je vous nous il elle qui quoi comment "
    "pourquoi quel quelle avec sur ce cette où mais être avoir",
    "el los las y está están son una del al por para con sin qué cómo cuál dónde cuando "
    "cuándo pero muy este esta esto lo mi su hay puedo puede también como más yo",
))
_ACCENTS = (re.compile("[äöüß]"), re.compile("[èêëçœàâîôùû]"), re.compile("[ñ¿¡áíóú]"))

_DOMAIN_WORDS = _keyword_index((
    # code
    "python java javascript typescript rust golang kotlin swift function functions class "
    "method compile compiler bug debug exception traceback stacktrace variable api json regex "
    "git npm pip def lambda async await struct pointer array loop recursion algorithm code "
    "script syntax refactor pytest unittest segfault string boolean html css react",
    # math
    "equation equations integral derivative matrix prove proof theorem lemma algebra calculus "
    "geometry probability polynomial solve prime eigenvalue logarithm sqrt fraction arithmetic "
    "variance sum integer",
    # science
    "physics chemistry biology molecule atom electron quantum energy gravity dna protein "
    "evolution species reaction experiment hypothesis photosynthesis planet climate velocity",
    # medicine
    "symptom symptoms disease diagnosis treatment patient drug dose dosage medication doctor "
    "clinical therapy infection cancer blood pain vaccine surgery diabetes",
    # law
    "law legal court contract lawsuit attorney lawyer statute regulation liability copyright "
    "patent gdpr license judge plaintiff defendant jurisdiction clause",
    # finance
    "stock stocks bond bonds invest investment portfolio interest loan mortgage tax taxes "
    "revenue profit budget price market dividend inflation bank credit accounting equity "
    "crypto bitcoin",
    # ops: databases and the machines they run on
    "sql select insert update database databases postgres postgresql mysql sqlite index "
    "indexes query queries table tables schema join transaction vacuum replication backup "
    "server deploy deployment docker kubernetes nginx linux cpu memory disk latency cluster "
    "hnsw pgvector migration config configuration logs ssh cron terraform aws",
))

_INTERROGATIVES = frozenset((
    "what how why when where who whom whose which is are was were can could does do did should "
    "would will shall may might has have am "
    "wie warum wieso weshalb wann wo wer welche welcher welches ist sind kann können gibt "
    "qu quoi comment pourquoi quand où qui quel quelle quels quelles "
    "qué cómo cuándo dónde quién cuál cuáles").split())
_IMPERATIVES = frozenset((
    "write explain summarize summarise list give create generate translate describe show tell "
    "make fix implement convert find compare rewrite draft please help calculate compute define "
    "add remove refactor optimize optimise suggest outline classify extract design build plan "
    "recommend "
    "schreibe erkläre erklären fasse übersetze zeige écris explique traduis donne escribe "
    "explica traduce dame").split())
_POLITE = frozenset(("please", "bitte", "plaît", "favor"))

_WORD = re.compile(r"\w+")
_LETTER = re.compile(r"[^\W\d_]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
# Kana, CJK ideographs, Hangul syllables and jamo, half-width katakana.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u1100-\u11ff"
                  r"\uff66-\uff9f]")
_DIGIT = re.compile(r"\d")
_PUNCT = re.compile(r"[^\w\s]|_")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SPACE = re.compile(r"\s")
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f]+(?=\s|$)")
_CODE_SYMBOLS = re.compile(r"[{}();=<>\[\]]")
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |#include|function |const |let |var |public |"
    r"private |fn |SELECT .* FROM|INSERT INTO|UPDATE \S+ SET|CREATE (?:TABLE|INDEX|FUNCTION)|"
    r"\$ |>>> )", re.M)


def _count_re(pattern, s):
    return pattern.subn("", s)[1]


def _language(scan, words):
    letters = _count_re(_LETTER, scan)
    if not letters:
        return LANGUAGES.index("unknown")
    if _count_re(_CJK, scan) >= 0.3 * letters:
        return LANGUAGES.index("cjk")
    if _count_re(_LATIN, scan) < 0.5 * letters:
        return LANGUAGES.index("other_script")
    votes = [0, 0, 0, 0]
    for w in words:
        i = _STOP_WORDS.get(w)
        if i is not None:
            votes[i] += 1
    for i, accent in enumerate(_ACCENTS, start=1):
        votes[i] += len(set(accent.findall(scan)))
    best = max(votes)
    return votes.index(best) if best else LANGUAGES.index("other_latin")


def _domain(words):
    hits = [0] * (len(DOMAINS) - 1)
    for w in words:
        i = _DOMAIN_WORDS.get(w)
        if i is not None:
            hits[i] += 1
    best = max(hits)
    return hits.index(best) if best else DOMAINS.index("general")


def _query_type(scan, words, non_space):
    if "```" in scan or _CODE_LINE.search(scan):
        return QUERY_TYPES.index("code")
    symbols = _count_re(_CODE_SYMBOLS, scan)
    if symbols >= 4 and symbols >= 0.08 * non_space:
        return QUERY_TYPES.index("code")
    stripped = scan.rstrip()
    first = words[0] if words else ""
    if stripped.endswith(("?", "\uff1f")) or stripped.startswith("¿") or first in _INTERROGATIVES:
        return QUERY_TYPES.index("question")
    if first in _IMPERATIVES or not _POLITE.isdisjoint(words):
        return QUERY_TYPES.index("instruction")
    return QUERY_TYPES.index("other")


def query_features(text: str, token_count: int, user_frequency: int = 0) -> np.ndarray:
    """Dims 0..31: length counts, language, domain, query type, user frequency, character mix."""
    if not isinstance(text, str):
        raise invalid(f"text must be a string, not {type(text).__name__}")
    tokens = _count(token_count, "token_count")
    user_frequency = _count(user_frequency, "user_frequency")
    out = np.zeros(SLICES["query"].stop - SLICES["query"].start, dtype=np.float32)

    n_chars = len(text)
    split = text.split()
    n_words = len(split)
    non_space_all = sum(map(len, split))
    sentences = max(len(_SENTENCE_END.findall(text)), 1) if n_words else 0
    lines = text.count("\n") + 1 if text.strip() else 0

    out[_Q["token_count"]] = _lg(tokens, 12)
    out[_Q["char_count"]] = _lg(n_chars, 16)
    out[_Q["word_count"]] = _lg(n_words, 12)
    out[_Q["mean_word_length"]] = min(_share(non_space_all, n_words) / 16.0, 1.0)
    out[_Q["sentence_count"]] = _lg(sentences, 8)
    out[_Q["line_count"]] = _lg(lines, 8)

    scan = text[:_SCAN_CHARS]
    words = _WORD.findall(scan.lower())
    non_space = len(scan) - _count_re(_SPACE, scan)
    letters = _count_re(_LETTER, scan)
    out[_Q["lang_en"] + _language(scan, words)] = 1.0
    out[_Q["domain_code"] + _domain(words)] = 1.0
    out[_Q["type_question"] + _query_type(scan, words, non_space)] = 1.0

    out[_Q["user_frequency"]] = _lg(user_frequency, 8)
    out[_Q["punct_share"]] = _share(_count_re(_PUNCT, scan), non_space)
    out[_Q["digit_share"]] = _share(_count_re(_DIGIT, scan), non_space)
    out[_Q["upper_share"]] = _share(sum(map(str.isupper, scan)), letters)
    out[_Q["non_ascii_share"]] = _share(_count_re(_NON_ASCII, scan), non_space)
    out[_Q["chars_per_token"]] = min(_share(n_chars, tokens) / 8.0, 1.0)
    return out


# --- embedding ---------------------------------------------------------------------------------

def _random_components():
    rng = np.random.default_rng(_COMPONENT_SEED)
    c = rng.standard_normal((N_COMPONENTS, EMBED_DIM))
    return (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)


_DEFAULT_COMPONENTS = _random_components()


def _embedding_vector(vec, what="vector"):
    try:
        v = np.asarray(vec, dtype=np.float32)
    except (TypeError, ValueError):
        raise invalid(f"{what} must be a list of {EMBED_DIM} numbers") from None
    if v.shape != (EMBED_DIM,):
        raise invalid(f"{what} must have {EMBED_DIM} dimensions, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise invalid(f"{what} contains NaN or infinity")
    return v


def _matrix(m, what, rows=None):
    try:
        a = np.asarray(m, dtype=np.float32)
    except (TypeError, ValueError):
        raise invalid(f"{what} must be a (n, {EMBED_DIM}) array of numbers") from None
    if a.ndim != 2 or a.shape[1] != EMBED_DIM or (rows is not None and a.shape[0] != rows):
        want = f"({rows}, {EMBED_DIM})" if rows is not None else f"(n, {EMBED_DIM})"
        raise invalid(f"{what} must have shape {want}, got {a.shape}")
    if not np.isfinite(a).all():
        raise invalid(f"{what} contains NaN or infinity")
    return a


def _unit_rows(a):
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    # A zero row stays zero (cosine 0 with everything) instead of dividing by zero.
    return a / np.maximum(norms, np.float32(1e-12))


def embedding_features(vec, components=None, centroids=None) -> np.ndarray:
    """Dims 32..47: norm, projections, spread, extremes, nearest pattern-bank centroid."""
    v = _embedding_vector(vec)
    comps = None if components is None else _matrix(components, "components")
    cents = None if centroids is None else _matrix(centroids, "centroids")
    out = np.zeros(SLICES["embedding"].stop - SLICES["embedding"].start, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    out[_E["norm"]] = 2.0 * norm / (1.0 + norm)
    if norm == 0.0:
        out[_E["sparsity"]] = 1.0
        return out
    u = v / np.float32(norm)

    pc = _E["pc_0"]
    if comps is None:
        proj = np.clip(_DEFAULT_COMPONENTS @ u * np.float32(_RANDOM_PC_SCALE), -1.0, 1.0)
    else:
        proj = _unit_rows(comps[:N_COMPONENTS]) @ u
    out[pc:pc + len(proj)] = proj

    a = np.abs(u)
    p = a / a.sum()
    nz = p[p > 0]
    out[_E["entropy"]] = float(-(nz * np.log(nz)).sum()) / _LOG_DIM
    out[_E["sparsity"]] = float(np.count_nonzero(a < _SPARSE_EPS)) / EMBED_DIM
    out[_E["max"]] = u.max()
    out[_E["min"]] = u.min()
    out[_E["mean_direction"]] = float(u.sum()) / _SQRT_DIM
    if cents is not None and len(cents):
        cos = _unit_rows(cents) @ u
        best = int(cos.argmax())
        out[_E["cluster_cosine"]] = cos[best]
        out[_E["cluster_index"]] = (best + 1) / len(cents)
    return out


# --- search ------------------------------------------------------------------------------------

_REL_INDEX = {r: i for i, r in enumerate(RELS)}
_NODE_INDEX = {t: i for i, t in enumerate(NODE_TYPES)}


def _row_fields(i, row):
    if not isinstance(row, dict):
        raise invalid(f"search row #{i + 1} must be a dict, not {type(row).__name__}")
    if "distance" not in row:
        raise invalid(f"search row #{i + 1} has no distance")
    distance = _finite_number(row["distance"], f"distance of search row #{i + 1}")
    hop = row.get("hop", 0)
    hop = 0 if hop is None else _count(hop, f"hop of search row #{i + 1}")
    weight = row.get("edge_weight")
    if weight is not None:
        weight = _finite_number(weight, f"edge_weight of search row #{i + 1}", minimum=0)
    return distance, hop, weight


def search_features(rows: list[dict], k: int, embeddings=None, ef_search: int = 64) -> np.ndarray:
    """Dims 48..95: what the HNSW seeds and graph expansion found and how they are spread."""
    k = _count(k, "k")
    ef_search = _count(ef_search, "ef_search")
    if rows is None:
        rows = []
    elif isinstance(rows, (dict, str, bytes)) or not hasattr(rows, "__iter__"):
        raise invalid(f"search rows must be a list of dicts, not {type(rows).__name__}")
    else:
        rows = list(rows)
    n = len(rows)
    emb = None if embeddings is None else _matrix(embeddings, "embeddings", rows=n)
    out = np.zeros(SLICES["search"].stop - SLICES["search"].start, dtype=np.float32)
    out[_S["k"]] = _lg(k, 10)
    out[_S["n_rows"]] = _lg(n, 10)
    if k:
        out[_S["recall_prior"]] = 1.0 - 0.5 * k / max(ef_search, k)
    if not n:
        return out

    distances = np.empty(n, dtype=np.float64)
    hops = np.empty(n, dtype=np.int64)
    weights = []
    rel_counts = [0] * len(RELS)
    node_counts = [0] * len(NODE_TYPES)
    for i, row in enumerate(rows):
        d, hop, w = _row_fields(i, row)
        distances[i] = d
        hops[i] = hop
        if hop:
            if w is not None:
                weights.append(w)
            r = _REL_INDEX.get(row.get("via_rel"))
            if r is not None:
                rel_counts[r] += 1
        t = _NODE_INDEX.get(row.get("node_type"))
        if t is not None:
            node_counts[t] += 1

    seed = hops == 0
    d0 = np.sort(distances[seed])
    n0 = len(d0)
    n_expanded = n - n0
    if k:
        out[_S["seed_fill"]] = min(n0 / k, 1.0)
    if n0:
        best = float(d0[0])
        out[_S["dist_mean"]] = d0.mean()
        out[_S["dist_std"]] = d0.std()
        out[_S["dist_min"]] = best
        out[_S["dist_max"]] = d0[-1]
        bins = np.minimum((np.maximum(d0, 0.0) / _HIST_WIDTH).astype(np.int64), _HIST_BINS - 1)
        h = _S["dist_hist_0"]
        out[h:h + _HIST_BINS] = np.bincount(bins, minlength=_HIST_BINS) / n0
        out[_S["near_best_share"]] = np.count_nonzero(d0 <= best + _NEAR_BEST_MARGIN) / n0
        out[_S["rows_per_seed"]] = _lg(n_expanded / n0, 8)
    if n0 >= 2:
        logits = -(d0 - d0[0]) / _SOFTMAX_TEMPERATURE
        p = np.exp(logits)
        p /= p.sum()
        nz = p[p > 0]
        out[_S["softmax_entropy"]] = float(-(nz * np.log(nz)).sum()) / math.log(n0)
        out[_S["top_gap"]] = d0[1] - d0[0]

    out[_S["max_hop"]] = min(int(hops.max()), MAX_HOP) / MAX_HOP
    h = _S["hop_0_share"]
    out[h:h + MAX_HOP + 1] = np.bincount(np.minimum(hops, MAX_HOP), minlength=MAX_HOP + 1) / n
    if weights:
        out[_S["edge_weight"]] = math.log2(1.0 + sum(weights) / len(weights))
    if n_expanded:
        r = _S[f"rel_{RELS[0].lower()}"]
        out[r:r + len(RELS)] = [c / n_expanded for c in rel_counts]
        out[_S["expanded_dist_mean"]] = distances[~seed].mean()

    if n >= 2:
        if emb is not None:
            units = _unit_rows(emb)
            total = units.sum(axis=0)
            # sum_{i != j} u_i.u_j = |sum u|^2 - sum |u_i|^2, without the n x n Gram matrix.
            self_dots = float(np.einsum("ij,ij->", units, units))
            out[_S["coherence"]] = (float(total @ total) - self_dots) / (n * (n - 1))
            out[_S["coherence_measured"]] = 1.0
        else:
            s = 1.0 - distances
            out[_S["coherence"]] = (float(s.sum()) ** 2 - float(s @ s)) / (n * (n - 1))
    t = _S[f"node_{NODE_TYPES[0].lower()}"]
    out[t:t + len(NODE_TYPES)] = [c / n for c in node_counts]
    return out


# --- system ------------------------------------------------------------------------------------

@dataclass
class SystemState:
    """What the router knows about the serving side when a request arrives."""

    latency_budget_ms: float | None = None
    device: str = "cpu"
    memory_available_mb: float | None = None
    concurrent_requests: int = 0
    model_quality: list[float] | None = None
    model_latency_ms: list[float] | None = None
    max_tokens: int | None = None
    forced_model: bool = False
    forced_temperature: bool = False
    n_models: int = 2


_DEVICES = {"cpu": 0, "gpu": 1, "cuda": 1}


def _per_model(values, what):
    if values is None:
        return []
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise invalid(f"{what} must be a list of numbers")
    return [None if x is None else _finite_number(x, f"{what}[{i}]", minimum=0)
            for i, x in enumerate(values)]


def system_features(state: SystemState) -> np.ndarray:
    """Dims 96..127: latency budget, device, free memory, load, per-model quality and latency."""
    if not isinstance(state, SystemState):
        raise invalid(f"state must be a SystemState, not {type(state).__name__}")
    out = np.zeros(SLICES["system"].stop - SLICES["system"].start, dtype=np.float32)
    if state.latency_budget_ms is not None:
        out[_Y["latency_budget"]] = _lg(_finite_number(state.latency_budget_ms, "latency_budget_ms",
                                                       minimum=0), 16)
    device = _DEVICES.get(str(state.device).lower())
    if device is None:
        raise invalid(f"device must be 'cpu' or 'gpu', not {state.device!r}")
    out[_Y["device_cpu"] + device] = 1.0
    if state.memory_available_mb is not None:
        mb = _finite_number(state.memory_available_mb, "memory_available_mb", minimum=0)
        out[_Y["memory_available"]] = _lg(mb / 1024.0, 8)
    out[_Y["concurrent"]] = _lg(_count(state.concurrent_requests, "concurrent_requests"), 8)

    quality = _per_model(state.model_quality, "model_quality")
    latency = _per_model(state.model_latency_ms, "model_latency_ms")
    for i, q in enumerate(quality):
        if q is not None and q > 1.0:
            raise invalid(f"model_quality[{i}] must be between 0 and 1, not {q:g}")
    slots = min(max(_count(state.n_models, "n_models"), len(quality), len(latency)), N_MODEL_SLOTS)
    out[_Y["n_models"]] = _lg(slots, 4)
    for i in range(slots):
        q = quality[i] if i < len(quality) else None
        out[_Y["quality_0"] + i] = 0.5 if q is None else q
        ms = latency[i] if i < len(latency) else None
        if ms is not None:
            out[_Y["latency_0"] + i] = _lg(ms, 16)
    if state.max_tokens is not None:
        out[_Y["max_tokens"]] = _lg(_count(state.max_tokens, "max_tokens"), 16)
    out[_Y["forced_model"]] = 1.0 if state.forced_model else 0.0
    out[_Y["forced_temperature"]] = 1.0 if state.forced_temperature else 0.0
    return out


# --- whole vector ------------------------------------------------------------------------------

def build(text, token_count, vec, rows, k, state, *, user_frequency=0, components=None,
          centroids=None, embeddings=None, ef_search=64) -> np.ndarray:
    """The (128,) float32 router input: the four slices in order."""
    x = np.concatenate((
        query_features(text, token_count, user_frequency),
        embedding_features(vec, components, centroids),
        search_features(rows, k, embeddings, ef_search),
        system_features(state),
    ))
    # Inputs are validated finite, but a pathological one (say 1e38 distances) could still
    # overflow float32; the router must never see NaN or infinity.
    if not np.isfinite(x).all():
        raise invalid("request features are not finite", hint="Check the search distances and "
                      "the system state for extreme values.")
    return x


def describe(x) -> dict:
    """{slice name: {feature name: value}} for every used (non-pad) dim, as Python floats."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape != (INPUT_DIM,):
        raise invalid(f"features must be a vector of length {INPUT_DIM}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise invalid("features contain NaN or infinity")
    values = x.tolist()
    return {key: {FEATURE_NAMES[i]: values[i] for i in range(s.start, s.stop)
                  if not FEATURE_NAMES[i].startswith("pad_")}
            for key, s in SLICES.items()}
