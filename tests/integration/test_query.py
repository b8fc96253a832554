"""ruvllm_query end to end on a real database: routing, sources, sessions, feedback, cache,
witness rows (also for failures and rolled-back callers), the model pool and bad input."""
import shutil

import psycopg
import pytest

from helpers import ask, scalar, seed, witness_rows


def test_two_queries_are_routed_and_answered_from_memory(db):
    seed(db)
    # The router's own choice, and the policy's own default, which generates (the extractive
    # tier, ruvllm.default_model out of the box, generates nothing; test_answers has it).
    db.execute("SET ruvllm.explore_rate = 0")
    db.execute("SET ruvllm.default_model = ''")
    a = ask(db, "How do I rotate the witness log?")
    b = ask(db, "What is the capital of France?", constraints={"max_tokens": 24})
    for r in (a, b):
        assert r["text"].strip()
        assert r["routing"]["model"] in ("smollm2-135m-instruct", "gemma-3-270m")
        assert set(r["routing"]["model_probs"]) == {"smollm2-135m-instruct", "gemma-3-270m", "extractive"}
        assert abs(sum(r["routing"]["model_probs"].values()) - 1) < 1e-4
        assert r["routing"]["context_size"] in (256, 512, 1024, 2048, 4096)
        assert 0 <= r["routing"]["temperature"] <= 2 and 0 <= r["routing"]["top_p"] <= 1
        assert r["sources"] and r["cache_hit"] is False
        assert set(r["latency_ms"]) == {"embedding", "retrieval", "routing", "attention",
                                        "generation", "total"}
        assert r["latency_ms"]["total"] >= r["latency_ms"]["generation"] > 0
    # Each answer's best source is the fact it is about.
    assert "partition" in a["sources"][0]["excerpt"]
    assert "Paris" in b["sources"][0]["excerpt"]
    assert "paris" in b["text"].lower()
    rows = witness_rows(db)
    assert [r["request_id"] for r in rows] == [a["request_id"], b["request_id"]] or \
        sorted(str(r["request_id"]) for r in rows) == sorted([a["request_id"], b["request_id"]])
    row = next(r for r in rows if str(r["request_id"]) == b["request_id"])
    assert row["model"] == b["routing"]["model"] and row["response"] == b["text"]
    assert row["error"] is None and row["cache_hit"] is False
    assert row["total_ms"] > 0 and row["generation_ms"] > 0 and row["embedding_ms"] > 0
    assert [str(i) for i in row["context_node_ids"]] == [s["id"] for s in b["sources"]]
    assert row["query_embedding"] is not None and row["policy_version"] == 1
    assert len(row["features"]) == 128 and row["quality"] is None


def test_row_form_returns_plain_columns(db):
    seed(db)
    row = db.execute("SELECT * FROM ruvllm_query_row('What does VACUUM do?')").fetchone()
    cols = [c.name for c in db.execute("SELECT * FROM ruvllm_query_row('What does VACUUM do?')").description]
    assert cols[:4] == ["request_id", "answer", "confidence", "model"]
    assert row[1] and row[3] in ("smollm2-135m-instruct", "gemma-3-270m", "extractive")


def test_route_shows_decision_and_features(db):
    seed(db)
    r = scalar(db, "SELECT ruvllm_route('How is the witness log rotated?')")
    # The untrained router is not confident: the safe default, ruvllm.default_model.
    assert r["decision"]["model"] == "extractive" and r["decision"]["used_default"] is True
    assert set(r["features"]) == {"query", "embedding", "search", "system"}
    assert sum(len(v) for v in r["features"].values()) >= 64
    assert r["retrieved"] >= 1
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness") == 0


