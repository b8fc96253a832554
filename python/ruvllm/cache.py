"""The response cache: exact and semantic hits, per tenant, with a TTL.

An exact hit (same normalised question, same constraints) is found by hash before anything is
embedded, so it costs one index lookup. A semantic hit needs the query embedding and is an HNSW
search over cached questions of the same tenant and constraints, served when the cosine
similarity is at least ruvllm.cache_similarity. Entries expire after ruvllm.cache_ttl seconds;
ruvllm.cache_ttl = 0 turns the cache off.
"""
import hashlib
import json
import re

from .sqlglue import planner, vector_literal

_plan = planner()
_SPACE = re.compile(r"\s+")

EXACT_SQL = """
        SELECT id, response::text AS response, 1.0::float8 AS similarity
          FROM ruvllm.response_cache
         WHERE tenant = $1 AND query_hash = $2 AND constraints_key = $3
           AND expires_at > pg_catalog.clock_timestamp()
         ORDER BY created_at DESC LIMIT 1"""
EXACT_TYPES = ["text", "text", "text"]

# The vector as a parameter of type vector, parsed once: cast from text inside the statement
# ($2::public.vector), a generic plan parsed it again for every entry compared (~5 ms at 300).
# At 10K cached answers the generic plan is the HNSW index scan, tenant and constraints filtered
# after it (bench/query: 0.4 ms in the executor, ~0.5-0.6 ms in the backend). pgvector 0.8's
# iterative scan (hnsw.iterative_scan) found no more hits for a tenant holding 5% of the entries
# and is not set: it would also let a miss in a tenant with almost no entries walk the index up
# to hnsw.max_scan_tuples.
SEMANTIC_SQL = """
        SELECT id, response::text AS response,
               1 - (query_embedding OPERATOR(public.<=>) $2) AS similarity
          FROM ruvllm.response_cache
         WHERE tenant = $1 AND constraints_key = $3 AND expires_at > pg_catalog.clock_timestamp()
         ORDER BY query_embedding OPERATOR(public.<=>) $2
         LIMIT 1"""
SEMANTIC_TYPES = ["text", "public.vector", "text"]


def query_hash(query):
    return hashlib.sha256(_SPACE.sub(" ", query.strip().lower()).encode("utf-8")).hexdigest()


def constraints_key(constraints):
    return json.dumps(constraints or {}, sort_keys=True, separators=(",", ":"))


def _hit(row):
    entry = json.loads(row["response"])
    entry["cache_id"] = row["id"]
    entry["similarity"] = float(row["similarity"])
    return entry


def lookup_exact(plpy, tenant, qhash, ckey):
    rows = plpy.execute(_plan(plpy, "exact", EXACT_SQL, EXACT_TYPES), [tenant, qhash, ckey])
    return _hit(rows[0]) if rows else None


def lookup_semantic(plpy, tenant, query_vec, ckey, min_similarity):
    if min_similarity >= 1.0:
        return None
    rows = plpy.execute(_plan(plpy, "semantic", SEMANTIC_SQL, SEMANTIC_TYPES),
                        [tenant, vector_literal(query_vec), ckey])
    if rows and float(rows[0]["similarity"]) >= min_similarity:
        return _hit(rows[0])
    return None


def count_hit(plpy, cache_id):
    plpy.execute(_plan(plpy, "count", """
        UPDATE ruvllm.response_cache SET hits = hits + 1, last_hit_at = pg_catalog.now()
         WHERE id = $1""", ["bigint"]), [cache_id])


def store(plpy, tenant, query, qhash, ckey, query_vec, entry, ttl_s, request_id, mask=None):
    """mask: text -> text for the stored question and answer (PII masking); a later hit serves
    the masked answer."""
    if mask is not None:
        query = mask(query)
        entry = dict(entry, text=mask(entry["text"]))
    plpy.execute(_plan(plpy, "store", """
        INSERT INTO ruvllm.response_cache (tenant, query, query_hash, constraints_key,
                                           query_embedding, response, request_id, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::uuid,
                pg_catalog.now() + pg_catalog.make_interval(secs => $8))""",
                       ["text", "text", "text", "text", "public.vector", "text", "text", "float8"]),
                 [tenant, query, qhash, ckey, vector_literal(query_vec), json.dumps(entry),
                  str(request_id), float(ttl_s)])
