-- CREATE EXTENSION ruvllm (pg_regress made it with --load-extension; this drops and makes it
-- again in the same database): what it depends on, what it creates, and that all of it is
-- commented and nothing is granted to PUBLIC. Versions are left out: they change every release.
SELECT extname FROM pg_extension WHERE extname IN ('plpython3u', 'vector', 'age', 'ruvllm') ORDER BY 1;

-- DROP EXTENSION removes its schemas and its AGE graph (roles are cluster-wide and stay).
DROP EXTENSION ruvllm;
SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ruvllm%' ORDER BY 1;
SELECT count(*) AS graphs FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph';
SELECT rolname FROM pg_roles WHERE rolname LIKE 'ruvllm\_%' ORDER BY 1;

-- And a second CREATE in the same database works.
CREATE EXTENSION ruvllm;
SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ruvllm%' ORDER BY 1;
SELECT count(*) AS graphs FROM ag_catalog.ag_graph WHERE name = 'ruvllm_graph';
SELECT extrelocatable, nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'ruvllm';

-- The functions users call: public.ruvllm_*, each with a comment.
SELECT p.oid::regprocedure AS function, obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ruvllm')
   AND p.pronamespace = 'public'::regnamespace
 ORDER BY p.oid::regprocedure::text;

-- Every function, table and view of the extension is commented (none listed here; the witness
-- log's daily partitions and the tables AGE makes for the graph are left out).
SELECT d.classid::regclass AS catalog, pg_describe_object(d.classid, d.objid, 0) AS uncommented
  FROM pg_depend d
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ruvllm') AND d.deptype = 'e'
   AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass)
   AND obj_description(d.objid, d.classid::regclass::name) IS NULL
   AND NOT EXISTS (SELECT FROM pg_class c
                    WHERE d.classid = 'pg_class'::regclass AND c.oid = d.objid
                      AND (c.relkind IN ('S', 'i', 'I') OR c.relispartition
                           OR c.relnamespace = 'ruvllm_graph'::regnamespace))
 ORDER BY 2;

-- Nothing of the extension is executable or readable by PUBLIC.
SELECT p.oid::regprocedure AS open_to_public
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ruvllm')
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;
SELECT c.oid::regclass AS open_to_public
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ruvllm')
   AND c.relkind IN ('r', 'p', 'v') AND has_table_privilege('public', c.oid, 'SELECT')
 ORDER BY c.oid::regclass::text;
