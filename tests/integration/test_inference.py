"""Generation as a shared service (ruvllm.inference = server | remote), on a server of its own:
the supervisor runs a real llama-server with the real SmolLM2 model, and the tests kill it, cancel
requests in it, time them out, stream from it, and point a session at a second llama-server started
here (remote). No wall-clock bounds: each test waits for the event it asserts (a freed slot, a
restarted server); the latencies are measured by bench/query.

Its own server, because the supervisor is configured at server start (the server-wide
ruvllm.inference) and its log must show that killing the inference server is no backend crash.
"""
import json
import os
import signal
import subprocess
import threading
import urllib.request

import psycopg
import pytest

import helpers
from helpers import free_port, scalar

PG_BIN = os.environ.get("RUVLLM_PG_BIN", "/usr/lib/postgresql/17/bin")
LLAMA_SERVER = "/usr/local/bin/llama-server"
MODELS_DIR = os.environ.get("RUVLLM_MODELS_DIR", "/usr/local/share/ruvllm/models")
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL = {"model": "smollm2-135m-instruct"}
# A question the small model answers at length: long enough to be caught generating.
LONG = "Count from 1 to 1000, one number per line, and do not stop."
DB = "inference_db"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(os.path.join(PG_BIN, "pg_ctl")) and os.path.exists(LLAMA_SERVER)),
    reason="PostgreSQL 17 and llama-server are not here: run the tests with `make test`")


def wait_for(what, fn, timeout=120.0, every=0.05):
    """helpers.wait_for with the longer default a model load under load needs."""
    return helpers.wait_for(what, fn, timeout, every)


def http_json(port, path, timeout=2.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except OSError:
        return None, None


class Server:
    def __init__(self, datadir, logfile, port):
        self.datadir, self.logfile, self.port = datadir, logfile, port

    def connect(self, dbname=DB, **kw):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname,
                               autocommit=True, connect_timeout=10, **kw)

    def log(self):
        with open(self.logfile, encoding="utf-8", errors="replace") as f:
            return f.read()

    def inference_server(self, conn):
        """(pid, port, restarts) of the running SmolLM2 server, once it answers /health."""
        row = conn.execute("SELECT pid, port, restarts FROM ruvllm.inference_servers"
                           " WHERE state = 'running' AND model LIKE %s", (f"%{SMOL_FILE}",)).fetchone()
        if row and http_json(row[1], "/health")[0] == 200:
            return row
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("inference_pg")
    datadir, logfile, port = base / "data", base / "server.log", free_port()
    subprocess.run([os.path.join(PG_BIN, "initdb"), "-D", str(datadir), "-U", "postgres",
                    "--auth=trust", "--no-sync", "--no-instructions"], check=True, capture_output=True)
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write(f"""
port = {port}
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 30
fsync = off
shared_preload_libraries = 'age,ruvllm'
ruvllm.inference = 'server'
ruvllm.inference_models = '{SMOL_FILE}'
ruvllm.inference_slots = 4
ruvllm.inference_ctx_per_slot = 2048
# These tests are about generation as a service: documents style generates for every question
# (no abstention, no grounding check replacing the model's text), so a stream's rows are the answer.
ruvllm.answer_style = 'documents'
log_line_prefix = '%m [%p] %b: '
""")
    pg_ctl = os.path.join(PG_BIN, "pg_ctl")
    subprocess.run([pg_ctl, "-D", str(datadir), "-l", str(logfile), "-w", "-t", "60", "start"],
                   check=True, capture_output=True)
    srv = Server(datadir, logfile, port)
    try:
        with srv.connect("postgres") as admin:
            admin.execute(f"CREATE DATABASE {DB}")
        with srv.connect() as conn:
            conn.execute("CREATE EXTENSION ruvllm CASCADE")
            conn.execute("SELECT ruvllm_ingest(%s)", ("ruvllm answers from memory with a local model.",))
            wait_for("the inference server to answer", lambda: srv.inference_server(conn))
        yield srv
    finally:
        stop = subprocess.run([pg_ctl, "-D", str(datadir), "-m", "fast", "-w", "-t", "30", "stop"],
                              capture_output=True, text=True)
        if stop.returncode != 0:
            subprocess.run([pg_ctl, "-D", str(datadir), "-m", "immediate", "stop"], capture_output=True)
            pytest.fail(f"the server did not stop within 30 s: {stop.stderr}\n{srv.log()[-3000:]}")


