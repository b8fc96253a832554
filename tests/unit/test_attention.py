"""Graph attention over the retrieved subgraph: scores, bias, dedup, context packing (pure)."""
import dataclasses
import math

import numpy as np
import pytest

from ruvllm.attention import (
    REL_NAMES,
    AttentionConfig,
    RankedNode,
    attention_scores,
    head_attention,
    rank,
    select_context,
)
from ruvllm.errors import RuvllmError

ONE_HEAD = AttentionConfig(heads=1, tau=2.0)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def words(text):
    return len(text.split())


def same_vectors(n, dim=2):
    """n copies of the query's own vector: similarity ties, so only the bias decides."""
    q = f32([1.0] + [0.0] * (dim - 1))
    return q, np.tile(q, (n, 1))


def test_one_head_softmax_by_hand():
    # tau=2, one head: logits = tau * 1 * <q, n> = 2, 0, 1.2 (no bias for hop-0 hits).
    # exp: 7.389056, 1, 3.320117; sum 11.709173 -> 0.631049, 0.085403, 0.283548.
    q = f32([1, 0])
    nodes = f32([[1, 0], [0, 1], [0.6, 0.8]])
    s = attention_scores(q, nodes, [0, 0, 0], [None] * 3, [None] * 3, config=ONE_HEAD)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, [0.631049, 0.085403, 0.283548], atol=1e-5)
    ranked = rank(q, nodes, [0, 0, 0], [None] * 3, [None] * 3, config=ONE_HEAD)
    assert [r.index for r in ranked] == [0, 2, 1]
    assert ranked[1].similarity == pytest.approx(0.6, abs=1e-6)
    assert ranked[0].head_scores == [pytest.approx(0.631049, abs=1e-5)]


def test_two_heads_each_see_their_block():
    # q = (1,0,0,1)/sqrt2, heads of 2 dims. Logits scale tau*H = 2 with tau=1:
    # head 0: node A (1,0,0,0) -> 2/sqrt2 = sqrt2, node B (0,0,0,1) -> 0; head 1 the reverse.
    # softmax(sqrt2, 0) = (e^sqrt2/(1+e^sqrt2), ...) = (0.804430, 0.195570); the mean is 0.5 each.
    q = f32([1, 0, 0, 1]) / math.sqrt(2)
    nodes = f32([[1, 0, 0, 0], [0, 0, 0, 1]])
    cfg = AttentionConfig(heads=2, tau=1.0)
    per_head = head_attention(q, nodes, [0, 0], [None, None], [None, None], config=cfg)
    np.testing.assert_allclose(per_head, [[0.804430, 0.195570], [0.195570, 0.804430]], atol=1e-5)
    np.testing.assert_allclose(attention_scores(q, nodes, [0, 0], [None, None], [None, None], config=cfg),
                               [0.5, 0.5], atol=1e-6)
    ranked = rank(q, nodes, [0, 0], [None, None], [None, None], config=cfg)
    assert ranked[0].head_scores == pytest.approx([0.804430, 0.195570], abs=1e-5)


def test_hop_zero_beats_hop_two():
    # Same similarity; hop 2 via Cites (bias 0, weight 1) adds 2*log(0.7): ratio 1 : 0.49.
    q, nodes = same_vectors(2)
    s = attention_scores(q, nodes, [2, 0], ["Cites", None], [1.0, None], config=ONE_HEAD)
    np.testing.assert_allclose(s, [0.49 / 1.49, 1 / 1.49], atol=1e-6)
    keep_all = dataclasses.replace(ONE_HEAD, dedup_similarity=2.0)  # the copies are not dropped
    assert [r.index for r in rank(q, nodes, [2, 0], ["Cites", None], [1.0, None], config=keep_all)] == [1, 0]
    # With dedup on, the copy reached by the weaker path is the one dropped.
    ranked = rank(q, nodes, [2, 0], ["Cites", None], [1.0, None], config=ONE_HEAD)
    assert [(r.index, r.duplicates) for r in ranked] == [(1, [0])]


def test_follows_beats_same_topic():
    # Bias -0.1 vs -0.2 at the same hop and weight: 1/(1+e^-0.1) = 0.524979.
    q, nodes = same_vectors(2)
    s = attention_scores(q, nodes, [1, 1], ["SameTopic", "Follows"], [1.0, 1.0], config=ONE_HEAD)
    np.testing.assert_allclose(s, [1 - 0.524979, 0.524979], atol=1e-6)


