"""Answers a user can trust (issue 14), on a real database with the real models: evidence spans in
the prompt, citations, the extractive tier, the grounding check replacing an invented answer, and
"Not found in memory." for a question memory cannot answer, with nothing generated."""
import json

import numpy as np
import psycopg
import pytest

from helpers import KNOWLEDGE, ask, scalar, seed, witness_rows
from ruvllm import evidence, unit_vectors

NOT_FOUND = "Not found in memory."
WITNESS_FACT = "The witness log is rotated by dropping its oldest daily partition"

# A test double for the generator, reachable only through this function, which the test (a
# superuser) creates in its own database: users cannot reach a backend argument of query.run.
# It counts tokens with the real model and answers with text unrelated to any context.
INVENTING_QUERY = """
CREATE FUNCTION test_query_inventing(q text) RETURNS jsonb
LANGUAGE plpython3u AS $$
if not GD.get("ruvllm_version"): plpy.execute("SELECT ruvllm._python_setup()")
import json
from ruvllm import generation, inference, query, sqlglue

class Inventing(generation.GenerationBackend):
    def __init__(self, inner):
        self.inner = inner
    def count_tokens_many(self, model, texts):
        return self.inner.count_tokens_many(model, texts)
    def generate(self, model, prompt, **kwargs):
        return generation.GenerationResult(
            "Call def rotate_witness_log() in a loop over eyewitness_logs. A cron job spins it nightly.",
            len(prompt) // 4, 24, 0.01, "stop")

return json.dumps(sqlglue.call(plpy, query.run, plpy, q, None, '{"model": "smollm2-135m-instruct"}',
                               backend=Inventing(inference.backend_for(plpy))))
$$;
"""


def test_an_invented_answer_is_replaced_by_the_evidence_and_witnessed(db):
    seed(db)
    db.execute(INVENTING_QUERY)
    r = scalar(db, "SELECT test_query_inventing('How do I rotate the witness log?')")
    assert r["grounded"] is False and r["abstained"] is False
    assert "eyewitness" not in r["text"] and "cron" not in r["text"]
    # The extractive answer: a span of the cited source, verbatim, with its citation.
    assert r["text"].endswith("[1]")
    assert r["text"][:-len(" [1]")] in " ".join(r["sources"][0]["excerpt"].split())
    assert WITNESS_FACT in r["text"]
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert row["grounded"] is False and row["abstained"] is False
    assert row["response"] == r["text"] and row["model"] == "smollm2-135m-instruct"
    assert row["completion_tokens"] == 24   # the double's answer was generated, then replaced
    assert scalar(db, "SELECT grounded FROM ruvllm.requests WHERE request_id = %s",
                  (r["request_id"],)) is False


def test_a_question_memory_cannot_answer_is_declined_without_generating(db):
    seed(db)
    r = ask(db, "Who wrote the opera Carmen?")
    assert r["text"] == NOT_FOUND and r["abstained"] is True and r["grounded"] is None
    assert r["confidence"] == 0 and r["sources"] == [] and r["routing"]["model"] is None
    assert r["latency_ms"]["generation"] == 0
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert row["abstained"] is True and row["completion_tokens"] == 0 and row["prompt_tokens"] == 0
    assert row["model"] is None and row["context_node_ids"] == []
    # Nothing was generated, so no model was loaded in this backend.
    assert scalar(db, "SELECT ruvllm_info()->'loaded_models'") == []
    # Not cached: memory added later answers the same question.
    db.execute("SELECT ruvllm_ingest('The opera Carmen was written by Georges Bizet.', 'Fact')")
    again = ask(db, "Who wrote the opera Carmen?", constraints={"model": "extractive"})
    assert again["abstained"] is False and "Bizet" in again["text"]
    # The threshold is a setting; 0 never abstains.
    db.execute("SET ruvllm.abstain_below = 0")
    r0 = ask(db, "What colour are flamingos?", constraints={"model": "extractive"})
    assert r0["abstained"] is False and r0["sources"]
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SET ruvllm.abstain_below = 1.5")


