"""Pairwise-constraint and clustering losses (Hsu-Kira and ClusterNet chapters).

* :func:`pairwise_kl` / :func:`pairwise_kl_terms`: Hsu and Kira (2015), *Neural network-based
  clustering using pairwise constraints*, Eq. (1)-(3): the KL divergence between the cluster
  distributions of a pair, as a cost for similar pairs and as a hinge for dissimilar ones.
* :func:`clusternet_pair_loss`: ClusterNet (Shukla, Cheema and Anand), Eq. (2), (6), (7).
* :func:`constraints_from_labels`: the pair sets of ClusterNet Eq. (14)-(15).
* :func:`sample_constraints` and :func:`constraints_from_pairs`: Hsu and Kira's partial constraints
  (Sec. 3.1: pairs drawn uniformly from all n(n-1)/2, optionally flipped, Sec. 3.2.1) and the
  in-batch enumeration of Sec. 2.2: tuples (i, j, relationship) become the batch's samples, each
  fed forward once, and the N x N matrix the cost layer reads, so that autograd sums each image's
  gradient over its tuples (Eq. (6)).
* :func:`cluster_loss`: ClusterNet's k-means style term, Eq. (4)-(5).
* :func:`hinge_embedding`: the Siamese baseline of Hsu and Kira's Fig. 3 (hinge on distances).

Constraints are an N x N matrix ``S`` over a mini-batch: ``S[i, j] = +1`` for a similar pair,
``-1`` for a dissimilar pair and ``0`` for an unknown pair, which contributes nothing (the diagonal
never counts). Everything is computed in matrix form, at O(N^2 + N K) memory.

Gradient convention (Hsu-Kira Sec. 2.1, Eq. (3)-(5)): in :math:`loss(P \\| Q)` the first argument
P is a constant and the gradient flows into Q only; so for an ordered pair (i, j) we compute
:math:`loss(p_i \\| p_j)` with :math:`p_i` detached. Summing both orders gives the symmetric cost
of ClusterNet's Eq. (2) (and Hsu-Kira's Eq. (3)), whose gradient w.r.t. :math:`p_j` is that of
:math:`loss(p_i \\| p_j)` alone, Hsu-Kira's Eq. (4).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

SIMILAR, UNKNOWN, DISSIMILAR = 1, 0, -1


class PairwiseKLTerms(NamedTuple):
    """The two halves of the pairwise loss, averaged separately over ordered pairs (i, j)."""

    similar: torch.Tensor  # mean of KL(p_i || p_j) over ordered similar pairs (0 if none)
    dissimilar: torch.Tensor  # mean of max(0, m - KL(p_i || p_j)) over dissimilar pairs
    n_similar: int  # number of ordered similar pairs, i != j
    n_dissimilar: int  # number of ordered dissimilar pairs, i != j


def kl_matrix(probs: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """:math:`KL(p_i \\| p_j)` for all ordered pairs (N x N), p_i detached (Hsu-Kira Eq. (1)).

    Row i holds the divergences from the (constant) reference p_i; the gradient reaches p_j only.
    ``eps`` is added inside the logs, as in the authors' code.
    """
    reference = probs.detach()
    # $\sum_k p_{ik} \log p_{ik}$: one number per point, a constant
    neg_entropy = (reference * torch.log(reference + eps)).sum(dim=1)
    # $\sum_k p_{ik} \log p_{jk}$ for all (i, j): one N x K @ K x N product
    cross = reference @ torch.log(probs + eps).T
    # $KL(p_i \| p_j) = \sum_k p_{ik} \log p_{ik} / p_{jk}$
    return neg_entropy[:, None] - cross


def _constraint_masks(constraints, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean N x N masks of similar and dissimilar ordered pairs, diagonal excluded."""
    constraints = torch.as_tensor(constraints, device=device)
    if constraints.shape != (n, n):
        raise ValueError(f"constraints must be {n} x {n} for {n} points, "
                         f"got {tuple(constraints.shape)}")
    similar, dissimilar = constraints == SIMILAR, constraints == DISSIMILAR
    similar.fill_diagonal_(False)  # O(N), not an N x N identity and two more passes
    dissimilar.fill_diagonal_(False)
    return similar, dissimilar


