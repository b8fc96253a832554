"""Memory: ingestion into ruvllm.nodes + the AGE graph, and retrieval: dense (HNSW) and lexical
(BM25, lexical.py) hits fused by normalised scores, then graph neighbours ranked with them
(fusion.py), all under the caller's filter and tenant.

Every statement is a prepared plan with parameters; no value is ever pasted into SQL or Cypher.
What touches the graph's own tables is in graph.py.
"""
import datetime
import json
import math
import time

import numpy as np

from . import embedding, errors, fusion, graph, lexical, native, tenancy, textutil, unit_vectors
from .sqlglue import planner, read_only, setting, vector_from_send, vector_literal, vector_send

NODE_TYPES = ("Query", "Document", "AgentStep", "Fact", "QAPair", "Concept")
MAX_CONTENT_CHARS = 1_000_000
SAME_TOPIC_LINKS = 5
MAX_EXPANDED = 200  # a hub node must not turn one search into a scan of the graph

_METADATA_TYPES = {
    "timestamp": (str,),
    "speaker": (str,),
    "author": (str,),
    "tags": (list,),
    "domain": (str,),
    "version": (int,),
    "confidence": (int, float),
}


# --- validation (pure) ------------------------------------------------------------------------

def check_node_type(node_type):
    if node_type not in NODE_TYPES:
        raise errors.invalid(f"unknown node_type {node_type!r}",
                             hint="node_type is one of " + ", ".join(NODE_TYPES))
    return node_type


def check_content(content, what="content", limit=MAX_CONTENT_CHARS,
                  hint="Split the document before ingesting it."):
    if content is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, f"{what} must not be NULL")
    if not content.strip():
        raise errors.invalid(f"{what} must not be empty")
    if len(content) > limit:
        raise errors.RuvllmError(
            errors.STRING_DATA_RIGHT_TRUNCATION,
            f"{what} is {len(content)} characters, over the limit of {limit}", hint=hint)
    return content


def check_metadata(metadata):
    """metadata as a dict: a JSON object whose known keys have the documented types."""
    metadata = errors.json_object(metadata, "metadata", '{"tags": ["ops"], "domain": "postgres"}')
    for key, types in _METADATA_TYPES.items():
        if key in metadata and (not isinstance(metadata[key], types) or isinstance(metadata[key], bool)):
            raise errors.invalid(f"metadata.{key} must be a {types[0].__name__}, not {metadata[key]!r}")
    if "timestamp" in metadata:
        metadata = dict(metadata, timestamp=check_timestamp(metadata["timestamp"], "metadata.timestamp").isoformat())
    if "tags" in metadata and not all(isinstance(t, str) for t in metadata["tags"]):
        raise errors.invalid("metadata.tags must be an array of strings")
    if "confidence" in metadata and not 0 <= metadata["confidence"] <= 1:
        raise errors.invalid("metadata.confidence must be between 0 and 1")
    # Merging a near-duplicate adds one to the version, which is an int in SQL.
    if "version" in metadata and not 0 <= metadata["version"] < MAX_VERSION:
        raise errors.invalid(f"metadata.version must be between 0 and {MAX_VERSION - 1}, not {metadata['version']}")
    depth = _depth(metadata)
    if depth > MAX_METADATA_DEPTH:
        raise errors.invalid(f"metadata is nested {depth} levels deep, over the limit of {MAX_METADATA_DEPTH}")
    size = len(json.dumps(metadata))
    if size > MAX_METADATA_BYTES:
        raise errors.RuvllmError(errors.STRING_DATA_RIGHT_TRUNCATION,
                                 f"metadata is {size} bytes as JSON, over the limit of {MAX_METADATA_BYTES}",
                                 hint="Keep large data in your own tables and put its key in the metadata.")
    return metadata


def check_timestamp(value, what):
    """An ISO 8601 date or time as an aware datetime in UTC (one without a zone is taken as UTC:
    the server's TimeZone must not change what a stored timestamp means)."""
    hint = "Give an ISO 8601 date or time, e.g. 2024-05-01 or 2024-05-01T14:30:00Z."
    if not isinstance(value, str) or isinstance(value, bool):
        raise errors.invalid(f"{what} must be an ISO 8601 string, not {value!r}", hint=hint)
    try:
        parsed = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise errors.invalid(f"{what} is not an ISO 8601 date or time: {value[:100]!r}", hint=hint) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc)


MAX_VERSION = 2**31 - 1
MAX_METADATA_DEPTH = 32
MAX_METADATA_BYTES = 64 * 1024
MAX_SOURCE_CHARS = 1000


