"""Upgrades: every earlier release, installed from its own files and updated to the current version,
has the same catalog as a fresh install (functions, tables, views, columns, constraints, indexes,
policies, comments, grants), and keeps its data.

The releases' install scripts and Python packages are the real ones, taken from git history at the
commits env/releases.txt names (env/export-releases.sh, installed by env/install-extension.sh)."""
import os
from pathlib import Path

import psycopg
import pytest

from helpers import scalar

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
     WHERE c.relnamespace::regnamespace::text IN ('ruvllm', 'ruvllm_graph', 'ruvllm_archive')
       -- Daily witness partitions are data the writer makes, not part of the definition.
       AND c.relname !~ '^witness_p[0-9]{8}')
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
SELECT format('column %s.%s %s notnull=%s default=%s storage=%s acl=%s comment=%s', r.name, a.attname,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
              a.attstorage, a.attacl, col_description(r.oid, a.attnum))
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


# ~150 words on one topic (one chunk), too little alike to compress much: with the vector, more
# than the 2 KB a row of 0.1.0 and 0.2.0 holds before PostgreSQL moves a value to TOAST.
LONG_NOTE = (
    "Sourdough starts with flour and water left on the counter until wild yeast and lactic bacteria "
    "take hold; bakers feed it daily, discarding half, until it doubles within six hours of a feeding. "
    "A loaf needs a levain built the night before, an autolyse of flour and water for forty minutes, "
    "salt worked in by pinching, then four sets of stretch and folds half an hour apart. Bulk "
    "fermentation ends when the dough has risen by a third, feels airy and jiggles at the edges. "
    "Shaping builds surface tension with a bench scraper; the banneton goes into the fridge overnight, "
    "which slows the yeast, sharpens the sour flavour and makes scoring easier. Bake in a preheated "
    "Dutch oven at 250 degrees with the lid on for twenty minutes, trapping steam so the crust stays "
    "supple while the loaf springs, then uncovered until the crust turns deep mahogany and sounds "
    "hollow when tapped underneath.")


def toast_bytes(conn):
    return scalar(conn, "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'ruvllm.nodes'::regclass")


def catalog(conn):
    return sorted(r[0] for r in conn.execute(CATALOG))


def connect(pg, dbname):
    return psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=dbname, autocommit=True)


SRC = Path(__file__).resolve().parents[2]


def current_version():
    for line in (SRC / "ruvllm.control").read_text().splitlines():
        if line.startswith("default_version"):
            return line.split("'")[1]
    raise AssertionError("no default_version in ruvllm.control")


def releases():
    lines = (SRC / "env" / "releases.txt").read_text().splitlines()
    versions = [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]
    return [v for v in versions if v != current_version()]


def version_key(version):
    return tuple(int(part) for part in version.split("."))


def install_release(conn, version):
    """CREATE EXTENSION ruvllm VERSION '<release>' from that release's own install script, with
    that release's own Python package. Only one shared library can be loaded, the current one, and
    a release's _python_setup refuses a library of another version: this session stands in for
    that one check (it marks the version check done and puts the release's package first on
    sys.path, as the release's _python_setup would)."""
    conn.execute("CREATE EXTENSION plpython3u")
    conn.execute(f"""DO $$
        import sys
        d = plpy.execute("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")[0]["setting"]
        sys.path.insert(0, d + "/ruvllm-python/{version}")
        for name in [n for n in sys.modules if n == "ruvllm" or n.startswith("ruvllm.")]:
            del sys.modules[name]
        import ruvllm
        assert ruvllm.__version__ == "{version}", ruvllm.__file__
        GD["ruvllm_version"] = "{version}"
    $$ LANGUAGE plpython3u""")
    conn.execute(f"CREATE EXTENSION ruvllm VERSION '{version}' CASCADE")


def installed_releases(pg):
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="postgres") as conn:
        return {r[0] for r in conn.execute(
            "SELECT version FROM pg_available_extension_versions WHERE name = 'ruvllm'")}


@pytest.mark.parametrize("release", releases())
def test_an_upgraded_release_matches_a_fresh_install_and_keeps_its_data(db, pg, release):
    current = current_version()
    if release not in installed_releases(pg):
        if os.environ.get("CI"):
            pytest.fail(f"release {release} is not installed: env/export-releases.sh needs git history")
        pytest.skip(f"release {release} is not installed (no git history: env/export-releases.sh)")
    for name in ("ruvllm_fresh", "ruvllm_upgraded"):
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    with connect(pg, "ruvllm_fresh") as fresh:
        fresh.execute("CREATE EXTENSION ruvllm CASCADE")
        assert scalar(fresh, "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'") == current
        want = catalog(fresh)

    with connect(pg, "ruvllm_upgraded") as old:
        install_release(old, release)
        assert scalar(old, "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'") == release
        # Data made with the release's own code: a tenant in use, a retention setting, a witness
        # row, a memory node.
        if version_key(release) >= (0, 2, 0):
            old.execute("SELECT ruvllm_create_tenant('acme')")
        old.execute("SELECT ruvllm_set_retention('sessions', '2 days')")
        old.execute("""INSERT INTO ruvllm.witness (request_id, tenant, query, model, created_at)
                       VALUES (gen_random_uuid(), 'acme', 'old question', 'gemma-3-270m', now())""")
        node = scalar(old, "SELECT ruvllm_ingest('Released versions keep their memory across upgrades.')")
        # Its vector went to TOAST; the upgrade's rewrite of ruvllm.nodes brings it back into the
        # heap row, where the planner and the searches want it (ruvllm.sql, toast_tuple_target).
        old.execute("SELECT ruvllm_ingest(%s)", (LONG_NOTE,))
        assert toast_bytes(old) > 0
    with connect(pg, "ruvllm_upgraded") as up:
        up.execute("ALTER EXTENSION ruvllm UPDATE")
        assert scalar(up, "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'") == current
        got = catalog(up)
        assert scalar(up, "SELECT keep FROM ruvllm.retention WHERE target = 'sessions'").days == 2
        assert scalar(up, "SELECT query FROM ruvllm.witness WHERE tenant = 'acme'") == "old question"
        assert [r[0] for r in up.execute("SELECT tenant FROM ruvllm.tenants")] == ["acme"]
        assert scalar(up, "SELECT id FROM ruvllm_search('Do upgrades keep memory?', 1, 0)") == node
        # The nodes stored before the upgrade are in the lexical index and its statistics.
        assert scalar(up, "SELECT id FROM ruvllm_search('released versions', 1, 0, 'lexical')") == node
        assert scalar(up, "SELECT sum(docs) FROM ruvllm.lexical_stats WHERE lexeme = 'releas'") == 1
        assert toast_bytes(up) == 0
        up.execute("SET ruvllm.tenant = 'acme'")
        assert scalar(up, "SELECT ruvllm_current_tenant()") == "acme"
        assert scalar(up, "SELECT count(*) FROM ruvllm_search('old question')") == 0
        assert scalar(up, "SELECT (ruvllm_info())->>'extension'") == current

    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert (missing, extra) == ([], []), f"fresh {current} and upgraded {release} differ:\n" + "\n".join(
        ["only fresh:    " + m[:300] for m in missing] + ["only upgraded: " + e[:300] for e in extra])
    assert len(got) == len(want)
    for name in ("ruvllm_fresh", "ruvllm_upgraded"):
        db.execute(f"DROP DATABASE {name} WITH (FORCE)")
