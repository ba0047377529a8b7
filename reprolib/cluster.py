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

import itertools
import math

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


# --- Kingdra (Gupta et al., ICLR 2020), Sec. 4.2.1, Algorithm 1: high-precision mini-clusters ----
#
# Introduced in the Kingdra chapter (D. Gupta, R. Ramjee, N. Kwatra and M. Sivathanu,
# *Unsupervised Clustering using Pseudo-semi-supervised Learning*, ICLR 2020). The paper's own
# implementation takes 210 s at n = 70,000 (Appendix C.2); the released code is O(n^2).

def high_precision_clusters(predictions, n_clusters, t_pos=None, t_neg=None) -> list:
    """Kingdra Alg. 1 (Sec. 4.2.1): greedy high-precision mini-clusters from an ensemble.

    `predictions` is an integer array (n_models, n_samples): the cluster each model assigns to
    each sample. Returns a list of `n_clusters` sorted index arrays :math:`S_1, \\dots, S_K`
    (possibly empty), exactly Alg. 1's result for the choices below.

    Edges (Sec. 4.2.1): with :math:`n_{agree}(x, x') = |\\{m \\in M : m(x) = m(x')\\}|` and
    :math:`n_{disagree} = |M| - n_{agree}`, a *strong positive edge* joins x and x' when at least
    ``t_pos`` models put them in the same cluster (:math:`n_{agree} \\ge t_{pos}`), a *strong
    negative edge* when at least ``t_neg`` models put them in different clusters
    (:math:`n_{disagree} \\ge t_{neg}`). Only equality of labels within one model matters: label
    ids are not compared across models. Both thresholds default to ``n_models`` (the paper's
    setting: all models agree, all models disagree).

    Alg. 1, repeated ``n_clusters`` times: (line 4) pick :math:`x_{max}`, the remaining node with
    the most strong positive edges; (line 5) :math:`S_k` = :math:`x_{max}` and its strong positive
    neighbours; (lines 6-7) remove from G every node without a strong negative edge to
    :math:`x_{max}`. Where the paper is ambiguous we chose:

    * degrees (line 4) and neighbours (line 5) are counted in the *current* graph, i.e. among
      nodes not yet removed, and without self-loops;
    * ties in line 4 go to the lowest sample index;
    * the members of :math:`S_k` are removed too, so mini-clusters are disjoint. This only matters
      when ``t_pos + t_neg <= n_models``, where a node can have both a strong positive and a
      strong negative edge to :math:`x_{max}` and line 7 read literally would keep it;
    * once every node is removed, the remaining mini-clusters are empty (the paper's users
      report fewer than K non-empty clusters; we return them empty rather than fail).

    Never builds an n x n matrix: samples with identical prediction columns are equivalent nodes
    (same edges to every node, strong positive edges among themselves), so Alg. 1 runs on the
    distinct columns weighted by their counts. With ``t_pos = n_models`` a node's strong positive
    neighbours are its own group (O(n log n) in all). Below, the number of nodes within
    Hamming distance ``d = n_models - t_pos`` is counted either by grouping the columns on every
    subset of at least ``t_pos`` models with inclusion-exclusion, or (when fewer distinct columns
    make it cheaper) by comparing distinct columns block by block; both are exact.

    Raises ValueError if `predictions` is not an integer array of shape (n_models, n_samples),
    if `n_clusters` is not a positive integer, or if a threshold lies outside 1..n_models.
    """
    codes, cards, n_clusters, t_pos, t_neg = _check_hpc_args(predictions, n_clusters, t_pos, t_neg)
    n_models, n_samples = codes.shape
    if n_samples == 0:
        return [np.zeros(0, dtype=np.intp) for _ in range(n_clusters)]
    first, group_of = _group_ids(codes, cards)
    columns = codes[:, first]  # (n_models, n_groups): one column per distinct prediction column
    weight = np.bincount(group_of).astype(np.int64)
    alive = np.arange(first.size)
    chosen = []
    for _ in range(n_clusters):
        if alive.size == 0:
            chosen.append(alive)
            continue
        # Alg. 1 line 4: $x_{max} = \arg\max_x |\{(x, x') \in E_{pos}\}|$ (lowest index on ties)
        count = _positive_counts(columns[:, alive], cards, weight[alive], t_pos)
        tied = alive[count == count.max()]
        centre = tied[np.argmin(first[tied])]
        # $n_{agree}(x, x_{max})$ for every remaining group
        agree = np.count_nonzero(columns[:, alive] == columns[:, centre, None], axis=0)
        # line 5: $S_k = \{x : (x, x_{max}) \in E_{pos}\} \cup \{x_{max}\}$
        in_cluster = agree >= t_pos
        chosen.append(alive[in_cluster])
        # lines 6-7: remove x if $(x, x_{max}) \notin E_{neg}$, and the members of $S_k$
        alive = alive[(n_models - agree >= t_neg) & ~in_cluster]
    return _members(chosen, group_of, first.size)


