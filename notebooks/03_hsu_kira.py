# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 3: Clustering from pairwise constraints (Hsu and Kira)
#
# **Claim.** A classification network becomes a clustering network by changing only its cost
# layer: instead of comparing each softmax output with a label, compare the outputs of *pairs*
# of images, pulling them together (small KL divergence) when the pair is known to be similar and
# pushing them apart (a hinge on the divergence) when it is known to be dissimilar
# {cite}`hsu2015pairwise`. Which output node stands for which cluster is left to training. The
# paper reports that a LeNet trained this way on MNIST clusters better than k-means on learned
# features with a few hundred to a few thousand constraints (Fig. 3), tolerates flipped
# constraints (Fig. 5, left), uses about 10 of 100 output nodes when the number of clusters is
# unknown (Fig. 5, right, and Fig. 6), and, with all pairs of a labelled set, matches
# cross-entropy classification (Table 1: 95.1% clustering against 94.7% classification with 60
# images per class).
#
# This chapter derives the criterion, checks its gradients, shows why the in-batch enumeration
# of Sec. 2.2 is fast, and regenerates Figures 3-6 and Table 1 on `mnist5k`. Chapter 1 used the
# same criterion inside ClusterNet; here it stands alone, with constraints as the only
# supervision: further along the spectrum than labels, since a pair says "same" or "different"
# but never which class.

# %% tags=["remove-cell"]
import sys
if "google.colab" in sys.modules:  # on Colab: install reprolib (and its dependencies) from the repository
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprolib @ git+https://github.com/deep-clustering-reproduced/book@main"], check=True)

# %% [markdown]
# ## Equation map
#
# | paper | what | where here |
# | --- | --- | --- |
# | Eq. (1) | $KL(P \| Q)$ between two output distributions | `reprolib.losses.kl_matrix`, {ref}`sec-hk-criterion` |
# | Eq. (2) | KL for similar pairs, hinge $\max(0, m - KL)$ for dissimilar ones | `reprolib.losses.pairwise_kl_terms`, {ref}`sec-hk-criterion` |
# | Eq. (3) | symmetric cost $L(P, Q) = loss(P\|Q) + loss(Q\|P)$ | `reprolib.losses.pairwise_kl` (both ordered pairs), {ref}`sec-hk-criterion` |
# | Eq. (4), Eq. (5) | gradients with respect to $Q_i$ and $P_i$ | autograd, checked in {ref}`sec-hk-gradients` |
# | Eq. (6) | the batch gradient: each image's gradient sums over its tuples $T$, each image fed forward once | `reprolib.losses.constraints_from_pairs` + `pairwise_kl`, {ref}`sec-hk-enumeration` |

# %% tags=["parameters"]
profile = "book"           # smoke | book | paper
dataset = "mnist5k"        # any image dataset of reprolib.data (28x28, 32x32 and 8x8 images work)
seed = 0                   # seeds the split, the constraints and training
n_clusters = None          # output nodes K of Fig. 3-5; None: the number of classes (Table 1 always uses it)
samples_per_class = 60     # headline: all pairs among this many labelled training images per class (Table 1)
margin = 2.0               # hinge margin of Eq. (2) (the paper's value)
n_steps = None             # optimisation steps per training run; None: the profile's
batch_size = None          # images per step; None: the profile's
learning_rate = None       # SGD learning rate (the original code: 0.01); None: the profile's
n_restarts = None          # random restarts per setting, best kept as in the paper (paper: 5); None: the profile's
n_samples = None           # use a stratified subset of this many images; None: the profile's (all)
experiments = True         # False: only Table 1 (which holds the headline), no Fig. 3-6
output_dir = "runs/03_hsu_kira"  # results.json, figures and checkpoints (set by python -m reprolib run --out)

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE
from sklearn.metrics.cluster import contingency_matrix

from reprolib import data, metrics, params, plotting, report, results, training
from reprolib.device import describe_device, pick_device
from reprolib.losses import (PairConstraints, constraints_from_labels, constraints_from_pairs, hinge_embedding, kl_matrix,
                             pairwise_kl, pairwise_kl_terms, sample_constraints)
from reprolib.networks import LeNetBN

params.check(dict(profile=profile, dataset=dataset, seed=seed, n_clusters=n_clusters,
                  samples_per_class=samples_per_class, margin=margin, n_steps=n_steps, batch_size=batch_size,
                  learning_rate=learning_rate, n_restarts=n_restarts, n_samples=n_samples))

BUDGETS = {
    "smoke": dict(n_steps=30, batch_size=32, learning_rate=0.01, optimizer="sgd", n_restarts=1, n_samples=1000,
                  constraint_counts=[300, 3000], tsne_counts=[300], noise_count=3000, optimizer_count=300, noise_levels=[0.2],
                  cluster_counts=[10, 30], table1_per_class=[6], kmeans_n_init=2, tsne_points=150,
                  benchmark_n=200),
    "book": dict(n_steps=570, batch_size=32, learning_rate=0.01, optimizer="sgd", n_restarts=1, n_samples=None,
                 constraint_counts=[300, 1200, 12000, 120000], tsne_counts=[300, 1200, 12000],
                 noise_count=12000, optimizer_count=1200, noise_levels=[0.1, 0.2, 0.5], cluster_counts=[10, 30, 100],
                 table1_per_class=[6, 60, None], kmeans_n_init=10, tsne_points=700, benchmark_n=1000),
    "paper": dict(n_steps=12500, batch_size=32, learning_rate=0.01, optimizer="sgd", n_restarts=5, n_samples=None,
                  constraint_counts=[300, 1200, 3000, 12000, 48000, 120000, 480000], tsne_counts=[300, 1200, 12000],
                  noise_count=12000, optimizer_count=1200, noise_levels=[0.05, 0.1, 0.2, 0.3, 0.5],
                  cluster_counts=[10, 20, 30, 50, 100],
                  table1_per_class=[6, 60, None], kmeans_n_init=50, tsne_points=1000, benchmark_n=1000),
}
budget = params.resolve(profile, BUDGETS, n_steps=n_steps, batch_size=batch_size, learning_rate=learning_rate,
                        n_restarts=n_restarts, n_samples=n_samples)
if budget.batch_size < 2:
    raise params.ParameterError("batch_size", "a pairwise criterion needs at least 2 images per step")
device = pick_device()
out = Path(output_dir)
plotting.use_style()
print(f"profile {profile}: {budget}\ndevice {describe_device(device)}")

# %% [markdown]
# ## Data
#
# `mnist5k` (5,000 MNIST digits) split into a stratified 80% training part and a 20% held-out part
# that no training run sees. Images are normalised to zero mean and unit variance (per channel,
# with the training part's statistics), as in Sec. 3. Constraints are derived from the training
# part's labels only.

# %%
full = data.load(dataset).stratified_subset(budget.n_samples, seed=seed)
K = n_clusters or full.n_classes
labels_all = full.labels.numpy()
train_idx, test_idx = data.stratified_split(labels_all, 0.2, seed=seed)
y_train, y_test = labels_all[train_idx], labels_all[test_idx]
per_class_available = int(np.bincount(y_train).min())
if samples_per_class > per_class_available:
    raise params.ParameterError("samples_per_class", f"the training part of {dataset} has only "
                                f"{per_class_available} images in its smallest class")
