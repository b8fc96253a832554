"""Memory: ingestion into ruvllm.nodes + the AGE graph, and retrieval (HNSW seeds, then hops).

Every statement is a prepared plan with parameters; no value is ever pasted into SQL or Cypher.
What touches the graph's own tables is in graph.py.
"""
import json
import math

import numpy as np

from . import embedding, errors, graph, tenancy, textutil
from .sqlglue import planner, read_only, setting, vector_from_send, vector_literal

NODE_TYPES = ("Query", "Document", "AgentStep", "Fact", "QAPair", "Concept")
MAX_CONTENT_CHARS = 1_000_000
SAME_TOPIC_LINKS = 5
MAX_EXPANDED = 200  # a hub node must not turn one search into a scan of the graph

_METADATA_TYPES = {
    "timestamp": (str,),
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
    result = embedding.embed([text for _, text in chunks])
    truncated = sum(result.truncated)
    if truncated and notice:
        notice(f"{truncated} chunk(s) longer than {embedding.MAX_TOKENS} tokens were truncated for embedding")

    find_duplicate = _plan(plpy, "dup", """
        SELECT id, 1 - (embedding OPERATOR(public.<=>) $1::public.vector) AS similarity
          FROM ruvllm.nodes
         WHERE minhash_bands OPERATOR(pg_catalog.&&) $2 AND tenant = $3
         ORDER BY embedding OPERATOR(public.<=>) $1::public.vector LIMIT 1""",
                           ["text", "bigint[]", "text"])
    merge = _plan(plpy, "merge", """
        UPDATE ruvllm.nodes
           SET metadata = metadata || pg_catalog.jsonb_build_object('version',
                   COALESCE((metadata->>'version')::int, 1) + 1),
               last_accessed = pg_catalog.now()
         WHERE id = $1""", ["uuid"])

    ids, new_rows, batch_seen = [], [], []
    for (doc, text), vec in zip(chunks, result.vectors):
        bands = textutil.minhash_bands(textutil.minhash(text))
        literal = vector_literal(vec)
        node_id = None
        rows = plpy.execute(find_duplicate, [literal, bands, tenant])
        if rows and rows[0]["similarity"] >= dedup_similarity:
            node_id = rows[0]["id"]
            plpy.execute(merge, [node_id])
        else:
            # Near-duplicates inside this same batch are not in the table yet.
            for other_id, other_bands, other_vec in batch_seen:
                if set(bands) & other_bands and float(vec @ other_vec) >= dedup_similarity:
                    node_id = other_id
                    break
        if node_id is None:
            node_id = plpy.execute(_plan(plpy, "uuid", "SELECT pg_catalog.gen_random_uuid() AS id", []))[0]["id"]
            content, node_type, source, metadata = checked[doc]
            meta = dict(metadata)
            meta.setdefault("version", 1)
            new_rows.append((node_id, literal, text, node_type, source, json.dumps(meta), bands))
            batch_seen.append((node_id, set(bands), vec))
        ids.append((doc, node_id))

    if new_rows:
        graph.insert_nodes(plpy, new_rows, tenant)

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

def check_search_args(k, hops):
    if k is None or not 1 <= k <= 1000:
        raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE, f"k must be between 1 and 1000, not {k}")
    if hops is None or not 0 <= hops <= 3:
        raise errors.RuvllmError(errors.NUMERIC_VALUE_OUT_OF_RANGE, f"hops must be between 0 and 3, not {hops}")