def ask(conn, question, constraints=None, session=None):
    return scalar(conn, "SELECT ruvllm_query(%s, %s, %s::jsonb)",
                  (question, session, json.dumps({**SMOL, **(constraints or {})})))


def witness_of(conn, question):
    assert scalar(conn, "SELECT ruvllm_witness_flush(10000)")
    return conn.execute("SELECT error, error_sqlstate, response FROM ruvllm.witness WHERE query = %s"
                        " ORDER BY created_at DESC LIMIT 1", (question,)).fetchone()


def busy_slots(port):
    status, slots = http_json(port, "/slots")
    if status != 200:
        return None
    return sum(1 for s in slots if s.get("is_processing"))


class Background:
    """A statement run in a thread on its own connection; the error it ends with, if any."""

    def __init__(self, conn, sql, params=None):
        self.conn, self.error, self.result = conn, None, None
        self.pid = conn.info.backend_pid
        self.thread = threading.Thread(target=self._run, args=(sql, params), daemon=True)
        self.thread.start()

    def _run(self, sql, params):
        try:
            self.result = self.conn.execute(sql, params).fetchall()
        except psycopg.Error as e:
            self.error = e

    def join(self):
        self.thread.join(600)
        assert not self.thread.is_alive(), "the statement did not end"


def test_answers_through_the_server_without_a_model_in_the_backend(server):
    with server.connect() as conn:
        r = ask(conn, "What does ruvllm answer from?", {"max_tokens": 16})
        assert r["text"].strip()
        assert r["latency_ms"]["generation"] > 0
        # The backend loaded no model: generation and token counting went to the server.
        assert scalar(conn, "SELECT ruvllm_info()->'loaded_models'") == []
        assert scalar(conn, "SELECT ruvllm_generate('Say hello.', 8)").strip()
        health = scalar(conn, "SELECT ruvllm_health()")
        assert health["inference"]["mode"] == "server"
        [entry] = health["inference"]["servers"]
        assert entry["state"] == "running" and entry["pid"] > 0 and entry["slots_busy"] == 0
        assert not [p for p in health["problems"] if "inference" in p]
        row = conn.execute("SELECT state, slots_busy, last_error FROM ruvllm.inference_servers").fetchone()
        assert row[0] == "running" and row[1] == 0


def test_in_process_still_works_beside_the_server(server):
    with server.connect() as conn:
        conn.execute("SET ruvllm.inference = 'in_process'")
        r = ask(conn, "What does ruvllm answer with?", {"max_tokens": 8})
        assert r["text"].strip()
        assert any(p.endswith(SMOL_FILE) for p in scalar(conn, "SELECT ruvllm_info()->'loaded_models'"))


@pytest.mark.parametrize("how", ["cancel", "statement_timeout"])
def test_cancel_and_timeout_end_the_request_and_free_its_slot(server, how):
    with server.connect() as conn, server.connect() as admin:
        _, port, _ = server.inference_server(admin)
        ask(conn, "Warm up this connection.", {"max_tokens": 4})   # the embedder is loaded now
        # Every attempt generates: the long question differs from the module's others only by
        # its suffix, which the semantic cache would otherwise answer from an earlier test.
        conn.execute("SET ruvllm.cache_ttl = 0")
        def start(question):
            return Background(conn, "SELECT ruvllm_query(%s, NULL, %s::jsonb)",
                              (question, json.dumps({**SMOL, "max_tokens": 2048})))

        if how == "statement_timeout":
            # Past the pipeline's first stages (~0.1 s warm) and inside the generation. On a quiet
            # machine the small model often answers in 0.5-1 s: when its answer beat the timeout, a
            # shorter one is tried (with another question).
            for attempt, timeout in enumerate(("3s", "600ms", "300ms", "150ms")):
                question = f"{LONG} ({how} {attempt})"
                conn.execute(f"SET statement_timeout = '{timeout}'")
                job = start(question)
                job.join()
                if job.error is not None:
                    break
        else:
            question = f"{LONG} ({how})"
            job = start(question)
            wait_for("the request to be generating", lambda: busy_slots(port) == 1 or not job.thread.is_alive())
            assert scalar(admin, "SELECT pg_cancel_backend(%s)", (job.pid,))
            job.join()
        assert isinstance(job.error, psycopg.errors.QueryCanceled), job.error
        assert job.error.sqlstate == "57014"
        # The slot is freed (llama-server stops a request whose client went away).
        wait_for("the slot to be idle", lambda: busy_slots(port) == 0, timeout=30)
        conn.execute("RESET statement_timeout")
        error, sqlstate, response = witness_of(conn, question)
        assert sqlstate == "57014" and "canceling statement" in error
        # A cancel sent while the slot was busy ends the generation: nothing was answered. (A
        # timeout may land after the answer, while it is being recorded.)
        assert response is None or how == "statement_timeout"
        # The connection goes on working.
        assert ask(conn, "Still there?", {"max_tokens": 4})["text"] is not None


