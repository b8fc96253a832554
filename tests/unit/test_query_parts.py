"""Pure parts of the query pipeline: constraint checks, cache keys, witness rows."""
import json
import uuid

import numpy as np
import pytest

from ruvllm import cache, errors, query, sessions, witness


def sqlstate(excinfo):
    return excinfo.value.sqlstate


def test_constraints_are_checked_and_normalised():
    assert query.check_constraints(None) == {}
    assert query.check_constraints('{"max_tokens": 32.0, "temperature": 0}') == {
        "max_tokens": 32, "temperature": 0.0}
    assert query.check_constraints({"model": "gemma-3-270m", "top_p": 1}) == {
        "model": "gemma-3-270m", "top_p": 1.0}


@pytest.mark.parametrize("value, state", [
    ("[1, 2]", "22023"),
    ("{not json", "22P02"),
    ({"colour": "blue"}, "22023"),
    ({"max_tokens": 0}, "22003"),
    ({"max_tokens": 2049}, "22003"),
    ({"max_tokens": 1.5}, "22023"),
    ({"max_tokens": True}, "22023"),
    ({"temperature": float("nan")}, "22023"),
    ({"temperature": 2.5}, "22003"),
    ({"top_p": -0.1}, "22003"),
    ({"max_latency_ms": 0}, "22003"),
    ({"model": ""}, "22023"),
    ({"model": 7}, "22023"),
])
def test_bad_constraints_carry_sqlstates(value, state):
    with pytest.raises(errors.RuvllmError) as e:
        query.check_constraints(value)
    assert sqlstate(e) == state


def test_query_checks():
    with pytest.raises(errors.RuvllmError) as e:
        query.check_query(None)
    assert sqlstate(e) == "22004"
    with pytest.raises(errors.RuvllmError) as e:
        query.check_query(" \n")
    assert sqlstate(e) == "22023"
    with pytest.raises(errors.RuvllmError) as e:
        query.check_query("x" * 100_001)
    assert sqlstate(e) == "22001"
    with pytest.raises(errors.RuvllmError):
        sessions.check_session_id("x" * 201)
    assert sessions.check_session_id(None) is None


def test_cache_keys_ignore_case_and_spacing_but_not_words_or_constraint_order():
    assert cache.query_hash("What does  VACUUM do?") == cache.query_hash(" what does vacuum do? ")
    assert cache.query_hash("What does VACUUM do?") != cache.query_hash("What does ANALYZE do?")
    assert cache.constraints_key({"b": 1, "a": 2}) == cache.constraints_key({"a": 2, "b": 1}) == '{"a":2,"b":1}'
    assert cache.constraints_key(None) == "{}"


def test_witness_row_is_json_with_every_column():
    rid = uuid.uuid4()
    row = witness.make_row(request_id=rid, query="q", query_embedding=np.array([0.5, -0.25], np.float32),
                           context_node_ids=[rid], created_at=witness.now_utc(), model_probs={"a": 1.0})
    assert set(row) == set(witness.COLUMNS)
    decoded = json.loads(json.dumps(row))
    assert decoded["request_id"] == str(rid) and decoded["query_embedding"] == "[0.5,-0.25]"
    assert decoded["context_node_ids"] == [str(rid)] and decoded["error"] is None
    with pytest.raises(KeyError):
        witness.make_row(request_id=rid, colour="blue")


def test_time_settings_in_seconds():
    from ruvllm.sqlglue import seconds
    assert seconds("3600") == 3600 and seconds("1h") == 3600 and seconds("30min") == 1800
    assert seconds("500ms") == 0.5 and seconds("2d") == 172800 and seconds("0") == 0


def test_witness_row_fills_not_null_columns_of_a_failed_call():
    row = witness.make_row(request_id=uuid.uuid4(), error="boom", error_sqlstate="22023")
    assert row["tenant"] == "" and row["cache_hit"] is False and row["explored"] is False


def _session(done, kept=sessions.HISTORY_TURNS):
    return {"turn_count": done,
            "history": [{"q": f"q{i}", "a": f"a{i}"} for i in range(max(0, done - kept), done)]}


def test_a_session_replays_a_window_that_moves_three_turns_at_a_time():
    replayed = {done: [q for q, _ in sessions.prompt_turns(_session(done))] for done in range(12)}
    assert replayed[0] == [] and replayed[1] == ["q0"]
    # The first replayed turn stays put while turns are added, so last prompt is a prefix of this one.
    assert replayed[5] == ["q0", "q1", "q2", "q3", "q4"]
    assert replayed[6] == ["q3", "q4", "q5"]
    assert replayed[8] == ["q3", "q4", "q5", "q6", "q7"]
    assert replayed[9] == ["q6", "q7", "q8"]
    assert all(3 <= len(replayed[d]) <= 5 for d in range(3, 12))
    assert sessions.prompt_turns(_session(4))[-1] == ("q3", "a3")
    assert sessions.prompt_turns(None) == []
