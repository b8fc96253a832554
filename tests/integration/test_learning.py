"""The learning loops on a real database: judge, writeback, edge weights, replay, router training
and promotion, the pattern bank, memory compression, witness archiving."""

import psycopg
import pytest

from ruvllm import learning
from helpers import KNOWLEDGE, ask, scalar, seed, witness_rows

QUESTIONS = [
    "How do I rotate the witness log?", "What does VACUUM do?", "What is the capital of France?",
    "How does ruvllm_feedback store a rating?", "What does ef_search trade?",
]


def run_loop(db, loop):
    return scalar(db, "SELECT ruvllm_run_loop(%s)", (loop,))


def node_id(db, prefix):
    return scalar(db, "SELECT id FROM ruvllm.nodes WHERE content LIKE %s", (prefix + "%",))


def edge_weight(db, rel, a, b):
    return scalar(db, f"""SELECT (ag_catalog.agtype_out(e.properties)::text::jsonb->>'weight')::float8
                            FROM ruvllm_graph."{rel}" e
                            JOIN ruvllm.nodes s ON s.graph_id OPERATOR(ag_catalog.=) e.start_id
                            JOIN ruvllm.nodes d ON d.graph_id OPERATOR(ag_catalog.=) e.end_id
                           WHERE s.id = %s AND d.id = %s""", (a, b))


def test_instant_loop_judges_writes_back_moves_edges_and_replays(db):
    seed(db)
    witness_node, feedback_node = node_id(db, "The witness log"), node_id(db, "ruvllm_feedback")
    db.execute("SELECT ruvllm_link(%s, %s, 'Cites', 1.0)", (witness_node, feedback_node))
    db.execute("SET ruvllm.quality_threshold = 0")  # every judged answer is written back
    answers = [ask(db, q, constraints={"max_tokens": 24}) for q in QUESTIONS[:3]]
    witness_rows(db)
    result = run_loop(db, "instant")
    assert result["status"] == "ok" and result["run_by"] == "manual", result
    m = result["metrics"]
    assert m["judged"] == 3 and m["replayed"] == 3 and m["written_back"] == 3
    rows = witness_rows(db)
    for r in rows:
        assert 0 <= r["quality"] <= 1 and r["groundedness"] is not None and r["relevance"] is not None
        assert r["response_embedding"] is not None
    # The answer that used both linked nodes moved their edge by the quality rule.
    first = next(r for r in rows if str(r["request_id"]) == answers[0]["request_id"])
    used = {str(i) for i in first["context_node_ids"]}
    if {str(witness_node), str(feedback_node)} <= used:
        assert edge_weight(db, "Cites", witness_node, feedback_node) == pytest.approx(
            learning.edge_factor(first["quality"]), rel=1e-4)
    assert scalar(db, "SELECT count(*) FROM ruvllm.replay") == 3
    assert scalar(db, "SELECT seen FROM ruvllm.replay_state") == 3
    qa = db.execute("SELECT source, metadata FROM ruvllm.nodes WHERE node_type = 'QAPair' ORDER BY source").fetchall()
    assert sorted(s for s, _ in qa) == sorted(f"request:{a['request_id']}" for a in answers)
    assert scalar(db, 'SELECT count(*) FROM ruvllm_graph."Derived"') >= 3
    # Nothing left to judge: the next run is a no-op; loop runs are recorded.
    assert run_loop(db, "instant")["metrics"]["judged"] == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.loop_runs WHERE loop = 'instant' AND status = 'ok'") == 2


def test_quality_threshold_keeps_weak_answers_out_of_memory(db):
    seed(db)
    ask(db, "What does VACUUM do?", constraints={"max_tokens": 16})
    witness_rows(db)
    db.execute("SET ruvllm.quality_threshold = 1")
    assert run_loop(db, "instant")["metrics"]["written_back"] == 0
    assert scalar(db, "SELECT count(*) FROM ruvllm.nodes WHERE node_type = 'QAPair'") == 0


def test_feedback_after_judging_joins_the_quality(db):
    seed(db)
    r = ask(db, "What does VACUUM do?", constraints={"max_tokens": 16})
    witness_rows(db)
    db.execute("SET ruvllm.quality_threshold = 1")
    run_loop(db, "instant")
    judged = witness_rows(db, "request_id = %s", (r["request_id"],))[0]["quality"]
    db.execute("SELECT ruvllm_feedback(%s, 5)", (r["request_id"],))
    rated = witness_rows(db, "request_id = %s", (r["request_id"],))[0]["quality"]
    assert rated == pytest.approx(0.5 * judged + 0.5, abs=1e-5)


def test_a_failing_loop_is_recorded_not_raised(db):
    seed(db)
    ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})
    witness_rows(db)
    db.execute("ALTER TABLE ruvllm.replay_state RENAME TO replay_state_gone")
    notices = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    result = run_loop(db, "instant")
    assert result["status"] == "error" and "replay_state" in result["error"]
    assert any("instant loop failed" in n for n in notices)
    # The failed run changed nothing: the row is still unjudged.
    assert witness_rows(db)[0]["quality"] is None
    db.execute("ALTER TABLE ruvllm.replay_state_gone RENAME TO replay_state")
    assert run_loop(db, "instant")["status"] == "ok"
    assert scalar(db, "SELECT array_agg(status ORDER BY id) FROM ruvllm.loop_runs") == ["error", "ok"]
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        run_loop(db, "weekly")


