"""Tests for reprolib.cluster: constrained k-means (Basu et al. 2002; ClusterNet Alg. 1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from reprolib.cluster import ConstrainedKMeans, squared_distances



def partially_labelled(y, fraction, seed=0):
    """Copy of y with all but `fraction` of each class set to -1 (every class keeps >= 1)."""
    rng = np.random.default_rng(seed)
    seeds = np.full_like(y, -1)
    for k in np.unique(y):
        members = np.flatnonzero(y == k)
        n = max(1, int(round(fraction * members.size)))
        chosen = rng.choice(members, size=n, replace=False)
        seeds[chosen] = k
    return seeds


def loop_constrained_kmeans(X, seeds, centers, max_iter, tol_abs):
    """Alg. 1 written with plain Python loops over points and clusters (reference)."""
    centers = centers.copy()
    labels_old = None
    for n_iter in range(1, max_iter + 1):
        labels = np.empty(len(X), dtype=int)
        for i, x in enumerate(X):
            if seeds[i] >= 0:
                labels[i] = seeds[i]
            else:
                labels[i] = min(range(len(centers)), key=lambda k: np.sum((x - centers[k]) ** 2))
        new_centers = centers.copy()
        for k in range(len(centers)):
            members = [X[i] for i in range(len(X)) if labels[i] == k]
            if members:
                new_centers[k] = np.mean(members, axis=0)
        shift = np.sum((new_centers - centers) ** 2)
        centers = new_centers
        if (labels_old is not None and np.array_equal(labels, labels_old)) or shift <= tol_abs:
            break
        labels_old = labels
    final = np.array([seeds[i] if seeds[i] >= 0 else
                      np.argmin(((centers - x) ** 2).sum(axis=1)) for i, x in enumerate(X)])
    return final, centers, n_iter


def test_all_points_labelled_returns_the_labels():
    X, y = make_blobs(n_samples=60, centers=3, n_features=4, cluster_std=5.0, random_state=1)
    model = ConstrainedKMeans().fit(X, y)
    np.testing.assert_array_equal(model.labels_, y)
    means = np.stack([X[y == k].mean(axis=0) for k in range(3)])
    np.testing.assert_allclose(model.cluster_centers_, means)
    assert model.n_iter_ <= 2  # the partition cannot change


def test_labelled_points_never_change_cluster():
    X, y = make_blobs(n_samples=300, centers=4, n_features=3, cluster_std=4.0, random_state=2)
    seeds = partially_labelled(y, 0.1)
    seeds[np.flatnonzero(seeds >= 0)[:5]] = (seeds[np.flatnonzero(seeds >= 0)[:5]] + 1) % 4
    model = ConstrainedKMeans(n_clusters=4).fit(X, seeds)
    labelled = seeds >= 0
    np.testing.assert_array_equal(model.labels_[labelled], seeds[labelled])
    # Seeded-KMeans, by contrast, is free to move the deliberately wrong seeds
    free = ConstrainedKMeans(n_clusters=4, seeded_only=True).fit(X, seeds)
    assert np.any(free.labels_[labelled] != seeds[labelled])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_implementation(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 3))
    y = rng.integers(0, 4, size=80)
    seeds = partially_labelled(y, 0.15, seed)
    model = ConstrainedKMeans(n_clusters=4, tol=1e-4).fit(X, seeds)
    init = np.stack([X[seeds == k].mean(axis=0) for k in range(4)])
    tol_abs = 1e-4 * np.mean(np.var(X, axis=0))
    labels, centers, n_iter = loop_constrained_kmeans(X, seeds, init, 300, tol_abs)
    np.testing.assert_array_equal(model.labels_, labels)
    np.testing.assert_allclose(model.cluster_centers_, centers, rtol=1e-10, atol=1e-12)
    assert model.n_iter_ == n_iter
    inertia = sum(np.sum((X[i] - centers[labels[i]]) ** 2) for i in range(len(X)))
    assert model.inertia_ == pytest.approx(inertia)


def test_matches_sklearn_kmeans_when_constraints_do_not_bind():
    X, y = make_blobs(n_samples=500, centers=5, n_features=6, cluster_std=1.0, random_state=3)
    seeds = partially_labelled(y, 0.05)
    model = ConstrainedKMeans().fit(X, seeds)
    init = np.stack([X[seeds == k].mean(axis=0) for k in range(5)])
    reference = KMeans(n_clusters=5, init=init, n_init=1, algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_, rtol=1e-10)
    assert model.inertia_ == pytest.approx(reference.inertia_)


def test_seeded_only_matches_sklearn_lloyd_on_overlapping_data():
    X, y = make_blobs(n_samples=400, centers=4, n_features=5, cluster_std=6.0, random_state=4)
    seeds = partially_labelled(y, 0.05)
    model = ConstrainedKMeans(seeded_only=True, tol=1e-6).fit(X, seeds)
    reference = KMeans(n_clusters=4, init=model_init(X, seeds, 4), n_init=1,
                       algorithm="lloyd", tol=1e-6).fit(X)
    assert model.n_iter_ > 2  # a real run, not a trivial one
    assert model.n_iter_ == reference.n_iter_
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_, rtol=1e-8)


def model_init(X, seeds, k):
    return np.stack([X[seeds == c].mean(axis=0) for c in range(k)])


def test_init_centers_and_predict():
    X, y = make_blobs(n_samples=200, centers=3, n_features=2, random_state=5)
    seeds = partially_labelled(y, 0.1)
    init = model_init(X, seeds, 3)
    a = ConstrainedKMeans().fit(X, seeds)
    b = ConstrainedKMeans().fit(X, seeds, init_centers=init + 1e-3)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    unlabelled = seeds < 0
    np.testing.assert_array_equal(a.predict(X[unlabelled]), a.labels_[unlabelled])
    np.testing.assert_array_equal(a.fit_predict(X, seeds), a.labels_)
    assert a.predict(X.astype(np.float32)).dtype.kind == "i"


def test_extra_clusters_seeded_by_kmeanspp():
    X, y = make_blobs(n_samples=300, centers=4, n_features=2, cluster_std=0.5, random_state=6)
    seeds = partially_labelled(y, 0.1)
    seeds[seeds == 3] = -1  # class 3 has no labelled point: its centre comes from k-means++
    model = ConstrainedKMeans(n_clusters=4, random_state=0).fit(X, seeds)
    assert model.cluster_centers_.shape == (4, 2)
    # the well-separated fourth blob ends up in the unseeded cluster 3
    assert np.all(model.labels_[y == 3] == 3)
    again = ConstrainedKMeans(n_clusters=4, random_state=0).fit(X, seeds)
    np.testing.assert_array_equal(model.cluster_centers_, again.cluster_centers_)


def test_float32_input_stays_float32():
    X, y = make_blobs(n_samples=200, centers=3, n_features=4, random_state=7)
    X = X.astype(np.float32)
    model = ConstrainedKMeans().fit(X, partially_labelled(y, 0.1))
    assert model.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(model.labels_, y)


def test_empty_cluster_keeps_its_centre():
    X = np.array([[0.0], [0.1], [10.0], [10.1]])
    seeds = np.array([0, -1, -1, -1])
    init = np.array([[0.0], [10.0], [100.0]])  # nothing is ever nearest to 100
    model = ConstrainedKMeans(n_clusters=3).fit(X, seeds, init_centers=init)
    assert model.cluster_centers_[2, 0] == 100.0
    np.testing.assert_array_equal(model.labels_, [0, 0, 1, 1])


def test_squared_distances_match_direct_computation():
    rng = np.random.default_rng(8)
    X, C = rng.normal(size=(50, 7)), rng.normal(size=(4, 7))
    direct = ((X[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(squared_distances(X, C), direct, rtol=1e-10, atol=1e-12)


def test_clone_and_get_params():
    model = ConstrainedKMeans(n_clusters=7, max_iter=11, tol=0.5, seeded_only=True,
                              random_state=3)
    params = model.get_params()
    assert params == {"n_clusters": 7, "max_iter": 11, "tol": 0.5, "seeded_only": True,
                      "random_state": 3}
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    assert not hasattr(copy, "labels_")


@pytest.mark.parametrize("X, y, kwargs, message", [
    (np.zeros((4, 2)), np.full(4, -1), {}, "no labelled point"),
    (np.zeros((4, 2)), np.array([0, 1, 2, -1]), {"n_clusters": 2}, "class index 2"),
    (np.zeros((4, 2)), np.array([0, 1, -1]), {}, "one entry per row"),
    (np.zeros((4, 2)), np.array([0, 1, -2, -1]), {}, "-1 for unlabelled"),
    (np.zeros((4, 2)), np.array([0, 0.5, 1, -1]), {}, "integer class indices"),
])
def test_bad_input_raises_clear_errors(X, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConstrainedKMeans(**kwargs).fit(X, y)


def test_bad_init_centers_shape_raises():
    X, y = np.zeros((4, 2)), np.array([0, 1, -1, -1])
    with pytest.raises(ValueError, match="init_centers must have shape"):
        ConstrainedKMeans().fit(X, y, init_centers=np.zeros((3, 2)))


def test_benchmark_run_small():
    from reprolib.benchmarks import constrained_kmeans_vs_sklearn
    result = constrained_kmeans_vs_sklearn(n=3000, d=8, k=4, repeats=1)
    assert result["ours_s_per_iter"] > 0 and result["sklearn_s_per_iter"] > 0
    assert result["ratio"] == pytest.approx(
        result["ours_s_per_iter"] / result["sklearn_s_per_iter"])
    # the blobs overlap and labelled points are clamped, so the two partitions differ a little
    assert result["same_labels_fraction"] > 0.9