def test_killed_server_fails_its_request_clearly_and_is_restarted_without_crash_recovery(server):
    with server.connect() as conn, server.connect() as idle, server.connect() as admin:
        pid, port, restarts = server.inference_server(admin)
        ask(conn, "Warm up.", {"max_tokens": 4})
        question = f"{LONG} (killed)"
        job = Background(conn, "SELECT ruvllm_query(%s, NULL, %s::jsonb)",
                         (question, json.dumps({**SMOL, "max_tokens": 2048})))
        wait_for("the request to be generating", lambda: busy_slots(port) == 1 or not job.thread.is_alive())
        os.kill(pid, signal.SIGKILL)
        job.join()
        assert job.error is not None and job.error.sqlstate == "08006", job.error
        assert "went away" in str(job.error) and job.error.diag.message_hint
        error, sqlstate, _ = witness_of(conn, question)
        assert sqlstate == "08006"
        # No crash recovery: a connection opened before the kill still works, and the log has no
        # restart of the backends.
        assert scalar(idle, "SELECT 1") == 1
        assert "terminating any other active server processes" not in server.log()
        # The supervisor starts it again, and the next request is answered.
        pid2, _, restarts2 = wait_for("the restarted server", lambda: server.inference_server(admin))
        assert pid2 != pid and restarts2 == restarts + 1
        assert ask(conn, "Are you back?", {"max_tokens": 8})["text"].strip()


def test_eight_concurrent_connections_all_answer(server):
    conns = [server.connect() for _ in range(8)]
    try:
        jobs = [Background(c, "SELECT ruvllm_query(%s, NULL, %s::jsonb)",
                           (f"Question number {i}: what is {i} plus {i}?", json.dumps({**SMOL, "max_tokens": 12})))
                for i, c in enumerate(conns)]
        for job in jobs:
            job.join()
        assert [j.error for j in jobs] == [None] * 8
        assert all(j.result[0][0]["text"] is not None for j in jobs)
    finally:
        for c in conns:
            c.close()


def test_stream_rows_concatenate_to_the_final_text(server):
    with server.connect() as conn:
        question = "Name three colours."
        with conn.transaction():
            conn.execute("DECLARE answer NO SCROLL CURSOR FOR SELECT (s).seq, (s).token, (s).response"
                         " FROM (SELECT ruvllm_query_stream(%s, NULL, %s::jsonb) AS s OFFSET 0) q",
                         (question, json.dumps({**SMOL, "max_tokens": 24})))
            rows = []
            while True:
                row = conn.execute("FETCH 1 FROM answer").fetchone()
                if row is None:
                    break
                rows.append(row)
        *pieces, last = rows
        assert pieces and all(token is not None and response is None for _, token, response in pieces)
        assert last[1] is None and last[2]["request_id"]
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
        assert "".join(token for _, token, _ in pieces).strip() == last[2]["text"]
        _, sqlstate, response = witness_of(conn, question)
        assert sqlstate is None and response == last[2]["text"]


def test_a_continuing_session_reuses_the_servers_cache_from_any_backend(server):
    questions = ["What colour is the sky on a clear day?", "And at sunset?", "Why is that?"]
    with server.connect() as first, server.connect() as second:
        for conn, question in zip((first, first, second), questions):
            conn.execute("SELECT ruvllm_query(%s, 'colours', %s::jsonb)",
                         (question, json.dumps({**SMOL, "max_tokens": 12, "temperature": 0.0})))
        assert scalar(first, "SELECT ruvllm_witness_flush(10000)")
        rows = first.execute("SELECT prompt_tokens, prompt_cached_tokens FROM ruvllm.witness"
                             " WHERE session_id = 'colours' ORDER BY created_at").fetchall()
    assert len(rows) == 3 and all(cached is not None for _, cached in rows)
    (_, cached2), (prompt3, cached3) = rows[1:]
    # Turn 2 repeats only the system text of turn 1's prompt (turn 1's context is not replayed);
    # turn 3, asked by another backend, finds all of turn 2's prompt up to its new message.
    assert cached2 > 0
    assert cached3 > cached2 and cached3 < prompt3


