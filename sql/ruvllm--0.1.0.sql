-- ruvllm 0.1.0 install script.
\echo Use "CREATE EXTENSION ruvllm CASCADE" to load this file. \quit

-- Internal objects live in the fixed schema ruvllm, created here so DROP EXTENSION removes it;
-- the functions users call are created in public, named ruvllm_*, so they work unqualified right
-- after CREATE EXTENSION.
CREATE SCHEMA ruvllm;
COMMENT ON SCHEMA ruvllm IS 'Internal objects of the ruvllm extension: memory, policies, witness logs.';

------------------------------------------------------------------------------------------------
-- Python package bootstrap
------------------------------------------------------------------------------------------------

CREATE FUNCTION ruvllm._python_dir() RETURNS text
    AS 'MODULE_PATHNAME', 'ruvllm_python_dir' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION ruvllm._python_dir() IS
    'Directory holding one subdirectory per installed version of the ruvllm Python package (internal).';

CREATE FUNCTION ruvllm._library_version() RETURNS text
    AS 'MODULE_PATHNAME', 'ruvllm_library_version' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION ruvllm._library_version() IS
    'Version of the loaded ruvllm shared library (internal; compared with the extension version).';

-- Puts this extension version's Python package first on sys.path, once per session, and checks
-- that the package, the library and the SQL objects are the same version. Every PL/Python
-- function of ruvllm calls it (through GD, so the check costs one dict lookup after the first).
CREATE FUNCTION ruvllm._python_setup() RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
import sys
if GD.get("ruvllm_version"):
    return GD["ruvllm_version"]
ext = plpy.execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'ruvllm'")[0]["extversion"]
lib = plpy.execute("SELECT ruvllm._library_version() AS v")[0]["v"]
path = plpy.execute("SELECT ruvllm._python_dir() AS d")[0]["d"] + "/" + ext
if lib != ext:
    plpy.error("ruvllm library version %s does not match the extension version %s" % (lib, ext),
               hint="Run make install for ruvllm %s and reconnect, or ALTER EXTENSION ruvllm UPDATE." % lib,
               sqlstate="55000")
if path not in sys.path:
    sys.path.insert(0, path)
loaded = sys.modules.get("ruvllm")
if loaded is not None and not (getattr(loaded, "__file__", "") or "").startswith(path + "/"):
    # Imported from elsewhere earlier in this session (a user's site-packages, say): replace it.
    for name in [n for n in sys.modules if n == "ruvllm" or n.startswith("ruvllm.")]:
        del sys.modules[name]
try:
    import ruvllm
except ImportError as e:
    plpy.error("the ruvllm Python package %s is not installed: %s" % (ext, e),
               detail="looked in %s" % path,
               hint="Run make install in the ruvllm source tree for this PostgreSQL.",
               sqlstate="58P01")
if ruvllm.__version__ != ext:
    plpy.error("ruvllm Python package version %s does not match the extension version %s"
               % (ruvllm.__version__, ext), detail="package found at %s" % ruvllm.__file__,
               hint="Reinstall ruvllm (make install) and reconnect.", sqlstate="55000")
GD["ruvllm_version"] = ext
return ext
$$;
COMMENT ON FUNCTION ruvllm._python_setup() IS
    'Loads the ruvllm Python package of this extension version into the session and checks versions (internal).';

------------------------------------------------------------------------------------------------
-- Diagnostics
------------------------------------------------------------------------------------------------

CREATE FUNCTION public.ruvllm_info() RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json, sys
import numpy, ruvllm
try:
    import llama_cpp
    llama = llama_cpp.__version__
except ImportError:
    llama = None
return json.dumps({
    "extension": GD["ruvllm_version"],
    "library": plpy.execute("SELECT ruvllm._library_version() AS v")[0]["v"],
    "python_package": ruvllm.__version__,
    "python_package_path": ruvllm.__file__,
    "python": sys.version.split()[0],
    "numpy": numpy.__version__,
    "llama_cpp": llama,
})
$$;
COMMENT ON FUNCTION public.ruvllm_info() IS
    'Versions of the ruvllm extension, library and Python package, and of the Python libraries it runs on.';

