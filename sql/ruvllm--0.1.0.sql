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
