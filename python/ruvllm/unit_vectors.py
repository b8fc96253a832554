"""The vectors of each node's evidence units, embedded at ingest and kept in ruvllm.node_units, so
that a request scores its candidate sentences (evidence.py) without embedding one.

Embedding the units was most of the request path around generation: 30 of 60 ms at 100K memories
(bench/query, generation stubbed), for at most evidence.MAX_EMBEDDED short texts a request. A
unit's text (evidence.Unit.read) depends on its node's text alone, so its vector can be made once,
when the node is stored, by the same embedder and from the same text as the request would embed:
the request scores exactly what it scored before. Ingest pays for it instead: a node's units
together have about 1.4x its tokens (the PostgreSQL manual's ~210-token chunks, ~8 units each),
so storing them roughly doubles the embedding work of an ingest; `ruvllm.store_unit_vectors = off`
skips it, and requests then embed the units they score, as before.

Why not the cheaper "late chunking" (each unit's token states pooled from its node's one forward
pass, which costs ingest nothing more than the node's own vector): on bench/answers' questions
(bench/answers/replay.py --unit-vectors late) the extractive answer held the gold answer 63.9% of
the time against 66.5% with units embedded alone.

A node's row holds its units' vectors in evidence.candidate_units order as float16 (768 bytes a
unit; the replay's answers are the same as with float32), with the evidence.UNIT_LAYOUT they were
split under: rows of another layout are not used, and requests embed those nodes' units.
"""
import numpy as np

from . import embedding, evidence
from .sqlglue import planner

DIMENSIONS = 384
_STORED = np.dtype("<f2")

_plan = planner()


def pack(vectors):
    """Unit vectors (n, 384), float32 and unit length, as stored: little-endian float16."""
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).astype(_STORED)).tobytes()


def unpack(blob):
    """The (n, 384) float32 vectors of a stored row."""
    flat = np.frombuffer(bytes(blob), dtype=_STORED)
    if flat.size % DIMENSIONS:
        raise ValueError(f"a unit vector row of {flat.size} values is not a multiple of {DIMENSIONS}")
    return flat.reshape(-1, DIMENSIONS).astype(np.float32)


def _words(text):
    return " ".join(text.split())


def embed_nodes(texts, embed=None, node_vectors=None):
    """The packed unit vectors of each node text (None for a text with no unit). Units read alike
    (repeated headings, near-duplicate notes) are embedded once, and a unit that reads as its
    whole node (a one-sentence note) takes the node's vector (node_vectors, parallel to texts):
    the tokenizer splits on whitespace, so the same words embed alike."""
    reads = [evidence.unit_reads(t) for t in texts]
    known = {}
    if node_vectors is not None:
        known = {_words(t): np.asarray(v, dtype=np.float32) for t, v in zip(texts, node_vectors)}
    unique = [r for r in dict.fromkeys(_words(r) for rs in reads for r in rs) if r not in known]
    if unique:
        vectors = (embed or (lambda xs: embedding.embed(xs).vectors))(unique)
        known.update(zip(unique, vectors))
    return [pack(np.asarray([known[_words(r)] for r in rs])) if rs else None for rs in reads]


def store(plpy, node_ids, texts, embed=None, node_vectors=None):
    """Embeds and stores the unit vectors of new nodes (ids and their texts; node_vectors: their
    own vectors, when known), in the caller's statement; returns how many units were stored."""
    blobs = embed_nodes(texts, embed, node_vectors)
    rows = [(i, b) for i, b in zip(node_ids, blobs) if b is not None]
    if not rows:
        return 0
    plpy.execute(_plan(plpy, "store", """
        INSERT INTO ruvllm.node_units (node_id, layout, vectors)
        SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::bytea[])""",
                       ["uuid[]", "smallint[]", "bytea[]"]),
                 [[i for i, _ in rows], [evidence.UNIT_LAYOUT] * len(rows), [b for _, b in rows]])
    return sum(len(b) for _, b in rows) // (DIMENSIONS * _STORED.itemsize)


def fetch(plpy, node_ids):
    """{node id: (n, 384) float32} for the nodes whose stored vectors have today's layout."""
    if not node_ids:
        return {}
    rows = plpy.execute(_plan(plpy, "fetch", """
        SELECT node_id::text AS node_id, vectors FROM ruvllm.node_units
         WHERE node_id = ANY($1::uuid[]) AND layout = $2""", ["uuid[]", "smallint"]),
                        [list(dict.fromkeys(node_ids)), evidence.UNIT_LAYOUT])
    return {r["node_id"]: unpack(r["vectors"]) for r in rows}


def for_units(units, node_ids, stored):
    """Each unit's stored vector (a list parallel to units; None where there is none). node_ids:
    the id of the node at each candidate position; stored: fetch's answer."""
    out = []
    for u in units:
        vecs = stored.get(node_ids[u.node])
        out.append(vecs[u.ordinal] if vecs is not None and u.ordinal < len(vecs) else None)
    return out


MAX_BACKFILL_BATCH = 256


def backfill(plpy, limit=None, notice=None):
    """Stores the unit vectors of the nodes the session may see that have none of today's layout
    (nodes from before they were stored, ingested with ruvllm.store_unit_vectors off, or split
    under another layout), at most limit of them (None: all), a batch of MAX_BACKFILL_BATCH nodes
    a statement; returns how many nodes it stored."""
    if limit is not None and limit < 0:
        from . import errors
        raise errors.invalid(f"limit must be at least 0, not {limit}")
    pending = _plan(plpy, "pending", """
        SELECT n.id, n.content FROM ruvllm.nodes n
         WHERE NOT EXISTS (SELECT FROM ruvllm.node_units u WHERE u.node_id = n.id AND u.layout = $1)
         ORDER BY n.id LIMIT $2""", ["smallint", "int"])
    replace = _plan(plpy, "replace", """
        INSERT INTO ruvllm.node_units (node_id, layout, vectors)
        SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::bytea[])
            ON CONFLICT (node_id) DO UPDATE SET layout = EXCLUDED.layout, vectors = EXCLUDED.vectors""",
                    ["uuid[]", "smallint[]", "bytea[]"])
    done = 0
    while limit is None or done < limit:
        batch = MAX_BACKFILL_BATCH if limit is None else min(MAX_BACKFILL_BATCH, limit - done)
        rows = plpy.execute(pending, [evidence.UNIT_LAYOUT, batch])
        if not rows:
            break
        blobs = embed_nodes([r["content"] for r in rows])
        # A node with no unit (no sentence) gets an empty row of today's layout: done, not pending.
        plpy.execute(replace, [[r["id"] for r in rows], [evidence.UNIT_LAYOUT] * len(rows),
                               [b if b is not None else b"" for b in blobs]])
        done += len(rows)
        if notice is not None:
            notice(f"ruvllm_store_unit_vectors: {done} nodes")
    return done
