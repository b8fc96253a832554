"""The learning loops' background worker, on a server of its own: ruvllm preloaded, short loop
intervals, and ruvllm.databases naming a database the test creates, breaks, reconfigures, crashes
and finally drops.

Its own server, because the worker is configured at server start and the shared test server must
not have workers writing into the databases of other tests.

One scenario in steps, run in file order on the same server: each step waits for the events it
needs (a process, a log line, a row) with a deadline, and asserts no wall-clock bounds. A step
that fails skips the ones after it, which would only fail for its reason.
"""
import functools
import os
import re
import signal
import types

import pytest

from helpers import HAVE_PG, private_server, scalar, wait_for

DB = "worker_db"
MISSING = f'database "{DB}" in "ruvllm.databases" does not exist'
WAITING = "ruvllm worker: waiting for CREATE EXTENSION ruvllm"
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


def least_gaps(conn, loop):
    """For each worker run of loop after the first two, the least time that can have passed since
    the run before it began: runs are recorded with started_at taken inside the run (after
    PL/Python's setup, which may be slow), but the worker is one process, so a run began no earlier
    than the worker's previous recorded run had finished. Comparing with that bound, a run that
    came before its interval shows whatever the load."""
    rows = conn.execute("SELECT loop, started_at, finished_at FROM ruvllm.loop_runs"
                        " WHERE run_by = 'worker' ORDER BY started_at").fetchall()
    gaps, began_after, last_finished = [], None, None
    for name, started, finished in rows:
        if name == loop:
            if began_after is not None:
                gaps.append((started - began_after).total_seconds())
            began_after = last_finished
        last_finished = finished if last_finished is None else max(last_finished, finished)
    return gaps


def activity(admin, pid):
    return scalar(admin, "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))


def ruvllm_problems(log):
    """Server log lines at WARNING or worse that concern ruvllm's processes."""
    return [line for line in log.splitlines()
            if re.search(r"\b(WARNING|ERROR|FATAL|PANIC):", line) and "ruvllm" in line]


@pytest.fixture(scope="module")
def scenario():
    """What the steps hand on: process ids, and the first step that failed."""
    return types.SimpleNamespace(failed=None)


def step(fn):
    @functools.wraps(fn)
    def run(server, scenario):
        if scenario.failed:
            pytest.skip(f"an earlier step failed: {scenario.failed}")
        try:
            fn(server, scenario)
        except BaseException:
            scenario.failed = fn.__name__
            raise
    return run


@step
def test_the_launcher_waits_for_a_listed_database_that_does_not_exist(server, scenario):
    with server.connect() as admin:
        scenario.launcher = wait_for("the launcher", lambda: pid_of(admin, "ruvllm launcher"))
        wait_for("the launcher to report the missing database", lambda: MISSING in server.log())


@step
def test_a_worker_starts_for_the_new_database_and_waits_quietly_for_the_extension(server, scenario):
    with server.connect() as admin:
        admin.execute(f"CREATE DATABASE {DB}")
        worker = scenario.worker = wait_for("a worker for the new database",
                                            lambda: pid_of(admin, "ruvllm worker", DB), timeout=15)
        wait_for("the worker to say what it waits for", lambda: activity(admin, worker) == WAITING)

        # Without the extension it only looks now and then, quietly, and stays up. Each look is a
        # transaction that ends with the worker idle again from a new state_change: wait for two
        # more looks.
        looks = set()

        def looked_twice_more():
            looks.add(scalar(admin, "SELECT state_change FROM pg_stat_activity"
                                    " WHERE pid = %s AND state = 'idle'", (worker,)))
            looks.discard(None)
            return len(looks) >= 3
        wait_for("two more looks for the extension", looked_twice_more, every=0.1)
        with server.connect(DB) as conn:
            assert scalar(conn, "SELECT to_regclass('ruvllm.loop_runs')") is None
        assert pid_of(admin, "ruvllm worker", DB) == worker
        assert ruvllm_problems(server.log()) == []


@step
def test_once_installed_every_loop_runs_by_the_worker_on_its_interval(server, scenario):
    worker = scenario.worker
    with server.connect() as admin, server.connect(DB) as conn:
        conn.execute("CREATE EXTENSION ruvllm CASCADE")
        # The worker records instant runs only when they did something: give it an answer to judge.
        conn.execute(ANSWER)
        # Three runs of the others, so that each has a run whose start the run before bounds.
        wait_for("worker runs of all three loops",
                 lambda: len(worker_runs(conn, "instant", status="ok")) >= 1
                 and all(len(worker_runs(conn, loop, status="ok")) >= 3 for loop in ("background", "deep")))
        assert scalar(conn, "SELECT count(*) FROM ruvllm.witness WHERE quality IS NOT NULL") == 1
        # One transaction per run, none sooner than its loop's interval after the one before.
        for loop, interval in (("instant", 1), ("background", 2), ("deep", 3)):
            spacing = least_gaps(conn, loop)
            assert all(g >= interval for g in spacing), (loop, spacing)
        assert least_gaps(conn, "background") and least_gaps(conn, "deep")
        assert scalar(conn, "SELECT count(*) FROM ruvllm.loop_runs WHERE run_by = 'worker' AND status <> 'ok'") == 0
        assert pid_of(admin, "ruvllm worker", DB) == worker
        # Visible under its name, sleeping on its own wait event between runs.
        wait_for("the worker idle on its wait event", lambda: admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND backend_type = 'ruvllm worker'"
            " AND datname = %s AND wait_event = 'RuvllmWorkerMain'", (worker, DB)).fetchone())
        # And by hand, recorded as such.
        run = scalar(conn, "SELECT ruvllm_run_loop('deep')")
        assert run["run_by"] == "manual" and run["status"] == "ok"


