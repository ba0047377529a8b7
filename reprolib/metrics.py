"""Clustering metrics shared by every chapter (Chapter 0 derives them).

* :func:`cluster_acc`: accuracy under the best one-to-one map of clusters to classes (Hungarian
  method, scipy's ``linear_sum_assignment``); works when there are more or fewer clusters than
  classes (unmatched clusters count as wrong).
* :func:`nmi`: normalised mutual information with the normalisation as a parameter: ``"max"``
  as in ClusterNet Eq. (18), ``"geometric"`` as in SPICE, ``"arithmetic"`` as scikit-learn's default.
* :func:`ari`, :func:`purity` and :func:`evaluate`, which returns all of them.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

NMI_AVERAGES = ("max", "geometric", "arithmetic", "min")


def _as_labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("cannot score an empty clustering")
    return y_true, y_pred


def hungarian_mapping(y_true, y_pred) -> dict[int, int]:
    """The cluster -> class map that maximises the number of matches (one-to-one).

    Clusters left unmatched (when there are more clusters than classes) are absent from the map.
    Fit it on one split and reuse it on another for held-out accuracy.
    """
    y_true, y_pred = _as_labels(y_true, y_pred)
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    counts = contingency_matrix(y_pred, y_true)  # clusters x classes
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {int(clusters[r]): int(classes[c]) for r, c in zip(rows, cols)}


def cluster_acc(y_true, y_pred, mapping: dict[int, int] | None = None) -> float:
    """Unsupervised clustering accuracy: max over one-to-one maps m of mean(y_true == m(y_pred)).

    With `mapping` given (for example fitted on training data), that map is used instead of the
    best one for these labels; clusters missing from it count as wrong.
    """
    y_true, y_pred = _as_labels(y_true, y_pred)
    mapping = hungarian_mapping(y_true, y_pred) if mapping is None else mapping
    mapped = np.array([mapping.get(int(c), -(10**9)) for c in y_pred])
    return float(np.mean(mapped == y_true))


def entropy(labels) -> float:
    """Shannon entropy H(c) in nats of a labelling's empirical distribution."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(y_true, y_pred) -> float:
    """I(c; c') in nats from the contingency table."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    joint = contingency_matrix(y_true, y_pred).astype(float)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())


def nmi(y_true, y_pred, average: str = "arithmetic") -> float:
    """NMI(c, c') = I(c; c') / mean(H(c), H(c')) with the mean named by `average`.

    ``"max"`` is ClusterNet's Eq. (18), ``"geometric"`` is SPICE's, ``"arithmetic"`` is
    scikit-learn's default since 0.22 (``"min"`` is accepted too). Computed by scikit-learn.
    """
    if average not in NMI_AVERAGES:
        raise ValueError(f"unknown NMI average {average!r}; choose one of {', '.join(NMI_AVERAGES)}")
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float(normalized_mutual_info_score(y_true, y_pred, average_method=average))


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index (Hubert and Arabie), by scikit-learn."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float(adjusted_rand_score(y_true, y_pred))


def purity(y_true, y_pred) -> float:
    """Purity: each cluster votes for its majority class (many clusters may share one class)."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    counts = contingency_matrix(y_pred, y_true)
    return float(counts.max(axis=1).sum() / counts.sum())


def evaluate(y_true, y_pred) -> dict[str, float]:
    """All metrics of the book for one clustering: acc, the three NMIs, ARI and purity."""
    return {
        "acc": cluster_acc(y_true, y_pred),
        "nmi_max": nmi(y_true, y_pred, "max"),
        "nmi_geometric": nmi(y_true, y_pred, "geometric"),
        "nmi_arithmetic": nmi(y_true, y_pred, "arithmetic"),
        "ari": ari(y_true, y_pred),
        "purity": purity(y_true, y_pred),
    }
