"""Nobody forges a witness row (issue 12, finding 2), probed as the roles that found it: a role bound
to a tenant and an unbound application role may not plant, doctor or rate witness rows through SQL,
while their own calls are still witnessed, queued or written in their transaction."""
import json
import threading
import uuid

import psycopg
import pytest
from psycopg import errors as pgerr

from helpers import ask, denied, login, scalar, seed, wait_for, witness_rows

PLANTED = json.dumps({"request_id": str(uuid.uuid4()), "tenant": "t_bob", "query": "planted",
                      "model": "gemma-3-270m", "quality": 1.0, "rating": 5, "explored": False,
                      "cache_hit": False, "created_at": "2001-01-01T00:00:00+00:00"})

# What a user or analyst may call in schema ruvllm (the inference servers' are the lead's).
# The search's own pure helpers (BM25, term coverage, the binary query vector) run as the caller.
USER_INTERNALS = {"ruvllm._python_dir()", "ruvllm._library_version()", "ruvllm._python_setup()",
                  "ruvllm._tenant_lookup(name,text)", "ruvllm._witness_queue_stats()",
                  "ruvllm._bm25(tsvector,text[],double precision[],double precision,double precision,double precision)",
                  "ruvllm._term_coverage(tsvector,text[],double precision[])", "ruvllm._vector_recv(bytea)"}
ANALYST_INTERNALS = {"ruvllm._bound_tenant()", "ruvllm._tenant_lookup(name,text)"}