def test_weaker_edge_ranks_lower():
    # edge_weight_scale 1: log(0.5) bias, so the ratio is 1 : 0.5.
    q, nodes = same_vectors(2)
    s = attention_scores(q, nodes, [1, 1], ["Cites", "Cites"], [0.5, 1.0], config=ONE_HEAD)
    np.testing.assert_allclose(s, [1 / 3, 2 / 3], atol=1e-6)
    # A missing weight counts as 1, and a zero weight is clamped, not -inf.
    s = attention_scores(q, nodes, [1, 1], ["Cites", "Cites"], [None, 1.0], config=ONE_HEAD)
    np.testing.assert_allclose(s, [0.5, 0.5], atol=1e-6)
    s = attention_scores(q, nodes, [1, 1], ["Cites", "Cites"], [0.0, 1.0], config=ONE_HEAD)
    assert np.isfinite(s).all() and s[0] == pytest.approx(1e-3 / 1.001, rel=1e-3)


def test_edge_weight_ignored_at_hop_zero():
    q, nodes = same_vectors(2)
    s = attention_scores(q, nodes, [0, 0], [None, None], [0.1, None], config=ONE_HEAD)
    np.testing.assert_allclose(s, [0.5, 0.5], atol=1e-6)


def test_older_node_ranks_lower_and_recency_is_floored():
    q, nodes = same_vectors(3)
    half = AttentionConfig().recency_half_life_s
    # ages 0, one half-life, ten half-lives: factors 1, 0.5, max(2^-10, 0.25) = 0.25.
    s = attention_scores(q, nodes, [0, 0, 0], [None] * 3, [None] * 3, ages_s=[0.0, half, 10 * half],
                         config=ONE_HEAD)
    np.testing.assert_allclose(s, [1 / 1.75, 0.5 / 1.75, 0.25 / 1.75], atol=1e-6)
    # Unknown age and clock skew (negative age) are no decay.
    s = attention_scores(q, nodes, [0, 0, 0], [None] * 3, [None] * 3, ages_s=[None, -5.0, 0.0],
                         config=ONE_HEAD)
    np.testing.assert_allclose(s, [1 / 3] * 3, atol=1e-6)


def test_default_scores_sum_to_one_and_stay_float32():
    rng = np.random.default_rng(7)
    q = rng.standard_normal(384).astype(np.float32)
    q /= np.linalg.norm(q)
    nodes = rng.standard_normal((50, 384)).astype(np.float32)
    nodes /= np.linalg.norm(nodes, axis=1, keepdims=True)
    nodes[:5] += 2 * q  # some near the query, so the scores are not flat
    nodes /= np.linalg.norm(nodes, axis=1, keepdims=True)
    hops = [i % 3 for i in range(50)]
    rels = [None if h == 0 else REL_NAMES[i % 5] for i, h in enumerate(hops)]
    weights = [None if h == 0 else 0.5 + (i % 4) / 4 for i, h in enumerate(hops)]
    ages = [None if i % 7 == 0 else i * 3600.0 for i in range(50)]
    s = attention_scores(q, nodes, hops, rels, weights, ages)
    assert s.dtype == np.float32 and s.shape == (50,)
    assert float(s.sum()) == pytest.approx(1.0, abs=1e-5)
    per_head = head_attention(q, nodes, hops, rels, weights, ages)
    assert per_head.shape == (4, 50) and per_head.dtype == np.float32
    np.testing.assert_allclose(per_head.sum(axis=1), 1.0, atol=1e-5)
    ranked = rank(q, nodes, hops, rels, weights, ages)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert {r.index for r in ranked} <= set(range(5)) | set(range(50))
    assert ranked[0].index < 5  # a node near the query wins
    for r in ranked:
        assert r.score == pytest.approx(float(np.mean(r.head_scores)), abs=1e-6)


def test_near_duplicate_dropped():
    q = f32([1, 0])
    c = math.cos(0.1)  # 0.995 to node 0: above 0.95
    nodes = f32([[1, 0], [c, math.sin(0.1)], [0.6, 0.8]])
    ranked = rank(q, nodes, [0, 0, 0], [None] * 3, [None] * 3, config=ONE_HEAD)
    assert [r.index for r in ranked] == [0, 2]
    assert ranked[0].duplicates == [1] and ranked[1].duplicates == []
    # The kept scores are the nodes' share of all retrieved attention, not renormalised.
    assert sum(r.score for r in ranked) < 1.0
    # Above 1 no cosine reaches the threshold: dedup is off.
    off = AttentionConfig(heads=1, tau=2.0, dedup_similarity=1.5)
    assert [r.index for r in rank(q, nodes, [0, 0, 0], [None] * 3, [None] * 3, config=off)] == [0, 1, 2]


