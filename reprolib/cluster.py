"""Constrained k-means: Basu et al. (2002) constrained k-means; ClusterNet Alg. 1.

Introduced in the ClusterNet chapter (Shukla, Cheema and Anand, *Semi-Supervised Clustering with
Neural Networks*, Sec. 3.1, Algorithm 1), which builds on S. Basu, A. Banerjee and R. Mooney,
*Semi-supervised clustering by seeding*, ICML 2002.

Given labelled points :math:`\\mathcal{X}^l_k` of each class k and unlabelled points
:math:`\\mathcal{X}^u`, constrained k-means

1. initialises :math:`\\mu_k = \\frac{1}{|\\mathcal{X}^l_k|}\\sum_{x \\in \\mathcal{X}^l_k} x`
   (Alg. 1 step 2; ClusterNet Eq. (9) does the same in the latent space);
2. assigns every unlabelled point to its nearest centre,
   :math:`k = \\arg\\min_k \\|x^u_i - \\mu_k\\|^2`, while a labelled point stays in its class;
3. recomputes the centres as cluster means, and repeats until convergence.

With ``seeded_only=True`` the labels are used for the initialisation only and every point is
reassigned, which is Basu et al.'s *Seeded*-KMeans (plain Lloyd from seeded centres).

Choices that the paper leaves open (the chapter lists them under "Differences from the paper"):

* convergence is tested as in scikit-learn's Lloyd: stop when the labels did not change, or when
  the total centre shift :math:`\\sum_k \\|\\mu_k^{t+1} - \\mu_k^t\\|^2` is at most
  ``tol`` times the mean per-feature variance of X, or after ``max_iter`` iterations; a final
  assignment step then makes ``labels_`` agree with ``cluster_centers_``;
* an empty cluster keeps its previous centre (scikit-learn moves it to a far point instead);
* classes with no labelled point (``n_clusters`` larger than the number of labelled classes)
  get their initial centres by k-means++ D^2 sampling over the unlabelled points, continued from
  the seeded centres (so a new centre is drawn away from the labelled class means too).
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

UNLABELLED = -1


def squared_distances(X, centers, x_sq_norms=None) -> np.ndarray:
    """All squared Euclidean distances :math:`\\|x_i - \\mu_k\\|^2` (N x K), one matrix multiply.

    Uses :math:`\\|x\\|^2 - 2 x^\\top \\mu + \\|\\mu\\|^2`, clipped at 0 against round-off.
    """
    if x_sq_norms is None:
        x_sq_norms = np.einsum("ij,ij->i", X, X)
    # $\|x_i - \mu_k\|^2 = \|x_i\|^2 - 2 x_i^\top \mu_k + \|\mu_k\|^2$
    d2 = _center_scores(_with_ones(X), centers).T
    d2 += x_sq_norms[:, None]
    return np.maximum(d2, 0, out=d2)


def _with_ones(X) -> np.ndarray:
    """[X, 1] (N x (d+1)): one matrix product with [-2 mu_k, ||mu_k||^2] then gives all
    squared distances up to the per-point constant ||x_i||^2."""
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])


def _center_scores(X_ones, centers) -> np.ndarray:
    """K x N matrix :math:`-2 \\mu_k^\\top x_i + \\|\\mu_k\\|^2`: the squared distance less
    :math:`\\|x_i\\|^2`, which does not change the nearest centre."""
    norms = np.einsum("ij,ij->i", centers, centers)
    weights = np.hstack([-2 * centers, norms[:, None]]).astype(X_ones.dtype, copy=False)
    return weights @ X_ones.T


def _nearest_center(scores) -> np.ndarray:
    """Index of the smallest entry of each column of K x N `scores` (first one on ties).

    Same result as ``np.argmin(scores, axis=0)``, but built from reductions along rows, which
    NumPy vectorises across the N columns (argmin over a short axis is several times slower).
    """
    n_clusters = scores.shape[0]
    best = scores.min(axis=0)
    # weight K-1-k on row k: the largest weight among the minima marks the first minimum
    weights = np.arange(n_clusters - 1, -1, -1, dtype=np.min_scalar_type(n_clusters))
    first = ((scores == best) * weights[:, None]).max(axis=0)
    return (n_clusters - 1) - first.astype(np.intp)


def _assign(X_ones, centers, labelled, labelled_classes) -> np.ndarray:
    """Alg. 1 "assign data to cluster" on [X, 1]; `labelled` indexes the points that keep
    their class `labelled_classes` (empty for Seeded-KMeans and for `predict`)."""
    # $a_i = \arg\min_k \|x_i - \mu_k\|^2$ (ClusterNet Eq. (10))
    labels = _nearest_center(_center_scores(X_ones, centers))
    # $x \in \mathcal{X}^l_k \Rightarrow x \in \mathcal{C}_k$ (ClusterNet Eq. (11))
    labels[labelled] = labelled_classes
    return labels


def assign_clusters(X, centers, seed_labels=None, seeded_only=False) -> np.ndarray:
    """Alg. 1 "assign data to cluster": nearest centre; labelled points keep their class.

    `seed_labels` holds a class index for labelled points and -1 for unlabelled ones; with
    `seeded_only` (Seeded-KMeans) labelled points are reassigned like any other point.
    """
    labelled = _fixed_points(seed_labels, seeded_only)
    return _assign(_with_ones(X), centers, labelled, _classes_of(seed_labels, labelled))


def _fixed_points(seed_labels, seeded_only) -> np.ndarray:
    """Indices of the points whose cluster is fixed by their label (none for Seeded-KMeans)."""
    if seed_labels is None or seeded_only:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.asarray(seed_labels) != UNLABELLED)


def _classes_of(seed_labels, labelled) -> np.ndarray:
    """The fixed classes of the points `labelled` (as returned by `_fixed_points`)."""
    return np.zeros(0, np.intp) if labelled.size == 0 else np.asarray(seed_labels)[labelled]


def _update(X_ones, labels, centers) -> np.ndarray:
    """Alg. 1 "update centers" on [X, 1]: a sparse one-hot K x N matrix times [X, 1] gives the
    cluster sums in one pass (multiplying the contiguous [X, 1] is faster than a view of X;
    the sizes come from an exact bincount). Empty clusters keep their previous centre."""
    n_clusters, n = centers.shape[0], X_ones.shape[0]
    one_hot = sparse.csc_array((np.ones(n, dtype=X_ones.dtype), labels, np.arange(n + 1)),
                               shape=(n_clusters, n))
    sums = one_hot @ X_ones
    counts = np.bincount(labels, minlength=n_clusters)
    filled = counts > 0
    new_centers = centers.copy()
    # $\mu_k = \frac{1}{|\mathcal{C}_k|} \sum_{x \in \mathcal{C}_k} x$
    new_centers[filled] = sums[filled, :-1] / counts[filled, None].astype(X_ones.dtype)
    return new_centers


def update_centers(X, labels, centers) -> np.ndarray:
    """Alg. 1 "update centers": cluster means; an empty cluster keeps its previous centre."""
    return _update(_with_ones(X), np.asarray(labels), centers)


def seeded_centers(X, seed_labels, n_clusters, random_state=None) -> np.ndarray:
    """Alg. 1 step 2: :math:`\\mu_k` = mean of the labelled points of class k.

    Classes without a labelled point are initialised by k-means++ D^2 sampling over the
    unlabelled points, continued from the seeded centres.
    """
    labelled = seed_labels != UNLABELLED
    counts = np.bincount(seed_labels[labelled], minlength=n_clusters)
    centers = np.zeros((n_clusters, X.shape[1]), dtype=X.dtype)
    centers = update_centers(X[labelled], seed_labels[labelled], centers)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        unlabelled = X[~labelled]
        if unlabelled.shape[0] < missing.size:
            raise ValueError(f"{missing.size} classes have no labelled point and only "
                             f"{unlabelled.shape[0]} unlabelled points can seed them")
        rng = check_random_state(random_state)
        centers[missing] = _kmeanspp_continue(unlabelled, centers[counts > 0], missing.size, rng)
    return centers


def _kmeanspp_continue(X, chosen, n_new, rng) -> np.ndarray:
    """Draw `n_new` centres from X by k-means++ D^2 sampling, given already `chosen` centres."""
    new = []
    if chosen.shape[0]:
        closest = squared_distances(X, chosen).min(axis=1)
    else:
        closest = None
    for _ in range(n_new):
        if closest is None or closest.sum() <= 0:
            index = rng.randint(X.shape[0])
        else:
            index = rng.choice(X.shape[0], p=closest / closest.sum())
        new.append(X[index])
        d2 = squared_distances(X, X[index:index + 1]).ravel()
        closest = d2 if closest is None else np.minimum(closest, d2)
    return np.array(new, dtype=X.dtype)


class ConstrainedKMeans(ClusterMixin, BaseEstimator):
    """Basu et al. (2002) constrained k-means; ClusterNet Alg. 1.

    Parameters
    ----------
    n_clusters : int or None
        K. Defaults to the number of distinct class indices among the labelled points.
    max_iter : int
        Maximum number of assign/update iterations.
    tol : float
        Relative tolerance on the total squared centre shift (scaled by the mean feature
        variance of X, as in scikit-learn's KMeans); 0 stops only on unchanged labels.
    seeded_only : bool
        False: Constrained-KMeans (labelled points never change cluster). True: Basu et al.'s
        Seeded-KMeans (labels only initialise the centres).
    random_state : int, RandomState or None
        Only used for k-means++ seeding of classes that have no labelled point.

    Attributes
    ----------
    labels_ : (N,) int array; labelled points keep their label unless `seeded_only`.
    cluster_centers_ : (K, d) array of the centres :math:`\\mu_k`.
    n_iter_ : number of iterations run.
    inertia_ : :math:`\\sum_i \\|x_i - \\mu_{a_i}\\|^2` for the final labels.
    """

    def __init__(self, n_clusters=None, max_iter=300, tol=1e-4, seeded_only=False,
                 random_state=None):
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.tol = tol
        self.seeded_only = seeded_only
        self.random_state = random_state

    def fit(self, X, y, init_centers=None):
        """Cluster X; `y` holds class indices 0..K-1 for labelled points and -1 elsewhere.

        `init_centers` (K x d), if given, replaces the seeded initial centres (Alg. 1 step 2),
        for instance so that a benchmark can start two implementations from the same centres.
        """
        X, seed_labels, n_clusters = self._validate(X, y)
        if init_centers is None:
            centers = seeded_centers(X, seed_labels, n_clusters, self.random_state)
        else:
            centers = self._check_init(init_centers, n_clusters, X)
        tol = _relative_tolerance(X, self.tol)
        labels, centers, n_iter = self._lloyd(X, seed_labels, centers, tol)
        self.cluster_centers_ = centers
        self.labels_ = labels
        self.n_iter_ = n_iter
        self.inertia_ = float(np.sum((X - centers[labels]) ** 2))
        return self

    def _lloyd(self, X, seed_labels, centers, tol):
        """Repeat Alg. 1 step 3 (assign, update) until convergence; final assignment step."""
        X_ones = _with_ones(X)
        labelled = _fixed_points(seed_labels, self.seeded_only)
        labelled_classes = _classes_of(seed_labels, labelled)
        labels_old = np.full(X.shape[0], -2)
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            labels = _assign(X_ones, centers, labelled, labelled_classes)
            new_centers = _update(X_ones, labels, centers)
            # $\sum_k \|\mu_k^{t+1} - \mu_k^t\|^2$
            center_shift = float(np.sum((new_centers - centers) ** 2))
            centers = new_centers
            if np.array_equal(labels, labels_old) or center_shift <= tol:
                break
            labels_old = labels
        labels = _assign(X_ones, centers, labelled, labelled_classes)
        return labels, centers, n_iter

    def fit_predict(self, X, y, init_centers=None):
        """Fit and return `labels_` (labelled points keep their label unless `seeded_only`)."""
        return self.fit(X, y, init_centers=init_centers).labels_

    def predict(self, X) -> np.ndarray:
        """Nearest learned centre for each row of X (no constraints: new points are unlabelled)."""
        check_is_fitted(self, "cluster_centers_")
        X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != self.cluster_centers_.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted with "
                             f"{self.cluster_centers_.shape[1]}")
        return assign_clusters(X, self.cluster_centers_.astype(X.dtype, copy=False))

    def _validate(self, X, y):
        """Check X (N x d float) and y (N class indices or -1); resolve K."""
        X = check_array(X, dtype=[np.float64, np.float32])
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with one entry per row of X: X has {X.shape[0]} "
                             f"rows, y has shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.equal(np.mod(y, 1), 0)):
                raise ValueError("y must hold integer class indices (-1 for unlabelled points)")
        y = y.astype(np.int64)
        if np.any(y < UNLABELLED):
            raise ValueError("y must hold class indices >= 0, or -1 for unlabelled points")
        labelled = y != UNLABELLED
        if not labelled.any():
            raise ValueError("no labelled point: constrained k-means needs at least one point "
                             "with a class index >= 0 in y")
        n_clusters = self.n_clusters
        if n_clusters is None:
            n_clusters = np.unique(y[labelled]).size
        if int(n_clusters) < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        if y.max() >= n_clusters:
            raise ValueError(f"class index {y.max()} in y is >= n_clusters = {n_clusters}; "
                             "class indices must lie in 0..n_clusters-1 (pass n_clusters)")
        return X, y, int(n_clusters)

    @staticmethod
    def _check_init(init_centers, n_clusters, X) -> np.ndarray:
        centers = np.array(init_centers, dtype=X.dtype, copy=True)
        if centers.shape != (n_clusters, X.shape[1]):
            raise ValueError(f"init_centers must have shape {(n_clusters, X.shape[1])}, "
                             f"got {centers.shape}")
        return centers


def _relative_tolerance(X, tol) -> float:
    """scikit-learn's convention: `tol` times the mean per-feature variance of X."""
    if tol == 0:
        return 0.0
    return float(np.mean(np.var(X, axis=0)) * tol)
