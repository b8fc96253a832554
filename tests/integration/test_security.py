"""Roles and tenant isolation on a real server: each ruvllm role can do its job and nothing more,
and one tenant never retrieves, sees or is served another's data (row-level security)."""
import json
import uuid

import psycopg
import pytest
from psycopg import errors as pgerr

from helpers import ask, denied, login, scalar, seed

VPN = "Acme's VPN password rotates every 30 days; the new one is posted in the #it-ops channel."


def test_roles_exist_with_comments_and_nothing_is_open_to_public(db):
    for role in ("ruvllm_user", "ruvllm_analyst", "ruvllm_admin"):
        assert scalar(db, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,))
    assert scalar(db, "SELECT pg_has_role('ruvllm_admin', 'ruvllm_user', 'MEMBER') "
                      "AND pg_has_role('ruvllm_admin', 'ruvllm_analyst', 'MEMBER')")
    open_to_public = db.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
          JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'ruvllm'
         WHERE has_function_privilege('public', p.oid, 'EXECUTE')""").fetchall()
    assert open_to_public == []
    definers = {r[0] for r in db.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
          JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'ruvllm'
         WHERE p.prosecdef""")}
    assert definers == {"ruvllm_apply_retention()", "ruvllm.witness_make_partitions(integer)",
                        "ruvllm._tenant_lookup(name,text)"}
    # Every SECURITY DEFINER function pins its search_path.
    assert scalar(db, """SELECT bool_and('search_path=pg_catalog, pg_temp' = ANY(proconfig)) FROM pg_proc
                          WHERE prosecdef AND oid::regprocedure::text LIKE '%%ruvllm%%'""")


def test_a_user_queries_gives_feedback_and_searches_and_nothing_more(db, pg):
    seed(db)
    alice = login(db, pg, "alice", "ruvllm_user")
    r = ask(alice, "How do I rotate the witness log?")
    assert r["text"].strip() and r["sources"]
    assert scalar(alice, "SELECT ruvllm_feedback(%s, 5)", (r["request_id"],)) is None
    assert scalar(alice, "SELECT count(*) FROM ruvllm_search('witness log', 3)") >= 3
    assert scalar(alice, "SELECT ruvllm_witness_flush(10000)")
    assert scalar(alice, "SELECT count(*) FROM ruvllm_witness_search('rotate the witness log', 3)") == 1
    # Only an admin may choose the synchronous witness path (it changes what a rolled-back call
    # leaves in the audit log); the library writes its rows as the witness table's owner.
    denied(alice, "SET ruvllm.witness_async = off")
    db.execute(f'ALTER ROLE "{alice.role}" SET ruvllm.witness_async = off')
    role = alice.role
    alice = psycopg.connect(host=pg.host, port=pg.port, user=role, dbname=db.info.dbname, autocommit=True)
    alice.role = role
    assert scalar(alice, "SHOW ruvllm.witness_async") == "off"
    sync = ask(alice, "What does VACUUM do?", constraints={"max_tokens": 8})
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s", (sync["request_id"],)) == 1
    # A correction goes into memory with Derived edges: the user adds to the graph.
    fixed = scalar(alice, "SELECT ruvllm_feedback(%s, 2, 'VACUUM reclaims space held by dead rows.')",
                   (sync["request_id"],))
    assert scalar(db, "SELECT node_type FROM ruvllm.nodes WHERE id = %s", (fixed,)) == "QAPair"
    node = scalar(alice, "SELECT ruvllm_ingest('Alice keeps her notes in memory.')")
    assert scalar(db, "SELECT tenant FROM ruvllm.nodes WHERE id = %s", (node,)) == ""
    assert scalar(db, "SELECT rating FROM ruvllm.witness WHERE request_id = %s", (r["request_id"],)) == 5

    before = scalar(db, "SELECT count(*) FROM ruvllm.retention")
    for sql in ("SELECT count(*) FROM ruvllm.requests",
                "SELECT count(*) FROM ruvllm.daily_quality",
                "SELECT ruvllm_set_retention('witness', '1 day')",
                "SELECT ruvllm_apply_retention()",
                "SELECT ruvllm_run_loop('instant')",
                "SELECT ruvllm_register_model('x', 'x.gguf', 'chat')",
                "SELECT ruvllm_create_tenant('mine')",
                "SELECT ruvllm_metrics()",
                "SELECT ruvllm_health()",
                "SELECT ruvllm._run_loop('deep', 'manual')",
                "INSERT INTO ruvllm.models (name, path, sha256, prompt_style) VALUES ('x', 'x', repeat('0', 64), 'chat')",
                "UPDATE ruvllm.witness SET response = 'forged'",
                "DELETE FROM ruvllm.witness",
                "DELETE FROM ruvllm.nodes",
                "UPDATE ruvllm_graph.\"SameTopic\" SET properties = properties",
                "DELETE FROM ruvllm_graph.\"Node\"",
                "SELECT count(*) FROM ruvllm.replay",
                "SELECT count(*) FROM ruvllm.tenant_roles",
                "ALTER SYSTEM SET ruvllm.explore_rate = 0.5",
                "SET ruvllm.pii_mask = 'none'"):
        denied(alice, sql)
    assert scalar(db, "SELECT count(*) FROM ruvllm.retention") == before
    assert scalar(db, "SELECT response FROM ruvllm.witness WHERE request_id = %s", (r["request_id"],)) != "forged"
    assert scalar(db, "SELECT count(*) FROM ruvllm.nodes") > 0