def test_duplicate_of_a_dropped_node_is_judged_against_kept_ones():
    # B is a duplicate of A (kept); C is close to B but not to A, so C stays.
    q = f32([1, 0])
    angles = [0.0, 0.25, 0.5]  # cos(0.25) = 0.969 >= 0.95, cos(0.5) = 0.878 < 0.95
    nodes = f32([[math.cos(a), math.sin(a)] for a in angles])
    ranked = rank(q, nodes, [0, 0, 0], [None] * 3, [None] * 3, config=ONE_HEAD)
    assert [r.index for r in ranked] == [0, 2]
    assert ranked[0].duplicates == [1]


def ranked_nodes(scores):
    return [RankedNode(index=i, score=s, head_scores=[s]) for i, s in enumerate(scores)]


def test_select_context_fits_budget_in_rank_order():
    cfg = AttentionConfig(per_node_overhead_tokens=1)
    texts = ["a b c", "d e", "f g h i", "j"]
    ranked = ranked_nodes([0.4, 0.3, 0.2, 0.1])
    # costs 4, 3, 5, 2; budget 9: 4 + 3 = 7, the 5 does not fit, the 2 does -> 9.
    out = select_context(ranked, texts, 9, words, cfg)
    assert out == [(0, "a b c", 0.4), (1, "d e", 0.3), (3, "j", 0.1)]
    assert sum(words(t) + 1 for _, t, _ in out) <= 9


def test_select_context_skips_large_node_and_keeps_smaller_later_one():
    cfg = AttentionConfig(per_node_overhead_tokens=0)
    texts = ["one two", "x " * 20, "three"]
    out = select_context(ranked_nodes([0.5, 0.3, 0.2]), texts, 4, words, cfg)
    assert [i for i, _, _ in out] == [0, 2]


def test_select_context_follows_ranked_order_not_index():
    cfg = AttentionConfig(per_node_overhead_tokens=0)
    ranked = [RankedNode(index=2, score=0.6, head_scores=[0.6]),
              RankedNode(index=0, score=0.4, head_scores=[0.4])]
    out = select_context(ranked, ["zero", "one", "two"], 10, words, cfg)
    assert out == [(2, "two", 0.6), (0, "zero", 0.4)]


def test_select_context_cuts_first_node_when_it_alone_is_too_big():
    cfg = AttentionConfig(per_node_overhead_tokens=2)
    text = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
    out = select_context(ranked_nodes([0.9, 0.1]), [text, "tiny"], 7, words, cfg)
    # 7 - 2 overhead = 5 words of the first node; nothing left for the second (1 + 2 > 0).
    assert out == [(0, "w1 w2 w3 w4 w5", 0.9)]
    # The cut keeps the original whitespace up to the last kept word.
    out = select_context(ranked_nodes([1.0]), ["alpha\n\nbeta gamma  delta"], 4, words, cfg)
    assert out == [(0, "alpha\n\nbeta", 1.0)]


def test_select_context_cut_leaves_room_for_later_nodes():
    cfg = AttentionConfig(per_node_overhead_tokens=0)
    # count_tokens counts characters: the cut stops at a word boundary, leaving 1 token spare.
    out = select_context(ranked_nodes([0.9, 0.1]), ["aaa bbb ccc", "z"], 6, len, cfg)
    assert out == [(0, "aaa", 0.9), (1, "z", 0.1)]


def test_select_context_never_empty_even_with_tiny_budget():
    cfg = AttentionConfig(per_node_overhead_tokens=8)
    out = select_context(ranked_nodes([1.0]), ["one two three"], 2, words, cfg)
    assert out == [(0, "one two", 1.0)]
    # A single word longer than the budget is cut by characters.
    no_overhead = AttentionConfig(per_node_overhead_tokens=0)
    out = select_context(ranked_nodes([1.0]), ["abcdefghij"], 4, len, no_overhead)
    assert out == [(0, "abcd", 1.0)]


def test_empty_input():
    q = np.zeros(384, dtype=np.float32)
    q[0] = 1.0
    empty = np.zeros((0, 384), dtype=np.float32)
    s = attention_scores(q, empty, [], [], [])
    assert s.shape == (0,) and s.dtype == np.float32
    assert head_attention(q, empty, [], [], [], ages_s=[]).shape == (4, 0)
    assert rank(q, empty, [], [], []) == []
    assert rank(q, [], [], [], []) == []
    assert select_context([], [], 100, words) == []


