"""Speed benchmarks the chapters print (ratios against a baseline measured in the same run).

:func:`constrained_kmeans_vs_sklearn`: time per iteration of ``reprolib.cluster.ConstrainedKMeans``
(ClusterNet Alg. 1, after Basu et al. 2002) against scikit-learn's Lloyd k-means from the same
centres. Synthetic data, stated plainly: this is a speed benchmark only, so the points come from
``sklearn.datasets.make_blobs`` (70,000 x 32 float32, 10 overlapping Gaussian blobs, fixed seed),
the size of MNIST with a ClusterNet-sized 32-d latent space. No result of the book rests on it.

Setting: K = 10, 2% of the points labelled (stratified per blob), initial centres = labelled class
means (Alg. 1 step 2). Both start from the same centres and run in the same process with
``tol=0`` and the same ``max_iter``; the blobs overlap enough that neither converges early. Each is
timed `repeats` times (whole ``fit``); the median time divided by ``n_iter_`` is the time per
iteration. Used by ``benchmarks/bench_constrained_kmeans.py`` and Chapter 1.
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from .cluster import ConstrainedKMeans

TARGET_RATIO = 3.0
SEED = 0


def make_data(n: int, d: int, k: int, labelled_fraction: float = 0.02, seed: int = SEED):
    """Synthetic float32 blobs, and y with labelled_fraction of each blob labelled, others -1."""
    X, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=20.0, random_state=seed)
    rng = np.random.default_rng(seed)
    seeds = np.full(n, -1)
    for c in range(k):
        members = np.flatnonzero(y == c)
        chosen = rng.choice(members, size=max(1, round(labelled_fraction * members.size)),
                            replace=False)
        seeds[chosen] = c
    return X.astype(np.float32), seeds


def _median_time(fit, repeats: int) -> tuple[float, object]:
    times, model = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), model


def constrained_kmeans_vs_sklearn(n: int = 70000, d: int = 32, k: int = 10, repeats: int = 5, max_iter: int = 30) -> dict:
    """Time both implementations; returns per-iteration seconds, the ratio and iteration counts."""
    X, seeds = make_data(n, d, k)
    init = np.stack([X[seeds == c].mean(axis=0) for c in range(k)])
    ours = ConstrainedKMeans(n_clusters=k, max_iter=max_iter, tol=0)
    theirs = KMeans(n_clusters=k, init=init, n_init=1, algorithm="lloyd", max_iter=max_iter,
                    tol=0)
    ours_s, ours_fit = _median_time(lambda: ours.fit(X, seeds, init_centers=init), repeats)
    theirs_s, theirs_fit = _median_time(lambda: theirs.fit(X), repeats)
    ours_per_iter = ours_s / ours_fit.n_iter_
    theirs_per_iter = theirs_s / theirs_fit.n_iter_
    return {
        "n": n, "d": d, "k": k, "repeats": repeats,
        "ours_s_per_iter": ours_per_iter, "sklearn_s_per_iter": theirs_per_iter,
        "ratio": ours_per_iter / theirs_per_iter,
        "ours_n_iter": int(ours_fit.n_iter_), "sklearn_n_iter": int(theirs_fit.n_iter_),
        "same_labels_fraction": float(np.mean(ours_fit.labels_ == theirs_fit.labels_)),
    }