def high_precision_clusters_direct(predictions, n_clusters, t_pos=None, t_neg=None) -> list:
    """Kingdra Alg. 1 (Sec. 4.2.1) written directly on the n x n graph: for tests and the
    benchmark's baseline only (O(n^2) time and memory; use :func:`high_precision_clusters`).

    Builds :math:`n_{agree}` for all pairs, the strong positive and negative edge matrices, and
    follows Alg. 1 line by line with the same edge definitions and choices as
    :func:`high_precision_clusters`.
    """
    codes, _, n_clusters, t_pos, t_neg = _check_hpc_args(predictions, n_clusters, t_pos, t_neg)
    n_models, n_samples = codes.shape
    agree = np.zeros((n_samples, n_samples), dtype=np.int16)
    for row in codes:
        agree += row[:, None] == row[None, :]
    positive = agree >= t_pos  # $E_{pos}$: $n_{agree} \ge t_{pos}$
    np.fill_diagonal(positive, False)
    negative = n_models - agree >= t_neg  # $E_{neg}$: $n_{disagree} \ge t_{neg}$
    remaining = np.ones(n_samples, dtype=bool)
    clusters = []
    for _ in range(n_clusters):
        nodes = np.flatnonzero(remaining)
        if nodes.size == 0:
            clusters.append(nodes)
            continue
        degree = positive[np.ix_(nodes, nodes)].sum(axis=1)
        x_max = nodes[np.argmax(degree)]  # first maximum: lowest index
        members = nodes[positive[x_max, nodes] | (nodes == x_max)]
        clusters.append(members)
        remaining &= negative[x_max]
        remaining[members] = False
    return clusters


def _check_hpc_args(predictions, n_clusters, t_pos, t_neg):
    """Validate Alg. 1's inputs; returns per-model dense label codes (n_models, n_samples) int64,
    the number of codes per model, and n_clusters, t_pos, t_neg as ints."""
    predictions = np.asarray(predictions)
    if not np.issubdtype(predictions.dtype, np.integer) or predictions.ndim != 2 \
            or predictions.shape[0] < 1:
        raise ValueError("predictions must be an integer array of shape (n_models, n_samples), "
                         f"got dtype {predictions.dtype} and shape {predictions.shape}")
    n_models = predictions.shape[0]
    if not _is_int(n_clusters) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    thresholds = []
    for name, value in (("t_pos", t_pos), ("t_neg", t_neg)):
        value = n_models if value is None else value
        if not _is_int(value) or not 1 <= value <= n_models:
            raise ValueError(f"{name} must be an integer in 1..n_models = 1..{n_models}, "
                             f"got {value!r}")
        thresholds.append(int(value))
    codes, cards = _dense_codes(predictions)
    return codes, cards, int(n_clusters), thresholds[0], thresholds[1]


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _dense_codes(predictions):
    """Each model's labels mapped to 0..L_m-1 (a shift when the labels span < n values)."""
    n_models, n_samples = predictions.shape
    codes = np.zeros((n_models, n_samples), dtype=np.int64)
    cards = [1] * n_models
    for m, row in enumerate(predictions):
        if n_samples == 0:
            continue
        low, high = int(row.min()), int(row.max())
        if high - low < max(n_samples, 1024):
            # unsigned: no wrap since row >= low; signed: shift in int64 (int8 - -128 would wrap)
            codes[m] = row - row.dtype.type(low) if row.dtype.kind == "u" else \
                row.astype(np.int64) - low
            cards[m] = high - low + 1
        else:
            values, codes[m] = np.unique(row, return_inverse=True)
            cards[m] = values.size
    return codes, cards


