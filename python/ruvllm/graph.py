"""The graph: every statement ruvllm runs on Apache AGE's label tables in graph ruvllm_graph.

Each memory node (a row of ruvllm.nodes) is one vertex of label Node, joined by graph_id; edges
are rows of one label table per relation (RELS). The graph is written and walked with SQL on
those tables (start_id/end_id indexed): the same data users query with Cypher, at a fraction of
the cost of Cypher's variable-length paths. Label table names come from RELS only, never from
input, and every value is a parameter of a prepared plan.

The graph has no tenant column: its vertices belong to the tenant of their ruvllm.nodes row, and
whoever walks it filters the nodes it reaches by tenant (memory.search_vector).
"""
from . import errors
from .sqlglue import planner

RELS = ("Cites", "Follows", "SameTopic", "AgentStep", "Derived")

_plan = planner()


def check_rel(rel):
    if rel not in RELS:
        raise errors.invalid(f"unknown rel {rel!r}", hint="rel is one of " + ", ".join(RELS))
    return rel


# --- writing ------------------------------------------------------------------------------------

def insert_nodes(plpy, rows, tenant):
    """New memory nodes and their vertices, in one statement.

    rows: [(id, embedding as vector text, content, node_type, source, metadata as JSON text,
    MinHash bands)].
    """
    insert = _plan(plpy, "insert_nodes", """
        WITH input AS MATERIALIZED (
            SELECT r.*, ag_catalog._graphid(ag_catalog._label_id('ruvllm_graph', 'Node'),
                        pg_catalog.nextval('ruvllm_graph."Node_id_seq"')) AS gid
              FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                     $6::jsonb[], $7::text[])
                   AS r(id, embedding, content, node_type, source, metadata, bands)
        ), vertices AS (
            INSERT INTO ruvllm_graph."Node" (id, properties)
            SELECT gid, pg_catalog.jsonb_build_object('node_id', id)::text::ag_catalog.agtype
              FROM input
        )
        INSERT INTO ruvllm.nodes (id, embedding, content, node_type, source, tenant, metadata,
                                  graph_id, minhash_bands)
        SELECT id, embedding::public.vector, content, node_type, source, $8, metadata, gid,
               bands::bigint[]
          FROM input""",
                   ["uuid[]", "text[]", "text[]", "text[]", "text[]", "jsonb[]", "text[]", "text"])
    cols = list(zip(*rows))
    plpy.execute(insert, [list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]),
                          list(cols[4]), list(cols[5]),
                          ["{" + ",".join(map(str, b)) + "}" for b in cols[6]], tenant])


_EDGE_INSERT = {
    rel: f"""
        INSERT INTO ruvllm_graph."{rel}" (start_id, end_id, properties)
        SELECT s.graph_id, d.graph_id,
               pg_catalog.jsonb_build_object('weight', e.weight, 'confidence', e.confidence,
                   'created_by', e.created_by, 'created_at', pg_catalog.now())::text::ag_catalog.agtype
          FROM unnest($1::uuid[], $2::uuid[], $3::real[], $4::real[], $5::text[])
               AS e(src, dst, weight, confidence, created_by)
          JOIN ruvllm.nodes s ON s.id = e.src
          JOIN ruvllm.nodes d ON d.id = e.dst"""
    for rel in RELS  # table names come from this fixed list only
}


def insert_edges(plpy, rel, edges, created_by):
    """edges: [(src uuid, dst uuid, weight, confidence)]."""
    if not edges:
        return 0
    plan = _plan(plpy, "edge:" + rel, _EDGE_INSERT[check_rel(rel)],
                 ["uuid[]", "uuid[]", "real[]", "real[]", "text[]"])
    src, dst, w, c = zip(*edges)
    plpy.execute(plan, [list(src), list(dst), list(w), list(c), [created_by] * len(edges)])
    return len(edges)


