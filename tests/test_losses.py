"""Tests for reprolib.losses: Hsu-Kira pairwise KL (Eq. 1-5), ClusterNet Eq. (4)-(7), (14)-(15)."""
from __future__ import annotations

import itertools

import pytest
import torch

from reprolib.losses import (
    PairwiseKLTerms, clusternet_pair_loss, cluster_loss, constraints_from_labels, kl_matrix,
    pairwise_kl, pairwise_kl_terms,
)


@pytest.fixture(autouse=True)
def float64_default():
    """Float64 so that matrix form and loops agree to round-off; restored after each test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_probs(n=7, k=4, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, k, generator=g) * 2, dim=1)
    return probs.clone().requires_grad_(requires_grad)


def random_constraints(n=7, seed=0):
    """Values in {-1, 0, +1}, not symmetric, diagonal non-zero (it must be ignored)."""
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randint(-1, 2, (n, n), generator=g)


def loop_kl(p, q, eps):
    """Hsu-Kira Eq. (1), one pair, with eps inside the logs like the implementation."""
    return sum(p[k] * (torch.log(p[k] + eps) - torch.log(q[k] + eps)) for k in range(len(p)))


def loop_pairwise_kl(probs, constraints, margin=2.0, eps=1e-7):
    """Hsu-Kira Eq. (2) over ordered pairs i != j, p_i detached, averaged over known pairs."""
    total, count = 0.0, 0
    for i, j in itertools.permutations(range(len(probs)), 2):
        c = int(constraints[i, j])
        if c == 0:
            continue
        kl = loop_kl(probs[i].detach(), probs[j], eps)
        total = total + (kl if c == 1 else torch.clamp(margin - kl, min=0.0))
        count += 1
    return total / count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_kl_equals_double_loop(seed):
    probs, constraints = random_probs(seed=seed), random_constraints(seed=seed)
    expected = loop_pairwise_kl(probs, constraints, margin=1.5)
    assert pairwise_kl(probs, constraints, margin=1.5).item() == pytest.approx(expected.item(),
                                                                             rel=1e-12)


def test_pairwise_kl_gradient_equals_loop_gradient():
    probs, constraints = random_probs(seed=3), random_constraints(seed=3)
    (grad,) = torch.autograd.grad(pairwise_kl(probs, constraints), probs)
    (expected,) = torch.autograd.grad(loop_pairwise_kl(probs, constraints), probs)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    assert grad.abs().sum() > 0


def test_reference_side_is_detached():
    probs = random_probs(n=3, seed=4)
    constraints = torch.zeros(3, 3, dtype=torch.long)
    constraints[0, 1] = 1  # only loss(p_0 || p_1): p_0 is the constant reference
    (grad,) = torch.autograd.grad(pairwise_kl(probs, constraints), probs)
    assert torch.all(grad[0] == 0)
    assert torch.all(grad[2] == 0)
    assert grad[1].abs().sum() > 0


def test_hand_computed_two_point_example():
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]], requires_grad=True)
    similar = torch.tensor([[0, 1], [1, 0]])
    # KL(p||q) = .5 ln(.5/.9) + .5 ln(.5/.1) = 0.5108256; KL(q||p) = .9 ln(1.8) + .1 ln(.2)
    # = 0.3680642; mean over the two ordered pairs = 0.4394449
    assert pairwise_kl(probs, similar, eps=0).item() == pytest.approx(0.4394449154672439)
    # dissimilar, margin 2: ((2 - 0.5108256) + (2 - 0.3680642)) / 2 = 1.5605551
    assert pairwise_kl(probs, -similar, eps=0).item() == pytest.approx(1.5605550845327563)
    # ClusterNet Eq. (6), one unordered pair: L_sim = 0.5108256 + 0.3680642
    assert clusternet_pair_loss(probs, similar, eps=0).item() == pytest.approx(0.8788898309344878)


def test_hsu_kira_eq4_gradients():
    """Eq. (4): d loss(P||Q) / dQ_i = -P_i/Q_i (similar), +P_i/Q_i (dissimilar, KL < m), 0."""
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]], requires_grad=True)
    P, Q = probs.detach()
    one_way = torch.tensor([[0, 1], [0, 0]])
    (grad,) = torch.autograd.grad(pairwise_kl(probs, one_way, eps=0), probs)
    torch.testing.assert_close(grad[1], -P / Q)
    (grad,) = torch.autograd.grad(pairwise_kl(probs, -one_way, margin=2.0, eps=0), probs)
    assert loop_kl(P, Q, 0) < 2.0
    torch.testing.assert_close(grad[1], P / Q)
    (grad,) = torch.autograd.grad(pairwise_kl(probs, -one_way, margin=0.1, eps=0), probs)
    assert loop_kl(P, Q, 0) > 0.1
    assert torch.all(grad == 0)


def test_hsu_kira_eq5_gradients_of_symmetric_cost():
    """Eq. (3) + (5): with both orders summed, dL/dP_i = -Q_i/P_i and dL/dQ_i = -P_i/Q_i."""
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]], requires_grad=True)
    P, Q = probs.detach()
    both = torch.tensor([[0, 1], [1, 0]])
    symmetric_cost = 2 * pairwise_kl(probs, both, eps=0)  # sum over the 2 ordered pairs
    (grad,) = torch.autograd.grad(symmetric_cost, probs)
    torch.testing.assert_close(grad[0], -Q / P)
    torch.testing.assert_close(grad[1], -P / Q)


def test_margin_hinge():
    same = torch.tensor([[0.6, 0.4], [0.6, 0.4]], requires_grad=True)
    dissimilar = torch.tensor([[0, -1], [-1, 0]])
    # identical distributions: KL = 0, so the hinge costs the full margin
    assert pairwise_kl(same, dissimilar, margin=2.0).item() == pytest.approx(2.0)
    assert pairwise_kl(same, dissimilar, margin=0.5).item() == pytest.approx(0.5)
    far = torch.tensor([[0.999, 0.001], [0.001, 0.999]], requires_grad=True)
    # KL is about 6.9 in both directions, beyond the margin: no cost and no gradient
    loss = pairwise_kl(far, dissimilar, margin=2.0)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, far)
    assert torch.all(grad == 0)


def test_unknown_pairs_contribute_nothing():
    probs, constraints = random_probs(seed=5), random_constraints(seed=5)
    constraints[3, :] = 0
    constraints[:, 3] = 0
    loss = pairwise_kl(probs, constraints)
    changed = probs.detach().clone()
    changed[3] = torch.tensor([0.97, 0.01, 0.01, 0.01])
    assert pairwise_kl(changed, constraints).item() == pytest.approx(loss.item(), rel=1e-14)
    (grad,) = torch.autograd.grad(loss, probs)
    assert torch.all(grad[3] == 0)
    # and the diagonal never counts
    diagonal_only = torch.diag(torch.tensor([1, -1, 1, -1, 1, -1, 1]))
    assert pairwise_kl(probs, diagonal_only).item() == 0.0


def test_empty_constraint_sets_give_zero_not_nan():
    probs = random_probs(n=4, seed=6)
    none = torch.zeros(4, 4, dtype=torch.long)
    loss = pairwise_kl(probs, none)
    assert loss.item() == 0.0
    loss.backward()  # still attached to the graph
    assert torch.all(probs.grad == 0)
    only_similar = constraints_from_labels([0, 0, 0, 0])
    terms = pairwise_kl_terms(probs, only_similar)
    assert terms.n_dissimilar == 0 and terms.dissimilar.item() == 0.0
    assert not torch.isnan(clusternet_pair_loss(probs, only_similar))


def test_terms_are_separate_means():
    probs, constraints = random_probs(seed=7), random_constraints(seed=7)
    terms = pairwise_kl_terms(probs, constraints, margin=2.0)
    assert isinstance(terms, PairwiseKLTerms)
    sim_only = torch.where(constraints == 1, constraints, 0)
    dis_only = torch.where(constraints == -1, constraints, 0)
    assert terms.similar.item() == pytest.approx(loop_pairwise_kl(probs, sim_only).item())
    assert terms.dissimilar.item() == pytest.approx(loop_pairwise_kl(probs, dis_only).item())
    off = ~torch.eye(7, dtype=torch.bool)
    assert terms.n_similar == int(((constraints == 1) & off).sum())
    assert terms.n_dissimilar == int(((constraints == -1) & off).sum())


def test_kl_matrix_entries():
    probs = random_probs(n=5, seed=8)
    kl = kl_matrix(probs, eps=0)
    for i, j in itertools.product(range(5), repeat=2):
        assert kl[i, j].item() == pytest.approx(loop_kl(probs[i], probs[j], 0).item(), abs=1e-12)
    assert torch.allclose(torch.diagonal(kl), torch.zeros(5), atol=1e-12)


def loop_clusternet(probs, labels, margin=2.0, eps=1e-7):
    """ClusterNet Eq. (6) over unordered pairs p < q, reference side of each KL detached."""
    sim, dis = [], []
    for p, q in itertools.combinations(range(len(labels)), 2):
        if labels[p] == -1 or labels[q] == -1:
            continue
        kl_pq = loop_kl(probs[p].detach(), probs[q], eps)
        kl_qp = loop_kl(probs[q].detach(), probs[p], eps)
        if labels[p] == labels[q]:
            sim.append(kl_pq + kl_qp)  # L_sim
        else:
            dis.append(torch.clamp(margin - kl_pq, min=0) + torch.clamp(margin - kl_qp, min=0))
    return sum(sim) / len(sim) + sum(dis) / len(dis)


def test_clusternet_pair_loss_equals_unordered_loop():
    probs = random_probs(n=8, k=3, seed=9)
    labels = [0, 1, 0, 2, -1, 1, 0, 2]
    constraints = constraints_from_labels(labels)
    loss = clusternet_pair_loss(probs, constraints, margin=1.0)
    expected = loop_clusternet(probs, labels, margin=1.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    (grad,) = torch.autograd.grad(loss, probs)
    (expected_grad,) = torch.autograd.grad(expected, probs)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    # twice the ordered-pair means
    terms = pairwise_kl_terms(probs, constraints, margin=1.0)
    assert loss.item() == pytest.approx(2 * (terms.similar + terms.dissimilar).item())


def test_clusternet_pair_loss_rejects_asymmetric_constraints():
    probs = random_probs(n=3, seed=10)
    with pytest.raises(ValueError, match="symmetric"):
        clusternet_pair_loss(probs, torch.tensor([[0, 1, 0], [0, 0, 0], [0, 0, 0]]))


def test_constraints_from_labels():
    constraints = constraints_from_labels(torch.tensor([0, 1, 0, -1]))
    expected = torch.tensor([[0, -1, 1, 0],
                             [-1, 0, -1, 0],
                             [1, -1, 0, 0],
                             [0, 0, 0, 0]], dtype=torch.int8)
    assert constraints.dtype == torch.int8
    assert torch.equal(constraints, expected)
    with pytest.raises(ValueError, match="1-D"):
        constraints_from_labels([[0, 1]])


def test_pairwise_kl_rejects_wrong_constraint_shape():
    with pytest.raises(ValueError, match="3 x 3"):
        pairwise_kl(random_probs(n=3), torch.zeros(2, 2))


def test_cluster_loss_matches_loop_and_accepts_one_hot():
    g = torch.Generator().manual_seed(11)
    z = torch.randn(6, 3, generator=g, requires_grad=True)
    centers = torch.randn(4, 3, generator=g)
    assignments = torch.tensor([0, 3, 1, 1, 2, 0])
    loss = cluster_loss(z, centers, assignments)
    expected = sum(((z[i] - centers[a]) ** 2).sum() for i, a in enumerate(assignments)) / 6
    assert loss.item() == pytest.approx(expected.item())
    one_hot = torch.nn.functional.one_hot(assignments, 4)
    assert cluster_loss(z, centers, one_hot).item() == pytest.approx(loss.item())
    (grad,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(grad, 2 * (z - centers[assignments]).detach() / 6)


# --- Hsu-Kira partial constraints (Sec. 3.1, 3.2.1) and the in-batch enumeration (Sec. 2.2) ---

def test_pair_index_enumerates_every_pair_once():
    from reprolib.losses import _pair_from_linear_index
    import numpy as np
    for n in (2, 3, 11, 60):
        i, j = _pair_from_linear_index(np.arange(n * (n - 1) // 2), n)
        assert list(zip(i.tolist(), j.tolist())) == list(itertools.combinations(range(n), 2))
    n = 70000  # the end of a large enumeration, where float round-off could shift a row
    last = n * (n - 1) // 2 - 1
    i, j = _pair_from_linear_index(np.array([0, n - 2, n - 1, last]), n)
    assert i.tolist() == [0, 0, 1, n - 2] and j.tolist() == [1, n - 1, 2, n - 1]


def test_sample_constraints_are_distinct_pairs_labelled_by_agreement():
    import numpy as np
    from reprolib.losses import sample_constraints
    labels = np.repeat(np.arange(10), 30)
    pairs = sample_constraints(labels, 2000, seed=1)
    assert len(pairs) == 2000 and np.all(pairs.first < pairs.second)
    assert len({(a, b) for a, b in zip(pairs.first, pairs.second)}) == 2000
    same = labels[pairs.first] == labels[pairs.second]
    assert np.array_equal(pairs.relation == 1, same)
    assert 0.05 < same.mean() < 0.15  # ten balanced classes: about one pair in ten is similar


def test_flipped_constraints_flip_exactly_that_share():
    import numpy as np
    from reprolib.losses import sample_constraints
    labels = np.repeat(np.arange(10), 30)
    clean = sample_constraints(labels, 1000, seed=2)
    noisy = sample_constraints(labels, 1000, seed=2, flip_fraction=0.2)
    assert np.array_equal(clean.first, noisy.first) and np.array_equal(clean.second, noisy.second)
    assert int((clean.relation != noisy.relation).sum()) == 200


@pytest.mark.parametrize("count, flip", [(0, 0.0), (46, 0.0), (5, 1.5)])
def test_sample_constraints_refuses_impossible_requests(count, flip):
    import numpy as np
    from reprolib.losses import sample_constraints
    with pytest.raises(ValueError):
        sample_constraints(np.arange(10), count, flip_fraction=flip)  # 10 points have 45 pairs


def test_constraints_from_pairs_feeds_each_image_once_and_matches_the_tuples():
    import numpy as np
    from reprolib.losses import PairConstraints, constraints_from_pairs
    # Hsu-Kira Fig. 2(c): pairs (1,2), (1,3), (3,4)
    tuples = PairConstraints(np.array([1, 1, 3]), np.array([2, 3, 4]), np.array([1, -1, 1], dtype=np.int8))
    samples, S = constraints_from_pairs(tuples)
    assert samples.tolist() == [1, 2, 3, 4]
    expected = torch.tensor([[0, 1, -1, 0], [1, 0, 0, 0], [-1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.int8)
    assert torch.equal(S, expected)
    probs = random_probs(n=5, k=3, seed=5)
    loop = sum(loop_kl(probs[i].detach(), probs[j], 1e-7) if r == 1
               else torch.clamp(2.0 - loop_kl(probs[i].detach(), probs[j], 1e-7), min=0.0)
               for a, b, r in zip([1, 1, 3], [2, 3, 4], [1, -1, 1]) for i, j in ((a, b), (b, a))) / 6
    assert pairwise_kl(probs[samples], S).item() == pytest.approx(loop.item(), rel=1e-12)


def test_unknown_pairs_change_neither_value_nor_gradient():
    probs = random_probs(n=6, seed=6)
    S = constraints_from_labels(torch.tensor([0, 0, 1, 2, -1, -1]))  # images 4, 5: unknown pairs only
    (grad,) = torch.autograd.grad(pairwise_kl(probs, S), probs)
    known = probs[:4].detach().clone().requires_grad_(True)
    (grad_known,) = torch.autograd.grad(pairwise_kl(known, S[:4, :4]), known)
    assert pairwise_kl(probs, S).item() == pytest.approx(pairwise_kl(known, S[:4, :4]).item(), rel=1e-12)
    torch.testing.assert_close(grad[:4], grad_known)
    assert torch.all(grad[4:] == 0)


def test_hinge_embedding_equals_a_loop_over_known_pairs():
    """The Siamese baseline of Hsu-Kira Fig. 3: d for similar, max(0, 1 - d) for dissimilar pairs."""
    from reprolib.losses import hinge_embedding
    g = torch.Generator().manual_seed(7)
    z = (0.5 * torch.randn(6, 3, generator=g)).requires_grad_(True)
    S = constraints_from_labels(torch.tensor([0, 0, 1, 2, 1, -1]))
    terms = []
    for i, j in itertools.permutations(range(6), 2):
        d = torch.sqrt(((z[i] - z[j]) ** 2).sum() + 1e-8)
        if S[i, j] == 1:
            terms.append(d)
        elif S[i, j] == -1:
            terms.append(torch.clamp(1.0 - d, min=0.0))
    expected = torch.stack(terms).mean()
    assert hinge_embedding(z, S).item() == pytest.approx(expected.item(), rel=1e-9)
    (grad,) = torch.autograd.grad(hinge_embedding(z, S), z)
    (grad_loop,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(grad, grad_loop)
    assert torch.all(grad[5] == 0)  # only unknown pairs: no gradient
