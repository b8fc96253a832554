-- ruvllm: the current full install script. Edit this file; make copies it to sql/ruvllm--VERSION.sql.
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
import json, os, sys
import numpy, ruvllm
from ruvllm import generation
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
    "loaded_models": [os.path.basename(p) for p in generation.default_backend().loaded()],
})
$$;
COMMENT ON FUNCTION public.ruvllm_info() IS
    'Versions of the ruvllm extension, library and Python package, and of the Python libraries it runs on; the model files this backend has loaded.';

------------------------------------------------------------------------------------------------
-- Tenants and roles
------------------------------------------------------------------------------------------------

-- Roles are cluster-wide: a second database's CREATE EXTENSION finds them made, and DROP
-- EXTENSION leaves them (as it leaves any role).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ruvllm_user') THEN
        CREATE ROLE ruvllm_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ruvllm_analyst') THEN
        CREATE ROLE ruvllm_analyst NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ruvllm_admin') THEN
        CREATE ROLE ruvllm_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('ruvllm_admin', 'ruvllm_user', 'MEMBER') THEN
        GRANT ruvllm_user TO ruvllm_admin;
    END IF;
    IF NOT pg_catalog.pg_has_role('ruvllm_admin', 'ruvllm_analyst', 'MEMBER') THEN
        GRANT ruvllm_analyst TO ruvllm_admin;
    END IF;
END
$$;
COMMENT ON ROLE ruvllm_user IS 'ruvllm: ask (ruvllm_query, ruvllm_route), give feedback, search and add to the memory of one''s own tenant.';
COMMENT ON ROLE ruvllm_analyst IS 'ruvllm: read the BI views over the witness log (ruvllm.requests, daily_quality, ...), nothing else.';
COMMENT ON ROLE ruvllm_admin IS 'ruvllm: manage models, retention, learning loops, tenants and ruvllm.* settings; also a ruvllm_user and ruvllm_analyst.';