def scale_edges_between(plpy, gids, factor, lo, hi):
    """Multiply the weight of every edge between two of these vertices by factor, kept in
    [lo, hi] (an edge without a weight counts as 1). Returns how many edges moved."""
    moved = 0
    for rel in RELS:  # table names from the fixed list only
        res = plpy.execute(_plan(plpy, "move:" + rel, f"""
            UPDATE ruvllm_graph."{rel}"
               SET properties = (ag_catalog.agtype_out(properties)::text::jsonb
                   || pg_catalog.jsonb_build_object('weight', LEAST($3::float8, GREATEST($2::float8,
                        COALESCE((ag_catalog.agtype_out(properties)::text::jsonb->>'weight')::float8, 1.0) * $4))))
                   ::text::ag_catalog.agtype
             WHERE start_id OPERATOR(ag_catalog.=) ANY($1::text[]::ag_catalog.graphid[])
               AND end_id OPERATOR(ag_catalog.=) ANY($1::text[]::ag_catalog.graphid[])""",
                                 ["text[]", "float8", "float8", "float8"]),
                           [gids, lo, hi, factor])
        moved += res.nrows()
    return moved


def merge_vertex(plpy, keep_gid, dup_gid):
    """The duplicate vertex's edges re-pointed at the one it merges into (no self-loops), then
    the duplicate vertex deleted. Its ruvllm.nodes row is the caller's."""
    for rel in RELS:
        for end, other in (("start_id", "end_id"), ("end_id", "start_id")):
            plpy.execute(_plan(plpy, f"repoint:{rel}:{end}", f"""
                UPDATE ruvllm_graph."{rel}" SET {end} = $1::text::ag_catalog.graphid
                 WHERE {end} OPERATOR(ag_catalog.=) $2::text::ag_catalog.graphid
                   AND {other} OPERATOR(ag_catalog.<>) $1::text::ag_catalog.graphid""",
                               ["text", "text"]), [keep_gid, dup_gid])
            plpy.execute(_plan(plpy, f"dropself:{rel}:{end}", f"""
                DELETE FROM ruvllm_graph."{rel}"
                 WHERE {end} OPERATOR(ag_catalog.=) $1::text::ag_catalog.graphid""", ["text"]),
                         [dup_gid])
    plpy.execute(_plan(plpy, "drop_vertex", """
        DELETE FROM ruvllm_graph."Node" WHERE id OPERATOR(ag_catalog.=) $1::text::ag_catalog.graphid""",
                       ["text"]), [dup_gid])


def prune_edges(plpy, floor):
    """Delete the edges whose weight fell under floor; returns how many."""
    pruned = 0
    for rel in RELS:
        res = plpy.execute(_plan(plpy, f"prune:{rel}", f"""
            DELETE FROM ruvllm_graph."{rel}"
             WHERE (ag_catalog.agtype_out(properties)::text::jsonb->>'weight')::float8 < $1""", ["float8"]),
                           [floor])
        pruned += res.nrows()
    return pruned


# --- walking ------------------------------------------------------------------------------------

# Every edge at a vertex of $2 (text[] of graph ids), in either direction, as rows (a, b, rel,
# props): b is the vertex at its other end, props the edge's properties as agtype text (JSON).
# memory.search_vector walks the graph with it, joined to the nodes it reaches.
EDGES_AT = """
        SELECT e.start_id AS a, e.end_id AS b, c.relname::text AS rel,
               ag_catalog.agtype_out(e.properties)::text AS props
          FROM ruvllm_graph._ag_label_edge e JOIN pg_catalog.pg_class c ON c.oid = e.tableoid
         WHERE e.start_id OPERATOR(ag_catalog.=) ANY($2::text[]::ag_catalog.graphid[])
        UNION ALL
        SELECT e.end_id, e.start_id, c.relname::text, ag_catalog.agtype_out(e.properties)::text
          FROM ruvllm_graph._ag_label_edge e JOIN pg_catalog.pg_class c ON c.oid = e.tableoid
         WHERE e.end_id OPERATOR(ag_catalog.=) ANY($2::text[]::ag_catalog.graphid[])"""