mean = full.images[train_idx].mean(dim=(0, 2, 3), keepdim=True)
std = full.images[train_idx].std(dim=(0, 2, 3), keepdim=True)
x_train = ((full.images[train_idx] - mean) / std).to(device)
x_test = ((full.images[test_idx] - mean) / std).to(device)
channels, side = x_train.shape[1], x_train.shape[-1]
record = results.Recorder("03_hsu_kira", profile,
                          dict(dataset=dataset, seed=seed, n_clusters=K, samples_per_class=samples_per_class,
                               margin=margin, experiments=experiments, **vars(budget)),
                          seed, full, device=describe_device(device))
checkpoints = training.checkpoint_dir(out, record.parameters)  # other parameters never resume these
print(f"{full.name}: train {len(train_idx)}, held-out {len(test_idx)}, images {tuple(x_train.shape[1:])}, "
      f"K = {K}; smallest class in training: {per_class_available} images")
report.glue("n_train", len(train_idx))
report.glue("n_test", len(test_idx))

# %% [markdown]
# (sec-hk-criterion)=
# ## The criterion (Eq. 1-3)
#
# Feed $x_p$ and $x_q$ through the network $f$ with a softmax on top:
# $\boldsymbol{P} = f(x_p)$, $\boldsymbol{Q} = f(x_q)$, two distributions over the $k$ output
# nodes. Eq. (1) is their KL divergence with $\boldsymbol{P}$ as the reference,
#
# $$KL(\boldsymbol{P} \| \boldsymbol{Q}) = \sum_{i=1}^k P_i \log\frac{P_i}{Q_i}.$$
#
# Eq. (2) turns it into a contrastive cost: the divergence itself for a similar pair, a hinge for a
# dissimilar pair,
#
# $$loss(\boldsymbol{P} \| \boldsymbol{Q}) = I_s(x_p, x_q)\,KL(\boldsymbol{P} \| \boldsymbol{Q})
#   + I_{ds}(x_p, x_q)\,\max\big(0,\ margin - KL(\boldsymbol{P} \| \boldsymbol{Q})\big),$$
#
# and Eq. (3) makes it symmetric,
# $L(\boldsymbol{P}, \boldsymbol{Q}) = loss(\boldsymbol{P} \| \boldsymbol{Q}) + loss(\boldsymbol{Q} \| \boldsymbol{P})$,
# where in each term **the first argument is a constant** (Sec. 2.1: "the $P$ in the first term
# ... is regarded as constant").
#
# For a mini-batch of $N$ outputs we never loop over pairs. With $\boldsymbol{p}_i$ the rows of
# the $N \times K$ output matrix, all divergences at once are
#
# $$KL(\boldsymbol{p}_i \| \boldsymbol{p}_j) = \underbrace{\textstyle\sum_k p_{ik}\log p_{ik}}_{\text{one number per row}}
#   - \underbrace{\textstyle\sum_k p_{ik}\log p_{jk}}_{(\boldsymbol{P}\,\log \boldsymbol{P}^\top)_{ij}},$$
#
# one $N\times K$ by $K\times N$ product (`reprolib.losses.kl_matrix`, with the reference rows
# detached). Constraints are an $N \times N$ matrix $S$: $+1$ similar, $-1$ dissimilar, $0$
# unknown. `pairwise_kl` applies Eq. (2) to every ordered pair $(i, j)$, $i \neq j$, with a known
# constraint and averages; since $S$ is symmetric, each unordered pair contributes both of its
# directions, which is Eq. (3).
#
# *Check:* the matrix form against Eq. (1)-(3) written as a loop over unordered pairs.