------------------------------------------------------------------------------------------------
-- Generation
------------------------------------------------------------------------------------------------

CREATE FUNCTION public.ruvllm_generate(prompt text, max_tokens integer DEFAULT 64,
                                       model text DEFAULT 'smollm2-135m-instruct')
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import generation, sqlglue
result = sqlglue.call(plpy, generation.generate_text, prompt, model_name=model, max_tokens=max_tokens)
return result.text
$$;
COMMENT ON FUNCTION public.ruvllm_generate(text, integer, text) IS
    'Generates text from a prompt with a bundled local model (greedy decoding), without memory or routing.';

------------------------------------------------------------------------------------------------
-- Graph
------------------------------------------------------------------------------------------------

-- The memory graph lives in Apache AGE so users can query it with Cypher. Its schema and label
-- tables become members of this extension; AGE's own catalog rows do not, so an event trigger
-- drops the graph the AGE way before DROP EXTENSION ruvllm (see extension/ruvllm.c).
SELECT ag_catalog.create_graph('ruvllm_graph');

CREATE FUNCTION ruvllm._drop_graph() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    member record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph') THEN
        RETURN;
    END IF;
    -- AGE's drop_graph may only drop what no extension claims: release the graph's objects first.
    FOR member IN
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END AS kind,
               format('%I.%I', n.nspname, c.relname) AS name
          FROM pg_depend d
          JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ruvllm')
           AND n.nspname = 'ruvllm_graph'
    LOOP
        EXECUTE format('ALTER EXTENSION ruvllm DROP %s %s', member.kind, member.name);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = 'pg_namespace'::regclass AND d.deptype = 'e'
                  AND d.objid = 'ruvllm_graph'::regnamespace) THEN
        ALTER EXTENSION ruvllm DROP SCHEMA ruvllm_graph;
    END IF;
    PERFORM ag_catalog.drop_graph('ruvllm_graph', true);
END
$$;
COMMENT ON FUNCTION ruvllm._drop_graph() IS
    'Drops the ruvllm_graph AGE graph with its catalog rows; run by the DROP EXTENSION event trigger (internal).';

CREATE FUNCTION ruvllm._on_drop_extension() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'ruvllm_on_drop_extension' LANGUAGE C;
COMMENT ON FUNCTION ruvllm._on_drop_extension() IS
    'Event trigger function: drops the AGE graph before DROP EXTENSION ruvllm (internal).';

CREATE EVENT TRIGGER ruvllm_drop_graph ON ddl_command_start WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION ruvllm._on_drop_extension();
COMMENT ON EVENT TRIGGER ruvllm_drop_graph IS
    'Drops the ruvllm_graph AGE graph, catalog rows included, when DROP EXTENSION names ruvllm.';

------------------------------------------------------------------------------------------------
-- Memory
------------------------------------------------------------------------------------------------

-- Labels made here, not on first use, so they are members of the extension and their
-- endpoint indexes exist from the start (AGE does not index start_id/end_id; the SQL hot path
-- that walks the graph needs them).
SELECT ag_catalog.create_vlabel('ruvllm_graph', 'Node');
SELECT ag_catalog.create_elabel('ruvllm_graph', rel)
  FROM unnest(ARRAY['Cites', 'Follows', 'SameTopic', 'AgentStep', 'Derived']) AS rel;
CREATE INDEX ON ruvllm_graph."Cites" (start_id);
CREATE INDEX ON ruvllm_graph."Cites" (end_id);
CREATE INDEX ON ruvllm_graph."Follows" (start_id);
CREATE INDEX ON ruvllm_graph."Follows" (end_id);
CREATE INDEX ON ruvllm_graph."SameTopic" (start_id);
CREATE INDEX ON ruvllm_graph."SameTopic" (end_id);
CREATE INDEX ON ruvllm_graph."AgentStep" (start_id);
CREATE INDEX ON ruvllm_graph."AgentStep" (end_id);
CREATE INDEX ON ruvllm_graph."Derived" (start_id);
CREATE INDEX ON ruvllm_graph."Derived" (end_id);

