"""What the witness log keeps when things go wrong, counted rather than assumed: a backend killed
mid-query (PostgreSQL then restarts every backend), an immediate shutdown right after a burst,
a torn queue file, 8 concurrent clients, the caller's rollback and statement_timeout, rows too big
for the queue, and the writer's memory over 100K rows.

The crash tests run on a server of their own (crashing the shared test server would break the
tests beside them). To have rows sitting in the queue at the crash, a session holds an ACCESS
EXCLUSIVE lock on ruvllm.witness, so the writer waits with its batch uncommitted.
"""
import os
import signal
import threading
import time

import psycopg
import pytest

from helpers import private_server, scalar, wait_for

PG_BIN = os.environ.get("RUVLLM_PG_BIN", "/usr/lib/postgresql/17/bin")
DB = "crash_db"
CUT_MARK = " [cut by ruvllm: {n} bytes in all]"  # python/ruvllm/witness.py
ENTRY_MAGIC = (0x52565731).to_bytes(4, "little")  # WITNESS_ENTRY_MAGIC, extension/witness_queue.c

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(PG_BIN, "pg_ctl")),
    reason="PostgreSQL 17 is not here: run the tests with `make test`")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with private_server(tmp_path_factory.mktemp("witness_pg"), settings="""
max_connections = 30
max_worker_processes = 16
shared_preload_libraries = 'age,ruvllm'
restart_after_crash = on
""") as srv:
        with srv.connect("postgres") as admin:
            admin.execute(f"CREATE DATABASE {DB}")
        srv.dbname = DB
        with srv.connect() as conn:
            conn.execute("CREATE EXTENSION ruvllm CASCADE")
        yield srv


def enqueue(conn, tag, n, pad=0):
    """Queues n witness rows through the queue ruvllm_query uses; returns how many it took."""
    return scalar(conn, """
        SELECT count(*) FILTER (WHERE ruvllm._witness_enqueue(json_build_object(
                   'request_id', gen_random_uuid(), 'query', %s || ':' || i || ':' || repeat('x', %s),
                   'tenant', '', 'cache_hit', false, 'explored', false,
                   'created_at', clock_timestamp())::text))
          FROM generate_series(1, %s) i""", (tag, pad, n))


def count(conn, tag):
    return scalar(conn, "SELECT count(*) FROM ruvllm.witness WHERE query LIKE %s", (tag + ":%",))


def stats(conn):
    cur = conn.execute("SELECT * FROM ruvllm._witness_queue_stats()")
    return dict(zip([c.name for c in cur.description], cur.fetchone()))


def health_queue(conn):
    return scalar(conn, "SELECT ruvllm_health()")["witness_queue"]


def writer_waiting_on_lock(conn):
    return scalar(conn, """SELECT count(*) FROM pg_stat_activity
                            WHERE backend_type = 'ruvllm witness writer' AND datname = current_database()
                              AND wait_event_type = 'Lock'""") == 1


def hold_up_writer(server, conn, tag):
    """A session locking the witness table, and the writer waiting on it with one row (tag:first)."""
    locker = server.connect()
    locker.execute("BEGIN")
    locker.execute("LOCK TABLE ruvllm.witness IN ACCESS EXCLUSIVE MODE")
    assert enqueue(conn, tag + "-first", 1) == 1
    wait_for("the witness writer to wait on the lock", lambda: writer_waiting_on_lock(conn))
    return locker