def executable_internals(db, role):
    return {r[0] for r in db.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'ruvllm'::regnamespace AND p.proname NOT LIKE '\\_inference\\_%%'
           AND has_function_privilege(%s, p.oid, 'EXECUTE')""", (role,))}


def no_backend_crashed(pg, *conns):
    for conn in conns:
        assert scalar(conn, "SELECT 1") == 1  # a crash would have ended every session
    logfile = getattr(pg, "logfile", None)
    if logfile:
        with open(logfile, encoding="utf-8", errors="replace") as f:
            assert "terminated by signal" not in f.read()


def reconnect(db, pg, conn):
    new = psycopg.connect(host=pg.host, port=pg.port, user=conn.role, dbname=db.info.dbname, autocommit=True)
    new.role = conn.role
    conn.close()
    return new


@pytest.fixture
def roles(db, pg):
    """alice is bound to t_alice; app is unbound and acts as t_bob."""
    alice = login(db, pg, "alice", "ruvllm_user")
    app = login(db, pg, "app", "ruvllm_user")
    db.execute("SELECT ruvllm_create_tenant('t_alice', ARRAY[%s]::regrole[])", (alice.role,))
    db.execute("SELECT ruvllm_create_tenant('t_bob')")
    for tenant in ("t_alice", "t_bob"):
        db.execute("SELECT set_config('ruvllm.tenant', %s, false)", (tenant,))
        seed(db)
    db.execute("RESET ruvllm.tenant")
    app.execute("SET ruvllm.tenant = 't_bob'")
    return alice, app


def test_users_cannot_write_the_witness_log_yet_their_calls_are_witnessed(db, pg, roles):
    alice, app = roles
    for conn in (alice, app):
        denied(conn, "SELECT ruvllm._witness_enqueue(%s)", (PLANTED,))
        denied(conn, "SELECT ruvllm._witness_write(ARRAY[%s])", (PLANTED,))
        denied(conn, "SELECT ruvllm._witness_rate(%s::jsonb, 't_bob')", (PLANTED,))
        denied(conn, "INSERT INTO ruvllm.witness SELECT * FROM jsonb_populate_record(NULL::ruvllm.witness, %s::jsonb)",
               (PLANTED,))
        denied(conn, "INSERT INTO ruvllm.witness (request_id, query) VALUES (gen_random_uuid(), 'planted')")
        # Nor load the library's entry points as functions of its own.
        denied(conn, "CREATE FUNCTION public.submit(text) RETURNS int AS 'ruvllm', 'ruvllm_witness_submit' "
                     "LANGUAGE C")
    assert executable_internals(db, "ruvllm_user") == USER_INTERNALS
    assert executable_internals(db, "ruvllm_analyst") == ANALYST_INTERNALS
    assert not scalar(db, "SELECT has_table_privilege('ruvllm_user', 'ruvllm.witness', 'INSERT, UPDATE, DELETE')")
    assert not scalar(db, """SELECT bool_or(has_column_privilege('ruvllm_user', 'ruvllm.witness', attname, 'UPDATE'))
                               FROM pg_attribute WHERE attrelid = 'ruvllm.witness'::regclass AND attnum > 0""")

    # Their calls are still witnessed, each under its own tenant, and rated through ruvllm_feedback.
    mine = ask(alice, "What does VACUUM do?", constraints={"max_tokens": 8})
    theirs = ask(app, "What does VACUUM do?", constraints={"max_tokens": 8})
    assert scalar(alice, "SELECT ruvllm_feedback(%s, 4)", (mine["request_id"],)) is None
    assert scalar(app, "SELECT ruvllm_feedback(%s, 2)", (theirs["request_id"],)) is None
    # Ratings are the caller's tenant's only: another tenant's request is not found.
    denied(alice, "SELECT ruvllm_feedback(%s, 5)", (theirs["request_id"],), code=pgerr.NoDataFound)
    rows = {str(r["request_id"]): r for r in witness_rows(db)}
    assert (rows[mine["request_id"]]["tenant"], rows[mine["request_id"]]["rating"]) == ("t_alice", 4)
    assert (rows[theirs["request_id"]]["tenant"], rows[theirs["request_id"]]["rating"]) == ("t_bob", 2)
    # Rating and doctoring a row directly are refused, whichever column.
    for sql in ("UPDATE ruvllm.witness SET quality = 1.0", "UPDATE ruvllm.witness SET rating = 5",
                "UPDATE ruvllm.witness SET correction = 'x', feedback_at = now()", "DELETE FROM ruvllm.witness"):
        for conn in (alice, app):
            denied(conn, sql)
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE query = 'planted' OR quality = 1.0") == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE created_at < '2020-01-01'") == 0
    no_backend_crashed(pg, db, alice, app)


def test_synchronous_witness_rows_commit_and_roll_back_with_the_caller(db, pg, roles):
    alice, app = roles
    # Async (the default): the row survives the caller's ROLLBACK and a failed call.
    alice.autocommit = False
    kept = ask(alice, "What does VACUUM do?", constraints={"max_tokens": 8})
    alice.rollback()
    alice.autocommit = True
    with pytest.raises(pgerr.InvalidParameterValue):
        ask(alice, "kept failure", constraints={"colour": "blue"})
    assert len(witness_rows(db, "request_id = %s", (kept["request_id"],))) == 1
    assert len(witness_rows(db, "query = 'kept failure' AND error_sqlstate = '22023'")) == 1

    # Sync, as an admin gives a role: written in the caller's transaction, as the witness table's
    # owner (the role itself may not write it), tenant stamped.
    for conn in (alice, app):
        db.execute(f'ALTER ROLE "{conn.role}" SET ruvllm.witness_async = off')
    alice, app = reconnect(db, pg, alice), reconnect(db, pg, app)
    app.execute("SET ruvllm.tenant = 't_bob'")
    assert scalar(alice, "SHOW ruvllm.witness_async") == "off"
    queued_before = scalar(db, "SELECT queued FROM ruvllm._witness_queue_stats()")
    for conn, tenant in ((alice, "t_alice"), (app, "t_bob")):
        r = ask(conn, "What does VACUUM do?", constraints={"max_tokens": 8})
        # No flush: the row committed with the call.
        assert scalar(db, "SELECT tenant FROM ruvllm.witness WHERE request_id = %s", (r["request_id"],)) == tenant
        assert scalar(conn, "SELECT ruvllm_feedback(%s, 5)", (r["request_id"],)) is None
        assert scalar(db, "SELECT rating FROM ruvllm.witness WHERE request_id = %s", (r["request_id"],)) == 5
    assert scalar(db, "SELECT queued FROM ruvllm._witness_queue_stats()") == queued_before

    # ... and so it rolls back with the caller, and with a failed call (the documented price of sync).
    alice.autocommit = False
    gone = ask(alice, "What does VACUUM do?", constraints={"max_tokens": 8})
    assert scalar(alice, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s", (gone["request_id"],)) == 1
    alice.rollback()
    alice.autocommit = True
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s", (gone["request_id"],)) == 0
    with pytest.raises(pgerr.InvalidParameterValue):
        ask(alice, "sync failure", constraints={"colour": "blue"})
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE query = 'sync failure'") == 0
    # A failed call in a transaction that goes on: its row goes with its statement, the next
    # call's row commits with the transaction.
    alice.autocommit = False
    alice.execute("SAVEPOINT before_call")
    with pytest.raises(pgerr.InvalidParameterValue):
        ask(alice, "sync failure in a savepoint", constraints={"colour": "blue"})
    alice.execute("ROLLBACK TO SAVEPOINT before_call")
    ok = ask(alice, "What does VACUUM do?", constraints={"max_tokens": 8})
    alice.commit()
    alice.autocommit = True
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE query = 'sync failure in a savepoint'") == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s", (ok["request_id"],)) == 1
    no_backend_crashed(pg, db, alice, app)


def test_a_cancelled_synchronous_witness_write_fails_the_call_cleanly(db, pg, roles):
    alice, _ = roles
    db.execute(f'ALTER ROLE "{alice.role}" SET ruvllm.witness_async = off')
    alice = reconnect(db, pg, alice)
    ask(alice, "What does VACUUM do?", constraints={"max_tokens": 8})  # warms the session up
    pid = scalar(alice, "SELECT pg_backend_pid()")
    holder = psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=db.info.dbname)
    # Reads go on; the witness write waits, inside the library's subtransaction, and is cancelled there.
    holder.execute("LOCK TABLE ruvllm.witness IN SHARE MODE")
    outcome = {}

    def call():
        try:
            outcome["result"] = ask(alice, "cancelled while witnessed", constraints={"max_tokens": 8})
        except psycopg.Error as e:
            outcome["error"] = e
    t = threading.Thread(target=call, daemon=True)
    t.start()
    wait_for("the witness write to wait for the lock", lambda: scalar(
        db, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)))
    assert scalar(db, "SELECT pg_cancel_backend(%s)", (pid,))
    holder.commit()
    holder.close()
    t.join(60)
    assert not t.is_alive()
    assert isinstance(outcome.get("error"), pgerr.QueryCanceled), outcome
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE query = 'cancelled while witnessed'") == 0
    # The session goes on, and its next call is witnessed.
    r = ask(alice, "What does VACUUM do?", constraints={"max_tokens": 8})
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s", (r["request_id"],)) == 1
    no_backend_crashed(pg, db, alice)
