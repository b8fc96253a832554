-- ruvllm 0.2.0 -> 0.3.0 upgrade script. Every statement here is also in sql/ruvllm.sql, where
-- the object is defined; tests/integration/test_upgrade.py checks that both give the same catalog.
\echo Use "ALTER EXTENSION ruvllm UPDATE TO '0.3.0'" to load this file. \quit

-- Witness partitions are no longer extension members (pg_dump saves them as ordinary tables);
-- the ones 0.2.0 made at install become ordinary tables too. The writer makes new ones.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT d.objid::regclass FROM pg_catalog.pg_depend d
                  JOIN pg_catalog.pg_class c ON c.oid = d.objid
                 WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
                   AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                   AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'ruvllm')
                   AND c.relnamespace = 'ruvllm'::regnamespace AND c.relispartition
                   AND c.relname ~ '^witness_p[0-9]{8}$'
    LOOP
        EXECUTE format('ALTER EXTENSION ruvllm DROP TABLE %s', part);
    END LOOP;
END
$$;

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

-- The partitions are detached first, so their keys and indexes stay as their own (no rebuild),
-- then the partitioned table's are dropped and the partitions attached again.
DO $$
DECLARE
    part record;
    rels regclass[] := '{}';
    bounds text[] := '{}';
BEGIN
    FOR part IN SELECT c.oid::regclass AS rel, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound
                  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'ruvllm.witness'::regclass
    LOOP
        EXECUTE format('ALTER TABLE ruvllm.witness DETACH PARTITION %s', part.rel);
        rels := rels || part.rel;
        bounds := bounds || part.bound;
    END LOOP;
    DROP INDEX ruvllm.witness_query_embedding, ruvllm.witness_created_at;
    ALTER TABLE ruvllm.witness DROP CONSTRAINT witness_pkey;
    FOR i IN 1 .. coalesce(array_length(rels, 1), 0) LOOP
        EXECUTE format('ALTER TABLE ruvllm.witness ATTACH PARTITION %s %s', rels[i], bounds[i]);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION ruvllm.witness_make_partitions(days_ahead integer DEFAULT 7) RETURNS integer
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

CREATE OR REPLACE FUNCTION ruvllm._witness_write(rows text[]) RETURNS integer
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

CREATE OR REPLACE FUNCTION ruvllm._drop_graph() RETURNS void
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
        'ruvllm.tenants', 'ruvllm.tenant_roles', 'ruvllm.nodes', 'ruvllm.node_access',
        'ruvllm.models', 'ruvllm.policies', 'ruvllm.policies_version_seq',
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
        'ruvllm_graph."Derived"', 'ruvllm_graph."Derived_id_seq"']::regclass[] LOOP
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

REVOKE ALL ON FUNCTION ruvllm._witness_index_partition(regclass), ruvllm._restored_row_replaces_seed(),
    ruvllm._skip_restored_graph_catalog() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvllm._witness_index_partition(regclass), ruvllm._restored_row_replaces_seed(),
    ruvllm._skip_restored_graph_catalog() TO ruvllm_admin;

-- The tenant lookup answers only for roles the session may act as (issue: registry leaks).
CREATE OR REPLACE FUNCTION ruvllm._tenant_lookup(role_name name, setting text, OUT bound text, OUT known boolean)
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

-- NaN passed cost_per_token >= 0 (PostgreSQL orders NaN above every number).
ALTER TABLE ruvllm.models DROP CONSTRAINT models_cost_per_token_check,
    ADD CONSTRAINT models_cost_per_token_check CHECK (cost_per_token >= 0 AND cost_per_token < 'Infinity');

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
REVOKE ALL ON FUNCTION ruvllm._edges_within_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvllm._edges_within_tenant() TO ruvllm_admin;

-- ruvllm_route and ruvllm_feedback call the modules they moved to (python: routing.py, feedback.py).
CREATE OR REPLACE FUNCTION public.ruvllm_route(query text) RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import routing, sqlglue
return json.dumps(sqlglue.call(plpy, routing.route, plpy, query))
$$;

