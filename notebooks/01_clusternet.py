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
# # Chapter 1: Constrained k-means, then ClusterNet
#
# **Claim.** With labels for only 1-2% of the images, ClusterNet
# {cite}`shukla2018clusternet` clusters digits almost as well as a classifier: a convolutional
# autoencoder is fine-tuned with a k-means style *cluster loss*, a *pairwise KL loss* over similar
# and dissimilar pairs (from the few labels, and from the model's own assignments), and the
# reconstruction loss, while the cluster centres, seeded from the labelled means as in
# constrained k-means {cite}`basu2002seeding`, follow the embeddings with per-centre adaptive
# rates. The paper reports 96.8% accuracy on MNIST with 0.5% labels (Table 3) and 98.4% on
# held-out MNIST digits with 2% (Table 5).
#
# This chapter first derives and implements constrained k-means (the paper's Alg. 1), then every
# equation of ClusterNet, each next to its code with a numerical check, and regenerates Tables 3,
# 5 and 6 and Figures 1-3 and 5 on the data we can get offline (`mnist5k`, 5,000 MNIST digits).

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
# | Alg. 1 | constrained k-means (Basu et al.) | `reprolib.cluster.ConstrainedKMeans`, {ref}`sec-ckm` |
# | Eq. (1) | $KL(p \| q)$ | `reprolib.losses.kl_matrix`, {ref}`sec-pairwise` |
# | Eq. (2) | symmetric pair cost $KL(p\|q) + KL(q\|p)$ | `reprolib.losses.pairwise_kl` (both orders), {ref}`sec-pairwise` |
# | Eq. (3) | total loss with balancing coefficient $\lambda$ | `clusternet_loss`, {ref}`sec-total` |
# | Eq. (4), Eq. (5) | cluster loss, unlabelled / labelled | `reprolib.losses.cluster_loss`, {ref}`sec-cluster-loss` |
# | Eq. (6), Eq. (7) | pairwise loss, labelled / unlabelled, with margin $m$ | `reprolib.losses.clusternet_pair_loss`, {ref}`sec-pairwise` |
# | Eq. (8) | reconstruction loss | `reconstruction_loss`, {ref}`sec-total` |
# | Eq. (9) | centres from labelled means in the latent space | `initial_centers`, {ref}`sec-centres` |
# | Eq. (10), Eq. (11) | hard assignments, unlabelled / labelled | `assign`, {ref}`sec-centres` |
# | Eq. (12), Eq. (13) | centre updates with per-centre adaptive rates | `update_centers`, {ref}`sec-centres` |
# | Eq. (14), Eq. (15) | similar / dissimilar pair sets | `reprolib.losses.constraints_from_labels`; Eq. (15) as printed: `cross_constraints`, {ref}`sec-alg2` |
# | Eq. (16) | assignment probabilities from distances | `assignment_probs`, {ref}`sec-probs` |
# | Eq. (17) | annealing of $\lambda$ ($T_1 = 5$, $T_2 = 40$) | `annealed_lambda`, {ref}`sec-total` |
# | Eq. (18) | NMI normalised by $\max(H(c), H(c'))$ | `reprolib.metrics.nmi(average="max")` (Chapter 0) |
# | Alg. 2 | alternating optimisation | `finetune`, {ref}`sec-alg2` |

# %% tags=["parameters"]
profile = "book"          # smoke | book | paper
dataset = "mnist5k"       # any dataset of reprolib.data (28x28, 32x32 and 8x8 images work)
seed = 0                  # seeds the split, the labelled subsets and training
n_clusters = None         # None: the number of classes (ClusterNet has one centre per class)
label_fraction = None     # labelled fraction of every class for the headline run; None: 0.02
labels_per_class = None   # or labelled images per class (2% of MNIST-train is about 120); not with label_fraction
pretrain_epochs = None    # autoencoder pretraining epochs (paper: 100); None: the profile's
finetune_epochs = None    # ClusterNet epochs (paper: 60); None: the profile's
margin = 2.0              # hinge margin m of Eq. (6)-(7) (not given in the paper; Hsu-Kira use 2)
center_counts = "running"  # N_k of Eq. (12)-(13): "running" over all of training, or "epoch" (restart each epoch)
unlabelled_pairs = "unlabelled"  # Eq. (15)'s pairs: two unlabelled points, or "cross" (unlabelled with labelled)
labelled_loss = "pairs"   # the labelled term: Eq. (6)'s pairs, or "ce" (diagnostic: cross-entropy of Eq. (16))
learning_rate = None      # Adam learning rate (paper: 1e-4); None: the profile's
batch_size = 256          # unlabelled images per fine-tuning step (not given in the paper)
pretrain_batch_size = 64  # images per pretraining step (not given in the paper)
n_runs = None             # labelled/unlabelled splits per label fraction (paper: 5); None: the profile's
n_samples = None          # use a stratified subset of this many images; None: the profile's (all)
sweep = True              # run the label-fraction sweep of Tables 3 and 5 (False: only the headline's labels)
ablation = None           # run the fixed-lambda runs of Fig. 5(b); None: the profile's (book: the committed run's)
output_dir = "runs/01_clusternet"  # results.json, figures and checkpoints (set by python -m reprolib run --out)

# %%
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from reprolib import data, metrics, params, plotting, report, results, training
from reprolib.cluster import ConstrainedKMeans, seeded_centers
from reprolib.device import describe_device, pick_device
from reprolib.losses import cluster_loss, clusternet_pair_loss, constraints_from_labels, kl_matrix, pairwise_kl
from reprolib.networks import Dropout

if label_fraction is not None and labels_per_class is not None:
    raise params.ParameterError("labels_per_class", "give label_fraction or labels_per_class, not both")
label_fraction = 0.02 if label_fraction is None and labels_per_class is None else label_fraction
params.check(dict(profile=profile, dataset=dataset, seed=seed, n_clusters=n_clusters,
                  **({"label_fraction": label_fraction} if label_fraction is not None else {}),
                  labels_per_class=labels_per_class, pretrain_epochs=pretrain_epochs,
                  finetune_epochs=finetune_epochs, margin=margin, center_counts=center_counts,
                  unlabelled_pairs=unlabelled_pairs, labelled_loss=labelled_loss,
                  learning_rate=learning_rate,
                  batch_size=batch_size, pretrain_batch_size=pretrain_batch_size, n_runs=n_runs,
                  n_samples=n_samples, ablation=ablation))

PAPER_FRACTIONS = [0.01, 0.02, 0.05, 0.10]  # Table 5
BUDGETS = {
    "smoke": dict(pretrain_epochs=1, finetune_epochs=2, learning_rate=1e-3, n_runs=1, n_samples=600,
                  fractions=[0.02], table3_fraction=None, lambdas=[], ablation=False, tsne_points=200,
                  kmeans_n_init=1, oracle_epochs=1),
    "book": dict(pretrain_epochs=8, finetune_epochs=8, learning_rate=1e-3, n_runs=1, n_samples=None,
                 fractions=[0.02], table3_fraction=0.005, lambdas=[0.0], ablation=False, tsne_points=700,
                 kmeans_n_init=10, oracle_epochs=3),
    "paper": dict(pretrain_epochs=100, finetune_epochs=60, learning_rate=1e-4, n_runs=5, n_samples=None,
                  fractions=PAPER_FRACTIONS, table3_fraction=0.005, lambdas=[0.0, 0.1, 0.5, 1.0],
                  ablation=True, tsne_points=5000, kmeans_n_init=10, oracle_epochs=10),
}
budget = params.resolve(profile, BUDGETS, pretrain_epochs=pretrain_epochs, finetune_epochs=finetune_epochs,
                        learning_rate=learning_rate, n_runs=n_runs, n_samples=n_samples, ablation=ablation)


class PerClass(int):
    """A label budget of this many labelled images in every class (`labels_per_class`); a float
    budget is a fraction of every class (`label_fraction`, the paper's Tables 3-5)."""

    def __str__(self) -> str:
        return f"{int(self)}/class"


def label_name(label_budget) -> str:
    """How tables and records name a label budget: "0.02" (a fraction) or "120/class"."""
    return str(label_budget) if isinstance(label_budget, PerClass) else f"{label_budget:g}"


def paper_fraction(label_budget) -> float:
    """The fraction of MNIST-train (6,000 images per class) that a label budget corresponds to."""
    return int(label_budget) / 6000 if isinstance(label_budget, PerClass) else label_budget


def record_labels(record_: dict) -> str:
    """The headline label budget of a run's record, named as in its rows."""
    per_class = record_["parameters"].get("labels_per_class")
    return label_name(PerClass(per_class) if per_class is not None else record_["parameters"]["label_fraction"])


headline_labels = label_fraction if labels_per_class is None else PerClass(labels_per_class)
headline_name = label_name(headline_labels)
label_budgets = [headline_labels]
if sweep:
    swept = set(budget.fractions) | ({budget.table3_fraction} if budget.table3_fraction else set())
    label_budgets = sorted(swept | ({label_fraction} if label_fraction is not None else set()))
    label_budgets += [headline_labels] if labels_per_class is not None else []
lambdas = budget.lambdas if budget.ablation else []
device = pick_device()
out = Path(output_dir)
COMMITTED = Path("..") / "results" / "01_clusternet"  # reference runs and sweeps, each with its command
plotting.use_style()
print(f"profile {profile}: {budget}\nlabel budgets {[label_name(b) for b in label_budgets]}; "
      f"device {describe_device(device)}")

# %% [markdown]
# ## Data and splits
#
# The paper's Sec. 5.3 protocol: a stratified 90% / 10% split, the 10% held out from everything
# (pretraining included); inside the 90%, five random labelled / unlabelled splits per label
# fraction. We follow it for every table, so the held-out columns of Table 5 and the
# transductive columns of Table 3 come from the same runs. Images are zero-padded to a side that
# is a multiple of 8 (28 → 32, as the paper's Table 1 lists MNIST at 32 × 32; 8 × 8 digits to 16).

# %%
full = data.load(dataset).stratified_subset(budget.n_samples, seed=seed)
K = n_clusters or full.n_classes
if K < full.n_classes:
    raise params.ParameterError("n_clusters", f"ClusterNet needs one centre per class: at least {full.n_classes}")
record = results.Recorder("01_clusternet", profile,
                          dict(dataset=dataset, seed=seed, n_clusters=K, label_fraction=label_fraction,
                               labels_per_class=labels_per_class,
                               margin=margin, center_counts=center_counts, unlabelled_pairs=unlabelled_pairs,
                               labelled_loss=labelled_loss,
                               batch_size=batch_size, pretrain_batch_size=pretrain_batch_size,
                               sweep=sweep,
                               **vars(budget)), seed, full,
                          device=describe_device(device))
checkpoints = training.checkpoint_dir(out, record.parameters)  # other parameters never resume these