def test_an_analyst_reads_the_bi_views_and_nothing_else(db, pg):
    seed(db)
    ask(db, "How do I rotate the witness log?")
    assert scalar(db, "SELECT ruvllm_witness_flush(10000)")
    ana = login(db, pg, "ana", "ruvllm_analyst")
    for view in ("requests", "daily_quality", "daily_latency", "model_usage", "problem_requests",
                 "feedback_agreement"):
        ana.execute(f"SELECT * FROM ruvllm.{view}").fetchall()
    assert scalar(ana, "SELECT count(*) FROM ruvllm.requests") == 1
    for sql in ("SELECT count(*) FROM ruvllm.witness",
                "SELECT count(*) FROM ruvllm.nodes",
                "SELECT count(*) FROM ruvllm.response_cache",
                "SELECT ruvllm_query('hello')",
                "SELECT count(*) FROM ruvllm_search('witness')",
                "SELECT ruvllm_embed('hello')",
                "SELECT count(*) FROM ruvllm_witness_search('witness')",
                "SELECT ruvllm_feedback(gen_random_uuid(), 3)",
                "SELECT ruvllm_set_retention('witness', '1 day')",
                "SELECT count(*) FROM ruvllm_graph.\"Node\""):
        denied(ana, sql)


def test_an_admin_manages_models_retention_loops_tenants_and_settings(db, pg):
    adam = login(db, pg, "adam", "ruvllm_admin")
    path = scalar(db, "SELECT path FROM ruvllm.models WHERE name = 'smollm2-135m-instruct'")
    sha = scalar(db, "SELECT sha256 FROM ruvllm.models WHERE name = 'smollm2-135m-instruct'")
    adam.execute("SELECT ruvllm_register_model('smollm2-copy', %s, 'chat', %s, enabled => false)", (path, sha))
    assert scalar(db, "SELECT enabled FROM ruvllm.models WHERE name = 'smollm2-copy'") is False
    adam.execute("SELECT ruvllm_set_retention('witness', '3 days', 'archive')")
    # Retention does DDL on the witness log (its owner's right): SECURITY DEFINER makes that work.
    db.execute("SELECT ruvllm.witness_make_partitions(0)")
    db.execute("CREATE TABLE ruvllm.witness_p20000101 PARTITION OF ruvllm.witness "
               "FOR VALUES FROM ('2000-01-01 00:00+00') TO ('2000-01-02 00:00+00')")
    done = scalar(adam, "SELECT ruvllm_apply_retention()")
    assert done["witness"]["partitions"] == ["witness_p20000101"]
    assert scalar(adam, "SELECT count(*) FROM ruvllm_archive.witness_p20000101") == 0
    assert scalar(adam, "SELECT ruvllm_run_loop('instant')")["status"] == "ok"
    adam.execute("SELECT ruvllm_create_tenant('acme')")
    adam.execute("ALTER SYSTEM SET ruvllm.explore_rate = 0.1")
    adam.execute("ALTER SYSTEM RESET ruvllm.explore_rate")
    adam.execute("SET ruvllm.pii_mask = 'email'")
    assert scalar(adam, "SELECT ruvllm_health()")["status"] in ("healthy", "degraded", "critical")
    assert "# TYPE ruvllm_requests gauge" in scalar(adam, "SELECT ruvllm_metrics()")
    adam.execute("SELECT count(*) FROM ruvllm.requests")
    # Not a superuser: server-wide settings outside ruvllm.* stay out of reach.
    denied(adam, "ALTER SYSTEM SET work_mem = '1GB'")