CREATE TABLE ruvllm.nodes (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    embedding     vector(384) NOT NULL,
    content       text NOT NULL CHECK (content <> ''),
    node_type     text NOT NULL DEFAULT 'Document'
                  CHECK (node_type IN ('Query', 'Document', 'AgentStep', 'Fact', 'QAPair', 'Concept')),
    source        text,
    tenant        text NOT NULL DEFAULT '',
    metadata      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    graph_id      ag_catalog.graphid NOT NULL UNIQUE,
    minhash_bands bigint[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_accessed timestamptz
);
COMMENT ON TABLE ruvllm.nodes IS
    'Memory: one row per piece of knowledge, with its all-MiniLM-L6-v2 embedding; edges live in the AGE graph ruvllm_graph.';
COMMENT ON COLUMN ruvllm.nodes.id IS 'Node id; the AGE vertex carries it as property node_id.';
COMMENT ON COLUMN ruvllm.nodes.embedding IS '384-d unit-norm sentence embedding of content.';
COMMENT ON COLUMN ruvllm.nodes.content IS 'The text (a chunk of at most ~180 words for long documents).';
COMMENT ON COLUMN ruvllm.nodes.node_type IS 'Query, Document, AgentStep, Fact, QAPair or Concept.';
COMMENT ON COLUMN ruvllm.nodes.source IS 'Where the content came from (a URL, a file name, a request id).';
COMMENT ON COLUMN ruvllm.nodes.tenant IS 'Owning tenant (ruvllm.tenant at ingestion; empty for none).';
COMMENT ON COLUMN ruvllm.nodes.metadata IS 'timestamp, tags, domain, version (bumped when a near-duplicate merges in), confidence; other keys kept as given.';
COMMENT ON COLUMN ruvllm.nodes.graph_id IS 'Id of the node''s vertex in ruvllm_graph."Node".';
COMMENT ON COLUMN ruvllm.nodes.minhash_bands IS 'LSH bands of the content''s MinHash signature: rows sharing a band are near-duplicate candidates.';
COMMENT ON COLUMN ruvllm.nodes.created_at IS 'When the node was first stored.';
COMMENT ON COLUMN ruvllm.nodes.last_accessed IS 'When a search last returned the node.';

CREATE INDEX nodes_embedding_hnsw ON ruvllm.nodes
    USING hnsw (embedding vector_cosine_ops) WITH (m = 32, ef_construction = 200);
CREATE INDEX nodes_minhash_bands ON ruvllm.nodes USING gin (minhash_bands);
CREATE INDEX nodes_tenant ON ruvllm.nodes (tenant);

CREATE FUNCTION public.ruvllm_embed(content text) RETURNS vector(384)
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import embedding, memory, sqlglue
vec, count, truncated = sqlglue.call(plpy, embedding.embed_one, content)
if truncated:
    plpy.notice("input is %d tokens; only the first %d were embedded" % (count, embedding.MAX_TOKENS))
return memory.vector_literal(vec)
$$;
COMMENT ON FUNCTION public.ruvllm_embed(text) IS
    'all-MiniLM-L6-v2 sentence embedding (384-d, unit norm) of a text; inputs past 256 tokens are truncated with a NOTICE.';

CREATE FUNCTION public.ruvllm_embed(contents text[]) RETURNS vector(384)[]
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import embedding, memory, sqlglue
result = sqlglue.call(plpy, embedding.embed, contents)
if any(result.truncated):
    plpy.notice("%d of %d inputs were past %d tokens and truncated"
                % (sum(result.truncated), len(contents), embedding.MAX_TOKENS))
return [memory.vector_literal(v) for v in result.vectors]
$$;
COMMENT ON FUNCTION public.ruvllm_embed(text[]) IS
    'Batch form of ruvllm_embed: one embedding per input, computed in padded batches.';

CREATE FUNCTION public.ruvllm_ingest(content text, node_type text DEFAULT 'Document',
                                     source text DEFAULT NULL, metadata jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import memory, sqlglue
return sqlglue.call(plpy, memory.ingest_many, plpy, [(content, node_type, source, metadata)],
                    notice=plpy.notice)[0]
$$;
COMMENT ON FUNCTION public.ruvllm_ingest(text, text, text, jsonb) IS
    'Stores content in memory and returns its node id: long texts become chunks joined by Follows edges, similar nodes get SameTopic edges, and a near-duplicate merges into the existing node (metadata.version + 1).';

CREATE FUNCTION public.ruvllm_ingest_many(contents text[], node_type text DEFAULT 'Document',
                                     sources text[] DEFAULT NULL, metadata jsonb[] DEFAULT NULL)
RETURNS uuid[]
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import errors, memory, sqlglue
def run():
    if contents is None:
        raise errors.RuvllmError(errors.NULL_VALUE_NOT_ALLOWED, "contents must not be NULL")
    n = len(contents)
    for name, arr in (("sources", sources), ("metadata", metadata)):
        if arr is not None and len(arr) != n:
            raise errors.invalid("%s has %d elements but contents has %d" % (name, len(arr), n))
    docs = [(contents[i], node_type, sources[i] if sources else None,
             metadata[i] if metadata else None) for i in range(n)]
    return memory.ingest_many(plpy, docs, notice=plpy.notice)
return sqlglue.call(plpy, run)
$$;
COMMENT ON FUNCTION public.ruvllm_ingest_many(text[], text, text[], jsonb[]) IS
    'Bulk ingestion: many documents in one call (embedded in batches, written with set-based statements); returns one node id per document. From a query: SELECT ruvllm_ingest_many(array_agg(body)) FROM docs.';

CREATE FUNCTION public.ruvllm_ingest_many(docs jsonb) RETURNS uuid[]
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import errors, memory, sqlglue
def run():
    items = json.loads(docs) if docs is not None else None
    if not isinstance(items, list):
        raise errors.invalid("docs must be a JSON array of objects",
                             hint='[{"content": "...", "node_type": "Fact", "source": "...", "metadata": {}}]')
    out = []
    for i, d in enumerate(items):
        if not isinstance(d, dict) or not isinstance(d.get("content"), str):
            raise errors.invalid("docs[%d] must be an object with a string \"content\"" % i)
        unknown = set(d) - {"content", "node_type", "source", "metadata"}
        if unknown:
            raise errors.invalid("docs[%d] has unknown keys: %s" % (i, ", ".join(sorted(unknown))))
        out.append((d["content"], d.get("node_type", "Document"), d.get("source"), d.get("metadata", {})))
    return memory.ingest_many(plpy, out, notice=plpy.notice)
return sqlglue.call(plpy, run)
$$;
COMMENT ON FUNCTION public.ruvllm_ingest_many(jsonb) IS
    'Bulk ingestion from a JSON array of {content, node_type, source, metadata} objects; returns one node id per object.';

CREATE FUNCTION public.ruvllm_link(src uuid, dst uuid, rel text, weight real DEFAULT 1.0)
RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import memory, sqlglue
sqlglue.call(plpy, memory.link, plpy, src, dst, rel, weight)
$$;
COMMENT ON FUNCTION public.ruvllm_link(uuid, uuid, text, real) IS
    'Adds an edge src -> dst to the memory graph; rel is Cites, Follows, SameTopic, AgentStep or Derived.';

CREATE FUNCTION public.ruvllm_search(query text, k integer DEFAULT 10, hops integer DEFAULT 2)
RETURNS TABLE (id uuid, content text, node_type text, source text, distance real, hop integer,
               via_rel text, via_node uuid, edge_weight real)
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import memory, sqlglue
rows = sqlglue.call(plpy, memory.search, plpy, query, k, hops)
return [(r["id"], r["content"], r["node_type"], r["source"], r["distance"], r["hop"],
         r["via_rel"], r["via_node"], r["edge_weight"]) for r in rows]
$$;
COMMENT ON FUNCTION public.ruvllm_search(text, integer, integer) IS
    'The k nearest memory nodes to the query (hop 0, HNSW over cosine distance) and their graph neighbourhood up to hops edges away, with the edge that led to each; only the session''s tenant (ruvllm.tenant) is searched.';