def test_a_near_passage_without_the_questions_rare_term_does_not_support_it(db):
    # Memory of settings' defaults: the vacuum_cost_limit passage is near both questions (cosine
    # above abstain_below), but only one question has its rare terms in memory.
    for text in ("The default value of checkpoint_timeout is five minutes; checkpoints start at least that often.",
                 "The default value of shared_buffers is 128 megabytes, set at server start.",
                 "The default value of work_mem is four megabytes per sort or hash operation.",
                 "The default value of max_connections is typically 100 connections.",
                 "The default value of vacuum_cost_limit is 200 credits.",
                 "The witness log is rotated by dropping its oldest daily partition."):
        db.execute("SELECT ruvllm_ingest(%s, 'Fact', 'settings')", (text,))
    known = ask(db, "What is the default value of checkpoint_timeout?", constraints={"model": "extractive"})
    assert known["abstained"] is False and "five minutes" in known["text"]
    unknown = ask(db, "What is the default value of turbo_vacuum_mode?", constraints={"model": "extractive"})
    assert unknown["abstained"] is True and unknown["text"] == NOT_FOUND
    # Not for want of a similar passage: similarity alone would have answered it.
    near = scalar(db, "SELECT max(similarity) FROM ruvllm_search(%s, 3, 0)",
                  ("What is the default value of turbo_vacuum_mode?",))
    assert near > scalar(db, "SELECT current_setting('ruvllm.abstain_below')::float"), near


def test_the_extractive_tier_answers_verbatim_with_a_citation(db):
    seed(db)
    r = ask(db, "How do I rotate the witness log?", constraints={"model": "extractive"})
    assert r["routing"]["model"] == "extractive" and r["grounded"] is True
    assert r["text"].endswith("]")
    cited = int(r["text"].rsplit("[", 1)[1].rstrip("]"))
    source = r["sources"][cited - 1]
    span = r["text"].rsplit(" [", 1)[0]
    assert span in source["evidence"] and span in " ".join(source["excerpt"].split())
    assert WITNESS_FACT in span
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert row["model"] == "extractive" and row["completion_tokens"] == 0 and row["grounded"] is True
    assert scalar(db, "SELECT ruvllm_info()->'loaded_models'") == []
    health = scalar(db, "SELECT ruvllm_health()")
    assert health["models"]["extractive"]["ok"] is True


def test_a_generated_answer_carries_evidence_and_citations(db):
    seed(db)
    db.execute("SET ruvllm.explore_rate = 0")
    r = ask(db, "What is the capital of France?", constraints={"model": "smollm2-135m-instruct",
                                                              "max_tokens": 32, "temperature": 0})
    assert "paris" in r["text"].lower() and r["abstained"] is False
    assert isinstance(r["grounded"], bool)
    assert "Paris" in r["sources"][0]["excerpt"] and r["sources"][0]["evidence"]
    for n in {int(c) for c in __import__("re").findall(r"\[(\d+)\]", r["text"])}:
        assert 1 <= n <= len(r["sources"])
    # The prompt carried spans, not whole documents: a short one.
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert 0 < row["prompt_tokens"] <= 300 and row["grounded"] == r["grounded"]


def test_answer_style_documents_behaves_as_0_2_0(db):
    seed(db)
    db.execute("SET ruvllm.answer_style = documents")
    r = ask(db, "Who wrote the opera Carmen?", constraints={"model": "smollm2-135m-instruct", "max_tokens": 8})
    # No abstention, no grounding check: a generated answer from whole nodes.
    assert r["abstained"] is False and r["grounded"] is None and r["text"] != NOT_FOUND
    assert r["sources"] and all("evidence" not in s for s in r["sources"])
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert row["completion_tokens"] > 0 and row["grounded"] is None and row["abstained"] is False
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SET ruvllm.answer_style = paragraphs")
    # 0.2.0 had no extractive tier: neither the router nor exploration picks it here.
    db.execute("SET ruvllm.explore_rate = 1")
    db.execute("SET ruvllm.cache_ttl = 0")
    picked = {ask(db, "What is the capital of France?", constraints={"max_tokens": 1})["routing"]["model"]
              for _ in range(6)}
    assert picked and "extractive" not in picked, picked
    assert scalar(db, "SELECT ruvllm_route('What is the capital of France?')")["decision"]["model_probs"].keys() \
        == {"smollm2-135m-instruct", "gemma-3-270m"}