def test_config_is_frozen_hashable_and_merges_rel_bias():
    cfg = AttentionConfig(rel_bias={"Cites": 0.2})
    assert cfg.rel_bias["Cites"] == 0.2 and cfg.rel_bias["Follows"] == -0.1 and cfg.rel_bias[None] == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.tau = 1.0
    with pytest.raises(TypeError):
        cfg.rel_bias["Cites"] = 0.0
    assert hash(AttentionConfig()) == hash(AttentionConfig())
    assert AttentionConfig(rel_bias={"Cites": 0.0}) == AttentionConfig()
    assert dataclasses.replace(cfg, tau=5.0).rel_bias["Cites"] == 0.2
    # The bias moves scores as documented: Cites +0.2 vs a hit at 0.
    q, nodes = same_vectors(2)
    s = attention_scores(q, nodes, [0, 1], [None, "Cites"], [None, 1.0],
                         config=AttentionConfig(heads=1, rel_bias={"Cites": 0.2}, hop_decay=1.0))
    np.testing.assert_allclose(s, [1 / (1 + math.exp(0.2)), 1 / (1 + math.exp(-0.2))], atol=1e-6)


def assert_invalid(fn, *args, **kwargs):
    with pytest.raises(RuvllmError) as err:
        fn(*args, **kwargs)
    assert err.value.sqlstate == "22023"
    return err.value


def test_bad_input_raises_22023():
    q = f32([1, 0, 0, 0])
    nodes = f32([[1, 0, 0, 0], [0, 1, 0, 0]])
    ok = dict(hops=[0, 1], via_rels=[None, "Cites"], edge_weights=[None, 1.0])
    attention_scores(q, nodes, **ok)  # the baseline is valid
    assert_invalid(attention_scores, q, nodes, [0], [None, "Cites"], [None, 1.0])
    assert_invalid(attention_scores, q, nodes, [0, 1], [None], [None, 1.0])
    assert_invalid(attention_scores, q, nodes, [0, 1], [None, "Cites"], [None])
    assert_invalid(attention_scores, q, nodes, **ok, ages_s=[1.0])
    assert_invalid(attention_scores, q, nodes, None, [None, "Cites"], [None, 1.0])
    assert_invalid(attention_scores, f32([1, 0, 0]), nodes, **ok)  # query dim differs
    assert_invalid(attention_scores, f32([1, 0, 0, 0, 0, 0]), f32(np.eye(6)[:2]), **ok)  # 6 % 4
    assert_invalid(attention_scores, q, nodes[0], **ok)  # not (n, d)
    assert_invalid(attention_scores, q, f32(np.eye(4)[:3]), **ok)  # 3 nodes, 2-entry lists
    err = assert_invalid(attention_scores, q, nodes, [0, 1], [None, "Quotes"], [None, 1.0])
    assert "Cites" in err.hint and "'Quotes'" in err.message
    assert_invalid(attention_scores, q, nodes, [0, 1], [None, ["Cites"]], [None, 1.0])
    assert_invalid(rank, q, nodes, [0, -1], [None, "Cites"], [None, 1.0])
    assert_invalid(rank, q, nodes, [0, 1.5], [None, "Cites"], [None, 1.0])
    assert_invalid(rank, q, nodes, [0, 1], [None, "Cites"], [None, -1.0])
    assert_invalid(rank, q, nodes, [0, 1], [None, "Cites"], [None, float("nan")])
    assert_invalid(rank, q, nodes, **ok, ages_s=[None, float("inf")])
    assert_invalid(rank, f32([np.nan, 0, 0, 0]), nodes, **ok)
    ranked = ranked_nodes([0.6, 0.4])
    assert_invalid(select_context, ranked, ["a", "b"], 0, words)
    assert_invalid(select_context, ranked, ["a", "b"], 2.5, words)
    assert_invalid(select_context, ranked, ["a"], 10, words)  # index 1 has no text


@pytest.mark.parametrize("kwargs", [
    dict(heads=0), dict(tau=0.0), dict(tau=float("nan")), dict(hop_decay=1.5), dict(hop_decay=0.0),
    dict(min_recency=0.0), dict(recency_half_life_s=-1.0), dict(edge_weight_scale=-1.0),
    dict(dedup_similarity=0.0), dict(per_node_overhead_tokens=-1), dict(rel_bias={"Quotes": 0.1}),
    dict(rel_bias={"Cites": "high"}), dict(rel_bias=3),
])
def test_bad_config_raises_22023(kwargs):
    assert_invalid(AttentionConfig, **kwargs)