def _masked_mean(values: torch.Tensor, mask: torch.Tensor,
                 count: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` holds; 0 (still attached to the graph) for an empty mask.

    ``count`` is the number of True entries when the caller has it already. ``torch.where``
    selects without the float copy of the mask that ``values * mask`` makes (forward and backward).
    """
    count = int(torch.count_nonzero(mask)) if count is None else count
    total = torch.where(mask, values, 0.0).sum()
    return total / count if count else total * 0.0


def pairwise_kl_terms(probs: torch.Tensor, constraints, margin: float = 2.0,
                      eps: float = 1e-7) -> PairwiseKLTerms:
    """Hsu-Kira Eq. (2), its similar and dissimilar parts averaged separately.

    :math:`loss(p_i \\| p_j) = I_s KL(p_i \\| p_j) + I_{ds} \\max(0, m - KL(p_i \\| p_j))` over
    ordered pairs i != j, with p_i held constant (see the module docstring).
    """
    if probs.dim() != 2:
        raise ValueError(f"probs must be N x K, got shape {tuple(probs.shape)}")
    similar, dissimilar = _constraint_masks(constraints, probs.shape[0], probs.device)
    n_similar = int(torch.count_nonzero(similar))
    n_dissimilar = int(torch.count_nonzero(dissimilar))
    kl = kl_matrix(probs, eps)
    # $\max(0, m - KL(p_i \| p_j))$ for dissimilar pairs
    hinge = torch.clamp(margin - kl, min=0.0)
    return PairwiseKLTerms(similar=_masked_mean(kl, similar, n_similar),
                           dissimilar=_masked_mean(hinge, dissimilar, n_dissimilar),
                           n_similar=n_similar, n_dissimilar=n_dissimilar)


def pairwise_kl(probs: torch.Tensor, constraints, margin: float = 2.0,
                eps: float = 1e-7) -> torch.Tensor:
    """Hsu-Kira Eq. (2) averaged over all ordered pairs with a known constraint.

    ``probs`` is N x K (rows are probability vectors); ``constraints`` N x N with +1 / -1 / 0.
    For each ordered pair (i, j), i != j, with a known constraint the cost is
    :math:`loss(p_i \\| p_j)`, :math:`p_i` detached, gradient into :math:`p_j`; summing both
    orders gives the symmetric cost of ClusterNet's Eq. (2) (Hsu-Kira Eq. (3)). Margin 2 is
    Hsu and Kira's value. Returns 0 when no pair is known.
    """
    terms = pairwise_kl_terms(probs, constraints, margin, eps)
    n_known = terms.n_similar + terms.n_dissimilar
    if n_known == 0:
        return terms.similar  # a zero attached to the graph
    # $\frac{1}{|T|} \sum_{(i,j) \in T} loss(p_i \| p_j)$
    return (terms.similar * terms.n_similar + terms.dissimilar * terms.n_dissimilar) / n_known


def clusternet_pair_loss(probs: torch.Tensor, constraints, margin: float = 2.0,
                         eps: float = 1e-7) -> torch.Tensor:
    """ClusterNet Eq. (6)/(7): separate means over unordered similar and dissimilar pairs.

    :math:`\\frac{1}{|T_{sim}|}\\sum L_{sim} + \\frac{1}{|T_{dissim}|}\\sum L_{dissim}` with
    :math:`L_{sim} = KL(p\\|q) + KL(q\\|p)` and
    :math:`L_{dissim} = [m - KL(p\\|q)]_+ + [m - KL(q\\|p)]_+`. Each unordered pair is the two
    ordered pairs (p, q) and (q, p), so the mean over unordered pairs is twice the mean over
    ordered pairs. The reference side of each KL is held constant as in Hsu-Kira (ClusterNet
    Sec. 3.2: "first fixing p and computing the divergence of q from p and vice versa").
    ``constraints`` must be symmetric; an empty pair set contributes 0. The margin m is not
    given in the paper; 2 is Hsu and Kira's value.
    """
    constraints = torch.as_tensor(constraints, device=probs.device)
    if constraints.dim() != 2 or not torch.equal(constraints, constraints.T):
        raise ValueError("ClusterNet's pair sets are unordered: constraints must be symmetric")
    terms = pairwise_kl_terms(probs, constraints, margin, eps)
    # $\frac{1}{|T_{sim}|}\sum L_{sim} + \frac{1}{|T_{dissim}|}\sum L_{dissim}$
    return 2 * terms.similar + 2 * terms.dissimilar


def constraints_from_labels(labels) -> torch.Tensor:
    """ClusterNet Eq. (14)-(15): pair constraints from (true or predicted) labels, N x N int8.

    +1 where two points share a label (T_sim), -1 where they differ (T_dissim), 0 where either
    label is -1 (unknown) and on the diagonal.
    """
    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    known = labels != -1
    same = labels[:, None] == labels[None, :]
    # $T_{sim} = \{(i, j): k_i = k_j\}$, $T_{dissim} = \{(i, j): k_i \neq k_j\}$
    constraints = torch.where(same, SIMILAR, DISSIMILAR).to(torch.int8)
    constraints[~(known[:, None] & known[None, :])] = UNKNOWN
    constraints.fill_diagonal_(UNKNOWN)
    return constraints


def hinge_embedding(z: torch.Tensor, constraints, margin: float = 1.0) -> torch.Tensor:
    """Hsu-Kira's Siamese baseline (Sec. 3.1): Torch's HingeEmbeddingCriterion on the Euclidean
    distance d of every known pair, d for similar pairs and max(0, margin - d) for dissimilar
    ones, averaged over the known ordered pairs (same constraint matrix as :func:`pairwise_kl`)."""
    similar, dissimilar = _constraint_masks(constraints, z.shape[0], z.device)
    d = torch.sqrt(torch.cdist(z, z).pow(2) + 1e-8)  # differentiable at d = 0
    n_known = int(torch.count_nonzero(similar)) + int(torch.count_nonzero(dissimilar))
    # $d$ for similar pairs, $\max(0, m - d)$ for dissimilar ones
    total = (torch.where(similar, d, 0.0).sum()
             + torch.where(dissimilar, torch.clamp(margin - d, min=0.0), 0.0).sum())
    return total / max(n_known, 1)


class PairConstraints(NamedTuple):
    """Pairwise constraints as tuples (i, j, relationship) over a data set, i < j."""

    first: np.ndarray  # int64 index i of each pair
    second: np.ndarray  # int64 index j > i
    relation: np.ndarray  # int8: +1 similar, -1 dissimilar

    def __len__(self) -> int:
        return len(self.first)

    def subset(self, index) -> "PairConstraints":
        return PairConstraints(self.first[index], self.second[index], self.relation[index])


def _pair_from_linear_index(t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The t-th pair (i, j), i < j, of the row-wise enumeration (0,1), (0,2), ..., (n-2, n-1)."""
    t = np.asarray(t, dtype=np.int64)

    def row_start(i):  # index of (i, i + 1): i n - i (i + 1) / 2
        return i * n - i * (i + 1) // 2

    i = np.floor((2 * n - 1 - np.sqrt((2.0 * n - 1) ** 2 - 8.0 * t)) / 2).astype(np.int64)
    i = np.clip(i, 0, n - 2)
    i = np.where(row_start(i) > t, i - 1, i)  # float round-off, at most one row either way
    i = np.where(row_start(i + 1) <= t, i + 1, i)
    return i, t - row_start(i) + i + 1


def sample_constraints(labels, n_constraints: int, seed: int = 0,
                       flip_fraction: float = 0.0) -> PairConstraints:
    """Hsu-Kira Sec. 3.1: `n_constraints` distinct pairs drawn uniformly from all n(n-1)/2.

    A pair of points with the same label is similar (+1), otherwise dissimilar (-1). With
    `flip_fraction` > 0, that share of the sampled relationships (exactly round(f * count)) is
    flipped, the noisy constraints of Sec. 3.2.1 (Fig. 5, left).
    """
    labels = np.asarray(labels)
    n = len(labels)
    n_pairs = n * (n - 1) // 2
    if not 1 <= n_constraints <= n_pairs:
        raise ValueError(f"n_constraints must be in 1..{n_pairs} (all pairs of {n} points), "
                         f"got {n_constraints}")
    if not 0 <= flip_fraction <= 1:
        raise ValueError(f"flip_fraction must be in [0, 1], got {flip_fraction}")
    rng = np.random.default_rng(seed)
    first, second = _pair_from_linear_index(rng.choice(n_pairs, n_constraints, replace=False), n)
    # $I_s(x_p, x_q) = 1$ iff the labels agree, $I_{ds}$ otherwise
    relation = np.where(labels[first] == labels[second], SIMILAR, DISSIMILAR).astype(np.int8)
    flipped = rng.choice(n_constraints, int(round(flip_fraction * n_constraints)), replace=False)
    relation[flipped] *= -1
    return PairConstraints(first, second, relation)


def constraints_from_pairs(pairs: PairConstraints) -> tuple[np.ndarray, torch.Tensor]:
    """Hsu-Kira Sec. 2.2: tuples (i, j, relationship) -> (samples, S) for one mini-batch.

    With ``pairwise_kl(probs[samples], S)``, autograd gives each image the sum of its tuples'
    gradients, Eq. (6) (divided by the number of known ordered pairs: the loss is a mean).

    ``samples`` are the distinct data indices the tuples touch, each to be fed forward once;
    ``S`` is the symmetric len(samples) x len(samples) int8 matrix over them (+1 / -1, 0 for
    every pair without a tuple), the input of :func:`pairwise_kl`.
    """
    samples, local = np.unique(np.concatenate([pairs.first, pairs.second]), return_inverse=True)
    i, j = torch.from_numpy(local[:len(pairs)]), torch.from_numpy(local[len(pairs):])
    relation = torch.from_numpy(np.asarray(pairs.relation, dtype=np.int8))
    constraints = torch.zeros(len(samples), len(samples), dtype=torch.int8)
    constraints[i, j] = relation
    constraints[j, i] = relation
    return samples, constraints


def cluster_loss(z: torch.Tensor, centers: torch.Tensor, assignments) -> torch.Tensor:
    """ClusterNet Eq. (4)/(5): :math:`\\frac{1}{N}\\sum_i \\|z_i - \\mathbf{C} a_i\\|_2^2`.

    ``z`` is N x d (the embeddings f(theta_e; x_i)); ``centers`` is K x d, one centre per row
    (the transpose of the paper's d x K matrix C); ``assignments`` is either N cluster indices or
    an N x K one-hot (or soft) matrix a. Pass the unlabelled points with their predicted
    assignments for Eq. (4), the labelled ones with their true labels for Eq. (5).
    """
    assignments = torch.as_tensor(assignments, device=z.device)
    if assignments.dim() == 1:
        assigned_centers = centers[assignments.long()]
    else:
        # $\mathbf{C} a_i$ with one centre per row of `centers`
        assigned_centers = assignments.to(centers.dtype) @ centers
    # $\frac{1}{|\mathcal{X}|}\sum_i \|f(\theta_e; x_i) - \mathbf{C} a_i\|_2^2$
    return ((z - assigned_centers) ** 2).sum(dim=1).mean()