def _group_ids(codes, cards):
    """Groups of identical columns of `codes` (rows with `cards` codes each): the first (lowest)
    column index of each group and each column's group id. Mixed-radix int64 keys, one sort."""
    key = np.zeros(codes.shape[1], dtype=np.int64)
    span = 1
    for row, card in zip(codes, cards):
        if span * card >= 2 ** 62:  # renumber the keys densely before they could overflow
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            span = int(key.max()) + 1
        key = key * card + row
        span *= card
    _, first, group_of = np.unique(key, return_index=True, return_inverse=True)
    return first, group_of.reshape(-1)


# pairwise comparison of distinct columns is used while (groups x models) is below this factor
# times the number of model subsets the inclusion-exclusion would group on (rough cost ratio)
_PAIRWISE_COST_FACTOR = 40.0


def _positive_counts(columns, cards, weight, t_pos) -> np.ndarray:
    """For each distinct column g: :math:`\\sum_h w_h [n_{agree}(g, h) \\ge t_{pos}]` over the
    given groups, own group included (a node's degree is this minus 1)."""
    n_models, n_groups = columns.shape
    if t_pos == n_models:
        return weight.copy()
    n_subsets = sum(math.comb(n_models, s) for s in range(t_pos, n_models + 1))
    if n_groups * n_models <= _PAIRWISE_COST_FACTOR * n_subsets:
        return _positive_counts_pairwise(columns, weight, t_pos)
    return _positive_counts_subsets(columns, cards, weight, t_pos)