def test_the_extractive_tier_is_a_model_of_the_pool(db):
    names = [r[0] for r in db.execute("SELECT name FROM ruvllm.models WHERE enabled ORDER BY tier, name")]
    assert names == ["smollm2-135m-instruct", "gemma-3-270m", "extractive"]
    assert scalar(db, "SELECT model_names FROM ruvllm.policies WHERE version = 1") == names
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT ruvllm_register_model('extract-2', 'x.gguf', 'extractive')")
    db.execute("SELECT ruvllm_register_model('extract-2', NULL, 'extractive', enabled => false)")
    assert scalar(db, "SELECT prompt_style FROM ruvllm.models WHERE name = 'extract-2'") == "extractive"
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO ruvllm.models (name, path, sha256, prompt_style) VALUES ('x', NULL, NULL, 'chat')")
    seed(db)
    decision = scalar(db, "SELECT ruvllm_route('How do I rotate the witness log?')")["decision"]
    assert set(decision["model_probs"]) == set(names)


def test_the_safe_default_is_the_extractive_tier_and_a_setting(db):
    """The untrained router is never confident: its requests get ruvllm.default_model (the extractive
    tier out of the box), a model named there, or the policy's own default (its first model)."""
    seed(db)
    db.execute("SET ruvllm.explore_rate = 0")
    q = "How do I rotate the witness log?"
    r = ask(db, q)
    assert r["routing"]["model"] == "extractive" and r["routing"]["used_default"] is True
    assert WITNESS_FACT in r["text"] and r["grounded"] is True
    row = witness_rows(db, "request_id = %s", (r["request_id"],))[0]
    assert row["model"] == "extractive" and row["used_default"] is True and row["completion_tokens"] == 0
    assert scalar(db, "SELECT ruvllm_health()->>'default_model'") == "extractive"
    db.execute("SET ruvllm.default_model = 'gemma-3-270m'")
    assert ask(db, q, constraints={"max_tokens": 4})["routing"]["model"] == "gemma-3-270m"
    db.execute("SET ruvllm.default_model = ''")
    assert scalar(db, "SELECT ruvllm_route(%s)", (q,))["decision"]["model"] == "smollm2-135m-instruct"
    # 0.2.0's pipeline has no evidence to quote: it keeps the policy's default.
    db.execute("RESET ruvllm.default_model")
    db.execute("SET ruvllm.answer_style = documents")
    assert scalar(db, "SELECT ruvllm_route(%s)", (q,))["decision"]["model"] == "smollm2-135m-instruct"
    db.execute("RESET ruvllm.answer_style")
    # A name of the wrong form is refused when set; one no enabled model has is reported by
    # ruvllm_health and leaves the policy's default in force.
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        db.execute("SET ruvllm.default_model = 'Extractive tier'")
    assert "ruvllm.models" in exc.value.diag.message_hint
    assert scalar(db, "SHOW ruvllm.default_model") == "extractive"
    db.execute("UPDATE ruvllm.models SET enabled = false WHERE name = 'extractive'")
    assert scalar(db, "SELECT ruvllm_route(%s)", (q,))["decision"]["model"] == "smollm2-135m-instruct"
    warnings = scalar(db, "SELECT ruvllm_health()->'warnings'")
    assert any("ruvllm.default_model" in w and "'extractive'" in w for w in warnings), warnings


TIMEOUT_DOC = ("deadlock_timeout (integer)\n\nThe time to wait on a lock before checking for a deadlock. "
               "The default is one second (1s). Only superusers can change this setting.")


def embedded(db, texts):
    """ruvllm_embed's vectors of texts, as numpy rows."""
    rows = scalar(db, "SELECT array_agg(v::text ORDER BY o) FROM unnest(ruvllm_embed(%s::text[])) "
                      "WITH ORDINALITY AS e(v, o)", (texts,))
    return np.array([json.loads(r) for r in rows], dtype=np.float32)