def _depth(value):
    """How deeply a JSON value nests, without recursion (a 5,000-deep document is the input)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_METADATA_DEPTH:
                break
            todo.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_source(source):
    if source is not None and len(source) > MAX_SOURCE_CHARS:
        raise errors.RuvllmError(errors.STRING_DATA_RIGHT_TRUNCATION,
                                 f"source is {len(source)} characters, over the limit of {MAX_SOURCE_CHARS}",
                                 hint="The source names where a document came from (a path, a URL).")
    return source


MAX_EDGE_WEIGHT = 1000.0


def check_weight(weight):
    if weight is None or not math.isfinite(weight) or weight < 0:
        raise errors.invalid(f"weight must be a finite number >= 0, not {weight}")
    if weight > MAX_EDGE_WEIGHT:
        raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE,
                                 f"weight {weight} is over the limit of {MAX_EDGE_WEIGHT:g}",
                                 hint="Edge weights are relative strengths; similarity edges weigh 0..1.")
    return float(weight)


# --- prepared plans -----------------------------------------------------------------------------

_plan = planner()


# --- ingestion ----------------------------------------------------------------------------------

# Embedding is nearly all of a bulk ingest's time: a long one reports each slice of this many
# chunks as a NOTICE (done, rate, ETA), which the client sees while the statement runs.
PROGRESS_EVERY_CHUNKS = 256


def _embed_with_progress(texts, notice, what="chunks"):
    if notice is None or len(texts) <= PROGRESS_EVERY_CHUNKS:
        return embedding.embed(texts)
    started = time.monotonic()
    parts = []
    for start in range(0, len(texts), PROGRESS_EVERY_CHUNKS):
        parts.append(embedding.embed(texts[start:start + PROGRESS_EVERY_CHUNKS]))
        done = min(start + PROGRESS_EVERY_CHUNKS, len(texts))
        rate = done / max(time.monotonic() - started, 1e-9)
        notice(f"ruvllm_ingest_many: embedded {done} of {len(texts)} {what} "
               f"({rate:.0f} {what}/s, about {(len(texts) - done) / rate:.0f} s left)")
    return embedding.EmbedResult(
        vectors=np.concatenate([p.vectors for p in parts]),
        token_counts=[c for p in parts for c in p.token_counts],
        truncated=[t for p in parts for t in p.truncated])


def ingest_many(plpy, docs, notice=None):
    """Ingest documents; returns one node id per document (its first chunk).

    docs: [(content, node_type, source, metadata)]. Everything is checked before anything is
    written, and all writes happen in the caller's statement, so an error leaves nothing behind.
    """
    checked = []
    for i, (content, node_type, source, metadata) in enumerate(docs):
        what = "content" if len(docs) == 1 else f"document {i + 1}: content"
        checked.append((check_content(content, what), check_node_type(node_type or "Document"),
                        check_source(source), check_metadata(metadata)))
    if not checked:
        return []
    tenant = tenancy.current(plpy)
    dedup_similarity = float(setting(plpy, "ruvllm.dedup_similarity"))
    same_topic = float(setting(plpy, "ruvllm.same_topic_threshold"))

    chunks = []  # (doc index, text)
    for i, (content, *_rest) in enumerate(checked):
        chunks.extend((i, text) for text in textutil.chunk_text(content))
    texts = [text for _, text in chunks]
    result = _embed_with_progress(texts, notice)
    truncated = sum(result.truncated)
    if truncated and notice:
        notice(f"{truncated} chunk(s) longer than {embedding.MAX_TOKENS} tokens were truncated for embedding")

    # One statement finds every chunk's nearest near-duplicate candidate (a round trip per chunk
    # was most of the ingest time); chunks of this batch are not in the table yet, so near
    # duplicates among them are found below, in memory.
    find_duplicates = _plan(plpy, "dups", """
        SELECT q.ord::int AS ord, d.id, d.similarity
          FROM (SELECT u.vec::public.vector AS vec, u.bands::bigint[] AS bands, u.ord
                  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(vec, bands, ord)) q
         CROSS JOIN LATERAL (
               SELECT id, 1 - (embedding OPERATOR(public.<=>) q.vec) AS similarity
                 FROM ruvllm.nodes
                WHERE minhash_bands OPERATOR(pg_catalog.&&) q.bands AND tenant = $3
                ORDER BY embedding OPERATOR(public.<=>) q.vec LIMIT 1) d""",
                            ["text[]", "text[]", "text"])
    # A node that several chunks of the batch duplicate gains one version per chunk.
    merge = _plan(plpy, "merge_many", """
        UPDATE ruvllm.nodes n
           SET metadata = n.metadata || pg_catalog.jsonb_build_object('version',
                   COALESCE((n.metadata->>'version')::int, 1) + c.merges),
               last_accessed = pg_catalog.now()
          FROM (SELECT id, pg_catalog.count(*)::int AS merges
                  FROM unnest($1::uuid[]) AS id GROUP BY id) c
         WHERE n.id = c.id""", ["uuid[]"])
    new_ids_plan = _plan(plpy, "uuids", """
        SELECT pg_catalog.array_agg(pg_catalog.gen_random_uuid()) AS ids
          FROM pg_catalog.generate_series(1, $1)""", ["int"])

    all_bands = [textutil.minhash_bands(textutil.minhash(text)) for _, text in chunks]
    literals = [vector_literal(vec) for vec in result.vectors]
    nearest = {row["ord"]: (row["id"], row["similarity"]) for row in plpy.execute(
        find_duplicates, [literals, ["{" + ",".join(map(str, b)) + "}" for b in all_bands], tenant])}
    fresh_ids = iter(plpy.execute(new_ids_plan, [len(chunks)])[0]["ids"])

    ids, new_rows, new_vectors, batch_seen, merged = [], [], [], [], []
    for ord_, ((doc, text), vec, bands, literal) in enumerate(
            zip(chunks, result.vectors, all_bands, literals), start=1):
        node_id = None
        found = nearest.get(ord_)
        if found and found[1] >= dedup_similarity:
            node_id = found[0]
            merged.append(node_id)
        else:
            # Near-duplicates inside this same batch are not in the table yet.
            for other_id, other_bands, other_vec in batch_seen:
                if set(bands) & other_bands and float(vec @ other_vec) >= dedup_similarity:
                    node_id = other_id
                    break
        if node_id is None:
            node_id = next(fresh_ids)
            content, node_type, source, metadata = checked[doc]
            meta = dict(metadata)
            meta.setdefault("version", 1)
            new_rows.append((node_id, literal, text, node_type, source, json.dumps(meta), bands))
            new_vectors.append(vec)
            batch_seen.append((node_id, set(bands), vec))
        ids.append((doc, node_id))

    if merged:
        plpy.execute(merge, [merged])
    if new_rows:
        graph.insert_nodes(plpy, new_rows, tenant)
        plpy.execute(_plan(plpy, "count_lexemes", lexical.COUNT_NEW_NODES, ["uuid[]"]),
                     [[row[0] for row in new_rows]])
        if setting(plpy, "ruvllm.store_unit_vectors", "on") == "on":
            unit_vectors.store(plpy, [row[0] for row in new_rows], [row[2] for row in new_rows],
                               lambda reads: _embed_with_progress(reads, notice, "evidence units").vectors,
                               new_vectors)

    # Follows edges between consecutive chunks of one document.
    follows = []
    for (doc_a, id_a), (doc_b, id_b) in zip(ids, ids[1:]):
        if doc_a == doc_b and id_a != id_b:
            follows.append((id_a, id_b, 1.0, 1.0))
    graph.insert_edges(plpy, "Follows", follows, "ingest")

    # SameTopic edges from each new node to its most similar existing nodes.
    new_ids = [row[0] for row in new_rows]
    if new_ids:
        neighbours = _plan(plpy, "same_topic", """
            SELECT n.id AS src, m.id AS dst, m.similarity
              FROM ruvllm.nodes n
             CROSS JOIN LATERAL (
                   SELECT o.id, 1 - (o.embedding OPERATOR(public.<=>) n.embedding) AS similarity
                     FROM ruvllm.nodes o
                    WHERE o.id <> n.id AND o.tenant = n.tenant
                    ORDER BY o.embedding OPERATOR(public.<=>) n.embedding
                    LIMIT $2) m
             WHERE n.id = ANY($1) AND m.similarity >= $3""", ["uuid[]", "int", "float8"])
        edges, seen = [], set()
        doc_of = {node_id: doc for doc, node_id in ids}
        for row in plpy.execute(neighbours, [new_ids, SAME_TOPIC_LINKS, same_topic]):
            pair = frozenset((row["src"], row["dst"]))
            # One edge per pair; chunks of one document are already joined by Follows.
            if pair in seen or doc_of.get(row["src"]) == doc_of.get(row["dst"], -1):
                continue
            seen.add(pair)
            edges.append((row["src"], row["dst"], float(row["similarity"]), 1.0))
        graph.insert_edges(plpy, "SameTopic", edges, "ingest")

    heads = {}
    for doc, node_id in ids:
        heads.setdefault(doc, node_id)
    return [heads[i] for i in range(len(checked))]


def link(plpy, src, dst, rel, weight):
    graph.check_rel(rel)
    weight = check_weight(weight)
    if src is None or dst is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, "src and dst must not be NULL")
    found = {r["id"] for r in plpy.execute(_plan(
        plpy, "exists", "SELECT id FROM ruvllm.nodes WHERE id = ANY($1)", ["uuid[]"]), [[src, dst]])}
    missing = [n for n in (src, dst) if n not in found]
    if missing:
        raise errors.RuvllmError(errors.NO_DATA_FOUND, f"node {missing[0]} does not exist",
                                 hint="Node ids come from ruvllm_ingest or ruvllm.nodes.")
    graph.insert_edges(plpy, rel, [(src, dst, weight, 1.0)], "user")


# --- retrieval ----------------------------------------------------------------------------------

MODES = ("hybrid", "dense", "lexical")
FILTER_KEYS = ("since", "until", "source", "node_type", "metadata")
# Each ranked list is read this deep before fusion: a node ranked 15th by one list and 3rd by the
# other may outrank one that a single list ranks 2nd.
MIN_CANDIDATES = 20


def check_search_args(k, hops):
    if k is None or not 1 <= k <= 1000:
        raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE, f"k must be between 1 and 1000, not {k}")
    if hops is None or not 0 <= hops <= 3:
        raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE, f"hops must be between 0 and 3, not {hops}")


def check_mode(mode):
    if mode not in MODES:
        raise errors.invalid(f"unknown search mode {mode!r}", hint="mode is one of " + ", ".join(MODES))
    return mode


_FILTER_EXAMPLE = ('{"since": "2024-05-01", "until": "2024-06-01T00:00:00Z", "source": {"prefix": "docs/"}, '
                   '"node_type": ["Fact", "Document"], "metadata": {"speaker": "alice"}}')


def check_filter(value):
    """A search filter as the parameters of the filter SQL: (since, until, node types, source,
    source prefix, metadata JSON), None where the filter says nothing."""
    spec = errors.json_object(value, "filter", _FILTER_EXAMPLE)
    unknown = sorted(set(spec) - set(FILTER_KEYS))
    if unknown:
        raise errors.invalid(f"unknown filter key(s): {', '.join(map(repr, unknown))}",
                             hint="filter keys: " + ", ".join(FILTER_KEYS) + "; for example " + _FILTER_EXAMPLE)
    since = check_timestamp(spec["since"], "filter.since") if spec.get("since") is not None else None
    until = check_timestamp(spec["until"], "filter.until") if spec.get("until") is not None else None
    if since and until and since > until:
        raise errors.invalid(f"filter.since ({since.isoformat()}) is after filter.until ({until.isoformat()})")
    types = spec.get("node_type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise errors.invalid("filter.node_type must be a node type or a non-empty array of them",
                                 hint="node types: " + ", ".join(NODE_TYPES))
        for t in types:
            check_node_type(t)
    source = spec.get("source")
    exact = prefix = None
    if isinstance(source, str):
        exact = check_source(source)
    elif isinstance(source, dict) and set(source) == {"prefix"} and isinstance(source["prefix"], str):
        prefix = check_source(source["prefix"])
    elif source is not None:
        raise errors.invalid(f"filter.source must be a string (exact) or {{\"prefix\": string}}, not {json.dumps(source)[:100]}",
                             hint='{"source": "docs/intro.md"} or {"source": {"prefix": "docs/"}}')
    contains = spec.get("metadata")
    if contains is not None and not isinstance(contains, dict):
        raise errors.invalid("filter.metadata must be a JSON object (matched by containment, @>)",
                             hint='{"metadata": {"speaker": "alice", "tags": ["ops"]}}')
    return (since.isoformat() if since else None, until.isoformat() if until else None, types, exact,
            prefix, json.dumps(contains) if contains is not None else None)


FILTER_TYPES = ["timestamptz", "timestamptz", "text[]", "text", "text", "jsonb"]

# A node's time: its metadata timestamp when it has a valid one, else when it was stored.
NODE_TIME = """CASE WHEN pg_catalog.pg_input_is_valid(n.metadata->>'timestamp', 'timestamptz')
                    THEN (n.metadata->>'timestamp')::timestamptz ELSE n.created_at END"""


def filter_sql(first, present):
    """The filter on alias n, its six parameters numbered from first, with a condition only for
    what the filter has (present: six booleans, as check_filter's values are not None): fixed text,
    no input in it. Absent conditions are left out, not written `$n IS NULL OR ...`: with those the
    generic plan's estimate of the filter made PostgreSQL sort a sequential scan instead of asking
    the HNSW index (600 nodes: 2.7 ms -> 109 ms)."""
    p = [f"${first + i}" for i in range(6)]
    conditions = [f"{NODE_TIME} >= {p[0]}::timestamptz", f"{NODE_TIME} < {p[1]}::timestamptz",
                  f"n.node_type = ANY({p[2]}::text[])", f"n.source = {p[3]}::text",
                  f"pg_catalog.starts_with(n.source, {p[4]}::text)",
                  f"n.metadata OPERATOR(pg_catalog.@>) {p[5]}::jsonb"]
    return "".join(f"\n           AND {c}" for c, on in zip(conditions, present) if on)


def filter_key(params):
    """Which conditions a checked filter has, as a plan cache key and filter_sql's present."""
    return tuple(v is not None for v in params)


# $1 of a search's statements is the query vector in binary form (sqlglue.vector_send).
QUERY_VECTOR = "ruvllm._vector_recv($1::bytea)"

_ROW_COLUMNS = f"""n.id, n.graph_id::text AS gid, n.content, n.node_type, n.source, n.metadata::text AS metadata,
               n.created_at::text AS created_at, n.embedding OPERATOR(public.<=>) {QUERY_VECTOR} AS distance,
               public.vector_send(n.embedding) AS v,
               extract(epoch FROM pg_catalog.now() - n.created_at)::float8 AS age"""

_DENSE_CTE = f"""
    dense AS (
        SELECT n.id, n.embedding OPERATOR(public.<=>) {QUERY_VECTOR} AS distance
          FROM ruvllm.nodes n
         WHERE n.tenant = $2 {{filter}}
         ORDER BY n.embedding OPERATOR(public.<=>) {QUERY_VECTOR}
         LIMIT {{depth}}
    )"""
_NO_DENSE = """
    dense AS (SELECT NULL::uuid AS id, NULL::float8 AS distance WHERE false)"""
_NO_LEXICAL = """
    lexical AS (SELECT NULL::uuid AS id, NULL::float8 AS score WHERE false)"""


def candidates_sql(mode, depth, present=(False,) * 6):
    """One statement for the dense and lexical candidates of a mode, each list depth deep, with
    each one's row: $1 query vector, $2 tenant, $3 question, $4.. the filter. The depth is part of
    the text, like which filter conditions there are (filter_sql)."""
    where = filter_sql(4, present)
    depth = int(depth)
    ctes = [(_DENSE_CTE.format(filter=where, depth=depth) if mode != "lexical" else _NO_DENSE),
            (lexical.lexical_ctes(where, depth) if mode != "dense" else _NO_LEXICAL)]
    return f"""
    WITH {",".join(ctes)}
    SELECT {_ROW_COLUMNS}, d.id IS NOT NULL AS dense_hit, l.score AS lexical_score,
           {lexical.COVERAGE if mode != "dense" else "NULL::float8"} AS coverage
      FROM (SELECT id FROM dense UNION SELECT id FROM lexical) c
      JOIN ruvllm.nodes n ON n.id = c.id
      LEFT JOIN dense d ON d.id = c.id
      LEFT JOIN lexical l ON l.id = c.id
     WHERE n.tenant = $2"""


# The query vector is a bytea parameter read by a function of it alone, which the index scan
# evaluates once; as text cast in the statement ($1::vector), a generic plan parsed it again for
# every row it compared (~0.2 ms each).
_CANDIDATE_TYPES = ["bytea", "text", "text"] + FILTER_TYPES


def _set_search_params(plpy, depth, ef=None):
    """Sets the HNSW search settings for this transaction and returns (tenant, read_only): one
    round trip for what took four (the tenant, ruvllm.ef_search, the settings, whether the
    transaction can write). ef: ruvllm.ef_search when the caller has read it."""
    # Local to the transaction; pgvector 0.8's iterative scan keeps k rows under the tenant filter.
    row = plpy.execute(_plan(plpy, "search_params", """
        SELECT pg_catalog.set_config('hnsw.ef_search', GREATEST(COALESCE($1,
                   pg_catalog.current_setting('ruvllm.ef_search')::int), $2)::text, true) AS ef,
               pg_catalog.set_config('hnsw.iterative_scan', 'relaxed_order', true) AS scan,
               public.ruvllm_current_tenant() AS tenant,
               pg_catalog.current_setting('transaction_read_only') = 'on' AS read_only""", ["int", "int"]),
                       [ef, depth])[0]
    return row["tenant"] or "", row["read_only"]


def _row(r, hop=0, via_rel=None, via_node=None, edge_weight=None):
    meta = json.loads(r["metadata"]) if r["metadata"] else {}
    distance = float(r["distance"])
    return dict(id=r["id"], content=r["content"], node_type=r["node_type"], source=r["source"],
                distance=distance, similarity=1.0 - distance, hop=hop, via_rel=via_rel,
                via_node=via_node, edge_weight=edge_weight, dense_rank=None, lexical_score=None,
                lexical_rank=None, score=0.0, rank=None, metadata=meta, created_at=r["created_at"],
                timestamp=meta.get("timestamp"), speaker=meta.get("speaker"), author=meta.get("author"),
                gid=r["gid"], vec_bytes=r["v"], age=r["age"],
                coverage=None if r.get("coverage") is None else float(r["coverage"]))


def search_vector(plpy, query_vec, k=10, hops=2, tenant=None, query=None, mode="dense", filter=None,
                  ef_search=None, read_only=None):
    """Rows ranked best first (score, rank 1..): the k best hits of the mode (hop 0) and their
    neighbours up to `hops` edges away, each with its signals. mode hybrid and lexical need the
    question's text (query); dense uses the vector alone. Only the tenant's nodes that pass the
    filter are returned. ef_search and read_only: the settings, when the caller has read them."""
    check_search_args(k, hops)
    check_mode(mode)
    if mode != "dense" and query is None:
        raise errors.invalid(f"search mode {mode} needs the question's text")
    params = check_filter(filter)
    query_bytes = vector_send(query_vec)
    depth = k if mode == "dense" else max(2 * k, MIN_CANDIDATES)
    current_tenant, transaction_read_only = _set_search_params(plpy, depth, ef_search)
    tenant = current_tenant if tenant is None else tenant
    read_only = transaction_read_only if read_only is None else read_only
    present = filter_key(params)
    found = plpy.execute(_plan(plpy, f"candidates:{mode}:{depth}:{present}", candidates_sql(mode, depth, present),
                               _CANDIDATE_TYPES), [query_bytes, tenant, query or "", *params])
    rows = {r["id"]: _row(r) for r in found}
    dense = sorted((r for r in found if r["dense_hit"]), key=lambda r: (r["distance"], str(r["id"])))
    lexical_hits = sorted((r for r in found if r["lexical_score"] is not None),
                          key=lambda r: (-r["lexical_score"], str(r["id"])))
    for i, r in enumerate(dense, start=1):
        rows[r["id"]]["dense_rank"] = i
    for i, r in enumerate(lexical_hits, start=1):
        rows[r["id"]].update(lexical_rank=i, lexical_score=float(r["lexical_score"]))
    if mode == "dense":
        # Cosine similarity itself: min-max scaled over only k hits, the k-th would score 0 and
        # every graph neighbour would outrank it.
        own = {r["id"]: 1.0 - float(r["distance"]) for r in dense}
    elif mode == "lexical":
        own = fusion.convex({}, {r["id"]: float(r["lexical_score"]) for r in lexical_hits})
    else:
        # Every candidate's true cosine similarity, lexical-only hits' too.
        own = fusion.convex({r["id"]: 1.0 - float(r["distance"]) for r in found},
                            {r["id"]: float(r["lexical_score"]) for r in lexical_hits})
    seeds = fusion.top(own, k)
    results = {node: rows[node] for node in seeds}
    for node in seeds:
        results[node]["score"] = own[node]
    _expand(plpy, results, rows, own, hops, query_bytes, tenant, params)
    ranked = sorted(results.values(), key=lambda r: (-r["score"], r["hop"], r["distance"], str(r["id"])))
    for i, r in enumerate(ranked, start=1):
        r["rank"] = i
    touch_accessed(plpy, [r["id"] for r in ranked], read_only)
    return ranked


# The first two hops in one statement (the nodes one hop away, then the edges at them) instead of a
# statement a hop. Off: it measured slower, not faster (2 hops, hybrid, p50: 8.2 against 8.0 ms at
# 100K nodes in bench/retrieval, which times both in one run; 18.4 against 16.7 ms on a denser
# graph of 1.5K nodes), as the round trip it saves is cheap next to what a hop does. Kept,
# switchable, so the comparison can be run again.
HOPS_IN_ONE_STATEMENT = False


def _two_hops_sql(present):
    """The rows one and two hops from the frontier ($2), each with its level and the edges that
    reached it: level 2 starts from every level-1 row, and skips the results ($10) and level 1."""
    level1_at = graph.EDGES_AT
    level2_at = graph.EDGES_AT.replace("$2::text[]", "(SELECT pg_catalog.array_agg(l1.gid) FROM l1)")
    # A reached vertex's node row by the graph_id index, always: LIMIT 1 keeps the planner from
    # joining the whole table (a generic plan's estimates made it hash ruvllm.nodes).
    node_row = f"""
            SELECT {_ROW_COLUMNS}
              FROM ruvllm.nodes n
             WHERE n.graph_id OPERATOR(ag_catalog.=) r.b AND n.tenant = $3 {filter_sql(4, present)}
             LIMIT 1"""
    return f"""
        WITH e1 AS ({level1_at}),
        r1 AS (
            SELECT e.b, pg_catalog.array_agg(e.a::text) AS parents, pg_catalog.array_agg(e.rel) AS rels,
                   pg_catalog.array_agg(e.props) AS props
              FROM e1 e WHERE e.b OPERATOR(ag_catalog.<>) ALL($10::text[]::ag_catalog.graphid[])
             GROUP BY e.b),
        l1 AS MATERIALIZED (
            SELECT n.*, r.parents, r.rels, r.props, 1 AS level
              FROM r1 r CROSS JOIN LATERAL ({node_row}) n),
        e2 AS ({level2_at}),
        r2 AS (
            SELECT e.b, pg_catalog.array_agg(e.a::text) AS parents, pg_catalog.array_agg(e.rel) AS rels,
                   pg_catalog.array_agg(e.props) AS props
              FROM e2 e
             WHERE e.b OPERATOR(ag_catalog.<>) ALL(($10::text[] OPERATOR(pg_catalog.||)
                       (SELECT pg_catalog.array_agg(l1.gid) FROM l1))::ag_catalog.graphid[])
             GROUP BY e.b)
        SELECT * FROM l1
        UNION ALL
        SELECT n.*, r.parents, r.rels, r.props, 2 AS level
          FROM r2 r CROSS JOIN LATERAL ({node_row}) n"""


def _expand(plpy, results, candidates, own, hops, query_bytes, tenant, params):
    """Graph neighbours of the results, hop by hop, into results: each scores its best path's
    parent score x edge weight x damping, or its own fused score when a list found it and that is
    higher (the larger of two pieces of evidence, not their sum: a summed graph bonus lifted a
    node both lists ranked 5th-6th over the hit both ranked first on demo/knowledge)."""
    present = filter_key(params)
    # One statement a hop: the edges at the frontier with the rows of the nodes they reach that
    # are in the tenant, pass the filter and are not results yet (an edge to any other is not
    # followed, as before when the rows were fetched by a second statement).
    hop_plan = _plan(plpy, f"hop:{present}", f"""
        WITH e AS ({graph.EDGES_AT}),
        reached AS (
            SELECT e.b, pg_catalog.array_agg(e.a::text) AS parents, pg_catalog.array_agg(e.rel) AS rels,
                   pg_catalog.array_agg(e.props) AS props
              FROM e WHERE e.b OPERATOR(ag_catalog.<>) ALL($10::text[]::ag_catalog.graphid[])
             GROUP BY e.b)
        SELECT {_ROW_COLUMNS}, r.parents, r.rels, r.props
          FROM reached r JOIN ruvllm.nodes n ON n.graph_id OPERATOR(ag_catalog.=) r.b
         WHERE n.tenant = $3 {filter_sql(4, present)}""",
                     ["bytea", "text[]", "text"] + FILTER_TYPES + ["text[]"])
    by_gid = {r["gid"]: r for r in results.values()}
    frontier = {r["gid"]: r["score"] for r in results.values()}
    prefetched = {}
    if hops >= 2 and HOPS_IN_ONE_STATEMENT and frontier and len(results) < MAX_EXPANDED:
        two_hops = _plan(plpy, f"two_hops:{present}", _two_hops_sql(present),
                         ["bytea", "text[]", "text"] + FILTER_TYPES + ["text[]"])
        prefetched = {1: [], 2: []}
        for r in plpy.execute(two_hops, [query_bytes, list(frontier), tenant, *params, list(by_gid)]):
            prefetched[r["level"]].append(r)
    for hop in range(1, hops + 1):
        if not frontier or len(results) >= MAX_EXPANDED:
            break
        fetched = {}
        edges = []
        rows = prefetched.pop(hop, None)
        if rows is None:
            rows = plpy.execute(hop_plan, [query_bytes, list(frontier), tenant, *params, list(by_gid)])
        for r in rows:
            fetched[r["gid"]] = r
            for parent, rel, props in zip(r["parents"], r["rels"], r["props"]):
                weight = json.loads(props).get("weight") if props else None
                edges.append((parent, r["gid"], rel, weight))
        reached = fusion.best_paths(frontier, edges)
        if not reached:
            break
        scored = []
        for r in fetched.values():
            if r["gid"] not in reached:
                continue
            graph_score, parent, rel, weight = reached[r["gid"]]
            known = candidates.get(r["id"])
            row = _row(r, hop, rel, by_gid[parent]["id"], weight)
            if known is not None:
                row.update(dense_rank=known["dense_rank"], lexical_score=known["lexical_score"],
                           lexical_rank=known["lexical_rank"])
            row["score"] = max(graph_score, own.get(r["id"], 0.0))
            scored.append(row)
        scored.sort(key=lambda row: (-row["score"], row["distance"], str(row["id"])))
        if len(scored) > MAX_EXPANDED - len(results):
            # The cap cuts this hop's frontier: the next hop starts from fewer nodes (and may
            # reach ones cut here) than the prefetched one did, so it is fetched on its own.
            prefetched.pop(hop + 1, None)
        frontier = {}
        for row in scored[:MAX_EXPANDED - len(results)]:
            results[row["id"]] = row
            by_gid[row["gid"]] = row
            frontier[row["gid"]] = row["score"]


# Most searches return fewer nodes; more go in one queue entry each this many (an entry is at
# most 256 KB, ~16K ids).
ACCESS_IDS_PER_ENTRY = 1000


def touch_accessed(plpy, ids, transaction_read_only=None):
    """Record when nodes were last served; skipped where the transaction cannot write (a standby,
    BEGIN READ ONLY).

    The ids go to the witness queue, and its background writer upserts ruvllm.node_access with its
    next batch (extension/witness_queue.c): no statement and no row lock in this request, and the
    record survives the caller's rollback, as the witness row of the same request does (the nodes
    were served either way). Where the queue refuses them (ruvllm.witness_async off, the queue full,
    no writer can start), they are upserted here, in the caller's transaction, as before."""
    if not ids:
        return
    if transaction_read_only if transaction_read_only is not None else read_only(plpy):
        return
    refused = []
    for start in range(0, len(ids), ACCESS_IDS_PER_ENTRY):
        part = ids[start:start + ACCESS_IDS_PER_ENTRY]
        if native.submit_access(plpy, part) != native.QUEUED:
            refused.extend(part)
    if not refused:
        return
    ids = refused
    # Not an UPDATE of ruvllm.nodes: that re-inserts the row into the HNSW index (see the table).
    # The row locks this takes last until the caller commits, i.e. past generation: a concurrent
    # request serving the same nodes skips the ones locked (it is touching them now, too) instead
    # of waiting seconds for them, or deadlocking over them in another order. Only a node's first
    # access, an insert, can wait on a concurrent first access; inserts go in id order, so those
    # waits never form a cycle.
    plpy.execute(_plan(plpy, "touch", """
        WITH ids AS (SELECT DISTINCT i FROM unnest($1::uuid[]) AS i),
        free AS (SELECT a.node_id FROM ruvllm.node_access a JOIN ids ON a.node_id = ids.i
                  ORDER BY a.node_id FOR UPDATE OF a SKIP LOCKED),
        touched AS (UPDATE ruvllm.node_access a SET last_accessed = pg_catalog.now(), hits = a.hits + 1
                      FROM free WHERE a.node_id = free.node_id RETURNING a.node_id)
        INSERT INTO ruvllm.node_access (node_id, last_accessed)
        SELECT i, pg_catalog.now() FROM ids
         WHERE NOT EXISTS (SELECT FROM ruvllm.node_access a WHERE a.node_id = ids.i)
         ORDER BY i
        ON CONFLICT (node_id) DO NOTHING""", ["uuid[]"]), [ids])



def node_vectors(plpy, ids):
    """Embeddings (binary, no text parsing) and ages in seconds of these nodes, in ids order."""
    if not ids:
        return np.zeros((0, embedding.DIM), dtype=np.float32), []
    rows = plpy.execute(_plan(plpy, "vectors", """
        SELECT id, public.vector_send(embedding) AS v,
               extract(epoch FROM pg_catalog.now() - created_at)::float8 AS age
          FROM ruvllm.nodes WHERE id = ANY($1::uuid[])""", ["text[]"]), [[str(i) for i in ids]])
    by_id = {str(r["id"]): r for r in rows}
    vecs = np.stack([vector_from_send(by_id[str(i)]["v"]) for i in ids])
    return vecs, [by_id[str(i)]["age"] for i in ids]

def row_vectors(rows):
    """node_vectors for rows search_vector returned, from what they carry (no statement)."""
    if not rows:
        return np.zeros((0, embedding.DIM), dtype=np.float32), []
    return np.stack([vector_from_send(r["vec_bytes"]) for r in rows]), [r["age"] for r in rows]


def search(plpy, query, k=10, hops=2, mode="hybrid", filter=None):
    check_search_args(k, hops)
    check_mode(mode)
    check_filter(filter)
    query = check_content(query, "query", embedding.MAX_INPUT_CHARS,
                          "A search question is embedded whole, and the model reads only its first "
                          f"{embedding.MAX_TOKENS} tokens: ask a shorter question.")
    vec, _count, _truncated = embedding.embed_one(query)
    return search_vector(plpy, vec, k, hops, query=query, mode=mode, filter=filter)