def search_vector(plpy, query_vec, k=10, hops=2, tenant=None):
    """Rows: the k nearest nodes (hop 0), then their neighbours up to `hops` edges away."""
    check_search_args(k, hops)
    tenant = tenancy.current(plpy) if tenant is None else tenant
    literal = vector_literal(query_vec)
    ef = int(setting(plpy, "ruvllm.ef_search"))
    # Local to the transaction; pgvector 0.8's iterative scan keeps k rows under the tenant filter.
    plpy.execute(_plan(plpy, "ef", """
        SELECT pg_catalog.set_config('hnsw.ef_search', $1, true),
               pg_catalog.set_config('hnsw.iterative_scan', 'relaxed_order', true)""", ["text"]),
                 [str(max(ef, k))])
    seeds = plpy.execute(_plan(plpy, "seeds", """
        SELECT id, graph_id::text AS gid, content, node_type, source,
               embedding OPERATOR(public.<=>) $1::public.vector AS distance
          FROM ruvllm.nodes
         WHERE tenant = $2
         ORDER BY embedding OPERATOR(public.<=>) $1::public.vector
         LIMIT $3""", ["text", "text", "int"]), [literal, tenant, k])
    results = [dict(id=r["id"], content=r["content"], node_type=r["node_type"], source=r["source"],
                    distance=float(r["distance"]), hop=0, via_rel=None, via_node=None, edge_weight=None)
               for r in sorted(seeds, key=lambda r: r["distance"])]
    by_gid = {r["gid"]: res for r, res in zip(sorted(seeds, key=lambda r: r["distance"]), results)}
    frontier = list(by_gid)
    fetch_plan = _plan(plpy, "fetch", """
        SELECT id, graph_id::text AS gid, content, node_type, source,
               embedding OPERATOR(public.<=>) $1::public.vector AS distance
          FROM ruvllm.nodes
         WHERE graph_id OPERATOR(ag_catalog.=) ANY($2::text[]::ag_catalog.graphid[]) AND tenant = $3""",
                       ["text", "text[]", "text"])
    for hop in range(1, hops + 1):
        if not frontier or len(by_gid) >= MAX_EXPANDED:
            break
        reached = {}
        for e in graph.neighbours(plpy, frontier):
            if e["b"] in by_gid or e["b"] in reached:
                continue
            props = json.loads(e["props"]) if e["props"] else {}
            reached[e["b"]] = (e["a"], e["rel"], props.get("weight"))
        if not reached:
            break
        rows = plpy.execute(fetch_plan, [literal, list(reached), tenant])
        rows = sorted(rows, key=lambda r: r["distance"])[:MAX_EXPANDED - len(by_gid)]
        frontier = []
        for r in rows:
            origin, rel, weight = reached[r["gid"]]
            res = dict(id=r["id"], content=r["content"], node_type=r["node_type"], source=r["source"],
                       distance=float(r["distance"]), hop=hop, via_rel=rel,
                       via_node=by_gid[origin]["id"], edge_weight=weight)
            by_gid[r["gid"]] = res
            results.append(res)
            frontier.append(r["gid"])
    touch_accessed(plpy, [r["id"] for r in results])
    return results


def touch_accessed(plpy, ids):
    """Record when nodes were last served; skipped where the transaction cannot write (a standby)."""
    if not ids:
        return
    if read_only(plpy):
        return
    # Not an UPDATE of ruvllm.nodes: that re-inserts the row into the HNSW index (see the table).
    plpy.execute(_plan(plpy, "touch", """
        INSERT INTO ruvllm.node_access AS a (node_id, last_accessed)
        SELECT DISTINCT i, pg_catalog.now() FROM unnest($1::uuid[]) AS i
        ON CONFLICT (node_id) DO UPDATE SET last_accessed = EXCLUDED.last_accessed, hits = a.hits + 1""",
                       ["uuid[]"]), [ids])



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

def search(plpy, query, k=10, hops=2):
    check_search_args(k, hops)
    query = check_content(query, "query", embedding.MAX_INPUT_CHARS,
                          "A search question is embedded whole, and the model reads only its first "
                          f"{embedding.MAX_TOKENS} tokens: ask a shorter question.")
    vec, _count, _truncated = embedding.embed_one(query)
    return search_vector(plpy, vec, k, hops)
