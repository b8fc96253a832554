"""Integrity of memory and audit, probed as the application roles that found the holes: what a
tenant's role, an unbound application role and an analyst may not learn or change."""
import os
import shutil
import struct
from pathlib import Path

import pytest
from psycopg import errors as pgerr

from helpers import denied, login, scalar


def test_the_tenant_lookup_answers_only_for_ones_own_role(db, pg):
    alice = login(db, pg, "alice", "ruvllm_user")
    bob = login(db, pg, "bob", "ruvllm_user")
    app = login(db, pg, "app", "ruvllm_user")
    analyst = login(db, pg, "analyst", "ruvllm_analyst")
    db.execute("SELECT ruvllm_create_tenant('t_alice', ARRAY[%s]::regrole[])", (alice.role,))
    db.execute("SELECT ruvllm_create_tenant('t_bob', ARRAY[%s]::regrole[])", (bob.role,))

    # Nobody learns another role's binding.
    for conn, other in ((alice, bob.role), (app, alice.role), (analyst, bob.role)):
        e = denied(conn, "SELECT * FROM ruvllm._tenant_lookup(%s, '')", (other,))
        assert "look up the tenant of role" in str(e)
    # A bound role learns nothing of other tenant names: registered or not, both read "unknown".
    assert alice.execute("SELECT * FROM ruvllm._tenant_lookup(%s, 't_bob')", (alice.role,)).fetchone() \
        == ("t_alice", False)
    assert alice.execute("SELECT * FROM ruvllm._tenant_lookup(%s, 'nobody')", (alice.role,)).fetchone() \
        == ("t_alice", False)
    assert alice.execute("SELECT * FROM ruvllm._tenant_lookup(%s, 't_alice')", (alice.role,)).fetchone() \
        == ("t_alice", True)
    # An unbound role may act as any registered tenant, so it is told which exist.
    assert app.execute("SELECT * FROM ruvllm._tenant_lookup(%s, 't_bob')", (app.role,)).fetchone() == (None, True)
    assert app.execute("SELECT * FROM ruvllm._tenant_lookup(%s, 'nobody')", (app.role,)).fetchone() == (None, False)
    # What ruvllm_current_tenant() makes of it is unchanged.
    assert scalar(alice, "SELECT ruvllm_current_tenant()") == "t_alice"
    alice.execute("SET ruvllm.tenant = 't_bob'")
    denied(alice, "SELECT ruvllm_current_tenant()")
    app.execute("SET ruvllm.tenant = 'nobody'")
    denied(app, "SELECT ruvllm_current_tenant()", code=pgerr.InvalidParameterValue)
    app.execute("SET ruvllm.tenant = 't_bob'")
    assert scalar(app, "SELECT ruvllm_current_tenant()") == "t_bob"


def models_dir(db):
    return scalar(db, "SELECT current_setting('ruvllm.models_dir')")