def test_a_stream_reports_bad_arguments_like_ruvllm_query(server):
    with server.connect() as conn:
        for question, constraints, sqlstate in (("", {}, "22023"), ("Name a colour.", {"max_tokens": -3}, "22003")):
            with pytest.raises(psycopg.Error) as e:
                conn.execute("SELECT (s).token FROM (SELECT ruvllm_query_stream(%s, NULL, %s::jsonb) AS s"
                             " OFFSET 0) q", (question, json.dumps(constraints))).fetchall()
            assert e.value.sqlstate == sqlstate
            assert e.value.diag.message_primary.startswith("ruvllm: ")
            assert e.value.diag.message_detail is None and e.value.diag.message_hint is None


def test_remote_mode_against_a_second_server(server, tmp_path):
    port = free_port()
    log = open(tmp_path / "remote.log", "w")
    proc = subprocess.Popen([LLAMA_SERVER, "--model", os.path.join(MODELS_DIR, SMOL_FILE), "--host",
                             "127.0.0.1", "--port", str(port), "--parallel", "1", "--ctx-size", "2048",
                             "--api-key", "remote-secret"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the remote server", lambda: http_json(port, "/health")[0] == 200)
        with server.connect() as conn:
            conn.execute("SET ruvllm.inference = 'remote'")
            conn.execute(f"SET ruvllm.inference_url = 'http://127.0.0.1:{port}/v1'")
            with pytest.raises(psycopg.Error) as e:
                ask(conn, "Who holds the key?", {"max_tokens": 8})
            assert e.value.sqlstate == "28000" and "HTTP 401" in str(e.value)
            assert "ruvllm.inference_api_key" in e.value.diag.message_hint
            # The key a superuser set is sent for a user's request, and that user has no way to
            # read it: SHOW refuses, and no function it may call returns it.
            conn.execute("SET ruvllm.inference_api_key = 'remote-secret'")
            conn.execute("CREATE ROLE remote_user LOGIN IN ROLE ruvllm_user")
            conn.execute("SET ROLE remote_user")
            try:
                r = ask(conn, "Who answers this one?", {"max_tokens": 8})
                assert r["text"].strip()
                with pytest.raises(psycopg.Error) as e:
                    conn.execute("SHOW ruvllm.inference_api_key")
                assert e.value.sqlstate == "42501"
                callable_returning_text = conn.execute(
                    "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE n.nspname IN ('ruvllm', 'public') AND p.prosrc ILIKE '%%api_key%%'"
                    " AND has_function_privilege('remote_user', p.oid, 'EXECUTE')").fetchone()[0]
                assert callable_returning_text == 0
            finally:
                conn.execute("RESET ROLE")
            assert witness_of(conn, "Who answers this one?")[1] is None
            assert witness_of(conn, "Who holds the key?")[1] == "28000"
            # A remote server that is gone: a clear error within the timeout, never a hang.
            proc.terminate()
            proc.wait(30)
            conn.execute("SET ruvllm.inference_timeout = '1s'")
            with pytest.raises(psycopg.Error) as e:
                ask(conn, "Anyone there?", {"max_tokens": 8})
            assert e.value.sqlstate == "08001" and "cannot reach" in str(e.value)
            assert "ruvllm.inference_url" in e.value.diag.message_hint
            assert witness_of(conn, "Anyone there?")[1] == "08001"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_settings_are_checked_and_reserved_to_admins(server):
    with server.connect() as conn:
        for sql in ("SET ruvllm.inference = 'gpu'", "SET ruvllm.inference_url = 'ftp://x'",
                    "SET ruvllm.inference_url = 'http://'", "SET ruvllm.inference_timeout = 0"):
            with pytest.raises(psycopg.Error) as e:
                conn.execute(sql)
            assert e.value.sqlstate == "22023", sql
        with pytest.raises(psycopg.Error) as e:
            conn.execute("SET ruvllm.inference_slots = 2")
        assert e.value.sqlstate == "55P02"   # reload only
        conn.execute("SET ruvllm.inference = 'remote'")
        with pytest.raises(psycopg.Error) as e:
            ask(conn, "No URL?")
        assert e.value.sqlstate == "22023" and "inference_url" in str(e.value)
        conn.execute("RESET ruvllm.inference")
        conn.execute("CREATE ROLE inference_user LOGIN IN ROLE ruvllm_user")
        conn.execute("SET ruvllm.inference_api_key = 'secret'")
        conn.execute("SET ROLE inference_user")
        try:
            with pytest.raises(psycopg.Error) as e:
                conn.execute("SET ruvllm.inference = 'in_process'")
            assert e.value.sqlstate == "42501"
            with pytest.raises(psycopg.Error) as e:
                conn.execute("SHOW ruvllm.inference_api_key")
            assert e.value.sqlstate == "42501"
            with pytest.raises(psycopg.Error) as e:
                conn.execute("SELECT * FROM ruvllm.inference_servers")
            assert e.value.sqlstate == "42501"
            # A user still asks, through the shared server.
            assert ask(conn, "Can a user ask?", {"max_tokens": 4})["text"] is not None
        finally:
            conn.execute("RESET ROLE")


# Reachable only through this function, which the test (a superuser) creates: the backend's
# /tokenize requests are counted by wrapping ServerBackend._request, and counts are compared with
# llama.cpp's in-process tokenizer of the same model file, text by text.
SERVER_COUNTS = """
CREATE FUNCTION test_server_counts(texts text[], q text) RETURNS jsonb
LANGUAGE plpython3u AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import generation, inference, models, query, sqlglue

requests = []
real_request = inference.ServerBackend._request
def counted(self, model, path, body, deadline):
    requests.append(path)
    return real_request(self, model, path, body, deadline)
inference.ServerBackend._request = counted
try:
    spec = generation.bundled_models()["smollm2-135m-instruct"]
    server = inference.backend_for(plpy)
    inference._TOKEN_COUNTS.clear()
    counts = server.count_tokens_many(spec, texts)
    batch_requests = list(requests)
    again = server.count_tokens_many(spec, texts)
    cached_requests = len(requests) - len(batch_requests)
    local = generation.LlamaCppBackend()
    llm = local._llama(spec)
    in_process = [len(llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)) for t in texts]
    local.count_tokens_many(spec, ["warm"])
    del requests[:]
    r = sqlglue.call(plpy, query.run, plpy, q, None, '{"model": "smollm2-135m-instruct", "max_tokens": 8}')
    return json.dumps({"counts": counts, "again": again, "in_process": in_process,
                       "batch_requests": batch_requests, "cached_requests": cached_requests,
                       "fast_in_process": local.count_tokens_many(spec, texts),
                       "query_requests": requests, "text": r["text"]})
finally:
    inference.ServerBackend._request = real_request
$$;
"""


def test_the_server_counts_many_texts_in_one_request_exactly(server):
    texts = ["How do I rotate the witness log?", "", "ünïcödé – 東京 🚀", "<|im_end|> is text here",
             "  two  spaces  ", "a" * 300, "The witness log is rotated by dropping its oldest daily partition."]
    with server.connect() as conn:
        conn.execute("SET ruvllm.cache_ttl = 0")
        conn.execute(SERVER_COUNTS)
        r = scalar(conn, "SELECT test_server_counts(%s, %s)", (texts, "What does ruvllm answer from?"))
    # One /tokenize request for all seven texts, none when they are asked again (the LRU).
    assert r["batch_requests"] == ["/tokenize"] and r["cached_requests"] == 0
    # The same counts as llama.cpp in process, text by text (special tokens' text is text), and
    # the in-process count_tokens_many (llama_tokenize with no room) agrees with both.
    assert r["counts"] == r["in_process"] == r["again"] == r["fast_in_process"]
    assert r["counts"][1] == 0 and all(n > 0 for i, n in enumerate(r["counts"]) if i != 1)
    # A request through the server: one /tokenize request, then the generation.
    assert r["query_requests"].count("/tokenize") == 1 and r["text"].strip()
    assert r["query_requests"][-1] == "/v1/chat/completions"