def test_witness_survives_rollback_and_failures(db):
    seed(db)
    db.autocommit = False
    r = ask(db, "What does VACUUM do?", constraints={"max_tokens": 16})
    db.rollback()
    db.autocommit = True
    rows = witness_rows(db, "request_id = %s", (r["request_id"],))
    assert len(rows) == 1 and rows[0]["error"] is None
    # A rejected input: the statement raises, and the witness keeps the error and its SQLSTATE.
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        ask(db, "hello", constraints={"colour": "blue"})
    failed = witness_rows(db, "error IS NOT NULL")
    assert len(failed) == 1 and failed[0]["error_sqlstate"] == "22023"
    assert "colour" in failed[0]["error"] and failed[0]["query"] == "hello"


def test_witness_written_synchronously_when_async_is_off(db):
    seed(db)
    db.execute("SET ruvllm.witness_async = off")
    r = ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})
    # No flush needed: the row is part of this transaction.
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s", (r["request_id"],)) == 1


def test_witness_is_partitioned_by_day(db):
    daily = """SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'ruvllm.witness'::regclass AND c.relname LIKE 'witness_p%'"""
    # None at install (extension members would be left out of pg_dump); the writer's first batch
    # makes yesterday, today and 7 days ahead.
    assert scalar(db, daily) == 0
    assert scalar(db, """SELECT ruvllm._witness_write(ARRAY[json_build_object(
                             'request_id', gen_random_uuid(), 'tenant', '', 'query', 'q', 'explored', false,
                             'cache_hit', false, 'created_at', now())::text])""") == 1
    assert scalar(db, daily) >= 9
    assert scalar(db, "SELECT tableoid::regclass::text FROM ruvllm.witness") != "ruvllm.witness_default"
    db.execute("DELETE FROM ruvllm.witness")
    scalar(db, "SELECT ruvllm.witness_make_partitions(9)")
    # Every UTC day from yesterday to 9 days ahead has its partition (whatever day the template
    # database was made on).
    assert scalar(db, """SELECT count(*) FROM generate_series((now() AT TIME ZONE 'UTC')::date - 1,
                                                            (now() AT TIME ZONE 'UTC')::date + 9, '1 day') d
                          WHERE to_regclass('ruvllm.witness_p' || to_char(d, 'YYYYMMDD')) IS NOT NULL""") == 11
    assert scalar(db, "SELECT ruvllm.witness_make_partitions(9)") == 0
    seed(db)
    r = ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})
    witness_rows(db)
    part = scalar(db, "SELECT tableoid::regclass::text FROM ruvllm.witness WHERE request_id = %s",
                  (r["request_id"],))
    assert part.startswith("ruvllm.witness_p")


def test_multi_turn_session(db):
    seed(db)
    first = ask(db, "What is the capital of France?", session="s-1", constraints={"max_tokens": 24})
    second = ask(db, "Which river runs through it?", session="s-1", constraints={"max_tokens": 24})
    assert first["session_turn"] == 1 and second["session_turn"] == 2
    row = db.execute("SELECT turn_count, history, array_length(router_state, 1) FROM ruvllm.sessions "
                     "WHERE session_id = 's-1'").fetchone()
    assert row[0] == 2 and [t["q"] for t in row[1]] == ["What is the capital of France?",
                                                          "Which river runs through it?"]
    assert row[2] and row[2] > 0
    # The second turn is answered, not served from the cache, and the session is witnessed.
    assert second["cache_hit"] is False
    assert len(witness_rows(db, "session_id = 's-1'")) == 2
    # Another tenant's session of the same id is another session.
    db.execute("SELECT ruvllm_create_tenant('other')")
    db.execute("SET ruvllm.tenant = 'other'")
    db.execute("SELECT ruvllm_ingest('Berlin is the capital of Germany.')")
    third = ask(db, "What is the capital of Germany?", session="s-1", constraints={"max_tokens": 16})
    assert third["session_turn"] == 1