CREATE TABLE ruvllm.tenants (
    tenant       text PRIMARY KEY CHECK (tenant ~ '^[A-Za-z0-9_.-]{1,63}$'),
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE ruvllm.tenants IS 'Tenants a session may name in ruvllm.tenant (the empty tenant, the default, needs no row).';
COMMENT ON COLUMN ruvllm.tenants.tenant IS 'Tenant name: letters, digits, _ - . (at most 63).';
COMMENT ON COLUMN ruvllm.tenants.description IS 'Free text for the DBA.';
COMMENT ON COLUMN ruvllm.tenants.created_at IS 'When the tenant was registered.';
COMMENT ON COLUMN ruvllm.tenants.created_by IS 'Who registered it.';

CREATE TABLE ruvllm.tenant_roles (
    role_name  name PRIMARY KEY,
    tenant     text NOT NULL REFERENCES ruvllm.tenants (tenant) ON DELETE CASCADE
);
COMMENT ON TABLE ruvllm.tenant_roles IS 'Roles bound to a tenant: such a role always acts as its tenant, whatever ruvllm.tenant says; unbound roles act as the tenant ruvllm.tenant names.';
COMMENT ON COLUMN ruvllm.tenant_roles.role_name IS 'The role (current_user).';
COMMENT ON COLUMN ruvllm.tenant_roles.tenant IS 'Its tenant.';

-- The registry is not readable by tenants (it lists the others), so the lookup runs as the
-- extension's owner; it is given the role to look up, because inside it current_user is the owner.
-- It answers only for a role the session may act as, and tells a role bound to a tenant nothing
-- of other tenant names (an unbound role may act as any registered tenant, so names are no secret
-- to it).
CREATE FUNCTION ruvllm._tenant_lookup(role_name name, setting text, OUT bound text, OUT known boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(session_user, role_name, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to look up the tenant of role "%"', role_name
            USING ERRCODE = '42501', HINT = 'A session may look up only the roles it can act as.';
    END IF;
    SELECT r.tenant INTO bound FROM ruvllm.tenant_roles r WHERE r.role_name = _tenant_lookup.role_name;
    known := setting = '' OR setting IS NOT DISTINCT FROM bound
             OR (bound IS NULL AND EXISTS (SELECT FROM ruvllm.tenants t WHERE t.tenant = setting));
END
$$;
COMMENT ON FUNCTION ruvllm._tenant_lookup(name, text) IS
    'The tenant a role the session may act as is bound to (NULL: none), and whether a tenant name is registered, told only to unbound roles (internal; SECURITY DEFINER so tenants need not read the registry).';

CREATE FUNCTION public.ruvllm_current_tenant() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    setting text := COALESCE(current_setting('ruvllm.tenant', true), '');
    found record;
BEGIN
    SELECT * INTO found FROM ruvllm._tenant_lookup(current_user, setting);
    IF found.bound IS NOT NULL THEN
        IF setting NOT IN ('', found.bound) THEN
            RAISE EXCEPTION 'role "%" belongs to tenant "%" and cannot act as tenant "%"',
                current_user, found.bound, setting
                USING ERRCODE = '42501', HINT = 'Reset ruvllm.tenant, or connect as a role of that tenant.';
        END IF;
        RETURN found.bound;
    END IF;
    IF NOT found.known THEN
        RAISE EXCEPTION 'unknown tenant "%" in ruvllm.tenant', setting
            USING ERRCODE = '22023', HINT = 'A ruvllm_admin registers tenants with ruvllm_create_tenant().';
    END IF;
    RETURN setting;
END
$$;
COMMENT ON FUNCTION public.ruvllm_current_tenant() IS
    'The tenant this session acts as: the tenant its role is bound to, else the one ruvllm.tenant names (it must be registered; empty: no tenant). Row-level security on memory, witness, sessions and cache compares with it.';

-- For the BI views: a role bound to a tenant sees that tenant's requests, an unbound one all.
CREATE FUNCTION ruvllm._bound_tenant() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT bound FROM ruvllm._tenant_lookup(current_user, '') $$;
COMMENT ON FUNCTION ruvllm._bound_tenant() IS
    'The tenant current_user is bound to, NULL if none (internal; the BI views filter on it).';

CREATE FUNCTION public.ruvllm_create_tenant(tenant text, roles regrole[] DEFAULT '{}',
                                            description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r regrole;
    other text;
BEGIN
    IF tenant IS NULL OR tenant !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid tenant name "%"', tenant USING ERRCODE = '22023',
            HINT = 'A tenant name has 1 to 63 letters, digits, "_", "-" or ".", and starts with a letter or digit.';
    END IF;
    FOREACH r IN ARRAY COALESCE(roles, '{}') LOOP
        SELECT t.tenant INTO other FROM ruvllm.tenant_roles t WHERE t.role_name = r::text::name;
        IF other IS NOT NULL AND other <> ruvllm_create_tenant.tenant THEN
            RAISE EXCEPTION 'role % already belongs to tenant "%"', r, other USING ERRCODE = '23505',
                HINT = 'DELETE its row from ruvllm.tenant_roles first.';
        END IF;
        IF pg_has_role(r, 'ruvllm_admin', 'MEMBER') THEN
            RAISE EXCEPTION 'role % is a ruvllm_admin and cannot be bound to a tenant', r
                USING ERRCODE = '22023', HINT = 'Admins work across tenants; bind a role of its own.';
        END IF;
    END LOOP;
    INSERT INTO ruvllm.tenants AS t (tenant, description) VALUES (tenant, description)
    ON CONFLICT ON CONSTRAINT tenants_pkey
    DO UPDATE SET description = COALESCE(EXCLUDED.description, t.description);
    INSERT INTO ruvllm.tenant_roles (role_name, tenant)
    SELECT given.role_oid::text::name, ruvllm_create_tenant.tenant
      FROM unnest(COALESCE(roles, '{}')) AS given(role_oid)
    ON CONFLICT ON CONSTRAINT tenant_roles_pkey DO NOTHING;
END
$$;
COMMENT ON FUNCTION public.ruvllm_create_tenant(text, regrole[], text) IS
    'Registers a tenant (so sessions may SET ruvllm.tenant to it) and binds the given roles to it: a bound role always acts as that tenant. Calling it again adds roles.';

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
from ruvllm import generation, inference, sqlglue
result = sqlglue.call(plpy, lambda: generation.generate_text(prompt, model_name=model, max_tokens=max_tokens,
                                                             backend=inference.backend_for(plpy)))
return result.text
$$;
COMMENT ON FUNCTION public.ruvllm_generate(text, integer, text) IS
    'Generates text from a prompt with a bundled local model (greedy decoding), without memory or routing.';

------------------------------------------------------------------------------------------------
-- Graph
------------------------------------------------------------------------------------------------

-- The memory graph lives in Apache AGE so users can query it with Cypher. Its schema and label
-- tables become members of this extension; AGE's own catalog rows do not, so an event trigger
-- deletes them before DROP EXTENSION ruvllm (see extension/ruvllm.c).
SELECT ag_catalog.create_graph('ruvllm_graph');

CREATE FUNCTION ruvllm._drop_graph() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- The graph's schema, label tables and sequence are members of this extension, so DROP
    -- EXTENSION drops them; only AGE's catalog rows are left to delete. AGE's own drop_graph is
    -- not used: in AGE 1.5 its label cache flush corrupts the cache when a large DROP resets the
    -- relation cache in the same transaction (apache/age issue 2245), which kills the backend.
    DELETE FROM ag_catalog.ag_label
     WHERE graph = (SELECT graphid FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph');
    DELETE FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph';
    -- Triggers cannot be extension members: the restore triggers on AGE's catalog would hold
    -- DROP EXTENSION up.
    DROP TRIGGER IF EXISTS ruvllm_skip_restored_graph ON ag_catalog.ag_graph;
    DROP TRIGGER IF EXISTS ruvllm_skip_restored_graph ON ag_catalog.ag_label;
END
$$;
COMMENT ON FUNCTION ruvllm._drop_graph() IS
    'Deletes AGE''s catalog rows of the ruvllm_graph graph; run by the DROP EXTENSION event trigger, which then drops the graph''s schema with the extension (internal).';

CREATE FUNCTION ruvllm._on_drop_extension() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'ruvllm_on_drop_extension' LANGUAGE C;
COMMENT ON FUNCTION ruvllm._on_drop_extension() IS
    'Event trigger function: removes the AGE graph''s catalog rows before DROP EXTENSION ruvllm (internal).';

CREATE EVENT TRIGGER ruvllm_drop_graph ON ddl_command_start WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION ruvllm._on_drop_extension();
COMMENT ON EVENT TRIGGER ruvllm_drop_graph IS
    'Removes the ruvllm_graph AGE graph''s catalog rows when DROP EXTENSION names ruvllm; its schema and tables are extension members and go with it.';

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
    -- Kept in the heap row (STORAGE MAIN; see toast_tuple_target below).
    embedding     vector(384) STORAGE MAIN NOT NULL,
    content       text NOT NULL CHECK (content <> ''),
    node_type     text NOT NULL DEFAULT 'Document'
                  CHECK (node_type IN ('Query', 'Document', 'AgentStep', 'Fact', 'QAPair', 'Concept')),
    source        text,
    tenant        text NOT NULL DEFAULT '',
    metadata      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    graph_id      ag_catalog.graphid NOT NULL UNIQUE,
    minhash_bands bigint[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_accessed timestamptz,
    -- A fixed configuration: a generated column needs an immutable expression.
    lexemes       tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED
-- A node's row stays whole up to 4 KB (a short note, most chunks of a long document), and its
-- vector stays in it past that (STORAGE MAIN): content and lexemes are compressed or moved out
-- first. With PostgreSQL's 2 KB target and pgvector's EXTERNAL storage even a two-sentence node
-- went to TOAST: its vector first, which left a narrow heap that the planner costs a full scan by,
-- so at 10K nodes it took the scan that reads every vector back from TOAST (19 ms) over the HNSW
-- index (2 ms); with the vector kept but the lexemes moved out, lexical search read each of its
-- up to 2,000 candidates' lexemes back (hybrid search at 100K nodes 12 -> 17.5 ms).
) WITH (toast_tuple_target = 4080);
COMMENT ON TABLE ruvllm.nodes IS
    'Memory: one row per piece of knowledge, with its all-MiniLM-L6-v2 embedding; edges live in the AGE graph ruvllm_graph.';
COMMENT ON COLUMN ruvllm.nodes.id IS 'Node id; the AGE vertex carries it as property node_id.';
COMMENT ON COLUMN ruvllm.nodes.embedding IS '384-d unit-norm sentence embedding of content.';
COMMENT ON COLUMN ruvllm.nodes.content IS 'The text (a chunk of at most ~180 words for long documents).';
COMMENT ON COLUMN ruvllm.nodes.node_type IS 'Query, Document, AgentStep, Fact, QAPair or Concept.';
COMMENT ON COLUMN ruvllm.nodes.source IS 'Where the content came from (a URL, a file name, a request id).';
COMMENT ON COLUMN ruvllm.nodes.tenant IS 'Owning tenant (ruvllm.tenant at ingestion; empty for none).';
COMMENT ON COLUMN ruvllm.nodes.metadata IS 'timestamp (ISO 8601, stored in UTC; what ruvllm_search''s since/until filter on), speaker, author, tags, domain, version (bumped when a near-duplicate merges in), confidence; other keys kept as given.';
COMMENT ON COLUMN ruvllm.nodes.graph_id IS 'Id of the node''s vertex in ruvllm_graph."Node".';
COMMENT ON COLUMN ruvllm.nodes.minhash_bands IS 'LSH bands of the content''s MinHash signature: rows sharing a band are near-duplicate candidates.';
COMMENT ON COLUMN ruvllm.nodes.created_at IS 'When the node was first stored.';
COMMENT ON COLUMN ruvllm.nodes.last_accessed IS 'When a search last returned the node, as of the last deep-loop run (searches record accesses in ruvllm.node_access).';
COMMENT ON COLUMN ruvllm.nodes.lexemes IS 'Full-text lexemes of content (text search configuration english), generated; lexical search reads them through the GIN index nodes_lexemes.';

-- Searches record what they returned here, not in ruvllm.nodes: a non-HOT update of a nodes row
-- inserts into its HNSW index again (a full ef_construction search), which made search + 2 hops
-- with the update 25x slower than without at 100K nodes (bench/memory).
CREATE TABLE ruvllm.node_access (
    node_id        uuid PRIMARY KEY REFERENCES ruvllm.nodes (id) ON DELETE CASCADE,
    last_accessed  timestamptz NOT NULL,
    hits           bigint NOT NULL DEFAULT 1
);
COMMENT ON TABLE ruvllm.node_access IS 'When searches last returned each memory node, and how often; written by the witness writer from the searches'' queued access records (in the search''s own transaction when the queue refuses them); the deep loop copies last_accessed into ruvllm.nodes.';
COMMENT ON COLUMN ruvllm.node_access.node_id IS 'The memory node.';
COMMENT ON COLUMN ruvllm.node_access.last_accessed IS 'When a search last returned it.';
COMMENT ON COLUMN ruvllm.node_access.hits IS 'How many searches returned it.';

-- The request path scores each candidate sentence of its nodes by its vector; made at ingest,
-- they cost a request nothing to embed (unit_vectors.py). A row's vectors are the node's units in
-- the order the evidence splitter (of layout `layout`) reads them; EXTERNAL: float16 values do
-- not compress, so they are not tried.
CREATE TABLE ruvllm.node_units (
    node_id  uuid PRIMARY KEY REFERENCES ruvllm.nodes (id) ON DELETE CASCADE,
    layout   smallint NOT NULL,
    vectors  bytea STORAGE EXTERNAL NOT NULL CHECK (length(vectors) % 768 = 0)
);
COMMENT ON TABLE ruvllm.node_units IS 'The vectors of each memory node''s evidence units (its sentences as ruvllm_query''s evidence stage reads them), embedded at ingestion while ruvllm.store_unit_vectors is on; a node without a row has its units embedded by the requests that score them.';
COMMENT ON COLUMN ruvllm.node_units.node_id IS 'The memory node.';
COMMENT ON COLUMN ruvllm.node_units.layout IS 'Version of the sentence splitter the units were read by; rows of another version are not used.';
COMMENT ON COLUMN ruvllm.node_units.vectors IS 'The units'' 384-d all-MiniLM-L6-v2 vectors, in the node''s order, as little-endian float16 (768 bytes a unit).';

CREATE INDEX nodes_embedding_hnsw ON ruvllm.nodes
    USING hnsw (embedding vector_cosine_ops) WITH (m = 32, ef_construction = 200);
CREATE INDEX nodes_minhash_bands ON ruvllm.nodes USING gin (minhash_bands);
CREATE INDEX nodes_tenant ON ruvllm.nodes (tenant);
CREATE INDEX nodes_lexemes ON ruvllm.nodes USING gin (lexemes);

-- BM25 needs each query term's document frequency in the tenant's memory. Ingestion appends
-- (tenant, lexeme, +docs) rows here instead of updating one counter per lexeme, so concurrent
-- ingests never wait on (or deadlock over) shared counter rows; a search sums the rows of its
-- terms, and the deep loop rebuilds the table from ruvllm.nodes (one row per lexeme again),
-- which also accounts for nodes the loops deleted.
CREATE TABLE ruvllm.lexical_stats (
    tenant   text NOT NULL,
    lexeme   text NOT NULL,
    docs     bigint NOT NULL,
    lexemes  bigint NOT NULL DEFAULT 0
);
CREATE INDEX lexical_stats_lexeme ON ruvllm.lexical_stats (tenant, lexeme);
COMMENT ON TABLE ruvllm.lexical_stats IS
    'Document frequencies for lexical (BM25) search, per tenant, as rows to be summed: ingestion appends, the deep loop rebuilds from ruvllm.nodes.';
COMMENT ON COLUMN ruvllm.lexical_stats.tenant IS 'Tenant whose memory is counted.';
COMMENT ON COLUMN ruvllm.lexical_stats.lexeme IS 'The lexeme; the empty string is the row counting documents and their lengths.';
COMMENT ON COLUMN ruvllm.lexical_stats.docs IS 'How many nodes contain the lexeme (for lexeme '''': how many nodes).';
COMMENT ON COLUMN ruvllm.lexical_stats.lexemes IS 'For lexeme '''': the nodes'' distinct lexemes, summed (BM25 length normalisation); 0 otherwise.';

CREATE FUNCTION ruvllm._rebuild_lexical_stats() RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- One statement, one snapshot: rows of ingests that commit meanwhile are neither deleted nor
    -- counted again.
    WITH gone AS (DELETE FROM ruvllm.lexical_stats RETURNING 1),
    made AS (
        INSERT INTO ruvllm.lexical_stats (tenant, lexeme, docs, lexemes)
        SELECT tenant, '', count(*), sum(length(lexemes)) FROM ruvllm.nodes GROUP BY tenant
        UNION ALL
        SELECT n.tenant, l.lexeme, count(*), 0
          FROM ruvllm.nodes n, unnest(tsvector_to_array(n.lexemes)) AS l(lexeme)
         GROUP BY n.tenant, l.lexeme
        RETURNING 1)
    SELECT count(*) FROM made;
$$;
COMMENT ON FUNCTION ruvllm._rebuild_lexical_stats() IS
    'Rebuilds ruvllm.lexical_stats from ruvllm.nodes (the deep loop runs it); returns the rows written (internal).';

-- BM25 in C (extension/lexical.c): scored in SQL (setweight, ts_filter, unnest and a join per
-- candidate) a search at 100K nodes spent ~20 us on each of up to 1,000 candidates.
CREATE FUNCTION ruvllm._bm25(doc tsvector, terms text[], idf float8[], avgdl float8, k1 float8, b float8)
RETURNS float8
    AS 'MODULE_PATHNAME', 'ruvllm_bm25' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION ruvllm._bm25(tsvector, text[], float8[], float8, float8, float8) IS
    'BM25 score of a tsvector for query lexemes with their IDF (parallel arrays): the sum over the terms in doc of idf * tf (k1 + 1) / (tf + k1 (1 - b + b * length(doc) / avgdl)), tf the term''s positions (1 without positions); 0 when none is in doc (internal, lexical search).';
CREATE FUNCTION ruvllm._term_coverage(doc tsvector, terms text[], idf float8[]) RETURNS float8
    AS 'MODULE_PATHNAME', 'ruvllm_term_coverage' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION ruvllm._term_coverage(tsvector, text[], float8[]) IS
    'Share of the query lexemes'' IDF (parallel arrays) that a tsvector contains, 0 when it contains none of them; NULL when there is nothing to cover (no terms, or their IDF sums to 0) (internal, what abstention reads).';

-- The query vector of a search travels in binary form (extension/vector_recv.c).
CREATE FUNCTION ruvllm._vector_recv(bytes bytea) RETURNS vector
    AS 'MODULE_PATHNAME', 'ruvllm_vector_recv' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION ruvllm._vector_recv(bytea) IS
    'A vector from pgvector''s binary form (what vector_send returns: int16 dimensions, int16 0, big-endian float4s), checked as vector_recv checks it (internal: searches pass their query vector so, unformatted).';

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

CREATE FUNCTION public.ruvllm_store_unit_vectors(max_nodes integer DEFAULT NULL) RETURNS bigint
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import sqlglue, unit_vectors
return sqlglue.call(plpy, unit_vectors.backfill, plpy, max_nodes, plpy.notice)
$$;
COMMENT ON FUNCTION public.ruvllm_store_unit_vectors(integer) IS
    'Embeds and stores the evidence units'' vectors of the memory nodes the session may see that have none (nodes from before 0.3.0, or ingested with ruvllm.store_unit_vectors off), at most max_nodes of them (NULL: all), in batches of 256 with a NOTICE each; returns how many nodes it stored.';

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

CREATE FUNCTION public.ruvllm_search(query text, k integer DEFAULT 10, hops integer DEFAULT 2,
                                     mode text DEFAULT 'hybrid', filter jsonb DEFAULT '{}')
RETURNS TABLE (id uuid, content text, node_type text, source text, distance real, hop integer,
               via_rel text, via_node uuid, edge_weight real, similarity real, dense_rank integer,
               lexical_score real, lexical_rank integer, score real, rank integer, metadata jsonb,
               created_at timestamptz)
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import memory, sqlglue
rows = sqlglue.call(plpy, memory.search, plpy, query, k, hops, mode, filter)
return [(r["id"], r["content"], r["node_type"], r["source"], r["distance"], r["hop"],
         r["via_rel"], r["via_node"], r["edge_weight"], r["similarity"], r["dense_rank"],
         r["lexical_score"], r["lexical_rank"], r["score"], r["rank"], json.dumps(r["metadata"]),
         r["created_at"]) for r in rows]
$$;
COMMENT ON FUNCTION public.ruvllm_search(text, integer, integer, text, jsonb) IS
    'Memory search in the session''s tenant: mode hybrid (default; HNSW and BM25 lexical hits fused by reciprocal rank), dense or lexical; the k best hits and their graph neighbours up to hops edges away, ranked together (score, rank), with each row''s signals; filter: since, until, source, node_type, metadata.';

------------------------------------------------------------------------------------------------
-- Models
------------------------------------------------------------------------------------------------

CREATE TABLE ruvllm.models (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]*$'),
    tier            integer NOT NULL DEFAULT 1 CHECK (tier BETWEEN 0 AND 9),
    path            text,
    sha256          text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    quantization    text,
    n_ctx           integer NOT NULL DEFAULT 2048 CHECK (n_ctx BETWEEN 256 AND 131072),
    prompt_style    text NOT NULL,
    cost_per_token  real NOT NULL DEFAULT 1.0 CHECK (cost_per_token >= 0 AND cost_per_token < 'Infinity'),
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- Named, so the upgrade from 0.2.0 (whose models had a file each) makes the same constraints.
ALTER TABLE ruvllm.models ADD CONSTRAINT models_prompt_style_check
    CHECK (prompt_style IN ('chat', 'completion', 'extractive'));
ALTER TABLE ruvllm.models ADD CONSTRAINT models_file_check
    CHECK ((prompt_style = 'extractive') = (path IS NULL AND sha256 IS NULL));
COMMENT ON TABLE ruvllm.models IS 'The model pool: local GGUF models the router may choose from, and the extractive tier (no model: the best evidence span, verbatim).';
COMMENT ON COLUMN ruvllm.models.name IS 'Model name used in routing decisions, constraints and witness rows.';
COMMENT ON COLUMN ruvllm.models.tier IS 'Capability tier (0 smallest); orders the router''s model head.';
COMMENT ON COLUMN ruvllm.models.path IS 'GGUF file; a relative path is resolved against ruvllm.models_dir. NULL for the extractive tier.';
COMMENT ON COLUMN ruvllm.models.sha256 IS 'Expected SHA-256 of the file; a file that no longer matches is refused. NULL for the extractive tier.';
COMMENT ON COLUMN ruvllm.models.quantization IS 'Quantisation of the weights (for example Q4_1), for reference.';
COMMENT ON COLUMN ruvllm.models.n_ctx IS 'Context window the model is loaded with, in tokens.';
COMMENT ON COLUMN ruvllm.models.prompt_style IS 'chat: the model''s chat template; completion: plain text continuation (base models); extractive: no model, the answer is the best evidence span, verbatim, with its citation.';
COMMENT ON COLUMN ruvllm.models.cost_per_token IS 'Relative cost per generated token, used by the router''s utility.';
COMMENT ON COLUMN ruvllm.models.enabled IS 'Whether the router may choose the model.';
COMMENT ON COLUMN ruvllm.models.created_at IS 'When the model was registered.';

INSERT INTO ruvllm.models (name, tier, path, sha256, quantization, n_ctx, prompt_style, cost_per_token) VALUES
    ('smollm2-135m-instruct', 0, 'SmolLM2-135M-Instruct.Q4_1.gguf',
     'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53', 'Q4_1', 2048, 'chat', 1.0),
    ('gemma-3-270m', 1, 'gemma-3-270m-q4_k_m.gguf',
     'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818', 'Q4_K_M', 2048, 'completion', 2.0);
-- Last in the router's model head (tier 9), so a trained policy's head keeps the models' order;
-- it is the safe default all the same (ruvllm.default_model). It costs nothing per token; its
-- latency is the evidence selection's.
INSERT INTO ruvllm.models (name, tier, path, sha256, quantization, n_ctx, prompt_style, cost_per_token) VALUES
    ('extractive', 9, NULL, NULL, NULL, 2048, 'extractive', 0.0);

CREATE FUNCTION public.ruvllm_register_model(name text, path text, prompt_style text,
                                             sha256 text DEFAULT NULL, tier integer DEFAULT 1,
                                             n_ctx integer DEFAULT 2048, quantization text DEFAULT NULL,
                                             cost_per_token real DEFAULT 1.0, enabled boolean DEFAULT true)
RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import models, sqlglue
sqlglue.call(plpy, models.register, plpy, name=name, path=path, prompt_style=prompt_style,
             sha256=sha256, tier=tier, n_ctx=n_ctx, quantization=quantization,
             cost_per_token=cost_per_token, enabled=enabled)
$$;
COMMENT ON FUNCTION public.ruvllm_register_model(text, text, text, text, integer, integer, text, real, boolean) IS
    'Adds or replaces a model in the pool. The file must exist and be a GGUF file; without sha256 its checksum is computed now, with one it must match. prompt_style extractive registers a tier without a file (path and sha256 NULL).';

------------------------------------------------------------------------------------------------
-- Router policies
------------------------------------------------------------------------------------------------

CREATE TABLE ruvllm.policies (
    version         serial PRIMARY KEY,
    status          text NOT NULL DEFAULT 'candidate' CHECK (status IN ('promoted', 'candidate', 'retired')),
    router          bytea NOT NULL,
    model_names     text[] NOT NULL,
    metrics         jsonb NOT NULL DEFAULT '{}',
    reason          text,
    parent_version  integer REFERENCES ruvllm.policies (version),
    created_at      timestamptz NOT NULL DEFAULT now(),
    promoted_at     timestamptz
);
CREATE INDEX policies_promoted ON ruvllm.policies (version DESC) WHERE status = 'promoted';
COMMENT ON TABLE ruvllm.policies IS 'Versions of the FastGRNN router''s weights; backends use the newest promoted one and reload when a newer one is promoted.';
COMMENT ON COLUMN ruvllm.policies.version IS 'Policy version, increasing.';
COMMENT ON COLUMN ruvllm.policies.status IS 'promoted (in use when newest), candidate (trained but not promoted; see reason) or retired.';
COMMENT ON COLUMN ruvllm.policies.router IS 'Serialised router (ruvllm.router.FastGRNNRouter.to_bytes: header, sparse W, low-rank U, heads).';
COMMENT ON COLUMN ruvllm.policies.model_names IS 'The models of the router''s model head, in order.';
COMMENT ON COLUMN ruvllm.policies.metrics IS 'Training and held-out metrics of this version.';
COMMENT ON COLUMN ruvllm.policies.reason IS 'Why the version was made, promoted or kept as a candidate.';
COMMENT ON COLUMN ruvllm.policies.parent_version IS 'The version it was trained from.';
COMMENT ON COLUMN ruvllm.policies.created_at IS 'When the version was stored.';
COMMENT ON COLUMN ruvllm.policies.promoted_at IS 'When the version was promoted.';

CREATE FUNCTION ruvllm._install_initial_policy() RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import policy, sqlglue
sqlglue.call(plpy, policy.install_initial, plpy)
$$;
COMMENT ON FUNCTION ruvllm._install_initial_policy() IS
    'Stores policy version 1, an untrained router over the installed models (internal; run at install).';
SELECT ruvllm._install_initial_policy();

------------------------------------------------------------------------------------------------
-- Witness log
------------------------------------------------------------------------------------------------

-- Range-partitioned by day from the first version, so retention is a partition drop. Daily
-- partitions are made ahead (ruvllm.witness_make_partitions); the default partition only catches
-- rows of a day nobody made a partition for.
CREATE TABLE ruvllm.witness (
    request_id          uuid NOT NULL,
    session_id          text,
    tenant              text NOT NULL DEFAULT '',
    query               text,
    query_embedding     vector(384),
    model               text,
    context_size        integer,
    temperature         real,
    top_p               real,
    confidence          real,
    routing_confidence  real,
    used_default        boolean,
    policy_version      integer,
    model_probs         jsonb,
    explored            boolean NOT NULL DEFAULT false,
    quality             real,
    judge_score         smallint CHECK (judge_score BETWEEN 1 AND 5),
    groundedness        real,
    relevance           real,
    rating              smallint CHECK (rating BETWEEN 1 AND 5),
    correction          text,
    feedback_at         timestamptz,
    embedding_ms        real,
    retrieval_ms        real,
    routing_ms          real,
    attention_ms        real,
    generation_ms       real,
    total_ms            real,
    prompt_tokens       integer,
    completion_tokens   integer,
    context_node_ids    uuid[],
    response            text,
    response_embedding  vector(384),
    features            real[],
    cache_hit           boolean NOT NULL DEFAULT false,
    error               text,
    error_sqlstate      text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    prompt_cached_tokens integer,
    grounded            boolean,
    abstained           boolean DEFAULT false
) PARTITION BY RANGE (created_at);
COMMENT ON TABLE ruvllm.witness IS 'Audit log: one row per ruvllm_query call, success or failure, written by the witness writer outside the caller''s transaction. Partitioned by day on created_at.';
COMMENT ON COLUMN ruvllm.witness.request_id IS 'The request_id ruvllm_query returned.';
COMMENT ON COLUMN ruvllm.witness.session_id IS 'Session of a multi-turn conversation, if any.';
COMMENT ON COLUMN ruvllm.witness.tenant IS 'Tenant of the caller (ruvllm.tenant).';
COMMENT ON COLUMN ruvllm.witness.query IS 'The question as asked.';
COMMENT ON COLUMN ruvllm.witness.query_embedding IS 'all-MiniLM-L6-v2 embedding of the question.';
COMMENT ON COLUMN ruvllm.witness.model IS 'Model that answered (or that the cached answer came from).';
COMMENT ON COLUMN ruvllm.witness.context_size IS 'Context size the router chose, in tokens.';
COMMENT ON COLUMN ruvllm.witness.temperature IS 'Sampling temperature used.';
COMMENT ON COLUMN ruvllm.witness.top_p IS 'Nucleus sampling top_p used.';
COMMENT ON COLUMN ruvllm.witness.confidence IS 'Memory support of the answer: best cosine similarity of the context used (0..1).';
COMMENT ON COLUMN ruvllm.witness.routing_confidence IS 'Router confidence (0 uniform .. 1 certain).';
COMMENT ON COLUMN ruvllm.witness.used_default IS 'Whether the router fell back to the safe default decision (confidence under ruvllm.confidence_threshold).';
COMMENT ON COLUMN ruvllm.witness.policy_version IS 'Router policy version that decided.';
COMMENT ON COLUMN ruvllm.witness.model_probs IS 'Router probability per enabled model, {"model": p}.';
COMMENT ON COLUMN ruvllm.witness.explored IS 'Whether the model was picked at random for exploration (ruvllm.explore_rate) instead of by the router.';
COMMENT ON COLUMN ruvllm.witness.quality IS 'Answer quality in [0, 1] (judge, groundedness, relevance and the user''s rating; see README); NULL until the instant loop judges it.';
COMMENT ON COLUMN ruvllm.witness.judge_score IS 'The LLM judge''s rating 1..5; NULL when not judged or the judge failed.';
COMMENT ON COLUMN ruvllm.witness.groundedness IS 'Best cosine similarity between the answer and the context nodes used.';
COMMENT ON COLUMN ruvllm.witness.relevance IS 'Cosine similarity between the answer and the question.';
COMMENT ON COLUMN ruvllm.witness.rating IS 'User rating 1..5 from ruvllm_feedback.';
COMMENT ON COLUMN ruvllm.witness.correction IS 'User correction from ruvllm_feedback.';
COMMENT ON COLUMN ruvllm.witness.feedback_at IS 'When feedback arrived.';
COMMENT ON COLUMN ruvllm.witness.embedding_ms IS 'Milliseconds spent embedding the question.';
COMMENT ON COLUMN ruvllm.witness.retrieval_ms IS 'Milliseconds spent on HNSW search and graph expansion.';
COMMENT ON COLUMN ruvllm.witness.routing_ms IS 'Milliseconds spent on features and the router.';
COMMENT ON COLUMN ruvllm.witness.attention_ms IS 'Milliseconds spent ranking and fitting the context.';
COMMENT ON COLUMN ruvllm.witness.generation_ms IS 'Milliseconds spent generating.';
COMMENT ON COLUMN ruvllm.witness.total_ms IS 'Milliseconds for the whole call.';
COMMENT ON COLUMN ruvllm.witness.prompt_tokens IS 'Prompt tokens of the request: evaluated, or taken from the inference server''s prompt cache (prompt_cached_tokens).';
COMMENT ON COLUMN ruvllm.witness.prompt_cached_tokens IS 'Prompt tokens the inference server reused from its cache (the KV state of the longest prefix it had evaluated, e.g. a session''s earlier turns) instead of evaluating them; NULL when generated in process.';
COMMENT ON COLUMN ruvllm.witness.completion_tokens IS 'Tokens generated.';
COMMENT ON COLUMN ruvllm.witness.context_node_ids IS 'Memory nodes given to the model, in rank order.';
COMMENT ON COLUMN ruvllm.witness.response IS 'The answer returned.';
COMMENT ON COLUMN ruvllm.witness.response_embedding IS 'Embedding of the answer; NULL until the quality judge computes it.';
COMMENT ON COLUMN ruvllm.witness.features IS 'The 128 router input features of the request (python/ruvllm/features.py), for training.';
COMMENT ON COLUMN ruvllm.witness.cache_hit IS 'Whether the answer came from the response cache.';
COMMENT ON COLUMN ruvllm.witness.error IS 'Error message of a failed call (NULL on success).';
COMMENT ON COLUMN ruvllm.witness.error_sqlstate IS 'SQLSTATE of the error of a failed call.';
COMMENT ON COLUMN ruvllm.witness.created_at IS 'When the call started; the partition key.';
COMMENT ON COLUMN ruvllm.witness.grounded IS 'Whether the model''s answer was supported by its evidence (grounding check); false: the answer returned is the extractive one. NULL when not checked (ruvllm.answer_style = documents, abstentions).';
COMMENT ON COLUMN ruvllm.witness.abstained IS 'Whether the answer was "Not found in memory." (no memory relevant enough; nothing generated). NULL in rows written without it (before 0.3.0''s pipeline).';

-- Keys and indexes are each partition's own, not the partitioned table's: the table is an
-- extension member and the daily partitions are not, and pg_dump cannot restore partitions whose
-- parent's indexes CREATE EXTENSION has already made (ATTACH PARTITION would make them twice).
CREATE FUNCTION ruvllm._witness_index_partition(part regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ADD PRIMARY KEY (request_id, created_at)', part);
    EXECUTE format('CREATE INDEX ON %s (created_at)', part);
    -- For ruvllm_witness_search; the writer pays for it, off the query's path.
    EXECUTE format('CREATE INDEX ON %s USING hnsw (query_embedding public.vector_cosine_ops)'
                   ' WITH (m = 16, ef_construction = 64)', part);
END
$$;
COMMENT ON FUNCTION ruvllm._witness_index_partition(regclass) IS
    'Gives a witness partition its primary key (request_id, created_at), its created_at index and its HNSW index on the question embedding (internal).';

CREATE TABLE ruvllm.witness_default PARTITION OF ruvllm.witness DEFAULT;
SELECT ruvllm._witness_index_partition('ruvllm.witness_default');
COMMENT ON TABLE ruvllm.witness_default IS 'Witness rows of days without a daily partition (normally empty).';

CREATE FUNCTION ruvllm.witness_make_partitions(days_ahead integer DEFAULT 7) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    day date;
    made integer := 0;
    part text;
BEGIN
    IF days_ahead IS NULL OR days_ahead NOT BETWEEN 0 AND 366 THEN
        RAISE EXCEPTION 'days_ahead must be between 0 and 366, not %', days_ahead
            USING ERRCODE = '22003';
    END IF;
    -- Days are UTC days, whatever the session's TimeZone.
    FOR day IN SELECT d::date FROM generate_series((now() AT TIME ZONE 'UTC')::date - 1,
                                                 (now() AT TIME ZONE 'UTC')::date + days_ahead,
                                                 interval '1 day') AS d
    LOOP
        part := 'witness_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('ruvllm.%I', part)) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE ruvllm.%I PARTITION OF ruvllm.witness FOR VALUES FROM (%L) TO (%L)',
                           part, (day::timestamp AT TIME ZONE 'UTC'),
                           ((day + 1)::timestamp AT TIME ZONE 'UTC'));
            PERFORM ruvllm._witness_index_partition(format('ruvllm.%I', part)::regclass);
            made := made + 1;
        EXCEPTION WHEN check_violation THEN
            -- Rows of that day already sit in the default partition; leave them there.
            RAISE NOTICE 'ruvllm: witness partition % not made: the default partition holds rows of that day', part;
        END;
    END LOOP;
    RETURN made;
END
$$;
COMMENT ON FUNCTION ruvllm.witness_make_partitions(integer) IS
    'Makes the witness log''s daily partitions (UTC days) from yesterday to days_ahead days ahead; returns how many it made.';
-- No partitions are made here: made by CREATE EXTENSION they would be extension members, which
-- pg_dump leaves out, and a restore on another day would make other days. The writer makes them
-- (ruvllm._witness_write), and so does retention.

-- Inserts a batch of witness rows given as JSON objects keyed by column name. One bad row must
-- not lose the batch: on failure the rows are inserted one by one and the bad ones reported.
CREATE FUNCTION ruvllm._witness_write(rows text[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    one text;
    written integer := 0;
    lock_wait text;
BEGIN
    -- Tomorrow's partition missing means the days ahead need making (after install, or when
    -- retention has not run). Making one locks the witness table against readers, so it waits
    -- briefly and otherwise leaves it to the next batch; rows meanwhile go to the default partition.
    IF to_regclass('ruvllm.witness_p' || to_char(now() AT TIME ZONE 'UTC' + interval '1 day', 'YYYYMMDD')) IS NULL
       AND has_function_privilege('ruvllm.witness_make_partitions(integer)', 'EXECUTE') THEN
        lock_wait := current_setting('lock_timeout');
        BEGIN
            PERFORM set_config('lock_timeout', '50ms', true);
            PERFORM ruvllm.witness_make_partitions(7);
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
        PERFORM set_config('lock_timeout', lock_wait, true);
    END IF;
    BEGIN
        INSERT INTO ruvllm.witness
        SELECT w.* FROM unnest(rows) AS r(j), jsonb_populate_record(NULL::ruvllm.witness, r.j::jsonb) AS w;
        GET DIAGNOSTICS written = ROW_COUNT;
        RETURN written;
    EXCEPTION WHEN others THEN
        written := 0;
    END;
    FOREACH one IN ARRAY rows LOOP
        BEGIN
            INSERT INTO ruvllm.witness
            SELECT * FROM jsonb_populate_record(NULL::ruvllm.witness, one::jsonb);
            written := written + 1;
        EXCEPTION WHEN others THEN
            RAISE WARNING 'ruvllm: witness row dropped: % (SQLSTATE %)', SQLERRM, SQLSTATE;
        END;
    END LOOP;
    RETURN written;
END
$$;
COMMENT ON FUNCTION ruvllm._witness_write(text[]) IS
    'Inserts witness rows given as JSON objects (internal: the witness writer, and the library''s synchronous path as the table''s owner, call it; users cannot).';

CREATE FUNCTION ruvllm._witness_enqueue(row_json text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'ruvllm_witness_enqueue' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION ruvllm._witness_enqueue(text) IS
    'Hands a witness row to the background writer, outside the caller''s transaction; false when the caller must write it (internal, for operators: users cannot call it, and ruvllm_query hands its rows to the library directly).';

-- A user's rating onto its witness row. Users may not update the witness log (quality is a
-- training label): ruvllm_feedback reaches this through the library (extension/witness_queue.c,
-- ruvllm_witness_rate), which runs it as the table's owner with the caller's tenant, looked up as
-- the caller, as caller_tenant.
CREATE FUNCTION ruvllm._witness_rate(feedback jsonb, caller_tenant text) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH rated AS (
        UPDATE ruvllm.witness w
           SET rating = (feedback->>'rating')::smallint, correction = feedback->>'correction',
               feedback_at = now(), quality = COALESCE((feedback->>'quality')::real, w.quality)
         WHERE w.request_id = (feedback->>'request_id')::uuid
           AND w.created_at = (feedback->>'created_at')::timestamptz
           AND w.tenant = caller_tenant AND w.error IS NULL
        RETURNING 1)
    SELECT count(*)::integer FROM rated
$$;
COMMENT ON FUNCTION ruvllm._witness_rate(jsonb, text) IS
    'Puts a rating, correction and quality (request_id, created_at, rating, correction, quality) on an answered witness row of caller_tenant; returns the rows changed (internal: ruvllm_feedback calls it through the library, as the table''s owner).';

CREATE FUNCTION ruvllm._witness_queue_stats(OUT queued bigint, OUT written bigint, OUT rejected bigint,
                                            OUT pending_bytes bigint, OUT writer_pid integer,
                                            OUT lost bigint, OUT pending_rows bigint,
                                            OUT recovered bigint, OUT ring_generation bigint,
                                            OUT last_enqueued_at timestamptz,
                                            OUT last_written_at timestamptz,
                                            OUT server_started_at timestamptz,
                                            OUT enqueued_bytes bigint, OUT done_bytes bigint)
    AS 'MODULE_PATHNAME', 'ruvllm_witness_queue_stats' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION ruvllm._witness_queue_stats() IS
    'This database''s witness queue: rows queued and done (committed or given up) since its ring was claimed, rows refused, bytes and rows waiting, the writer''s pid, rows given up, rows kept across the last restart, and the ring''s byte positions queued up to and done up to (which count the searches'' access records too; the row counts do not); starts a writer for rows waiting without one (internal).';

-- Written by the witness writer in the transaction of each batch (extension/witness_queue.c).
CREATE TABLE ruvllm.witness_writer_state (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    ring_generation    bigint NOT NULL,
    ring_tail          bigint NOT NULL,
    rows_queued        bigint NOT NULL,
    rows_done          bigint NOT NULL,
    rows_written_total bigint NOT NULL DEFAULT 0,
    last_written_at    timestamptz
);
COMMENT ON TABLE ruvllm.witness_writer_state IS
    'How far the witness writer got, committed with each batch: where a restarted writer resumes, and what ruvllm_health compares with the queue after a restart (one row).';
COMMENT ON COLUMN ruvllm.witness_writer_state.singleton IS 'Always true: the table has one row.';
COMMENT ON COLUMN ruvllm.witness_writer_state.ring_generation IS 'The queue ring the counts below belong to (ruvllm._witness_queue_stats().ring_generation).';
COMMENT ON COLUMN ruvllm.witness_writer_state.ring_tail IS 'Byte position in that ring up to which rows are committed.';
COMMENT ON COLUMN ruvllm.witness_writer_state.rows_queued IS 'Rows queued in that ring when the last batch was taken.';
COMMENT ON COLUMN ruvllm.witness_writer_state.rows_done IS 'Rows of that ring committed or given up, the last batch included.';
COMMENT ON COLUMN ruvllm.witness_writer_state.rows_written_total IS 'Rows the witness writers of this database have committed, over all rings.';
COMMENT ON COLUMN ruvllm.witness_writer_state.last_written_at IS 'When a batch last committed rows.';

CREATE FUNCTION public.ruvllm_witness_flush(timeout_ms integer DEFAULT 5000) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target bigint;
    target_ring bigint;
    done bigint;
    ring bigint;
    deadline timestamptz;
BEGIN
    IF timeout_ms IS NULL OR timeout_ms NOT BETWEEN 0 AND 600000 THEN
        RAISE EXCEPTION 'timeout_ms must be between 0 and 600000, not %', timeout_ms USING ERRCODE = '22003';
    END IF;
    deadline := clock_timestamp() + make_interval(secs => timeout_ms / 1000.0);
    -- Byte positions, not row counts: they cover the access records queued with the rows.
    SELECT enqueued_bytes, ring_generation INTO target, target_ring FROM ruvllm._witness_queue_stats();
    LOOP
        SELECT done_bytes, ring_generation INTO done, ring FROM ruvllm._witness_queue_stats();
        -- Another ring: this one was drained and given to another database.
        IF done >= target OR ring IS DISTINCT FROM target_ring THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
COMMENT ON FUNCTION public.ruvllm_witness_flush(integer) IS
    'Waits until every witness row and search access record queued so far in this database is committed (or given up, see ruvllm_health); false if timeout_ms passed first.';

------------------------------------------------------------------------------------------------
-- Sessions and the response cache
------------------------------------------------------------------------------------------------

CREATE TABLE ruvllm.sessions (
    tenant             text NOT NULL DEFAULT '',
    session_id         text NOT NULL CHECK (length(session_id) BETWEEN 1 AND 200),
    turn_count         integer NOT NULL DEFAULT 0,
    history            jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(history) = 'array'),
    router_state       real[],
    policy_version     integer,
    context_embedding  vector(384),
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_active        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session_id)
);
CREATE INDEX sessions_last_active ON ruvllm.sessions (last_active);
COMMENT ON TABLE ruvllm.sessions IS 'Multi-turn conversations of ruvllm_query(query, session_id).';
COMMENT ON COLUMN ruvllm.sessions.tenant IS 'Owning tenant; the same session id under another tenant is another session.';
COMMENT ON COLUMN ruvllm.sessions.session_id IS 'The caller''s session id.';
COMMENT ON COLUMN ruvllm.sessions.turn_count IS 'Turns answered so far.';
COMMENT ON COLUMN ruvllm.sessions.history IS 'The last turns as [{"q": question, "a": answer}], oldest first.';
COMMENT ON COLUMN ruvllm.sessions.router_state IS 'The FastGRNN router''s hidden state after the last turn.';
COMMENT ON COLUMN ruvllm.sessions.policy_version IS 'Router policy version of router_state.';
COMMENT ON COLUMN ruvllm.sessions.context_embedding IS 'Normalised mean of the turns'' question embeddings.';
COMMENT ON COLUMN ruvllm.sessions.created_at IS 'When the session began.';
COMMENT ON COLUMN ruvllm.sessions.last_active IS 'When the last turn was answered.';

CREATE TABLE ruvllm.response_cache (
    id               bigserial PRIMARY KEY,
    tenant           text NOT NULL DEFAULT '',
    query            text NOT NULL,
    query_hash       text NOT NULL,
    constraints_key  text NOT NULL,
    query_embedding  vector(384) NOT NULL,
    response         jsonb NOT NULL,
    request_id       uuid NOT NULL,
    hits             integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_hit_at      timestamptz,
    expires_at       timestamptz NOT NULL
);
CREATE INDEX response_cache_exact ON ruvllm.response_cache (tenant, query_hash, constraints_key);
CREATE INDEX response_cache_expires ON ruvllm.response_cache (expires_at);
CREATE INDEX response_cache_embedding ON ruvllm.response_cache
    USING hnsw (query_embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
COMMENT ON TABLE ruvllm.response_cache IS 'Answers ruvllm_query may serve again: exact (same normalised question and constraints) or semantic (cosine >= ruvllm.cache_similarity), same tenant, until expires_at.';
COMMENT ON COLUMN ruvllm.response_cache.id IS 'Entry id.';
COMMENT ON COLUMN ruvllm.response_cache.tenant IS 'Tenant the answer was given to; only that tenant is served it.';
COMMENT ON COLUMN ruvllm.response_cache.query IS 'The question.';
COMMENT ON COLUMN ruvllm.response_cache.query_hash IS 'SHA-256 of the question, lower-cased with white space folded.';
COMMENT ON COLUMN ruvllm.response_cache.constraints_key IS 'The request''s constraints as canonical JSON; only requests with equal constraints are served.';
COMMENT ON COLUMN ruvllm.response_cache.query_embedding IS 'Embedding of the question, for semantic hits.';
COMMENT ON COLUMN ruvllm.response_cache.response IS 'The answer: text, confidence, sources, routing.';
COMMENT ON COLUMN ruvllm.response_cache.request_id IS 'The request that produced the answer.';
COMMENT ON COLUMN ruvllm.response_cache.hits IS 'How often the entry was served.';
COMMENT ON COLUMN ruvllm.response_cache.created_at IS 'When the answer was cached.';
COMMENT ON COLUMN ruvllm.response_cache.last_hit_at IS 'When the entry was last served.';
COMMENT ON COLUMN ruvllm.response_cache.expires_at IS 'After this the entry is not served (created_at + ruvllm.cache_ttl).';

------------------------------------------------------------------------------------------------
-- Query
------------------------------------------------------------------------------------------------

CREATE FUNCTION public.ruvllm_query(query text, session_id text DEFAULT NULL, constraints jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import query as pipeline, sqlglue
return json.dumps(sqlglue.call(plpy, pipeline.run, plpy, query, session_id, constraints))
$$;
COMMENT ON FUNCTION public.ruvllm_query(text, text, jsonb) IS
    'Answers a question from memory with a routed local model, or the extractive tier, from the evidence spans of memory: {request_id, text (citations [n] refer to sources[n-1]), confidence, grounded, abstained, sources, routing, latency_ms, cache_hit}; "Not found in memory." when nothing in memory is relevant enough. Constraints: max_tokens, temperature, top_p, max_latency_ms, model. Every call, failed ones included, leaves a row in ruvllm.witness.';

CREATE FUNCTION public.ruvllm_query_row(query text, session_id text DEFAULT NULL, constraints jsonb DEFAULT '{}')
RETURNS TABLE (request_id uuid, answer text, confidence real, model text, context_size integer,
               temperature real, top_p real, routing_confidence real, sources jsonb,
               total_ms real, cache_hit boolean)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
SELECT (r->>'request_id')::uuid, r->>'text', (r->>'confidence')::real, r->'routing'->>'model',
       (r->'routing'->>'context_size')::integer, (r->'routing'->>'temperature')::real,
       (r->'routing'->>'top_p')::real, (r->'routing'->>'confidence')::real, r->'sources',
       (r->'latency_ms'->>'total')::real, (r->>'cache_hit')::boolean
  FROM public.ruvllm_query(query, session_id, constraints) AS r
$$;
COMMENT ON FUNCTION public.ruvllm_query_row(text, text, jsonb) IS
    'ruvllm_query as one row of plain columns, for clients and BI tools that prefer columns to jsonb.';

CREATE FUNCTION public.ruvllm_route(query text) RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import routing, sqlglue
return json.dumps(sqlglue.call(plpy, routing.route, plpy, query))
$$;
COMMENT ON FUNCTION public.ruvllm_route(text) IS
    'The routing decision the current policy makes for a question (model, context size, temperature, top_p, confidence, model probabilities) and the 128 features it read; generates nothing and writes nothing.';

CREATE FUNCTION public.ruvllm_feedback(request_id uuid, rating integer, correction text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import feedback, sqlglue
return sqlglue.call(plpy, feedback.give, plpy, request_id, rating, correction)
$$;
COMMENT ON FUNCTION public.ruvllm_feedback(uuid, integer, text) IS
    'Records a rating (1..5) and optional correction on a request''s witness row; a correction is stored in memory as a high-confidence QAPair with Derived edges to the context the answer used. Returns that node''s id (NULL without a correction).';

------------------------------------------------------------------------------------------------
-- Learning loops
------------------------------------------------------------------------------------------------

CREATE TABLE ruvllm.loop_runs (
    id           bigserial PRIMARY KEY,
    loop         text NOT NULL CHECK (loop IN ('instant', 'background', 'deep', 'oracle')),
    run_by       text NOT NULL DEFAULT 'manual' CHECK (run_by IN ('manual', 'worker')),
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    status       text NOT NULL CHECK (status IN ('ok', 'error')),
    metrics      jsonb NOT NULL DEFAULT '{}',
    error        text
);
CREATE INDEX loop_runs_loop_started ON ruvllm.loop_runs (loop, started_at DESC);
COMMENT ON TABLE ruvllm.loop_runs IS 'One row per run of a learning loop, by the background worker or ruvllm_run_loop.';
COMMENT ON COLUMN ruvllm.loop_runs.id IS 'Run id.';
COMMENT ON COLUMN ruvllm.loop_runs.loop IS 'instant, background, deep, or oracle (by hand only).';
COMMENT ON COLUMN ruvllm.loop_runs.run_by IS 'worker (the background worker) or manual (ruvllm_run_loop).';
COMMENT ON COLUMN ruvllm.loop_runs.started_at IS 'When the run started.';
COMMENT ON COLUMN ruvllm.loop_runs.finished_at IS 'When the run finished.';
COMMENT ON COLUMN ruvllm.loop_runs.status IS 'ok or error.';
COMMENT ON COLUMN ruvllm.loop_runs.metrics IS 'What the run did (rows judged, version trained, clusters, ...).';
COMMENT ON COLUMN ruvllm.loop_runs.error IS 'The error of a failed run.';

CREATE TABLE ruvllm.replay (
    slot          integer PRIMARY KEY CHECK (slot >= 0),
    request_id    uuid NOT NULL,
    features      real[] NOT NULL,
    model         text NOT NULL,
    context_size  integer,
    temperature   real,
    top_p         real,
    quality       real NOT NULL,
    latency_ms    real,
    cost          real,
    oracle        jsonb,
    added_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ruvllm.replay IS 'The router''s replay buffer: a uniform sample (reservoir sampling, ruvllm.replay_capacity slots) of judged requests.';
COMMENT ON COLUMN ruvllm.replay.slot IS 'Reservoir slot, 0 .. capacity - 1.';
COMMENT ON COLUMN ruvllm.replay.request_id IS 'The request the sample comes from.';
COMMENT ON COLUMN ruvllm.replay.features IS 'The router''s 128 input features for that request.';
COMMENT ON COLUMN ruvllm.replay.model IS 'Model that answered.';
COMMENT ON COLUMN ruvllm.replay.context_size IS 'Context size used.';
COMMENT ON COLUMN ruvllm.replay.temperature IS 'Temperature used.';
COMMENT ON COLUMN ruvllm.replay.top_p IS 'top_p used.';
COMMENT ON COLUMN ruvllm.replay.quality IS 'Judged quality in [0, 1].';
COMMENT ON COLUMN ruvllm.replay.latency_ms IS 'Generation latency.';
COMMENT ON COLUMN ruvllm.replay.cost IS 'Relative cost: cost_per_token x completion tokens / 1000.';
COMMENT ON COLUMN ruvllm.replay.oracle IS 'For samples of the oracle loop: the utility every enabled model reached on this question, {"model": utility}.';
COMMENT ON COLUMN ruvllm.replay.added_at IS 'When the sample entered the buffer.';

CREATE TABLE ruvllm.replay_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seen       bigint NOT NULL DEFAULT 0
);
INSERT INTO ruvllm.replay_state DEFAULT VALUES;
COMMENT ON TABLE ruvllm.replay_state IS 'How many samples the replay buffer has been offered (reservoir sampling needs the count).';
COMMENT ON COLUMN ruvllm.replay_state.singleton IS 'Always true: the table has one row.';
COMMENT ON COLUMN ruvllm.replay_state.seen IS 'Samples offered to the replay buffer so far.';

CREATE TABLE ruvllm.patterns (
    id                 serial PRIMARY KEY,
    bank_version       integer NOT NULL,
    centroid           vector(384) NOT NULL,
    count              integer NOT NULL,
    best_model         text,
    best_context_size  integer,
    mean_quality       real,
    created_at         timestamptz NOT NULL DEFAULT now(),
    tenant             text NOT NULL DEFAULT ''
);
CREATE INDEX patterns_bank_version ON ruvllm.patterns (bank_version);
COMMENT ON COLUMN ruvllm.patterns.tenant IS 'Tenant whose questions the cluster is made of: each tenant has a bank of its own.';
COMMENT ON TABLE ruvllm.patterns IS 'Pattern bank of the deep loop: k-means++ clusters of each tenant''s recent query embeddings; the router reads the nearest of its tenant''s as a feature.';
COMMENT ON COLUMN ruvllm.patterns.id IS 'Pattern id.';
COMMENT ON COLUMN ruvllm.patterns.bank_version IS 'Deep-loop run that made the bank; the newest version is in use.';
COMMENT ON COLUMN ruvllm.patterns.centroid IS 'Unit-norm cluster centre.';
COMMENT ON COLUMN ruvllm.patterns.count IS 'Queries in the cluster.';
COMMENT ON COLUMN ruvllm.patterns.best_model IS 'Model with the best mean quality on the cluster''s judged queries.';
COMMENT ON COLUMN ruvllm.patterns.best_context_size IS 'Most used context size among the cluster''s best-quality answers.';
COMMENT ON COLUMN ruvllm.patterns.mean_quality IS 'Mean judged quality of the cluster''s answers.';
COMMENT ON COLUMN ruvllm.patterns.created_at IS 'When the pattern was made.';

CREATE TABLE ruvllm.witness_archive (LIKE ruvllm.witness INCLUDING DEFAULTS);
ALTER TABLE ruvllm.witness_archive ADD PRIMARY KEY (request_id, created_at);
COMMENT ON TABLE ruvllm.witness_archive IS 'Archived witness rows of days that had no daily partition (retention with action archive moves whole partitions to schema ruvllm_archive instead); 0.1.0''s deep loop moved rows here.';

CREATE FUNCTION ruvllm._run_loop(loop text, run_by text) RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import loops, sqlglue
return json.dumps(sqlglue.call(plpy, loops.run, plpy, loop, run_by))
$$;
COMMENT ON FUNCTION ruvllm._run_loop(text, text) IS
    'Runs one learning loop and records the run in ruvllm.loop_runs (internal; the background worker calls it with run_by = worker).';

CREATE FUNCTION public.ruvllm_run_loop(loop text) RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ruvllm._run_loop(loop, 'manual') $$;
COMMENT ON FUNCTION public.ruvllm_run_loop(text) IS
    'Runs one learning loop now: instant (judge, writeback, edge weights, replay), background (router training), deep (pattern bank, memory compression, witness archiving), or oracle (every enabled model answers a sample of past questions; the best utility labels them). Returns the run''s record; a failed run is recorded with its error and raises a WARNING, not an error.';

------------------------------------------------------------------------------------------------
-- For analysts: BI views over the witness log (plain types only)
------------------------------------------------------------------------------------------------

CREATE VIEW ruvllm.requests AS
SELECT w.request_id, w.created_at, w.tenant, w.session_id, w.query, w.response, w.model,
       w.context_size, w.temperature, w.top_p, w.routing_confidence, w.used_default, w.explored,
       w.policy_version, w.confidence, w.quality, w.judge_score, w.groundedness, w.relevance,
       w.rating, w.feedback_at, w.cache_hit, w.error IS NULL AS succeeded, w.error, w.error_sqlstate,
       w.embedding_ms, w.retrieval_ms, w.routing_ms, w.attention_ms, w.generation_ms, w.total_ms,
       w.prompt_tokens, w.completion_tokens,
       COALESCE(cardinality(w.context_node_ids), 0) AS context_nodes,
       m.cost_per_token * COALESCE(w.completion_tokens, 0) / 1000.0 AS cost,
       w.grounded, w.abstained
  FROM ruvllm.witness w LEFT JOIN ruvllm.models m ON m.name = w.model
 WHERE ((SELECT ruvllm._bound_tenant()) IS NULL OR w.tenant = (SELECT ruvllm._bound_tenant()));
COMMENT ON VIEW ruvllm.requests IS 'One row per ruvllm_query call, flat: what was asked, how it was routed and answered, how good it was and how long each stage took.';
COMMENT ON COLUMN ruvllm.requests.request_id IS 'The request_id ruvllm_query returned.';
COMMENT ON COLUMN ruvllm.requests.created_at IS 'When the call started.';
COMMENT ON COLUMN ruvllm.requests.tenant IS 'Tenant of the caller.';
COMMENT ON COLUMN ruvllm.requests.session_id IS 'Session of a multi-turn conversation, if any.';
COMMENT ON COLUMN ruvllm.requests.query IS 'The question (personal data masked).';
COMMENT ON COLUMN ruvllm.requests.response IS 'The answer (personal data masked).';
COMMENT ON COLUMN ruvllm.requests.model IS 'Model that answered.';
COMMENT ON COLUMN ruvllm.requests.context_size IS 'Context size chosen, in tokens.';
COMMENT ON COLUMN ruvllm.requests.temperature IS 'Sampling temperature.';
COMMENT ON COLUMN ruvllm.requests.top_p IS 'Nucleus sampling top_p.';
COMMENT ON COLUMN ruvllm.requests.routing_confidence IS 'Router confidence, 0..1.';
COMMENT ON COLUMN ruvllm.requests.used_default IS 'Whether the safe default decision was used.';
COMMENT ON COLUMN ruvllm.requests.explored IS 'Whether the model was picked at random for exploration.';
COMMENT ON COLUMN ruvllm.requests.policy_version IS 'Router policy version.';
COMMENT ON COLUMN ruvllm.requests.confidence IS 'Memory support of the answer, 0..1.';
COMMENT ON COLUMN ruvllm.requests.quality IS 'Judged quality, 0..1 (NULL until judged).';
COMMENT ON COLUMN ruvllm.requests.judge_score IS 'The LLM judge''s rating, 1..5.';
COMMENT ON COLUMN ruvllm.requests.groundedness IS 'Answer-to-context similarity, 0..1.';
COMMENT ON COLUMN ruvllm.requests.relevance IS 'Answer-to-question similarity, 0..1.';
COMMENT ON COLUMN ruvllm.requests.rating IS 'User rating, 1..5.';
COMMENT ON COLUMN ruvllm.requests.feedback_at IS 'When the user rated it.';
COMMENT ON COLUMN ruvllm.requests.cache_hit IS 'Whether the answer came from the response cache.';
COMMENT ON COLUMN ruvllm.requests.succeeded IS 'Whether the call returned an answer.';
COMMENT ON COLUMN ruvllm.requests.error IS 'Error message of a failed call.';
COMMENT ON COLUMN ruvllm.requests.error_sqlstate IS 'SQLSTATE of a failed call.';
COMMENT ON COLUMN ruvllm.requests.embedding_ms IS 'Milliseconds embedding the question.';
COMMENT ON COLUMN ruvllm.requests.retrieval_ms IS 'Milliseconds of memory search and graph expansion.';
COMMENT ON COLUMN ruvllm.requests.routing_ms IS 'Milliseconds routing.';
COMMENT ON COLUMN ruvllm.requests.attention_ms IS 'Milliseconds ranking the context.';
COMMENT ON COLUMN ruvllm.requests.generation_ms IS 'Milliseconds generating.';
COMMENT ON COLUMN ruvllm.requests.total_ms IS 'Milliseconds for the whole call.';
COMMENT ON COLUMN ruvllm.requests.prompt_tokens IS 'Prompt tokens.';
COMMENT ON COLUMN ruvllm.requests.completion_tokens IS 'Generated tokens.';
COMMENT ON COLUMN ruvllm.requests.context_nodes IS 'Memory nodes given to the model.';
COMMENT ON COLUMN ruvllm.requests.cost IS 'Relative cost: the model''s cost_per_token x generated tokens / 1000.';
COMMENT ON COLUMN ruvllm.requests.grounded IS 'Whether the model''s answer was supported by its evidence (false: replaced by the extractive answer; NULL: not checked).';
COMMENT ON COLUMN ruvllm.requests.abstained IS 'Whether memory had nothing relevant enough and the answer was "Not found in memory."';

CREATE VIEW ruvllm.daily_quality AS
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, model, count(*) AS requests,
       count(quality) AS judged, avg(quality) AS mean_quality, avg(rating) AS mean_rating,
       count(*) FILTER (WHERE quality < 0.5) AS low_quality
  FROM ruvllm.witness WHERE error IS NULL AND ((SELECT ruvllm._bound_tenant()) IS NULL OR tenant = (SELECT ruvllm._bound_tenant()))
 GROUP BY 1, 2;
COMMENT ON VIEW ruvllm.daily_quality IS 'Answer quality per UTC day and model.';
COMMENT ON COLUMN ruvllm.daily_quality.day IS 'UTC day.';
COMMENT ON COLUMN ruvllm.daily_quality.model IS 'Model that answered.';
COMMENT ON COLUMN ruvllm.daily_quality.requests IS 'Answered requests.';
COMMENT ON COLUMN ruvllm.daily_quality.judged IS 'Requests judged so far.';
COMMENT ON COLUMN ruvllm.daily_quality.mean_quality IS 'Mean judged quality, 0..1.';
COMMENT ON COLUMN ruvllm.daily_quality.mean_rating IS 'Mean user rating, 1..5.';
COMMENT ON COLUMN ruvllm.daily_quality.low_quality IS 'Requests judged under 0.5.';

CREATE VIEW ruvllm.daily_latency AS
SELECT (w.created_at AT TIME ZONE 'UTC')::date AS day, w.model, s.stage, count(s.ms) AS requests,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.ms) AS p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY s.ms) AS p99_ms
  FROM ruvllm.witness w
 CROSS JOIN LATERAL (VALUES ('embedding', w.embedding_ms), ('retrieval', w.retrieval_ms),
                            ('routing', w.routing_ms), ('attention', w.attention_ms),
                            ('generation', w.generation_ms), ('total', w.total_ms)) AS s(stage, ms)
 WHERE w.error IS NULL AND s.ms IS NOT NULL AND ((SELECT ruvllm._bound_tenant()) IS NULL OR w.tenant = (SELECT ruvllm._bound_tenant()))
 GROUP BY 1, 2, 3;
COMMENT ON VIEW ruvllm.daily_latency IS 'Latency percentiles per UTC day, model and pipeline stage (embedding, retrieval, routing, attention, generation, total).';
COMMENT ON COLUMN ruvllm.daily_latency.day IS 'UTC day.';
COMMENT ON COLUMN ruvllm.daily_latency.model IS 'Model that answered.';
COMMENT ON COLUMN ruvllm.daily_latency.stage IS 'Pipeline stage.';
COMMENT ON COLUMN ruvllm.daily_latency.requests IS 'Requests with a time for this stage.';
COMMENT ON COLUMN ruvllm.daily_latency.p50_ms IS 'Median milliseconds.';
COMMENT ON COLUMN ruvllm.daily_latency.p95_ms IS '95th percentile, milliseconds.';
COMMENT ON COLUMN ruvllm.daily_latency.p99_ms IS '99th percentile, milliseconds.';

CREATE VIEW ruvllm.model_usage AS
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, model, count(*) AS requests,
       count(*) FILTER (WHERE cache_hit) AS cache_hits, count(*) FILTER (WHERE explored) AS explored,
       sum(completion_tokens) AS completion_tokens, sum(cost) AS cost
  FROM ruvllm.requests WHERE succeeded
 GROUP BY 1, 2;
COMMENT ON VIEW ruvllm.model_usage IS 'Requests, tokens and relative cost per UTC day and model.';
COMMENT ON COLUMN ruvllm.model_usage.day IS 'UTC day.';
COMMENT ON COLUMN ruvllm.model_usage.model IS 'Model.';
COMMENT ON COLUMN ruvllm.model_usage.requests IS 'Answered requests.';
COMMENT ON COLUMN ruvllm.model_usage.cache_hits IS 'Of those, served from the response cache.';
COMMENT ON COLUMN ruvllm.model_usage.explored IS 'Of those, routed at random for exploration.';
COMMENT ON COLUMN ruvllm.model_usage.completion_tokens IS 'Tokens generated.';
COMMENT ON COLUMN ruvllm.model_usage.cost IS 'Relative cost (cost_per_token x tokens / 1000).';

CREATE VIEW ruvllm.problem_requests AS
SELECT request_id, created_at, tenant, model, query, response, quality, rating, error, error_sqlstate,
       CASE WHEN error IS NOT NULL THEN 'failed' ELSE 'low quality' END AS problem
  FROM ruvllm.witness
 WHERE (error IS NOT NULL OR quality < 0.5 OR rating <= 2) AND ((SELECT ruvllm._bound_tenant()) IS NULL OR tenant = (SELECT ruvllm._bound_tenant()));
COMMENT ON VIEW ruvllm.problem_requests IS 'Failed requests, and answers judged under 0.5 or rated 1 or 2.';
COMMENT ON COLUMN ruvllm.problem_requests.request_id IS 'The request.';
COMMENT ON COLUMN ruvllm.problem_requests.created_at IS 'When it was made.';
COMMENT ON COLUMN ruvllm.problem_requests.tenant IS 'Tenant.';
COMMENT ON COLUMN ruvllm.problem_requests.model IS 'Model (NULL when it failed before routing).';
COMMENT ON COLUMN ruvllm.problem_requests.query IS 'The question.';
COMMENT ON COLUMN ruvllm.problem_requests.response IS 'The answer, if any.';
COMMENT ON COLUMN ruvllm.problem_requests.quality IS 'Judged quality.';
COMMENT ON COLUMN ruvllm.problem_requests.rating IS 'User rating.';
COMMENT ON COLUMN ruvllm.problem_requests.error IS 'Error message.';
COMMENT ON COLUMN ruvllm.problem_requests.error_sqlstate IS 'SQLSTATE.';
COMMENT ON COLUMN ruvllm.problem_requests.problem IS 'failed or low quality.';

CREATE VIEW ruvllm.feedback_agreement AS
SELECT model, count(*) AS rated, avg(quality) AS mean_quality, avg((rating - 1) / 4.0) AS mean_rating_scaled,
       corr(judge_score, rating) AS judge_rating_correlation,
       avg(abs((judge_score - 1) / 4.0 - (rating - 1) / 4.0)) AS mean_abs_judge_gap
  FROM ruvllm.witness WHERE rating IS NOT NULL AND ((SELECT ruvllm._bound_tenant()) IS NULL OR tenant = (SELECT ruvllm._bound_tenant()))
 GROUP BY model;
COMMENT ON VIEW ruvllm.feedback_agreement IS 'How well the LLM judge agrees with users'' ratings, per model.';
COMMENT ON COLUMN ruvllm.feedback_agreement.model IS 'Model.';
COMMENT ON COLUMN ruvllm.feedback_agreement.rated IS 'Requests users rated.';
COMMENT ON COLUMN ruvllm.feedback_agreement.mean_quality IS 'Mean quality of those (rating included).';
COMMENT ON COLUMN ruvllm.feedback_agreement.mean_rating_scaled IS 'Mean rating mapped to 0..1.';
COMMENT ON COLUMN ruvllm.feedback_agreement.judge_rating_correlation IS 'Pearson correlation of judge score and rating.';
COMMENT ON COLUMN ruvllm.feedback_agreement.mean_abs_judge_gap IS 'Mean |judge - rating| on the 0..1 scale.';

------------------------------------------------------------------------------------------------
-- Audit search, health and metrics
------------------------------------------------------------------------------------------------

CREATE FUNCTION public.ruvllm_witness_search(query text, k integer DEFAULT 10,
                                             since timestamptz DEFAULT NULL, max_quality real DEFAULT NULL)
RETURNS TABLE (request_id uuid, created_at timestamptz, similarity real, question text, answer text,
               model text, quality real, error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    this_tenant text := public.ruvllm_current_tenant();
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'query must not be empty' USING ERRCODE = '22023';
    END IF;
    IF k IS NULL OR k NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000, not %', k USING ERRCODE = '22003';
    END IF;
    RETURN QUERY
    WITH q AS (SELECT public.ruvllm_embed(ruvllm_witness_search.query) AS v)
    SELECT w.request_id, w.created_at,
           (1 - (w.query_embedding OPERATOR(public.<=>) q.v))::real, w.query, w.response, w.model,
           w.quality, w.error
      FROM ruvllm.witness w, q
     WHERE w.query_embedding IS NOT NULL
       AND w.tenant = this_tenant
       AND (since IS NULL OR w.created_at >= since)
       AND (max_quality IS NULL OR w.quality <= max_quality)
     ORDER BY w.query_embedding OPERATOR(public.<=>) q.v
     LIMIT k;
END
$$;
COMMENT ON FUNCTION public.ruvllm_witness_search(text, integer, timestamptz, real) IS
    'Witnessed requests of this tenant most similar to a question ("requests like this one"), optionally since a time and at most a quality ("similar poor answers").';

CREATE FUNCTION public.ruvllm_health() RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import operations, sqlglue
return json.dumps(sqlglue.call(plpy, operations.health, plpy))
$$;
COMMENT ON FUNCTION public.ruvllm_health() IS
    'Health of ruvllm in this database: memory size, router policy, models loadable with matching checksums, worker and witness writer alive, witness queue depth, and overall healthy | degraded | critical.';

CREATE FUNCTION public.ruvllm_metrics() RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import operations, sqlglue
return sqlglue.call(plpy, operations.metrics, plpy)
$$;
COMMENT ON FUNCTION public.ruvllm_metrics() IS
    'Metrics in the Prometheus text exposition format (requests by status, cache hits, writebacks, model selections, stage latency histograms, replay size, mean quality), for a scraper such as postgres_exporter.';

------------------------------------------------------------------------------------------------
-- Retention (for DBAs)
------------------------------------------------------------------------------------------------

CREATE SCHEMA ruvllm_archive;
COMMENT ON SCHEMA ruvllm_archive IS 'Expired witness partitions kept by retention with action archive (plain tables: query, dump or drop them).';

CREATE TABLE ruvllm.retention (
    target      text PRIMARY KEY CHECK (target IN ('witness', 'sessions', 'loop_runs', 'response_cache')),
    keep        interval NOT NULL CHECK (keep > interval '0' AND keep <= interval '100 years'),
    action      text NOT NULL DEFAULT 'drop' CHECK (action IN ('drop', 'archive')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE ruvllm.retention IS 'How long ruvllm keeps each kind of data; set with ruvllm_set_retention, enforced by ruvllm_apply_retention (the deep loop runs it).';
COMMENT ON COLUMN ruvllm.retention.target IS 'witness, sessions, loop_runs or response_cache.';
COMMENT ON COLUMN ruvllm.retention.keep IS 'Age after which data is removed.';
COMMENT ON COLUMN ruvllm.retention.action IS 'For the witness: drop expired daily partitions, or archive them (moved to schema ruvllm_archive).';
COMMENT ON COLUMN ruvllm.retention.updated_at IS 'When the setting was last changed.';
COMMENT ON COLUMN ruvllm.retention.updated_by IS 'Who changed it.';

CREATE FUNCTION public.ruvllm_set_retention(what text, keep interval, action text DEFAULT 'drop')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF what IS NULL OR keep IS NULL OR action IS NULL THEN
        RAISE EXCEPTION 'what, keep and action must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF what NOT IN ('witness', 'sessions', 'loop_runs', 'response_cache') THEN
        RAISE EXCEPTION 'unknown retention target "%"', what USING ERRCODE = '22023',
            HINT = 'Targets: witness, sessions, loop_runs, response_cache.';
    END IF;
    IF keep < interval '1 hour' OR keep > interval '100 years' THEN
        RAISE EXCEPTION 'keep must be between 1 hour and 100 years, not %', keep
            USING ERRCODE = '22023', HINT = 'Retention runs at most hourly (the deep loop); witness days go whole.';
    END IF;
    IF action NOT IN ('drop', 'archive') OR (action = 'archive' AND what <> 'witness') THEN
        RAISE EXCEPTION 'action must be drop, or archive for the witness, not "%"', action
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO ruvllm.retention (target, keep, action) VALUES (what, keep, action)
    ON CONFLICT (target) DO UPDATE SET keep = EXCLUDED.keep, action = EXCLUDED.action,
        updated_at = now(), updated_by = current_user;
END
$$;
COMMENT ON FUNCTION public.ruvllm_set_retention(text, interval, text) IS
    'Sets how long to keep witness rows, sessions, loop runs or response cache entries; for the witness, action drop or archive says what happens to expired daily partitions.';

CREATE FUNCTION public.ruvllm_apply_retention() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule record;
    part record;
    cutoff timestamptz;
    done jsonb := '{}';
    n bigint;
    parts text[];
BEGIN
    PERFORM ruvllm.witness_make_partitions(7);
    -- Without a witness setting, whole days are archived after ruvllm.witness_archive_after.
    FOR rule IN SELECT r.target, r.keep, r.action FROM ruvllm.retention r
                UNION ALL
                SELECT 'witness', make_interval(secs => s.setting::float8), 'archive'
                  FROM pg_settings s
                 WHERE s.name = 'ruvllm.witness_archive_after'
                   AND NOT EXISTS (SELECT FROM ruvllm.retention r WHERE r.target = 'witness')
                ORDER BY 1
    LOOP
        cutoff := now() - rule.keep;
        IF rule.target = 'witness' THEN
            -- Whole days past the cutoff go as partitions: the time does not depend on row count.
            parts := '{}';
            FOR part IN
                SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'ruvllm.witness'::regclass AND c.relname ~ '^witness_p[0-9]{8}$'
                   AND ((to_date(substr(c.relname, 10), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC') <= cutoff
                 ORDER BY c.relname
            LOOP
                EXECUTE format('ALTER TABLE ruvllm.witness DETACH PARTITION ruvllm.%I', part.relname);
                IF rule.action = 'archive' THEN
                    EXECUTE format('ALTER TABLE ruvllm.%I SET SCHEMA ruvllm_archive', part.relname);
                    EXECUTE format('GRANT SELECT ON ruvllm_archive.%I TO ruvllm_admin', part.relname);
                ELSE
                    EXECUTE format('DROP TABLE ruvllm.%I', part.relname);
                END IF;
                parts := parts || part.relname::text;
            END LOOP;
            -- Rows of days without a partition (normally none) go row by row.
            IF rule.action = 'archive' THEN
                WITH moved AS (DELETE FROM ruvllm.witness_default WHERE created_at < cutoff RETURNING *)
                INSERT INTO ruvllm.witness_archive SELECT * FROM moved;
            ELSE
                DELETE FROM ruvllm.witness_default WHERE created_at < cutoff;
            END IF;
            GET DIAGNOSTICS n = ROW_COUNT;
            done := done || jsonb_build_object('witness', jsonb_build_object(
                'partitions', to_jsonb(parts), 'action', rule.action, 'keep', rule.keep,
                'default_rows_deleted', CASE WHEN rule.action = 'drop' THEN n ELSE 0 END,
                'default_rows_archived', CASE WHEN rule.action = 'archive' THEN n ELSE 0 END));
        ELSIF rule.target = 'sessions' THEN
            DELETE FROM ruvllm.sessions WHERE last_active < cutoff;
            GET DIAGNOSTICS n = ROW_COUNT;
            done := done || jsonb_build_object('sessions', n);
        ELSIF rule.target = 'loop_runs' THEN
            DELETE FROM ruvllm.loop_runs WHERE finished_at < cutoff;
            GET DIAGNOSTICS n = ROW_COUNT;
            done := done || jsonb_build_object('loop_runs', n);
        ELSIF rule.target = 'response_cache' THEN
            DELETE FROM ruvllm.response_cache WHERE created_at < cutoff OR expires_at < now();
            GET DIAGNOSTICS n = ROW_COUNT;
            done := done || jsonb_build_object('response_cache', n);
        END IF;
    END LOOP;
    RETURN done;
END
$$;
COMMENT ON FUNCTION public.ruvllm_apply_retention() IS
    'Applies ruvllm.retention now: makes the witness partitions of the next 7 days, drops or archives witness partitions past their keep period (whole days, in time independent of row count; without a witness setting, archives after ruvllm.witness_archive_after), deletes expired sessions, loop runs and cache entries. The deep loop runs it too.';

-- The graph has no tenant column and AGE's Cypher executor writes without checking privileges
-- (SET, DELETE and MERGE changed other tenants' edges through cypher()), so users write the graph
-- only with SQL (the library refuses their Cypher writes: extension/graph_guard.c), where these
-- triggers hold every new edge to memory's row-level security: both ends must be nodes the
-- inserting role can see. Roles that bypass row-level security (the
-- owner: the worker, a restore) are not checked.
CREATE FUNCTION ruvllm._edges_within_tenant() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF row_security_active('ruvllm.nodes') AND EXISTS (
        SELECT FROM new_edges e
         WHERE NOT EXISTS (SELECT FROM ruvllm.nodes n WHERE n.graph_id OPERATOR(ag_catalog.=) e.start_id)
            OR NOT EXISTS (SELECT FROM ruvllm.nodes n WHERE n.graph_id OPERATOR(ag_catalog.=) e.end_id)) THEN
        RAISE EXCEPTION 'permission denied: a new % edge joins a node this role cannot see', TG_TABLE_NAME
            USING ERRCODE = '42501', HINT = 'Link memory nodes of your own tenant with ruvllm_link().';
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ruvllm._edges_within_tenant() IS
    'Trigger function: refuses new graph edges whose ends are not memory nodes the inserting role can see (internal).';
DO $$
DECLARE
    rel text;
BEGIN
    FOREACH rel IN ARRAY ARRAY['Cites', 'Follows', 'SameTopic', 'AgentStep', 'Derived'] LOOP
        EXECUTE format('CREATE TRIGGER edges_within_tenant AFTER INSERT ON ruvllm_graph.%I
                            REFERENCING NEW TABLE AS new_edges
                            FOR EACH STATEMENT EXECUTE FUNCTION ruvllm._edges_within_tenant()', rel);
        EXECUTE format('COMMENT ON TRIGGER edges_within_tenant ON ruvllm_graph.%I IS %L', rel,
                       'New edges must join memory nodes the inserting role can see (row-level security of ruvllm.nodes).');
    END LOOP;
END
$$;

------------------------------------------------------------------------------------------------
-- Inference servers: generation as a shared service
------------------------------------------------------------------------------------------------

-- With ruvllm.inference = server, backends generate through llama.cpp servers that the
-- supervisor background worker runs (extension/inference_server.c); remote sends the same requests
-- to ruvllm.inference_url. The backend that answers holds no model.
CREATE FUNCTION ruvllm._inference_servers()
RETURNS TABLE (server integer, model text, state text, pid integer, port integer, restarts integer,
               started_at timestamptz, last_error text)
    AS 'MODULE_PATHNAME', 'ruvllm_inference_servers' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION ruvllm._inference_servers() IS
    'The supervised inference servers as the supervisor last left them: model file, state (running, restarting, stopped), pid, loopback port, restarts, last error (internal; the pipeline finds its server here).';

CREATE FUNCTION ruvllm._inference_slots_busy(port integer) RETURNS integer
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import inference
return inference.slots_busy(port)
$$;
COMMENT ON FUNCTION ruvllm._inference_slots_busy(integer) IS
    'Slots of the supervised inference server on this loopback port that are generating now, from its /slots (NULL: it does not answer; internal).';

CREATE VIEW ruvllm.inference_servers AS
SELECT s.server, s.model, s.state, s.pid, s.port, s.restarts, s.started_at,
       CASE WHEN s.state = 'running' THEN ruvllm._inference_slots_busy(s.port) END AS slots_busy,
       s.last_error
  FROM ruvllm._inference_servers() AS s;
COMMENT ON VIEW ruvllm.inference_servers IS
    'One row per supervised inference server (ruvllm.inference = server): model file, state, pid, port, restarts, when it started, slots generating now, last error.';
COMMENT ON COLUMN ruvllm.inference_servers.server IS 'Position of the model in ruvllm.inference_models (0 first).';
COMMENT ON COLUMN ruvllm.inference_servers.model IS 'The GGUF file the server serves.';
COMMENT ON COLUMN ruvllm.inference_servers.state IS 'running, restarting (exited; started again after its backoff) or stopped.';
COMMENT ON COLUMN ruvllm.inference_servers.pid IS 'Process id of the server (NULL while it is not running).';
COMMENT ON COLUMN ruvllm.inference_servers.port IS 'Loopback port it listens on (127.0.0.1).';
COMMENT ON COLUMN ruvllm.inference_servers.restarts IS 'How often the supervisor started it again after it exited.';
COMMENT ON COLUMN ruvllm.inference_servers.started_at IS 'When the running server was started.';
COMMENT ON COLUMN ruvllm.inference_servers.slots_busy IS 'Slots generating now, from the server''s /slots (NULL: it does not answer).';
COMMENT ON COLUMN ruvllm.inference_servers.last_error IS 'Why it last exited or could not start (NULL: never).';

CREATE FUNCTION public.ruvllm_query_stream(query text, session_id text DEFAULT NULL, constraints jsonb DEFAULT '{}')
RETURNS TABLE (seq integer, token text, response jsonb)
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import inference, query as pipeline, sqlglue
return sqlglue.call_rows(plpy, inference.stream_rows, plpy, pipeline.run, query, session_id, constraints)
$$;
COMMENT ON FUNCTION public.ruvllm_query_stream(text, text, jsonb) IS
    'ruvllm_query, streamed: one row per piece of the answer as it is generated (read it through a cursor to see them as they come), then a last row with token NULL and response what ruvllm_query returns; the same witness row.';

------------------------------------------------------------------------------------------------
-- Backups: what pg_dump saves
------------------------------------------------------------------------------------------------

-- Tables an extension creates are its members, and pg_dump leaves their rows out unless the
-- extension registers them; the definitions come back with CREATE EXTENSION at restore. Every
-- table that holds data is registered, with the sequences behind its keys, and the graph's label
-- tables too: AGE's catalog rows for a graph do not survive a logical dump (ag_graph.graphid is a
-- bare namespace oid), so the graph itself is made anew by CREATE EXTENSION and only its vertices
-- and edges are restored, with the same ids that ruvllm.nodes.graph_id holds. Witness partitions
-- made at run time and archived partitions are ordinary tables, which pg_dump saves whole.
-- One call a statement: each call updates the extension's catalog row.
DO $$
DECLARE
    t regclass;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'ruvllm.tenants', 'ruvllm.tenant_roles', 'ruvllm.nodes', 'ruvllm.node_access', 'ruvllm.node_units',
        'ruvllm.lexical_stats', 'ruvllm.models', 'ruvllm.policies', 'ruvllm.policies_version_seq',
        'ruvllm.witness_default', 'ruvllm.witness_archive',
        'ruvllm.sessions', 'ruvllm.response_cache', 'ruvllm.response_cache_id_seq',
        'ruvllm.loop_runs', 'ruvllm.loop_runs_id_seq', 'ruvllm.replay', 'ruvllm.replay_state',
        'ruvllm.patterns', 'ruvllm.patterns_id_seq', 'ruvllm.retention',
        'ruvllm_graph._label_id_seq',
        'ruvllm_graph."Node"', 'ruvllm_graph."Node_id_seq"',
        'ruvllm_graph."Cites"', 'ruvllm_graph."Cites_id_seq"',
        'ruvllm_graph."Follows"', 'ruvllm_graph."Follows_id_seq"',
        'ruvllm_graph."SameTopic"', 'ruvllm_graph."SameTopic_id_seq"',
        'ruvllm_graph."AgentStep"', 'ruvllm_graph."AgentStep_id_seq"',
        'ruvllm_graph."Derived"', 'ruvllm_graph."Derived_id_seq"',
        'ruvllm.witness_writer_state']::regclass[] LOOP
        PERFORM pg_catalog.pg_extension_config_dump(t, '');
    END LOOP;
END
$$;

-- CREATE EXTENSION seeds a few rows (the bundled models, policy version 1, the replay counter)
-- before a restore loads the dumped ones: a dumped row takes the seeded row's place instead of
-- failing its table's whole COPY on the key.
CREATE FUNCTION ruvllm._restored_row_replaces_seed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'models' THEN
        IF NEW.name IN ('smollm2-135m-instruct', 'gemma-3-270m', 'extractive') THEN
            DELETE FROM ruvllm.models WHERE name = NEW.name;
        END IF;
    ELSIF TG_TABLE_NAME = 'policies' THEN
        -- Updated in place: later versions may already name version 1 as their parent.
        IF NEW.version = 1 THEN
            UPDATE ruvllm.policies
               SET status = NEW.status, router = NEW.router, model_names = NEW.model_names,
                   metrics = NEW.metrics, reason = NEW.reason, parent_version = NEW.parent_version,
                   created_at = NEW.created_at, promoted_at = NEW.promoted_at
             WHERE version = 1;
            IF FOUND THEN
                RETURN NULL;
            END IF;
        END IF;
    ELSIF TG_TABLE_NAME = 'replay_state' THEN
        UPDATE ruvllm.replay_state SET seen = NEW.seen WHERE singleton;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ruvllm._restored_row_replaces_seed() IS
    'Trigger function: a restored row of a bundled model, of policy version 1 or of the replay counter replaces the row CREATE EXTENSION seeded (internal).';
CREATE TRIGGER restored_row_replaces_seed BEFORE INSERT ON ruvllm.models
    FOR EACH ROW EXECUTE FUNCTION ruvllm._restored_row_replaces_seed();
CREATE TRIGGER restored_row_replaces_seed BEFORE INSERT ON ruvllm.policies
    FOR EACH ROW EXECUTE FUNCTION ruvllm._restored_row_replaces_seed();
CREATE TRIGGER restored_row_replaces_seed BEFORE INSERT ON ruvllm.replay_state
    FOR EACH ROW EXECUTE FUNCTION ruvllm._restored_row_replaces_seed();
COMMENT ON TRIGGER restored_row_replaces_seed ON ruvllm.models IS
    'A restored row of a bundled model replaces the one CREATE EXTENSION made.';
COMMENT ON TRIGGER restored_row_replaces_seed ON ruvllm.policies IS
    'A restored policy version 1 replaces the untrained one CREATE EXTENSION made.';
COMMENT ON TRIGGER restored_row_replaces_seed ON ruvllm.replay_state IS
    'A restored replay counter replaces the one CREATE EXTENSION made.';

-- AGE registers its catalog tables for dumping, so a dump carries AGE's rows for ruvllm_graph
-- too; at restore they would collide with the rows CREATE EXTENSION ruvllm has just made (and
-- point at the old database's oids). These triggers drop exactly those rows; other graphs' rows
-- are loaded as AGE would.
CREATE FUNCTION ruvllm._skip_restored_graph_catalog() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'ag_graph' THEN
        IF NEW.name = 'ruvllm_graph' AND EXISTS (SELECT FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph') THEN
            RETURN NULL;
        END IF;
    ELSIF EXISTS (SELECT FROM ag_catalog.ag_label l JOIN ag_catalog.ag_graph g ON g.graphid = l.graph
                   WHERE g.name = 'ruvllm_graph' AND l.relation = NEW.relation) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ruvllm._skip_restored_graph_catalog() IS
    'Trigger function: skips a restored AGE catalog row of ruvllm_graph that CREATE EXTENSION ruvllm already made (internal).';
CREATE TRIGGER ruvllm_skip_restored_graph BEFORE INSERT ON ag_catalog.ag_graph
    FOR EACH ROW EXECUTE FUNCTION ruvllm._skip_restored_graph_catalog();
CREATE TRIGGER ruvllm_skip_restored_graph BEFORE INSERT ON ag_catalog.ag_label
    FOR EACH ROW EXECUTE FUNCTION ruvllm._skip_restored_graph_catalog();
COMMENT ON TRIGGER ruvllm_skip_restored_graph ON ag_catalog.ag_graph IS
    'ruvllm: a restored ag_graph row of ruvllm_graph is skipped; CREATE EXTENSION ruvllm made the graph anew.';
COMMENT ON TRIGGER ruvllm_skip_restored_graph ON ag_catalog.ag_label IS
    'ruvllm: a restored ag_label row of ruvllm_graph is skipped; CREATE EXTENSION ruvllm made the labels anew.';

------------------------------------------------------------------------------------------------
-- Row-level security and privileges
------------------------------------------------------------------------------------------------

-- Row-level security: a session reads and writes only its tenant's rows. The extension's owner
-- and superusers (the background worker, the witness writer) are not subject to it; ruvllm_admin
-- works across tenants by policy. (SELECT ...) makes the tenant an InitPlan: looked up once per
-- statement, not per row.
ALTER TABLE ruvllm.nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.nodes
    USING (tenant = (SELECT public.ruvllm_current_tenant()))
    WITH CHECK (tenant = (SELECT public.ruvllm_current_tenant()));
CREATE POLICY admin_rows ON ruvllm.nodes TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.nodes IS 'Memory of the session''s tenant only (ruvllm_current_tenant()).';
COMMENT ON POLICY admin_rows ON ruvllm.nodes IS 'ruvllm_admin sees and changes every tenant''s memory.';

ALTER TABLE ruvllm.node_access ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.node_access
    USING (EXISTS (SELECT FROM ruvllm.nodes n WHERE n.id = node_id))
    WITH CHECK (EXISTS (SELECT FROM ruvllm.nodes n WHERE n.id = node_id));
CREATE POLICY admin_rows ON ruvllm.node_access TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.node_access IS 'Accesses of memory nodes the session may see (row-level security of ruvllm.nodes).';
COMMENT ON POLICY admin_rows ON ruvllm.node_access IS 'ruvllm_admin sees every tenant''s accesses.';

ALTER TABLE ruvllm.node_units ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.node_units
    USING (EXISTS (SELECT FROM ruvllm.nodes n WHERE n.id = node_id))
    WITH CHECK (EXISTS (SELECT FROM ruvllm.nodes n WHERE n.id = node_id));
CREATE POLICY admin_rows ON ruvllm.node_units TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.node_units IS 'Unit vectors of memory nodes the session may see (row-level security of ruvllm.nodes).';
COMMENT ON POLICY admin_rows ON ruvllm.node_units IS 'ruvllm_admin sees every tenant''s unit vectors.';

ALTER TABLE ruvllm.lexical_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.lexical_stats
    USING (tenant = (SELECT public.ruvllm_current_tenant()))
    WITH CHECK (tenant = (SELECT public.ruvllm_current_tenant()));
CREATE POLICY admin_rows ON ruvllm.lexical_stats TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.lexical_stats IS 'Term statistics of the session''s tenant only: no tenant learns how often a word occurs in another''s memory.';
COMMENT ON POLICY admin_rows ON ruvllm.lexical_stats IS 'ruvllm_admin sees every tenant''s term statistics.';

ALTER TABLE ruvllm.witness ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.witness
    USING (tenant = (SELECT public.ruvllm_current_tenant()))
    WITH CHECK (tenant = (SELECT public.ruvllm_current_tenant()));
CREATE POLICY admin_rows ON ruvllm.witness TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.witness IS 'Witness rows of the session''s tenant only (ruvllm_current_tenant()).';
COMMENT ON POLICY admin_rows ON ruvllm.witness IS 'ruvllm_admin sees every tenant''s witness rows.';

ALTER TABLE ruvllm.sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.sessions
    USING (tenant = (SELECT public.ruvllm_current_tenant()))
    WITH CHECK (tenant = (SELECT public.ruvllm_current_tenant()));
CREATE POLICY admin_rows ON ruvllm.sessions TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.sessions IS 'Sessions of the session''s tenant only (ruvllm_current_tenant()).';
COMMENT ON POLICY admin_rows ON ruvllm.sessions IS 'ruvllm_admin sees every tenant''s sessions.';

ALTER TABLE ruvllm.response_cache ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.response_cache
    USING (tenant = (SELECT public.ruvllm_current_tenant()))
    WITH CHECK (tenant = (SELECT public.ruvllm_current_tenant()));
CREATE POLICY admin_rows ON ruvllm.response_cache TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.response_cache IS 'Cached answers of the session''s tenant only: another tenant''s answer is never served.';
COMMENT ON POLICY admin_rows ON ruvllm.response_cache IS 'ruvllm_admin sees every tenant''s cache entries.';

ALTER TABLE ruvllm.patterns ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.patterns
    USING (tenant = (SELECT public.ruvllm_current_tenant()))
    WITH CHECK (tenant = (SELECT public.ruvllm_current_tenant()));
CREATE POLICY admin_rows ON ruvllm.patterns TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.patterns IS 'The pattern bank of the session''s tenant only: no tenant''s routing reads clusters of another''s questions.';
COMMENT ON POLICY admin_rows ON ruvllm.patterns IS 'ruvllm_admin sees every tenant''s pattern bank.';

-- Privileges. Nothing of ruvllm is open to PUBLIC; each role gets what its job needs. The
-- functions run as their caller (so row-level security applies to them), except the few marked
-- SECURITY DEFINER: retention and witness partitions (DDL needs the tables' owner) and the tenant
-- lookup.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ruvllm FROM PUBLIC;
-- The user functions in public: revoked from PUBLIC, all of them granted to ruvllm_admin.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'ruvllm\_%'
                AND EXISTS (SELECT FROM pg_catalog.pg_depend d
                             WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                               AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
                               AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'ruvllm'))
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO ruvllm_admin', f);
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA ruvllm TO ruvllm_user, ruvllm_analyst, ruvllm_admin;
GRANT USAGE ON SCHEMA ruvllm_graph TO ruvllm_user, ruvllm_admin;
-- AGE's types and operators (graphid, agtype) are on the memory hot path.
GRANT USAGE ON SCHEMA ag_catalog TO ruvllm_user, ruvllm_admin;
GRANT USAGE, CREATE ON SCHEMA ruvllm_archive TO ruvllm_admin;

-- ruvllm_user: ask, give feedback, search, add to memory. Of the internal functions only those
-- that the functions a user calls run as that user need: the Python bootstrap (_python_dir,
-- _library_version, _python_setup), the tenant lookup behind ruvllm_current_tenant(), the queue's
-- counters behind ruvllm_witness_flush and the inference servers' address and key. None of them
-- writes; witness rows and ratings go through the library (ruvllm_witness_submit, _rate).
GRANT EXECUTE ON FUNCTION
    public.ruvllm_info(), public.ruvllm_current_tenant(),
    public.ruvllm_generate(text, integer, text),
    public.ruvllm_embed(text), public.ruvllm_embed(text[]),
    public.ruvllm_ingest(text, text, text, jsonb), public.ruvllm_ingest_many(text[], text, text[], jsonb[]),
    public.ruvllm_ingest_many(jsonb), public.ruvllm_store_unit_vectors(integer),
    public.ruvllm_link(uuid, uuid, text, real),
    public.ruvllm_search(text, integer, integer, text, jsonb),
    public.ruvllm_query(text, text, jsonb), public.ruvllm_query_row(text, text, jsonb),
    public.ruvllm_route(text), public.ruvllm_feedback(uuid, integer, text),
    public.ruvllm_witness_search(text, integer, timestamptz, real),
    public.ruvllm_witness_flush(integer),
    ruvllm._python_dir(), ruvllm._library_version(), ruvllm._python_setup(),
    ruvllm._witness_queue_stats(), ruvllm._tenant_lookup(name, text),
    public.ruvllm_query_stream(text, text, jsonb),
    ruvllm._inference_servers(),
    ruvllm._bm25(tsvector, text[], float8[], float8, float8, float8),
    ruvllm._term_coverage(tsvector, text[], float8[]), ruvllm._vector_recv(bytea)
    TO ruvllm_user;
GRANT SELECT, INSERT, UPDATE ON ruvllm.nodes, ruvllm.node_access, ruvllm.sessions,
    ruvllm.response_cache TO ruvllm_user;
GRANT SELECT, INSERT ON ruvllm.lexical_stats TO ruvllm_user;
GRANT SELECT, INSERT, UPDATE ON ruvllm.node_units TO ruvllm_user;
-- The witness log is read-only to users: ruvllm's library writes their rows and their ratings.
GRANT SELECT ON ruvllm.witness TO ruvllm_user;
GRANT SELECT ON ruvllm.models, ruvllm.policies, ruvllm.patterns TO ruvllm_user;
GRANT USAGE ON SEQUENCE ruvllm.response_cache_id_seq TO ruvllm_user;
-- The graph has no tenant column (its vertices carry only node ids): users add vertices and edges
-- but change none; the learning loops, which adjust and prune edges, run as admin or the owner.
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA ruvllm_graph TO ruvllm_user;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ruvllm_graph TO ruvllm_user;

-- ruvllm_analyst: the BI views, nothing else.
GRANT SELECT ON ruvllm.requests, ruvllm.daily_quality, ruvllm.daily_latency, ruvllm.model_usage,
    ruvllm.problem_requests, ruvllm.feedback_agreement TO ruvllm_analyst;
GRANT EXECUTE ON FUNCTION ruvllm._bound_tenant(), ruvllm._tenant_lookup(name, text) TO ruvllm_analyst;

-- ruvllm_admin: everything of ruvllm, and the ruvllm.* settings.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ruvllm TO ruvllm_admin;
-- Parameter privileges are cluster-wide, like the roles; granting them again changes nothing.
DO $$
DECLARE
    setting text;
BEGIN
    FOR setting IN SELECT name FROM pg_catalog.pg_settings WHERE name LIKE 'ruvllm.%' ORDER BY name LOOP
        EXECUTE format('GRANT SET, ALTER SYSTEM ON PARAMETER %s TO ruvllm_admin', setting);
    END LOOP;
END
$$;
GRANT ALL ON ALL TABLES IN SCHEMA ruvllm TO ruvllm_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA ruvllm TO ruvllm_admin;
GRANT ALL ON ALL TABLES IN SCHEMA ruvllm_graph TO ruvllm_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA ruvllm_graph TO ruvllm_admin;