# %%
g = torch.Generator().manual_seed(0)
probs_check = torch.softmax(2 * torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
S_check = constraints_from_labels(torch.tensor([0, 0, 1, 2, 1, 0]))


def kl_eq1(P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Eq. (1) for one pair: sum_i P_i log(P_i / Q_i)."""
    # $KL(P \| Q) = \sum_i P_i \log(P_i / Q_i)$
    return (P * torch.log(P / Q)).sum()


def loss_eq2(P: torch.Tensor, Q: torch.Tensor, relation: int) -> torch.Tensor:
    """Eq. (2): KL for a similar pair, max(0, margin - KL) for a dissimilar one; P is the constant side."""
    kl = kl_eq1(P.detach(), Q)
    # $I_s KL(P\|Q) + I_{ds} \max(0, margin - KL(P\|Q))$
    return kl if relation == 1 else torch.clamp(margin - kl, min=0.0)


def cost_eq3(P: torch.Tensor, Q: torch.Tensor, relation: int) -> torch.Tensor:
    """Eq. (3): L(P, Q) = loss(P || Q) + loss(Q || P)."""
    return loss_eq2(P, Q, relation) + loss_eq2(Q, P, relation)


pairs_loop = [cost_eq3(probs_check[i], probs_check[j], int(S_check[i, j]))
              for i in range(6) for j in range(i + 1, 6) if S_check[i, j] != 0]
loop_mean = torch.stack(pairs_loop).mean() / 2  # the mean over ordered pairs is half the mean of Eq. (3)
matrix_value = pairwise_kl(probs_check, S_check, margin, eps=0.0)
assert torch.isclose(matrix_value, loop_mean, rtol=1e-12)
print(f"Eq. (1)-(3) as a loop: {loop_mean.item():.6f}; matrix form: {matrix_value.item():.6f}")

# %% [markdown]
# (sec-hk-gradients)=
# ## Gradients (Eq. 4-5)
#
# Because the reference side of each term is a constant, the derivative of $L$ with respect to
# $Q_i$ comes from $loss(\boldsymbol{P}\|\boldsymbol{Q})$ alone (Eq. (4)):
#
# $$\frac{\partial L}{\partial Q_i} = \begin{cases} -P_i / Q_i & \text{similar,} \\
#   \phantom{-}P_i / Q_i & \text{dissimilar and } KL(\boldsymbol{P}\|\boldsymbol{Q}) < margin, \\
#   0 & \text{otherwise,}\end{cases}$$
#
# and Eq. (5) is the same with $\boldsymbol{P}$ and $\boldsymbol{Q}$ exchanged. *Check:* autograd
# through `pairwise_kl` (with respect to the probabilities, not the logits) against these formulas,
# for a similar pair, a dissimilar pair inside the margin and one outside it. `pairwise_kl` averages
# over the two ordered pairs, so its gradient is half of $\partial L$.

# %%
def gradient_eq4(P: torch.Tensor, Q: torch.Tensor, relation: int, kl_pq: float) -> torch.Tensor:
    """Eq. (4): dL/dQ_i = -P_i/Q_i (similar), P_i/Q_i (dissimilar, KL < margin), else 0."""
    if relation == 1:
        return -P / Q
    return P / Q if kl_pq < margin else torch.zeros_like(P)


def check_gradients(P: torch.Tensor, Q: torch.Tensor, relation: int) -> str:
    pq = torch.stack([P, Q]).clone().requires_grad_(True)
    S = torch.tensor([[0, relation], [relation, 0]])
    (grad,) = torch.autograd.grad(2 * pairwise_kl(pq, S, margin, eps=0.0), pq)  # 2x: back to Eq. (3)
    expected_q = gradient_eq4(P, Q, relation, float(kl_eq1(P, Q)))           # Eq. (4)
    expected_p = gradient_eq4(Q, P, relation, float(kl_eq1(Q, P)))           # Eq. (5): roles exchanged
    assert torch.allclose(grad[1], expected_q, atol=1e-12) and torch.allclose(grad[0], expected_p, atol=1e-12)
    return f"KL(P||Q) = {float(kl_eq1(P, Q)):.3f}: autograd equals Eq. (4)-(5)"


P_ = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
for Q_, relation in [(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), 1),     # similar
                     (torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64), -1),    # dissimilar, KL < margin
                     (torch.tensor([0.01, 0.01, 0.98], dtype=torch.float64), -1)]:  # dissimilar, KL > margin
    print(("similar:    " if relation == 1 else "dissimilar: ") + check_gradients(P_, Q_, relation))

# %% [markdown]
# ### Unknown pairs contribute nothing
#
# A pair with $S_{ij} = 0$ must change neither the value nor the gradient, and the mean is taken
# over the known pairs only. The authors' PyTorch successor gets this wrong
# (IMPLEMENTATION_NOTES.md): its hinge criterion turns a target of 0 into
# $KL + \max(0, margin - KL)$, so every unknown pair pulls and pushes at once, and it averages over
# all $N^2$ pairs, self-pairs included. *Check:* adding unknown pairs (and whole images that only
# have unknown pairs) to a batch leaves our loss and the gradients of the constrained images
# unchanged; the successor's rule does not.

# %%
probs_u = probs_check.clone().requires_grad_(True)
S_partial = S_check.clone()
S_partial[:, 4:] = 0
S_partial[4:, :] = 0  # images 4 and 5 have only unknown pairs
value_with = pairwise_kl(probs_u, S_partial, margin)
(grad_with,) = torch.autograd.grad(value_with, probs_u)
probs_known = probs_check[:4].clone().requires_grad_(True)
value_without = pairwise_kl(probs_known, S_partial[:4, :4], margin)
(grad_without,) = torch.autograd.grad(value_without, probs_known)
assert torch.isclose(value_with, value_without) and torch.allclose(grad_with[:4], grad_without)
assert grad_with[4:].abs().sum() == 0


def successor_rule(probs: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """The successor's hinge over all N^2 ordered pairs: target 1 -> KL, -1 -> hinge, 0 -> KL + hinge."""
    kl = kl_matrix(probs)
    hinge = torch.clamp(margin - kl, min=0.0)
    return torch.where(S == 1, kl, torch.where(S == -1, hinge, kl + hinge)).mean()


successor_with = successor_rule(probs_check, S_partial)
successor_without = successor_rule(probs_check[:4], S_partial[:4, :4])
assert not torch.isclose(successor_with, successor_without)  # there, unknown pairs change the loss
print(f"ours: {value_with.item():.6f} with the unknown pairs, {value_without.item():.6f} without; "
      f"the successor's rule: {successor_with.item():.4f} vs {successor_without.item():.4f}")

# %% [markdown]
# (sec-hk-enumeration)=
# ## Enumerating pairs in the cost layer (Sec. 2.2, Eq. 6)
#
# A Siamese network feeds both images of every pair forward, so an image with several constraints
# is fed several times: in Fig. 2(c), pairs (1,2), (1,3) and (3,4) cost six forward passes for four
# images. Hsu and Kira instead present the constraints to the cost layer as tuples
# $T = \{(i, j, relationship)\}$ over the indices of a mini-batch, and feed each image forward
# once. The gradient that reaches each image's output is then the sum over its tuples (Eq. (6)):
#
# $$\frac{\partial \hat{L}}{\partial f(x_i)} = \sum_{j:\,(i,j) \in T} \frac{\partial}{\partial f(x_i)} L(f(x_i), f(x_j)).$$
#
# `reprolib.losses.constraints_from_pairs` turns a list of tuples over the data set into the
# batch's distinct images and the $N \times N$ matrix $S$ that `pairwise_kl` reads; autograd
# through the matrix form does the sum of Eq. (6). `pairwise_kl` returns the *mean* over the
# known ordered pairs, $\hat{L} / (2|T|)$, so its gradients are those of Eq. (6) divided by $2|T|$.
#
# *Check:* Fig. 2(c)'s example: four images fed once; the batch loss equals the mean of Eq. (3)
# over the three tuples computed one pair at a time, Siamese style; and each image's gradient
# equals the sum of its per-tuple gradients (Eq. (6)), divided by $2|T|$.

# %%
fig2c = PairConstraints(first=np.array([1, 1, 3]), second=np.array([2, 3, 4]), relation=np.array([1, -1, 1], dtype=np.int8))
samples, S_batch = constraints_from_pairs(fig2c)
assert samples.tolist() == [1, 2, 3, 4] and int((S_batch != 0).sum()) == 6
probs_fig2c = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
batch_loss = pairwise_kl(probs_fig2c[samples], S_batch, margin, eps=0.0)
siamese_style = torch.stack([cost_eq3(probs_fig2c[i], probs_fig2c[j], r)
                             for i, j, r in zip(fig2c.first, fig2c.second, fig2c.relation.tolist())]).mean() / 2
assert torch.isclose(batch_loss, siamese_style, rtol=1e-12)
outputs_fig2c = probs_fig2c[samples].clone().requires_grad_(True)
(grad_batch,) = torch.autograd.grad(pairwise_kl(outputs_fig2c, S_batch, margin, eps=0.0), outputs_fig2c)
position = {int(index): row for row, index in enumerate(samples)}
grad_eq6 = torch.zeros_like(outputs_fig2c)
for i, j, r in zip(fig2c.first, fig2c.second, fig2c.relation.tolist()):
    pair = outputs_fig2c[[position[i], position[j]]].detach().requires_grad_(True)
    (grad_pair,) = torch.autograd.grad(cost_eq3(pair[0], pair[1], r), pair)   # dL(f(x_i), f(x_j)) for one tuple
    grad_eq6[[position[i], position[j]]] += grad_pair                           # Eq. (6): sum over the tuples
assert torch.allclose(grad_batch, grad_eq6 / (2 * len(fig2c)), atol=1e-12)
print(f"{len(samples)} images fed once for {len(fig2c)} tuples (a Siamese network feeds {2 * len(fig2c)}); "
      "gradients equal Eq. (6)")

# %% [markdown]
# ### Speed and memory
#
# The benchmark in `benchmarks/bench_pairwise_kl.py` times the loss and its backward pass over all
# pairs of a batch of $N$ outputs with $K = 10$ ($N$ = 1,000 except at the smoke profile), in matrix form against (a) the successor's
# enumeration, which repeats the batch into two $N^2 \times K$ tensors, and (b) a Siamese network
# that feeds both images of every pair through the LeNet below (timed on a sample of pairs,
# extrapolated to all of them). Target: the matrix form at least 10 times faster than (a), with
# peak memory growing with $N^2$ but not with $K$.

# %%
from reprolib.benchmarks import PAIRWISE_MEMORY_GROWTH_MAX, PAIRWISE_TARGET_RATIO, memory_growth, pairwise_kl_peak_memory, pairwise_kl_speed

speed = pairwise_kl_speed(n=budget.benchmark_n, k=10, repeats=3 if profile != "smoke" else 1,
                          siamese_pairs=500 if profile != "smoke" else 20)
assert speed["values_agree"], "matrix form and enumeration disagree"
memory_rows = pairwise_kl_peak_memory(n=budget.benchmark_n, ks=(10, 100)) if profile != "smoke" else []
growth = memory_growth(memory_rows)  # each row runs in a fresh process: skipped at the smoke profile
speed_table = pd.DataFrame([
    {"what": "loss + backward, matrix form", "seconds": speed["loss_matrix_s"]},
    {"what": "loss + backward, (a) batch repeated to N^2 x K", "seconds": speed["loss_enumerated_s"]},
    {"what": "LeNet + loss + backward, matrix form", "seconds": speed["step_matrix_s"]},
    {"what": "LeNet + loss + backward, (b) Siamese over all pairs (extrapolated)", "seconds": speed["siamese_extrapolated_s"]},
])
report.glue("speed_ratio_enumerated", float(speed["loss_ratio"]))
report.glue("speed_ratio_siamese", float(speed["step_ratio"]))
record.add("benchmark", "pairwise KL, matrix form", "random", f"N={budget.benchmark_n}, K=10, vs (a) N^2 x K enumeration",
           "speedup", speed["loss_ratio"])
record.add("benchmark", "pairwise KL, matrix form", "random", f"N={budget.benchmark_n}, K=10, vs (b) Siamese per pair",
           "speedup", speed["step_ratio"])
for method, factor in growth.items():
    record.add("benchmark", method, "random", f"N={budget.benchmark_n}, extra peak memory K=100 / K=10",
               "memory_growth", factor)
print(f"loss + backward, matrix form vs (a): {speed['loss_ratio']:.1f}x faster "
      f"({'MET' if speed['loss_ratio'] >= PAIRWISE_TARGET_RATIO else 'MISSED'}: target >= {PAIRWISE_TARGET_RATIO:g}); "
      f"whole step vs (b) Siamese: {speed['step_ratio']:.0f}x")
if growth:
    print("extra peak memory from K = 10 to K = 100: " + ", ".join(f"{m} x{f:.1f}" for m, f in growth.items()))
display(speed_table.round(5))
pd.DataFrame(memory_rows).round(1)

# %% [markdown]
# On this run the matrix form is {glue:text}`speed_ratio_enumerated:.1f` times faster than
# enumerating the pairs, and a whole training step {glue:text}`speed_ratio_siamese:.0f` times
# faster than a Siamese network over the same pairs.
#
# ## The network (Sec. 3)
#
# LeNet with batch normalisation (`reprolib.networks.LeNetBN`): 20 and 50 filters of 5 × 5, each
# followed by batch norm, ReLU and 2 × 2 max-pooling, then FC 500 with batch norm and ReLU and
# FC $K$; the softmax sits in the cost layer. The same network, with cross-entropy instead of the
# pairwise cost, is the classifier of Table 1; without the softmax, trained with a hinge loss on
# Euclidean distances, it is the Siamese baseline of Fig. 3.

# %%
probe = LeNetBN(K, channels, side).to(device)
assert probe(x_train[:4]).shape == (4, K) and probe.hidden(x_train[:4]).shape == (4, 500)
print(probe)

# %% [markdown]
# ## Training
#
# Every run is `n_steps` steps of mini-batch gradient descent on one of three objectives:
#
# * **clustering** (the paper's method, "NNclustering"): softmax outputs, Eq. (2)-(3) over the
#   batch's known pairs;
# * **Siamese baseline**: the network's $K$ outputs as an embedding, with Torch's hinge embedding
#   criterion on the Euclidean distance $d$ of each known pair ($d$ for similar pairs,
#   $\max(0, 1 - d)$ for dissimilar ones), followed by k-means;
# * **classification** (Table 1): cross-entropy on the labels.
#
# Constraints come in two forms. *Sampled* constraints (Fig. 3-6) are tuples drawn uniformly
# from all pairs of the training part; a step takes `batch_size / 2` random tuples, feeds their
# images once and builds $S$ with `constraints_from_pairs` (Eq. (6)). *Full* constraints among a
# labelled subset (Table 1) are all pairs of a batch of labelled images, $S$ from their labels.
# Each run writes a checkpoint as it goes, so an interrupted run resumes; restarts are
# independent initialisations and the best is kept, by the lowest final training loss (Fig. 3)
# or the highest training accuracy (Table 1), as in the paper.

# %%
class TupleBatches:
    """Sampled constraints: each step, batch_size / 2 random tuples, their images fed once (Eq. 6)."""

    def __init__(self, pairs: PairConstraints, batch_size: int | None = None):
        self.pairs, self.batch_size = pairs, batch_size or budget.batch_size

    def __call__(self):
        chosen = torch.randint(len(self.pairs), (max(1, self.batch_size // 2),)).numpy()
        samples, S = constraints_from_pairs(self.pairs.subset(chosen))
        return samples, S, None


class LabelledBatches:
    """Full constraints among labelled images: a random batch, every pair known from the labels."""

    def __init__(self, labelled: np.ndarray):
        self.labelled = labelled

    def __call__(self):
        batch = self.labelled[torch.randperm(len(self.labelled))[:budget.batch_size].numpy()]
        return batch, constraints_from_labels(y_train[batch]), torch.from_numpy(y_train[batch])


def objective(method: str, outputs: torch.Tensor, S: torch.Tensor, y) -> torch.Tensor:
    if method == "clustering":
        return pairwise_kl(torch.softmax(outputs, dim=1), S.to(outputs.device), margin)  # Eq. (2)-(3)
    if method == "siamese":
        return hinge_embedding(outputs, S.to(outputs.device))  # reprolib.losses
    return F.cross_entropy(outputs, y.to(outputs.device))


def new_optimiser(model, schedule):
    if schedule.optimizer == "sgd":  # the original Torch code: momentum 0.9, weight decay 5e-4
        return torch.optim.SGD(model.parameters(), lr=schedule.learning_rate, momentum=0.9, weight_decay=5e-4)
    return torch.optim.Adam(model.parameters(), lr=schedule.learning_rate)  # the PyTorch successor


STEPS_PER_ROUND = 25  # a checkpoint every 25 steps


def train(method: str, batches, n_outputs: int, run_seed: int, name: str, schedule=None) -> LeNetBN:
    """n_steps steps of `method` on batches from `batches`; the model carries its loss history.

    `schedule` (optimizer, learning_rate, n_steps) defaults to the profile's budget."""
    schedule = schedule or budget
    training.seed_everything(run_seed)
    model = LeNetBN(n_outputs, channels, side).to(device)
    optimiser = new_optimiser(model, schedule)
    n_rounds = -(-schedule.n_steps // STEPS_PER_ROUND)

    def round_fn(r: int) -> dict:
        losses = []
        for step in range(r * STEPS_PER_ROUND, min(schedule.n_steps, (r + 1) * STEPS_PER_ROUND)):
            if schedule.optimizer == "sgd":  # the original halves the rate every quarter of training
                for group in optimiser.param_groups:
                    group["lr"] = schedule.learning_rate * 0.5 ** (4 * step // schedule.n_steps)
            index, S, y = batches()
            loss = objective(method, model(x_train[index]), S, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        return {"loss": float(np.mean(losses))}

    model.history = training.run_epochs(n_rounds, round_fn, checkpoints / f"{name}.pt",
                                        {"model": model, "optimiser": optimiser}, desc=name)
    model.final_loss = model.history[-1]["loss"] if model.history else float("nan")
    return model


@torch.no_grad()
def forward_all(model: LeNetBN, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, last hidden layer) for all of x, in evaluation mode."""
    model.eval()
    hidden = torch.cat([model.hidden(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    outputs = model.head(hidden)
    model.train()
    return outputs.cpu().numpy(), hidden.cpu().numpy()


def best_of_restarts(method: str, batches, n_outputs: int, name: str, score=None) -> LeNetBN:
    """n_restarts fresh initialisations; the lowest final loss, or the highest `score(model)`, wins."""
    models = [train(method, batches, n_outputs, training.run_seed(seed, r), f"{name}-restart{r}")
              for r in range(budget.n_restarts)]
    if score is None:
        return min(models, key=lambda m: m.final_loss)
    return max(models, key=score)


def kmeans_labels(features: np.ndarray, n_clusters_: int) -> np.ndarray:
    """k-means with the best of `kmeans_n_init` restarts by inertia (Sec. 3.1: 50; the `book` profile 10)."""
    return KMeans(n_clusters_, n_init=budget.kmeans_n_init, random_state=seed).fit_predict(features)


def scores(y: np.ndarray, pred: np.ndarray) -> dict:
    """Purity and NMI; NMI normalised as in Strehl and Ghosh (geometric mean of the entropies)."""
    return {"purity": metrics.purity(y, pred), "nmi": metrics.nmi(y, pred, "geometric")}

# %% [markdown]
# ## Table 1: clustering against classification (and the headline)
#
# Full constraints among `n` labelled training images per class (every pair of them), the same
# network trained with the pairwise cost (clustering) and with cross-entropy (classification).
# Both are evaluated on the held-out part; for the clustering network, each output node gets the
# class that the Hungarian method assigns it on the labelled training images (Sec. 3.3: "the label
# of each cluster is obtained from the training set"). The paper trains on MNIST's 60,000
# training images; 600 images per class is more than `mnist5k` holds, so our largest setting is
# *all* training images of the split ({glue:text}`per_class_available` in the smallest class),
# shown beside the paper's 600-per-class row.

# %%
# (classification, clustering) held-out accuracy per training images per class; "all" is our
# whole training split, shown beside the paper's largest per-class setting short of "full"
PAPER_TABLE1_BY_DATA = {
    "mnist": {6: (0.824, 0.794), 60: (0.947, 0.951), 600: (0.983, 0.988), "full": (0.994, 0.996)},
    "cifar10": {5: (0.213, 0.220), 50: (0.346, 0.370), 500: (0.550, 0.532), "full": (0.737, 0.734)},
}
paper_data = "cifar10" if dataset == "cifar10" else "mnist" if dataset in ("mnist", "mnist5k") else None
PAPER_TABLE1 = PAPER_TABLE1_BY_DATA.get(paper_data, {})
report.glue("per_class_available", per_class_available)
table1_settings = list(dict.fromkeys([*budget.table1_per_class, samples_per_class]))


def labelled_per_class(n_per_class) -> np.ndarray:
    """Indices of n_per_class training images of every class (all of them for None)."""
    if n_per_class is None:
        return np.arange(len(y_train))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y_train == c), n_per_class, replace=False)
                                   for c in np.unique(y_train)]))


def heldout_accuracy(model: LeNetBN, labelled: np.ndarray, method: str) -> tuple[float, float]:
    """(training accuracy, held-out accuracy); clusters mapped to classes on the labelled images."""
    pred_train = forward_all(model, x_train[labelled])[0].argmax(1)
    pred_test = forward_all(model, x_test)[0].argmax(1)
    if method == "classification":
        return float(np.mean(pred_train == y_train[labelled])), float(np.mean(pred_test == y_test))
    mapping = metrics.hungarian_mapping(y_train[labelled], pred_train)
    return (metrics.cluster_acc(y_train[labelled], pred_train, mapping),
            metrics.cluster_acc(y_test, pred_test, mapping))


table1_rows, table1_models = [], {}
started = time.perf_counter()
for n_per_class in table1_settings:
    labelled = labelled_per_class(n_per_class)
    setting = "all" if n_per_class is None else f"{n_per_class}"
    for method in ("clustering", "classification"):
        model = best_of_restarts(method, LabelledBatches(labelled), full.n_classes,  # Sec. 3.3: K = classes
                                 f"table1-{method}-{setting}",
                                 score=lambda m: heldout_accuracy(m, labelled, method)[0])
        train_acc, test_acc = heldout_accuracy(model, labelled, method)
        paper = PAPER_TABLE1.get(n_per_class, (None, None))[0 if method == "classification" else 1]
        table1_rows.append({"per class": setting, "images": len(labelled), "method": method,
                            "train acc": train_acc, "held-out acc": test_acc, "paper": paper})
        table1_models[(n_per_class, method)] = model
        record.add("table1", method, dataset, f"samples per class={setting}, held-out", "acc", test_acc, paper=paper)
table1_seconds = time.perf_counter() - started
table1 = pd.DataFrame(table1_rows)
table1["difference"] = table1["held-out acc"] - table1["paper"].astype(float)
if "all" in set(table1["per class"]) and PAPER_TABLE1:
    largest = max(k for k in PAPER_TABLE1 if k != "full")  # the paper's row closest to "all"
    table1[f"paper, {largest} per class"] = [PAPER_TABLE1[largest][0 if m == "classification" else 1]
                                             if c == "all" else None for c, m in zip(table1["per class"], table1.method)]
table1.round(4)

# %%
headline_acc = float(table1[(table1["per class"] == str(samples_per_class)) & (table1.method == "clustering")]
                     ["held-out acc"].iloc[0])
headline_paper = PAPER_TABLE1.get(samples_per_class, (None, None))[1]
record.headline("NNclustering", "acc", headline_acc, paper=headline_paper,
                setting=f"full constraints among {samples_per_class} training images per class, held-out, "
                        f"K={full.n_classes}, {budget.n_steps} steps, best of {budget.n_restarts}")
report.glue("headline_acc", headline_acc)
report.glue("samples_per_class", samples_per_class)
classification_acc = float(table1[(table1["per class"] == str(samples_per_class))
                                  & (table1.method == "classification")]["held-out acc"].iloc[0])
report.glue("classification_acc", classification_acc)
print(f"held-out accuracy with full constraints among {samples_per_class} images per class: clustering "
      f"{headline_acc:.4f}, classification {classification_acc:.4f} (paper: 0.951 / 0.947 with 60 per class)")

# %% [markdown]
# With all pairs among {glue:text}`samples_per_class` labelled images per class, the clustering
# network labels {glue:text}`headline_acc:.3f` of the held-out digits correctly (after mapping
# its output nodes to classes on the training images); the same network trained as a classifier
# reaches {glue:text}`classification_acc:.3f`.
#
# ## Fig. 3: purity and NMI against the number of constraints
#
# Constraints sampled uniformly from all pairs of the training part (about 1 in 10 similar, as
# in the paper). For each count: the clustering network on the training part (every training
# image, constrained or not) and on the held-out part; k-means on its last hidden layer (500-D,
# held-out); and the Siamese baseline + k-means (held-out).

# %%
def constraint_counts() -> list[int]:
    n_pairs = len(y_train) * (len(y_train) - 1) // 2
    kept = [c for c in budget.constraint_counts if c <= n_pairs]
    if len(kept) < len(budget.constraint_counts):
        print(f"counts above {n_pairs} (all pairs of {len(y_train)} images) skipped")
    return kept


def fig3_runs(count: int) -> dict:
    """The four curves of Fig. 3 at one constraint count; returns rows and the trained models."""
    pairs = sample_constraints(y_train, count, seed=seed)
    clustering = best_of_restarts("clustering", TupleBatches(pairs), K, f"fig3-clustering-{count}")
    siamese = best_of_restarts("siamese", TupleBatches(pairs), K, f"fig3-siamese-{count}")
    out_train, _ = forward_all(clustering, x_train)
    out_test, hidden_test = forward_all(clustering, x_test)
    z_test, _ = forward_all(siamese, x_test)
    rows = {"NNclustering (train)": scores(y_train, out_train.argmax(1)),
            "NNclustering (held-out)": scores(y_test, out_test.argmax(1)),
            "NNclustering feature + k-means (held-out)": scores(y_test, kmeans_labels(hidden_test, K)),
            "Siamese hinge + k-means (held-out)": scores(y_test, kmeans_labels(z_test, K))}
    n_similar = int((pairs.relation == 1).sum())
    return {"rows": [{"constraints": count, "similar share": n_similar / count, "method": m, **s}
                     for m, s in rows.items()],
            "clustering": clustering, "siamese": siamese, "pairs": pairs}


report.glue("size_ratio", 60000 / len(y_train))                # MNIST-train against our training part
report.glue("density_ratio", (60000 / len(y_train)) ** 2)      # pairs grow with the square
fig3_models, fig3_rows = {}, []
if experiments:
    for count in constraint_counts():
        found = fig3_runs(count)
        fig3_rows += found["rows"]
        fig3_models[count] = found
fig3 = pd.DataFrame(fig3_rows)
for row in fig3_rows:
    for metric in ("purity", "nmi"):
        record.add("fig3", row["method"], dataset, f"constraints={row['constraints']}", metric, row[metric])
fig3.round(4)

# %%
if len(fig3):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric in zip(axes, ("purity", "nmi")):
        sns.lineplot(fig3, x="constraints", y=metric, hue="method", marker="o", ax=ax, legend=ax is axes[1])
        ax.set(xscale="log", ylim=(0, 1.02), title=f"Fig. 3: {metric} ({dataset})", xlabel="number of constraints")
    axes[1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    plotting.save_figure(fig, out, "fig3")
    plt.show()

# %% [markdown]
# The paper's MNIST panel: with 1,200 constraints sampled from the 60,000 training images, purity
# above 0.9 and NMI above 0.8, the clustering network ahead of both k-means variants at low
# counts, the held-out curve on top of the training curve. Our training part is
# {glue:text}`size_ratio:.0f` times smaller, so the same number of constraints covers its pairs
# {glue:text}`density_ratio:.0f` times more densely (checked in the targets below).
#
# ## Fig. 4: t-SNE of the softmax outputs
#
# Held-out images, embedded by t-SNE from the clustering network's softmax outputs, for three
# constraint counts (the paper's 300, 1,200 and 12,000 on MNIST).

# %%
shown_counts = [c for c in budget.tsne_counts if c in fig3_models]
if shown_counts:
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(y_test), size=min(budget.tsne_points, len(y_test)), replace=False))
    fig, axes = plt.subplots(1, len(shown_counts), figsize=(4.3 * len(shown_counts), 4.2), squeeze=False)
    for ax, count in zip(axes[0], shown_counts):
        softmax_out = torch.softmax(torch.from_numpy(forward_all(fig3_models[count]["clustering"], x_test)[0]), 1)
        xy = TSNE(2, init="pca", perplexity=30, random_state=seed).fit_transform(softmax_out[shown].numpy())
        sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=y_test[shown].astype(str), palette="colorblind", s=6,
                        linewidth=0, ax=ax, legend=ax is axes[0, -1])
        ax.set(title=f"{count} constraints", xticks=[], yticks=[])
    axes[0, -1].legend(title="class", bbox_to_anchor=(1.02, 1), loc="upper left", markerscale=2)
    fig.suptitle(f"Fig. 4: t-SNE of softmax outputs, {len(shown)} held-out images")
    plotting.save_figure(fig, out, "fig4")
    plt.show()

# %% [markdown]
# ## Fig. 5 (left): flipped constraints
#
# A share of the sampled relationships is flipped (similar becomes dissimilar and vice versa).
# With about one similar pair in ten, flipping 10% adds as many false similar pairs as there are
# true ones. Held-out purity and NMI of the clustering network.

# %%
noise_rows = []
if experiments and budget.noise_count in fig3_models:
    noise_rows.append({"flipped": 0.0, **scores(y_test, forward_all(fig3_models[budget.noise_count]["clustering"],
                                                                      x_test)[0].argmax(1))})
    for flip in budget.noise_levels:
        noisy = sample_constraints(y_train, budget.noise_count, seed=seed, flip_fraction=flip)
        model = best_of_restarts("clustering", TupleBatches(noisy), K, f"fig5-noise-{flip:g}")
        noise_rows.append({"flipped": flip, **scores(y_test, forward_all(model, x_test)[0].argmax(1))})
noise = pd.DataFrame(noise_rows)
for row in noise_rows:
    for metric in ("purity", "nmi"):
        record.add("fig5_noise", "NNclustering (held-out)", dataset,
                   f"constraints={budget.noise_count}, flipped={row['flipped']:g}", metric, row[metric])
if len(noise):
    ax = noise.plot(x="flipped", y=["purity", "nmi"], marker="o", figsize=(5.5, 3.6), ylim=(0, 1.02))
    ax.set(title=f"Fig. 5 (left): {budget.noise_count} constraints, some flipped", xlabel="share of constraints flipped")
    plotting.save_figure(ax.figure, out, "fig5_noise")
    plt.show()
noise.round(4)

# %% [markdown]
# ## Fig. 5 (right) and Fig. 6: an unknown number of clusters
#
# The clustering network with $K$ output nodes, for $K$ from the number of classes up to 100,
# trained on the same constraints; the baseline is the Siamese embedding with k-means for
# $K$ clusters. Held-out NMI, and the number of output nodes that receive more than 1% of the
# held-out images.

# %%
def busy_clusters(pred: np.ndarray, share: float = 0.01) -> int:
    """How many clusters hold more than `share` of the points."""
    return int((np.bincount(pred) > share * len(pred)).sum())


k_rows, k_predictions = [], {}
if experiments and budget.noise_count in fig3_models:
    base = fig3_models[budget.noise_count]
    z_test = forward_all(base["siamese"], x_test)[0]
    for k in budget.cluster_counts:
        model = base["clustering"] if k == K else best_of_restarts(
            "clustering", TupleBatches(base["pairs"]), k, f"fig5-k-{k}")
        pred = forward_all(model, x_test)[0].argmax(1)
        k_predictions[k] = pred
        baseline_pred = kmeans_labels(z_test, k)
        k_rows += [{"K": k, "method": "NNclustering", "nmi": metrics.nmi(y_test, pred, "geometric"),
                    "clusters > 1%": busy_clusters(pred)},
                   {"K": k, "method": "Siamese hinge + k-means", "nmi": metrics.nmi(y_test, baseline_pred, "geometric"),
                    "clusters > 1%": busy_clusters(baseline_pred)}]
k_table = pd.DataFrame(k_rows)
for row in k_rows:
    record.add("fig5_k", row["method"], dataset, f"constraints={budget.noise_count}, K={row['K']}, held-out",
               "nmi", row["nmi"])
    record.add("fig6", row["method"], dataset, f"constraints={budget.noise_count}, K={row['K']}, held-out",
               "clusters_over_1pct", row["clusters > 1%"])
if len(k_table):
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(k_table, x="K", y="nmi", hue="method", marker="o", ax=ax)
    ax.set(ylim=(0, 1.02), title="Fig. 5 (right): NMI against the number of clusters", xlabel="K")
    plotting.save_figure(fig, out, "fig5_k")
    plt.show()
k_table.round(4)

# %%
shown_k = 30 if 30 in k_predictions else (max(k_predictions) if k_predictions else None)
if shown_k is not None:
    table = contingency_matrix(k_predictions[shown_k], y_test)  # rows: clusters that received images
    used = np.unique(k_predictions[shown_k])
    full_table = np.zeros((shown_k, full.n_classes), dtype=int)
    full_table[used] = table
    fig, ax = plt.subplots(figsize=(6, max(3, 0.22 * shown_k)))
    sns.heatmap(full_table, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax, mask=full_table == 0,
                annot_kws={"fontsize": 7}, xticklabels=full.class_names, yticklabels=range(shown_k))
    ax.set(xlabel="class", ylabel="output node", title=f"Fig. 6: contingency table, K = {shown_k} (held-out)")
    plotting.save_figure(fig, out, "fig6")
    plt.show()
k_max = max(k_predictions) if k_predictions else None
if k_max is not None:
    report.glue("k_max", k_max)
    report.glue("busy_at_k_max", busy_clusters(k_predictions[k_max]))

# %% [markdown]
# ## Ablation: the original optimiser against the successor's
#
# The paper says only "mini-batch stochastic gradient descent". The original Torch code uses SGD
# with momentum and weight decay on batches of 32 (our setting); the authors' PyTorch successor
# uses Adam ($10^{-3}$) on batches of 100. The same sparse constraints as in Fig. 3, the same
# number of images seen, held-out scores.

# %%
from types import SimpleNamespace

optimiser_rows = []
if experiments and budget.optimizer_count in fig3_models:
    successor = SimpleNamespace(optimizer="adam", learning_rate=1e-3,
                                n_steps=max(1, budget.n_steps * budget.batch_size // 100))
    adam_model = train("clustering", TupleBatches(fig3_models[budget.optimizer_count]["pairs"], batch_size=100), K,
                       training.run_seed(seed, 0), f"ablation-adam-{budget.optimizer_count}", schedule=successor)
    for name, model in [(f"SGD, batch {budget.batch_size}, {budget.n_steps} steps (original)",
                         fig3_models[budget.optimizer_count]["clustering"]),
                        (f"Adam 1e-3, batch 100, {successor.n_steps} steps (successor)", adam_model)]:
        found = scores(y_test, forward_all(model, x_test)[0].argmax(1))
        optimiser_rows.append({"optimiser": name, **found})
        for metric, value in found.items():
            record.add("ablation_optimizer", "NNclustering (held-out)", dataset,
                       f"constraints={budget.optimizer_count}, {name}", metric, value)
pd.DataFrame(optimiser_rows).round(4)

# %% [markdown]
# ## Reference runs
#
# The `paper` profile ({glue:text}`paper_steps` SGD steps per run, {glue:text}`paper_restarts`
# restarts per setting, {glue:text}`paper_counts` constraint counts) is meant for a GPU; runs committed under `results/03_hsu_kira/` (each with the `COMMAND` that
# made it) are shown here beside the paper and this build.

# %%
report.glue("paper_steps", BUDGETS["paper"]["n_steps"])
report.glue("paper_restarts", BUDGETS["paper"]["n_restarts"])
report.glue("paper_counts", len(BUDGETS["paper"]["constraint_counts"]))


def key_numbers(record_: dict) -> dict:
    """The numbers every run of this chapter reports: Table 1 held-out accuracies."""
    found = {}
    for row in record_["rows"]:
        if row["experiment"] == "table1":
            found[f"Table 1, {row['method']}, {row['setting'].split(',')[0]}"] = row["value"]
    return found


reference_dir = Path("..") / "results" / "03_hsu_kira"
this_build = key_numbers(record.to_dict())
columns = {"paper": {k: next((r["paper_value"] for r in record.rows if r["experiment"] == "table1"
                                      and f"Table 1, {r['method']}, {r['setting'].split(',')[0]}" == k), None)
                             for k in this_build}}
for path in sorted(reference_dir.glob("*/results.json")):
    reference = results.load(path)
    p_ = reference["parameters"]
    columns[f"reference: {path.parent.name} ({p_['n_steps']} steps x {p_['n_restarts']} restarts, "
            f"{reference['wall_clock_seconds'] / 60:.0f} min, {reference['device']})"] = key_numbers(reference)
columns[f"this build ({profile}, {budget.n_steps} steps x {budget.n_restarts})"] = this_build
pd.DataFrame(columns).round(4)

# %% [markdown]
# ## Targets
#
# Held-out clustering accuracy with full constraints among 60 training images per class: at least
# 0.93 at the `paper` profile (the paper: 0.951 on full MNIST) and at least 0.88 at the `book`
# profile. And the paper's two claims about the figures: the clustering network beats both
# k-means baselines at the lowest constraint counts, and with $K = 100$ the number of clusters
# holding more than 1% of the data stays near 10 (we count within 2 of the number of classes). The
# paper's one number for Fig. 3: purity above 0.9 and NMI above 0.8 with 1,200 constraints
# (held-out, MNIST).

# %%
targets = {"book": 0.88, "paper": 0.93}
verdicts = []
if samples_per_class == 60 and profile in targets and paper_data == "mnist":
    verdicts.append(("held-out accuracy, 60 per class", f"{headline_acc:.4f} >= {targets[profile]}",
                     headline_acc >= targets[profile]))
if len(fig3):
    low = fig3[fig3.constraints == fig3.constraints.min()].set_index("method")
    ours_low = low.loc["NNclustering (held-out)", "purity"]
    best_kmeans = max(low.loc["NNclustering feature + k-means (held-out)", "purity"],
                      low.loc["Siamese hinge + k-means (held-out)", "purity"])
    verdicts.append((f"beats both k-means baselines at {int(fig3.constraints.min())} constraints (purity)",
                     f"{ours_low:.4f} vs {best_kmeans:.4f}", ours_low > best_kmeans))
if len(fig3) and 1200 in set(fig3.constraints) and paper_data == "mnist":
    at_1200 = fig3[(fig3.constraints == 1200) & (fig3.method == "NNclustering (held-out)")].iloc[0]
    verdicts.append(("Fig. 3: purity > 0.9 and NMI > 0.8 at 1,200 constraints (held-out)",
                     f"purity {at_1200.purity:.4f}, NMI {at_1200.nmi:.4f}", at_1200.purity > 0.9 and at_1200.nmi > 0.8))
if k_max is not None and k_max >= 50:
    busy = busy_clusters(k_predictions[k_max])
    verdicts.append((f"clusters with > 1% of the data at K = {k_max}", f"{busy} (near {full.n_classes})",
                     abs(busy - full.n_classes) <= 2))
if budget.benchmark_n >= 1000:  # the target is set for a batch of 1,000 (the smoke profile times 200)
    verdicts.append((f"loss + backward at N = {budget.benchmark_n}, K = 10: matrix form vs (a)",
                     f"{speed['loss_ratio']:.1f}x >= {PAIRWISE_TARGET_RATIO:g}x", speed["loss_ratio"] >= PAIRWISE_TARGET_RATIO))
if growth:
    verdicts.append(("peak memory O(N^2), not O(N^2 K): matrix form's growth from K = 10 to 100",
                     f"x{growth['matrix']:.2f} (enumerated: x{growth['enumerated']:.1f}) < x{PAIRWISE_MEMORY_GROWTH_MAX:g}",
                     growth["matrix"] < PAIRWISE_MEMORY_GROWTH_MAX))
targets_table = pd.DataFrame([{"target": t, "ours": v, "verdict": "MET" if ok else "MISSED"} for t, v, ok in verdicts])
with pd.option_context("display.max_colwidth", None):  # show each target in full
    display(targets_table)

# %%
# glued for the prose below (NaN where an experiment was switched off: experiments=False)
report.glue("low_count", int(fig3.constraints.min()) if len(fig3) else 0)
report.glue("low_purity_output", float(ours_low) if len(fig3) else float("nan"))
report.glue("low_purity_kmeans", float(best_kmeans) if len(fig3) else float("nan"))
report.glue("purity_sgd", float(optimiser_rows[0]["purity"]) if optimiser_rows else float("nan"))
report.glue("purity_adam", float(optimiser_rows[1]["purity"]) if optimiser_rows else float("nan"))
report.glue("n_restarts_run", budget.n_restarts)

# %% [markdown]
# **What we found.** The criterion, its gradients and its matrix form check out exactly, and
# with dense constraints the clustering network comes close to the paper's Table 1 and to the
# same network trained as a classifier (the table above). With sparse constraints our curves sit
# below the paper's: at {glue:text}`low_count` constraints the network's own output layer reaches
# a held-out purity of {glue:text}`low_purity_output:.3f`, and the better of the two k-means
# variants {glue:text}`low_purity_kmeans:.3f` (the paper: the output layer ahead of both; the
# targets table says whether that holds here). What we know: each setting here is the best of
# {glue:text}`n_restarts_run` training run(s), where the paper keeps the lowest-loss of five; a single run varies a lot with the
# optimiser and the initialisation (the ablation above gives held-out purities of
# {glue:text}`purity_sgd:.3f` with SGD and {glue:text}`purity_adam:.3f` with Adam on the same
# constraints), which is what restarts are for; and our {glue:text}`n_train` training images make
# a given number of constraints {glue:text}`density_ratio:.0f` times denser in pairs than MNIST's
# 60,000 do, which changes what "sparse" means. The `paper` profile ({glue:text}`paper_restarts`
# restarts, {glue:text}`paper_steps` steps) tests the first point; it is meant for a GPU.

# %% [markdown]
# ## Differences from the paper
#
# * **Data.** MNIST's 60,000 training images are not available offline; `mnist5k` (5,000 MNIST
#   digits) is split 80% / 20%, and the 20% plays the paper's testing set. Fig. 3-6 therefore
#   sample constraints from our training part instead of 60,000 images, which makes a given
#   number of constraints much denser, and Table 1's 600-per-class row becomes "all".
# * **Budget in steps.** The paper trains "until the training error has converged"; the original
#   Torch code runs 100 epochs of batch 32. We give every run the same number of optimisation steps
#   (`n_steps`), so that the curves of Fig. 3 compare amounts of information, not of compute. The
#   optimiser is the original code's at every profile (SGD, learning rate 0.01, momentum 0.9,
#   weight decay $5\cdot10^{-4}$, batches of 32 images, the rate halved every quarter of
#   training). The `paper` profile runs about 100 epochs of our training part, with five
#   restarts; the `book` profile far fewer steps and one restart, to fit in minutes on 2 CPU
#   cores (the budget table above has the numbers). The PyTorch successor's Adam is compared in
#   the ablation (without its learning-rate decay, one run against one).
# * **k-means restarts.** Sec. 3.1's 50 restarts at the `paper` profile; the `book` profile keeps
#   the best of `kmeans_n_init` = 10, as Chapter 1 does, to fit its six minutes.
# * **Batches of sampled constraints.** A step draws `batch_size / 2` random tuples and feeds
#   their images once; $S$ holds only the drawn tuples (other known pairs that happen to fall
#   among the same images are left out).
# * **Mean, not sum.** Eq. (6) differentiates the sum $\hat{L}$ over the batch's tuples; we
#   minimise its mean over known ordered pairs, so the step size does not depend on how many
#   constraints a batch holds. With a fixed learning rate this only rescales the steps.
# * **Batch norm after FC 500** as in the authors' code (the paper mentions batch norm for the
#   convolutions); $\epsilon = 10^{-7}$ inside the logarithms of Eq. (1), as in their code.
# * **Restart selection.** Fig. 3's "lowest training loss" is read as the mean mini-batch loss
#   over the last 25 steps of a run (training mode), not a separate pass over all constraints.
# * **The Siamese baseline** is trained with the same in-batch enumeration (each image fed once,
#   batch norm over the whole batch), which computes the same hinge embedding loss as two towers;
#   k-means on it and on the hidden layer uses Euclidean distance.
# * **Fig. 5 (left)** is run at one constraint count; the paper's remark that the degradation
#   shrinks as constraints grow (at a fixed noise level) is not tested here.
# * **Small images.** 8 × 8 digits use 'same' padding in both convolutions (an unpadded LeNet
#   needs at least 16 × 16 inputs).
# * **NMI** is normalised by the geometric mean of the two entropies, as in Strehl and Ghosh, the
#   reference the paper cites for it.
# * **Fig. 5 (right)**: the Siamese baseline network keeps $K$ = number of classes outputs for
#   every K; only the number of k-means clusters changes.
# * **Restarts.** Fig. 3's "lowest training loss among five random restarts" and Table 1's
#   "highest training accuracy among five" are kept as written, at the `paper` profile.
#
# ## What we could not reproduce, and why
#
# CIFAR-10 (Fig. 3, Fig. 4's second row, Table 1's CIFAR rows) needs a download: the chapter
# accepts `dataset=cifar10` at the `paper` profile where torchvision can fetch it (Colab), but it
# was not run offline. Table 1's "MNIST full" row and the 600-per-class row need more images than
# `mnist5k` holds.
#
# All references are on the book's {doc}`../book/references` page.

# %%
record.write(output_dir)
print(f"wrote {Path(output_dir) / 'results.json'} with {len(record.rows)} rows")
