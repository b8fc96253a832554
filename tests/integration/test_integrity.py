"""Integrity of memory and audit, probed as the application roles that found the holes: what a
tenant's role, an unbound application role and an analyst may not learn or change."""
from psycopg import errors as pgerr

from test_query import scalar
from test_security import denied, login


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
