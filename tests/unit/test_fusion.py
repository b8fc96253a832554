"""Fusion of dense, lexical and graph signals (fusion.py) on hand-computed rankings, and the
checks of search filters and first-class metadata (memory.py)."""
import json

import pytest

from ruvllm import errors, fusion, memory


def test_rrf_sums_reciprocal_ranks_over_lists():
    scores = fusion.rrf([["a", "b", "c"], ["c", "a"]], k=60)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["b"] == pytest.approx(1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fusion.order(scores) == ["a", "c", "b"]
    # A duplicate inside one list counts once, at its best rank.
    assert fusion.rrf([["x", "x", "y"]])["x"] == pytest.approx(1 / 61)


def test_rrf_loses_a_rare_term_that_convex_fusion_keeps():
    # The rare code is lexical rank 1 with a BM25 score five times the next, and missing from
    # the dense list; p1 and p2 are ranked 2nd-3rd by both lists (common words).
    dense = ["p1", "p2", "p3"]
    lexical = ["code", "p1", "p2"]
    assert fusion.top(fusion.rrf([dense, lexical]), 2) == ["p1", "p2"]
    similarities = {"p1": 0.60, "p2": 0.58, "p3": 0.57, "code": 0.50}
    bm25 = {"code": 8.0, "p1": 1.6, "p2": 1.5}
    fused = fusion.convex(similarities, bm25, dense_weight=0.5)
    # code: 0.5 * 0 (lowest similarity) + 0.5 * 1; p1: 0.5 * 1 + 0.5 * 0.2
    assert fused["code"] == pytest.approx(0.5)
    assert fused["p1"] == pytest.approx(0.6)
    assert fused["p2"] == pytest.approx(0.5 * 0.8 + 0.5 * 1.5 / 8)
    assert fusion.top(fused, 2) == ["p1", "code"]


def test_convex_with_one_signal_is_that_signal_normalised():
    assert fusion.convex({"a": 0.9, "b": 0.5, "c": 0.7}, {}) == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.5})
    assert fusion.convex({}, {"a": 2.0, "b": 4.0}) == pytest.approx({"a": 0.5, "b": 1.0})
    assert fusion.convex({"a": 0.3}, {}) == {"a": 1.0}        # one candidate: no spread to scale
    assert fusion.convex({}, {}) == {}
    # Lexical-only and dense-only candidates both count, the missing signal as 0.
    fused = fusion.convex({"a": 0.8, "b": 0.4}, {"b": 3.0}, dense_weight=0.25)
    assert fused == pytest.approx({"a": 0.25, "b": 0.75})


def test_ties_are_broken_by_id_so_the_order_is_reproducible():
    assert fusion.order({"b": 0.5, "a": 0.5, "c": 0.9}) == ["c", "a", "b"]
    assert fusion.ranks({"b": 0.5, "a": 0.5, "c": 0.9}) == {"c": 1, "a": 2, "b": 3}


def test_a_neighbour_scores_its_best_path():
    frontier = {"s1": 1.0, "s2": 0.4}
    edges = [("s1", "n", "SameTopic", 0.8), ("s2", "n", "Follows", 1.0),
             ("s2", "m", "Cites", 700.0),       # user weights above 1 count as 1
             ("s1", "w", "Derived", None),      # no weight: 1
             ("elsewhere", "z", "Follows", 1.0)]
    best = fusion.best_paths(frontier, edges, damping=0.5)
    assert best["n"] == (pytest.approx(0.4), "s1", "SameTopic", 0.8)   # 1.0*0.8*0.5 beats 0.4*1*0.5
    assert best["m"][0] == pytest.approx(0.2)
    assert best["w"][0] == pytest.approx(0.5)
    assert "z" not in best
    assert fusion.edge_factor(-3) == 0.0


def test_a_strong_hits_neighbour_enters_the_top_k():
    # Hits a (both signals best), b, c; a's Follows neighbour f (found by no list) scores
    # 1.0 * 1.0 * 0.5 and ranks above the weak hits b and c.
    fused = fusion.convex({"a": 0.70, "b": 0.45, "c": 0.40}, {"a": 5.0, "b": 1.0})
    graph = fusion.best_paths({"a": fused["a"]}, [("a", "f", "Follows", 1.0)])
    ranking = dict(fused, f=graph["f"][0])
    assert fused["a"] == pytest.approx(1.0)
    assert fusion.top(ranking, 3) == ["a", "f", "b"]


@pytest.mark.parametrize("value, state", [
    ({"bogus": 1}, "22023"),
    ({"since": "yesterday"}, "22023"),
    ({"since": 5}, "22023"),
    ({"until": ["2024-01-01"]}, "22023"),
    ({"since": "2025-01-01", "until": "2024-01-01"}, "22023"),
    ({"node_type": "Nope"}, "22023"),
    ({"node_type": []}, "22023"),
    ({"node_type": [1]}, "22023"),
    ({"source": 3}, "22023"),
    ({"source": {"prefix": 3}}, "22023"),
    ({"source": {"prefix": "a", "exact": "b"}}, "22023"),
    ({"source": "x" * 1001}, "22001"),
    ({"metadata": [1]}, "22023"),
    ("[1]", "22023"),
    ("{not json", "22P02"),
])
def test_bad_filters_carry_sqlstates(value, state):
    with pytest.raises(errors.RuvllmError) as e:
        memory.check_filter(value if isinstance(value, str) else json.dumps(value))
    assert e.value.sqlstate == state


def test_filters_become_parameters():
    assert memory.check_filter(None) == (None,) * 6
    assert memory.check_filter("{}") == (None,) * 6
    since, until, types, exact, prefix, contains = memory.check_filter(json.dumps({
        "since": "2024-05-01", "until": "2024-05-02T12:00:00+02:00", "node_type": "Fact",
        "source": {"prefix": "docs/"}, "metadata": {"speaker": "alice"}}))
    assert since == "2024-05-01T00:00:00+00:00"          # no zone: UTC
    assert until == "2024-05-02T10:00:00+00:00"
    assert types == ["Fact"] and exact is None and prefix == "docs/"
    assert json.loads(contains) == {"speaker": "alice"}
    assert memory.check_filter({"source": "a.md", "node_type": ["Fact", "QAPair"]})[2:4] == (["Fact", "QAPair"], "a.md")


def test_search_modes_are_checked():
    for mode in memory.MODES:
        assert memory.check_mode(mode) == mode
    for bad in ("Hybrid", "bm25", None, ""):
        with pytest.raises(errors.RuvllmError) as e:
            memory.check_mode(bad)
        assert e.value.sqlstate == "22023" and "hybrid" in e.value.hint


def test_timestamp_speaker_and_author_are_first_class_metadata():
    meta = memory.check_metadata(json.dumps({"timestamp": "2024-05-01T14:30:00+02:00", "speaker": "Alice",
                                             "author": "Bob", "other": 1}))
    assert meta == {"timestamp": "2024-05-01T12:30:00+00:00", "speaker": "Alice", "author": "Bob", "other": 1}
    assert memory.check_metadata({"timestamp": "2024-05-01"})["timestamp"] == "2024-05-01T00:00:00+00:00"
    for bad in ({"timestamp": "last tuesday"}, {"timestamp": 1714570000}, {"speaker": 7},
                {"author": ["a"]}, {"speaker": True}):
        with pytest.raises(errors.RuvllmError) as e:
            memory.check_metadata(bad)
        assert e.value.sqlstate == "22023", bad
