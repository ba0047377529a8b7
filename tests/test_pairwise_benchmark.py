"""Tests for the Hsu-Kira pairwise-KL benchmark (reprolib.benchmarks, issue 8): the enumerated
baseline (a) computes exactly ``pairwise_kl``; the speed and memory functions return well-formed
results. No timing assertions (timed tests flake)."""
from __future__ import annotations

import math

import pytest
import torch

from reprolib.benchmarks import (
    memory_growth, pairwise_kl_enumerated, pairwise_kl_peak_memory, pairwise_kl_speed,
)
from reprolib.losses import pairwise_kl


def random_inputs(n=9, k=4, seed=0):
    """Float64 distributions and a non-symmetric {-1, 0, +1} matrix with a non-zero diagonal."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n, k, generator=g, dtype=torch.float64), dim=1)
    constraints = torch.randint(-1, 2, (n, n), generator=g)
    return probs.requires_grad_(), constraints


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_enumerated_equals_matrix_form_value_and_gradient(seed):
    probs, constraints = random_inputs(seed=seed)
    assert (constraints == 0).any()  # unknown pairs are present and must be ignored
    matrix = pairwise_kl(probs, constraints, margin=1.5)
    (matrix_grad,) = torch.autograd.grad(matrix, probs)
    enumerated = pairwise_kl_enumerated(probs, constraints, margin=1.5)
    (enumerated_grad,) = torch.autograd.grad(enumerated, probs)
    assert enumerated.item() == pytest.approx(matrix.item(), rel=1e-12)
    torch.testing.assert_close(enumerated_grad, matrix_grad, rtol=1e-10, atol=1e-14)
    assert matrix_grad.abs().sum() > 0


def test_enumerated_with_no_known_pair_is_zero():
    probs, _ = random_inputs()
    assert pairwise_kl_enumerated(probs, torch.zeros(9, 9, dtype=torch.int8)).item() == 0.0


def _finite_positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_speed_smoke():
    result = pairwise_kl_speed(n=60, k=5, repeats=1, siamese_pairs=20)
    for key in ("loss_matrix_s", "loss_enumerated_s", "loss_ratio", "step_matrix_s",
                "siamese_measured_s", "siamese_s_per_pair", "siamese_extrapolated_s",
                "step_ratio", "similar_fraction"):
        assert _finite_positive(result[key]), key
    assert result["values_agree"] is True
    assert result["siamese_all_pairs"] == 60 * 59 // 2
    assert result["siamese_extrapolated_s"] == pytest.approx(
        result["siamese_s_per_pair"] * result["siamese_all_pairs"])


def test_peak_memory_smoke():
    rows = pairwise_kl_peak_memory(n=200, ks=(5,))
    assert [(row["method"], row["n"], row["k"]) for row in rows] == [
        ("matrix", 200, 5), ("enumerated", 200, 5)]
    for row in rows:
        for key in ("extra_peak_mb", "n2_float32_mb", "n2k_float32_mb"):
            assert _finite_positive(row[key]), key
    assert set(memory_growth(rows)) == {"matrix", "enumerated"}
