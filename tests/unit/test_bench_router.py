"""bench/router's pure helpers (bench/router/metrics.py): APGR and the routing curve on
hand-checked numbers, oracle labels, operating points, PCA, logistic regression."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

# Loaded by path under its own name: putting bench/router on sys.path would let its data.py and
# run.py shadow other modules for the rest of the session.
_spec = importlib.util.spec_from_file_location(
    "bench_router_metrics", Path(__file__).resolve().parents[2] / "bench" / "router" / "metrics.py")
M = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(M)

# Four questions: weak right only on #1, strong right on #0, #2, #3.
# acc_weak = 1/4, acc_strong = 3/4; s - w = (+1, -1, +1, +1).
WEAK = np.array([False, True, False, False])
STRONG = np.array([True, False, True, True])


def test_oracle_labels():
    w = np.array([True, True, False, False])
    s = np.array([True, False, True, False])
    assert M.oracle_labels(w, s).tolist() == [0, 0, 1, 0]


def test_routing_curve_by_hand():
    # Order by score: #0 (+1), #2 (+1), #3 (+1), #1 (-1).
    share, acc = M.routing_curve([0.9, 0.1, 0.5, 0.3], WEAK, STRONG)
    assert share.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert acc.tolist() == [0.25, 0.5, 0.75, 1.0, 0.75]


def test_apgr_by_hand():
    # PGR at 0, .25, .5, .75, 1: 0, .5, 1, 1.5, 1 -> trapezoids .25 * (.25 + .75 + 1.25 + 1.25).
    assert M.apgr([0.9, 0.1, 0.5, 0.3], WEAK, STRONG) == pytest.approx(0.875)
    # The worst ranking (the weak-only question first) recovers less than random.
    # Order #1 (-1), then +1, +1, +1: acc .25, 0, .25, .5, .75 -> PGR 0, -.5, 0, .5, 1.
    assert M.apgr([0.1, 0.9, 0.5, 0.3], WEAK, STRONG) == pytest.approx(
        0.25 * ((0 - 0.5) / 2 + (-0.5 + 0) / 2 + (0 + 0.5) / 2 + (0.5 + 1) / 2))


def test_apgr_ties_are_averaged():
    # #0 first, then the tie {#1 (-1), #2 (+1)}, then #3: boundaries k = 0, 1, 3, 4 with
    # accuracies .25, .5, .5, .75 -> PGR 0, .5, .5, 1 at shares 0, .25, .75, 1.
    share, acc = M.routing_curve([0.9, 0.5, 0.5, 0.1], WEAK, STRONG)
    assert share.tolist() == [0.0, 0.25, 0.75, 1.0]
    assert acc.tolist() == [0.25, 0.5, 0.5, 0.75]
    assert M.apgr([0.9, 0.5, 0.5, 0.1], WEAK, STRONG) == pytest.approx(
        0.25 * 0.25 + 0.5 * 0.5 + 0.25 * 0.75)


def test_random_router_is_one_half_exactly():
    rng = np.random.default_rng(0)
    w = rng.random(1000) < 0.68
    s = rng.random(1000) < 0.8
    assert M.apgr(np.zeros(1000), w, s) == pytest.approx(0.5, abs=1e-12)
    # A random ranking is about 0.5 too (not exactly).
    assert M.apgr(rng.random(1000), w, s) == pytest.approx(0.5, abs=0.1)


def test_apgr_needs_a_gap():
    with pytest.raises(ValueError):
        M.apgr([0.1, 0.2], [True, False], [False, True])


def test_operating_point_and_cost():
    op = M.operating_point([True, False, False, False], WEAK, STRONG, strong_cost=10)
    # Oracle labels 1, 0, 1, 1 against decisions 1, 0, 0, 0: #0 and #1 match.
    assert op["decision_accuracy"] == pytest.approx(0.5)
    assert op["strong_share"] == pytest.approx(0.25)
    assert op["accuracy"] == pytest.approx(0.5)   # #0 strong right, #1 weak right
    assert op["cost"] == pytest.approx((0.25 * 10 + 0.75) / 10)
    assert M.relative_cost(1.0, 10) == pytest.approx(1.0)
    assert M.relative_cost(0.0, 10) == pytest.approx(0.1)


def test_cheapest_share_within():
    # Curve accuracies .25, .5, .75, 1, .75; strong = .75. Within .25: .5 at share .25.
    share, acc = M.cheapest_share_within([0.9, 0.1, 0.5, 0.3], WEAK, STRONG, 0.25)
    assert share == pytest.approx(0.25) and acc == pytest.approx(0.5)
    # Within .125: halfway between shares .25 (.5) and .5 (.75).
    share, _ = M.cheapest_share_within([0.9, 0.1, 0.5, 0.3], WEAK, STRONG, 0.125)
    assert share == pytest.approx(0.375)


def test_threshold_for_share():
    s = [0.9, 0.1, 0.5, 0.3]
    assert M.threshold_for_share(s, 0.5) == 0.5
    assert np.isinf(M.threshold_for_share(s, 0.0))
    assert M.threshold_for_share(s, 1.0) == 0.1


def test_pca_whitened():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 6)) @ np.diag([5, 3, 2, 1, 0.5, 0.1])
    p = M.PCA(3).fit(X)
    Z = p.transform(X)
    assert Z.dtype == np.float32 and Z.shape == (500, 3)
    np.testing.assert_allclose(np.cov(Z.T.astype(np.float64)), np.eye(3), atol=1e-4)
    assert 0.9 < p.explained < 1.0
    # Not whitened: one common scale, mean variance 1, the components' ratios kept.
    v = M.PCA(3, whiten=False).fit(X).transform(X).astype(np.float64).var(axis=0, ddof=1)
    assert v.mean() == pytest.approx(1.0, rel=1e-4)
    assert v[0] / v[2] == pytest.approx(25 / 4, rel=0.1)


def test_logistic_regression_recovers_weights():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4000, 3))
    beta = np.array([1.5, -2.0, 0.0])
    y = rng.random(4000) < 1 / (1 + np.exp(-(X @ beta + 0.5)))
    b, c = M.logistic_regression(X, y, l2=0.0)
    np.testing.assert_allclose(b, beta, atol=0.2)
    assert c == pytest.approx(0.5, abs=0.15)