def test_a_role_without_a_ruvllm_role_can_do_nothing(db, pg):
    nobody = login(db, pg, "nobody")
    for sql in ("SELECT ruvllm_query('hello')", "SELECT ruvllm_info()", "SELECT count(*) FROM ruvllm.requests",
                "SELECT ruvllm_current_tenant()"):
        denied(nobody, sql)


def test_two_tenants_never_see_each_others_data_cache_hits_included(db, pg):
    db.execute("SELECT ruvllm_create_tenant('acme'), ruvllm_create_tenant('globex')")
    app = login(db, pg, "app", "ruvllm_user")  # one application role, trusted to name the tenant
    app.execute("SET ruvllm.tenant = 'acme'")
    vpn = scalar(app, "SELECT ruvllm_ingest(%s)", (VPN,))
    first = ask(app, "How often does the VPN password rotate?", session="s1")
    assert str(vpn) in [s["id"] for s in first["sources"]]
    assert ask(app, "How often does the VPN password rotate?")["cache_hit"] is True
    assert scalar(app, "SELECT ruvllm_witness_flush(10000)")

    app.execute("SET ruvllm.tenant = 'globex'")
    assert scalar(app, "SELECT count(*) FROM ruvllm_search('VPN password rotation', 10)") == 0
    other = ask(app, "How often does the VPN password rotate?", session="s1")
    assert other["cache_hit"] is False and str(vpn) not in [s["id"] for s in other["sources"]]
    assert "30 days" not in other["text"] or "#it-ops" not in other["text"]
    assert scalar(app, "SELECT ruvllm_witness_flush(10000)")
    # Row-level security: even reading the tables directly shows only globex's rows.
    for table in ("nodes", "witness", "sessions", "response_cache"):
        tenants = {r[0] for r in app.execute(f"SELECT DISTINCT tenant FROM ruvllm.{table}")}
        assert tenants <= {"globex"}, table
    assert scalar(app, "SELECT count(*) FROM ruvllm.node_access WHERE node_id = %s", (vpn,)) == 0
    assert scalar(app, "SELECT count(*) FROM ruvllm.node_units WHERE node_id = %s", (vpn,)) == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.node_units WHERE node_id = %s", (vpn,)) == 1
    assert scalar(app, "SELECT count(*) FROM ruvllm_witness_search('VPN password', 10)") == 1
    assert scalar(app, "SELECT history::text FROM ruvllm.sessions WHERE session_id = 's1'").count('"q"') == 1
    # Feedback on acme's request from globex finds nothing and changes nothing.
    with pytest.raises(psycopg.Error):
        app.execute("SELECT ruvllm_feedback(%s, 1, 'wrong')", (first["request_id"],))
    assert scalar(db, "SELECT rating FROM ruvllm.witness WHERE request_id = %s", (first["request_id"],)) is None
    # Writing a row for another tenant is refused by the policy's check.
    with pytest.raises(pgerr.InsufficientPrivilege):
        app.execute("INSERT INTO ruvllm.sessions (tenant, session_id) VALUES ('acme', 'planted')")
    assert scalar(db, "SELECT count(*) FROM ruvllm.sessions WHERE session_id = 'planted'") == 0

    app.execute("SET ruvllm.tenant = 'acme'")
    assert ask(app, "How often does the VPN password rotate?")["cache_hit"] is True
    assert {r[0] for r in app.execute("SELECT DISTINCT tenant FROM ruvllm.witness")} == {"acme"}