@step
def test_drop_extension_under_the_worker_fails_no_run_and_create_starts_over(server, scenario):
    # No run fails half-way (the worker locks the extension for each run); the worker waits
    # quietly again, and starts over on CREATE EXTENSION.
    worker = scenario.worker
    with server.connect() as admin, server.connect(DB) as conn:
        conn.execute("DROP EXTENSION ruvllm CASCADE")
        wait_for("the worker to wait for the extension again", lambda: activity(admin, worker) == WAITING)
        conn.execute("CREATE EXTENSION ruvllm CASCADE")
        conn.execute(ANSWER)
        wait_for("worker runs after CREATE EXTENSION again",
                 lambda: all(worker_runs(conn, loop) for loop in ("instant", "background", "deep")))
        assert ruvllm_problems(server.log()) == []
        assert pid_of(admin, "ruvllm worker", DB) == worker


@step
def test_a_failing_loop_is_logged_and_the_others_go_on(server, scenario):
    # One loop fails for real (its run cannot be recorded): logged, and the worker goes on with the
    # other loops, in the same process. (The background loop, as it records every run.)
    worker = scenario.worker
    with server.connect() as admin, server.connect(DB) as conn:
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


@step
def test_a_reload_changes_an_interval_in_the_same_worker(server, scenario):
    # SIGHUP: the new interval takes, in the same worker; the other loops keep theirs. Background
    # goes from 2 s to an hour: while deep (3 s) runs three times, background runs at most once
    # (a run already due when the reload came), where it ran three times or more before.
    worker = scenario.worker
    with server.connect() as admin, server.connect(DB) as conn:
        admin.execute("ALTER SYSTEM SET ruvllm.background_interval = '1h'")
        admin.execute("SELECT pg_reload_conf()")
        reloaded_at = scalar(conn, "SELECT clock_timestamp()")
        wait_for("three deep runs after the reload", lambda: len(worker_runs(conn, "deep", reloaded_at)) >= 3)
        assert len(worker_runs(conn, "background", reloaded_at)) <= 1
        assert pid_of(admin, "ruvllm worker", DB) == worker
        assert pid_of(admin, "ruvllm launcher") == scenario.launcher
        # Back to 2 s from the server's configuration: the overdue loop runs again.
        admin.execute("ALTER SYSTEM RESET ruvllm.background_interval")
        admin.execute("SELECT pg_reload_conf()")
        restored_at = scalar(conn, "SELECT clock_timestamp()")
        wait_for("a background run after the interval is restored",
                 lambda: worker_runs(conn, "background", restored_at))
        assert pid_of(admin, "ruvllm worker", DB) == worker


@step
def test_a_worker_that_exits_is_started_again(server, scenario):
    with server.connect() as admin:
        assert scalar(admin, "SELECT pg_terminate_backend(%s)", (scenario.worker,))
        scenario.worker = wait_for(
            "a new worker after pg_terminate_backend",
            lambda: (lambda p: p if p and p != scenario.worker else None)(pid_of(admin, "ruvllm worker", DB)),
            timeout=15)
        assert pid_of(admin, "ruvllm launcher") == scenario.launcher


@step
def test_a_crashed_worker_takes_the_server_through_recovery_and_the_schedule_goes_on(server, scenario):
    # The launcher comes back and starts a worker, which picks up the schedule where it was.
    crashed = scenario.worker
    with server.connect(DB) as conn:
        killed_at = scalar(conn, "SELECT clock_timestamp()")
    os.kill(crashed, signal.SIGKILL)
    wait_for("the crash to be noticed", lambda: "terminated by signal 9" in server.log())
    with server.connect() as admin:
        after_crash = wait_for(
            "a worker after the crash",
            lambda: (lambda p: p if p and p != crashed else None)(pid_of(admin, "ruvllm worker", DB)),
            timeout=30)
        assert pid_of(admin, "ruvllm launcher") not in (None, scenario.launcher)
        with server.connect(DB) as conn:
            wait_for("worker runs after the crash", lambda: worker_runs(conn, "background", killed_at), timeout=15)
        assert pid_of(admin, "ruvllm worker", DB) == after_crash


@step
def test_drop_database_force_ends_the_worker_and_the_launcher_waits_for_it(server, scenario):
    # DROP DATABASE ... WITH (FORCE) ends the worker (it fails if the worker outlives its
    # SIGTERM); the launcher then waits for the database instead of starting workers that cannot
    # connect.
    log_before = server.log()
    with server.connect() as admin:
        admin.execute(f"DROP DATABASE {DB} WITH (FORCE)")
        wait_for("the launcher to wait for the dropped database",
                 lambda: server.log().count(MISSING) > log_before.count(MISSING), timeout=15)
        assert pid_of(admin, "ruvllm worker", DB) is None
    # No worker was started into the dropped database (it would die with 'database ... does not
    # exist').
    assert f'FATAL:  database "{DB}" does not exist' not in server.log()[len(log_before):]
