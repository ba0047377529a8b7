"""reprolib.metrics against hand computations and scikit-learn."""
import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from reprolib import metrics


def test_acc_is_one_for_a_permuted_labelling():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    permuted = np.array([2, 0, 1])[y]
    assert metrics.cluster_acc(y, permuted) == 1.0


def test_acc_hand_example():
    # clusters: A={0,0,1}, B={1,1,0}: best map A->0, B->1 gives 4 of 6 right
    y_true = [0, 0, 1, 1, 1, 0]
    y_pred = [5, 5, 5, 7, 7, 7]
    assert metrics.cluster_acc(y_true, y_pred) == pytest.approx(4 / 6)


def test_acc_equals_brute_force_over_permutations():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 60)
    y_pred = rng.integers(0, 4, 60)
    best = max(np.mean(np.array(p)[y_pred] == y_true) for p in itertools.permutations(range(4)))
    assert metrics.cluster_acc(y_true, y_pred) == pytest.approx(best)


def test_acc_with_more_clusters_than_classes_counts_unmatched_as_wrong():
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 2, 1, 1, 3]  # clusters 2 and 3 cannot be matched one-to-one
    assert metrics.cluster_acc(y_true, y_pred) == pytest.approx(4 / 6)
    assert metrics.purity(y_true, y_pred) == 1.0


def test_acc_with_fewer_clusters_than_classes():
    y_true = [0, 1, 2, 2]
    y_pred = [0, 0, 1, 1]
    assert metrics.cluster_acc(y_true, y_pred) == pytest.approx(3 / 4)


def test_acc_with_a_mapping_fitted_elsewhere():
    mapping = metrics.hungarian_mapping([0, 0, 1, 1], [1, 1, 0, 0])
    assert mapping == {1: 0, 0: 1}
    assert metrics.cluster_acc([1, 0, 0], [0, 1, 2], mapping=mapping) == pytest.approx(2 / 3)


def test_nmi_normalisations_by_hand():
    y_true = [0, 0, 0, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 1, 1, 1, 1, 2, 2]
    h_true, h_pred = metrics.entropy(y_true), metrics.entropy(y_pred)
    info = metrics.mutual_information(y_true, y_pred)
    # entropy by hand: H(3/8, 5/8)
    assert h_true == pytest.approx(-(3 / 8) * math.log(3 / 8) - (5 / 8) * math.log(5 / 8))
    assert metrics.nmi(y_true, y_pred, "max") == pytest.approx(info / max(h_true, h_pred))
    assert metrics.nmi(y_true, y_pred, "geometric") == pytest.approx(info / math.sqrt(h_true * h_pred))
    assert metrics.nmi(y_true, y_pred, "arithmetic") == pytest.approx(info / ((h_true + h_pred) / 2))
    # max >= arithmetic mean >= geometric mean of the entropies, so the NMIs order the other way
    assert (metrics.nmi(y_true, y_pred, "max") <= metrics.nmi(y_true, y_pred, "arithmetic")
            <= metrics.nmi(y_true, y_pred, "geometric"))


def test_nmi_matches_sklearn_and_rejects_unknown_average():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 7, 200)
    for average in ("max", "geometric", "arithmetic"):
        expected = normalized_mutual_info_score(y_true, y_pred, average_method=average)
        assert metrics.nmi(y_true, y_pred, average) == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown NMI average"):
        metrics.nmi(y_true, y_pred, "harmonic")


def test_ari_and_purity():
    y_true = [0, 0, 1, 1]
    y_pred = [0, 0, 0, 1]
    assert metrics.ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred))
    assert metrics.purity(y_true, y_pred) == pytest.approx(3 / 4)
    assert metrics.ari([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0


def test_evaluate_returns_every_metric():
    scores = metrics.evaluate([0, 0, 1, 1], [1, 1, 0, 0])
    assert set(scores) == {"acc", "nmi_max", "nmi_geometric", "nmi_arithmetic", "ari", "purity"}
    assert all(value == pytest.approx(1.0) for value in scores.values())


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        metrics.cluster_acc([0, 1], [0, 1, 1])
    with pytest.raises(ValueError):
        metrics.evaluate([], [])