@pytest.mark.parametrize("attempt", range(2))  # the second crashes a ring that came through one
def test_rows_queued_when_a_backend_is_killed_are_written_after_the_restart(server, attempt):
    conn = server.connect()
    conn.execute("SELECT ruvllm_witness_flush(30000)")
    restarts = server.log().count("all server processes terminated; reinitializing")
    before = stats(conn)
    tag = f"kill{attempt}"
    locker = hold_up_writer(server, conn, tag)
    assert enqueue(conn, tag, 20) == 20
    queued = stats(conn)
    assert queued["pending_rows"] == 21 and queued["queued"] - before["queued"] == 21

    # A backend killed mid-query: the postmaster ends every backend and reinitializes shared memory.
    victim = server.connect()
    victim_pid = scalar(victim, "SELECT pg_backend_pid()")
    sleeper = threading.Thread(target=lambda: _swallow(lambda: victim.execute("SELECT pg_sleep(300)")))
    sleeper.start()
    wait_for("the victim to sleep", lambda: scalar(conn, "SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                                   (victim_pid,)) == "PgSleep")
    os.kill(victim_pid, signal.SIGKILL)
    # Closed only once every backend is gone: closing the locker earlier would release the lock,
    # and the writer could commit before the postmaster ends it.
    wait_for("the crash restart", lambda: server.log().count("all server processes terminated; reinitializing") > restarts)
    sleeper.join(30)
    for c in (conn, locker, victim):
        _swallow(c.close)

    conn = server.connect()
    restarted = time.monotonic()
    assert scalar(conn, "SELECT ruvllm_witness_flush(60000)")
    took_ms = (time.monotonic() - restarted) * 1000
    assert count(conn, tag + "-first") == 1 and count(conn, tag) == 20
    after = stats(conn)
    assert after["recovered"] == 21 and after["lost"] == 0, (after, server.log()[-3000:])
    assert after["pending_rows"] == 0 and after["queued"] == after["written"] == queued["queued"]
    health = health_queue(conn)
    assert health["recovered"] == 21 and health["lost"] == 0 and health["lost_before_reset"] == 0
    print(f"\nkill -9: 21 of 21 queued rows kept; written {took_ms:.0f} ms after reconnecting")


def test_rows_queued_at_an_immediate_shutdown_are_written_after_the_restart(server):
    conn = server.connect()
    conn.execute("SELECT ruvllm_witness_flush(30000)")
    _locker = hold_up_writer(server, conn, "held")
    assert enqueue(conn, "held", 2000) == 2000
    assert stats(conn)["pending_rows"] == 2001
    server.ctl("-m", "immediate", "stop")
    server.ctl("start")

    conn = server.connect()
    assert scalar(conn, "SELECT ruvllm_witness_flush(60000)")
    assert count(conn, "held-first") == 1 and count(conn, "held") == 2000
    after = stats(conn)
    assert after["recovered"] == 2001 and after["lost"] == 0 and after["pending_rows"] == 0
    assert health_queue(conn)["recovered"] == 2001

    # A burst racing the shutdown, the writer free: rows it committed just before the stop are
    # not written twice (the ring resumes where ruvllm.witness_writer_state says), none is lost.
    assert enqueue(conn, "burst", 2000) == 2000
    server.ctl("-m", "immediate", "stop")
    server.ctl("start")
    conn = server.connect()
    kept = stats(conn)["recovered"]
    assert scalar(conn, "SELECT ruvllm_witness_flush(60000)")
    assert count(conn, "burst") == 2000
    assert scalar(conn, "SELECT count(DISTINCT query) FROM ruvllm.witness WHERE query LIKE 'burst:%'") == 2000
    after = stats(conn)
    assert after["lost"] == 0 and after["pending_rows"] == 0
    assert health_queue(conn)["lost"] == 0
    print(f"\nimmediate shutdown: 2001 of 2001 held rows kept; {kept} of a 2000-row burst were still "
          "queued at the stop, all written after it")


def test_a_torn_queue_file_loses_only_what_is_past_the_tear_and_says_so(server):
    conn = server.connect()
    conn.execute("SELECT ruvllm_witness_flush(30000)")
    locker = hold_up_writer(server, conn, "torn")
    assert enqueue(conn, "torn", 5) == 5
    lost_before = stats(conn)["lost"]
    server.ctl("-m", "immediate", "stop")  # the lock is still held: the six rows wait
    _swallow(locker.close)

    # Corrupt the length of the fourth of the six waiting rows (torn:3), as a crash of the
    # operating system halfway through writing the page might: it and the two after it are lost.
    path = server.datadir / "pg_stat_tmp" / "ruvllm_witness.ring"
    data = bytearray(path.read_bytes())
    fourth = [i for i in _find_all(data, ENTRY_MAGIC) if data[i + 8:i + 9] == b"{"
              and b'"torn:3:' in data[i + 8:i + 200]]
    assert len(fourth) == 1
    fourth = fourth[0]
    data[fourth + 4:fourth + 8] = (10 ** 9).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    server.ctl("start")

    conn = server.connect()
    assert scalar(conn, "SELECT ruvllm_witness_flush(60000)")
    assert count(conn, "torn-first") == 1 and count(conn, "torn") == 2
    s = stats(conn)
    assert s["lost"] - lost_before == 3 and s["pending_rows"] == 0
    health = scalar(conn, "SELECT ruvllm_health()")
    assert health["witness_queue"]["lost"] == s["lost"]
    assert any("witness rows could not be written" in p for p in health["problems"])
    assert "bytes past its last whole row dropped" in server.log()


def test_eight_concurrent_clients_lose_no_row(server):
    conn = server.connect()
    conn.execute("SELECT ruvllm_witness_flush(30000)")
    before = stats(conn)
    taken, errors = [], []

    def client(k):
        try:
            with server.connect() as c:
                for batch in range(20):
                    taken.append(enqueue(c, f"client{k}", 15))
                    # A failed call through ruvllm_query: its row comes from the Python package.
                    with pytest.raises(psycopg.Error):
                        c.execute("SELECT ruvllm_query(%s, NULL, '{\"max_tokens\": -5}')",
                                  (f"client{k}:failed:{batch}",))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors
    assert scalar(conn, "SELECT ruvllm_witness_flush(60000)")
    after = stats(conn)
    assert sum(taken) == 8 * 20 * 15 and after["rejected"] == before["rejected"]
    for k in range(8):
        assert count(conn, f"client{k}") == 20 * 15 + 20
    assert scalar(conn, "SELECT count(*) FROM ruvllm.witness WHERE query LIKE 'client%%:failed:%%' "
                        "AND error_sqlstate IS NOT NULL") == 8 * 20
    assert after["queued"] - before["queued"] == 8 * 20 * 16 and after["lost"] == before["lost"]


def test_rows_survive_the_callers_rollback_and_statement_timeout(db):
    db.execute("SET ruvllm.answer_style = documents")   # generates: no abstention, no extractive tier
    db.execute("BEGIN")
    db.execute("SELECT ruvllm_query('What does VACUUM do, rolled back?')")
    db.execute("ROLLBACK")
    db.execute("SET statement_timeout = '300ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        db.execute("SELECT ruvllm_query('What does VACUUM do, with too little time?')")
    db.execute("RESET statement_timeout")
    assert scalar(db, "SELECT ruvllm_witness_flush(30000)")
    rows = db.execute("SELECT query, error_sqlstate, response IS NOT NULL FROM ruvllm.witness "
                      "WHERE query LIKE 'What does VACUUM do,%' ORDER BY query").fetchall()
    assert rows[0] == ("What does VACUUM do, rolled back?", None, True)
    # The cancel lands where the call next reaches PostgreSQL: the row has its error, or, when
    # generation was the slow part and the rest fast, the call ended before the cancel was seen.
    assert len(rows) == 2 and rows[1][0] == "What does VACUUM do, with too little time?"
    assert rows[1][1] in ("57014", None)


def test_rows_too_big_for_the_queue_are_cut_and_still_written(db):
    huge = "How do I vacuum " + "a" * (10 * 1024 * 1024)
    word = "ä" * 50_000
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        db.execute("SELECT ruvllm_query(%s)", (huge,))
    try:
        db.execute("SELECT ruvllm_query(%s, NULL, '{\"max_tokens\": 8}')", (word,))
    except psycopg.Error:
        pass
    assert scalar(db, "SELECT ruvllm_witness_flush(30000)")
    rows = dict(db.execute("SELECT left(query, 16), query FROM ruvllm.witness").fetchall())
    cut = rows["How do I vacuum "]
    assert cut.endswith(CUT_MARK.format(n=len(huge.encode())))
    assert huge.startswith(cut[:-len(CUT_MARK.format(n=len(huge.encode())))])
    assert 100_000 < len(cut.encode()) < 256 * 1024
    # 100 KB of UTF-8 fits as it is.
    assert rows["ä" * 16] == word
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness") == 2
    assert scalar(db, "SELECT rejected FROM ruvllm._witness_queue_stats()") == 0


def rss_anon_kb(pid):
    """The writer's private memory (RssAnon): what a leak grows. VmRSS also counts the shared
    buffers and queue pages the writer touches, which grow to their size and stop."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["RssAnon"].split()[0]), int(fields["VmRSS"].split()[0])


def test_the_writers_memory_stays_flat_over_100k_rows(db):
    def feed(tag, n):
        for _ in range(n // 500):
            assert enqueue(db, tag, 500, pad=900) == 500
            assert scalar(db, "SELECT ruvllm_witness_flush(60000)")

    feed("warmup", 5000)
    pid = scalar(db, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ruvllm witness writer' "
                     "AND datname = current_database()")
    warm, warm_rss = rss_anon_kb(pid)
    feed("rss", 100_000)
    assert scalar(db, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ruvllm witness writer' "
                      "AND datname = current_database()") == pid
    after, after_rss = rss_anon_kb(pid)
    assert count(db, "rss") == 100_000
    # Each row is ~1 KB: keeping a copy of each (the old leak) would add ~100 MB.
    assert after - warm < 16 * 1024, (warm, after)
    print(f"\nwitness writer RssAnon {warm} kB -> {after} kB, VmRSS {warm_rss} kB -> {after_rss} kB over 100K rows")


def _swallow(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - a connection that the crash ended
        pass


def _find_all(data, needle):
    i = data.find(needle)
    while i >= 0:
        yield i
        i = data.find(needle, i + 1)
