"""The learning loops' background worker, on a server of its own: ruvllm preloaded, short loop
intervals, and ruvllm.databases naming a database the test creates, breaks, reconfigures, crashes
and finally drops.

Its own server, because the worker is configured at server start and the shared test server must
not have workers writing into the databases of other tests.
"""
import os
import re
import signal
import time

import pytest

from helpers import HAVE_PG, private_server, scalar, wait_for

DB = "worker_db"
# An answered request as the witness writer would store it, for the instant loop to judge.
ANSWER = ("INSERT INTO ruvllm.witness (request_id, query, response, model) VALUES (gen_random_uuid(), "
          "'What does VACUUM do?', 'VACUUM reclaims the space of dead tuples.', 'smollm2-135m-instruct')")

pytestmark = pytest.mark.skipif(
    not HAVE_PG,
    reason="PostgreSQL 17 is not here: run the tests with `make test`")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with private_server(tmp_path_factory.mktemp("worker_pg"), f"""
max_connections = 20
shared_preload_libraries = 'age,ruvllm'
ruvllm.databases = '{DB}'
ruvllm.instant_interval = 1
ruvllm.background_interval = 2
ruvllm.deep_interval = 3
""") as srv:
        yield srv


def pid_of(admin, backend_type, dbname=None):
    return scalar(admin, "SELECT pid FROM pg_stat_activity WHERE backend_type = %s"
                  " AND datname IS NOT DISTINCT FROM %s", (backend_type, dbname))


def worker_runs(conn, loop, since=None, status=None):
    """started_at of the worker's runs of loop (after since), oldest first."""
    return [r[0] for r in conn.execute(
        "SELECT started_at FROM ruvllm.loop_runs WHERE run_by = 'worker' AND loop = %s"
        " AND started_at > coalesce(%s::timestamptz, '-infinity') AND status = coalesce(%s::text, status)"
        " ORDER BY started_at", (loop, since, status)).fetchall()]


def gaps(times):
    return [(b - a).total_seconds() for a, b in zip(times, times[1:])]


def ruvllm_problems(log):
    """Server log lines at WARNING or worse that concern ruvllm's processes."""
    return [line for line in log.splitlines()
            if re.search(r"\b(WARNING|ERROR|FATAL|PANIC):", line) and "ruvllm" in line]