def test_feedback_lands_on_witness_and_correction_in_memory(db):
    seed(db)
    r = ask(db, "How do I rotate the witness log?", constraints={"max_tokens": 24})
    assert scalar(db, "SELECT ruvllm_feedback(%s, 5)", (r["request_id"],)) is None
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert row["rating"] == 5 and row["feedback_at"] is not None
    node = scalar(db, "SELECT ruvllm_feedback(%s, 2, %s)",
                  (r["request_id"], "Drop the oldest witness partition, or set a retention period."))
    stored = db.execute("SELECT node_type, metadata, source FROM ruvllm.nodes WHERE id = %s", (node,)).fetchone()
    assert stored[0] == "QAPair" and stored[1]["confidence"] >= 0.9
    assert stored[2] == f"feedback:{r['request_id']}"
    assert scalar(db, 'SELECT count(*) FROM ruvllm_graph."Derived"') == len(r["sources"])
    assert witness_rows(db, "request_id = %s", (r["request_id"],))[0]["rating"] == 2


def test_cache_hits_exact_and_semantic(db):
    seed(db)
    first = ask(db, "What does VACUUM do?", constraints={"max_tokens": 24})
    exact = ask(db, "  what does   VACUUM do? ", constraints={"max_tokens": 24})
    assert exact["cache_hit"] is True and exact["text"] == first["text"]
    assert exact["request_id"] != first["request_id"]
    assert exact["latency_ms"]["generation"] == 0
    paraphrase = "What is it that VACUUM does?"
    sim = scalar(db, "SELECT 1 - (ruvllm_embed(%s) <=> ruvllm_embed('What does VACUUM do?'))", (paraphrase,))
    assert 0.8 < sim < 0.999
    db.execute(f"SET ruvllm.cache_similarity = {sim + 0.005:.4f}")
    assert ask(db, paraphrase, constraints={"max_tokens": 24})["cache_hit"] is False
    db.execute("DELETE FROM ruvllm.response_cache WHERE query = %s", (paraphrase,))
    db.execute(f"SET ruvllm.cache_similarity = {sim - 0.005:.4f}")
    semantic = ask(db, paraphrase, constraints={"max_tokens": 24})
    assert semantic["cache_hit"] is True and semantic["text"] == first["text"]
    assert semantic["cache_similarity"] == pytest.approx(sim, abs=1e-4)
    # Other constraints, another tenant, or an expired entry: no hit.
    assert ask(db, "What does VACUUM do?", constraints={"max_tokens": 16})["cache_hit"] is False
    db.execute("SELECT ruvllm_create_tenant('other')")
    db.execute("SET ruvllm.tenant = 'other'")
    assert ask(db, "What does VACUUM do?", constraints={"max_tokens": 24})["cache_hit"] is False
    db.execute("RESET ruvllm.tenant")
    db.execute("UPDATE ruvllm.response_cache SET expires_at = now() - interval '1 s'")
    assert ask(db, "What does VACUUM do?", constraints={"max_tokens": 24})["cache_hit"] is False
    hits = witness_rows(db, "cache_hit")
    assert len(hits) == 2 and all(h["generation_ms"] is None for h in hits)


def test_model_constraint_and_pool(db):
    seed(db)
    r = ask(db, "The capital of France is", constraints={"model": "gemma-3-270m", "max_tokens": 8,
                                                          "temperature": 0})
    assert r["routing"]["model"] == "gemma-3-270m" and r["routing"]["temperature"] == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.models") == 3   # and the extractive tier
    db.execute("UPDATE ruvllm.models SET enabled = false WHERE name = 'gemma-3-270m'")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        ask(db, "hello", constraints={"model": "gemma-3-270m"})
    with pytest.raises(psycopg.errors.UndefinedObject) as exc:
        ask(db, "hello", constraints={"model": "gpt-9"})
    assert "smollm2-135m-instruct" in exc.value.diag.message_hint


def test_changed_model_file_is_refused(db, tmp_path):
    src = scalar(db, "SELECT current_setting('ruvllm.models_dir')") + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    copy = tmp_path / "smol-copy.gguf"
    shutil.copyfile(src, copy)
    db.execute("SELECT ruvllm_register_model('smol-copy', %s, 'chat', tier => 5)", (str(copy),))
    assert scalar(db, "SELECT sha256 FROM ruvllm.models WHERE name = 'smol-copy'") == \
        scalar(db, "SELECT sha256 FROM ruvllm.models WHERE name = 'smollm2-135m-instruct'")
    with open(copy, "ab") as f:
        f.write(b"tampered")
    seed(db)
    with pytest.raises(psycopg.errors.DataCorrupted) as exc:
        ask(db, "hello", constraints={"model": "smol-copy"})
    assert "checksum" in str(exc.value)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT ruvllm_register_model('bad', %s, 'chat', %s)", (str(copy), "0" * 64 + "x"))


