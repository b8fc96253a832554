import json

import numpy as np
import pytest

from ruvllm.errors import RuvllmError
from ruvllm.patterns import assign, kmeans, kmeans_plusplus


def blobs(k=5, per=60, d=32, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    X = np.concatenate([c + spread * rng.standard_normal((per, d)) / np.sqrt(d) for c in centres])
    truth = np.repeat(np.arange(k), per)
    perm = rng.permutation(len(X))
    return X[perm].astype(np.float32), truth[perm], centres


def _contingency(found, truth, k):
    return np.array([[np.sum((found == i) & (truth == j)) for j in range(k)]
                     for i in range(found.max() + 1)])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_recovers_well_separated_clusters(metric):
    X, truth, centres = blobs()
    res = kmeans(X, 5, metric=metric, seed=0)
    assert res.k == 5 and res.converged
    table = _contingency(res.assignments, truth, 5)
    # Each found cluster is exactly one true cluster (a permutation matrix times 60).
    assert sorted(table.max(axis=1).tolist()) == [60] * 5
    assert (np.count_nonzero(table, axis=1) == 1).all()
    assert sorted(res.counts.tolist()) == [60] * 5
    # Centroids sit on the true centres.
    for i in range(5):
        j = int(table[i].argmax())
        assert np.linalg.norm(res.centroids[i] - centres[j]) < 0.05
    if metric == "cosine":
        np.testing.assert_allclose(np.linalg.norm(res.centroids, axis=1), 1.0, atol=1e-5)
    lab, dist = assign(X, res.centroids, metric=metric)
    np.testing.assert_array_equal(lab, res.assignments)
    assert dist.dtype == np.float32 and (dist >= 0).all()


def test_lloyd_by_hand():
    # 1-D points 0, 1, 10, 11 with k = 2: centroids 0.5 and 10.5, inertia 4 * 0.5^2 = 1.
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    res = kmeans(X, 2, metric="euclidean", seed=0)
    assert sorted(res.centroids[:, 0].tolist()) == [0.5, 10.5]
    assert res.inertia == pytest.approx(1.0)
    assert res.assignments[0] == res.assignments[1] != res.assignments[2] == res.assignments[3]
    assert res.counts.tolist() == [2, 2]


def test_cosine_inertia_is_one_minus_cos():
    # Unit vectors at 0 and 90 degrees in one cluster: centroid at 45 degrees,
    # 1 - cos(45) each = 2 * (1 - 0.7071068) = 0.5857864.
    res = kmeans([[1.0, 0.0], [0.0, 1.0]], 1, metric="cosine")
    np.testing.assert_allclose(res.centroids[0], [0.7071068, 0.7071068], atol=1e-6)
    assert res.inertia == pytest.approx(0.5857864, abs=1e-6)
    # Scale does not matter for cosine.
    res2 = kmeans([[5.0, 0.0], [0.0, 0.1]], 1, metric="cosine")
    np.testing.assert_allclose(res2.centroids, res.centroids, atol=1e-6)


def test_k_larger_than_n():
    X = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    res = kmeans(X, 10, seed=3)
    assert res.k == 3
    assert res.counts.tolist() == [1, 1, 1]
    assert sorted(res.assignments.tolist()) == [0, 1, 2]
    assert res.inertia == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_duplicate_points(metric):
    a, b = [1.0, 2.0, 3.0], [-3.0, 1.0, 0.5]
    X = np.array([a] * 6 + [b] * 4)
    res = kmeans(X, 4, metric=metric, seed=0)
    assert res.k == 2
    assert sorted(res.counts.tolist()) == [4, 6]
    assert len(set(res.assignments[:6].tolist())) == 1 and len(set(res.assignments[6:].tolist())) == 1
    assert res.inertia == pytest.approx(0.0, abs=1e-5)
    # All identical: one cluster.
    res = kmeans(np.array([a] * 5), 3, metric=metric)
    assert res.k == 1 and res.counts.tolist() == [5]
    # Far from the origin, distinct but close points must not be merged as duplicates.
    Y = np.array([[1000.0, 1000.0], [1000.0, 1000.5], [1000.0, 1001.0]])
    assert kmeans(Y, 3, metric="euclidean").k == 3


def test_many_clusters_with_duplicates_never_returns_empty_ones():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((15, 8))
    X = base[rng.integers(0, 15, 60)]  # 60 points, at most 15 distinct
    res = kmeans(X, 40, metric="euclidean", seed=2)
    assert res.k <= 15
    assert (res.counts >= 1).all() and res.counts.sum() == 60
    assert res.assignments.max() == res.k - 1
    assert res.inertia == pytest.approx(0.0, abs=1e-4)


def test_deterministic_with_seed():
    X, _, _ = blobs(k=8, per=30, spread=0.8, seed=4)
    a = kmeans(X, 6, seed=11)
    b = kmeans(X, 6, seed=11)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.assignments, b.assignments)
    seeds = [tuple(kmeans_plusplus(X, 6, seed=s)[0]) for s in range(5)]
    assert len(set(seeds)) > 1  # the seed actually drives the init


def test_plusplus_seeding_spreads_over_clusters():
    X, truth, _ = blobs(k=4, per=50, d=16, spread=0.02, seed=7)
    for seed in range(10):
        C = kmeans_plusplus(X, 4, seed=seed)
        lab, _ = assign(C, kmeans(X, 4, seed=0).centroids)
        assert len(set(lab.tolist())) == 4, seed  # one seed per cluster


def test_n_init_keeps_best():
    X, _, _ = blobs(k=6, per=20, spread=1.5, seed=9)
    single = [kmeans(X, 6, seed=s).inertia for s in range(3)]
    best = kmeans(X, 6, seed=0, n_init=3)
    assert best.inertia <= single[0] + 1e-9  # its first run is the seed-0 run


def test_result_to_dict_is_json_ready():
    X, _, _ = blobs(k=2, per=5)
    d = json.loads(json.dumps(kmeans(X, 2).to_dict()))
    assert len(d["centroids"]) == 2 and sum(d["counts"]) == 10


@pytest.mark.parametrize("call", [
    lambda: kmeans(np.zeros((0, 3)), 2),
    lambda: kmeans([[1.0, 0.0], [0.0, 0.0]], 1, metric="cosine"),
    lambda: kmeans([[np.nan, 1.0]], 1),
    lambda: kmeans([[1.0, 0.0]], 0),
    lambda: kmeans([[1.0, 0.0]], 1.5),
    lambda: kmeans([[1.0, 0.0]], 1, metric="manhattan"),
    lambda: assign([[1.0, 0.0]], np.zeros((1, 3))),
])
def test_bad_input_is_22023(call):
    with pytest.raises(RuvllmError) as e:
        call()
    assert e.value.sqlstate == "22023"


def test_empty_clusters_are_dropped_and_reindexed():
    from ruvllm.patterns import _finish

    X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0]], np.float32)
    C = np.array([[0.0, 0.5], [99.0, 99.0], [10.0, 10.0]], np.float32)  # middle one gets nobody
    res = _finish(X, C, False, 1, True, "euclidean")
    assert res.k == 2 and res.counts.tolist() == [2, 1]
    assert res.assignments.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(res.centroids, C[[0, 2]])
