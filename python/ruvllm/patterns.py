"""Pattern extraction: k-means++ seeding + Lloyd iterations over embeddings.

metric="cosine" is spherical k-means: rows and centroids are unit-normalised and the distance
is 1 - cos (k-means++ weights by squared chord length 2 - 2 cos, which is proportional).
metric="euclidean" clusters the rows as given (normalise first for unit embeddings).

Degenerate input is not an error: with fewer distinct points than k, seeding stops once
every point coincides with a centre, and clusters that end up empty are dropped, so the
result may have fewer than k centroids (``result.k``), each with count >= 1.
"""

import math
from dataclasses import dataclass

import numpy as np

from ruvllm.errors import invalid

METRICS = ("cosine", "euclidean")


@dataclass
class KMeansResult:
    centroids: np.ndarray    # (k, d) float32; unit rows for cosine
    counts: np.ndarray       # (k,) int64, all >= 1
    assignments: np.ndarray  # (n,) int64 index into centroids
    inertia: float           # sum of squared distances (euclidean) or of 1 - cos (cosine)
    n_iter: int
    converged: bool
    metric: str

    @property
    def k(self):
        return int(self.centroids.shape[0])

    def to_dict(self):
        return {"metric": self.metric, "centroids": self.centroids.tolist(),
                "counts": self.counts.tolist(), "inertia": self.inertia,
                "n_iter": self.n_iter, "converged": self.converged}


def _prepare(X, metric):
    if metric not in METRICS:
        raise invalid(f"metric must be one of {list(METRICS)}, got {metric!r}")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise invalid(f"embeddings must be a non-empty (n, d) array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise invalid("embeddings contain NaN or infinity")
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1)
        if (norms == 0).any():
            raise invalid("cosine k-means got a zero vector",
                          hint="drop zero embeddings or use metric => 'euclidean'")
        X = X / norms[:, None]
    return np.ascontiguousarray(X)


def _sq_dists_exact_near(X, x_sq, C):
    """(n, m) squared distances, fast via the expansion, with near-zero entries recomputed
    by direct differences: the expansion's rounding leaves ~1e-7 * |x|^2 where an exact
    duplicate must give exactly 0, or seeding could not tell it has run out of points."""
    c_sq = np.einsum("ij,ij->i", C, C)
    d = _sq_dists(X, C, x_sq).astype(np.float64)
    rows, cols = np.nonzero(d <= 1e-4 * (x_sq[:, None] + c_sq[None, :]))
    if rows.size:
        diff = X[rows].astype(np.float64) - C[cols]
        d[rows, cols] = np.einsum("ij,ij->i", diff, diff)
    return d