def test_a_role_bound_to_a_tenant_cannot_act_as_another(db, pg):
    bob = login(db, pg, "bob", "ruvllm_user")
    carol = login(db, pg, "carol", "ruvllm_analyst")
    db.execute("SELECT ruvllm_create_tenant('acme'), ruvllm_create_tenant('globex', ARRAY[%s, %s]::regrole[])",
               (bob.role, carol.role))
    db.execute("SET ruvllm.tenant = 'acme'")
    db.execute("SELECT ruvllm_ingest(%s)", (VPN,))
    ask(db, "How often does the VPN password rotate?")
    db.execute("RESET ruvllm.tenant")
    assert scalar(bob, "SELECT ruvllm_current_tenant()") == "globex"
    ask(bob, "What is the capital of France?", constraints={"max_tokens": 8})
    assert scalar(bob, "SELECT ruvllm_witness_flush(10000)")
    bob.execute("SET ruvllm.tenant = 'acme'")
    e = denied(bob, "SELECT ruvllm_query('How often does the VPN password rotate?')")
    assert "globex" in str(e) and e.diag.message_hint
    denied(bob, "SELECT count(*) FROM ruvllm.nodes")
    bob.execute("RESET ruvllm.tenant")
    assert scalar(bob, "SELECT count(*) FROM ruvllm_search('VPN password', 10)") == 0
    # A bound analyst's BI views show its tenant only; an unbound analyst's show every tenant.
    assert {r[0] for r in carol.execute("SELECT DISTINCT tenant FROM ruvllm.requests")} == {"globex"}
    ana = login(db, pg, "ana", "ruvllm_analyst")
    assert {r[0] for r in ana.execute("SELECT DISTINCT tenant FROM ruvllm.requests")} == {"acme", "globex"}
    # The refused call is witnessed under bob's own tenant, never under the one he named.
    assert ana.execute("SELECT tenant, error_sqlstate FROM ruvllm.requests WHERE error IS NOT NULL").fetchall() \
        == [("globex", "42501")]
    # Nor can bob plant a witness row in acme's log (or his own) by handing the queue one himself.
    planted = json.dumps({"request_id": str(uuid.uuid4()), "tenant": "acme", "query": "planted",
                          "explored": False, "cache_hit": False,
                          "created_at": "2026-01-01T00:00:00+00:00"})
    denied(bob, "SELECT ruvllm._witness_enqueue(%s)", (planted,))
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE query = 'planted'") == 0
    # Binding twice, or binding an admin, is refused.
    with pytest.raises(pgerr.UniqueViolation):
        db.execute("SELECT ruvllm_create_tenant('acme', ARRAY[%s]::regrole[])", (bob.role,))
    with pytest.raises(pgerr.InvalidParameterValue):
        db.execute("SELECT ruvllm_create_tenant('acme', ARRAY['ruvllm_admin']::regrole[])")
    assert scalar(db, "SELECT tenant FROM ruvllm.tenant_roles WHERE role_name = %s", (bob.role,)) == "globex"


@pytest.mark.parametrize("sql, error", [
    ("SET ruvllm.tenant = 'acme corp'", pgerr.InvalidParameterValue),
    ("SET ruvllm.tenant = 'x;drop'", pgerr.InvalidParameterValue),
    ("SET ruvllm.pii_mask = 'email,emial'", pgerr.InvalidParameterValue),
    ("SET ruvllm.pii_mask = 'none,ip'", pgerr.InvalidParameterValue),
    ("SELECT ruvllm_create_tenant('acme corp')", pgerr.InvalidParameterValue),
    ("SELECT ruvllm_create_tenant(NULL)", pgerr.InvalidParameterValue),
])
def test_bad_tenant_and_mask_settings_are_refused_when_set(db, sql, error):
    mask = scalar(db, "SHOW ruvllm.pii_mask")
    with pytest.raises(error) as e:
        db.execute(sql)
    assert e.value.diag.message_detail or e.value.diag.message_hint
    assert scalar(db, "SHOW ruvllm.tenant") == "" and scalar(db, "SHOW ruvllm.pii_mask") == mask
    assert scalar(db, "SELECT count(*) FROM ruvllm.tenants") == 0


def test_an_unknown_tenant_is_an_error_not_an_empty_memory(db):
    db.execute("SET ruvllm.tenant = 'nobody'")
    with pytest.raises(pgerr.InvalidParameterValue) as e:
        db.execute("SELECT count(*) FROM ruvllm_search('anything')")
    assert "unknown tenant" in str(e.value) and "ruvllm_create_tenant" in e.value.diag.message_hint
    with pytest.raises(pgerr.InvalidParameterValue):
        ask(db, "hello")
    db.execute("SELECT ruvllm_create_tenant('nobody')")
    assert scalar(db, "SELECT count(*) FROM ruvllm_search('anything')") == 0
    assert scalar(db, "SELECT ruvllm_current_tenant()") == "nobody"
    db.execute("SET ruvllm.pii_mask = 'EMAIL, ip'")  # case and spaces as the Python side reads them