def test_worker_runs_loops_survives_failures_reload_and_crashes(server):
    admin = server.connect()
    launcher = wait_for("the launcher", lambda: pid_of(admin, "ruvllm launcher"))

    # A listed database that does not exist yet: the launcher says so once and waits.
    missing = f'database "{DB}" in "ruvllm.databases" does not exist'
    wait_for("the launcher to report the missing database", lambda: missing in server.log())
    admin.execute(f"CREATE DATABASE {DB}")
    worker = wait_for("a worker for the new database",
                      lambda: pid_of(admin, "ruvllm worker", DB), timeout=15)
    wait_for("the worker to say what it waits for", lambda: scalar(
        admin, "SELECT query FROM pg_stat_activity WHERE pid = %s", (worker,))
        == "ruvllm worker: waiting for CREATE EXTENSION ruvllm")

    # Without the extension it only looks now and then, quietly, and stays up.
    time.sleep(2.5)
    conn = server.connect(DB)
    assert scalar(conn, "SELECT to_regclass('ruvllm.loop_runs')") is None
    assert pid_of(admin, "ruvllm worker", DB) == worker
    assert ruvllm_problems(server.log()) == []

    # Installed: every loop runs on its interval, one transaction per run, all by this worker.
    conn.execute("CREATE EXTENSION ruvllm CASCADE")
    # The worker records instant runs only when they did something: give it an answer to judge.
    conn.execute(ANSWER)
    wait_for("worker runs of all three loops",
             lambda: len(worker_runs(conn, "instant", status="ok")) >= 1
             and all(len(worker_runs(conn, loop, status="ok")) >= 2 for loop in ("background", "deep")))
    assert scalar(conn, "SELECT count(*) FROM ruvllm.witness WHERE quality IS NOT NULL") == 1
    for loop, interval in (("instant", 1), ("background", 2), ("deep", 3)):
        spacing = gaps(worker_runs(conn, loop))
        # started_at is taken inside the run, so a slow start of one run (the first pays for
        # PL/Python's imports) shortens its gap to the next: the bound leaves room for that.
        assert all(g >= interval * 0.6 for g in spacing), (loop, spacing)
    assert scalar(conn, "SELECT count(*) FROM ruvllm.loop_runs WHERE run_by = 'worker' AND status <> 'ok'") == 0
    assert pid_of(admin, "ruvllm worker", DB) == worker
    # Visible under its name, sleeping on its own wait event between runs.
    wait_for("the worker idle on its wait event", lambda: admin.execute(
        "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND backend_type = 'ruvllm worker'"
        " AND datname = %s AND wait_event = 'RuvllmWorkerMain'", (worker, DB)).fetchone())
    # And by hand, recorded as such.
    run = scalar(conn, "SELECT ruvllm_run_loop('deep')")
    assert run["run_by"] == "manual" and run["status"] == "ok"

    # DROP EXTENSION under a running worker: no run fails half-way (the worker locks the
    # extension for each run); it waits quietly again, and starts over on CREATE EXTENSION.
    conn.execute("DROP EXTENSION ruvllm CASCADE")
    time.sleep(1.5)
    conn.execute("CREATE EXTENSION ruvllm CASCADE")
    conn.execute(ANSWER)
    wait_for("worker runs after CREATE EXTENSION again",
             lambda: all(worker_runs(conn, loop) for loop in ("instant", "background", "deep")))
    assert ruvllm_problems(server.log()) == []
    assert pid_of(admin, "ruvllm worker", DB) == worker

    # One loop fails for real (its run cannot be recorded): logged, and the worker goes on with the
    # other loops, in the same process. (The background loop, as it records every run.)
    conn.execute("ALTER TABLE ruvllm.loop_runs ADD CONSTRAINT no_background"
                 " CHECK (loop <> 'background') NOT VALID")
    broken_at = scalar(conn, "SELECT clock_timestamp()")
    failed = f'ruvllm worker: background loop in database "{DB}" failed'
    wait_for("two logged failures of the background loop", lambda: server.log().count(failed) >= 2)
    wait_for("deep runs while background fails", lambda: worker_runs(conn, "deep", broken_at))
    assert 'violates check constraint "no_background"' in server.log()
    assert pid_of(admin, "ruvllm worker", DB) == worker
    conn.execute("ALTER TABLE ruvllm.loop_runs DROP CONSTRAINT no_background")
    fixed_at = scalar(conn, "SELECT clock_timestamp()")
    wait_for("the background loop to recover", lambda: worker_runs(conn, "background", fixed_at, "ok"))
    assert pid_of(admin, "ruvllm worker", DB) == worker

    # SIGHUP: the new interval takes, in the same worker; the other loops keep theirs.
    admin.execute("ALTER SYSTEM SET ruvllm.background_interval = 4")
    admin.execute("SELECT pg_reload_conf()")
    reloaded_at = scalar(conn, "SELECT clock_timestamp()")
    after = wait_for("two background runs after the reload",
                     lambda: (lambda r: r if len(r) >= 2 else None)(worker_runs(conn, "background", reloaded_at)),
                     timeout=15)
    assert gaps(after)[0] >= 3.0, gaps(after)  # 4 s now, 2 s before
    deep = gaps(worker_runs(conn, "deep", reloaded_at))
    assert deep and min(deep) < 3.7, deep  # still 3 s
    assert pid_of(admin, "ruvllm worker", DB) == worker
    assert pid_of(admin, "ruvllm launcher") == launcher

    # A worker that exits is started again by the launcher.
    assert scalar(admin, "SELECT pg_terminate_backend(%s)", (worker,))
    restarted = wait_for("a new worker after pg_terminate_backend",
                         lambda: (lambda p: p if p and p != worker else None)(pid_of(admin, "ruvllm worker", DB)),
                         timeout=15)
    assert pid_of(admin, "ruvllm launcher") == launcher

    # A crashed worker takes the server through crash recovery; the launcher comes back and starts
    # a worker, which picks up the schedule where it was.
    killed_at = scalar(conn, "SELECT clock_timestamp()")
    admin.close()
    conn.close()
    os.kill(restarted, signal.SIGKILL)
    wait_for("the crash to be noticed", lambda: "terminated by signal 9" in server.log())
    admin = server.connect()
    after_crash = wait_for("a worker after the crash",
                           lambda: (lambda p: p if p and p != restarted else None)(pid_of(admin, "ruvllm worker", DB)),
                           timeout=30)
    assert pid_of(admin, "ruvllm launcher") not in (None, launcher)
    conn = server.connect(DB)
    wait_for("worker runs after the crash", lambda: worker_runs(conn, "background", killed_at), timeout=15)
    assert pid_of(admin, "ruvllm worker", DB) == after_crash
    conn.close()

    # DROP DATABASE ... WITH (FORCE) ends the worker; the launcher then waits for the database
    # instead of starting workers that cannot connect.
    log_before = server.log()
    start = time.monotonic()
    admin.execute(f"DROP DATABASE {DB} WITH (FORCE)")
    assert time.monotonic() - start < 10
    wait_for("the launcher to wait for the dropped database",
             lambda: server.log().count(missing) > log_before.count(missing), timeout=15)
    assert pid_of(admin, "ruvllm worker", DB) is None
    # No worker was started into the dropped database (it would die with 'database ... does not
    # exist').
    assert f'FATAL:  database "{DB}" does not exist' not in server.log()[len(log_before):]
    admin.close()
