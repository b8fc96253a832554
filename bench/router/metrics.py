"""Pure helpers of bench/router: labels, the routing curve and APGR, operating points, PCA,
logistic regression. numpy only; unit-tested in tests/unit/test_bench_router.py.

Conventions: ``weak`` and ``strong`` are (n,) bools, did that model answer question i correctly;
a router gives a ``score`` per question, higher = rather the strong model; model index 0 is the
weak model and 1 the strong one.
"""

import numpy as np

WEAK, STRONG = 0, 1


def oracle_labels(weak, strong):
    """1 (strong) where only the strong model is right, else 0 (weak: right, or both wrong, and
    cheaper)."""
    weak = np.asarray(weak, dtype=bool)
    strong = np.asarray(strong, dtype=bool)
    return (~weak & strong).astype(np.int64)


def routing_curve(score, weak, strong):
    """Accuracy as the strong-call share sweeps 0..1, routing the highest scores to strong.

    Returns (share, accuracy), two arrays of the same length: the points k/n where k is a
    boundary between blocks of equal scores (0 and n included). Inside a block of tied scores
    the order is random, so the expected accuracy is linear between its boundaries; the curve
    is these points joined by straight lines.
    """
    score = np.asarray(score, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    s = np.asarray(strong, dtype=np.float64)
    n = score.size
    if n == 0 or w.shape != (n,) or s.shape != (n,):
        raise ValueError("score, weak and strong must be non-empty arrays of one length")
    if not np.isfinite(score).all():
        raise ValueError("scores must be finite")
    order = np.argsort(-score, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((s - w)[order])])
    sorted_scores = score[order]
    # k is a boundary if k == 0, k == n, or the k-th and (k+1)-th scores differ.
    ks = np.concatenate([[0], np.nonzero(np.diff(sorted_scores) != 0)[0] + 1, [n]])
    return ks / n, (w.sum() + gain[ks]) / n


def pgr(accuracy, weak_accuracy, strong_accuracy):
    """Performance gap recovered: (accuracy - weak) / (strong - weak)."""
    gap = strong_accuracy - weak_accuracy
    if gap == 0:
        raise ValueError("the two models are equally accurate here: PGR is undefined")
    return (np.asarray(accuracy, dtype=np.float64) - weak_accuracy) / gap


def apgr(score, weak, strong):
    """Average performance gap recovered: the area under PGR(share) for share 0..1.

    PGR(c) = (acc(c) - acc_weak) / (acc_strong - acc_weak), where acc(c) routes the top c of
    questions by score to the strong model (routing_curve, ties in expectation) and acc_weak,
    acc_strong are the accuracies of always-weak (c = 0) and always-strong (c = 1) on the same
    questions. The curve is piecewise linear, so the trapezoid rule is exact. A constant score
    (random routing) gives exactly 0.5; a router that ranks every strong-only question first
    and every weak-only question last gets the most.
    """
    share, acc = routing_curve(score, weak, strong)
    p = pgr(acc, acc[0], acc[-1])
    return float(np.sum(np.diff(share) * (p[1:] + p[:-1]) / 2.0))


def operating_point(to_strong, weak, strong, strong_cost):
    """Metrics of one set of decisions (to_strong: (n,) bool).

    decision accuracy: share of questions whose decision equals the oracle label;
    strong share; accuracy reached; cost relative to always-strong, with a weak call costing 1
    and a strong call ``strong_cost``.
    """
    d = np.asarray(to_strong, dtype=bool)
    w = np.asarray(weak, dtype=bool)
    s = np.asarray(strong, dtype=bool)
    share = float(d.mean())
    return {
        "decision_accuracy": float((d == oracle_labels(w, s).astype(bool)).mean()),
        "strong_share": share,
        "accuracy": float(np.where(d, s, w).mean()),
        "cost": relative_cost(share, strong_cost),
    }


def relative_cost(strong_share, strong_cost):
    """Cost of routing ``strong_share`` of calls to strong, relative to always-strong."""
    return (strong_share * strong_cost + (1.0 - strong_share)) / strong_cost


def cheapest_share_within(score, weak, strong, max_drop):
    """Smallest strong-call share on the routing curve whose accuracy is at least
    acc_strong - max_drop (linear between the curve's points), with that accuracy; the share
    to pick a threshold from on a validation split."""
    share, acc = routing_curve(score, weak, strong)
    target = acc[-1] - max_drop
    if acc[0] >= target:
        return 0.0, float(acc[0])
    i = int(np.nonzero(acc >= target)[0][0])
    c0, c1, a0, a1 = share[i - 1], share[i], acc[i - 1], acc[i]
    return float(c0 + (c1 - c0) * (target - a0) / (a1 - a0)), float(target)


def threshold_for_share(score, share):
    """Score threshold t such that routing score >= t to strong calls about ``share`` of these
    questions (the score at that rank; +inf for share 0)."""
    score = np.sort(np.asarray(score, dtype=np.float64))[::-1]
    k = int(round(share * score.size))
    if k <= 0:
        return np.inf
    return float(score[min(k, score.size) - 1])


class PCA:
    """Centred PCA to ``k`` components.

    whiten=True divides each component by its standard deviation (all unit variance);
    whiten=False divides all of them by one number, the root of their mean variance, so the
    inputs are of order one but the leading components keep their larger spread.
    """

    def __init__(self, k, whiten=True):
        self.k, self.whiten = int(k), bool(whiten)

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        if self.k > min(X.shape):
            raise ValueError(f"cannot keep {self.k} components of a {X.shape} matrix")
        self.mean = X.mean(axis=0)
        _, sv, vt = np.linalg.svd(X - self.mean, full_matrices=False)
        var = sv ** 2 / (X.shape[0] - 1)
        self.components = vt[:self.k]
        self.variance = var[:self.k]
        self.explained = float(var[:self.k].sum() / var.sum())
        return self

    def transform(self, X):
        Z = (np.asarray(X, dtype=np.float64) - self.mean) @ self.components.T
        if self.whiten:
            Z = Z / np.sqrt(self.variance)
        else:
            Z = Z / np.sqrt(self.variance.mean())
        return Z.astype(np.float32)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logistic_regression(X, y, l2, weights=None, iters=50, tol=1e-10):
    """Weighted L2-regularised logistic regression by Newton's method.

    Minimises sum_i w_i * logloss_i / sum_i w_i + l2/2 * |beta|^2 (intercept unpenalised) and
    returns (beta (d,), intercept). Scores of new rows: X @ beta + intercept.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    A = np.hstack([X, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, float(l2))
    reg[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(A @ theta)
        g = A.T @ (w * (p - y)) + reg * theta
        Hm = (A * (w * p * (1.0 - p))[:, None]).T @ A + np.diag(reg + 1e-12)
        step = np.linalg.solve(Hm, g)
        theta -= step
        if float(step @ step) < tol:
            break
    return theta[:-1], float(theta[-1])
