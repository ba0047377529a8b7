"""Tests for reprolib.cluster.high_precision_clusters: Kingdra (Gupta et al., ICLR 2020) Alg. 1."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from reprolib import cluster
from reprolib.benchmarks import noisy_ensemble_predictions
from reprolib.cluster import high_precision_clusters, high_precision_clusters_direct


def assert_same_clusters(got, expected):
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert np.issubdtype(a.dtype, np.integer), f"S_{k + 1} is not an integer array"
        np.testing.assert_array_equal(a, b, err_msg=f"mini-cluster S_{k + 1} differs")


# --- hand-worked from Alg. 1 ---------------------------------------------------------------------
# Columns (one per sample, models 0-2): s0 = s1 = s2 = (0,0,1), s3 = s4 = (1,1,0), s5 = (2,2,2),
# s6 = (2,0,2).
HAND = np.array([[0, 0, 0, 1, 1, 2, 2],
                 [0, 0, 0, 1, 1, 2, 0],
                 [1, 1, 1, 0, 0, 2, 2]])


def test_hand_worked_example_paper_thresholds():
    # t_pos = t_neg = 3: E_pos joins identical columns. Degrees 2,2,2,1,1,0,0 -> x_max = s0 (tie,
    # lowest index), S_1 = {0,1,2}; s6 agrees with s0 in model 1, so it has no strong negative edge
    # to s0 and is removed; s3, s4, s5 disagree with s0 in all 3 models and stay. Then x_max = s3,
    # S_2 = {3,4}; s5 disagrees with s3 everywhere and stays: S_3 = {5}. Nothing is left: S_4 = {}.
    got = high_precision_clusters(HAND, 4)
    assert_same_clusters(got, [[0, 1, 2], [3, 4], [5], []])
    assert_same_clusters(high_precision_clusters_direct(HAND, 4), [[0, 1, 2], [3, 4], [5], []])


def test_hand_worked_example_lower_thresholds():
    # t_pos = t_neg = 2: s5 and s6 agree in models 0 and 2 (strong positive edge). x_max = s0,
    # S_1 = {0,1,2}; s6 disagrees with s0 in 2 models (strong negative edge) and now stays.
    # Degrees among {3,4,5,6} are all 1 -> x_max = s3 (lowest index), S_2 = {3,4}; s5, s6 disagree
    # with s3 in all models and stay; x_max = s5, S_3 = {5, 6}.
    got = high_precision_clusters(HAND, 3, t_pos=2, t_neg=2)
    assert_same_clusters(got, [[0, 1, 2], [3, 4], [5, 6]])


def test_degrees_are_counted_in_the_current_graph():
    # t_pos = 2, t_neg = 3. Initially s5 and s6 have degree 1 (each other); after step 1 removes
    # s6, s5 has degree 0 and s3 (degree 1) is chosen before it.
    got = high_precision_clusters(HAND, 3, t_pos=2, t_neg=3)
    assert_same_clusters(got, [[0, 1, 2], [3, 4], [5]])


def test_chosen_nodes_are_removed_even_with_a_strong_negative_edge():
    # 2 models, t_pos = t_neg = 1: s0 = (0,0) and s1 = (0,1) agree once and disagree once, so they
    # have both edges. Line 7 alone would keep s1 after S_1 = {0, 1}; we remove S_1 (disjoint).
    predictions = np.array([[0, 0], [0, 1]])
    got = high_precision_clusters(predictions, 2, t_pos=1, t_neg=1)
    assert_same_clusters(got, [[0, 1], []])


# --- equality with the direct n x n implementation -----------------------------------------------

def random_case(rng):
    n_models = int(rng.integers(1, 6))
    n = int(rng.integers(0, 41))
    n_labels = int(rng.integers(1, 4))  # few labels: many identical columns and ties
    predictions = rng.integers(0, n_labels, size=(n_models, n))
    t_pos = int(rng.integers(1, n_models + 1))
    t_neg = int(rng.integers(1, n_models + 1))
    return predictions, int(rng.integers(1, 7)), t_pos, t_neg


@pytest.mark.parametrize("factor", [None, 0.0, np.inf], ids=["auto", "subsets", "pairwise"])
def test_equals_direct_on_random_small_inputs(monkeypatch, factor):
    if factor is not None:  # force one of the two exact ways of counting positive neighbours
        monkeypatch.setattr(cluster, "_PAIRWISE_COST_FACTOR", factor)
    rng = np.random.default_rng(12345)
    seen = {"below": 0, "empty": 0, "single": 0}
    for _ in range(600):
        predictions, n_clusters, t_pos, t_neg = random_case(rng)
        got = high_precision_clusters(predictions, n_clusters, t_pos, t_neg)
        assert_same_clusters(got, high_precision_clusters_direct(predictions, n_clusters, t_pos,
                                                                 t_neg))
        seen["below"] += t_pos < predictions.shape[0] or t_neg < predictions.shape[0]
        seen["empty"] += any(s.size == 0 for s in got)
        seen["single"] += predictions.shape[0] == 1
    assert min(seen.values()) > 20, seen  # the cases the issue names were all exercised


@pytest.mark.parametrize("t_pos", [10, 9, 8])
def test_equals_direct_on_realistic_ensemble(t_pos):
    predictions = noisy_ensemble_predictions(1500, 10, 10, flip=0.1, seed=t_pos)
    got = high_precision_clusters(predictions, 10, t_pos=t_pos)
    assert_same_clusters(got, high_precision_clusters_direct(predictions, 10, t_pos=t_pos))
    assert all(s.size > 0 for s in got)
    # disjoint, and with t_neg = n_models no two mini-clusters share a label in any model
    members = np.concatenate(got)
    assert np.unique(members).size == members.size
    if t_pos == 10:
        for m in range(10):
            labels = [set(predictions[m, s]) for s in got]
            assert all(len(a) == 1 for a in labels)
            assert len(set().union(*labels)) == 10


def test_single_model():
    predictions = np.array([[2, 0, 2, 1, 0, 2]])
    # one model: E_pos = same label, E_neg = different label; largest label group first
    got = high_precision_clusters(predictions, 4)
    assert_same_clusters(got, [[0, 2, 5], [1, 4], [3], []])
    assert_same_clusters(high_precision_clusters_direct(predictions, 4), got)


def test_label_ids_only_matter_within_a_model():
    predictions = noisy_ensemble_predictions(300, 5, 4, flip=0.2, seed=7)
    # relabel each model by an arbitrary injective map, including extreme and negative values
    relabelled = np.stack([np.array([-128, 127, 0, -1], dtype=np.int8)[row] for row in predictions])
    wide = np.stack([np.array([0, 2 ** 40, -(2 ** 50), 17])[row] for row in predictions])
    for t_pos in (5, 4, 2):
        expected = high_precision_clusters(predictions, 5, t_pos=t_pos, t_neg=4)
        assert_same_clusters(high_precision_clusters(relabelled, 5, t_pos=t_pos, t_neg=4),
                             expected)
        assert_same_clusters(high_precision_clusters(wide, 5, t_pos=t_pos, t_neg=4), expected)
        assert_same_clusters(high_precision_clusters(predictions.astype(np.uint16), 5, t_pos,
                                                     4), expected)


def test_counting_methods_agree():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n_models = int(rng.integers(2, 7))
        columns = rng.integers(0, 3, size=(n_models, int(rng.integers(1, 60))))
        weight = rng.integers(1, 5, size=columns.shape[1])
        cards = [3] * n_models
        for t_pos in range(1, n_models):
            agree = (columns[:, :, None] == columns[:, None, :]).sum(axis=0)
            expected = (agree >= t_pos) @ weight
            np.testing.assert_array_equal(
                cluster._positive_counts_pairwise(columns, weight, t_pos, block_elements=7),
                expected)
            np.testing.assert_array_equal(
                cluster._positive_counts_subsets(columns, cards, weight, t_pos), expected)


def test_no_samples_gives_empty_clusters():
    got = high_precision_clusters(np.zeros((3, 0), dtype=int), 2)
    assert len(got) == 2 and all(s.size == 0 for s in got)


# --- input checks --------------------------------------------------------------------------------

@pytest.mark.parametrize("predictions, match", [
    (np.zeros((3, 5)), "integer array"),
    (np.zeros(5, dtype=int), "shape \\(n_models, n_samples\\)"),
    (np.zeros((2, 3, 4), dtype=int), "shape \\(n_models, n_samples\\)"),
    (np.zeros((0, 4), dtype=int), "shape \\(n_models, n_samples\\)"),
    (np.zeros((3, 5), dtype=bool), "integer array"),
])
def test_bad_predictions_raise(predictions, match):
    for function in (high_precision_clusters, high_precision_clusters_direct):
        with pytest.raises(ValueError, match=match):
            function(predictions, 2)


@pytest.mark.parametrize("name", ["t_pos", "t_neg"])
@pytest.mark.parametrize("value", [0, 4, -1, 2.0])
def test_thresholds_outside_one_to_n_models_raise(name, value):
    predictions = np.zeros((3, 5), dtype=int)
    with pytest.raises(ValueError, match=f"{name} must be an integer in 1..n_models = 1..3"):
        high_precision_clusters(predictions, 2, **{name: value})


def test_bad_n_clusters_raises():
    with pytest.raises(ValueError, match="n_clusters must be a positive integer"):
        high_precision_clusters(np.zeros((3, 5), dtype=int), 0)


# --- memory: never an n x n matrix ---------------------------------------------------------------

@pytest.mark.parametrize("t_pos", [10, 9])
def test_no_n_by_n_allocation_at_mnist_size(t_pos):
    n = 70_000
    predictions = noisy_ensemble_predictions(n, 10, 10, flip=0.1, seed=0)
    tracemalloc.start()
    try:
        got = high_precision_clusters(predictions, 10, t_pos=t_pos)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # n x n bytes would be 4.6 GiB; the grouped algorithm needs about 10 MiB
    assert peak < n * n / 100, f"peak {peak / 2 ** 20:.0f} MiB"
    assert len(got) == 10 and all(s.size > 100 for s in got)
