"""Upgrades: ruvllm 0.1.0 updated to 0.2.0 has the same catalog as a fresh 0.2.0 install (functions,
tables, views, columns, constraints, indexes, policies, comments, grants), and keeps its data."""
import psycopg

from test_query import scalar

# Everything ruvllm owns in a database, one line per fact, without oids: what must not differ
# between a fresh install and an upgraded one. Extension members by pg_depend, plus what belongs
# to them (columns, constraints, indexes, policies, comments, ACLs).
CATALOG = r"""
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'ruvllm'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relkind FROM pg_class c
     WHERE c.relnamespace::regnamespace::text IN ('ruvllm', 'ruvllm_graph', 'ruvllm_archive'))
SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM members
UNION ALL
SELECT format('function %s secdef=%s config=%s acl=%s comment=%s def=%s', p.oid::regprocedure, p.prosecdef,
              p.proconfig, p.proacl, obj_description(p.oid, 'pg_proc'), pg_get_functiondef(p.oid))
  FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
UNION ALL
SELECT format('relation %s kind=%s acl=%s rls=%s/%s options=%s comment=%s', r.name, r.relkind, c.relacl,
              c.relrowsecurity, c.relforcerowsecurity, c.reloptions, obj_description(r.oid, 'pg_class'))
  FROM rels r JOIN pg_class c ON c.oid = r.oid
UNION ALL
SELECT format('view %s %s', r.name, pg_get_viewdef(r.oid)) FROM rels r WHERE r.relkind = 'v'
UNION ALL
SELECT format('column %s.%s %s notnull=%s default=%s acl=%s comment=%s', r.name, a.attname,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
              a.attacl, col_description(r.oid, a.attnum))
  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
UNION ALL
SELECT format('constraint %s %s %s', r.name, co.conname, pg_get_constraintdef(co.oid))
  FROM rels r JOIN pg_constraint co ON co.conrelid = r.oid
UNION ALL
SELECT format('index %s', pg_get_indexdef(i.indexrelid)) FROM rels r JOIN pg_index i ON i.indrelid = r.oid
UNION ALL
SELECT format('policy %s %s cmd=%s roles=%s using=%s check=%s comment=%s', r.name, po.polname, po.polcmd,
              (SELECT array_agg(CASE WHEN x = 0 THEN 'public' ELSE x::regrole::text END ORDER BY 1)
                 FROM unnest(po.polroles) AS x),
              pg_get_expr(po.polqual, po.polrelid), pg_get_expr(po.polwithcheck, po.polrelid),
              obj_description(po.oid, 'pg_policy'))
  FROM rels r JOIN pg_policy po ON po.polrelid = r.oid
UNION ALL
SELECT format('trigger %s %s', r.name, pg_get_triggerdef(t.oid)) FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
UNION ALL
SELECT format('schema %s acl=%s comment=%s', n.nspname, n.nspacl, obj_description(n.oid, 'pg_namespace'))
  FROM pg_namespace n WHERE n.nspname IN ('ruvllm', 'ruvllm_graph', 'ruvllm_archive', 'ag_catalog')
UNION ALL
SELECT format('event trigger %s %s %s %s comment=%s', evtname, evtevent, evttags, evtfoid::regproc,
              obj_description(oid, 'pg_event_trigger'))
  FROM pg_event_trigger WHERE evtname LIKE 'ruvllm%'
UNION ALL
SELECT format('graph label %s %s %s', l.name, l.kind, l.relation)
  FROM ag_catalog.ag_label l JOIN ag_catalog.ag_graph g ON g.graphid = l.graph WHERE g.name = 'ruvllm_graph'
"""


def catalog(conn):
    return sorted(r[0] for r in conn.execute(CATALOG))


def connect(pg, dbname):
    return psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=dbname, autocommit=True)


def install_0_1_0(conn):
    """CREATE EXTENSION ruvllm VERSION '0.1.0' with the 0.2.0 library and Python package installed.
    The 0.1.0 script calls Python once (the initial router policy) and checks that the package is
    0.1.0; only 0.2.0's package is installed here, so this session stands in for it: it marks the
    version check done and puts the installed package on sys.path, as 0.1.0's _python_setup would."""
    conn.execute("CREATE EXTENSION plpython3u")
    conn.execute("""DO $$
        import sys
        d = plpy.execute("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")[0]["setting"]
        sys.path.insert(0, d + "/ruvllm-python/0.2.0")
        GD["ruvllm_version"] = "0.1.0"
    $$ LANGUAGE plpython3u""")
    conn.execute("CREATE EXTENSION ruvllm VERSION '0.1.0' CASCADE")


def test_upgraded_0_1_0_matches_a_fresh_0_2_0_and_keeps_its_data(db, pg):
    for name in ("ruvllm_fresh", "ruvllm_upgraded"):
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    with connect(pg, "ruvllm_fresh") as fresh:
        fresh.execute("CREATE EXTENSION ruvllm CASCADE")
        assert scalar(fresh, "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'") == "0.2.0"
        want = catalog(fresh)

    with connect(pg, "ruvllm_upgraded") as old:
        install_0_1_0(old)
        assert scalar(old, "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'") == "0.1.0"
        before = catalog(old)
        # Data of 0.1.0 days: a tenant in use, a retention setting, a witness row.
        old.execute("SELECT ruvllm_set_retention('sessions', '2 days')")
        old.execute("""INSERT INTO ruvllm.witness (request_id, tenant, query, model, created_at)
                       VALUES (gen_random_uuid(), 'acme', 'old question', 'gemma-3-270m', now())""")
    with connect(pg, "ruvllm_upgraded") as up:
        up.execute("ALTER EXTENSION ruvllm UPDATE TO '0.2.0'")
        assert scalar(up, "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'") == "0.2.0"
        got = catalog(up)
        assert scalar(up, "SELECT keep FROM ruvllm.retention WHERE target = 'sessions'").days == 2
        assert scalar(up, "SELECT query FROM ruvllm.witness WHERE tenant = 'acme'") == "old question"
        assert [r[0] for r in up.execute("SELECT tenant FROM ruvllm.tenants")] == ["acme"]
        up.execute("SET ruvllm.tenant = 'acme'")
        assert scalar(up, "SELECT ruvllm_current_tenant()") == "acme"
        assert scalar(up, "SELECT count(*) FROM ruvllm_search('old question')") == 0
        assert scalar(up, "SELECT (ruvllm_info())->>'extension'") == "0.2.0"

    assert before != want
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert (missing, extra) == ([], []), "fresh 0.2.0 and upgraded 0.1.0 differ:\n" + "\n".join(
        ["only fresh:    " + m[:300] for m in missing] + ["only upgraded: " + e[:300] for e in extra])
    assert len(got) == len(want)
    for name in ("ruvllm_fresh", "ruvllm_upgraded"):
        db.execute(f"DROP DATABASE {name} WITH (FORCE)")
