-- ruvllm upgrade from 0.1.0 to 0.2.0: tenants (registry, bound roles, row-level security),
-- the roles ruvllm_user, ruvllm_analyst and ruvllm_admin with their privileges, BI views that
-- show a tenant-bound role its own tenant only, retention run as the owner.
\echo Use "ALTER EXTENSION ruvllm UPDATE TO '0.2.0'" to load this file. \quit

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
CREATE FUNCTION ruvllm._tenant_lookup(role_name name, setting text, OUT bound text, OUT known boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT (SELECT r.tenant FROM ruvllm.tenant_roles r WHERE r.role_name = _tenant_lookup.role_name),
       setting = '' OR EXISTS (SELECT FROM ruvllm.tenants t WHERE t.tenant = _tenant_lookup.setting)
$$;
COMMENT ON FUNCTION ruvllm._tenant_lookup(name, text) IS
    'The tenant a role is bound to (NULL: none) and whether a tenant name is registered (internal; SECURITY DEFINER so tenants need not read the registry).';

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
    IF tenant IS NULL OR tenant !~ '^[A-Za-z0-9_.-]{1,63}$' THEN
        RAISE EXCEPTION 'invalid tenant name "%"', tenant USING ERRCODE = '22023',
            HINT = 'A tenant name has 1 to 63 letters, digits, "_", "-" or ".".';
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

-- Tenants already in use become registered tenants, so sessions that name them keep working.
INSERT INTO ruvllm.tenants (tenant, description)
SELECT DISTINCT t.tenant, 'in use before the upgrade to 0.2.0'
  FROM (SELECT tenant FROM ruvllm.nodes UNION SELECT tenant FROM ruvllm.sessions
        UNION SELECT tenant FROM ruvllm.response_cache UNION SELECT tenant FROM ruvllm.witness) AS t
 WHERE t.tenant ~ '^[A-Za-z0-9_.-]{1,63}$';

-- Changed functions and views (two comments change too, below).
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
            made := made + 1;
        EXCEPTION WHEN check_violation THEN
            -- Rows of that day already sit in the default partition; leave them there.
            RAISE NOTICE 'ruvllm: witness partition % not made: the default partition holds rows of that day', part;
        END;
    END LOOP;
    RETURN made;
END
$$;

CREATE OR REPLACE FUNCTION public.ruvllm_apply_retention() RETURNS jsonb
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

CREATE OR REPLACE FUNCTION public.ruvllm_witness_search(query text, k integer DEFAULT 10,
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

CREATE OR REPLACE VIEW ruvllm.requests AS
SELECT w.request_id, w.created_at, w.tenant, w.session_id, w.query, w.response, w.model,
       w.context_size, w.temperature, w.top_p, w.routing_confidence, w.used_default, w.explored,
       w.policy_version, w.confidence, w.quality, w.judge_score, w.groundedness, w.relevance,
       w.rating, w.feedback_at, w.cache_hit, w.error IS NULL AS succeeded, w.error, w.error_sqlstate,
       w.embedding_ms, w.retrieval_ms, w.routing_ms, w.attention_ms, w.generation_ms, w.total_ms,
       w.prompt_tokens, w.completion_tokens,
       COALESCE(cardinality(w.context_node_ids), 0) AS context_nodes,
       m.cost_per_token * COALESCE(w.completion_tokens, 0) / 1000.0 AS cost
  FROM ruvllm.witness w LEFT JOIN ruvllm.models m ON m.name = w.model
 WHERE ((SELECT ruvllm._bound_tenant()) IS NULL OR w.tenant = (SELECT ruvllm._bound_tenant()));

CREATE OR REPLACE VIEW ruvllm.daily_quality AS
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, model, count(*) AS requests,
       count(quality) AS judged, avg(quality) AS mean_quality, avg(rating) AS mean_rating,
       count(*) FILTER (WHERE quality < 0.5) AS low_quality
  FROM ruvllm.witness WHERE error IS NULL AND ((SELECT ruvllm._bound_tenant()) IS NULL OR tenant = (SELECT ruvllm._bound_tenant()))
 GROUP BY 1, 2;

CREATE OR REPLACE VIEW ruvllm.daily_latency AS
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

CREATE OR REPLACE VIEW ruvllm.problem_requests AS
SELECT request_id, created_at, tenant, model, query, response, quality, rating, error, error_sqlstate,
       CASE WHEN error IS NOT NULL THEN 'failed' ELSE 'low quality' END AS problem
  FROM ruvllm.witness
 WHERE (error IS NOT NULL OR quality < 0.5 OR rating <= 2) AND ((SELECT ruvllm._bound_tenant()) IS NULL OR tenant = (SELECT ruvllm._bound_tenant()));

CREATE OR REPLACE VIEW ruvllm.feedback_agreement AS
SELECT model, count(*) AS rated, avg(quality) AS mean_quality, avg((rating - 1) / 4.0) AS mean_rating_scaled,
       corr(judge_score, rating) AS judge_rating_correlation,
       avg(abs((judge_score - 1) / 4.0 - (rating - 1) / 4.0)) AS mean_abs_judge_gap
  FROM ruvllm.witness WHERE rating IS NOT NULL AND ((SELECT ruvllm._bound_tenant()) IS NULL OR tenant = (SELECT ruvllm._bound_tenant()))
 GROUP BY model;

COMMENT ON TABLE ruvllm.witness_archive IS 'Archived witness rows of days that had no daily partition (retention with action archive moves whole partitions to schema ruvllm_archive instead); 0.1.0''s deep loop moved rows here.';
COMMENT ON FUNCTION public.ruvllm_apply_retention() IS
    'Applies ruvllm.retention now: makes the witness partitions of the next 7 days, drops or archives witness partitions past their keep period (whole days, in time independent of row count; without a witness setting, archives after ruvllm.witness_archive_after), deletes expired sessions, loop runs and cache entries. The deep loop runs it too.';

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

-- ruvllm_user: ask, give feedback, search, add to memory.
GRANT EXECUTE ON FUNCTION
    public.ruvllm_info(), public.ruvllm_current_tenant(),
    public.ruvllm_generate(text, integer, text),
    public.ruvllm_embed(text), public.ruvllm_embed(text[]),
    public.ruvllm_ingest(text, text, text, jsonb), public.ruvllm_ingest_many(text[], text, text[], jsonb[]),
    public.ruvllm_ingest_many(jsonb), public.ruvllm_link(uuid, uuid, text, real),
    public.ruvllm_search(text, integer, integer),
    public.ruvllm_query(text, text, jsonb), public.ruvllm_query_row(text, text, jsonb),
    public.ruvllm_route(text), public.ruvllm_feedback(uuid, integer, text),
    public.ruvllm_witness_search(text, integer, timestamptz, real),
    public.ruvllm_witness_flush(integer),
    ruvllm._python_dir(), ruvllm._library_version(), ruvllm._python_setup(),
    ruvllm._witness_enqueue(text), ruvllm._witness_write(text[]), ruvllm._witness_queue_stats(),
    ruvllm._tenant_lookup(name, text)
    TO ruvllm_user;
GRANT SELECT, INSERT, UPDATE ON ruvllm.nodes, ruvllm.node_access, ruvllm.sessions,
    ruvllm.response_cache TO ruvllm_user;
GRANT SELECT, INSERT ON ruvllm.witness TO ruvllm_user;
GRANT UPDATE (rating, correction, feedback_at, quality) ON ruvllm.witness TO ruvllm_user;
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
