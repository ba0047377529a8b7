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

import math
import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from .cluster import ConstrainedKMeans, high_precision_clusters, high_precision_clusters_direct

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


def median_time(fit, repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` calls of `fit()`, and the last call's result."""
    times, model = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), model


def noisy_ensemble_predictions(n: int, n_models: int, k: int, flip: float, seed: int = SEED) -> np.ndarray:
    """Synthetic ensemble for Kingdra's Alg. 1 (benchmark and tests only): (n_models, n) int64,
    each model a shared true labelling with `flip` of its labels redrawn uniformly and its label
    ids permuted (models do not share ids)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, size=n)
    predictions = np.empty((n_models, n), dtype=np.int64)
    for m in range(n_models):
        labels = truth.copy()
        redraw = rng.random(n) < flip
        labels[redraw] = rng.integers(0, k, size=int(redraw.sum()))
        predictions[m] = rng.permutation(k)[labels]
    return predictions


def quadratic_extrapolation(seconds: float, n_measured: int, n_target: int) -> float:
    """O(n^2): time at `n_target` from a time at `n_measured`."""
    return seconds * (n_target / n_measured) ** 2


def same_clusters(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def high_precision_clusters_speed(predictions: np.ndarray, n_clusters: int, t_pos: int, small: list[int],
                                  repeats: int) -> dict:
    """Kingdra Alg. 1 (Gupta et al., ICLR 2020, Sec. 4.2.1; Appendix C.2 times it):
    ``high_precision_clusters`` at the full n against ``high_precision_clusters_direct`` on the
    first `small` samples, extrapolated as O(n^2), and whether both give the same clusters there.
    Used by ``benchmarks/bench_high_precision_clusters.py`` and the Kingdra chapter."""
    n = predictions.shape[1]
    fast_s, clusters = median_time(lambda: high_precision_clusters(predictions, n_clusters, t_pos=t_pos),
                                   repeats)
    direct, agree = [], True
    for n_small in small:
        part = predictions[:, :n_small]
        seconds, reference = median_time(
            lambda: high_precision_clusters_direct(part, n_clusters, t_pos=t_pos), repeats)
        agree &= same_clusters(high_precision_clusters(part, n_clusters, t_pos=t_pos), reference)
        direct.append((n_small, seconds))
    n_last, s_last = direct[-1]
    extrapolated = quadratic_extrapolation(s_last, n_last, n)
    exponent = (math.log(direct[-1][1] / direct[0][1]) / math.log(direct[-1][0] / direct[0][0])
                if len(direct) > 1 else float("nan"))
    return {"n": n, "t_pos": t_pos, "fast_s": fast_s, "direct": direct, "agree": agree,
            "direct_extrapolated_s": extrapolated, "ratio": extrapolated / fast_s,
            "exponent": exponent, "sizes": [s.size for s in clusters]}


def constrained_kmeans_vs_sklearn(n: int = 70000, d: int = 32, k: int = 10, repeats: int = 5, max_iter: int = 30) -> dict:
    """Time both implementations; returns per-iteration seconds, the ratio and iteration counts."""
    X, seeds = make_data(n, d, k)
    init = np.stack([X[seeds == c].mean(axis=0) for c in range(k)])
    ours = ConstrainedKMeans(n_clusters=k, max_iter=max_iter, tol=0)
    theirs = KMeans(n_clusters=k, init=init, n_init=1, algorithm="lloyd", max_iter=max_iter,
                    tol=0)
    ours_s, ours_fit = median_time(lambda: ours.fit(X, seeds, init_centers=init), repeats)
    theirs_s, theirs_fit = median_time(lambda: theirs.fit(X), repeats)
    ours_per_iter = ours_s / ours_fit.n_iter_
    theirs_per_iter = theirs_s / theirs_fit.n_iter_
    return {
        "n": n, "d": d, "k": k, "repeats": repeats,
        "ours_s_per_iter": ours_per_iter, "sklearn_s_per_iter": theirs_per_iter,
        "ratio": ours_per_iter / theirs_per_iter,
        "ours_n_iter": int(ours_fit.n_iter_), "sklearn_n_iter": int(theirs_fit.n_iter_),
        "same_labels_fraction": float(np.mean(ours_fit.labels_ == theirs_fit.labels_)),
    }


# --- Hsu and Kira (2015), Sec. 2.2: pairwise KL in matrix form against enumerated pairs ----------
#
# Speed and memory of ``reprolib.losses.pairwise_kl`` (the N x N matrix form, Hsu-Kira Eq. (1)-(3))
# against (a) the successor code's enumeration of all N^2 ordered pairs as rows of N^2 x K tensors
# (:func:`pairwise_kl_enumerated`) and (b) a Siamese network fed one pair at a time (batched pairs),
# Hsu-Kira Fig. 2c. Synthetic inputs, stated plainly: random cluster distributions, random normal
# "images" and random labels; speed and memory do not depend on the values. Used by
# ``benchmarks/bench_pairwise_kl.py`` and the Hsu-Kira chapter.

import gc  # noqa: E402
from functools import partial  # noqa: E402
import multiprocessing  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from .losses import (  # noqa: E402
    _constraint_masks, _masked_mean, constraints_from_labels, pairwise_kl, sample_constraints,
)
from .networks import LeNetBN  # noqa: E402

PAIRWISE_TARGET_RATIO = 10.0  # loss + backward: matrix form at least 10x faster than (a)
PAIRWISE_MEMORY_GROWTH_MAX = 2.0  # O(N^2): matrix form's extra peak grows < 2x over the K range
PAIRWISE_AGREEMENT_RTOL = 1e-5  # matrix form and (a) compute the same loss and gradient
PAIRWISE_CLASSES = 10  # random labels over 10 classes: ~10% similar pairs, Hsu-Kira's 1:9


def _pair_rows_loss(reference: torch.Tensor, predict: torch.Tensor, similar: torch.Tensor,
                    margin: float, eps: float) -> torch.Tensor:
    """Hsu-Kira Eq. (1)-(2) row by row: :math:`loss(r_m \\| q_m)` for rows m of two M x K tensors.

    :math:`KL(r_m \\| q_m) = \\sum_k r_{mk} (\\log r_{mk} - \\log q_{mk})` with the reference
    :math:`r_m` detached and eps inside the logs (as in the successor's ``KLDiv``); the row's cost is
    the KL where ``similar`` holds, the hinge :math:`\\max(0, m - KL)` elsewhere.
    """
    reference = reference.detach()
    kl = (reference * (torch.log(reference + eps) - torch.log(predict + eps))).sum(dim=1)
    return torch.where(similar, kl, torch.clamp(margin - kl, min=0.0))


def pairwise_kl_enumerated(probs: torch.Tensor, constraints, margin: float = 2.0,
                           eps: float = 1e-7) -> torch.Tensor:
    """Baseline (a): Hsu-Kira Eq. (1)-(3) over explicitly enumerated ordered pairs, N^2 x K memory.

    Written the way the authors' PyTorch successor (L2C's ``PairEnum`` + ``KCL``) does it: the
    batch is repeated so that row r = i N + j of two N^2 x K tensors holds p_i (the detached
    reference) and p_j, the KL is summed over K per row, and dissimilar rows take the hinge
    max(0, margin - KL). Unlike the successor, unknown (0) pairs and the diagonal are masked out
    and the mean is over known pairs only: the successor's hinge does not ignore unknown pairs
    (they cost KL + max(0, m - KL)), a defect deliberately not copied, so that this computes
    exactly the value and gradient of :func:`reprolib.losses.pairwise_kl`. It exists only as the
    speed and memory baseline of the matrix form (Hsu-Kira Sec. 2.2, issue 8).
    """
    n = probs.shape[0]
    similar, dissimilar = _constraint_masks(constraints, n, probs.device)
    # row i N + j: the ordered pair (i, j), reference p_i, prediction p_j
    reference, predict = probs.repeat_interleave(n, dim=0), probs.repeat(n, 1)
    rows = _pair_rows_loss(reference, predict, similar.reshape(-1), margin, eps)
    return _masked_mean(rows, (similar | dissimilar).reshape(-1))


_PAIRWISE_LOSSES = {"matrix": pairwise_kl, "enumerated": pairwise_kl_enumerated}


def _pairwise_inputs(n: int, k: int, seed: int):
    """N x K random cluster distributions (a leaf), the +1/-1 constraints and the random labels.

    The labels are uniform over 10 classes, so about 10% of the pairs are similar (the paper's
    1:9); ``constraints_from_labels`` makes the matrix symmetric with a zero diagonal.
    """
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n, k, generator=g), dim=1).requires_grad_()
    labels = np.random.default_rng(seed).integers(0, PAIRWISE_CLASSES, n)
    return probs, constraints_from_labels(labels), labels


def _loss_backward(loss_fn, probs: torch.Tensor, constraints) -> torch.Tensor:
    """One forward and backward pass of a pairwise loss; leaves the gradient in ``probs.grad``."""
    probs.grad = None
    loss = loss_fn(probs, constraints)
    loss.backward()
    return loss.detach()


def _interleaved_medians(steps: dict, repeats: int) -> dict:
    """Median wall seconds of each step over `repeats` rounds, after one untimed warm-up each.

    The steps alternate within every round (A, B, A, B, ...), so that a slow period of a shared
    machine falls on both rather than on whichever happened to run then.
    """
    times = {name: [] for name in steps}
    for step in steps.values():
        step()
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(seconds)) for name, seconds in times.items()}


def _relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference|."""
    return float((ours - reference).abs().max() / reference.abs().max())


def _matrix_vs_enumerated_agreement(probs, constraints) -> tuple[float, float]:
    """Relative differences of the loss values and of the gradients of the two forms."""
    matrix = _loss_backward(pairwise_kl, probs, constraints)
    matrix_grad = probs.grad.clone()
    enumerated = _loss_backward(pairwise_kl_enumerated, probs, constraints)
    return (_relative_difference(enumerated, matrix),
            _relative_difference(probs.grad, matrix_grad))


def _matrix_step(net: LeNetBN, images: torch.Tensor, constraints) -> None:
    """Hsu-Kira Fig. 2b: each image fed forward once, softmax, the N x N matrix loss, backward."""
    net.zero_grad(set_to_none=True)
    pairwise_kl(torch.softmax(net(images), dim=1), constraints).backward()


def _siamese_step(net: LeNetBN, images: torch.Tensor, pairs, pair_batch: int,
                  margin: float = 2.0, eps: float = 1e-7) -> None:
    """Hsu-Kira Fig. 2c: a Siamese network, both images of every pair fed forward, batched pairs.

    Each batch of `pair_batch` unordered pairs (p, q) goes through the shared network as one
    forward of 2 x pair_batch images; the cost is Eq. (3), loss(p || q) + loss(q || p), averaged
    over the batch, then backward (gradients accumulate over the batches).
    """
    net.zero_grad(set_to_none=True)
    for start in range(0, len(pairs), pair_batch):
        batch = pairs.subset(slice(start, start + pair_batch))
        index = torch.from_numpy(np.concatenate([batch.first, batch.second]))
        p, q = torch.softmax(net(images[index]), dim=1).chunk(2)
        similar = torch.from_numpy(batch.relation == 1).repeat(2)
        # $loss(p \| q) + loss(q \| p)$, Eq. (3)
        _pair_rows_loss(torch.cat([p, q]), torch.cat([q, p]), similar, margin, eps).mean().backward()


def pairwise_kl_speed(n: int = 1000, k: int = 10, repeats: int = 5, seed: int = 0,
                      siamese_pairs: int = 2000) -> dict:
    """Median seconds of forward + backward: the matrix form against (a) and (b) (Hsu-Kira Sec. 2.2).

    * Loss alone, over all N(N-1) ordered pairs of a batch of `n` with K = `k`:
      ``pairwise_kl`` (matrix form) against :func:`pairwise_kl_enumerated` (a), on the same
      random distributions and the same constraints (random labels over 10 classes, ~10%
      similar); their loss values and gradients are compared (``values_agree``: both within
      ``PAIRWISE_AGREEMENT_RTOL`` relative).
    * Whole step with ``LeNetBN`` (training mode, K outputs) on `n` random normal 1 x 28 x 28
      inputs (synthetic, stated plainly: this is a speed benchmark only, no result rests on it):
      forward of the n images + softmax + matrix loss + backward, against (b) a Siamese network
      that feeds both images of each unordered pair forward (batches of n / 2 pairs, so every
      forward sees n images like the matrix step), Eq. (3) in both directions, backward. (b) is
      timed on `siamese_pairs` pairs drawn uniformly (``sample_constraints``) and extrapolated
      linearly to all n(n-1)/2 unordered pairs. No optimiser step in either.

    Each timing is the median of `repeats` runs after one warm-up run, all in this process; the
    two sides of each comparison alternate run by run.
    """
    probs, constraints, labels = _pairwise_inputs(n, k, seed)
    value_diff, grad_diff = _matrix_vs_enumerated_agreement(probs, constraints)
    loss = _interleaved_medians(
        {name: partial(_loss_backward, loss_fn, probs, constraints)
         for name, loss_fn in _PAIRWISE_LOSSES.items()}, repeats)

    torch.manual_seed(seed)
    net, images = LeNetBN(k).train(), torch.randn(n, 1, 28, 28)
    pairs = sample_constraints(labels, siamese_pairs, seed=seed)
    step = _interleaved_medians(
        {"matrix": partial(_matrix_step, net, images, constraints),
         "siamese": partial(_siamese_step, net, images, pairs, max(1, n // 2))}, repeats)
    all_pairs = n * (n - 1) // 2
    siamese_extrapolated = step["siamese"] / siamese_pairs * all_pairs
    return {
        "n": n, "k": k, "repeats": repeats,
        "similar_fraction": float((constraints == 1).sum()) / (n * (n - 1)),
        "loss_matrix_s": loss["matrix"], "loss_enumerated_s": loss["enumerated"],
        "loss_ratio": loss["enumerated"] / loss["matrix"],
        "value_rel_diff": value_diff, "grad_rel_diff": grad_diff,
        "values_agree": max(value_diff, grad_diff) <= PAIRWISE_AGREEMENT_RTOL,
        "step_matrix_s": step["matrix"], "siamese_pairs": siamese_pairs,
        "siamese_measured_s": step["siamese"], "siamese_s_per_pair": step["siamese"] / siamese_pairs,
        "siamese_all_pairs": all_pairs, "siamese_extrapolated_s": siamese_extrapolated,
        "step_ratio": siamese_extrapolated / step["matrix"],
    }


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss_mb() -> float:
    """Resets this process's peak RSS to the current RSS (Linux clear_refs 5); returns it, MiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def _loss_extra_peak_mb(method: str, n: int, k: int, seed: int = 0) -> float:
    """Run in a fresh process: peak RSS of one loss + backward minus the RSS before it, MiB.

    The baseline includes the torch import, the input tensors and a warm-up call at N = 8 (so
    one-time allocator and dispatch costs are not counted).
    """
    loss_fn = _PAIRWISE_LOSSES[method]
    _loss_backward(loss_fn, *_pairwise_inputs(8, k, seed)[:2])
    probs, constraints, _ = _pairwise_inputs(n, k, seed)
    gc.collect()
    baseline = reset_peak_rss_mb()
    _loss_backward(loss_fn, probs, constraints)
    return status_mb("VmHWM") - baseline


def _extra_peak_mb_in_fresh_process(method: str, n: int, k: int, seed: int) -> float:
    """:func:`_loss_extra_peak_mb` in a new process forked from a clean fork server.

    The multiprocessing "forkserver" process imports torch and this module once (no tensor op,
    so no thread pool yet); each measurement runs in a child forked from it, whose heap holds
    nothing of this process nor of the other measurements. This keeps the import cost to once
    per session instead of once per row.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with context.Pool(1) as pool:
        return pool.apply(_loss_extra_peak_mb, (method, n, k, seed))


def pairwise_kl_peak_memory(n: int = 1000, ks=(10, 100), seed: int = 0) -> list[dict]:
    """Extra peak memory (MiB) of the loss forward + backward, matrix form and (a), at each K.

    Hsu-Kira Sec. 2.2 / issue 8: the matrix form needs O(N^2) memory, the enumeration of (a)
    O(N^2 K). Each row is measured in a fresh process (forked from a clean fork server): peak
    resident memory (VmHWM, reset with /proc/self/clear_refs just before the loss) minus the
    resident memory after importing torch, building the inputs and a warm-up at N = 8. Linux
    only. ``ru_maxrss`` is not used: a child started by fork + exec inherits its parent's peak
    in it. Rows also give the sizes of one float32 N x N tensor (``n2_float32_mb``) and of one
    N^2 x K tensor (``n2k_float32_mb``).
    """
    return [{"method": method, "n": n, "k": k,
             "extra_peak_mb": _extra_peak_mb_in_fresh_process(method, n, k, seed),
             "n2_float32_mb": n * n * 4 / 2 ** 20, "n2k_float32_mb": n * n * k * 4 / 2 ** 20}
            for k in ks for method in _PAIRWISE_LOSSES]


def memory_growth(rows: list[dict]) -> dict:
    """Per method: extra peak at the largest K / extra peak at the smallest K (1 for one K)."""
    growth = {}
    for method in dict.fromkeys(row["method"] for row in rows):
        by_k = sorted((row["k"], row["extra_peak_mb"]) for row in rows if row["method"] == method)
        growth[method] = by_k[-1][1] / by_k[0][1]
    return growth