def _positive_counts_pairwise(columns, weight, t_pos, block_elements=2 ** 21) -> np.ndarray:
    """:func:`_positive_counts` by comparing distinct columns, a block of rows at a time (never
    more than `block_elements` pairs in memory)."""
    n_groups = columns.shape[1]
    block = max(1, block_elements // n_groups)
    counts = np.empty(n_groups, dtype=np.int64)
    weight_f = weight.astype(np.float64)
    for start in range(0, n_groups, block):
        stop = min(start + block, n_groups)
        agree = np.zeros((stop - start, n_groups), dtype=np.uint8)
        for row in columns:
            agree += row[start:stop, None] == row[None, :]
        counts[start:stop] = np.rint((agree >= t_pos) @ weight_f).astype(np.int64)
    return counts


def _positive_counts_subsets(columns, cards, weight, t_pos) -> np.ndarray:
    """:func:`_positive_counts` by inclusion-exclusion over model subsets.

    With :math:`A_T(g) = \\sum_h w_h [g, h \\text{ agree on all models in } T]`,
    :math:`\\sum_{|T| = s} A_T(g) = \\sum_h w_h \\binom{a_{gh}}{s}`, and
    :math:`[a \\ge t] = \\sum_{s=t}^{a} (-1)^{s-t} \\binom{s-1}{t-1} \\binom{a}{s}`.
    """
    n_models = columns.shape[0]
    weight_f = weight.astype(np.float64)
    total = np.zeros(columns.shape[1], dtype=np.float64)  # exact: integers far below 2^53
    for size in range(t_pos, n_models + 1):
        coefficient = (-1) ** (size - t_pos) * math.comb(size - 1, t_pos - 1)
        for subset in itertools.combinations(range(n_models), size):
            subset = list(subset)
            _, ids = _group_ids(columns[subset], [cards[m] for m in subset])
            total += coefficient * np.bincount(ids, weights=weight_f)[ids]
    return np.rint(total).astype(np.int64)


def _members(chosen, group_of, n_groups) -> list:
    """Sample indices (sorted) of the groups in each mini-cluster."""
    cluster_of_group = np.full(n_groups, -1, dtype=np.int64)
    for k, groups in enumerate(chosen):
        cluster_of_group[groups] = k
    cluster_of = cluster_of_group[group_of]
    order = np.argsort(cluster_of, kind="stable")
    bounds = np.searchsorted(cluster_of[order], np.arange(-1, len(chosen) + 1))
    return [order[bounds[k + 1]:bounds[k + 2]].astype(np.intp) for k in range(len(chosen))]


# --- SPICE (Niu et al., IEEE TIP 2022), Sec. III-C, Eq. (6)-(7): reliable pseudo-labelling -------
#
# Introduced in the SPICE chapter (C. Niu, H. Shan and G. Wang, *SPICE: Semantic Pseudo-labeling
# for Image Clustering*). The official code builds the full n x n similarity matrix (19.6 GB in
# float32 at n = 70,000); here the neighbours are found block by block.

# rows of the similarity matrix held at once: at most this many float32 entries (256 MiB)
_RELIABLE_BLOCK_ELEMENTS = 2 ** 26


def reliable_pseudo_labels(embeddings, labels, n_neighbors=100, threshold=0.99,
                           block_size=None) -> np.ndarray:
    """SPICE Sec. III-C, Eq. (6)-(7): which predicted labels are reliable.

    `embeddings` is a real array (n_samples, n_features), `labels` the n_samples predicted
    cluster labels (integers). With :math:`\\mathcal{N}_i` the ``n_neighbors`` = :math:`N_s`
    nearest neighbours of sample i by cosine similarity of the embeddings, Eq. (6) is the
    semantically consistent ratio

    .. math:: r_i = \\frac{1}{N_s} \\sum_{j \\in \\mathcal{N}_i} [\\,l_j = l_i\\,]

    and Eq. (7) keeps sample i when :math:`r_i > \\lambda_r` (``threshold``), strictly greater as
    in the paper and the official code; so with the defaults (N_s = 100, lambda_r = 0.99, the
    paper's CIFAR-10 setting) all 100 neighbours must share i's label. Returns a numpy bool
    array of length n_samples. The official code's further conditions (maximum probability
    above 0.99, truncating every cluster to the size of the smallest) are not part of Eq. (7)
    and are left to the caller.

    Choices the paper leaves open:

    * the sample itself is never its own neighbour: its own *index* is excluded, so an exact
      duplicate of i (similarity 1) still counts as a neighbour;
    * ties among equal similarities at the N_s-th place are broken by the lowest sample index
      (as a stable sort would). Similarities are computed in float32 from the L2-normalised
      embeddings, so "equal" means equal as computed;
    * a zero (or non-finite) embedding row has no direction: ValueError.

    Never builds the n x n matrix: the similarities are computed ``block_size`` rows at a time
    (default: at most 2^26 entries, 256 MiB, per block) with a matrix product. Two exact
    algorithms give the same mask (as computed in float32: see the choices above):

    * when Eq. (7) needs all N_s neighbours to share i's label (N_s - 1 <= lambda_r N_s < N_s,
      as with the defaults) and no predicted cluster dominates (the squared cluster sizes sum
      to at most a quarter of n^2), :func:`_reliable_when_all_agree` compares i's largest
      similarity to another label with its same-label similarities: no top-k, and about 55%
      of the products of the full matrix for ten equal clusters;
    * otherwise, :func:`_reliable_by_topk` finds every row's top N_s + 1 entries with
      :func:`_topk_by_chunks` (the (N_s + 1)-th value tells whether the N_s-th place is tied;
      only such rows are re-examined exactly).

    Raises ValueError if `embeddings` is not a 2-D real array or has zero/non-finite rows, if
    `labels` is not a 1-D integer array of the same length, if `n_neighbors` is not an integer
    with 1 <= n_neighbors < n_samples, if `threshold` is not in [0, 1], or if `block_size` is
    not a positive integer.
    """
    unit, labels, k, threshold = _check_reliable_args(embeddings, labels, n_neighbors, threshold)
    if block_size is not None and (not _is_int(block_size) or block_size < 1):
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    # the fewest neighbours sharing i's label that make r_i > lambda_r, computed as Eq. (7) is
    agreeing = np.flatnonzero(np.arange(k + 1) / k > threshold)
    if agreeing.size == 0:  # lambda_r = 1: r_i > 1 never holds
        return np.zeros(unit.shape[0], dtype=bool)
    share = (np.unique(labels, return_counts=True)[1] / unit.shape[0]) ** 2
    # all N_s neighbours must agree (the paper's N_s = 100, lambda_r = 0.99), and no cluster
    # dominates: that route's cost grows with the squared cluster sizes
    if agreeing[0] == k and share.sum() <= _ALL_AGREE_MAX_SQUARED_SHARE:
        return _reliable_when_all_agree(unit, labels, k, block_size)
    return _reliable_by_topk(unit, labels, k, threshold, block_size)


def _reliable_by_topk(unit, labels, k, threshold, block_size=None) -> np.ndarray:
    """Eq. (6)-(7) for any threshold: each row's k nearest neighbours by a blockwise matrix
    product and :func:`_topk_by_chunks`, then r_i counted (see :func:`reliable_pseudo_labels`;
    `unit`: L2-normalised float32 embeddings, `labels`: int64 labels)."""
    import torch

    n = unit.shape[0]
    # columns padded (with -inf similarities) so that the slices of _topk_by_chunks divide them
    width = _chunked_width(n, k + 1)
    if block_size is None:
        block_size = max(1, min(n, _RELIABLE_BLOCK_ELEMENTS // width))
    block_size = int(min(block_size, n))
    # torch's allocator aligns to 64 bytes; MKL's matrix product was up to 1.5x slower on
    # numpy-allocated operands here
    x = torch.zeros((width, unit.shape[1]), dtype=torch.float32)
    x[:n] = torch.from_numpy(unit)  # rows past n are zero; their similarities are set to -inf
    codes = torch.from_numpy(np.unique(labels, return_inverse=True)[1].reshape(-1))
    counts = np.empty(n, dtype=np.int64)
    buffer = torch.empty((block_size, width), dtype=torch.float32)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        sim = _block_similarities(x, start, stop, buffer)
        sim[:, n:] = -math.inf  # the padding columns
        rows = torch.arange(stop - start)
        sim[rows, rows + start] = -math.inf  # exclude the sample itself, by index
        # top N_s + 1 (<= n_samples, self is last at -inf): the extra one shows ties at place N_s
        values, index = _topk_by_chunks(sim, k + 1)
        own = codes[start:stop, None]
        counts[start:stop] = (codes[index[:, :k]] == own).sum(dim=1).numpy()
        for r in torch.nonzero(values[:, k] == values[:, k - 1]).reshape(-1).tolist():
            row = sim[r, :n].numpy()
            counts[start + r] = np.count_nonzero(
                codes.numpy()[_lowest_index_neighbours(row, k)] == int(own[r]))
    return counts / k > threshold  # Eq. (7), with r_i of Eq. (6)


def _reliable_when_all_agree(unit, labels, k, block_size=None) -> np.ndarray:
    """Eq. (6)-(7) when r_i > lambda_r needs all k = N_s neighbours to share i's label.

    Then, ties at m_i aside, sample i is reliable exactly when at least k samples of its own
    label (itself excluded) are strictly more similar to it than m_i, its largest similarity to
    a sample of another label: the nearest differently-labelled sample is then not among the k
    nearest, and otherwise it is. Where the k-th same-label similarity lies within float32
    rounding of m_i (exact duplicates, for example, which the lowest-index rule decides), the
    row is re-examined on its full row. This needs no top-k, and, with the samples sorted by
    label, each similarity is computed once or twice:

    1. m_i for every i, from the upper triangle of the similarity matrix only: each block of
       rows [s, e) is multiplied with the rows [s, n) (with the rows after its label, for a
       block within one label); the block gives m for its own rows (row maxima over the
       columns of other labels) and for the later ones (column maxima over its rows of other
       labels). About half the products of the full matrix: the upper triangle, plus the
       diagonal block of each block's rows.
    2. The count of same-label similarities above m_i, from the diagonal label blocks only:
       the sum of the squared cluster sizes (a tenth of the matrix for ten equal clusters,
       all of it for a single cluster).

    `unit`: L2-normalised float32 embeddings; `labels`: int64 labels; returns the bool mask in
    the original order. Every matrix product writes rows of a multiple of 16 floats (64
    bytes): with unaligned rows MKL's product ran at about 60% of its speed here."""
    import torch

    n = unit.shape[0]
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 1
    starts = np.concatenate([[0], bounds])  # each label's range [start, stop) in sorted order
    stops = np.concatenate([bounds, [n]])
    label_stop = np.repeat(stops, stops - starts)  # per sorted sample: where its label ends
    label_start = np.repeat(starts, stops - starts)
    padded = -(-n // _ALIGN) * _ALIGN
    x = torch.zeros((padded, unit.shape[1]), dtype=torch.float32)  # rows past n: zero, unused
    x[:n] = torch.from_numpy(unit[order])
    if block_size is None:
        block_size = max(1, min(n, _RELIABLE_BLOCK_ELEMENTS // padded))
    block_size = int(min(block_size, n))
    buffer = torch.empty(block_size * padded, dtype=torch.float32)

    def similarities(start, stop, first, last):
        """Rows start:stop against columns first:last (sorted order); returns the product
        and the column offset of `first` in it (its columns start at an aligned sample)."""
        aligned = first - first % _ALIGN
        width = -(-(last - aligned) // _ALIGN) * _ALIGN
        sim = buffer[:(stop - start) * width].view(stop - start, width)
        torch.mm(x[start:stop], x[aligned:aligned + width].T, out=sim)
        return sim, aligned

    nearest_other = torch.full((n,), -math.inf)  # m_i, in sorted order
    for start in range(0, n, block_size):  # step 1
        stop = min(start + block_size, n)
        # a block within one label needs only the columns after that label
        columns_from = start if label_stop[start] < stop else int(label_stop[start])
        if columns_from == n:
            continue
        sim, offset = similarities(start, stop, columns_from, n)
        run = start
        while run < stop:  # the block's rows of one label, against the other labels' columns
            end = min(int(label_stop[run]), stop)
            for first, last in ((start, int(label_start[run])), (int(label_stop[run]), n)):
                if last > first:  # (the first range is empty for a block within one label)
                    block = sim[run - start:end - start, first - offset:last - offset]
                    mine, theirs = nearest_other[run:end], nearest_other[first:last]
                    torch.maximum(mine, block.amax(dim=1), out=mine)
                    torch.maximum(theirs, block.amax(dim=0), out=theirs)
            run = end
    above = np.empty(n, dtype=np.int64)
    unsure = []
    # a float32 similarity of unit vectors is off by at most about d 2^-24, in any product: so
    # where m_i and the k-th same-label similarity (from different products) are within 4 times
    # that, any other float32 computation, brute force included, could order them either way,
    # and the row is redone on its full row, from one product (exact duplicates tie there)
    tolerance = unit.shape[1] * 2.0 ** -22
    for first, last in zip(starts.tolist(), stops.tolist()):  # step 2
        step = max(1, min(block_size, _RELIABLE_BLOCK_ELEMENTS // (last - first + 2 * _ALIGN)))
        for start in range(first, last, step):
            stop = min(start + step, last)
            sim, offset = similarities(start, stop, first, last)
            same = sim[:, first - offset:last - offset]
            rows = torch.arange(stop - start)
            same[rows, rows + start - first] = math.nan  # the sample itself: never counted
            m = nearest_other[start:stop, None]
            count = (same > m + tolerance).view(torch.uint8).sum(dim=1, dtype=torch.int32)
            above[start:stop] = count.numpy()
            if bool((count < k).any()):  # the k-th same-label similarity near m_i, or tied
                near = (same >= m - tolerance).view(torch.uint8).sum(dim=1, dtype=torch.int32)
                decide = torch.nonzero((count < k) & (near >= k)).reshape(-1)
                unsure.extend((start + decide).tolist())
    reliable = above >= k
    original = torch.from_numpy(unit)
    for chunk in range(0, len(unsure), block_size):  # full rows, the lowest-index rule for ties
        positions = unsure[chunk:chunk + block_size]
        rows = buffer[:len(positions) * n].view(len(positions), n)
        torch.mm(original[order[positions]], original.T, out=rows)
        for row, position in zip(rows.numpy(), positions):
            i = order[position]
            row[i] = -np.inf
            reliable[position] = np.all(labels[_lowest_index_neighbours(row, k)] == labels[i])
    mask = np.empty(n, dtype=bool)
    mask[order] = reliable
    return mask


# rows written by reliable_pseudo_labels' matrix products are a multiple of this many floats
_ALIGN = 16
# _reliable_when_all_agree is used while the squared cluster sizes sum to at most this share of
# n^2: at n = 70,000 it took 12 s with ten equal clusters (share 0.1), 21 s at share 0.3 (as
# _reliable_by_topk, whatever the clusters) and 30 s with a single cluster
_ALL_AGREE_MAX_SQUARED_SHARE = 0.25


def reliable_pseudo_labels_direct(embeddings, labels, n_neighbors=100,
                                  threshold=0.99) -> np.ndarray:
    """SPICE Eq. (6)-(7) by brute force on the full n x n similarity matrix: for tests and the
    benchmark's baseline only (O(n^2) memory, as the official code; use
    :func:`reliable_pseudo_labels`). Same definitions and choices: self excluded by index, ties
    to the lowest index (stable sort), strict ``r_i > threshold``."""
    unit, labels, k, threshold = _check_reliable_args(embeddings, labels, n_neighbors, threshold)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    neighbours = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    ratio = (labels[neighbours] == labels[:, None]).sum(axis=1) / k  # Eq. (6)
    return ratio > threshold  # Eq. (7)


def _block_similarities(x, start, stop, buffer):
    """Cosine similarities of rows start:stop of the unit vectors `x` with all its rows (the
    padded width), written into the first stop - start rows of `buffer` (block_size x width)."""
    import torch

    out = buffer[:stop - start]
    torch.mm(x[start:stop], x.T, out=out)
    return out


# slices a row is cut into by _topk_by_chunks (= columns per chunk); 8 was the fastest of 4, 8
# and 16 at n = 70,000
_TOPK_SLICES = 8
# _topk_by_chunks cuts a row only while each slice stays at least this many times k wide
_TOPK_MIN_SLICE_PER_K = 4


def _chunked_width(n, k, n_slices=_TOPK_SLICES) -> int:
    """The smallest width >= n that `n_slices` ** levels divides, for as many levels of
    :func:`_topk_by_chunks` as keep every slice at least 4 k wide (no level: n itself)."""
    levels = 0
    while n // n_slices ** (levels + 1) >= _TOPK_MIN_SLICE_PER_K * k:
        levels += 1
    step = n_slices ** levels
    return -(-n // step) * step


def _topk_by_chunks(values, k, n_slices=_TOPK_SLICES):
    """``torch.topk(values, k, dim=1, sorted=True)`` for a wide 2-D float tensor, faster on CPU.

    Exact in the values, and in the indices too unless the k-th value is tied (then any of the
    tied entries may be returned, as with torch.topk itself). The m columns are cut into
    ``n_slices`` contiguous slices of width w = m / n_slices, and chunk j is the group of
    columns {j, j + w, j + 2w, ...}, one from each slice. With t the k-th largest chunk
    maximum, at least k entries are >= t, so every entry of the true top k is >= t; an entry
    > t lies in a chunk whose maximum is > t, and all of those are among the k chunks with the
    largest maxima. So the top k of those k chunks' n_slices * k entries are the top k of the
    row (ties at t aside). The w chunk maxima (an elementwise maximum of the slices, one pass
    over the row) are searched the same way when they are wide enough, so most of torch.topk's
    per-element work is avoided. Used when ``n_slices`` divides m and w >= 4 k; otherwise this
    is torch.topk."""
    import torch

    b, m = values.shape
    if m % n_slices or m // n_slices < _TOPK_MIN_SLICE_PER_K * k:
        return torch.topk(values, k, dim=1, sorted=True)
    width = m // n_slices
    slices = values.view(b, n_slices, width)
    _, top = _topk_by_chunks(slices.amax(dim=1), k, n_slices)  # (b, k) chunk numbers
    candidates = slices.gather(2, top[:, None, :].expand(b, n_slices, k)).reshape(b, -1)
    best, position = torch.topk(candidates, k, dim=1, sorted=True)
    return best, (position // k) * width + top.gather(1, position % k)


def _lowest_index_neighbours(row, k) -> np.ndarray:
    """The k largest entries of `row`, ties at the k-th value going to the lowest indices."""
    kth = np.partition(row, row.size - k)[row.size - k]
    above = np.flatnonzero(row > kth)
    return np.concatenate([above, np.flatnonzero(row == kth)[:k - above.size]])


def _check_reliable_args(embeddings, labels, n_neighbors, threshold):
    """Validate Eq. (6)-(7)'s inputs; returns the L2-normalised embeddings (float32, C order),
    labels as an int64 array, n_neighbors and threshold."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.dtype.kind not in "iuf":
        raise ValueError("embeddings must be a 2-D real array (n_samples, n_features), got dtype "
                         f"{embeddings.dtype} and shape {embeddings.shape}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got dtype {labels.dtype} and "
                         f"shape {labels.shape}")
    n = embeddings.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"embeddings and labels must have the same length, got {n} embeddings "
                         f"and {labels.shape[0]} labels")
    if not _is_int(n_neighbors) or n_neighbors < 1:
        raise ValueError(f"n_neighbors must be an integer >= 1, got {n_neighbors!r}")
    if n_neighbors >= n:
        raise ValueError(f"n_neighbors must be below the number of samples (the sample itself is "
                         f"excluded), got n_neighbors = {n_neighbors} with {n} samples")
    if isinstance(threshold, (bool, np.bool_)) \
            or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    x = embeddings.astype(np.float64)
    norms = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if bad.size:
        raise ValueError(f"embedding rows must be finite and non-zero (cosine similarity is "
                         f"undefined otherwise); {bad.size} are not, first at index {bad[0]}")
    unit = np.ascontiguousarray(x / norms[:, None], dtype=np.float32)
    return unit, labels.astype(np.int64), int(n_neighbors), float(threshold)