def test_model_files_are_checked_whole_at_registration(db, tmp_path):
    real = (Path(models_dir(db)) / "SmolLM2-135M-Instruct.Q4_1.gguf").read_bytes()
    stub = tmp_path / "stub.gguf"
    stub.write_bytes(b"GGUF")
    absurd = tmp_path / "absurd.gguf"
    absurd.write_bytes(real[:8] + struct.pack("<QQ", 2**60, 2**60) + real[24:1 << 20])
    half = tmp_path / "half.gguf"
    half.write_bytes(real[: len(real) // 2])
    for path, why in ((stub, "fewer than a GGUF header"), (absurd, "cannot fit in a file"),
                      (half, "cut short")):
        with pytest.raises(pgerr.InvalidParameterValue) as e:
            db.execute("SELECT ruvllm_register_model('broken', %s, 'chat')", (str(path),))
        assert why in str(e.value) and "not a usable GGUF file" in str(e.value)
    assert scalar(db, "SELECT count(*) FROM ruvllm.models WHERE name = 'broken'") == 0
    for cost in ("NaN", "Infinity", "-1"):
        with pytest.raises(pgerr.InvalidParameterValue):
            db.execute("SELECT ruvllm_register_model('broken', 'SmolLM2-135M-Instruct.Q4_1.gguf', 'chat', "
                       "cost_per_token => %s::real)", (cost,))
    with pytest.raises(pgerr.CheckViolation):
        db.execute("UPDATE ruvllm.models SET cost_per_token = 'NaN' WHERE name = 'gemma-3-270m'")


def test_a_changed_model_file_is_caught_even_with_its_size_and_mtime_restored(db, tmp_path):
    copy = tmp_path / "smol.gguf"
    shutil.copyfile(Path(models_dir(db)) / "SmolLM2-135M-Instruct.Q4_1.gguf", copy)
    db.execute("SELECT ruvllm_register_model('smol-copy', %s, 'chat', tier => 5)", (str(copy),))
    assert scalar(db, "SELECT ruvllm_health()")["status"] == "healthy"  # this backend verified it
    st = os.stat(copy)
    with open(copy, "r+b") as f:  # one byte in the tensor data, same size
        f.seek(st.st_size - 4096)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(copy).st_size == st.st_size and os.stat(copy).st_mtime_ns == st.st_mtime_ns
    health = scalar(db, "SELECT ruvllm_health()")
    assert health["status"] == "degraded"
    assert any("smol-copy" in p and "checksum" in p for p in health["problems"]), health["problems"]
    # Cut short after registration: health says so (the checksum differs first).
    with open(copy, "r+b") as f:
        f.truncate(st.st_size // 2)
    assert any("smol-copy" in p for p in scalar(db, "SELECT ruvllm_health()")["problems"])


def test_no_tenant_changes_the_graph_beyond_its_own_nodes(db, pg):
    alice = login(db, pg, "alice", "ruvllm_user")
    bob = login(db, pg, "bob", "ruvllm_user")
    db.execute("SELECT ruvllm_create_tenant('t_alice', ARRAY[%s]::regrole[])", (alice.role,))
    db.execute("SELECT ruvllm_create_tenant('t_bob', ARRAY[%s]::regrole[])", (bob.role,))
    a1 = scalar(alice, "SELECT ruvllm_ingest('Alice keeps her release notes in the wiki.')")
    a2 = scalar(alice, "SELECT ruvllm_ingest('Release notes list every change of a version.')")
    b1 = scalar(bob, "SELECT ruvllm_ingest('Bob rotates the VPN keys every month.')")
    b2 = scalar(bob, "SELECT ruvllm_ingest('VPN keys live in the vault.')")
    edges = "SELECT count(*) FROM ruvllm_graph._ag_label_edge"
    before = scalar(db, edges)
    # Cypher writes are not theirs: AGE's executor would write past every privilege.
    alice.execute("SET search_path = ag_catalog, public")
    for write in ("MATCH (n) DETACH DELETE n", "MATCH ()-[r]->() SET r.weight = 0.0 RETURN r",
                  "MATCH (a:Node), (b:Node) CREATE (a)-[:Cites {weight: 50.0}]->(b)"):
        e = denied(alice, f"SELECT * FROM ag_catalog.cypher('ruvllm_graph', $$ {write} $$) AS (v ag_catalog.agtype)")
        assert "reserved for ruvllm_admin" in str(e)
    # Reading is theirs.
    assert scalar(alice, "SELECT count(*) FROM ag_catalog.cypher('ruvllm_graph', $$ MATCH (n:Node) RETURN n $$)"
                         " AS (n ag_catalog.agtype)") == 4
    alice.execute("RESET search_path")
    # With SQL, an edge to a node of another tenant is refused, whatever ids the role finds.
    vertex = "SELECT graph_id::text FROM ruvllm.nodes WHERE id = %s"
    b1_vertex = scalar(db, vertex, (str(b1),))
    a1_vertex = scalar(db, vertex, (str(a1),))
    e = denied(alice, """INSERT INTO ruvllm_graph."Cites" (start_id, end_id, properties)
                         VALUES (%s::ag_catalog.graphid, %s::ag_catalog.graphid,
                                 '{"weight": 50.0}'::ag_catalog.agtype)""", (a1_vertex, b1_vertex))
    assert "joins a node this role cannot see" in str(e)
    denied(alice, "SELECT ruvllm_link(%s, %s, 'Cites', 1.0)", (a1, b1), code=pgerr.NoDataFound)
    for sql in ('DELETE FROM ruvllm_graph."SameTopic"', 'UPDATE ruvllm_graph."SameTopic" SET properties = properties'):
        denied(alice, sql)
    assert scalar(db, edges) == before
    # Within its own tenant a role links as before.
    alice.execute("SELECT ruvllm_link(%s, %s, 'Cites', 0.5)", (a1, a2))
    bob.execute("SELECT ruvllm_link(%s, %s, 'Follows', 0.5)", (b1, b2))
    assert scalar(db, edges) == before + 2
    # The owner (the worker, a restore) is not held by row-level security.
    db.execute("""INSERT INTO ruvllm_graph."Cites" (start_id, end_id, properties)
                  VALUES (%s::ag_catalog.graphid, %s::ag_catalog.graphid, '{}'::ag_catalog.agtype)""",
               (a1_vertex, b1_vertex))


ADMIN_ONLY = ["witness_async = off", "generation_threads = 256", "max_query_tokens = 100000",
              "max_loaded_models = 16", "explore_rate = 1", "quality_threshold = 0", "replay_capacity = 100",
              "utility_lambda = 0", "utility_mu = 0", "judge_max_per_run = 10000",
              "witness_archive_after = '1d'", "guard_cypher_writes = off", "models_dir = '/tmp'",
              "pii_mask = 'none'"]


def test_settings_that_change_audit_or_resources_are_the_admins(db, pg):
    alice = login(db, pg, "alice", "ruvllm_user")
    adam = login(db, pg, "adam", "ruvllm_admin")
    for setting in ADMIN_ONLY:
        denied(alice, f"SET ruvllm.{setting}")
        adam.execute(f"SET ruvllm.{setting}")
    for setting in ("query_k = 4", "ef_search = 128", "cache_similarity = 0.9", "confidence_threshold = 0.5"):
        alice.execute(f"SET ruvllm.{setting}")


def test_errors_read_cleanly_with_their_sqlstates(db):
    with pytest.raises(pgerr.UndefinedObject) as e:
        db.execute("""SELECT ruvllm_query('hi', NULL, '{"model": "nope"}')""")
    diag = e.value.diag
    assert diag.message_primary.startswith("ruvllm: unknown model 'nope'")
    assert diag.message_detail is None and diag.message_hint.startswith("Known models:")
    assert "plpy" not in diag.message_primary and "None" not in str(e.value).split("CONTEXT")[0]
    with pytest.raises(pgerr.NumericValueOutOfRange):
        db.execute("""SELECT ruvllm_query('hi', NULL, '{"max_tokens": 1e400}')""")
    a = scalar(db, "SELECT ruvllm_ingest('Edges weigh little.')")
    b = scalar(db, "SELECT ruvllm_ingest('Weights are relative strengths.')")
    with pytest.raises(pgerr.NumericValueOutOfRange) as e:
        db.execute("SELECT ruvllm_link(%s, %s, 'Cites', 3e38)", (a, b))
    assert "weight" in e.value.diag.message_primary
    with pytest.raises(pgerr.StringDataRightTruncation) as e:
        db.execute("SELECT * FROM ruvllm_search(repeat('x', 10000000))")
    assert "100000" in e.value.diag.message_primary and "shorter question" in e.value.diag.message_hint


def test_health_warns_when_no_worker_runs_the_loops_here(db):
    assert scalar(db, "SELECT current_setting('ruvllm.databases')") == ""
    health = scalar(db, "SELECT ruvllm_health()")
    assert any("no background worker runs the learning loops" in w for w in health["warnings"])
    assert health["status"] == "healthy"  # a warning, not a problem


def test_the_question_limit_cannot_be_passed_with_one_long_word(db):
    with pytest.raises(pgerr.StringDataRightTruncation) as e:
        db.execute("SELECT ruvllm_query(repeat('x', 50000))")
    assert "over 4 x ruvllm.max_query_tokens (2048)" in e.value.diag.message_primary
    assert scalar(db, "SELECT ruvllm_witness_flush(10000)")
    assert db.execute("SELECT error_sqlstate, generation_ms, length(query) FROM ruvllm.witness").fetchall() \
        == [("22001", None, 50000)]  # witnessed, nothing generated


@pytest.mark.parametrize("sql, error", [
    ("SELECT ruvllm_create_tenant('..')", pgerr.InvalidParameterValue),
    ("SELECT ruvllm_set_retention('sessions', '1 microsecond')", pgerr.InvalidParameterValue),
    ("SELECT ruvllm_ingest('a doc', 'Document', repeat('s', 10000000))", pgerr.StringDataRightTruncation),
    ("SELECT ruvllm_ingest('a doc', 'Document', NULL, (repeat('{\"a\":', 5000) || '1' || repeat('}', 5000))::jsonb)",
     pgerr.InvalidParameterValue),
    ("SELECT ruvllm_ingest('a doc', 'Document', NULL, '{\"version\": 2147483647}')", pgerr.InvalidParameterValue),
    ("SELECT ruvllm_ingest('a doc', 'Document', NULL, jsonb_build_object('blob', repeat('x', 100000)))",
     pgerr.StringDataRightTruncation),
])
def test_inputs_that_were_accepted_but_wrong_are_refused(db, sql, error):
    with pytest.raises(error):
        db.execute(sql)
    assert scalar(db, "SELECT count(*) FROM ruvllm.nodes") == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.tenants") == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.retention WHERE target = 'sessions'") == 0