CREATE OR REPLACE FUNCTION public.ruvllm_feedback(request_id uuid, rating integer, correction text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
from ruvllm import feedback, sqlglue
return sqlglue.call(plpy, feedback.give, plpy, request_id, rating, correction)
$$;

-- Retention of at least an hour; tenant names start with a letter or digit (issue 12, finding 8).
CREATE OR REPLACE FUNCTION public.ruvllm_set_retention(what text, keep interval, action text DEFAULT 'drop')
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

CREATE OR REPLACE FUNCTION public.ruvllm_create_tenant(tenant text, roles regrole[] DEFAULT '{}',
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

-- The pattern bank per tenant (0.2.0's mixed every tenant's questions: dropped, the deep loop
-- builds the new ones).
DELETE FROM ruvllm.patterns;
ALTER TABLE ruvllm.patterns ADD COLUMN tenant text NOT NULL DEFAULT '';
COMMENT ON COLUMN ruvllm.patterns.tenant IS 'Tenant whose questions the cluster is made of: each tenant has a bank of its own.';
COMMENT ON TABLE ruvllm.patterns IS 'Pattern bank of the deep loop: k-means++ clusters of each tenant''s recent query embeddings; the router reads the nearest of its tenant''s as a feature.';
ALTER TABLE ruvllm.patterns ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.patterns
    USING (tenant = (SELECT public.ruvllm_current_tenant()))
    WITH CHECK (tenant = (SELECT public.ruvllm_current_tenant()));
CREATE POLICY admin_rows ON ruvllm.patterns TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.patterns IS 'The pattern bank of the session''s tenant only: no tenant''s routing reads clusters of another''s questions.';
COMMENT ON POLICY admin_rows ON ruvllm.patterns IS 'ruvllm_admin sees every tenant''s pattern bank.';
-- The witness queue survives a backend crash and an immediate shutdown, and accounts for what it
-- did: _witness_queue_stats has more columns, and the writer records its progress in a table.
DROP FUNCTION ruvllm._witness_queue_stats();
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

REVOKE ALL ON FUNCTION ruvllm._witness_queue_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvllm._witness_queue_stats() TO ruvllm_user;
GRANT EXECUTE ON FUNCTION ruvllm._witness_queue_stats() TO ruvllm_admin;
GRANT ALL ON ruvllm.witness_writer_state TO ruvllm_admin;
-- Dumped, so a restored database knows what the writer had committed when the dump was taken.
SELECT pg_catalog.pg_extension_config_dump('ruvllm.witness_writer_state', '');
-- Searches queue their access records for the witness writer.
COMMENT ON TABLE ruvllm.node_access IS 'When searches last returned each memory node, and how often; written by the witness writer from the searches'' queued access records (in the search''s own transaction when the queue refuses them); the deep loop copies last_accessed into ruvllm.nodes.';
-- The flush waits on the ring's byte positions: searches queue access records there too.
CREATE OR REPLACE FUNCTION public.ruvllm_witness_flush(timeout_ms integer DEFAULT 5000) RETURNS boolean
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

-- ruvllm_generate generates through the backend ruvllm.inference names.
CREATE OR REPLACE FUNCTION public.ruvllm_generate(prompt text, max_tokens integer DEFAULT 64,
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

-- In the order a fresh install grants them (the ACLs compare equal only then).
REVOKE ALL ON FUNCTION ruvllm._inference_servers(),
    ruvllm._inference_slots_busy(integer), public.ruvllm_query_stream(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.ruvllm_query_stream(text, text, jsonb) TO ruvllm_admin;
GRANT EXECUTE ON FUNCTION public.ruvllm_query_stream(text, text, jsonb), ruvllm._inference_servers()
    TO ruvllm_user;
GRANT EXECUTE ON FUNCTION ruvllm._inference_servers(),
    ruvllm._inference_slots_busy(integer) TO ruvllm_admin;
GRANT ALL ON ruvllm.inference_servers TO ruvllm_admin;
DO $$
DECLARE
    setting text;
BEGIN
    FOR setting IN SELECT name FROM pg_catalog.pg_settings
                    WHERE name LIKE 'ruvllm.inference%' ORDER BY name LOOP
        EXECUTE format('GRANT SET, ALTER SYSTEM ON PARAMETER %s TO ruvllm_admin', setting);
    END LOOP;
END
$$;

-- What the inference server's prompt cache saved a request: a session's continuing turn should
-- evaluate little beyond its new message. After created_at, where ALTER TABLE puts it.
ALTER TABLE ruvllm.witness ADD COLUMN prompt_cached_tokens integer;
ALTER TABLE ruvllm.witness_archive ADD COLUMN prompt_cached_tokens integer;
COMMENT ON COLUMN ruvllm.witness.prompt_tokens IS 'Prompt tokens of the request: evaluated, or taken from the inference server''s prompt cache (prompt_cached_tokens).';
COMMENT ON COLUMN ruvllm.witness.prompt_cached_tokens IS 'Prompt tokens the inference server reused from its cache (the KV state of the longest prefix it had evaluated, e.g. a session''s earlier turns) instead of evaluating them; NULL when generated in process.';
-- Nobody forges a witness row or rates its own answers' quality (issue: forged audit rows): the
-- pipeline hands rows and ratings to the library (ruvllm_witness_submit, ruvllm_witness_rate), and
-- users lose the SQL paths they had.
COMMENT ON FUNCTION ruvllm._witness_write(text[]) IS
    'Inserts witness rows given as JSON objects (internal: the witness writer, and the library''s synchronous path as the table''s owner, call it; users cannot).';
COMMENT ON FUNCTION ruvllm._witness_enqueue(text) IS
    'Hands a witness row to the background writer, outside the caller''s transaction; false when the caller must write it (internal, for operators: users cannot call it, and ruvllm_query hands its rows to the library directly).';
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
REVOKE ALL ON FUNCTION ruvllm._witness_rate(jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvllm._witness_rate(jsonb, text) TO ruvllm_admin;
REVOKE EXECUTE ON FUNCTION ruvllm._witness_enqueue(text), ruvllm._witness_write(text[]) FROM ruvllm_user;
REVOKE INSERT ON ruvllm.witness FROM ruvllm_user;
REVOKE UPDATE (rating, correction, feedback_at, quality) ON ruvllm.witness FROM ruvllm_user;

------------------------------------------------------------------------------------------------
-- Answers a user can trust (issue 14): the extractive tier, grounded and abstained
------------------------------------------------------------------------------------------------

-- The extractive tier has no model file.
ALTER TABLE ruvllm.models ALTER COLUMN path DROP NOT NULL;
ALTER TABLE ruvllm.models ALTER COLUMN sha256 DROP NOT NULL;
ALTER TABLE ruvllm.models DROP CONSTRAINT models_prompt_style_check;
ALTER TABLE ruvllm.models ADD CONSTRAINT models_prompt_style_check
    CHECK (prompt_style IN ('chat', 'completion', 'extractive'));
ALTER TABLE ruvllm.models ADD CONSTRAINT models_file_check
    CHECK ((prompt_style = 'extractive') = (path IS NULL AND sha256 IS NULL));
COMMENT ON TABLE ruvllm.models IS 'The model pool: local GGUF models the router may choose from, and the extractive tier (no model: the best evidence span, verbatim).';
COMMENT ON COLUMN ruvllm.models.path IS 'GGUF file; a relative path is resolved against ruvllm.models_dir. NULL for the extractive tier.';
COMMENT ON COLUMN ruvllm.models.sha256 IS 'Expected SHA-256 of the file; a file that no longer matches is refused. NULL for the extractive tier.';
COMMENT ON COLUMN ruvllm.models.prompt_style IS 'chat: the model''s chat template; completion: plain text continuation (base models); extractive: no model, the answer is the best evidence span, verbatim, with its citation.';
-- The promoted policy of an upgraded database does not know it: the router reaches it by
-- exploration (and constraints) until the background loop trains a policy that does.
INSERT INTO ruvllm.models (name, tier, path, sha256, quantization, n_ctx, prompt_style, cost_per_token)
VALUES ('extractive', 9, NULL, NULL, NULL, 2048, 'extractive', 0.0)
ON CONFLICT (name) DO NOTHING;
COMMENT ON FUNCTION public.ruvllm_register_model(text, text, text, text, integer, integer, text, real, boolean) IS
    'Adds or replaces a model in the pool. The file must exist and be a GGUF file; without sha256 its checksum is computed now, with one it must match. prompt_style extractive registers a tier without a file (path and sha256 NULL).';

ALTER TABLE ruvllm.witness ADD COLUMN grounded boolean;
ALTER TABLE ruvllm.witness ADD COLUMN abstained boolean DEFAULT false;
ALTER TABLE ruvllm.witness_archive ADD COLUMN grounded boolean;
ALTER TABLE ruvllm.witness_archive ADD COLUMN abstained boolean DEFAULT false;
COMMENT ON COLUMN ruvllm.witness.grounded IS 'Whether the model''s answer was supported by its evidence (grounding check); false: the answer returned is the extractive one. NULL when not checked (ruvllm.answer_style = documents, abstentions).';
COMMENT ON COLUMN ruvllm.witness.abstained IS 'Whether the answer was "Not found in memory." (no memory relevant enough; nothing generated). NULL in rows written without it (before 0.3.0''s pipeline).';

CREATE OR REPLACE VIEW ruvllm.requests AS
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
COMMENT ON COLUMN ruvllm.requests.grounded IS 'Whether the model''s answer was supported by its evidence (false: replaced by the extractive answer; NULL: not checked).';
COMMENT ON COLUMN ruvllm.requests.abstained IS 'Whether memory had nothing relevant enough and the answer was "Not found in memory."';

-- The new settings, as a fresh install grants every ruvllm.* setting.
DO $$
DECLARE
    setting text;
BEGIN
    FOR setting IN SELECT name FROM pg_catalog.pg_settings
                    WHERE name IN ('ruvllm.answer_style', 'ruvllm.default_model', 'ruvllm.embedder',
                                   'ruvllm.store_unit_vectors',
                                   'ruvllm.abstain_below', 'ruvllm.grounding_overlap',
                                   'ruvllm.grounding_similarity') ORDER BY name LOOP
        EXECUTE format('GRANT SET, ALTER SYSTEM ON PARAMETER %s TO ruvllm_admin', setting);
    END LOOP;
END
$$;

COMMENT ON FUNCTION public.ruvllm_query(text, text, jsonb) IS
    'Answers a question from memory with a routed local model, or the extractive tier, from the evidence spans of memory: {request_id, text (citations [n] refer to sources[n-1]), confidence, grounded, abstained, sources, routing, latency_ms, cache_hit}; "Not found in memory." when nothing in memory is relevant enough. Constraints: max_tokens, temperature, top_p, max_latency_ms, model. Every call, failed ones included, leaves a row in ruvllm.witness.';
------------------------------------------------------------------------------------------------
-- Retrieval that finds the evidence (issue 15): lexical search (a generated tsvector with a GIN
-- index, BM25 statistics per tenant), and ruvllm_search with a mode and a filter.
------------------------------------------------------------------------------------------------

-- Adding a stored generated column rewrites ruvllm.nodes (and rebuilds its indexes, the HNSW one
-- included): the existing nodes get their lexemes here. The same statement keeps a node's row
-- whole up to 4 KB and its vector in it (toast_tuple_target, STORAGE MAIN; see ruvllm.sql), so the
-- rewrite also brings the vectors that 0.2.0 moved to TOAST back into the heap rows.
ALTER TABLE ruvllm.nodes SET (toast_tuple_target = 4080), ALTER COLUMN embedding SET STORAGE MAIN,
    ADD COLUMN
    -- A fixed configuration: a generated column needs an immutable expression.
    lexemes       tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED;
COMMENT ON COLUMN ruvllm.nodes.metadata IS 'timestamp (ISO 8601, stored in UTC; what ruvllm_search''s since/until filter on), speaker, author, tags, domain, version (bumped when a near-duplicate merges in), confidence; other keys kept as given.';
COMMENT ON COLUMN ruvllm.nodes.lexemes IS 'Full-text lexemes of content (text search configuration english), generated; lexical search reads them through the GIN index nodes_lexemes.';
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

ALTER TABLE ruvllm.lexical_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.lexical_stats
    USING (tenant = (SELECT public.ruvllm_current_tenant()))
    WITH CHECK (tenant = (SELECT public.ruvllm_current_tenant()));
CREATE POLICY admin_rows ON ruvllm.lexical_stats TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.lexical_stats IS 'Term statistics of the session''s tenant only: no tenant learns how often a word occurs in another''s memory.';
COMMENT ON POLICY admin_rows ON ruvllm.lexical_stats IS 'ruvllm_admin sees every tenant''s term statistics.';

GRANT SELECT, INSERT ON ruvllm.lexical_stats TO ruvllm_user;
GRANT ALL ON ruvllm.lexical_stats TO ruvllm_admin;
REVOKE ALL ON FUNCTION ruvllm._rebuild_lexical_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvllm._rebuild_lexical_stats() TO ruvllm_admin;
-- Dumped with the nodes it counts (a restore loads both; nothing recounts at restore).
SELECT pg_catalog.pg_extension_config_dump('ruvllm.lexical_stats', '');
-- The upgraded database's nodes, counted.
SELECT ruvllm._rebuild_lexical_stats();

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
REVOKE ALL ON FUNCTION ruvllm._bm25(tsvector, text[], float8[], float8, float8, float8),
    ruvllm._term_coverage(tsvector, text[], float8[]), ruvllm._vector_recv(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvllm._bm25(tsvector, text[], float8[], float8, float8, float8),
    ruvllm._term_coverage(tsvector, text[], float8[]), ruvllm._vector_recv(bytea) TO ruvllm_user, ruvllm_admin;

-- ruvllm_search gains mode and filter (the old calls, positional (q), (q, k), (q, k, hops), resolve
-- to the new function through its defaults), and new columns: dropped and made again. A user's
-- view or function that names the old signature must be dropped first (DROP fails, naming it).
DROP FUNCTION public.ruvllm_search(text, integer, integer);
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

REVOKE ALL ON FUNCTION public.ruvllm_search(text, integer, integer, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.ruvllm_search(text, integer, integer, text, jsonb) TO ruvllm_admin;
GRANT EXECUTE ON FUNCTION public.ruvllm_search(text, integer, integer, text, jsonb) TO ruvllm_user;

-- 0.3.0: evidence units' vectors stored at ingest.
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

ALTER TABLE ruvllm.node_units ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON ruvllm.node_units
    USING (EXISTS (SELECT FROM ruvllm.nodes n WHERE n.id = node_id))
    WITH CHECK (EXISTS (SELECT FROM ruvllm.nodes n WHERE n.id = node_id));
CREATE POLICY admin_rows ON ruvllm.node_units TO ruvllm_admin USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON ruvllm.node_units IS 'Unit vectors of memory nodes the session may see (row-level security of ruvllm.nodes).';
COMMENT ON POLICY admin_rows ON ruvllm.node_units IS 'ruvllm_admin sees every tenant''s unit vectors.';

GRANT SELECT, INSERT, UPDATE ON ruvllm.node_units TO ruvllm_user;
GRANT ALL ON ruvllm.node_units TO ruvllm_admin;
-- Dumped with the nodes (a restore does not embed again). The upgraded database's nodes have no
-- rows: their units are embedded by the requests that score them, as in 0.2.0, until
-- ruvllm_store_unit_vectors() has stored them.
SELECT pg_catalog.pg_extension_config_dump('ruvllm.node_units', '');

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
REVOKE ALL ON FUNCTION public.ruvllm_store_unit_vectors(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.ruvllm_store_unit_vectors(integer) TO ruvllm_admin, ruvllm_user;
