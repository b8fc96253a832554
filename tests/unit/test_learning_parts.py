"""Pure parts of the learning loops: quality formula, judge parsing, edge steps, reservoir
sampling, utility estimates and labels. Numbers checked by hand in the comments."""
import random

import numpy as np
import pytest

from ruvllm import judge, learning


@pytest.mark.parametrize("reply, score", [
    ("4", 4), ("Rating: 5/5", 5), (" I'd say 2.", 2), ("0 or 9", None), ("", None), (None, None),
    ("between 3 and 4", 3),
])
def test_judge_reply_parsing(reply, score):
    assert judge.parse_score(reply) == score


def test_quality_formula():
    # 0.25 * (4-1)/4 + 0.45 * 0.8 + 0.30 * 0.6 = 0.1875 + 0.36 + 0.18 = 0.7275
    assert judge.automatic_quality(4, 0.8, 0.6) == pytest.approx(0.7275)
    # Judge failed: 0.6 * 0.8 + 0.4 * 0.6 = 0.72
    assert judge.automatic_quality(None, 0.8, 0.6) == pytest.approx(0.72)
    # A rating of 5 pulls half way to 1: 0.5 * 0.7275 + 0.5 * 1 = 0.86375
    assert judge.combined_quality(0.7275, 5) == pytest.approx(0.86375)
    assert judge.combined_quality(None, 1) == 0.0
    assert judge.combined_quality(0.4, None) == 0.4


def test_similarity_signals_are_clipped():
    a = np.array([1.0, 0.0], np.float32)
    # Groundedness is the grounding check's score (issue 14), not a cosine: the share of the
    # answer's content words in supported sentences; 0 once the request path found it ungrounded.
    context = ["Old daily partitions are dropped by retention.", "Paris is the capital of France."]
    assert judge.groundedness("Old daily partitions are dropped. Cron deletes rows nightly.", context) \
        == pytest.approx(4 / 8)
    assert judge.groundedness("Old daily partitions are dropped.", context) == 1.0
    assert judge.groundedness("Old daily partitions are dropped.", context, witnessed=False) == 0.0
    assert judge.groundedness("anything", []) == 0.0
    assert judge.relevance(a, np.array([-1.0, 0.0], np.float32)) == 0.0


def test_edge_factor_moves_five_percent_with_quality():
    assert learning.edge_factor(1.0) == pytest.approx(1.05)
    assert learning.edge_factor(0.0) == pytest.approx(0.95)
    assert learning.edge_factor(0.5) == pytest.approx(1.0)


def test_reservoir_fills_then_keeps_a_uniform_sample():
    rng = random.Random(7)
    assert [learning.reservoir_slot(i, 3, rng) for i in range(3)] == [0, 1, 2]
    # After many offers each item is kept with probability capacity / n.
    capacity, n, trials = 5, 50, 4000
    kept = np.zeros(n)
    for t in range(trials):
        rng = random.Random(t)
        slots = [None] * capacity
        for i in range(n):
            s = learning.reservoir_slot(i, capacity, rng)
            if s is not None:
                slots[s] = i
        for i in slots:
            kept[i] += 1
    share = kept / trials
    assert share.mean() == pytest.approx(capacity / n, abs=1e-9)
    assert np.abs(share - capacity / n).max() < 0.03


def test_utilities_are_estimated_for_models_not_run():
    # a used twice (0.8, 0.4: mean 0.6), b once (0.9).
    U = learning.estimate_utilities(["a", "a", "b"], [0.8, 0.4, 0.9], ["a", "b"])
    assert U == pytest.approx(np.array([[0.8, 0.9], [0.4, 0.9], [0.6, 0.9]]))
    # A model never observed gets the lowest observed utility; oracle rows win.
    U = learning.estimate_utilities(["a", "a"], [0.8, 0.4], ["a", "c"], oracle=[None, {"c": 0.7}])
    assert U.tolist() == [[0.8, 0.4], [0.4, 0.7]]


def test_labels_follow_the_best_estimate_weighted_by_margin():
    U = np.array([[0.8, 0.9], [0.9, 0.5], [0.7, 0.7]])
    labels, weights = learning.labels_from_utilities(U, ["a", "a", "b"], ["a", "b"])
    assert labels.tolist() == [1, 0, 0]
    # margins 0.1, 0.4, 0.0; +0.1 where the sample's own model is the label (row 2).
    assert weights.tolist() == pytest.approx([0.1, 0.5, 0.0])