@pytest.mark.parametrize("sql, params, error", [
    ("SELECT ruvllm_query(NULL)", None, psycopg.errors.NullValueNotAllowed),
    ("SELECT ruvllm_query('  ')", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_query(repeat('word ', 600))", None, psycopg.errors.StringDataRightTruncation),
    ("SELECT ruvllm_query('hi', NULL, '[1]')", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_query('hi', NULL, '{\"max_tokens\": 0}')", None, psycopg.errors.NumericValueOutOfRange),
    ("SELECT ruvllm_query('hi', NULL, '{\"max_tokens\": \"ten\"}')", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_query('hi', NULL, '{\"temperature\": 3}')", None, psycopg.errors.NumericValueOutOfRange),
    ("SELECT ruvllm_query('hi', NULL, '{\"model\": \"nope\"}')", None, psycopg.errors.UndefinedObject),
    ("SELECT ruvllm_query('hi', '')", None, psycopg.errors.InvalidParameterValue),
    ("SELECT ruvllm_feedback(gen_random_uuid(), 3)", None, psycopg.errors.NoDataFound),
    ("SELECT ruvllm_feedback(NULL, 3)", None, psycopg.errors.NullValueNotAllowed),
    ("SELECT ruvllm_feedback(gen_random_uuid(), 6)", None, psycopg.errors.NumericValueOutOfRange),
    ("SELECT ruvllm_feedback(gen_random_uuid(), 0)", None, psycopg.errors.NumericValueOutOfRange),
])
def test_bad_input_is_rejected_and_nothing_is_written(db, sql, params, error):
    with pytest.raises(error):
        db.execute(sql, params)
    for table in ("ruvllm.nodes", "ruvllm.sessions", "ruvllm.response_cache"):
        assert scalar(db, f"SELECT count(*) FROM {table}") == 0
    # Only the failure's own witness row (ruvllm_query's), nothing else.
    rows = witness_rows(db)
    assert all(r["error"] and r["response"] is None for r in rows)


def test_backends_switch_to_a_newly_promoted_policy(db):
    """A newer promoted policy is picked up by the next request; its decision is used when confident."""
    import numpy as np

    from ruvllm import policy

    seed(db)
    before = scalar(db, "SELECT ruvllm_route('What does VACUUM do?')")["decision"]
    assert before["policy_version"] == 1 and before["used_default"] is True
    assert before["model"] == "extractive"   # ruvllm.default_model
    router = policy.initial_router(["smollm2-135m-instruct", "gemma-3-270m"], seed=1)
    # A strong bias towards the second model and the 512-token bin: confident whatever the input.
    router.params["b_model"][:] = np.array([-4.0, 4.0], dtype=np.float32)
    router.params["b_ctx"][:] = np.array([0, 6.0, 0, 0, 0], dtype=np.float32)
    db.execute("""INSERT INTO ruvllm.policies (status, router, model_names, reason, parent_version, promoted_at)
                  VALUES ('promoted', %s, ARRAY['smollm2-135m-instruct', 'gemma-3-270m'], 'test', 1, now())""",
               (router.to_bytes(),))
    after = scalar(db, "SELECT ruvllm_route('What does VACUUM do?')")["decision"]
    assert after["policy_version"] == 2 and after["used_default"] is False
    assert after["model"] == "gemma-3-270m" and after["context_size"] == 512
    db.execute("SET ruvllm.explore_rate = 0")
    answer = ask(db, "What does VACUUM do?", constraints={"max_tokens": 16})
    assert answer["routing"]["model"] == "gemma-3-270m" and answer["routing"]["policy_version"] == 2
    assert answer["routing"]["explored"] is False
    # A candidate is never used, however new.
    db.execute("""INSERT INTO ruvllm.policies (status, router, model_names, reason)
                  SELECT 'candidate', router, model_names, 'not promoted' FROM ruvllm.policies WHERE version = 1""")
    assert scalar(db, "SELECT ruvllm_route('What does VACUUM do?')")["decision"]["policy_version"] == 2


def test_a_backend_that_answers_through_the_server_holds_no_model(db):
    seed(db)
    assert scalar(db, "SHOW ruvllm.inference") == "server"
    ask(db, "What does VACUUM do?", constraints={"model": "smollm2-135m-instruct", "max_tokens": 4})
    ask(db, "What does VACUUM do?", constraints={"model": "gemma-3-270m", "max_tokens": 4})
    assert scalar(db, "SELECT ruvllm_info()->'loaded_models'") == []


def test_models_load_lazily_within_the_lru_bound(db):
    seed(db)
    db.execute("SET ruvllm.inference = 'in_process'")
    assert scalar(db, "SELECT ruvllm_info()->'loaded_models'") == []
    db.execute("SET ruvllm.max_loaded_models = 1")
    ask(db, "What does VACUUM do?", constraints={"model": "smollm2-135m-instruct", "max_tokens": 4})
    assert scalar(db, "SELECT ruvllm_info()->'loaded_models'") == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    ask(db, "What does VACUUM do?", constraints={"model": "gemma-3-270m", "max_tokens": 4})
    assert scalar(db, "SELECT ruvllm_info()->'loaded_models'") == ["gemma-3-270m-q4_k_m.gguf"]
    db.execute("SET ruvllm.max_loaded_models = 2")
    ask(db, "What does ef_search trade?", constraints={"model": "smollm2-135m-instruct", "max_tokens": 4})
    assert sorted(scalar(db, "SELECT ruvllm_info()->'loaded_models'")) == [
        "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]


def test_pii_is_masked_in_what_is_stored_not_in_the_answer(db):
    seed(db)
    # Card numbers and an address no memory holds would make the question unsupported (abstention
    # reads the share of its terms memory has): abstention is not what is tested here.
    db.execute("SET ruvllm.abstain_below = 0")
    q = "My card 4111 1111 1111 1111 and mail dana@example.com: what does VACUUM do?"
    r = ask(db, q, session="pii-1", constraints={"max_tokens": 16})
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert row["query"] == "My card [CARD] and mail [EMAIL]: what does VACUUM do?"
    history = scalar(db, "SELECT history FROM ruvllm.sessions WHERE session_id = 'pii-1'")
    assert history[0]["q"] == row["query"]
    assert scalar(db, "SELECT query FROM ruvllm.response_cache") == row["query"]
    # Masking off (superuser-only setting): stored as asked.
    db.execute("SET ruvllm.pii_mask = ''")
    r2 = ask(db, "Reach me at dana@example.com: what is the capital of France?", constraints={"max_tokens": 8})
    assert "dana@example.com" in witness_rows(db, "request_id = %s", (r2["request_id"],))[0]["query"]
    db.execute("SET ruvllm.pii_mask = 'ip'")
    r3 = ask(db, "Is 10.1.2.3 or ops@example.com the VACUUM host?", constraints={"max_tokens": 8})
    assert witness_rows(db, "request_id = %s", (r3["request_id"],))[0]["query"] == \
        "Is [IP] or ops@example.com the VACUUM host?"
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SET ruvllm.pii_mask = 'ssn'")
        ask(db, "hello")


# A test double around the real generator, reachable only through this function (created by the
# test, a superuser, in its own database): it records every token count the pipeline asks for,
# the prompt it generates from, and the real generation's result; then recounts every text and
# the whole prompt with llama.cpp's own Llama.tokenize in this backend, one text at a time,
# uncached (in server mode too: the same model file, so the same counts).
COUNTING_QUERY = """
CREATE FUNCTION test_query_counting(q text, session text, constraints text) RETURNS jsonb
LANGUAGE plpython3u AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import generation, inference, query, sqlglue

class Counting(generation.GenerationBackend):
    def __init__(self, inner):
        self.inner, self.batches, self.singles, self.counted, self.prompt = inner, [], 0, {}, None
    def count_tokens(self, model, text):
        self.singles += 1
        return self.inner.count_tokens(model, text)
    def count_tokens_many(self, model, texts):
        counts = self.inner.count_tokens_many(model, texts)
        self.batches.append(len(texts))
        self.counted.update(zip(texts, counts))
        return counts
    def generate(self, model, prompt, **kw):
        self.prompt = (model, prompt, kw)
        return self.inner.generate(model, prompt, **kw)

inner = inference.backend_for(plpy)
lru = inner.token_counts
calls = lru.calls
b = Counting(inner)
r = sqlglue.call(plpy, query.run, plpy, q, session, constraints, backend=b)
if b.prompt is None:
    plpy.error("nothing was generated: " + json.dumps(r)[:600])
model, prompt, kw = b.prompt
llm = generation.default_backend()._llama(model)
fresh = lambda t: len(llm.tokenize(t.encode("utf-8"), add_bos=False, special=False))
messages = generation.chat_messages(kw.get("system"), kw.get("history") or (), prompt)
r["test"] = {"batches": b.batches, "singles": b.singles, "tokenizer_calls": lru.calls - calls,
             "wrong_counts": [t for t, n in b.counted.items() if n != fresh(t)],
             "n_ctx": model.n_ctx, "max_tokens": kw["max_tokens"],
             "prompt_tokens": sum(fresh(m["content"]) for m in messages)}
return json.dumps(r)
$$;
"""


@pytest.mark.parametrize("mode", ["in_process", "server"])
def test_a_request_asks_the_tokenizer_once_and_its_prompt_fits(db, mode):
    seed(db)
    db.execute(COUNTING_QUERY)
    db.execute("SET ruvllm.cache_ttl = 0")
    db.execute(f"SET ruvllm.inference = {mode}")
    question = "How do I rotate the witness log?"
    constraints = '{"model": "smollm2-135m-instruct", "max_tokens": 16}'
    r = scalar(db, "SELECT test_query_counting(%s, NULL, %s)", (question, constraints))
    t = r["test"]
    # One batch for everything the request counted, one tokenizer call for it, no single counts.
    assert len(t["batches"]) == 1 and t["singles"] == 0 and t["tokenizer_calls"] <= 1
    assert t["batches"][0] >= 2          # the question and the evidence's sentences at least
    # Exact: each count is what llama.cpp's tokenizer gives the text alone.
    assert t["wrong_counts"] == []
    # The prompt (system, context, question; recounted) fits the model's context with the
    # answer's tokens, and so does what llama.cpp evaluated (the chat template's tokens too).
    assert t["prompt_tokens"] + t["max_tokens"] <= t["n_ctx"]
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert t["prompt_tokens"] <= row["prompt_tokens"] <= t["n_ctx"] - t["max_tokens"]
    assert r["sources"] and r["text"].strip()
    # The same question again, in a session: the counts come from the backend's LRU (no
    # tokenizer call), the request still batches once.
    again = scalar(db, "SELECT test_query_counting(%s, 's1', %s)", (question, constraints))
    assert len(again["test"]["batches"]) == 1 and again["test"]["tokenizer_calls"] == 0
    # A continuing session's turns are counted in the same single call.
    third = scalar(db, "SELECT test_query_counting(%s, 's1', %s)",
                   ("What does VACUUM reclaim in PostgreSQL?", constraints))
    assert len(third["test"]["batches"]) == 1 and third["test"]["tokenizer_calls"] == 1
    assert third["test"]["wrong_counts"] == []
    assert third["test"]["prompt_tokens"] + third["test"]["max_tokens"] <= third["test"]["n_ctx"]