def test_ingest_stores_each_units_vector_and_the_request_scores_by_them(db):
    db.execute("SET ruvllm.cache_ttl = 0")
    seed(db)
    node = scalar(db, "SELECT ruvllm_ingest(%s)", (TIMEOUT_DOC,))
    layout, blob = db.execute("SELECT layout, vectors FROM ruvllm.node_units WHERE node_id = %s",
                              (node,)).fetchone()
    assert layout == evidence.UNIT_LAYOUT
    reads = evidence.unit_reads(TIMEOUT_DOC)
    stored, want = unit_vectors.unpack(blob), embedded(db, reads)
    assert stored.shape == (3, 384) and len(reads) == 3
    assert np.min(np.sum(stored * want, axis=1)) > 0.9995   # float16 of what a request would embed
    rows = db.execute("""SELECT n.content, n.embedding::text, u.vectors FROM ruvllm.nodes n
                           JOIN ruvllm.node_units u ON u.node_id = n.id""").fetchall()
    assert len(rows) == len(KNOWLEDGE) + 1
    for content, node_vector, blob in rows:
        assert len(blob) // 768 == len(evidence.unit_reads(content)), content
        if len(blob) == 768:   # a one-unit note: its unit's vector is its node's
            assert float(unit_vectors.unpack(blob)[0] @ np.array(json.loads(node_vector))) > 0.9995

    q = "How do I rotate the witness log?"
    assert WITNESS_FACT in ask(db, q, constraints={"model": "extractive"})["text"]
    # The request reads the stored vectors: with the witness fact's turned away from the
    # question, another unit is the answer ...
    away = -embedded(db, [q])[0]
    db.execute("""UPDATE ruvllm.node_units u SET vectors = %s FROM ruvllm.nodes n
                   WHERE n.id = u.node_id AND n.content LIKE 'The witness log is rotated%%'""",
               (unit_vectors.pack(away[None, :]),))
    assert WITNESS_FACT not in ask(db, q + " ", constraints={"model": "extractive"})["text"]
    # ... and without a row (off at ingest, or an older layout), the request embeds the units.
    db.execute("UPDATE ruvllm.node_units SET layout = layout + 1")
    assert WITNESS_FACT in ask(db, q + "  ", constraints={"model": "extractive"})["text"]
    db.execute("SET ruvllm.store_unit_vectors = off")
    off = scalar(db, "SELECT ruvllm_ingest(%s)", ("Checkpoints are spread over checkpoint_timeout.",))
    assert scalar(db, "SELECT count(*) FROM ruvllm.node_units WHERE node_id = %s", (off,)) == 0
    # ruvllm_store_unit_vectors stores what is missing: that node's, and those of the old layout.
    pending = scalar(db, "SELECT count(*) FROM ruvllm.nodes")
    assert scalar(db, "SELECT ruvllm_store_unit_vectors(2)") == 2
    assert scalar(db, "SELECT ruvllm_store_unit_vectors()") == pending - 2
    assert scalar(db, "SELECT ruvllm_store_unit_vectors()") == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.node_units WHERE layout = %s",
                  (evidence.UNIT_LAYOUT,)) == pending
    assert WITNESS_FACT in ask(db, q + "   ", constraints={"model": "extractive"})["text"]
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT ruvllm_store_unit_vectors(-1)")
    # A rolled-back ingest leaves no unit vectors behind, and a deleted node takes its row along.
    db.execute("RESET ruvllm.store_unit_vectors")
    before = scalar(db, "SELECT count(*) FROM ruvllm.node_units")
    with pytest.raises(psycopg.errors.DivisionByZero):
        with db.transaction():
            db.execute("SELECT ruvllm_ingest('Autovacuum wakes up every minute.')")
            db.execute("SELECT 1 / 0")
    assert scalar(db, "SELECT count(*) FROM ruvllm.node_units") == before
    db.execute("DELETE FROM ruvllm.nodes WHERE id = %s", (node,))
    assert scalar(db, "SELECT count(*) FROM ruvllm.node_units") == before - 1