def _sq_dists(X, C, x_sq=None):
    """(n, k) squared euclidean distances via the expansion (fast; tiny negatives clipped)."""
    if x_sq is None:
        x_sq = np.einsum("ij,ij->i", X, X)
    d = x_sq[:, None] - 2.0 * (X @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
    return np.maximum(d, 0.0, out=d)


def kmeans_plusplus(X, k, *, metric="cosine", seed=0, n_local_trials=None):
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with greedy local trials as in
    scikit-learn (2 + ln k candidates per centre, keep the one that lowers the potential most).

    Returns (k_eff, d) float32 centres, k_eff <= k (fewer when the points run out of distinct
    values). Deterministic for a given seed.
    """
    X = _prepare(X, metric)
    k = _check_k(k)
    return _seed(X, k, np.random.default_rng(seed), n_local_trials)


def _seed(X, k, rng, n_local_trials=None):
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(k)) if k > 1 else 1
    x_sq = np.einsum("ij,ij->i", X, X)
    first = int(rng.integers(n))
    centres = [first]
    closest = _sq_dists_exact_near(X, x_sq, X[first:first + 1])[:, 0]
    for _ in range(1, min(k, n)):
        potential = float(closest.sum())
        if potential <= 0.0:
            break  # every point sits on a chosen centre: no distinct point left
        cum = np.cumsum(closest)
        r = rng.random(n_local_trials) * potential
        cand = np.minimum(np.searchsorted(cum, r, side="right"), n - 1)
        # A float rounding draw can land on a zero-weight point; never pick one twice.
        cand = np.unique(cand[closest[cand] > 0.0])
        if cand.size == 0:
            cand = np.array([int(np.argmax(closest))])
        trial = np.minimum(closest[:, None], _sq_dists_exact_near(X, x_sq, X[cand]))
        best = int(np.argmin(trial.sum(axis=0)))
        centres.append(int(cand[best]))
        closest = trial[:, best]
    return X[np.array(centres)].copy()


def assign(X, centroids, *, metric="cosine"):
    """Nearest centroid for each row -> (assignments (n,) int64, distances (n,) float32).

    Distances are 1 - cos for cosine, euclidean distance (not squared) for euclidean.
    """
    X = _prepare(X, metric)
    C = np.asarray(centroids, dtype=np.float32)
    if C.ndim != 2 or C.shape[0] == 0 or C.shape[1] != X.shape[1]:
        raise invalid(f"centroids must be a non-empty (k, {X.shape[1]}) array, got shape {C.shape}")
    if metric == "cosine":
        C = C / np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-12)
        sim = X @ C.T
        lab = sim.argmax(axis=1)
        return lab.astype(np.int64), (1.0 - sim[np.arange(X.shape[0]), lab]).astype(np.float32)
    d = _sq_dists(X, C)
    lab = d.argmin(axis=1)
    return lab.astype(np.int64), np.sqrt(d[np.arange(X.shape[0]), lab]).astype(np.float32)


def _check_k(k):
    try:
        kk = int(k)
    except (TypeError, ValueError):
        raise invalid("k must be an integer") from None
    if kk != k or kk < 1:
        raise invalid(f"k must be an integer >= 1, got {k!r}")
    return kk


def _cluster_sums(X, labels, k, chunk=8192):
    # One-hot (k, chunk) @ X chunk: a BLAS matmul per chunk, float64 accumulation across
    # chunks. np.add.at and a float64 reduceat are both an order of magnitude slower.
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    onehot = np.zeros((k, min(chunk, X.shape[0])), dtype=np.float32)
    for s in range(0, X.shape[0], chunk):
        lab = labels[s:s + chunk]
        m = onehot[:, :lab.size]
        m.fill(0.0)
        m[lab, np.arange(lab.size)] = 1.0
        sums += m @ X[s:s + chunk]
    return sums


def _lloyd(X, C, cosine, max_iter, tol):
    n = X.shape[0]
    x_sq = np.einsum("ij,ij->i", X, X)
    labels = None
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        d = _sq_dists(X, C, x_sq)
        new_labels = d.argmin(axis=1)
        mind = d[np.arange(n), new_labels]
        k = C.shape[0]
        counts = np.bincount(new_labels, minlength=k)
        nz = counts > 0
        sums = _cluster_sums(X, new_labels, k)
        newC = C.copy()
        newC[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
        # An empty cluster takes the point worst served by its centre, if that point is not
        # already sitting on one; otherwise it stays empty and is dropped at the end.
        taken = set()
        empty = np.nonzero(~nz)[0]
        order = np.argsort(-mind, kind="stable") if empty.size else ()
        for j in empty:
            for i in order:
                if mind[i] <= 0.0:
                    break
                if int(i) not in taken:
                    taken.add(int(i))
                    newC[j] = X[i]
                    mind[i] = 0.0
                    break
        if cosine:
            norms = np.linalg.norm(newC, axis=1)
            ok = norms > 1e-12  # antipodal members can cancel; keep the old direction then
            newC[ok] /= norms[ok, None]
            newC[~ok] = C[~ok]
        shift = float(np.max(np.einsum("ij,ij->i", newC - C, newC - C)))
        same = labels is not None and np.array_equal(labels, new_labels)
        C, labels = newC, new_labels
        if same or shift <= tol:
            converged = True
            break
    return C, it, converged


def kmeans(X, k, *, metric="cosine", seed=0, max_iter=100, tol=1e-8, n_init=1):
    """k-means++ seeding + Lloyd iterations. Returns a KMeansResult.

    ``n_init`` > 1 runs that many seedings (from one seeded stream) and keeps the lowest
    inertia. ``tol`` is on the largest squared centroid shift; iteration also stops when no
    assignment changes.
    """
    X = _prepare(X, metric)
    k = _check_k(k)
    max_iter = int(max_iter)
    n_init = int(n_init)
    if max_iter < 1 or n_init < 1:
        raise invalid("max_iter and n_init must be >= 1")
    cosine = metric == "cosine"
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        C = _seed(X, k, rng)
        C, n_iter, converged = _lloyd(X, C, cosine, max_iter, float(tol))
        res = _finish(X, C, cosine, n_iter, converged, metric)
        if best is None or res.inertia < best.inertia:
            best = res
    return best


def _finish(X, C, cosine, n_iter, converged, metric):
    d = _sq_dists(X, C)
    lab = d.argmin(axis=1)
    counts = np.bincount(lab, minlength=C.shape[0])
    keep = counts > 0
    remap = np.cumsum(keep) - 1
    lab = remap[lab]
    C = C[keep]
    mind = d[np.arange(X.shape[0]), d.argmin(axis=1)]
    # For unit vectors |x - c|^2 = 2 - 2 cos, so 1 - cos is half the squared distance.
    inertia = float(mind.sum(dtype=np.float64)) * (0.5 if cosine else 1.0)
    return KMeansResult(centroids=np.ascontiguousarray(C, dtype=np.float32),
                        counts=counts[keep].astype(np.int64), assignments=lab.astype(np.int64),
                        inertia=inertia, n_iter=n_iter, converged=converged, metric=metric)