def test_background_loop_waits_for_enough_samples(db):
    result = run_loop(db, "background")
    assert result["status"] == "ok" and result["metrics"]["trained"] is False
    assert scalar(db, "SELECT count(*) FROM ruvllm.policies") == 1


@pytest.mark.slow
def test_after_200_queries_with_feedback_a_new_router_is_promoted(db):
    """The issue's acceptance: 200 seeded queries with feedback, then a background run promotes a
    new router version whose held-out utility is no lower than the current one's."""
    seed(db)
    db.execute("SET ruvllm.explore_rate = 0.5")   # both models answer, so there is something to learn
    db.execute("SET ruvllm.cache_ttl = 0")
    db.execute("SET ruvllm.quality_threshold = 1")
    db.execute("SET ruvllm.judge_max_per_run = 250")
    topics = [c.split(".")[0] for c, _ in KNOWLEDGE]
    asked = []
    for i in range(200):
        q = f"Question {i}: what should I know about this? {topics[i % len(topics)]}"
        asked.append(ask(db, q, constraints={"max_tokens": 4}))
    witness_rows(db)
    # Feedback: users like the small chat model's answers and dislike the base model's.
    for a in asked:
        db.execute("SELECT ruvllm_feedback(%s, %s)",
                   (a["request_id"], 5 if a["routing"]["model"] == "smollm2-135m-instruct" else 1))
    instant = run_loop(db, "instant")
    assert instant["status"] == "ok" and instant["metrics"].get("judged") == 200, instant
    result = run_loop(db, "background")
    m = result["metrics"]
    assert result["status"] == "ok" and m["trained"] is True, result
    assert m["promoted"] is True and m["version"] == 2
    assert m["heldout_utility_after"] >= m["heldout_utility_before"]
    row = db.execute("SELECT status, parent_version, metrics FROM ruvllm.policies WHERE version = 2").fetchone()
    assert row[0] == "promoted" and row[1] == 1 and row[2]["samples"] >= 200
    # The next request is routed by the new version.
    db.execute("SET ruvllm.explore_rate = 0")
    assert ask(db, "What does VACUUM do?", constraints={"max_tokens": 8})["routing"]["policy_version"] == 2


def test_deep_loop_patterns_compression_and_archiving(db):
    seed(db)
    for q in QUESTIONS:
        ask(db, q, constraints={"max_tokens": 8})
    witness_rows(db)
    # Two near-identical nodes, stored apart by turning ingestion's own dedup off.
    db.execute("SET ruvllm.dedup_similarity = 1")
    a = scalar(db, "SELECT ruvllm_ingest('Checkpoints flush dirty pages to disk at intervals.', 'Fact')")
    b = scalar(db, "SELECT ruvllm_ingest('Checkpoints flush dirty pages to disk at regular intervals.', 'Fact')")
    db.execute("RESET ruvllm.dedup_similarity")
    c = node_id(db, "VACUUM")
    db.execute("SELECT ruvllm_link(%s, %s, 'Cites', 1.0)", (b, c))
    db.execute("SELECT ruvllm_link(%s, %s, 'Cites', 0.01)", (a, c))  # under the floor: pruned
    old = witness_rows(db)[0]["request_id"]
    db.execute("UPDATE ruvllm.witness SET created_at = now() - interval '40 days' WHERE request_id = %s", (old,))
    result = run_loop(db, "deep")
    m = result["metrics"]
    assert result["status"] == "ok", result
    assert m["patterns"] >= 2 and m["bank_version"] == 1
    assert scalar(db, "SELECT count(*) FROM ruvllm.patterns") == m["patterns"]
    assert m["nodes_merged"] >= 1 and m["edges_pruned"] >= 1
    survivors = scalar(db, "SELECT count(*) FROM ruvllm.nodes WHERE id IN (%s, %s)", (a, b))
    assert survivors == 1
    # The merged node's edge now starts at the survivor.
    keep = scalar(db, "SELECT id FROM ruvllm.nodes WHERE id IN (%s, %s)", (a, b))
    assert edge_weight(db, "Cites", keep, c) == pytest.approx(1.0)
    # Retention, run by the deep loop, archives by default: the old row sat in the default
    # partition (no partition for its day), so it moves row by row to ruvllm.witness_archive.
    assert m["retention"]["witness"]["action"] == "archive"
    assert m["retention"]["witness"]["default_rows_archived"] == 1
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness_archive WHERE request_id = %s", (old,)) == 1
    assert scalar(db, "SELECT count(*) FROM ruvllm.witness WHERE request_id = %s", (old,)) == 0
    # The router reads the pattern bank: ruvllm_route shows a cluster similarity.
    feats = scalar(db, "SELECT ruvllm_route('What does VACUUM do?')")["features"]["embedding"]
    assert any(k.startswith("cluster") and v != 0 for k, v in feats.items()), feats


@pytest.mark.slow
def test_oracle_runs_every_model_and_labels_replay_samples(db):
    seed(db)
    for q in QUESTIONS[:2]:
        ask(db, q, constraints={"max_tokens": 8})
    witness_rows(db)
    result = run_loop(db, "oracle")
    m = result["metrics"]
    assert result["status"] == "ok", result
    assert m["sampled"] == 2 and m["generations"] == 4 and m["labelled"] == 2
    rows = db.execute("SELECT model, oracle FROM ruvllm.replay").fetchall()
    assert len(rows) == 2
    for model, oracle in rows:
        assert set(oracle) == {"smollm2-135m-instruct", "gemma-3-270m", "extractive"}
        assert model == max(oracle, key=oracle.get)