def pad_images(images: torch.Tensor) -> torch.Tensor:
    """Zero-pad H x W to the next multiple of 8, at least 16 (three stride-2 layers)."""
    side = max(16, -(-max(images.shape[-2:]) // 8) * 8)
    dh, dw = side - images.shape[-2], side - images.shape[-1]
    return F.pad(images, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


images = pad_images(full.images)
labels = full.labels.numpy()
train_idx, test_idx = data.stratified_split(labels, 0.1, seed=seed)
x_train, y_train = images[train_idx], labels[train_idx]
x_test, y_test = images[test_idx], labels[test_idx]
smallest_class = int(np.bincount(y_train).min())
if labels_per_class is not None and labels_per_class > smallest_class:
    raise params.ParameterError("labels_per_class", f"at most {smallest_class}, the smallest class of the training "
                                                    f"split; got {labels_per_class}")
print(f"{full.name}: {len(full)} images {tuple(full.image_shape)} padded to {tuple(images.shape[1:])}; "
      f"train {len(train_idx)}, held-out {len(test_idx)}, K = {K}")
report.glue("n_train", len(train_idx))
report.glue("n_test", len(test_idx))


def labelled_for(label_budget, run_seed_: int) -> np.ndarray:
    """Indices of a labelled subset of the training split for a label budget."""
    if isinstance(label_budget, PerClass):
        return data.labelled_subset(y_train, per_class=int(label_budget), seed=run_seed_)
    return data.labelled_subset(y_train, label_budget, seed=run_seed_)

# %% [markdown]
# (sec-ckm)=
# ## Constrained k-means (Alg. 1)
#
# Basu et al.'s constrained k-means {cite}`basu2002seeding` is k-means with two changes, both in
# the paper's Alg. 1: the centres start at the means of the labelled points of each class,
#
# $$\mu_k = \frac{1}{|\mathcal{X}^l_k|}\sum_{x \in \mathcal{X}^l_k} x,$$
#
# and in every assignment step the labelled points keep their class while each unlabelled
# point goes to its nearest centre, $k = \arg\min_k \|x^u_i - \mu_k\|^2$; centres are then the
# means of their members. It minimises the k-means objective over the unlabelled points' assignments
# only. `reprolib.cluster.ConstrainedKMeans` implements it as a scikit-learn estimator
# (`fit(X, y)` with `y = -1` for unlabelled points), vectorised: all squared distances in one
# matrix product, centre sums as a sparse one-hot product.
#
# *Check:* labelled points never move, and with the labels only used to seed (`seeded_only=True`,
# Basu et al.'s Seeded-KMeans) it is exactly scikit-learn's Lloyd k-means from the same centres.

# %%
flat_train = x_train.reshape(len(x_train), -1).numpy()
check_labels = data.partial_labels(y_train, data.labelled_subset(y_train, 0.02, seed=seed))
ckm = ConstrainedKMeans(n_clusters=K).fit(flat_train, check_labels)
assert np.all(ckm.labels_[check_labels >= 0] == check_labels[check_labels >= 0])
seeded = ConstrainedKMeans(n_clusters=K, seeded_only=True, tol=0).fit(flat_train, check_labels)
lloyd = KMeans(K, init=seeded_centers(flat_train, check_labels, K), n_init=1, tol=0, algorithm="lloyd",
               max_iter=300).fit(flat_train)
agree = float(np.mean(seeded.labels_ == lloyd.labels_))
print(f"labelled points kept their class; Seeded-KMeans agrees with scikit-learn on {agree:.4f} of points")
assert agree > 0.99

# %% [markdown]
# ### Speed
#
# The benchmark in `benchmarks/bench_constrained_kmeans.py` times one iteration on 70,000 × 32
# float32 points (K = 10) against scikit-learn's Lloyd iteration from the same centres, in the same
# process. Target: at most 3× scikit-learn's time per iteration.

# %%
from reprolib.benchmarks import constrained_kmeans_vs_sklearn

speed = constrained_kmeans_vs_sklearn(n=70000 if profile != "smoke" else 5000, d=32, k=10, repeats=3 if profile != "smoke" else 1)
print(f"ConstrainedKMeans {1e3 * speed['ours_s_per_iter']:.2f} ms/iteration, scikit-learn "
      f"{1e3 * speed['sklearn_s_per_iter']:.2f} ms/iteration: ratio {speed['ratio']:.2f} (target <= 3)")
report.glue("ckm_speed_ratio", float(speed["ratio"]))
record.add("benchmark", "ConstrainedKMeans", "synthetic 70000x32", "time per iteration / scikit-learn's",
           "ratio", speed["ratio"])

# %% [markdown]
# On this run, an iteration of constrained k-means costs {glue:text}`ckm_speed_ratio:.2f` times
# an iteration of scikit-learn's KMeans (target: at most 3).
#
# ### Constrained vs. plain k-means on pixels and PCA features
#
# Accuracy and NMI (Eq. (18), max-normalised) on the unlabelled training images, with 1% and
# 2% of every class labelled.

# %%
def kmeans_baselines(features: np.ndarray, feature_name: str, fractions_: list[float]) -> list[dict]:
    """Plain k-means vs. constrained k-means (Alg. 1) on `features` of the training split."""
    rows = []
    plain = KMeans(K, n_init=budget.kmeans_n_init, random_state=seed).fit_predict(features)
    for fraction in fractions_:
        partial = data.partial_labels(y_train, data.labelled_subset(y_train, fraction, seed=seed))
        unlabelled = partial < 0
        constrained = ConstrainedKMeans(n_clusters=K).fit(features, partial).labels_
        for method, pred in [("k-means", plain), ("constrained k-means", constrained)]:
            rows.append(dict(features=feature_name, labels=f"{fraction:.0%}", method=method,
                             acc=metrics.cluster_acc(y_train[unlabelled], pred[unlabelled]),
                             nmi=metrics.nmi(y_train[unlabelled], pred[unlabelled], "max")))
    return rows


pca_train = PCA(50, random_state=seed).fit_transform(flat_train)
ckm_rows = kmeans_baselines(flat_train, "pixels", [0.01, 0.02]) + kmeans_baselines(pca_train, "PCA-50", [0.01, 0.02])
ckm_table = pd.DataFrame(ckm_rows)
for row in ckm_rows:
    for metric in ("acc", "nmi"):
        record.add("constrained_kmeans", row["method"], dataset, f"{row['features']}, labels={row['labels']}",
                   metric, row[metric])
ckm_table.pivot_table(index=["features", "labels"], columns="method", values=["acc", "nmi"]).round(3)

# %% [markdown]
# (sec-network)=
# ## The network (Sec. 4.1, Sec. 5.1)
#
# A convolutional autoencoder: three convolutions with 32, 64 and 128 filters, each followed by
# InstanceNorm and LeakyReLU, then a fully connected layer to the 32-dimensional latent space
# with tanh; the decoder mirrors it. Dropout of 10% follows every layer except the decoder's
# last. The paper leaves kernel sizes, strides and padding to the dataset; we use 4 × 4 kernels
# with stride 2 and padding 1, which halve (and, transposed, double) the side exactly.
#
# Two choices of ours make the same network train faster on CPU cores. Its layers keep their
# tensors channels-last (NHWC). Its dropout is `reprolib.networks.Dropout`, which computes what
# `torch.nn.Dropout` computes but draws its random masks with numpy. `make bench` prints what the
# dropout saves (`benchmarks/bench_dropout.py`).

# %%
def conv_block(c_in: int, c_out: int, transposed: bool = False, dropout: float = 0.1) -> list[nn.Module]:
    """Conv (or transposed conv) 4x4 stride 2 -> InstanceNorm -> LeakyReLU -> 10% dropout."""
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(c_in, c_out, 4, stride=2, padding=1)
    return [conv, nn.InstanceNorm2d(c_out), nn.LeakyReLU(0.2), Dropout(dropout)]


class ClusterNetAutoencoder(nn.Module):
    """Sec. 5.1: conv 32-64-128 + FC 32 (tanh) encoder f(theta_e; x), mirrored decoder g(theta_d; z)."""

    def __init__(self, channels: int, side: int, latent_dim: int = 32, dropout: float = 0.1):
        super().__init__()
        s = side // 8
        self.encoder = nn.Sequential(*conv_block(channels, 32), *conv_block(32, 64), *conv_block(64, 128),
                                     nn.Flatten(), nn.Linear(128 * s * s, latent_dim), nn.Tanh())
        self.decoder = nn.Sequential(Dropout(dropout), nn.Linear(latent_dim, 128 * s * s), nn.Tanh(),
                                     Dropout(dropout), nn.Unflatten(1, (128, s, s)),
                                     *conv_block(128, 64, True), *conv_block(64, 32, True),
                                     nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """z = f(theta_e; x) for all of x, in evaluation mode (no dropout)."""
    model.eval()
    z = torch.cat([model.encoder(x[i:i + batch].to(device)).cpu() for i in range(0, len(x), batch)])
    model.train()
    return z


def new_model() -> ClusterNetAutoencoder:
    return ClusterNetAutoencoder(images.shape[1], images.shape[-1]).to(device, memory_format=torch.channels_last)


probe = new_model()
z_probe, recon_probe = probe(x_train[:4].to(device))
assert z_probe.shape == (4, 32) and recon_probe.shape == x_train[:4].shape
assert z_probe.abs().max() <= 1  # tanh latent space
print(probe)

# %% [markdown]
# ## Pretraining the autoencoder
#
# 100 epochs of Adam (learning rate $10^{-4}$, $\beta = (0.9, 0.999)$) on the reconstruction
# error (Sec. 5.1), on the training split only. The `book` profile runs fewer epochs with a larger
# learning rate (see "Differences from the paper"). Checkpoints are written after every epoch;
# rerunning with the same output folder resumes.

# %%
def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Eq. (8), as a mean over images and pixels: mean_i ||g(f(x_i)) - x_i||^2 / n_pixels."""
    # $\mathcal{L}_{recon} = \sum_i \|g(f(x_i)) - x_i\|_2^2$ (scaled by 1 / (N n_pixels))
    return F.mse_loss(recon, x)


def pretrain(x: torch.Tensor, epochs: int, run_seed: int, labels: torch.Tensor | None = None,
             start_state: dict | None = None, name: str = "pretrain") -> ClusterNetAutoencoder:
    """Eq. (8) on `x` from a fresh autoencoder (or from `start_state`); with `labels`, plus the
    cross-entropy of a linear layer on the embedding (the diagnostic start of the objective check)."""
    training.seed_everything(run_seed)
    model = new_model()
    if start_state is not None:
        model.load_state_dict(start_state)
    modules = {"model": model}
    if labels is not None:
        modules["head"] = nn.Linear(32, K).to(device)
    optimiser = torch.optim.Adam([p for m in modules.values() for p in m.parameters()], lr=budget.learning_rate,
                                 betas=(0.9, 0.999))

    def epoch_fn(epoch: int) -> dict:
        total = 0.0
        for batch in torch.randperm(len(x)).split(pretrain_batch_size):
            xb = x[batch].to(device)
            z, recon = model(xb)
            loss = reconstruction_loss(recon, xb)
            if labels is not None:
                loss = loss + F.cross_entropy(modules["head"](z), labels[batch].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        return {"recon" if labels is None else "loss": total / len(x)}

    model.history = training.run_epochs(epochs, epoch_fn, checkpoints / f"{name}-seed{run_seed}.pt",
                                        {**modules, "optimiser": optimiser},
                                        desc="pretraining" if labels is None else name)
    return model


started = time.perf_counter()
autoencoder = pretrain(x_train, budget.pretrain_epochs, seed)
pretrain_seconds = time.perf_counter() - started
pretrained_state = {k: v.clone() for k, v in autoencoder.state_dict().items()}
z_ae_train, z_ae_test = embed(autoencoder, x_train), embed(autoencoder, x_test)
final_recon = autoencoder.history[-1]["recon"] if autoencoder.history else float("nan")
print(f"pretrained {budget.pretrain_epochs} epochs; reconstruction MSE {final_recon:.4f}")

# %%
with torch.no_grad():
    autoencoder.eval()
    shown = x_test[:10].to(device)
    decoded = autoencoder(shown)[1].cpu()
    autoencoder.train()
fig = plotting.image_grid(torch.cat([shown.cpu(), decoded]).numpy(), n_cols=10,
                          title="Held-out images (top) and their reconstructions (bottom)")
plt.show()

# %% [markdown]
# (sec-probs)=
# ## Assignment probabilities (Eq. 16)
#
# Instead of a softmax layer, ClusterNet turns the squared distances to the centres into
# probabilities,
#
# $$p_{k,i} = \frac{\exp(-d_{k,i})}{\sum_{k'} \exp(-d_{k',i})}, \qquad d_{k,i} = \|f(\theta_e; x_i) - \mu_k\|_2^2 .$$
#
# *Check:* rows sum to one, and the most probable cluster is the nearest centre (Eq. (10)).

# %%
def squared_distances(z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """d_{k,i} = ||z_i - mu_k||^2, N x K."""
    return torch.cdist(z, centers).pow(2)


def assignment_probs(z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Eq. (16): p_{k,i} = softmax_k(-d_{k,i})."""
    # $p_{k,i} = \exp(-d_{k,i}) / \sum_{k'} \exp(-d_{k',i})$
    return torch.softmax(-squared_distances(z, centers), dim=1)


def assign(z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Eq. (10): a^u_i = one-hot of argmin_k ||z_i - mu_k||, returned as cluster indices."""
    return squared_distances(z, centers).argmin(dim=1)


g = torch.Generator().manual_seed(0)
z_check, c_check = 0.2 * torch.randn(6, 32, generator=g), 0.2 * torch.randn(4, 32, generator=g)
p_check = assignment_probs(z_check, c_check)
by_hand = np.exp(-((z_check[:, None] - c_check[None]) ** 2).sum(-1).numpy())
assert torch.allclose(p_check.sum(1), torch.ones(6))
assert np.allclose(p_check.numpy(), by_hand / by_hand.sum(1, keepdims=True), atol=1e-6)
assert torch.equal(p_check.argmax(1), assign(z_check, c_check))

# %% [markdown]
# (sec-cluster-loss)=
# ## Cluster loss (Eq. 4-5)
#
# A k-means term in the latent space, for the unlabelled points with their *predicted*
# assignments $a^u$ (Eq. (10)) and for the labelled points with their *true* classes $a^l$
# (Eq. (11)):
#
# $$\mathcal{L}^u_{cluster} = \frac{1}{|\mathcal{X}^u|}\sum_{x\in\mathcal{X}^u}\|f(\theta_e;x^u_i) - \mathbf{C}a^u_i\|_2^2,\qquad
# \mathcal{L}^l_{cluster} = \frac{1}{|\mathcal{X}^l|}\sum_{x\in\mathcal{X}^l}\|f(\theta_e;x^l_i) - \mathbf{C}a^l_i\|_2^2 .$$
#
# `reprolib.losses.cluster_loss(z, centers, assignments)` computes both (centres as rows).
# *Check:* against the one-hot matrix product $\mathbf{C}a_i$ written out.

# %%
a_check = torch.tensor([0, 3, 1, 1, 2, 0])
one_hot = F.one_hot(a_check, 4).float()
by_hand = ((z_check - one_hot @ c_check) ** 2).sum(1).mean()
assert torch.isclose(cluster_loss(z_check, c_check, a_check), by_hand)

# %% [markdown]
# (sec-pairwise)=
# ## Pairwise KL loss (Eq. 1-2, 6-7, 14-15)
#
# For the assignment distributions $p$ and $q$ of two points, Eq. (1) is
# $KL(p\|q) = \sum_k p_k \log (p_k / q_k)$, and Eq. (2) the symmetric cost
# $\mathcal{L}_{p,q} = KL(p\|q) + KL(q\|p)$, "first fixing $p$ and computing the divergence of
# $q$ from $p$ and vice versa": in each term the first argument is a constant, as in Hsu and
# Kira {cite}`hsu2015pairwise`. Pairs come from labels (Eq. (14)): same class is similar, different
# classes dissimilar; for unlabelled points the predicted clusters of Eq. (10) play the labels'
# role (Eq. (15); `unlabelled_pairs="cross"` pairs them with the labelled points instead, as
# Eq. (15) is printed, see "Differences from the paper"). The labelled loss (Eq. (6)) averages separately over the two pair sets,
#
# $$\mathcal{L}^l_{pair} = \frac{1}{|\mathcal{T}^l_{sim}|}\sum_{\mathcal{T}^l_{sim}} \big(KL(p\|q)+KL(q\|p)\big)
# + \frac{1}{|\mathcal{T}^l_{dissim}|}\sum_{\mathcal{T}^l_{dissim}} \big([m - KL(p\|q)]_+ + [m - KL(q\|p)]_+\big),$$
#
# and Eq. (7) is the same over the unlabelled pair sets. All pairs of a mini-batch are used; the
# $N\times N$ matrix of divergences is one matrix product (`reprolib.losses.kl_matrix`), never an
# $N\times N\times K$ tensor.
#
# *Checks:* against a loop over unordered pairs of Eq. (6); `pairwise_kl` summed over both orders
# equals Eq. (2); the fixed side receives no gradient.

# %%
labels_check = torch.tensor([0, 0, 1, 2, 1, -1])
S = constraints_from_labels(labels_check)
assert S[0, 1] == 1 and S[0, 2] == -1 and S[5].abs().sum() == 0 and S.diagonal().abs().sum() == 0
p = p_check.clone().requires_grad_(True)
sim, dis = [], []
for i in range(6):
    for j in range(i + 1, 6):
        kl_ij = (p[i].detach() * torch.log(p[i].detach() / p[j])).sum()
        kl_ji = (p[j].detach() * torch.log(p[j].detach() / p[i])).sum()
        if S[i, j] == 1:
            sim.append(kl_ij + kl_ji)
        elif S[i, j] == -1:
            dis.append(F.relu(margin - kl_ij) + F.relu(margin - kl_ji))
loop_value = torch.stack(sim).mean() + torch.stack(dis).mean()
assert torch.isclose(clusternet_pair_loss(p, S, margin), loop_value, atol=1e-5)
pair = torch.tensor([[0, 1], [1, 0]])  # one similar pair, both orders
eq2 = kl_matrix(p_check[:2])[0, 1] + kl_matrix(p_check[:2])[1, 0]
assert torch.isclose(2 * pairwise_kl(p_check[:2], pair, margin), eq2)
q = p_check[:2].clone().requires_grad_(True)
kl_matrix(q)[0, 1].backward()
assert q.grad[0].abs().sum() == 0 and q.grad[1].abs().sum() > 0  # KL(p_0 || p_1): p_0 fixed
print("pairwise KL: matrix form equals the loop of Eq. (6)")

# %% [markdown]
# (sec-centres)=
# ## Cluster centres (Eq. 9-13)
#
# **Initialisation (Eq. 9).** Like constrained k-means, but in the latent space:
# $\mu_k = \frac{1}{|\mathcal{X}^l_k|}\sum_{x\in\mathcal{X}^l_k} f(\theta_e; x^l_i)$.
#
# **Assignments (Eq. 10-11).** Unlabelled points go to the nearest centre; labelled points to
# their class.
#
# **Updates (Eq. 12-13).** Not the k-means mean, which would let wrong predicted assignments bias
# the centres of a moving embedding, but stochastic steps with a per-centre adaptive rate, as in
# DCN {cite}`yang2017kmeansfriendly`:
#
# $$\mu_k \leftarrow \mu_k - \frac{1}{N^l_k}\big(\mu_k - f(\theta_e, x^l_i)\big)\ \text{for}\ x_i \in \mathcal{X}^l_k,\qquad
# \mu_k \leftarrow \mu_k - \frac{1}{N^u_k}\big(\mu_k - f(\theta_e, x^u_i)\big)a^u_i .$$
#
# With $N_k$ counting the points assigned to centre $k$ so far, one step per point is exactly a
# running mean: after $n$ new points, $\mu_k = (c\,\mu_k + \sum z)/(c + n)$ where $c$ is the count
# before. We apply that closed form to a whole mini-batch at once (the same numbers as the
# point-by-point loop). The counts start at the number of labelled points of the class, the weight
# of the Eq. (9) mean, and keep growing over the fine-tuning (DCN's rule; the paper's "number of
# samples assigned in the current iteration" leaves the window open).
#
# *Check:* the closed form equals the point-by-point updates of Eq. (12).

# %%
def initial_centers(z_labelled: torch.Tensor, y_labelled: np.ndarray, z_unlabelled: torch.Tensor) -> torch.Tensor:
    """Eq. (9): the mean embedding of each class's labelled points (k-means++ for classes without labels)."""
    z_all = torch.cat([z_labelled, z_unlabelled]).numpy()
    partial = np.concatenate([y_labelled, -np.ones(len(z_unlabelled), dtype=np.int64)])
    return torch.from_numpy(seeded_centers(z_all, partial, K, random_state=seed)).float()


def update_centers(centers: torch.Tensor, counts: torch.Tensor, z: torch.Tensor, assigned: torch.Tensor) -> None:
    """Eq. (12)/(13) in place: per-point steps of rate 1/N_k, applied as the equivalent running mean."""
    added = torch.bincount(assigned, minlength=len(centers)).to(centers.dtype)
    sums = torch.zeros_like(centers).index_add_(0, assigned, z)
    # $\mu_k \leftarrow \mu_k - \frac{1}{N_k}(\mu_k - z_i)$ for each i, i.e. $(c\mu_k + \sum_i z_i) / (c + n)$
    centers.copy_((counts[:, None] * centers + sums) / (counts + added).clamp(min=1)[:, None])
    counts.add_(added)


c_loop, n_loop = c_check.clone(), torch.tensor([3.0, 1.0, 2.0, 5.0])
c_fast, n_fast = c_check.clone(), n_loop.clone()
for zi, ai in zip(z_check, a_check):
    n_loop[ai] += 1
    c_loop[ai] -= (c_loop[ai] - zi) / n_loop[ai]  # Eq. (12), one point at a time
update_centers(c_fast, n_fast, z_check, a_check)
assert torch.allclose(c_loop, c_fast, atol=1e-6) and torch.equal(n_loop, n_fast)

# %% [markdown]
# (sec-total)=
# ## Total loss and the annealed balancing coefficient (Eq. 3, 8, 17)
#
# $$\mathcal{L} = \mathcal{L}^l_{pair} + \mathcal{L}^l_{cluster} + \lambda\,(\mathcal{L}^u_{pair} + \mathcal{L}^u_{cluster}) + \mathcal{L}_{recon},$$
#
# with the reconstruction loss of Eq. (8) over all images and $\lambda$ annealed from 0 to 1
# between epochs $T_1 = 5$ and $T_2 = 40$ (Eq. (17)):
# $\lambda = 0$ for $t < T_1$, $(t - T_1)/(T_2 - T_1)$ for $T_1 \le t \le T_2$, 1 after.
# Shorter runs (the `book` profile) scale $T_1$ and $T_2$ with the number of epochs.

# %%
def annealed_lambda(epoch: int, t1: float = 5, t2: float = 40) -> float:
    """Eq. (17): 0 before T1, linear from 0 to 1 between T1 and T2, then 1."""
    if epoch < t1:
        return 0.0
    return min(1.0, (epoch - t1) / (t2 - t1))


def schedule(n_epochs: int) -> tuple[float, float]:
    """T1 = 5, T2 = 40 of 60 epochs (Eq. (17)), scaled to `n_epochs`."""
    return 5 * n_epochs / 60, 40 * n_epochs / 60


def clusternet_loss(terms: dict, lam: float) -> torch.Tensor:
    """Eq. (3): L = L^l_pair + L^l_cluster + lambda (L^u_pair + L^u_cluster) + L_recon."""
    return (terms["pair_l"] + terms["cluster_l"] + lam * (terms["pair_u"] + terms["cluster_u"])
            + terms["recon"])


assert [annealed_lambda(t) for t in (0, 4, 5, 22.5, 40, 59)] == [0, 0, 0, 0.5, 1, 1]
assert schedule(60) == (5, 40)

# %% [markdown]
# (sec-alg2)=
# ## Alternating optimisation (Alg. 2)
#
# Each epoch $t$: (I) pairs from the labelled data, (II) predicted clusters of the unlabelled data
# by Eq. (10), (III) pairs from them, (IV) assignment probabilities (Eq. (16)), (V) centre updates
# (Eq. (12)-(13)) and (VI) a gradient step on the encoder and decoder with the centres fixed.
# Within a mini-batch we take the gradient step (VI) before moving the centres (V), both from the
# same embeddings, so the loss is differentiated at the centres it was computed with.
# Steps (I)-(VI) run over mini-batches: each step takes `batch_size` unlabelled images and up to
# half as many labelled ones; all pairs within each part are used. After every epoch we record the loss
# terms and, for Fig. 5(a), the accuracy and NMI of the unlabelled training images, with the
# accuracy on the held-out images (monitoring only; labels never enter training there). The run's
# record keeps both accuracies against the number of updates made (experiment `steps`).
#
# Two switches serve the measurements of {ref}`sec-gap` and leave the defaults as above:
# `unlabelled_pairs="cross"` forms Eq. (15)'s pairs as printed, each unlabelled point with each
# labelled one of the batch (`cross_constraints`; *check:* a small case written out), and
# `labelled_loss="ce"` replaces Eq. (6) by the cross-entropy of Eq. (16)'s probabilities, a
# diagnostic that is not the paper's method.

# %%
def cross_constraints(a_u: torch.Tensor, y_l: torch.Tensor) -> torch.Tensor:
    """Eq. (15) as printed: pairs of an unlabelled point (predicted cluster) and a labelled one (class).

    The constraints over [unlabelled, labelled] points, with the pairs inside each part unknown."""
    constraints = constraints_from_labels(torch.cat([a_u, y_l]))
    from_unlabelled = torch.arange(len(constraints), device=constraints.device) < len(a_u)
    constraints[from_unlabelled[:, None] == from_unlabelled[None, :]] = 0
    return constraints


def unlabelled_pair_loss(p_u, a_u, p_l, y_l) -> torch.Tensor:
    """Eq. (7) over the pairs of Eq. (15): unlabelled-unlabelled, or unlabelled-labelled ("cross")."""
    if unlabelled_pairs == "cross":
        return clusternet_pair_loss(torch.cat([p_u, p_l]), cross_constraints(a_u, y_l), margin)
    return clusternet_pair_loss(p_u, constraints_from_labels(a_u), margin)


check_cross = cross_constraints(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
assert check_cross.tolist() == [[0, 0, 1, -1, -1], [0, 0, -1, 1, 1], [1, -1, 0, 0, 0],
                                [-1, 1, 0, 0, 0], [-1, 1, 0, 0, 0]]


def labelled_pair_loss(z_l: torch.Tensor, y_l: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Eq. (6) over the pairs of Eq. (14); with labelled_loss="ce", the diagnostic that replaces it
    by the cross-entropy -log p_{y_i, i} of Eq. (16)'s probabilities (see "Where the gap comes from")."""
    if labelled_loss == "ce":  # log p_{k,i} = log_softmax_k(-d_{k,i}), computed stably
        return F.cross_entropy(-squared_distances(z_l, centers), y_l)
    return clusternet_pair_loss(assignment_probs(z_l, centers), constraints_from_labels(y_l), margin)


def batch_terms(model, xb_u, a_u, xb_l, y_l, centers) -> dict:
    """Every term of Eq. (3) for one mini-batch (centres fixed)."""
    z, recon = model(torch.cat([xb_u, xb_l]))
    z_u, z_l = z[:len(xb_u)], z[len(xb_u):]
    p_u, p_l = assignment_probs(z_u, centers), assignment_probs(z_l, centers)
    return {"pair_l": labelled_pair_loss(z_l, y_l, centers),                                 # Eq. (6), (14)
            "cluster_l": cluster_loss(z_l, centers, y_l),                                    # Eq. (5), (11)
            "pair_u": unlabelled_pair_loss(p_u, a_u, p_l, y_l),                              # Eq. (7), (15)
            "cluster_u": cluster_loss(z_u, centers, a_u),                                    # Eq. (4), (10)
            "recon": reconstruction_loss(recon, torch.cat([xb_u, xb_l])),                    # Eq. (8)
            "z_u": z_u.detach(), "z_l": z_l.detach()}


def batches_per_epoch(n_images: int, batch: int | None = None) -> int:
    """Steps per epoch: one per `batch` images (default `batch_size`, fine-tuning's); the last may be short."""
    return -(-n_images // (batch or batch_size))


def finetune(labelled: np.ndarray, epochs: int, run_seed: int, name: str, fixed_lambda: float | None = None,
             start_state: dict | None = None):
    """Alg. 2 from the pretrained autoencoder (or from `start_state`); returns (model, centres, history)."""
    training.seed_everything(run_seed)
    model = new_model()
    model.load_state_dict(pretrained_state if start_state is None else start_state)
    optimiser = torch.optim.Adam(model.parameters(), lr=budget.learning_rate, betas=(0.9, 0.999))
    unlabelled = np.setdiff1d(np.arange(len(x_train)), labelled)
    x_u, x_l = x_train[unlabelled], x_train[labelled]
    y_l = torch.from_numpy(y_train[labelled])
    z_l0, z_u0 = embed(model, x_l), embed(model, x_u)
    centers = initial_centers(z_l0, y_train[labelled], z_u0).to(device)                      # Eq. (9)
    counts_l = torch.bincount(y_l, minlength=K).float().to(device)
    counts_u = counts_l.clone()
    t1, t2 = schedule(epochs)
    labelled_batch = max(2, batch_size // 2)

    def epoch_fn(epoch: int) -> dict:
        lam = annealed_lambda(epoch, t1, t2) if fixed_lambda is None else fixed_lambda
        if center_counts == "epoch":  # N_k counts "the current iteration" only: restart from the labels
            counts_l.copy_(torch.bincount(y_l, minlength=K).float())
            counts_u.copy_(counts_l)
        a_u_all = assign(embed(model, x_u).to(device), centers)                             # (II) Eq. (10)
        monitor = metrics.evaluate(y_train[unlabelled], a_u_all.cpu().numpy())
        heldout_acc = metrics.cluster_acc(y_test, assign(embed(model, x_test).to(device), centers).cpu().numpy())
        sums = dict.fromkeys(["pair_l", "cluster_l", "pair_u", "cluster_u", "recon", "total"], 0.0)
        steps = 0
        for batch in torch.randperm(len(x_u)).split(batch_size):
            pick = torch.randperm(len(x_l))[:labelled_batch]                                  # (I) labelled batch
            terms = batch_terms(model, x_u[batch].to(device), a_u_all[batch], x_l[pick].to(device),
                                y_l[pick].to(device), centers)                               # (III), (IV)
            loss = clusternet_loss(terms, lam)                                                # Eq. (3)
            training.check_finite(loss, "ClusterNet loss", f"epoch {epoch}")
            optimiser.zero_grad()
            loss.backward()                                                                   # (VI)
            optimiser.step()
            update_centers(centers, counts_l, terms["z_l"], y_l[pick].to(device))           # (V) Eq. (12)
            update_centers(centers, counts_u, terms["z_u"], a_u_all[batch])                 # (V) Eq. (13)
            for key in sums:
                sums[key] += float((loss if key == "total" else terms[key]).detach())
            steps += 1
        return {**{k: v / steps for k, v in sums.items()}, "lambda": lam,
                "acc_unlabelled": monitor["acc"], "nmi_unlabelled": monitor["nmi_max"], "acc_heldout": heldout_acc}

    history = training.run_epochs(
        epochs, epoch_fn, checkpoints / f"{name}.pt", {"model": model, "optimiser": optimiser},
        desc=name, extra_state=lambda: {"centers": centers.cpu(), "counts_l": counts_l.cpu(),
                                        "counts_u": counts_u.cpu()},
        load_extra=lambda s: [t.copy_(s[k]) for t, k in [(centers, "centers"), (counts_l, "counts_l"),
                                                           (counts_u, "counts_u")]])
    return model, centers, history


def evaluate_run(model, centers, labelled: np.ndarray) -> dict:
    """ACC (Hungarian and identity map) and NMI (Eq. (18)) on unlabelled training and held-out images."""
    unlabelled = np.setdiff1d(np.arange(len(x_train)), labelled)
    pred_train = assign(embed(model, x_train).to(device), centers).cpu().numpy()
    pred_test = assign(embed(model, x_test).to(device), centers).cpu().numpy()
    return {"acc_unlabelled": metrics.cluster_acc(y_train[unlabelled], pred_train[unlabelled]),
            "nmi_unlabelled": metrics.nmi(y_train[unlabelled], pred_train[unlabelled], "max"),
            "acc_heldout": metrics.cluster_acc(y_test, pred_test),
            "acc_heldout_identity": float(np.mean(pred_test == y_test)),
            "nmi_heldout": metrics.nmi(y_test, pred_test, "max")}

# %% [markdown]
# ## Experiments
#
# For every label fraction and every run $r$, a fresh labelled subset of the training split
# (seeded by `seed` and $r$), fine-tuning from the same pretrained autoencoder, and evaluation on
# the unlabelled training images (transductive, Table 3) and on the held-out 10% (Table 5).

# %%
runs, models = [], {}
started = time.perf_counter()
for label_budget in label_budgets:
    for run in range(budget.n_runs):
        run_seed = 1000 * seed + run
        labelled = labelled_for(label_budget, run_seed)
        name = f"finetune-{label_name(label_budget).replace('/', 'per')}-run{run}"
        model, centers, history = finetune(labelled, budget.finetune_epochs, run_seed, name)
        scores = evaluate_run(model, centers, labelled)
        runs.append({"labels": label_name(label_budget), "paper_fraction": paper_fraction(label_budget),
                     "fraction": np.nan if isinstance(label_budget, PerClass) else label_budget,
                     "run": run, "n_labelled": len(labelled), **scores})
        models[(label_name(label_budget), run)] = (model, centers, history, labelled)
        steps_per_epoch = batches_per_epoch(len(x_train) - len(labelled))  # accuracy against updates made
        curve = [(h["epoch"], h["acc_unlabelled"], h["acc_heldout"]) for h in history]
        for epochs_done, acc_u, acc_h in [*curve, (len(history), scores["acc_unlabelled"], scores["acc_heldout"])]:
            for where, value in (("unlabelled train", acc_u), ("held-out", acc_h)):
                record.add("steps", "ClusterNet", dataset, f"labels={label_name(label_budget)}, run {run}, {where}, "
                           f"step {epochs_done * steps_per_epoch}", "acc", value)
finetune_seconds = time.perf_counter() - started
runs_table = pd.DataFrame(runs)
runs_table.round(4)

# %% [markdown]
# ### Headline
#
# Accuracy on the unlabelled training images at the chapter's label fraction, mean over runs.

# %%
at_default = runs_table[runs_table.labels == headline_name]
headline_acc = float(at_default.acc_unlabelled.mean())
headline_text = (f"{100 * label_fraction:.1f}% of every class" if labels_per_class is None
                 else f"{labels_per_class} images of every class")
labels_setting = f"{label_fraction:g}" if labels_per_class is None else f"{labels_per_class} images"
record.headline("ClusterNet", "acc", headline_acc,
                setting=f"labels={labels_setting} per class, unlabelled training images, "
                        f"mean of {budget.n_runs} runs, {budget.pretrain_epochs}+{budget.finetune_epochs} epochs")
report.glue("headline_acc", headline_acc)
report.glue("headline_labels", headline_text)
report.glue("n_runs", budget.n_runs)
print(f"ClusterNet accuracy on unlabelled training images with {headline_text} labelled: {headline_acc:.4f}")

# %% [markdown]
# With {glue:text}`headline_labels` labelled, ClusterNet assigns
# {glue:text}`headline_acc:.3f` of the unlabelled training images to the right class (mean of
# {glue:text}`n_runs` runs; this run's profile and epochs are in the table captions below).
#
# ### Table 3 (MNIST row)
#
# The paper's MNIST row uses 0.5% labels on the 70,000 MNIST digits and reports the average and
# the best of five runs. Ours: `mnist5k` (5,000 digits, of which 90% are used for training),
# 0.5% labels per class (2 labelled images per class), unlabelled training images.

# %%
PAPER_TABLE3 = {"acc": (0.9684, 0.9783), "nmi": (0.926, 0.941)}  # MNIST-full, 0.5% labels: avg, best
table3_rows = []
t3 = runs_table[runs_table.fraction == budget.table3_fraction]
if len(t3):
    for metric, column in [("acc", "acc_unlabelled"), ("nmi", "nmi_unlabelled")]:
        for stat, value, paper in [("avg", t3[column].mean(), PAPER_TABLE3[metric][0]),
                                   ("best", t3[column].max(), PAPER_TABLE3[metric][1])]:
            setting = f"labels={budget.table3_fraction:g}, {stat} of {len(t3)} runs, unlabelled train"
            record.add("table3", "ClusterNet", dataset, setting, metric, value, paper=paper)
            table3_rows.append({"metric": metric, "statistic": stat, "ours": value, "paper": paper})
table3 = report.beside_paper(pd.DataFrame(table3_rows)) if table3_rows else pd.DataFrame()
table3.round(4)

# %% [markdown]
# ### Table 5: label fraction vs. accuracy on unseen digits
#
# Held-out 10% of the data, never seen in pretraining or fine-tuning; the centres classify it
# (nearest centre). Mean ± standard deviation over runs, beside the paper's MNIST column. A budget
# given in images per class (`labels_per_class`) sits beside the paper's row for the same count
# on MNIST-train (120 per class is its 2%).

# %%
PAPER_TABLE5 = {0.01: (0.939, 0.018, 0.9813, 0.0024), 0.02: (0.958, 0.003, 0.9838, 0.0018),
                0.05: (0.963, 0.001, 0.9865, 0.0005), 0.10: (0.970, 0.003, 0.9896, 0.0012)}
table5_rows = []
for label_budget in [b for b in label_budgets if paper_fraction(b) in PAPER_TABLE5]:
    sel = runs_table[runs_table.labels == label_name(label_budget)]
    nmi_p, nmi_sd_p, acc_p, acc_sd_p = PAPER_TABLE5[paper_fraction(label_budget)]
    shown = (f"{label_budget} ({paper_fraction(label_budget):.0%} of MNIST-train)"
             if isinstance(label_budget, PerClass) else f"{label_budget:.0%}")
    row = {"labels": shown, "NMI ours": sel.nmi_heldout.mean(), "NMI sd": sel.nmi_heldout.std(ddof=0),
           "NMI paper": nmi_p, "ACC ours": sel.acc_heldout.mean(), "ACC sd": sel.acc_heldout.std(ddof=0),
           "ACC paper": acc_p}
    row["ACC difference"] = row["ACC ours"] - acc_p
    table5_rows.append(row)
    setting = f"labels={label_name(label_budget)}, held-out, mean of {len(sel)} runs"
    record.add("table5", "ClusterNet", dataset, setting, "acc", row["ACC ours"], paper=acc_p)
    record.add("table5", "ClusterNet", dataset, setting, "nmi", row["NMI ours"], paper=nmi_p)
for label_budget in [b for b in label_budgets if paper_fraction(b) not in PAPER_TABLE5]:  # recorded, not shown
    sel = runs_table[runs_table.labels == label_name(label_budget)]
    for metric in ("acc", "nmi"):
        record.add("heldout", "ClusterNet", dataset, f"labels={label_name(label_budget)}, held-out, mean of {len(sel)} runs",
                   metric, sel[f"{metric}_heldout"].mean())
table5 = pd.DataFrame(table5_rows)
table5.round(4)

# %%
if len(table5):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x_pos = np.arange(len(table5))
    ax.errorbar(x_pos, table5["ACC ours"], yerr=table5["ACC sd"], marker="o", capsize=3, label="ours (held-out)")
    ax.plot(x_pos, table5["ACC paper"], marker="s", linestyle="--", label="paper (MNIST)")
    ax.set_xticks(x_pos, table5["labels"])
    ax.set(xlabel="labelled images per class", ylabel="accuracy", title="Table 5: accuracy on unseen digits")
    ax.legend()
    plt.show()

# %% [markdown]
# ### Baselines at equal supervision
#
# Constrained k-means on the pretrained autoencoder's embeddings, with the same labelled subsets:
# what the fine-tuning adds on top of seeding.

# %%
baseline_rows = []
for (name, run), (_, _, _, labelled) in models.items():
    partial = data.partial_labels(y_train, labelled)
    pred = ConstrainedKMeans(n_clusters=K).fit(z_ae_train.numpy(), partial).labels_
    unl = partial < 0
    baseline_rows.append({"labels": name, "run": run,
                          "acc": metrics.cluster_acc(y_train[unl], pred[unl])})
baselines = pd.DataFrame(baseline_rows).groupby("labels", sort=False).acc.mean()
comparison = pd.DataFrame({"constrained k-means on AE": baselines,
                           "ClusterNet": runs_table.groupby("labels", sort=False).acc_unlabelled.mean()})
comparison["gain"] = comparison["ClusterNet"] - comparison["constrained k-means on AE"]
for name, row in comparison.iterrows():
    record.add("baselines", "constrained k-means on AE embeddings", dataset,
               f"labels={name}, unlabelled train", "acc", row["constrained k-means on AE"])
ckm_ae_default = float(comparison.loc[headline_name, "constrained k-means on AE"])
report.glue("ckm_ae_acc", ckm_ae_default)
comparison.round(4)

# %% [markdown]
# At the headline's label fraction, constrained k-means on the pretrained embeddings reaches
# {glue:text}`ckm_ae_acc:.3f`; ClusterNet {glue:text}`headline_acc:.3f`.
#
# ### Table 6: k-means on autoencoder vs. ClusterNet embeddings
#
# Plain k-means (NMI, Eq. (18)) on the embeddings before and after the ClusterNet fine-tuning
# (the headline label fraction, run 0).

# %%
PAPER_TABLE6 = {"autoencoder, all data": 0.542, "ClusterNet, train": 0.942, "ClusterNet, test": 0.954}
cn_model, cn_centers, cn_history, cn_labelled = models[(headline_name, 0)]
z_cn_train, z_cn_test = embed(cn_model, x_train), embed(cn_model, x_test)


def kmeans_nmi(z: torch.Tensor, y: np.ndarray) -> float:
    return metrics.nmi(y, KMeans(K, n_init=budget.kmeans_n_init, random_state=seed).fit_predict(z.numpy()), "max")


table6 = pd.DataFrame([
    {"embedding": "autoencoder, all data", "ours": kmeans_nmi(torch.cat([z_ae_train, z_ae_test]),
                                                              np.concatenate([y_train, y_test]))},
    {"embedding": "ClusterNet, train", "ours": kmeans_nmi(z_cn_train, y_train)},
    {"embedding": "ClusterNet, test", "ours": kmeans_nmi(z_cn_test, y_test)},
])
table6["paper"] = table6.embedding.map(PAPER_TABLE6)
table6 = report.beside_paper(table6)
for _, row in table6.iterrows():
    record.add("table6", "k-means", dataset, row.embedding, "nmi", row.ours, paper=row.paper)
table6.round(4)

# %% [markdown]
# ### Fig. 1 and 2: t-SNE of pixels, autoencoder and ClusterNet embeddings

# %%
rng = np.random.default_rng(seed)
shown_idx = np.sort(rng.choice(len(x_train), size=min(budget.tsne_points, len(x_train)), replace=False))
spaces = {"raw pixels": flat_train[shown_idx], "pretrained autoencoder": z_ae_train[shown_idx].numpy(),
          f"ClusterNet ({headline_name} labels)": z_cn_train[shown_idx].numpy()}
fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
for ax, (title, features) in zip(axes, spaces.items()):
    xy = TSNE(2, init="pca", perplexity=30, random_state=seed).fit_transform(features)
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=y_train[shown_idx].astype(str), palette="colorblind",
                    s=6, linewidth=0, ax=ax, legend=ax is axes[-1])
    ax.set(title=title, xticks=[], yticks=[])
axes[-1].legend(title="class", bbox_to_anchor=(1.02, 1), loc="upper left", markerscale=2)
fig.suptitle(f"t-SNE of {len(shown_idx)} training images")
plotting.save_figure(fig, out, "tsne")
plt.show()

# %% [markdown]
# ### Fig. 3: decoded cluster centres
#
# Because every centre starts at a class's labelled mean and is updated with that class's
# labelled points, each centre stands for one class; decoding it gives an image of the class.
# Top row: decoded centres; bottom row: an unlabelled training image assigned to that centre.

# %%
with torch.no_grad():
    cn_model.eval()
    decoded_centers = cn_model.decoder(cn_centers).cpu()
    cn_model.train()
pred_train = assign(z_cn_train.to(device), cn_centers).cpu().numpy()
samples = []
for k in range(K):
    members = np.flatnonzero(pred_train == k)
    samples.append(x_train[members[0]] if len(members) else torch.zeros_like(x_train[0]))
fig = plotting.image_grid(torch.cat([decoded_centers, torch.stack(samples)]).numpy(), n_cols=K,
                          titles=[full.class_names[k] if k < full.n_classes else f"c{k}" for k in range(K)] * 2,
                          title="Decoded cluster centres (top) and images assigned to them (bottom)")
plotting.save_figure(fig, out, "centres")
plt.show()

# %% [markdown]
# ### Fig. 5(a) and (c): accuracy, NMI and the loss terms over training
#
# The headline run's history: the unlabelled images' accuracy and NMI at the start of each epoch,
# and every term of Eq. (3) averaged over the epoch's mini-batches, with $\lambda$.

# %%
hist = pd.DataFrame(cn_history)
if len(hist):
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    hist.plot(x="epoch", y=["acc_unlabelled", "nmi_unlabelled"], marker="o", ax=axes[0])
    axes[0].set(title="(a) unlabelled training images", ylabel="score")
    hist.plot(x="epoch", y=["pair_l", "cluster_l", "pair_u", "cluster_u", "recon", "total"], ax=axes[1], logy=True)
    hist.plot(x="epoch", y="lambda", ax=axes[1], secondary_y=True, style="k--")
    axes[1].set(title="(c) loss terms (log scale) and lambda (dashed, right)", ylabel="loss")
    plotting.save_figure(fig, out, "training_curves")
    plt.show()

# %% [markdown]
# ### Fig. 5(b): fixed $\lambda$ vs. the annealing schedule
#
# The same labelled subset (headline fraction, run 0), fine-tuned with $\lambda$ fixed, against
# the annealed schedule of Eq. (17); held-out accuracy and NMI. The `paper` profile runs these
# fine-tunings in the build. The `book` profile's one, $\lambda = 0$, does not fit the build's six
# minutes beside the rest, so the build shows the committed runs of this profile at seeds 0-2
# (`results/01_clusternet/seeds-book/`, the command beside them), each with its own split and
# labelled images; `-p ablation=True` runs it in the build too.

# %%
FIG5B_SWEEP = "seeds-book"  # committed book-profile runs with the lambda ablation, one per seed


def fig5b_rows(run_: dict) -> pd.DataFrame:
    """A record's Fig. 5(b) rows as a table: seed, lambda, held-out accuracy and NMI."""
    rows_ = {}
    for r in run_["rows"]:
        if r["experiment"] == "fig5b":
            which = r["setting"].split(",")[0].removeprefix("lambda ")
            rows_.setdefault(which, {"seed": run_["parameters"]["seed"], "lambda": which})[
                f"{r['metric']}_heldout"] = r["value"]
    return pd.DataFrame(list(rows_.values()), columns=["seed", "lambda", "acc_heldout", "nmi_heldout"])


if lambdas:
    ablation_runs = [{"lambda": "annealed (Eq. 17)", **evaluate_run(cn_model, cn_centers, cn_labelled)}]
    for lam in lambdas:
        model_l, centers_l, _ = finetune(cn_labelled, budget.finetune_epochs, 1000 * seed, f"lambda-{lam:g}",
                                         fixed_lambda=lam)
        ablation_runs.append({"lambda": f"fixed {lam:g}", **evaluate_run(model_l, centers_l, cn_labelled)})
    for row in ablation_runs:
        for metric in ("acc_heldout", "nmi_heldout"):
            record.add("fig5b", "ClusterNet", dataset, f"lambda {row['lambda']}, labels={headline_name}",
                       metric.split("_")[0], row[metric])
    fig5b = pd.DataFrame(ablation_runs).assign(seed=seed)[["seed", "lambda", "acc_heldout", "nmi_heldout",
                                                           "acc_unlabelled"]]
    fig5b_source = f"this build ({profile}, {dataset}, labels={headline_name})"
else:
    fig5b_runs = [results.load(path) for path in sorted((COMMITTED / FIG5B_SWEEP).rglob(results.RESULTS_FILE))]
    fig5b = (pd.concat([fig5b_rows(run_) for run_ in fig5b_runs], ignore_index=True) if fig5b_runs
             else pd.DataFrame(columns=["seed", "lambda", "acc_heldout", "nmi_heldout"]))
    fig5b_source = (f"committed {FIG5B_SWEEP} ({fig5b_runs[0]['profile']}, {fig5b_runs[0]['parameters']['dataset']}, "
                    f"labels={record_labels(fig5b_runs[0])}, seeds {', '.join(str(v) for v in sorted(fig5b.seed.unique()))})"
                    if len(fig5b) else "not run (-p ablation=True runs it)")
print(f"Fig. 5(b): {fig5b_source}")
by_seed = fig5b.pivot(index="seed", columns="lambda", values="acc_heldout") if len(fig5b) else pd.DataFrame()
fig5b_change = ((by_seed["fixed 0"] - by_seed["annealed (Eq. 17)"]).dropna()
                if {"fixed 0", "annealed (Eq. 17)"} <= set(by_seed.columns) else pd.Series(dtype=float))
report.glue("fig5b_source", fig5b_source)
report.glue("fig5b_lambda0_change", float(fig5b_change.mean()) if len(fig5b_change) else float("nan"))
report.glue("fig5b_lambda0_range", f"{fig5b_change.min():+.3f} to {fig5b_change.max():+.3f} over "
            f"{len(fig5b_change)} seeds" if len(fig5b_change) > 1 else "one seed")
report.glue("fig5b_lambda0_verdict", f"lower than with the annealed schedule at {int((fig5b_change < 0).sum())} "
            f"of {len(fig5b_change)} seeds" if len(fig5b_change) else "not measured")
if fig5b["lambda"].nunique() > 1:
    order = list(dict.fromkeys(fig5b["lambda"]))  # the annealed schedule first, then the fixed values
    ticks = [name.replace(" (", "\n(") if name.startswith("annealed") else name.removeprefix("fixed ")
             for name in order]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharex=True)
    for ax, (column, name) in zip(axes, [("acc_heldout", "accuracy"), ("nmi_heldout", "NMI")]):
        wide = fig5b.pivot(index="seed", columns="lambda", values=column)[order]
        for seed_, values in wide.iterrows():  # one line per seed: the same split under each schedule
            ax.plot(ticks, values, marker="o", color="0.6", lw=1)
            ax.annotate(f"seed {seed_}", (len(order) - 1, values.iloc[-1]), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8, color="0.4")
        if len(wide) > 1:
            ax.plot(ticks, wide.mean(), marker="s", color="k", lw=2)
            ax.annotate("mean", (0, wide.mean().iloc[0]), xytext=(-6, 0), textcoords="offset points",
                        ha="right", va="center", fontsize=8, fontweight="bold")
        ax.set(title=f"held-out {name}", xlabel="$\\lambda$ (Eq. 17 annealed, or fixed)", ylabel=name)
        ax.set_xlim(-0.6, len(order) - 0.4)
    fig.suptitle(f"Fig. 5(b): balancing coefficient; {fig5b_source}", fontsize=10)
    plotting.save_figure(fig, out, "fig5b_lambda")
    plt.show()
fig5b.round(4)

# %% [markdown]
# Fixing $\lambda = 0$ (no unlabelled terms) instead of annealing it changes held-out accuracy by
# {glue:text}`fig5b_lambda0_change:+.3f` on average ({glue:text}`fig5b_lambda0_range`):
# {glue:text}`fig5b_lambda0_verdict`. The paper's Fig. 5(b) (FRGC faces, fixed values of $\lambda$
# against the schedule) finds the annealed schedule "significantly better": too small a $\lambda$
# "underutilizes the unlabeled data". The ledger of {ref}`sec-gap` makes the same switch at 120
# labelled images per class.

# %% [markdown]
# (sec-gap)=
# ## Where the gap comes from
#
# Our accuracy stays below the paper's. Each candidate cause gets its own measurement here.
#
# ### The supervised floor
#
# ClusterNet learns from the labelled images *and* the unlabelled ones. A classifier that sees
# only the labelled images is therefore a floor it should clear. The floor here is the same
# encoder $f(\theta_e)$ (from a fresh initialisation, so no unlabelled image enters it at all) with
# a linear layer on its 32-dimensional output. It is trained with cross-entropy on the labelled
# images alone: the same labelled batch size, learning rate and number of gradient steps as the
# fine-tuning above. It is scored on the same unlabelled training images and held-out images.

# %%
def supervised_floor(labelled: np.ndarray, steps: int, run_seed_: int) -> dict:
    """Encoder + linear layer trained by cross-entropy on the labelled images only; accuracies."""
    training.seed_everything(run_seed_)
    classifier = nn.Sequential(new_model().encoder, nn.Linear(32, K)).to(device)
    optimiser = torch.optim.Adam(classifier.parameters(), lr=budget.learning_rate, betas=(0.9, 0.999))
    x_l, y_l = x_train[labelled].to(device), torch.from_numpy(y_train[labelled]).to(device)
    for _ in range(steps):
        pick = torch.randperm(len(x_l), device=device)[:max(2, batch_size // 2)]
        loss = F.cross_entropy(classifier(x_l[pick]), y_l[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    classifier.eval()
    with torch.no_grad():
        predict_ = lambda x: torch.cat([classifier(x[i:i + 1024].to(device)).argmax(1).cpu()
                                        for i in range(0, len(x), 1024)]).numpy()
        pred_train, pred_test = predict_(x_train), predict_(x_test)
    unlabelled = np.setdiff1d(np.arange(len(x_train)), labelled)
    return {"acc_unlabelled": float(np.mean(pred_train[unlabelled] == y_train[unlabelled])),
            "acc_heldout": float(np.mean(pred_test == y_test))}


finetune_steps = budget.finetune_epochs * batches_per_epoch(len(x_train) - len(cn_labelled))
floor_rows = []
for (name, run), (_, _, _, labelled) in models.items():
    floor = supervised_floor(labelled, finetune_steps, 1000 * seed + run)
    cn = runs_table[(runs_table.labels == name) & (runs_table.run == run)].iloc[0]
    floor_rows.append({"labels": name, "run": run, "labelled per class": len(labelled) / K,
                       "floor, unlabelled": floor["acc_unlabelled"], "ClusterNet, unlabelled": cn.acc_unlabelled,
                       "floor, held-out": floor["acc_heldout"], "ClusterNet, held-out": cn.acc_heldout})
floor_table = pd.DataFrame(floor_rows).groupby("labels", sort=False).mean(numeric_only=True).drop(columns="run")
floor_table["ClusterNet - floor, unlabelled"] = floor_table["ClusterNet, unlabelled"] - floor_table["floor, unlabelled"]
for name, row in floor_table.iterrows():
    for column, where in (("floor, unlabelled", "unlabelled train"), ("floor, held-out", "held-out")):
        record.add("supervised_floor", "encoder + linear, labelled images only", dataset,
                   f"labels={name}, {where}, {finetune_steps} steps", "acc", row[column])
report.glue("floor_steps", finetune_steps)
report.glue("floor_headline", float(floor_table.loc[headline_name, "floor, unlabelled"]))
report.glue("floor_margin_headline", float(floor_table.loc[headline_name, "ClusterNet - floor, unlabelled"]))
report.glue("floor_below_count", int((floor_table["ClusterNet - floor, unlabelled"] < 0).sum()))
report.glue("floor_budget_count", len(floor_table))
floor_table.round(4)

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.5))
x_pos = np.arange(len(floor_table))
ax.plot(x_pos, floor_table["ClusterNet, unlabelled"], marker="o", label="ClusterNet")
ax.plot(x_pos, floor_table["floor, unlabelled"], marker="s", linestyle="--", label="supervised floor")
ax.set_xticks(x_pos, [f"{n}\n({c:.0f}/class)" for n, c in zip(floor_table.index, floor_table["labelled per class"])])
ax.set(xlabel="label budget", ylabel="accuracy, unlabelled training images",
       title="ClusterNet against a classifier of the labelled images alone")
ax.legend()
plotting.save_figure(fig, out, "supervised_floor")
plt.show()

# %% [markdown]
# With {glue:text}`headline_labels` labelled, the floor classifies {glue:text}`floor_headline:.3f`
# of the unlabelled training images after {glue:text}`floor_steps` steps; ClusterNet's margin over
# it is {glue:text}`floor_margin_headline:+.3f`. ClusterNet falls below the floor at
# {glue:text}`floor_below_count` of the {glue:text}`floor_budget_count` label budgets of this run.

# %% [markdown]
# (sec-objective-check)=
# ### Does ClusterNet's objective keep the true classes?
#
# ClusterNet can fall short in two ways. Its objective may pull an embedding away from the true
# classes, or it may keep them but fail to find them from the autoencoder's start. To tell these
# apart, we fine-tune the headline's run 0 a second time, with the same labelled images, seed and
# epochs, from a different start. That start is the pretrained autoencoder trained
# {glue:text}`oracle_epochs` epochs more on Eq. (8) plus the cross-entropy of a linear layer on
# *every* training image's label. Its embedding separates the true classes; it is a diagnostic,
# not the method. The table gives both runs' accuracy on the unlabelled training images before
# and after fine-tuning, and the terms of Eq. (3) averaged over the last epoch (same $\lambda$).

# %%
def objective_row(start: str, model_, centers_, history_) -> dict:
    last = history_[-1]
    return {"start": start, "acc before fine-tuning": history_[0]["acc_unlabelled"],
            "acc after": evaluate_run(model_, centers_, cn_labelled)["acc_unlabelled"],
            **{term: last[term] for term in ("pair_l", "cluster_l", "pair_u", "cluster_u", "recon", "total")}}


true_start = pretrain(x_train, budget.oracle_epochs, 1000 * seed, labels=torch.from_numpy(y_train),
                      start_state=pretrained_state, name="true-class-start")
true_state = {k: v.clone() for k, v in true_start.state_dict().items()}
tc_model, tc_centers, tc_history = finetune(cn_labelled, budget.finetune_epochs, 1000 * seed,
                                            f"finetune-{headline_name.replace('/', 'per')}-true-class-start",
                                            start_state=true_state)
objective_table = pd.DataFrame([objective_row("autoencoder (the method)", cn_model, cn_centers, cn_history),
                                objective_row("true classes (diagnostic)", tc_model, tc_centers, tc_history)]
                               ).set_index("start")
for start_, row_ in objective_table.iterrows():
    for column_, metric_ in (("acc before fine-tuning", "acc_start"), ("acc after", "acc"), ("total", "loss_total")):
        record.add("objective_check", "ClusterNet", dataset, f"labels={headline_name}, run 0, start: {start_}",
                   metric_, row_[column_])
method_row, true_row = objective_table.iloc[0], objective_table.iloc[1]
for key_, row_ in (("method", method_row), ("true", true_row)):
    report.glue(f"objective_{key_}_start", float(row_["acc before fine-tuning"]))
    report.glue(f"objective_{key_}_acc", float(row_["acc after"]))
    report.glue(f"objective_{key_}_total", float(row_["total"]))
report.glue("oracle_epochs", budget.oracle_epochs)
keeps = true_row["acc after"] >= true_row["acc before fine-tuning"] - 0.02  # within 2 points of its start
lower = true_row["total"] < method_row["total"]
report.glue("objective_verdict",
            "The objective keeps the true classes and scores them better than the partition it reaches from the "
            "autoencoder: here the search misses the classes, not the objective." if keeps and lower else
            "The objective keeps the true classes, but does not score them better than the partition it reaches from "
            "the autoencoder." if keeps else
            "The objective moves the embedding away from the true classes: fine-tuning lowers the accuracy of the "
            "start, so ClusterNet's objective itself, not only the start, holds the accuracy down.")
fig, ax = plt.subplots(figsize=(6, 3.2))
for label_, history_ in (("from the autoencoder (the method)", cn_history),
                         ("from the true classes (diagnostic)", tc_history)):
    ax.plot([h["epoch"] for h in history_], [h["acc_unlabelled"] for h in history_], marker="o", label=label_)
ax.set(xlabel="epoch (accuracy at its start)", ylabel="accuracy, unlabelled training images", ylim=(0, 1),
       title=f"ClusterNet fine-tuning, labels {headline_name}")
ax.legend(fontsize=8)
plotting.save_figure(fig, out, "objective_check")
plt.show()
objective_table.round(4)

# %% [markdown]
# From the true-class start, fine-tuning goes from {glue:text}`objective_true_start:.3f` to
# {glue:text}`objective_true_acc:.3f`, with Eq. (3) at {glue:text}`objective_true_total:.3f` in
# its last epoch. From the autoencoder it goes from {glue:text}`objective_method_start:.3f` to
# {glue:text}`objective_method_acc:.3f`, with {glue:text}`objective_method_total:.3f`.
# {glue:text}`objective_verdict` The two totals are not one function evaluated at two embeddings:
# the unlabelled terms of Eq. (3) (Eq. (4) and (7)) use each run's own predicted clusters
# (Eq. (10)) as pseudo-labels, so a lower total also reflects the pseudo-labels each run gives
# itself. Only the labelled terms (`pair_l`, `cluster_l`) score both runs against the same labels.

# %% [markdown]
# ### Labelled images per class, and the choices the paper leaves open
#
# These runs take longer than the book build allows, so they are committed sweeps under
# `results/01_clusternet/` (each point's `request.json` holds its parameters; `COMMAND` the sweep).
# Each runs the `book` profile's budget with one thing changed, without the label-fraction sweep
# and the $\lambda$ ablation:
#
# * *labels per class* (`labels_per_class`): the paper's budgets as counts of MNIST-train, e.g.
#   120 per class for its 2%;
# * *the margin* $m$ of Eq. (6)-(7), at 2% labels;
# * *the other open choices*, at 2% labels, one at a time: the centre counts of Eq. (12)-(13)
#   restarting every epoch (`center_counts="epoch"`), the batch size, the learning rate, and
#   Eq. (15) read as printed (`unlabelled_pairs="cross"`).
#
# Each row shows the accuracy on the unlabelled training images and on the held-out images, the
# supervised floor at the same labels, and the paper's number for the same count where it has one.

# %%
PAPER_BY_COUNT = {30: ("Table 3, 0.5%, unlabelled", PAPER_TABLE3["acc"][0])} | {
    round(6000 * f): (f"Table 5, {f:.0%}, held-out", v[2]) for f, v in PAPER_TABLE5.items()}


def point_accuracies(run_: dict) -> dict:
    """A committed run's label budget and accuracies at it (ClusterNet, and the floor where recorded)."""
    by_experiment = {(r["experiment"], r["setting"].split(",")[1].strip() if "," in r["setting"] else "",
                      r["metric"]): r["value"] for r in run_["rows"]}
    return {"labels": record_labels(run_), "ClusterNet, unlabelled": results.headline(run_)["value"],
            "ClusterNet, held-out": by_experiment.get(("table5", "held-out", "acc"),
                                                      by_experiment.get(("heldout", "held-out", "acc"), np.nan)),
            "floor, unlabelled": by_experiment.get(("supervised_floor", "unlabelled train", "acc"), np.nan),
            "minutes": run_["wall_clock_seconds"] / 60}


def sweep_rows(folder: str, factor: str) -> pd.DataFrame:
    """One row per committed point of a sweep: its value of `factor` and its accuracies."""
    rows_ = [{factor: (run_ := results.load(path))["parameters"][factor], **point_accuracies(run_)}
             for path in sorted((COMMITTED / folder).rglob(results.RESULTS_FILE))]
    return pd.DataFrame(rows_).sort_values(factor).reset_index(drop=True) if rows_ else pd.DataFrame()


per_class_table = sweep_rows("labels-per-class-book", "labels_per_class")
if len(per_class_table):
    per_class_table["paper (same count of MNIST-train)"] = [PAPER_BY_COUNT.get(c, ("", np.nan))[1]
                                                          for c in per_class_table.labels_per_class]
    per_class_table["paper's table"] = [PAPER_BY_COUNT.get(c, ("", np.nan))[0] for c in per_class_table.labels_per_class]
    same_metric = [row["ClusterNet, unlabelled"] if "unlabelled" in row["paper's table"] else row["ClusterNet, held-out"]
                   for _, row in per_class_table.iterrows()]  # ours on the images the paper's table scores
    per_class_table["ours - paper (same images)"] = np.array(same_metric) - per_class_table[
        "paper (same count of MNIST-train)"]
at_120 = per_class_table.set_index("labels_per_class").reindex([120]).iloc[0] if len(per_class_table) else {}
report.glue("count120_acc", float(at_120.get("ClusterNet, unlabelled", np.nan)))  # NaN until the sweep is committed
report.glue("count120_floor", float(at_120.get("floor, unlabelled", np.nan)))
per_class_table.round(4)

# %%
margin_table = sweep_rows("margin-book", "margin")
best = margin_table.loc[margin_table["ClusterNet, unlabelled"].idxmax()] if len(margin_table) else {}
at_two = margin_table.set_index("margin")["ClusterNet, unlabelled"].get(2.0, np.nan) if len(margin_table) else np.nan
report.glue("margin_best", float(best.get("margin", np.nan)))  # NaN until the sweep is committed
report.glue("margin_best_acc", float(best.get("ClusterNet, unlabelled", np.nan)))
report.glue("margin_two_acc", float(at_two))
if len(margin_table):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(margin_table.margin, margin_table["ClusterNet, unlabelled"], marker="o", label="unlabelled training images")
    ax.plot(margin_table.margin, margin_table["ClusterNet, held-out"], marker="s", label="held-out images")
    ax.set(xscale="log", xlabel="margin m of Eq. (6)-(7)", ylabel="accuracy",
           title="ClusterNet at 2% labels, book budget, one factor changed")
    ax.legend()
    plt.show()
margin_table.round(4)

# %% [markdown]
# One factor at a time: every committed point at 2% labels whose parameters differ from the
# book's defaults in exactly one of the open choices, beside the defaults' own run.

# %%
OPEN_CHOICES = {"margin": 2.0, "center_counts": "running", "batch_size": 256, "learning_rate": 1e-3,
                "unlabelled_pairs": "unlabelled"}
one_factor = []
for folder in ("margin-book", "open-choices-book"):
    for path in sorted((COMMITTED / folder).rglob(results.RESULTS_FILE)):
        run_ = results.load(path)
        changed = [f for f, default in OPEN_CHOICES.items() if run_["parameters"].get(f, default) != default]
        if len(changed) > 1 or record_labels(run_) != "0.02":
            continue
        accuracies = point_accuracies(run_)
        one_factor.append({"factor": changed[0] if changed else "(the defaults)",
                           "value": str(run_["parameters"][changed[0]]) if changed else "",
                           "ClusterNet, unlabelled": accuracies["ClusterNet, unlabelled"],
                           "ClusterNet, held-out": accuracies["ClusterNet, held-out"]})
one_factor = pd.DataFrame(one_factor)
if len(one_factor):
    defaults_row = one_factor[one_factor.factor == "(the defaults)"]
    baseline_acc = float(defaults_row["ClusterNet, unlabelled"].iloc[0]) if len(defaults_row) else np.nan
    one_factor["change, unlabelled"] = one_factor["ClusterNet, unlabelled"] - baseline_acc
    one_factor = one_factor.sort_values(["factor", "value"], key=lambda column: pd.to_numeric(column, errors="coerce")
                                        if column.name == "value" else column).reset_index(drop=True)
one_factor.round(4)

# %% [markdown]
# **How far one run moves by chance.** The committed runs of this section (all but the GPU
# reference run) were made before commit a51ceff changed how the dropout masks are drawn (numpy's
# generator instead of torch's), so the same parameters and seed now draw other random numbers.
# The defaults, run again with the current code at three seeds (the `book` budget, the headline
# only; at 2% labels also Fig. 5(b)'s $\lambda = 0$ run), show how far one run moves by chance
# alone: at 2% labels (`results/01_clusternet/seeds-book/`) and at 120 labelled images per class
# (`seeds-120-book/`). Each seed draws its own split, labelled images and random numbers.

# %%
seed_table = pd.concat([sweep_rows(folder_, "seed") for folder_ in ("seeds-book", "seeds-120-book")],
                       ignore_index=True)
seed_spreads = (seed_table.groupby("labels")[["ClusterNet, unlabelled", "ClusterNet, held-out"]]
                .agg(lambda v: v.max() - v.min()) if len(seed_table) else pd.DataFrame())


def spread_at(labels_: str, column: str = "ClusterNet, unlabelled") -> float:
    """max - min over the committed seeds of the defaults at a label budget ("0.02", "120/class"); NaN if absent."""
    return float(seed_spreads.loc[labels_, column]) if labels_ in seed_spreads.index else np.nan


seed_spread = spread_at("0.02")
at_two_seeds = seed_table[seed_table.labels == "0.02"] if len(seed_table) else seed_table
report.glue("seed_count", len(at_two_seeds))
report.glue("seed_min", float(at_two_seeds["ClusterNet, unlabelled"].min()) if len(at_two_seeds) else np.nan)
report.glue("seed_max", float(at_two_seeds["ClusterNet, unlabelled"].max()) if len(at_two_seeds) else np.nan)
report.glue("seed_spread", seed_spread)
report.glue("seed_spread_heldout", spread_at("0.02", "ClusterNet, held-out"))
report.glue("seed120_spread", spread_at("120/class"))
report.glue("seed120_spread_heldout", spread_at("120/class", "ClusterNet, held-out"))
at_120_seeds = seed_table[seed_table.labels == "120/class"] if len(seed_table) else seed_table
report.glue("seed120_count", len(at_120_seeds))
below_120 = int((at_120_seeds["ClusterNet, unlabelled"] < at_120_seeds["floor, unlabelled"]).sum()) if len(
    at_120_seeds) else 0
report.glue("seed120_below_floor", below_120)


def seed_mean(labels_: str, column: str = "ClusterNet, unlabelled") -> float:
    """Mean over the committed seeds of the defaults at a label budget ("0.02", "120/class"); NaN if absent."""
    chosen = seed_table[seed_table.labels == labels_] if len(seed_table) else seed_table
    return float(chosen[column].mean()) if len(chosen) else np.nan


report.glue("seed120_mean", seed_mean("120/class"))
report.glue("seed120_floor_mean", seed_mean("120/class", "floor, unlabelled"))
report.glue("floor120_verdict",
            "No seed runs at 120 labelled images per class are committed, so ClusterNet is not compared with the "
            "supervised floor there." if not len(at_120_seeds) else
            f"With 120 labelled images per class, the supervised floor above beats ClusterNet at "
            f"{'every one' if below_120 == len(at_120_seeds) else below_120} of {len(at_120_seeds)} seeds "
            f"(means {seed_mean('120/class', 'floor, unlabelled'):.3f} and {seed_mean('120/class'):.3f})."
            if below_120 else
            f"With 120 labelled images per class, ClusterNet reaches the supervised floor above at every one of "
            f"{len(at_120_seeds)} seeds.")
report.glue("seed0_today", float(at_two_seeds.set_index("seed")["ClusterNet, unlabelled"].get(0, np.nan))
            if len(at_two_seeds) else np.nan)
report.glue("defaults_committed", baseline_acc if len(one_factor) else np.nan)  # the one-factor table's defaults
beyond = (one_factor[(one_factor.factor != "(the defaults)") & (one_factor["change, unlabelled"].abs() > seed_spread)]
          if len(one_factor) else pd.DataFrame())
report.glue("beyond_spread", ", ".join(f"{row.factor} = {row.value} ({row['change, unlabelled']:+.3f})"
                                       for _, row in beyond.iterrows()) or "none of them")
margin_change = float(best.get("ClusterNet, unlabelled", np.nan)) - float(at_two) if len(margin_table) else np.nan
report.glue("margin_change", margin_change)
report.glue("margin_verdict", "not yet compared with a spread between seeds (no seed runs committed)"
            if np.isnan(seed_spread) else f"more than the spread between seeds ({seed_spread:.3f})"
            if margin_change > seed_spread else
            f"no more than the spread between seeds ({seed_spread:.3f}), so one run per margin does not show "
            "that the margin matters")
report.glue("margin_why_lead", "Why a larger margin may help here (our reading, not tested):"
            if margin_change > seed_spread else  # False for NaN: the hypothesis-only wording
            "These runs do not show that a larger margin helps; one reason it could, a hypothesis we have not tested:")
display(seed_table.round(4))
seed_spreads.round(4)

# %% [markdown]
# At seed 0 and 2% labels the current code gives {glue:text}`seed0_today:.3f` on the unlabelled
# training images, against {glue:text}`defaults_committed:.3f` for the one-factor table's
# defaults: the same parameters and seed, other random numbers. Over the
# {glue:text}`seed_count` seeds the accuracy lies between {glue:text}`seed_min:.3f` and
# {glue:text}`seed_max:.3f`, a spread of {glue:text}`seed_spread:.3f`
# ({glue:text}`seed_spread_heldout:.3f` on the held-out images). With 120 labelled images per
# class the spread is {glue:text}`seed120_spread:.3f` ({glue:text}`seed120_spread_heldout:.3f`
# held out), and ClusterNet stays below the supervised floor at {glue:text}`seed120_below_floor`
# of its {glue:text}`seed120_count` seeds. The one-factor changes above (2% labels) that moved
# the accuracy by more than the spread at 2%: {glue:text}`beyond_spread`. Changes within
# that spread are within what chance alone moves one run, and one run per value cannot rank them.

# %% [markdown]
# ### What the labelled objective can do
#
# {glue:text}`floor120_verdict` Three runs,
# committed under `results/01_clusternet/labelled-objective-book/`, separate the parts of the
# objective. Each runs the `book` budget at 120 labelled images per class, and each also
# fine-tunes with $\lambda = 0$, so that the unlabelled terms of Eq. (3) are off:
#
# * *the defaults*: Eq. (6) on the labelled pairs and Eq. (7) on pairs of two unlabelled points;
# * *Eq. (15) as printed* (`unlabelled_pairs="cross"`): each unlabelled point is paired with the
#   labelled points of its batch;
# * *cross-entropy instead of Eq. (6)* (`labelled_loss="ce"`, a diagnostic, not the paper's
#   method): $-\log p_{y_i,i}$ of Eq. (16) on the labelled images. The centres, the cluster loss,
#   the reconstruction and the unlabelled terms are unchanged. With $\lambda = 0$ this is the
#   floor's own loss, but with the distance-based probabilities of Eq. (16) instead of a linear
#   layer.

# %%
def fig5b_value(run_: dict, which: str, metric: str = "acc") -> float:
    """Held-out score of a run's Fig. 5(b) row for `which` ('annealed (Eq. 17)', 'fixed 0'); NaN if absent."""
    table = fig5b_rows(run_).set_index("lambda")
    return float(table.loc[which, f"{metric}_heldout"]) if which in table.index else np.nan


OBJECTIVE_VARIANTS = {"unlabelled_pairs=unlabelled": "the defaults (Eq. 6, Eq. 7 on unlabelled pairs)",
                      "unlabelled_pairs=cross": "Eq. (15) as printed: unlabelled with labelled pairs",
                      "labelled_loss=ce": "cross-entropy of Eq. (16) instead of Eq. (6) (diagnostic)"}
objective_rows = []
for folder_name, variant in OBJECTIVE_VARIANTS.items():
    path = COMMITTED / "labelled-objective-book" / folder_name / results.RESULTS_FILE
    if path.exists():
        run_ = results.load(path)
        accuracies = point_accuracies(run_)
        objective_rows.append({"objective": variant, "labels": accuracies["labels"],
                               "ClusterNet, unlabelled": accuracies["ClusterNet, unlabelled"],
                               "ClusterNet, held-out": accuracies["ClusterNet, held-out"],
                               "lambda = 0, held-out": fig5b_value(run_, "fixed 0"),
                               "floor, unlabelled": accuracies["floor, unlabelled"]})
objective_table = pd.DataFrame(objective_rows)
by_variant = objective_table.set_index("objective") if len(objective_table) else pd.DataFrame()
objective_table.round(4)

# %% [markdown]
# ### The size of the unlabelled pool
#
# MNIST-train holds 60,000 images, `mnist5k` 4,500 for training. Fashion-MNIST has 70,000 real
# images offline, so the pool can grow there. The runs below fix the labels (30 per class, the
# paper's 0.5% of MNIST-train as a count) and the `book` budget in epochs, and draw stratified
# subsets of {glue:text}`pool_sizes` images (10% of each held out). The largest took
# {glue:text}`pool_largest_minutes:.0f` minutes on {glue:text}`pool_largest_device`; scaled by the
# pool's size, the full 70,000 would take about {glue:text}`pool_full_minutes:.0f` minutes. They
# are committed under `results/01_clusternet/pool-size-fashion-book/`. A fixed number of epochs
# means that a larger pool also gets proportionally more gradient steps, as it does in the paper.

# %%
pool_table = sweep_rows("pool-size-fashion-book", "n_samples")
if len(pool_table):
    pool_table.insert(1, "training images", (pool_table.n_samples * 0.9).round().astype(int))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(pool_table["training images"], pool_table["ClusterNet, unlabelled"], marker="o",
            label="ClusterNet, unlabelled training images")
    ax.plot(pool_table["training images"], pool_table["ClusterNet, held-out"], marker="s", label="ClusterNet, held-out")
    ax.plot(pool_table["training images"], pool_table["floor, unlabelled"], marker="^", ls="--",
            label="supervised floor, unlabelled training images")
    ax.set(xscale="log", xlabel="training images (pool)", ylabel="accuracy",
           title="Fashion-MNIST, 30 labelled images per class, book budget")
    ax.legend(fontsize=8)
    plotting.save_figure(fig, out, "pool_size")
    plt.show()
    smallest, largest = pool_table.iloc[0], pool_table.iloc[-1]
    report.glue("pool_smallest", int(smallest["training images"]))
    report.glue("pool_largest", int(largest["training images"]))
    report.glue("pool_smallest_acc", float(smallest["ClusterNet, unlabelled"]))
    report.glue("pool_largest_acc", float(largest["ClusterNet, unlabelled"]))
    report.glue("pool_smallest_margin", float(smallest["ClusterNet, unlabelled"] - smallest["floor, unlabelled"]))
    report.glue("pool_largest_margin", float(largest["ClusterNet, unlabelled"] - largest["floor, unlabelled"]))
    pool_accuracies = pool_table["ClusterNet, unlabelled"]
    report.glue("pool_min_acc", float(pool_accuracies.min()))
    report.glue("pool_max_acc", float(pool_accuracies.max()))
    report.glue("pool_count", len(pool_table))
    report.glue("pool_trend", "rises with every larger pool" if pool_accuracies.is_monotonic_increasing
                else "does not rise steadily with the pool")
    sizes = [f"{n:,}" for n in pool_table.n_samples]
    report.glue("pool_sizes", ", ".join(sizes[:-1]) + f" and {sizes[-1]}" if len(sizes) > 1 else sizes[0])
    report.glue("pool_largest_minutes", float(largest.minutes))
    report.glue("pool_largest_device", results.load(next((COMMITTED / "pool-size-fashion-book").glob(
        f"n_samples={largest.n_samples}/{results.RESULTS_FILE}")))["device"])
    report.glue("pool_full_minutes", float(largest.minutes * 70000 / largest.n_samples))
    grows = pool_accuracies.is_monotonic_increasing and largest["ClusterNet, unlabelled"] - largest[
        "floor, unlabelled"] > smallest["ClusterNet, unlabelled"] - smallest["floor, unlabelled"]
    report.glue("pool_verdict", "So here a larger pool helps, and more so than it helps the floor; a pool as large "
                "as the paper's might close more of the gap." if grows else "So at this budget these runs give no "
                "sign that a pool as large as the paper's would by itself close the gap.")
pool_table.round(4)

# %% [markdown]
# ### Accuracy against gradient steps
#
# The paper's 60 fine-tuning epochs over MNIST-train are far more updates than 60 epochs over our
# 4,500 images. We count the paper's updates on MNIST-train (60,000 images), the set its MNIST
# experiments train on; MNIST-test is used neither in pretraining nor in fine-tuning (Table 2).
# A pretraining epoch covers all 60,000 images, a fine-tuning epoch its unlabelled images, as
# ours do. The paper does not give its batch sizes; at ours, its 2% setting would take the
# number of fine-tuning steps marked by the dashed line, and its 100 pretraining epochs
# {glue:text}`paper_pretrain_steps:,` steps. Every run records its accuracy at the start of
# every fine-tuning epoch and at the end (experiment `steps`). Below: this build's runs,
# and the committed runs on `mnist5k` under `results/01_clusternet/` whose records hold these
# curves, each with the accuracy on its unlabelled training images (dotted) and on the held-out
# images (solid). The horizontal dotted line is the paper's held-out accuracy at 2% (Table 5).

# %%
def steps_curves(run_: dict) -> pd.DataFrame:
    """A record's `steps` rows as a table: labels, run, images scored ('unlabelled train' or 'held-out'), step, acc."""
    curves_ = []
    for row in run_["rows"]:
        if row["experiment"] == "steps":
            labels_, run_index, where, step = (part.strip() for part in row["setting"].split(","))
            curves_.append({"labels": labels_.removeprefix("labels="), "run": int(run_index.split()[1]),
                            "images": where, "step": int(step.split()[1]), "acc": row["value"]})
    return pd.DataFrame(curves_, columns=["labels", "run", "images", "step", "acc"])


def pretrain_steps(run_: dict) -> int:
    """Pretraining updates of a run on mnist5k: its epochs of 4,500 images in batches of `pretrain_batch_size`."""
    p_ = run_["parameters"]
    return p_["pretrain_epochs"] * batches_per_epoch(4500, p_["pretrain_batch_size"])


paper_steps = 60 * batches_per_epoch(round(0.98 * 60000))  # 60 epochs of MNIST-train's unlabelled 98%
paper_pretrain_steps = 100 * batches_per_epoch(60000, pretrain_batch_size)  # 100 epochs of MNIST-train
long_runs = {path.parent.name: run_ for path in sorted(COMMITTED.glob(f"*/{results.RESULTS_FILE}"))
             if len(steps_curves(run_ := results.load(path))) and run_["dataset"]["name"] == "mnist5k"}
curve_sources = {f"this build ({profile})": record.to_dict()} | {f"reference: {name_}": run_
                                                                 for name_, run_ in long_runs.items()}
fig, ax = plt.subplots(figsize=(10, 4))
colours = iter(sns.color_palette(n_colors=20))
for source, run_ in curve_sources.items():
    for (labels_, run_index), curves_ in steps_curves(run_).groupby(["labels", "run"]):
        colour = next(colours)  # one colour per fine-tuning run; solid: held-out images, dotted: unlabelled training
        for where, curve in curves_.groupby("images"):
            ax.plot(curve.step.clip(lower=1), curve.acc, color=colour, ls="-" if where == "held-out" else ":",
                    marker="." if len(curve) > 30 else "o", markersize=3 if len(curve) > 30 else 5,
                    label=f"{source}: labels {labels_}, run {run_index}, {where}")
ax.axvline(paper_steps, color="k", ls="--", lw=1)
ax.axhline(PAPER_TABLE5[0.02][2], color="k", ls=":", lw=1)
ax.set(xscale="log", xlabel="gradient steps of fine-tuning (log scale; step 0 drawn at 1)",
       ylabel="accuracy", title=f"Dashed: the paper's 60 epochs of MNIST-train at batch {batch_size}")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes, clear of the curves
plotting.save_figure(fig, out, "accuracy_vs_steps")
plt.show()
report.glue("paper_steps", paper_steps)
report.glue("paper_heldout_2pc", PAPER_TABLE5[0.02][2])
# the epochs that give the paper's updates on mnist5k at 120 labelled images per class (4,500 - 1,200 unlabelled)
report.glue("matched_pretrain_epochs", math.ceil(paper_pretrain_steps / batches_per_epoch(4500, pretrain_batch_size)))
report.glue("matched_finetune_epochs", math.ceil(paper_steps / batches_per_epoch(4500 - 1200)))
report.glue("paper_pretrain_steps", paper_pretrain_steps)
report.glue("build_steps", finetune_steps)

# %%
def long_run_summary(name_: str, run_: dict) -> dict:
    """A committed long run at a glance: its updates against the paper's, and its accuracies (final, best seen)."""
    curves_ = steps_curves(run_)
    final = curves_[curves_.step == curves_.step.max()].set_index("images").acc
    accuracies = point_accuracies(run_)
    unlabelled_curve, last = curves_[curves_.images == "unlabelled train"].set_index("step").acc, curves_.step.max()
    window_mean = lambda start, stop: unlabelled_curve.loc[start * last:stop * last].mean()  # steps ascending
    reversed_ = unlabelled_curve.iloc[::-1]
    flat_checks = int((reversed_ != reversed_.iloc[0]).cumsum().eq(0).sum())  # last checks equal to the final value
    return {"run": name_, "labels": record_labels(run_), "fine-tuning steps": int(last),
            "share of the paper's fine-tuning steps": last / paper_steps,
            "pretraining steps": pretrain_steps(run_),
            "share of the paper's pretraining steps": pretrain_steps(run_) / paper_pretrain_steps,
            "final, unlabelled": final.get("unlabelled train", np.nan), "final, held-out": final.get("held-out", np.nan),
            "paper, held-out (Table 5, 2%)": PAPER_TABLE5[0.02][2],
            "final - paper, held-out": final.get("held-out", np.nan) - PAPER_TABLE5[0.02][2],
            "highest seen, held-out": curves_[curves_.images == "held-out"].acc.max(),
            "second half's change, unlabelled": window_mean(0.9, 1.0) - window_mean(0.4, 0.5),  # means of 10% windows
            "unlabelled acc unchanged since step": int(unlabelled_curve.index[-flat_checks]),
            "checks since then": flat_checks,
            "floor, unlabelled (same steps)": accuracies["floor, unlabelled"], "minutes": accuracies["minutes"]}


long_table = pd.DataFrame([long_run_summary(name_, run_) for name_, run_ in long_runs.items()
                           if record_labels(run_) == "120/class"])
longest = long_table.loc[long_table["fine-tuning steps"].idxmax()] if len(long_table) else pd.Series(dtype=object)
long_share = float(longest.get("share of the paper's fine-tuning steps", np.nan))
long_pretrain_share = float(longest.get("share of the paper's pretraining steps", np.nan))
report.glue("long_name", longest.get("run", "none"))  # NaN below until a long run at 120 per class is committed
for key, column in {"long_steps": "fine-tuning steps",
                    "long_share": "share of the paper's fine-tuning steps",
                    "long_pretrain_share": "share of the paper's pretraining steps",
                    "long_final_u": "final, unlabelled", "long_final_h": "final, held-out",
                    "long_best_h": "highest seen, held-out", "long_floor": "floor, unlabelled (same steps)",
                    "long_second_half": "second half's change, unlabelled",
                    "long_minutes": "minutes"}.items():
    report.glue(key, float(longest.get(column, np.nan)))


def long_run_verdict() -> str:
    """What the longest run at 120 per class says about more updates: its second half against the seed spread."""
    if not len(longest):
        return "No long run at 120 labelled images per class is committed, so the effect of more updates is not measured."
    change_, spread_ = float(longest["second half's change, unlabelled"]), spread_at("120/class")
    below = [what for what, ours, theirs in
             (("the paper's held-out accuracy", longest["final, held-out"], PAPER_TABLE5[0.02][2]),
              ("the floor", longest["final, unlabelled"], longest["floor, unlabelled (same steps)"])) if ours < theirs]
    ends = f" It ends below {' and below '.join(below)}." if below else ""
    if np.isnan(spread_):
        return f"No spread between seeds at 120 per class is committed to compare that change with.{ends}"
    if abs(change_) <= spread_:
        return (f"That is within the spread between seeds at 120 per class ({spread_:.3f}): over its second half the "
                f"curve is flat.{ends}" + (" So this run gives no sign that the rest of the paper's fine-tuning "
                                           "updates would close the gap." if below else ""))
    return (f"That is more than the spread between seeds at 120 per class ({spread_:.3f}): the accuracy is still "
            f"{'rising' if change_ > 0 else 'falling'} at the end of this run.{ends}")


flat_checks = int(longest.get("checks since then", 0))
report.glue("long_verdict", long_run_verdict())
report.glue("long_flat_note",
            f"From step {int(longest['unlabelled acc unchanged since step']):,} to its last, the accuracy on the "
            f"unlabelled training images is exactly the same, {longest['final, unlabelled']:.4f}, at each of its "
            f"{flat_checks} checks (one per epoch)." if flat_checks >= 3 else "")
long_table.round(4)

# %% [markdown]
# **More fine-tuning at the `book` budget.** This build's `book` headline (the curves above) is
# still rising at its last step. Three seeds of the `book` budget with {glue:text}`ft_long`
# fine-tuning epochs instead of the profile's {glue:text}`ft_short` (the headline only, without the
# label-fraction sweep and Fig. 5(b)), and the same three seeds at {glue:text}`ft_short`, all with
# the same code on the same machine, measure what three times the fine-tuning buys. They are under
# `results/01_clusternet/finetune-epochs-book/` with their `COMMAND`.

# %%
TARGETS = {"book": 0.90, "paper": 0.95}  # issue 6's accuracy targets at 2% labels (the Targets section)
report.glue("book_target_acc", TARGETS["book"])
finetune_runs = [results.load(path) for path in sorted((COMMITTED / "finetune-epochs-book").rglob(results.RESULTS_FILE))]
finetune_table = pd.DataFrame([{"finetune_epochs": run_["parameters"]["finetune_epochs"], "seed": run_["parameters"]["seed"],
                                **point_accuracies(run_)} for run_ in finetune_runs])
if len(finetune_table):
    finetune_table = finetune_table.sort_values(["finetune_epochs", "seed"]).reset_index(drop=True)
ft_lengths = sorted(finetune_table["finetune_epochs"].unique()) if len(finetune_table) else []
ft_short = report.glue("ft_short", int(ft_lengths[0]) if len(ft_lengths) > 1 else 0)
ft_long = report.glue("ft_long", int(ft_lengths[-1]) if len(ft_lengths) > 1 else 0)
ft_means = finetune_table.drop(columns=["seed", "labels"]).groupby("finetune_epochs").mean() if len(
    finetune_table) else pd.DataFrame()
for which_, epochs_ in (("short", ft_short), ("long", ft_long)):
    for key_, column_ in (("mean", "ClusterNet, unlabelled"), ("minutes", "minutes")):
        report.glue(f"ft_{key_}_{which_}", float(ft_means[column_].get(epochs_, np.nan)) if len(ft_means) else np.nan)
ft_paired = (finetune_table.pivot(index="seed", columns="finetune_epochs", values="ClusterNet, unlabelled").dropna()
             if len(ft_lengths) > 1 else pd.DataFrame())
ft_gains = ft_paired[ft_long] - ft_paired[ft_short] if len(ft_paired) else pd.Series(dtype=float)
report.glue("ft_gain_min", float(ft_gains.min()) if len(ft_gains) else np.nan)
report.glue("ft_gain_max", float(ft_gains.max()) if len(ft_gains) else np.nan)
report.glue("ft_gain_words", "no such runs are committed in this checkout" if not len(ft_gains) else
            "every seed gains" if (ft_gains > 0).all() else f"{int((ft_gains > 0).sum())} of {len(ft_gains)} seeds gain")
ft_long_acc = finetune_table.loc[finetune_table["finetune_epochs"] == ft_long, "ClusterNet, unlabelled"] if len(
    finetune_table) else pd.Series(dtype=float)
ft_reached = int((ft_long_acc >= TARGETS["book"]).sum())
report.glue("ft_at_target", f"{ft_reached} of {len(ft_long_acc)}")
report.glue("ft_max_long", float(ft_long_acc.max()) if len(ft_long_acc) else np.nan)
# each run's accuracy on its unlabelled training images against fine-tuning steps, by (epochs, seed)
ft_curves = {(run_["parameters"]["finetune_epochs"], run_["parameters"]["seed"]):
             steps_curves(run_).query("images == 'unlabelled train'").set_index("step").acc for run_ in finetune_runs}
if ft_curves:
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for (epochs_, seed_), curve_ in ft_curves.items():
        ax.plot(curve_.index, curve_.values, marker="o", ms=3, color=f"C{seed_}", ls="-" if epochs_ == ft_long else ":",
                label=f"seed {seed_}, {epochs_} epochs")
    ax.axhline(TARGETS["book"], color="grey", ls="--", lw=1, label="book target")
    ax.set(xlabel="gradient steps of fine-tuning", ylabel="accuracy, unlabelled training images",
           title="ClusterNet at 2% labels, book budget, three seeds")
    ax.legend(fontsize=7, ncol=2)
    plotting.save_figure(fig, out, "finetune_epochs_book")
    plt.show()
short_end = max((curve_.index.max() for (epochs_, _), curve_ in ft_curves.items() if epochs_ == ft_short), default=0)
ahead_ = [curve_.get(short_end, np.nan) > ft_curves[(ft_long, seed_)].get(short_end, np.nan)
          for (epochs_, seed_), curve_ in ft_curves.items() if epochs_ == ft_short and (ft_long, seed_) in ft_curves]
report.glue("ft_short_end", int(short_end))
report.glue("ft_ahead_words", "in every seed" if ahead_ and all(ahead_) else
            f"in {sum(ahead_)} of {len(ahead_)} seeds" if ahead_ else "(no committed runs)")
report.glue("ft_decision",
            "" if not len(ft_long_acc) else
            "So more fine-tuning alone does not reach the target at this budget, and" if ft_reached < len(ft_long_acc)
            else "So more fine-tuning reaches the target at every seed, but")
finetune_table.round(4)

# %% [markdown]
# With {glue:text}`ft_long` fine-tuning epochs the mean over the seeds on the unlabelled training
# images goes from {glue:text}`ft_mean_short:.3f` to {glue:text}`ft_mean_long:.3f`:
# {glue:text}`ft_gain_words`, by {glue:text}`ft_gain_min:+.3f` to {glue:text}`ft_gain_max:+.3f`, and
# {glue:text}`ft_at_target` seeds reach the `book` target of {glue:text}`book_target_acc:.2f` (the best:
# {glue:text}`ft_max_long:.3f`). {glue:text}`ft_decision` one such run, the headline alone, takes
# {glue:text}`ft_minutes_long:.1f` minutes here against {glue:text}`ft_minutes_short:.1f`; the
# `book` build also fine-tunes Table 3's 0.5% run and Fig. 5(b)'s $\lambda = 0$ run for as many
# epochs, so the profile keeps its {glue:text}`ft_short` epochs to stay within six minutes. At step
# {glue:text}`ft_short_end`, where the shorter runs stop, they are ahead of the longer ones
# {glue:text}`ft_ahead_words`: $T_1$ and $T_2$ of Eq. (17) scale with the number of epochs, so a
# longer run climbs $\lambda$'s ramp more slowly per step (a likely cause that we did not isolate).

# %% [markdown]
# ### How much each cause moves the accuracy
#
# One row per measurement above: the accuracy before and after the one change, both from
# committed runs at the `book` budget. It is scored on the unlabelled training images, except the
# $\lambda = 0$ row, which Fig. 5(b) records on the held-out images. The last two columns give the
# spread between seeds measured above at the row's label budget (on the held-out images for the
# $\lambda = 0$ row; none was measured on Fashion-MNIST) and whether the change exceeds it.

# %%
def ledger_row(cause: str, change: str, before: float, after: float) -> dict:
    return {"cause": cause, "change": change, "before": before, "after": after, "difference": after - before}


def objective_acc(variant: str, column: str = "ClusterNet, unlabelled") -> float:
    """One accuracy of a committed labelled-objective run; NaN when that run is not committed."""
    return float(by_variant.loc[variant, column]) if variant in by_variant.index else np.nan


default_variant, cross_variant, ce_variant = OBJECTIVE_VARIANTS.values()
ledger = pd.DataFrame([
    ledger_row("labels per class", f"2% of mnist5k (9 per class) -> 120 per class (means of "
               f"{len(at_two_seeds)} and {len(at_120_seeds)} seeds)", seed_mean("0.02"), seed_mean("120/class")),
    ledger_row("criterion on the labelled images", "Eq. (6) -> cross-entropy of Eq. (16), 120 per class",
               objective_acc(default_variant), objective_acc(ce_variant)),
    ledger_row("unlabelled terms of Eq. (3)", "annealed lambda -> lambda = 0, 120 per class (held-out)",
               objective_acc(default_variant, "ClusterNet, held-out"), objective_acc(default_variant, "lambda = 0, held-out")),
    ledger_row("reading of Eq. (15)", "unlabelled pairs -> unlabelled with labelled, 120 per class",
               objective_acc(default_variant), objective_acc(cross_variant)),
    ledger_row("margin m", f"m = 2 -> m = {float(best.get('margin', np.nan)):g}, 2% labels", float(at_two),
               float(best.get("ClusterNet, unlabelled", np.nan))),
    ledger_row("size of the pool (Fashion-MNIST)",
               "smallest -> largest committed pool, 30 per class" if len(pool_table) else "no runs committed",
               float(pool_table["ClusterNet, unlabelled"].iloc[0]) if len(pool_table) else np.nan,
               float(pool_table["ClusterNet, unlabelled"].iloc[-1]) if len(pool_table) else np.nan),
    ledger_row("gradient steps",
               f"120 per class: book budget -> {longest['run']} ({long_share:.0%} of the paper's fine-tuning "
               "steps, learning rate 1e-4)" if len(longest) else "no long run committed",
               float(at_120.get("ClusterNet, unlabelled", np.nan)), float(longest.get("final, unlabelled", np.nan))),
])
floor_120 = float(objective_table["floor, unlabelled"].iloc[0]) if len(objective_table) else np.nan
change_by_cause = ledger.set_index("cause").difference
# the spread between seeds that applies to each row: at the row's label budget (the larger of the
# two for the labels row), on the images it is scored on; none measured for the Fashion-MNIST pools
spread_by_cause = {"labels per class": np.fmax(spread_at("0.02"), spread_at("120/class")),
                   "criterion on the labelled images": spread_at("120/class"),
                   "unlabelled terms of Eq. (3)": spread_at("120/class", "ClusterNet, held-out"),
                   "reading of Eq. (15)": spread_at("120/class"), "margin m": spread_at("0.02"),
                   "gradient steps": spread_at("120/class")}
ledger["seed spread"] = ledger.cause.map(spread_by_cause).astype(float)
ledger["beyond the seed spread"] = np.where(ledger["seed spread"].isna(), "not measured",
                                            np.where(ledger.difference.abs() > ledger["seed spread"], "yes", "no"))
beyond_by_cause = ledger.set_index("cause")["beyond the seed spread"]
ce_gain = float(change_by_cause["criterion on the labelled images"])
ce_matters = beyond_by_cause["criterion on the labelled images"] == "yes" and ce_gain > 0
report.glue("ledger_ce_verdict", "more than" if beyond_by_cause["criterion on the labelled images"] == "yes"
            else "no more than" if beyond_by_cause["criterion on the labelled images"] == "no" else "not compared with")
report.glue("ledger_ce_gain", ce_gain)
report.glue("ledger_ce_to_floor", floor_120 - objective_acc(ce_variant))
report.glue("ledger_ce_floor_verdict",
            f"more than the spread between seeds at 120 per class ({spread_at('120/class'):.3f}): it is what the rest "
            "of the objective costs here" if floor_120 - objective_acc(ce_variant) > spread_at("120/class") else
            f"no more than the spread between seeds at 120 per class ({spread_at('120/class'):.3f}), so these runs do "
            "not show that the rest of the objective costs anything")
report.glue("objective_reconcile",
            f"This check runs with {headline_text} labelled, the criterion comparison above with 120 images per "
            "class; they ask different questions: whether Eq. (3) keeps the true classes, and which labelled "
            "criterion gets further from the autoencoder in a fixed budget of updates." + (
                " Both answers fit one reading: Eq. (3) scores the true classes well, but fine-tuning from the "
                "autoencoder does not reach them in this budget, and a criterion that learns faster from the "
                "labels gets closer." if keeps and lower and ce_matters else ""))
unlabelled_rows = beyond_by_cause[["unlabelled terms of Eq. (3)", "reading of Eq. (15)"]]
report.glue("ledger_unlabelled_header",
            "The unlabelled half of the objective is not the cause here." if (unlabelled_rows == "no").all() else
            "The unlabelled half of the objective moves the accuracy." if (unlabelled_rows == "yes").any() else
            "The unlabelled half of the objective is not compared with a spread between seeds.")
report.glue("ledger_lambda0_spread", spread_at("120/class", "ClusterNet, held-out"))
lambda0_state = beyond_by_cause["unlabelled terms of Eq. (3)"]
report.glue("lambda0_verdict",
            f"Switching the unlabelled terms off (λ = 0, one run) changes the held-out accuracy by only "
            f"{float(change_by_cause['unlabelled terms of Eq. (3)']):+.3f}, within the spread between seeds: at this "
            "budget ClusterNet scores about the same with the unlabelled images as without them." if lambda0_state == "no"
            else f"Switching the unlabelled terms off (λ = 0, one run) changes the held-out accuracy by "
            f"{float(change_by_cause['unlabelled terms of Eq. (3)']):+.3f}, more than the spread between seeds."
            if lambda0_state == "yes" else "The run with the unlabelled terms off (λ = 0) is not committed.")
report.glue("ledger_labelled_header",
            "Replacing the labelled criterion raises the accuracy by more than chance does." if ce_matters else
            "Replacing the labelled criterion lowers the accuracy by more than chance does." if
            beyond_by_cause["criterion on the labelled images"] == "yes" else
            "Replacing the labelled criterion does not move the accuracy by more than chance does." if
            beyond_by_cause["criterion on the labelled images"] == "no" else
            "Replacing the labelled criterion is not compared with a spread between seeds.")
report.glue("ledger_ce_reading", "In this budget of updates, the pairwise criterion of Eq. (6) learns less from the same "
            "labels than cross-entropy on the same probabilities does." if ce_matters else
            "So these runs do not show that the pairwise criterion learns less from the same labels.")
labels_gap = PAPER_TABLE5[0.02][2] - seed_mean("120/class", "ClusterNet, held-out")
report.glue("labels_gap_verdict", f"leave the held-out accuracy {labels_gap:.3f} below the paper's"
            if labels_gap > 0 else "bring the held-out accuracy to the paper's" if labels_gap <= 0 else
            "are not compared with the paper (no seed runs committed)")
report.glue("ledger_lambda0_change", float(change_by_cause["unlabelled terms of Eq. (3)"]))
report.glue("ledger_cross_change", float(change_by_cause["reading of Eq. (15)"]))
report.glue("ledger_labels_change", float(change_by_cause["labels per class"]))
ledger.round(4)

# %% [markdown]
# **What these measurements say.** With the paper's count of labels (120 images per class, its 2%
# of MNIST-train), ClusterNet at the book budget classifies {glue:text}`seed120_mean:.3f` of the
# unlabelled training images (mean of {glue:text}`seed120_count` seeds), while the supervised
# floor, trained on the same labelled images alone, reaches {glue:text}`seed120_floor_mean:.3f` on
# the same images and beats ClusterNet at {glue:text}`seed120_below_floor` of those seeds. From 9
# to 120 labelled images per class the accuracy changes by {glue:text}`ledger_labels_change:+.3f`
# (means over seeds), and the extra labels {glue:text}`labels_gap_verdict`
# ({glue:text}`paper_heldout_2pc:.3f`). {glue:text}`lambda0_verdict`
#
# * *{glue:text}`ledger_unlabelled_header`* Switching the unlabelled terms off ($\lambda = 0$)
#   changes held-out accuracy by {glue:text}`ledger_lambda0_change:+.3f` (spread between seeds on
#   the held-out images at 120 per class: {glue:text}`ledger_lambda0_spread:.3f`), and reading
#   Eq. (15) as printed (unlabelled points paired with labelled ones) changes the unlabelled
#   training images' accuracy by {glue:text}`ledger_cross_change:+.3f` (spread
#   {glue:text}`seed120_spread:.3f`; one run each).
# * *{glue:text}`ledger_labelled_header`* Replacing Eq. (6)'s pairwise KL on the labelled images
#   by the cross-entropy of the same probabilities (Eq. (16)) changes the accuracy by
#   {glue:text}`ledger_ce_gain:+.3f`, with nothing else changed, {glue:text}`ledger_ce_verdict` the
#   spread between seeds at 120 labels per class ({glue:text}`seed120_spread:.3f`; one run each).
#   {glue:text}`ledger_ce_reading` The swap keeps Eq. (16)'s distance-based probabilities and the
#   running-mean centres of Eq. (12)-(13), so it compares two criteria on the same probabilities;
#   it does not isolate Hsu and Kira's pairwise KL from the rest of ClusterNet's design. We found
#   no defect in our code (each term is checked against its equation above). The remaining
#   {glue:text}`ledger_ce_to_floor:.3f` between that variant and the floor is
#   {glue:text}`ledger_ce_floor_verdict`. That rest is the pretrained start (the floor starts
#   fresh), the centres that move by running means instead of by gradient, and the cluster and
#   reconstruction terms.
# * *Objective or search?* Fine-tuned from an embedding that already separates the true classes
#   ({ref}`sec-objective-check`), this build's headline run ends at
#   {glue:text}`objective_true_acc:.3f`, against {glue:text}`objective_method_acc:.3f` from the
#   autoencoder. {glue:text}`objective_verdict` {glue:text}`objective_reconcile`
# * *The margin*, which the paper does not give: at 2% labels, accuracy goes from
#   {glue:text}`margin_two_acc:.3f` with $m = 2$ (Hsu and Kira's value, our default) to
#   {glue:text}`margin_best_acc:.3f` with $m =$ {glue:text}`margin_best:g`
#   ({glue:text}`margin_change:+.3f`), {glue:text}`margin_verdict`.
#   The open choices that moved the accuracy by more than that: {glue:text}`beyond_spread`.
#   {glue:text}`margin_why_lead` a dissimilar pair stops pushing once its divergence reaches
#   $m$. The probabilities of Eq. (16) come from squared distances in a tanh-bounded latent space,
#   and the cluster loss of Eq. (4)-(5) pulls every point towards its centre. So a small margin
#   would be met while the centres are still close together, leaving the classes narrowly
#   separated. We keep $m = 2$: choosing $m$ by accuracy would tune on the labels we score with.
# * *The size of the pool.* On Fashion-MNIST with 30 labels per class and the epochs fixed (so
#   the larger pools also get more updates), accuracy {glue:text}`pool_trend`: it goes from
#   {glue:text}`pool_smallest_acc:.3f` with {glue:text}`pool_smallest:,` training images to
#   {glue:text}`pool_largest_acc:.3f` with {glue:text}`pool_largest:,`, and lies between
#   {glue:text}`pool_min_acc:.3f` and {glue:text}`pool_max_acc:.3f` over the
#   {glue:text}`pool_count` pools (one run each). ClusterNet's margin over the floor is
#   {glue:text}`pool_smallest_margin:+.3f` at the smallest pool and
#   {glue:text}`pool_largest_margin:+.3f` at the largest. {glue:text}`pool_verdict`
# * *Gradient steps.* This build makes {glue:text}`build_steps` fine-tuning updates at the headline
#   budget; the paper's 60 epochs of MNIST-train at our batch size would be
#   {glue:text}`paper_steps:,`. The committed run {glue:text}`long_name` keeps 120 labelled images
#   per class, pretrains for the paper's 100 epochs ({glue:text}`long_pretrain_share:.0%` of the
#   paper's pretraining updates, since our epochs are smaller) and fine-tunes at the paper's learning
#   rate for {glue:text}`long_steps:,.0f` updates, {glue:text}`long_share:.0%` of the paper's. It
#   ends at {glue:text}`long_final_u:.3f` on the unlabelled training images (the book budget at the
#   same labels: {glue:text}`count120_acc:.3f`) and at {glue:text}`long_final_h:.3f` on the
#   held-out images, against the paper's {glue:text}`paper_heldout_2pc:.3f`. Over the second half
#   of its updates the accuracy on the unlabelled images changes by
#   {glue:text}`long_second_half:+.3f`, and the supervised floor trained for as many steps on the
#   labelled images alone reaches {glue:text}`long_floor:.3f` on the same images.
#   {glue:text}`long_verdict` {glue:text}`long_flat_note` What we could not test is the paper's
#   much longer pretraining.

# %% [markdown]
# ### Reference run at the paper's budget
#
# The `paper` profile (100 + 60 epochs, Adam $10^{-4}$) takes too long for the book build on
# 2 CPU cores. Its headline was run once on 2 CPU cores with two labelled/unlabelled splits
# (`paper-mnist5k`) and once on a lent GPU (one NVIDIA H200) with the paper's five
# (`paper-mnist5k-h200`). Each results.json is committed under `results/01_clusternet/` with the
# command that made it (`COMMAND` beside it); each column names the device that ran it. Their
# numbers, beside the paper's and this build's:

# %%
def headline_rows(record_: dict) -> dict:
    """(metric description -> value) for the numbers every run of this chapter reports at its label budget."""
    found = {"acc, unlabelled training images": results.headline(record_)["value"]}
    for row in record_["rows"]:
        if row["experiment"] == "table5" and row["setting"].startswith(f"labels={record_labels(record_)},"):
            found[f"{row['metric']}, held-out images"] = row["value"]
    return found


this_build = headline_rows(record.to_dict())
paper_row = PAPER_TABLE5.get(paper_fraction(headline_labels), (None,) * 4)
columns = {"paper (MNIST, Table 5)": {"acc, held-out images": paper_row[2], "nmi, held-out images": paper_row[0]}}
for path in sorted(COMMITTED.glob("*/results.json")):
    reference = results.load(path)
    if record_labels(reference) != headline_name:
        continue
    p_ = reference["parameters"]
    columns[f"reference: {path.parent.name} ({reference['profile']}, {p_['pretrain_epochs']}+"
            f"{p_['finetune_epochs']} epochs, {reference['wall_clock_seconds'] / 60:.0f} min, "
            f"{reference['device']})"] = headline_rows(reference)
columns[f"this build ({profile}, {budget.pretrain_epochs}+{budget.finetune_epochs} epochs)"] = this_build
reference_table = pd.DataFrame(columns).reindex(list(this_build))
reference_table.round(4)

# %% [markdown]
# ## Targets
#
# Three targets, each on `mnist5k`, each checked on the runs that exist: this build and the
# committed reference runs.
#
# * The `paper` profile at 2% labels: accuracy on the unlabelled training images of at least 0.95.
# * The `book` profile at 2% labels, within its six minutes: at least 0.90 on the unlabelled
#   training images.
# * The paper's 2% setting matched in labels (120 images per class) and in gradient steps:
#   held-out accuracy of at least 0.97 (the paper's Table 5: 0.984).
#
# Each run is also compared with constrained k-means on the autoencoder's features at the
# same labels.

# %%
def steps_matched(run_: dict) -> bool:
    """Whether a run made at least the paper's updates, in pretraining and (by its `steps` rows) in fine-tuning."""
    curves_ = steps_curves(run_)
    return len(curves_) > 0 and pretrain_steps(run_) >= paper_pretrain_steps and curves_.step.max() >= paper_steps


def target_verdict(run: dict) -> dict | None:
    """The target a run's record is held to, with MET / MISSED; None when no target applies."""
    p_, profile_ = run["parameters"], run["profile"]
    if run["dataset"]["name"] != "mnist5k":
        return None
    if p_.get("labels_per_class") == 120 and steps_matched(run):
        goal, metric, value = 0.97, "acc, held-out images", headline_rows(run).get("acc, held-out images")
    elif p_.get("label_fraction") == 0.02 and profile_ in ("book", "paper"):
        goal, metric, value = TARGETS[profile_], "acc, unlabelled training images", \
            results.headline(run)["value"]
    else:
        return None
    return {"profile": profile_, "labels": record_labels(run), "metric": metric, "value": None if value is None else round(value, 4), "target": goal,
            "verdict": "MET" if value is not None and value >= goal else "MISSED"}


runs_to_check = {f"this build ({profile})": record.to_dict()}
runs_to_check.update({f"reference: {path.parent.name}": results.load(path)
                      for path in sorted(COMMITTED.glob("*/results.json"))})
target_rows = {source: verdict_ for source, run_ in runs_to_check.items() if (verdict_ := target_verdict(run_)) is not None}
for goal_profile, goal_ in ((p_, TARGETS[p_]) for p_ in ("paper", "book")):  # every target gets a row, NOT RUN when no run has it
    if not any(row_["profile"] == goal_profile and row_["labels"] == "0.02" for row_ in target_rows.values()):
        target_rows[f"{goal_profile} profile at 2% labels: not among these runs"] = {
            "profile": goal_profile, "labels": "0.02", "metric": "acc, unlabelled training images", "value": None,
            "target": goal_, "verdict": "NOT RUN"}
matched_rows = {source: row_ for source, row_ in target_rows.items() if row_["labels"] == "120/class"}
if matched_rows:
    matched_verdict = "MET" if any(row_["verdict"] == "MET" for row_ in matched_rows.values()) else "MISSED"
    target_matched = "; ".join(f"{row_['verdict']} by {source} (held-out {row_['value'] or np.nan:.3f})"
                               for source, row_ in matched_rows.items())
elif len(longest):  # no run has the paper's updates: the closest is held to the target, marked with its shares
    closest_h = headline_rows(long_runs[longest["run"]]).get("acc, held-out images", np.nan)
    closest = (f"reference: {longest['run']} (closest: {long_share:.0%} of the paper's fine-tuning and "
               f"{long_pretrain_share:.0%} of its pretraining updates)")
    target_rows[closest] = {"profile": long_runs[longest["run"]]["profile"], "labels": "120/class",
                            "metric": "acc, held-out images", "value": round(closest_h, 4), "target": 0.97,
                            "verdict": "MISSED" if closest_h < 0.97 else "NOT RUN"}  # reaching it early proves nothing
    matched_verdict = target_rows[closest]["verdict"]
    target_matched = (f"{target_rows[closest]['verdict']}: no committed run makes the paper's updates; the closest, "
                      f"{longest['run']}, made {long_share:.0%} of its fine-tuning and {long_pretrain_share:.0%} of its "
                      f"pretraining updates and reaches {closest_h:.3f} held out")
else:
    target_rows["labels and steps matched to the paper's 2%"] = {
        "profile": "", "labels": "120/class", "metric": "acc, held-out images", "value": None, "target": 0.97,
        "verdict": "NOT RUN"}
    matched_verdict = "NOT RUN"
    target_matched = "NOT RUN: no committed run at 120 labelled images per class records accuracy against steps"
target_table = pd.DataFrame(target_rows).T
report.glue("target_matched", target_matched)
report.glue("target_matched_verdict", matched_verdict)
print(f"constrained k-means on AE features {ckm_ae_default:.4f} (ClusterNet {headline_acc - ckm_ae_default:+.4f})")
print(f"constrained k-means iteration / scikit-learn iteration: {speed['ratio']:.2f} (target <= 3)")
target_table

# %% [markdown]
# Labels and steps matched to the paper's 2% setting (held-out at least 0.97):
# {glue:text}`target_matched`.

# %%
n_labelled_per_class = float(np.mean(np.bincount(y_train[models[(headline_name, 0)][3]])))
report.glue("labelled_per_class", n_labelled_per_class)
report.glue("paper_labelled_per_class", paper_fraction(headline_labels) * 6000)  # MNIST-train: 6,000 per class
report.glue("unlabelled_ratio", 60000 / len(x_train))  # MNIST-train vs. our training split
report.glue("pretrain_minutes", pretrain_seconds / 60)
report.glue("finetune_minutes", finetune_seconds / 60)

# %% [markdown]
# **What we found.** On this run, pretraining took {glue:text}`pretrain_minutes:.1f` minutes and
# the fine-tuning runs {glue:text}`finetune_minutes:.1f` minutes. The fine-tuning adds a large
# margin over constrained k-means on the same embeddings and the same labels (table "Baselines"
# above), and accuracy grows with the label fraction as in the paper's Table 5, but stays below the
# paper's numbers. Part of that is data: at the headline budget our training split has
# {glue:text}`labelled_per_class:.0f` labelled images per class, while the paper's corresponding
# fraction of MNIST-train is about {glue:text}`paper_labelled_per_class:.0f` per class, and the
# unlabelled set that the pairwise term of Eq. (7) draws on is {glue:text}`unlabelled_ratio:.0f`
# times smaller. {ref}`sec-gap` measures these causes one at a time, with the supervised floor as a
# check, and its last table puts them side by side.

# %% [markdown]
# ## Differences from the paper
#
# Choices the paper leaves open, and where we depart from it:
#
# * **Data.** MNIST (70,000) is not available offline; we use `mnist5k`, 5,000 MNIST digits, with
#   a stratified 10% held out from everything (as the paper does for the other datasets, Sec. 5.3).
#   Table 3's MNIST row is therefore computed on the unlabelled part of 4,500 training digits, not
#   on MNIST-full, and 0.5% of 450 images per class is 2 labelled images per class.
# * **One pretrained autoencoder per seed**, shared by all label fractions and runs (pretraining uses
#   no labels); the paper does not say whether it pretrained once or per split.
# * **Architecture details.** Kernel 4 × 4, stride 2, padding 1 in every (transposed) convolution;
#   LeakyReLU slope 0.2; InstanceNorm without affine parameters; a sigmoid on the decoder's
#   output; dropout after every layer except the decoder's last, so the latent code $z$ used by the
#   clustering terms is not dropped out (the decoder's input is). Images are zero-padded to a
#   multiple of 8 (28 → 32, matching the paper's Table 1; 8 × 8 digits to 16 × 16, since three
#   stride-2 layers need at least that much).
# * **Margin** $m = 2$ in Eq. (6)-(7), Hsu and Kira's value; the paper gives none.
# * **Reconstruction loss (Eq. 8)** is a mean over images and pixels (the paper writes a sum over
#   the data set, which would outweigh the normalised cluster and pair losses by orders of
#   magnitude).
# * **Centre updates (Eq. 12-13).** $N_k$ counts every point assigned to centre $k$ since the
#   fine-tuning began (DCN's adaptive rate), starting from the number of labelled points of the
#   class; labelled and unlabelled counts are kept separately, as the paper's $N^l_k$ and $N^u_k$.
#   A mini-batch is applied in closed form, identical to the point-by-point steps. The paper's
#   "number of samples assigned in the current iteration" can also be read as counts that restart
#   every epoch; `center_counts="epoch"` runs that reading.
# * **Mini-batches** (sizes not given in the paper). Pretraining uses batches of 64 images;
#   fine-tuning 256 unlabelled images plus up to 128 labelled images per step, since the pairwise
#   terms see only the pairs within a batch and gain from larger ones;
#   pairs are formed within each part; the predicted clusters of Eq. (10) are recomputed once per
#   epoch (Alg. 2, step II), the probabilities of Eq. (16) at every step.
# * **Eq. (15)** is printed with labelled-set symbols: its similar pairs join two labelled points,
#   its dissimilar pairs an unlabelled point with a labelled one. We read it as pairs of two
#   *unlabelled* points with equal / different predicted clusters (our default). The printed
#   reading, an unlabelled point (with its predicted cluster) paired with each labelled point of the
#   batch, runs with `unlabelled_pairs="cross"`; {ref}`sec-gap` compares the two.
# * **Budgets.** The `paper` profile follows Sec. 5.1 (100 + 60 epochs, Adam $10^{-4}$, five runs).
#   The `book` profile must finish in minutes on 2 CPU cores: fewer epochs, learning rate
#   $10^{-3}$ to compensate, one run per label fraction (so no standard deviations), Table 5's 1%,
#   5% and 10% left to the `paper` profile (2% and Table 3's 0.5% fit the six minutes), $T_1, T_2$ of
#   Eq. (17) scaled to the epoch count, only $\lambda = 0$ against the schedule in Fig. 5(b) (from a
#   committed run of this profile, as it does not fit the six minutes beside the rest), and t-SNE
#   on a subsample.
# * **Accuracy** is the Hungarian-matched accuracy of Chapter 0; since each centre belongs to a
#   class, the identity map gives the same number when training succeeds (the `acc_heldout_identity`
#   column of the runs table).
# * **Fig. 5(a)-(c)** are drawn for MNIST digits, not USPS, FRGC and YouTube Faces, which are not
#   available offline; Table 4 (faces) is not reproduced for the same reason.
#
# ## What we could not reproduce, and why
#
# The face datasets (FRGC, CMU-PIE, YouTube Faces) and USPS are not available offline, and MNIST
# only as the 5,000-image subset; comparisons with DEC, JULE, DEPICT and CPAC-VGG in Table 3 are
# quoted from the paper, not rerun. Runs at the paper's budget take tens of minutes on CPU and
# are recorded once as reference runs (above) instead of in every build. A run with all of the
# paper's gradient steps (60 fine-tuning and 100 pretraining epochs of MNIST-train) would take
# hours on 2 CPU cores. The longest we made, {glue:text}`long_name`, took
# {glue:text}`long_minutes:.0f` minutes for {glue:text}`long_share:.0%` of the paper's fine-tuning
# updates and {glue:text}`long_pretrain_share:.0%` of its pretraining ones (the held-out target
# for labels and steps matched: {glue:text}`target_matched_verdict`). The run that matches both
# is the `paper` profile on a GPU (Colab) with `labels_per_class=120`, `pretrain_epochs` =
# {glue:text}`matched_pretrain_epochs` and `finetune_epochs` = {glue:text}`matched_finetune_epochs`.
# A run with at least these epochs (`ch1-steps-all` in `results/gpu-reference-runs.sh`) was
# started on the GPU lent to this issue, beside four other runs, and stopped unfinished: the 15
# minutes of device time lent hold one call of at most 10 minutes.
#
# All references are on the book's {doc}`../book/references` page.

# %%
record.write(output_dir)
print(f"wrote {Path(output_dir) / 'results.json'} with {len(record.rows)} rows")
