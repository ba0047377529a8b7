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
# # Chapter 2: One network, four levels of supervision (DCAE, Alqahtani et al.)
#
# **Claim.** A deep convolutional autoencoder with k-means embedded in its latent space (DCAE)
# clusters better the more supervision it is given, and even weak supervision helps: labels of
# two *parent classes* (digits 0-4 against 5-9) lift its clustering accuracy on MNIST from
# {glue:text}`paper_mnist_unsupervised:.2%` to {glue:text}`paper_mnist_parent:.2%`, and true labels
# to {glue:text}`paper_mnist_supervised:.2%` (Table 4 of {cite}`alqahtani2019dcae`). The
# supervision enters through a classifier on the *reconstructed* image, so its gradient reaches
# the encoder only through the decoder, and the clustering is still read from the latent space,
# not from the classifier.
#
# This chapter builds the network of Table 1, derives each term of the objective (Eq. 1-5) next to
# its code, and trains the same network at four levels: none (a plain autoencoder), unsupervised
# (reconstruction + embedded k-means), parent (the paper's "semi-supervised") and supervised. On the
# book's spectrum it sits between Chapter 1 (a few true labels) and Chapter 3 (pairs only): the
# parent level gives every image a label, but one that only says which half of the classes it
# belongs to.

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
# | Table 1 | the DCAE: three stride-2 convolutions, a 10-unit embedding, the mirrored decoder | `DCAE`, {ref}`sec-dcae-architecture` |
# | Eq. (1) | reconstruction loss $E_1$ | `reconstruction_loss`, {ref}`sec-dcae-e1` |
# | Eq. (2) | embedded k-means loss $E_2$ in the latent space, hard assignments | `embedded_kmeans_loss`, `update_centres`, {ref}`sec-dcae-e2` |
# | Eq. (3) | parent-class labels | `parent_labels`, {ref}`sec-dcae-e3` |
# | Eq. (4) | cross-entropy $E_3$ of the extended output layer on the flattened reconstruction | `classification_loss`, {ref}`sec-dcae-e3` |
# | Eq. (5) | the objective $E_1 + E_2 + E_3$, per supervision level | `objective`, {ref}`sec-dcae-objective` |

# %% tags=["parameters"]
profile = "book"            # smoke | book | paper
dataset = "mnist5k"         # any image dataset of reprolib.data (28x28, 32x32, 16x16 and 8x8 images work)
seed = 0                    # seeds the split, the labelled subsets and training
n_clusters = None           # k-means centres in the latent space; None: the number of classes
supervision = "all"         # Table 4 levels to train: all | none | unsupervised | parent | supervised
supervised_fraction = 1.0   # share of training images whose label (true or parent) is used in Table 4
loss_weights = "keras"      # keras: E1, E2 as mean squared errors (Keras' mse) | equation: Eq. (1)-(2) as printed
epochs = None               # training epochs of every model (the paper does not say); None: the profile's
batch_size = None           # images per step (paper: 100); None: the profile's
learning_rate = None        # Adam learning rate (the paper's Keras default: 1e-3); None: the profile's
n_samples = None            # use a stratified subset of this many images; None: the profile's (all)
experiments = True          # False: only Table 4 (which holds the headline), no Table 3, Fig. 2-3 or ablation
output_dir = "runs/02_dcae"  # results.json, figures and checkpoints (set by python -m reprolib run --out)

# %%
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
from sklearn.manifold import TSNE

from reprolib import data, metrics, params, plotting, report, results, training
from reprolib.device import describe_device, pick_device

params.check(dict(profile=profile, dataset=dataset, seed=seed, n_clusters=n_clusters, supervision=supervision,
                  supervised_fraction=supervised_fraction, loss_weights=loss_weights, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, n_samples=n_samples))

TABLE1_SIDES = (28, 16, 32, 8)  # image sides with a Table 1 configuration (8: our choice for 8x8 digits)
if data.DATASETS[dataset].image_shape[-1] not in TABLE1_SIDES:
    raise params.ParameterError("dataset", f"{dataset} has {data.DATASETS[dataset].image_shape[-1]}-pixel images; "
                                f"Table 1's DCAE takes sides {', '.join(map(str, TABLE1_SIDES))}")

BUDGETS = {
    "smoke": dict(epochs=1, batch_size=100, learning_rate=1e-3, n_samples=600, table3_counts=[100],
                  fig3_fractions=[0.2], tsne_points=100),
    "book": dict(epochs=6, batch_size=100, learning_rate=1e-3, n_samples=None, table3_counts=[400, 2000],
                 fig3_fractions=[0.2, 0.5], tsne_points=500),
    "paper": dict(epochs=50, batch_size=100, learning_rate=1e-3, n_samples=None,
                  table3_counts=[500, 2000, 4000, 6000, 8000], fig3_fractions=[0.2, 0.3, 0.5], tsne_points=2000),
}
budget = params.resolve(profile, BUDGETS, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                        n_samples=n_samples)
LEVELS = list(params.SUPERVISION_LEVELS) if supervision == "all" else [supervision]
HEADLINE_LEVEL = "parent" if supervision == "all" else supervision  # the paper's new level: weak labels
device = pick_device()
out = Path(output_dir)
plotting.use_style()
print(f"profile {profile}: {budget}\nlevels {LEVELS}; device {describe_device(device)}")

# %% [markdown]
# ## Data
#
# The paper clusters every image of each dataset (Table 2: 70,000 for MNIST) and shows its t-SNE
# on MNIST's testing set. We keep a stratified held-out part that no model trains on (20%, or
# 10,000 images where that is less, so the full Fashion-MNIST splits 60,000 / 10,000 like
# MNIST) and report clustering accuracy on both parts. Pixels are scaled to $[0, 1]$; nothing else
# is done to them.

# %%
full = data.load(dataset).stratified_subset(budget.n_samples, seed=seed)
K = n_clusters or full.n_classes
labels_all = full.labels.numpy()
held_out_fraction = min(0.2, 10_000 / len(full))
train_idx, test_idx = data.stratified_split(labels_all, held_out_fraction, seed=seed)
y_train, y_test = labels_all[train_idx], labels_all[test_idx]
x_train = full.images[train_idx].contiguous()
x_test = full.images[test_idx].contiguous()
channels, side = x_train.shape[1], x_train.shape[-1]
record = results.Recorder("02_dcae", profile,
                          dict(dataset=dataset, seed=seed, n_clusters=K, supervision=supervision,
                               supervised_fraction=supervised_fraction, loss_weights=loss_weights,
                               experiments=experiments, **vars(budget)),
                          seed, full, device=describe_device(device))
checkpoints = training.checkpoint_dir(out, record.parameters)  # other parameters never resume these
print(f"{full.name}: train {len(train_idx)}, held-out {len(test_idx)}, images {tuple(x_train.shape[1:])}, K = {K}")
report.glue("n_train", len(train_idx))
report.glue("n_test", len(test_idx));

# %% [markdown]
# (sec-dcae-architecture)=
# ## The network of Table 1
#
# | layer | MNIST, Fashion-MNIST | USPS | SVHN |
# | --- | --- | --- | --- |
# | convolution | 5×5×32 | 4×4×32 | 5×5×32 |
# | convolution | 5×5×64 | 4×4×64 | 5×5×64 |
# | convolution | 3×3×128 | 2×2×128 | 2×2×128 |
# | fully connected | 1152 | 512 | 2048 |
# | fully connected | 10 | 10 | 10 |
# | fully connected | 1152 | 512 | 2048 |
# | deconvolution | 3×3×128 | 2×2×128 | 2×2×128 |
# | deconvolution | 5×5×64 | 3×3×64 | 5×5×64 |
# | deconvolution | 5×5×32 | 3×3×32 | 5×5×32 |
#
# The sizes 1152 = 128·3·3, 512 = 128·2·2 and 2048 = 128·4·4 are what three stride-2
# convolutions leave of 28×28, 16×16 and 32×32 images, so we read the first "fully connected
# 1152" row as the flattened output of the third convolution (as in DCEC, the nearest public
# analogue of the authors' earlier DCAE), followed by the 10-unit embedding $h(x)$, a fully
# connected layer back to the flattened size and three transposed convolutions with the kernel
# sizes of Table 1, mirroring the encoder's channels (128 → 64 → 32 → the image's channels). Every
# hidden layer has a ReLU; the embedding and the reconstruction are linear. The first two
# convolutions pad to keep $\lceil s/2 \rceil$, the third is unpadded, and each transposed
# convolution restores exactly the size its mirror took in. 8×8 digits (not in the paper) get
# kernels 3, 3, 2.
#
# The extension of Sec. 2.2 ("instead of a reconstruction layer at the end ... we flatten the
# output of the reconstruction layer and feed them into a certain number of nodes"): a linear
# layer from the flattened reconstruction to 10 nodes (supervised) or 2 (parent), with a softmax.
#
# *Check:* the flattened sizes of Table 1 for each input size, and reconstructions of the input's
# shape.

# %%
#: Table 1's kernel sizes by image side: (encoder convolutions, decoder deconvolutions).
KERNELS = {28: ((5, 5, 3), (3, 5, 5)),   # MNIST, Fashion-MNIST
           16: ((4, 4, 2), (2, 3, 3)),   # USPS
           32: ((5, 5, 2), (2, 5, 5)),   # SVHN (and any 32x32 dataset)
           8: ((3, 3, 2), (2, 3, 3))}    # scikit-learn's 8x8 digits: our choice, not in the paper
FILTERS = (32, 64, 128)


def conv_out(size: int, kernel: int, padding: int) -> int:
    """Output side of a stride-2 convolution."""
    return (size + 2 * padding - kernel) // 2 + 1


def deconv_padding(size_in: int, size_out: int, kernel: int) -> tuple[int, int]:
    """(padding, output_padding) of a stride-2 transposed convolution from size_in to size_out."""
    excess = 2 * (size_in - 1) + kernel - size_out
    return (excess + 1) // 2, excess % 2


class DCAE(nn.Module):
    """Alqahtani et al., Table 1 and Sec. 2.2: the convolutional autoencoder with a 10-unit
    embedding and the extended output layer (softmax over `n_outputs` on the flat reconstruction)."""

    def __init__(self, channels: int, side: int, n_outputs: int, embedding: int = 10):
        super().__init__()
        if side not in KERNELS:
            raise ValueError(f"no Table 1 configuration for {side}x{side} images (have {sorted(KERNELS)})")
        enc_k, dec_k = KERNELS[side]
        sizes, layers, c_in = [side], [], channels
        for i, (k, c_out) in enumerate(zip(enc_k, FILTERS)):
            padding = (k - 1) // 2 if i < 2 else 0          # 'same'-like, then unpadded
            layers.append(nn.Sequential(nn.Conv2d(c_in, c_out, k, stride=2, padding=padding), nn.ReLU()))
            sizes.append(conv_out(sizes[-1], k, padding))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        self.shape = (FILTERS[-1], sizes[-1], sizes[-1])
        flat = int(np.prod(self.shape))
        self.embed = nn.Linear(flat, embedding)               # h(x): the latent space of Eq. (2)
        self.expand = nn.Sequential(nn.Linear(embedding, flat), nn.ReLU())
        deconvs, c_ins = [], (FILTERS[2], FILTERS[1], FILTERS[0])
        c_outs = (FILTERS[1], FILTERS[0], channels)
        for i, (k, c_i, c_o) in enumerate(zip(dec_k, c_ins, c_outs)):
            padding, extra = deconv_padding(sizes[3 - i], sizes[2 - i], k)
            block = [nn.ConvTranspose2d(c_i, c_o, k, stride=2, padding=padding, output_padding=extra)]
            deconvs.append(nn.Sequential(*block, nn.ReLU()) if i < 2 else block[0])  # linear reconstruction
        self.deconvs = nn.Sequential(*deconvs)
        self.classifier = nn.Linear(channels * side * side, n_outputs)  # Sec. 2.2's extended output layer

    def encode(self, x: torch.Tensor, layers: bool = False):
        """The embedding h(x); with layers=True also every convolution's output (for Fig. 3)."""
        found = []
        for conv in self.convs:
            x = conv(x)
            found.append(x)
        h = self.embed(x.flatten(1))
        return (h, found) if layers else h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embedding h, reconstruction y, class scores before the softmax)."""
        h = self.encode(x)
        y = self.deconvs(self.expand(h).view(-1, *self.shape))
        return h, y, self.classifier(y.flatten(1))


shapes = []
for name, (c, s, flat_paper) in {"MNIST": (1, 28, 1152), "USPS": (1, 16, 512), "SVHN": (3, 32, 2048),
                                 "digits (8x8)": (1, 8, None)}.items():
    probe = DCAE(c, s, 10)
    h_, y_, scores_ = probe(torch.zeros(2, c, s, s))
    flat_ = int(np.prod(probe.shape))
    assert y_.shape == (2, c, s, s) and h_.shape == (2, 10) and scores_.shape == (2, 10)
    assert flat_paper is None or flat_ == flat_paper
    shapes.append({"dataset": name, "input": f"{c}x{s}x{s}", "flattened": flat_, "Table 1": flat_paper,
                   "parameters": sum(p.numel() for p in probe.parameters())})
pd.DataFrame(shapes)

# %% [markdown]
# (sec-dcae-e1)=
# ## Reconstruction, $E_1$ (Eq. 1)
#
# $$E_1 = \frac{1}{2N}\sum_{i=1}^{N} \lVert x^i - y^i \rVert^2,$$
#
# the squared error summed over pixels, averaged over the $N$ images of a batch and halved.
# The authors implemented the model in Keras (Sec. 3), whose `mse` loss averages over the $D$
# pixels instead: $\text{mse} = E_1 \cdot 2/D$. With all weights of Eq. (5) equal to 1, that
# difference decides how much $E_2$ and $E_3$ count against the reconstruction: $D = 784$ for
# MNIST. The paper does not say which form its code used, and the loss weights are among what it
# leaves open (see {ref}`sec-dcae-objective` for our choice and the ablation that tests it).
#
# *Check:* the vectorised form against Eq. (1) written as a loop over images, and Keras' `mse`.

# %%
def reconstruction_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. (1): E1 = 1/(2N) sum_i ||x_i - y_i||^2 (summed over pixels, mean over the batch)."""
    return (x - y).pow(2).flatten(1).sum(1).mean() / 2


g = torch.Generator().manual_seed(0)
x_check, y_check = torch.rand(5, 1, 4, 4, generator=g), torch.rand(5, 1, 4, 4, generator=g)
loop_e1 = sum(float(((x_check[i] - y_check[i]) ** 2).sum()) for i in range(5)) / (2 * 5)
assert np.isclose(float(reconstruction_loss(x_check, y_check)), loop_e1)
print(f"E1 as a loop: {loop_e1:.6f}; vectorised: {float(reconstruction_loss(x_check, y_check)):.6f}; "
      f"Keras mse would be {2 * loop_e1 / 16:.6f}")

# %% [markdown]
# (sec-dcae-e2)=
# ## Embedded k-means, $E_2$ (Eq. 2), and the centre updates
#
# $$E_2 = \frac{1}{2N}\sum_{n=1}^{N} \lVert h^t(x_n) - c_n^* \rVert^2,$$
#
# where $h^t(x_n)$ is the embedding at iteration $t$ and $c_n^*$ the centre assigned to it: the
# nearest one (a hard assignment, as in k-means). The paper refers to the authors' earlier DCAE
# with embedded clustering for the rest: "all data representations are assigned to their new
# identical cluster centers and then cluster centers are updated iteratively". We read this as
# block-coordinate descent on the k-means objective: during an epoch the centres are constants and
# the network descends $E_1 + E_2 (+ E_3)$, each image pulled towards its nearest centre; after the
# epoch every training image is embedded again and the centres are refitted by Lloyd's k-means,
# warm-started from the current centres (`update_centres`). The network step lowers the objective
# with the centres fixed, and the refit lowers $E_2$ with the network fixed, so neither undoes the
# other. The centres start "randomly" (Sec. 3) as $K$ embeddings of random
# training images under the untrained network.
#
# In Keras' terms $E_2$ is again `mse` up to the factor $2/d$, $d = 10$ the embedding's size.
#
# *Checks:* $E_2$ against a loop with explicit nearest centres; its gradient is
# $(h_n - c_n^*)/N$ for each embedding (autograd); a refit does not increase $E_2$ over the
# training set.

# %%
def nearest_centre(h: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """c_n^* of Eq. (2): the index of the closest centre (hard assignment)."""
    return torch.cdist(h, centres).argmin(1)


def embedded_kmeans_loss(h: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Eq. (2): E2 = 1/(2N) sum_n ||h(x_n) - c_n^*||^2, the centres held constant."""
    assigned = centres[nearest_centre(h.detach(), centres)]
    return (h - assigned).pow(2).sum(1).mean() / 2


def update_centres(embeddings: np.ndarray, centres: np.ndarray, seed_: int) -> np.ndarray:
    """The centre step between epochs: Lloyd's k-means on all training embeddings, warm-started."""
    fitted = KMeans(len(centres), init=centres, n_init=1, random_state=seed_).fit(embeddings)
    return fitted.cluster_centers_.astype(np.float32)


h_check = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
c_check = torch.randn(2, 3, generator=g, dtype=torch.float64)
loop_e2 = sum(min(float(((h_check[n] - c) ** 2).sum().detach()) for c in c_check) for n in range(6)) / (2 * 6)
e2_check = embedded_kmeans_loss(h_check, c_check)
(grad_e2,) = torch.autograd.grad(e2_check, h_check)
assert np.isclose(float(e2_check.detach()), loop_e2)
assert torch.allclose(grad_e2, (h_check - c_check[nearest_centre(h_check, c_check)]).detach() / 6)
h_many = torch.randn(200, 3, generator=g, dtype=torch.float64)
c_random = h_many[:4].clone()
c_refit = torch.from_numpy(update_centres(h_many.numpy().astype(np.float32), c_random.numpy().astype(np.float32), 0))
e2_before, e2_after = float(embedded_kmeans_loss(h_many, c_random)), float(embedded_kmeans_loss(h_many, c_refit.double()))
assert e2_after <= e2_before
print(f"E2 as a loop: {loop_e2:.6f}; vectorised: {float(e2_check.detach()):.6f}; gradient (h - c*)/N: checked; "
      f"refit of the centres: E2 {e2_before:.4f} -> {e2_after:.4f}")

# %% [markdown]
# (sec-dcae-e3)=
# ## Parent-class labels (Eq. 3) and the cross-entropy $E_3$ (Eq. 4)
#
# $$\text{ParentLabel} = \begin{cases} 0 & \text{label} < 5 \\ 1 & \text{otherwise} \end{cases}$$
#
# for digits. Fashion-MNIST has no natural order, and Eq. (3) applied to its label numbers would put
# *Shirt* with the shoes. We group it into garments worn on the upper body (T-shirt/top, Pullover,
# Dress, Coat, Shirt) and the rest (Trouser, Sandal, Sneaker, Bag, Ankle boot), five classes each;
# other datasets use Eq. (3) as printed.
#
# $$E_3 = -\sum_j t_{i,j} \log p_{i,j},$$
#
# averaged over the labelled images of a batch, where $p_i$ is the softmax of the extended output
# layer and $t_i$ the one-hot true label (supervised) or parent label (parent). Only a share
# `supervised_fraction` of the training images, drawn stratified, contribute to $E_3$; the others
# only to $E_1$ and $E_2$.
#
# *Checks:* Eq. (3) on the ten digits; `F.cross_entropy` on scores against Eq. (4) written out with
# the softmax.

# %%
PARENT_GROUPS = {"fashion-mnist": np.array([0, 1, 0, 0, 0, 1, 0, 1, 1, 1])}  # 0: upper-body garments


def parent_labels(labels: np.ndarray, dataset_: str) -> np.ndarray:
    """Eq. (3): parent class 0 for labels < 5, else 1 (Fashion-MNIST: our grouping, see the text)."""
    labels = np.asarray(labels)
    if dataset_ in PARENT_GROUPS:
        return PARENT_GROUPS[dataset_][labels]
    return (labels >= 5).astype(np.int64)


def classification_loss(scores: torch.Tensor, targets: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Eq. (4): E3 = -sum_j t_ij log p_ij, p = softmax(scores), mean over the labelled images."""
    if not bool(labelled.any()):
        return scores.sum() * 0.0
    return F.cross_entropy(scores[labelled], targets[labelled])


assert parent_labels(np.arange(10), "mnist5k").tolist() == [0] * 5 + [1] * 5
assert parent_labels(np.arange(10), "fashion-mnist").sum() == 5
scores_check = torch.randn(4, 3, generator=g, dtype=torch.float64)
targets_check = torch.tensor([0, 2, 1, 2])
p_check = torch.exp(scores_check) / torch.exp(scores_check).sum(1, keepdim=True)
eq4 = -torch.stack([torch.log(p_check[i, targets_check[i]]) for i in range(4)]).mean()
assert torch.isclose(classification_loss(scores_check, targets_check, torch.ones(4, dtype=torch.bool)), eq4)
print(f"E3 written out: {float(eq4):.6f}; F.cross_entropy: "
      f"{float(classification_loss(scores_check, targets_check, torch.ones(4, dtype=torch.bool))):.6f}")

# %% [markdown]
# (sec-dcae-objective)=
# ## The objective (Eq. 5) at four levels of supervision
#
# $$\min_{W, b}\; E_1 + E_2 + E_3$$
#
# trained end to end from random initialisation with Adam on batches of 100 shuffled images
# (Sec. 3). **Weights.** Read literally, with $E_1$ and $E_2$ as printed, the reconstruction
# dominates: $E_1$ sums 784 squared pixel errors while $E_3$ is one cross-entropy. A first build
# of this chapter showed what follows: the supervised model's classifier learnt the classes while
# k-means on its latent space clustered hardly better than the plain autoencoder (the weights
# ablation below measures both, in every build). The paper reports
# {glue:text}`paper_mnist_supervised:.2%` clustering accuracy for
# that model, which needs $E_3$ to shape the latent space. Written in Keras, as the paper's model was, each squared
# error would naturally be Keras' `mse`, the mean over pixels or latent units, which is Eq. (5)
# with weights $2/D$ on $E_1$ and $2/d$ on $E_2$:
#
# $$E = \tfrac{2}{D} E_1 + \tfrac{2}{d} E_2 + E_3 = \text{mse}(x, y) + \text{mse}(h, c^*) + E_3.$$
#
# That is our default (`loss_weights="keras"`); `loss_weights="equation"` gives every term weight 1
# as printed, and the ablation below trains the labelled levels both ways. The levels differ only
# in which terms are on and which labels $E_3$ sees:
#
# | level | terms | labels in $E_3$ |
# | --- | --- | --- |
# | none (the plain DCAE of Fig. 2(d)) | $E_1$ | none |
# | unsupervised ({cite}`alqahtani2018dcae`) | $E_1 + E_2$ | none |
# | parent (the paper's "semi-supervised") | $E_1 + E_2 + E_3$ | 2 parent classes |
# | supervised | $E_1 + E_2 + E_3$ | the true classes |
#
# Whatever the level, the *clustering* is the nearest centre in the latent space, refitted after
# the last epoch: that is what every table reports as clustering accuracy. For the two labelled
# levels we also report what the classifier on the reconstruction gets right, so the difference
# between clustering and classification is visible.

# %%
def term_weights(weighting: str, n_pixels: int, n_latent: int = 10) -> dict:
    """The weights of E1 and E2 in Eq. (5): 1 as printed, or 2/D and 2/d (Keras' mse)."""
    if weighting == "equation":
        return {"E1": 1.0, "E2": 1.0}
    return {"E1": 2.0 / n_pixels, "E2": 2.0 / n_latent}


def objective(terms: dict, level: str, weights: dict, use_e2: bool = True) -> torch.Tensor:
    """Eq. (5): E1 + E2 + E3 (weighted), with the terms the supervision level switches on."""
    total = weights["E1"] * terms["E1"]
    if level != "none" and use_e2:
        total = total + weights["E2"] * terms["E2"]
    if level in ("parent", "supervised"):
        total = total + terms["E3"]
    return total


terms_check = {"E1": torch.tensor(1.0), "E2": torch.tensor(0.5), "E3": torch.tensor(0.25)}
as_printed = term_weights("equation", 784)
assert [float(objective(terms_check, lv, as_printed)) for lv in params.SUPERVISION_LEVELS] == [1.0, 1.5, 1.75, 1.75]
keras = term_weights("keras", 16, 3)  # Keras' mse of the check tensors above
h_e2 = torch.randn(6, 3, generator=g, dtype=torch.float64)
assert np.isclose(keras["E1"] * float(reconstruction_loss(x_check, y_check)), float(F.mse_loss(y_check, x_check)))
assert np.isclose(keras["E2"] * float(embedded_kmeans_loss(h_e2, c_check)),
                  float(F.mse_loss(h_e2, c_check[nearest_centre(h_e2, c_check)])))
print(f"weights of E1, E2 ({loss_weights}): {term_weights(loss_weights, channels * side * side)}")

# %% [markdown]
# ## Training
#
# One function trains a model at a level: the labelled share is drawn per class
# (`data.labelled_subset`), the centres start at random embeddings, each epoch is a pass over the
# shuffled training images followed by the centre refit, and every epoch is checkpointed
# (`training.run_epochs`), so an interrupted run resumes where it stopped.

# %%
def embed_all(model: DCAE, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model.encode(x[i:i + batch].to(device)).cpu() for i in range(0, len(x), batch)]).numpy()


def class_scores(model: DCAE, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch].to(device))[2].cpu() for i in range(0, len(x), batch)]).numpy()


def train_dcae(level: str, fraction: float, run: int, name: str, use_e2: bool = True,
               weighting: str = loss_weights) -> dict:
    """Train the DCAE at `level` with labels on `fraction` of the training images; returns the
    model, its final centres and its history."""
    run_seed_ = training.run_seed(seed, run)
    training.seed_everything(run_seed_)  # the global RNGs, which checkpoints save and restore
    targets = y_train if level != "parent" else parent_labels(y_train, dataset)
    n_outputs = 2 if level == "parent" else full.n_classes
    labelled = np.zeros(len(y_train), dtype=bool)
    if level in ("parent", "supervised"):
        labelled[data.labelled_subset(y_train, fraction, seed=run_seed_)] = True
    labelled_t, targets_t = torch.from_numpy(labelled), torch.from_numpy(np.asarray(targets, dtype=np.int64))
    model = DCAE(channels, side, n_outputs).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=budget.learning_rate)
    start = np.random.default_rng(run_seed_).choice(len(x_train), K, replace=False)
    state = {"centres": torch.from_numpy(embed_all(model, x_train[start]))}  # random initial centres (Sec. 3)
    weights = term_weights(weighting, channels * side * side)

    def epoch_fn(epoch: int) -> dict:
        model.train()
        order = torch.randperm(len(x_train))
        sums = {"E1": 0.0, "E2": 0.0, "E3": 0.0}
        centres = state["centres"].to(device)
        for i in range(0, len(order), budget.batch_size):
            batch = order[i:i + budget.batch_size]
            xb = x_train[batch].to(device)
            h, y, scores = model(xb)
            terms = {"E1": reconstruction_loss(xb, y), "E2": embedded_kmeans_loss(h, centres),
                     "E3": classification_loss(scores, targets_t[batch].to(device), labelled_t[batch].to(device))}
            loss = objective(terms, level, weights, use_e2)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            for key in sums:
                sums[key] += float(terms[key].detach()) * len(batch) / len(order)
        state["centres"] = torch.from_numpy(update_centres(embed_all(model, x_train), state["centres"].numpy(),
                                                           run_seed_ + epoch))
        return sums

    history = training.run_epochs(budget.epochs, epoch_fn, checkpoints / f"{name}.pt",
                                  {"model": model, "optimiser": optimiser}, desc=name,
                                  extra_state=lambda: {"centres": state["centres"]},
                                  load_extra=lambda saved: state.update(saved))
    return {"model": model, "centres": state["centres"].numpy(), "history": history, "level": level,
            "fraction": fraction, "use_e2": use_e2, "weighting": weighting}


def evaluate(trained: dict) -> dict:
    """Clustering (nearest centre in the latent space) on both parts; the classifier where trained."""
    model, centres = trained["model"], trained["centres"]
    found = {}
    for part, x, y in [("train", x_train, y_train), ("held-out", x_test, y_test)]:
        clusters = nearest_centre(torch.from_numpy(embed_all(model, x)), torch.from_numpy(centres)).numpy()
        found[f"acc {part}"] = metrics.cluster_acc(y, clusters)
        found[f"nmi {part}"] = metrics.nmi(y, clusters)
    level = trained["level"]
    if level in ("parent", "supervised"):
        truth = y_test if level == "supervised" else parent_labels(y_test, dataset)
        found["classifier acc held-out"] = float((class_scores(model, x_test).argmax(1) == truth).mean())
    return found

# %% [markdown]
# ## Table 4: the four levels
#
# Every level trained with the same budget ({glue:text}`epochs` epochs of batches of
# {glue:text}`batch_size`), labels on {glue:text}`fraction_pct:.0f`% of the training images for the two
# labelled levels. Clustering accuracy (Hungarian matching) and NMI of the nearest-centre
# assignments, on the training and the held-out images, beside Table 4.

# %%
PAPER_TABLE4 = {"mnist": {"unsupervised": 0.9214, "parent": 0.9777, "supervised": 0.9882},
                "usps": {"unsupervised": 0.8923, "parent": 0.9192, "supervised": 0.9506},
                "fashion-mnist": {"unsupervised": 0.6042, "parent": 0.6359, "supervised": 0.8873},
                "svhn": {"unsupervised": 0.1741, "parent": 0.3496, "supervised": 0.9240}}
PAPER_TABLE3 = {2000: 0.9424, 4000: 0.9648, 6000: 0.9752, 8000: 0.9806}  # MNIST, supervised
paper_data = {"mnist5k": "mnist", "mnist": "mnist"}.get(dataset, dataset)
for paper_dataset, levels_ in PAPER_TABLE4.items():  # the paper's numbers quoted in the prose
    for level_, value_ in levels_.items():
        report.glue(f"paper_{paper_dataset.replace('-', '_')}_{level_}", value_)
paper_table4 = PAPER_TABLE4.get(paper_data, {})
report.glue("epochs", budget.epochs)
report.glue("batch_size", budget.batch_size)
report.glue("fraction_pct", 100 * supervised_fraction)

started = time.perf_counter()
table4_models = {level: train_dcae(level, supervised_fraction, 0, f"table4-{level}") for level in LEVELS}
table4_rows = []
for level, trained in table4_models.items():
    found = evaluate(trained)
    table4_rows.append({"level": level, **found, f"paper acc ({paper_data})": paper_table4.get(level, np.nan)})
    setting = f"labels on {supervised_fraction:.0%} of training images"
    for part in ("train", "held-out"):
        record.add("table4", level, dataset, f"{setting}, {part}", "acc", found[f"acc {part}"],
                   paper=paper_table4.get(level) if part == "held-out" and supervised_fraction == 1 else None)
        record.add("table4", level, dataset, f"{setting}, {part}", "nmi", found[f"nmi {part}"])
    if "classifier acc held-out" in found:
        record.add("table4_classifier", level, dataset, f"{setting}, held-out", "acc", found["classifier acc held-out"])
table4 = pd.DataFrame(table4_rows).set_index("level")
table4["held-out - paper"] = table4["acc held-out"] - table4[f"paper acc ({paper_data})"]
print(f"Table 4: {time.perf_counter() - started:.0f} s")
table4.round(4)

# %%
headline = table4.loc[HEADLINE_LEVEL]
record.headline(f"DCAE, {HEADLINE_LEVEL}", "acc", headline["acc held-out"],
                setting=f"labels on {supervised_fraction:.0%} of training images, held-out, {budget.epochs} epochs",
                paper=paper_table4.get(HEADLINE_LEVEL) if supervised_fraction == 1 else None)
report.glue("headline_level", HEADLINE_LEVEL)
report.glue("headline_acc", float(headline["acc held-out"]))
for level in LEVELS:
    report.glue(f"acc_{level}", float(table4.loc[level, "acc held-out"]))
    if "classifier acc held-out" in table4 and not np.isnan(table4.loc[level, "classifier acc held-out"]):
        report.glue(f"classifier_{level}", float(table4.loc[level, "classifier acc held-out"]))

fig, axes = plt.subplots(1, len(LEVELS), figsize=(3.2 * len(LEVELS), 2.6), squeeze=False)
for ax, (level, trained) in zip(axes[0], table4_models.items()):
    history = pd.DataFrame(trained["history"])
    if not len(history):  # epochs=0: nothing trained
        continue
    ax.plot(history.epoch + 1, history.E1, label="$E_1$")
    ax.plot(history.epoch + 1, history.E2, label="$E_2$")
    if level in ("parent", "supervised"):
        ax.plot(history.epoch + 1, history.E3, label="$E_3$")
    ax.set(title=level, xlabel="epoch", yscale="log")
axes[0, 0].legend()
fig.suptitle("Training losses per level (mean over each epoch)")
plotting.save_figure(fig, out, "losses")
plt.show()

# %% [markdown]
# ## Table 3: accuracy against the number of labelled images
#
# The paper trains its supervised model with 2,000, 4,000, 6,000 and 8,000 training examples "with
# the same number of iterations" (MNIST). We keep all training images for $E_1$ and $E_2$ and give
# true labels to that many of them, chosen per class; our training part has
# {glue:text}`n_train` images, so the counts stop there; Table 4's supervised model (labels on
# {glue:text}`fraction_pct:.0f`% of them) adds its own row.

# %%
table3_rows = []
if experiments and "supervised" in table4_models:
    counts = [c for c in budget.table3_counts if c < len(y_train)]
    for run, count in enumerate(counts, start=1):
        trained = train_dcae("supervised", count / len(y_train), run, f"table3-{count}")
        found = evaluate(trained)
        table3_rows.append({"labelled images": count, "acc held-out": found["acc held-out"],
                            "acc train": found["acc train"], "paper": PAPER_TABLE3.get(count, np.nan)})
    table4_count = len(data.labelled_subset(y_train, supervised_fraction, seed=training.run_seed(seed, 0)))
    if table4_count not in counts:
        found = evaluate(table4_models["supervised"])
        table3_rows.append({"labelled images": table4_count, "acc held-out": found["acc held-out"],
                            "acc train": found["acc train"], "paper": PAPER_TABLE3.get(table4_count, np.nan)})
table3 = pd.DataFrame(table3_rows)
if len(table3):
    table3 = table3.sort_values("labelled images", ignore_index=True)
    table3["held-out - paper"] = table3["acc held-out"] - table3["paper"]
    table3_rows = table3.to_dict("records")
for row in table3_rows:
    paper = None if np.isnan(row["paper"]) or paper_data != "mnist" else row["paper"]
    record.add("table3", "supervised", dataset, f"labelled={row['labelled images']}, held-out", "acc",
               row["acc held-out"], paper=paper)
if len(table3):
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(table3["labelled images"], table3["acc held-out"], "o-", label=f"ours ({dataset}, held-out)")
    if paper_data == "mnist":
        ax.plot(list(PAPER_TABLE3), list(PAPER_TABLE3.values()), "s--", label="paper (MNIST)")
    ax.set(xlabel="labelled training images", ylabel="clustering accuracy", ylim=(0, 1.02),
           title="Table 3: supervised clustering accuracy")
    ax.legend()
    plotting.save_figure(fig, out, "table3")
    plt.show()
table3.round(4)

# %% [markdown]
# ## Fig. 2: the latent space at each level
#
# t-SNE of the 10-dimensional embeddings of held-out images (the paper: MNIST's testing set),
# coloured by the true class. The paper's reading: supervision gives tighter clusters further apart,
# the parent level compact clusters, the unsupervised level looser ones, and the plain autoencoder
# the most spread.

# %%
if experiments:
    pick = np.random.default_rng(seed).choice(len(y_test), min(budget.tsne_points, len(y_test)), replace=False)
    fig, axes = plt.subplots(1, len(table4_models), figsize=(3.3 * len(table4_models), 3.4), squeeze=False)
    for ax, (level, trained) in zip(axes[0], table4_models.items()):
        z = embed_all(trained["model"], x_test[pick])
        xy = TSNE(2, init="pca", perplexity=min(30, len(pick) - 1), random_state=seed).fit_transform(z)
        sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=[full.class_names[c] for c in y_test[pick]], s=8,
                        palette="tab10", ax=ax, legend=ax is axes[0, -1], linewidth=0)
        ax.set(title=f"{level}: acc {table4.loc[level, 'acc held-out']:.3f}", xticks=[], yticks=[])
    if axes[0, -1].get_legend():
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1), fontsize="x-small")
    fig.suptitle("Fig. 2: t-SNE of held-out embeddings")
    plotting.save_figure(fig, out, "fig2_tsne")
    plt.show()

# %% [markdown]
# ## Fig. 3: invariance of the representation
#
# Following the paper (after Dosovitskiy et al. and Kavukcuoglu et al.): the mean squared error
# between the features of held-out images and of the same images rotated by 90°, 180°, 270°,
# flipped horizontally, and flipped and rotated, per layer (the three convolutions and the
# embedding), for the supervised model, parent-labelled models with labels on 20%, 30% and 50% of
# the images (the `book` profile trains 20% and 50% only, to keep the chapter within its six
# minutes), and the unsupervised model. Lower is more invariant. Raw MSE depends on each layer's
# scale, which the levels change, so we also show it divided by the mean squared feature of the
# original images.

# %%
TRANSFORMS = {"rot 90": lambda x: torch.rot90(x, 1, (2, 3)), "rot 180": lambda x: torch.rot90(x, 2, (2, 3)),
              "rot 270": lambda x: torch.rot90(x, 3, (2, 3)), "flip": lambda x: torch.flip(x, (3,)),
              "flip + rot 90": lambda x: torch.rot90(torch.flip(x, (3,)), 1, (2, 3)),
              "flip + rot 180": lambda x: torch.rot90(torch.flip(x, (3,)), 2, (2, 3)),
              "flip + rot 270": lambda x: torch.rot90(torch.flip(x, (3,)), 3, (2, 3))}
LAYER_NAMES = ["conv1", "conv2", "conv3", "embedding"]


def layer_features(model: DCAE, x: torch.Tensor) -> list[torch.Tensor]:
    model.eval()
    with torch.no_grad():
        h, convs = model.encode(x.to(device), layers=True)
    return [c.flatten(1).cpu() for c in convs] + [h.cpu()]


def invariance(model: DCAE, x: torch.Tensor) -> list[dict]:
    """MSE between features of x and of each transform of x, per layer (and relative to the scale)."""
    original = layer_features(model, x)
    rows = []
    for t_name, transform in TRANSFORMS.items():
        for layer, a, b in zip(LAYER_NAMES, original, layer_features(model, transform(x))):
            mse = float((a - b).pow(2).mean())
            rows.append({"transform": t_name, "layer": layer, "mse": mse, "relative mse": mse / float(a.pow(2).mean())})
    return rows


fig3_rows = []
if experiments and {"supervised", "unsupervised"} <= set(table4_models):
    probe_x = x_test[:1000]
    fig3_models = {"supervised": table4_models["supervised"]}
    for run, fraction in enumerate(budget.fig3_fractions, start=10):
        fig3_models[f"parent {fraction:.0%}"] = train_dcae("parent", fraction, run, f"fig3-parent-{fraction:g}")
    fig3_models["unsupervised"] = table4_models["unsupervised"]
    for model_name, trained in fig3_models.items():
        fig3_rows += [{"model": model_name, **row} for row in invariance(trained["model"], probe_x)]
fig3 = pd.DataFrame(fig3_rows)
if len(fig3):
    mean_over_transforms = fig3.groupby(["model", "layer"], sort=False)[["mse", "relative mse"]].mean().reset_index()
    for row in mean_over_transforms.to_dict("records"):
        setting = f"{row['layer']}, mean over {len(TRANSFORMS)} transforms, held-out"
        record.add("fig3", row["model"], dataset, setting, "mse", row["mse"])
        record.add("fig3", row["model"], dataset, setting, "relative_mse", row["relative mse"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, value in zip(axes, ["mse", "relative mse"]):
        sns.lineplot(mean_over_transforms, x="layer", y=value, hue="model", marker="o", ax=ax)
        ax.set(title=f"{value} (mean over the 7 transformations)", yscale="log")
    axes[1].get_legend().remove()
    fig.suptitle("Fig. 3: invariance of the representation, per layer (lower: more invariant)")
    plotting.save_figure(fig, out, "fig3_invariance")
    plt.show()
    display(mean_over_transforms.pivot(index="model", columns="layer", values="relative mse")[LAYER_NAMES].round(4))

# %% [markdown]
# ## Ablation: each level with and without $E_2$
#
# The paper never trains its labelled levels without the embedded k-means term, so Table 4 cannot
# say whether $E_2$ or the labels do the work. Here the parent and supervised levels are trained
# again with $E_2$ switched off (same seed, same labelled images); the unsupervised level without
# $E_2$ is the plain autoencoder (`none`). The centres are still fitted after each epoch, so the
# clustering is read out in the same way.

# %%
ablation_rows = []
if experiments and set(params.SUPERVISION_LEVELS) <= set(table4_models):
    for level in ["unsupervised", "parent", "supervised"]:
        with_e2 = table4.loc[level, "acc held-out"]
        if level == "unsupervised":
            without = table4.loc["none", "acc held-out"]
        else:
            without = evaluate(train_dcae(level, supervised_fraction, 0, f"ablation-{level}-no-E2",
                                          use_e2=False))["acc held-out"]
        ablation_rows.append({"level": level, "with E2": with_e2, "without E2": without})
        record.add("ablation_e2", level, dataset, "with E2, held-out", "acc", with_e2)
        record.add("ablation_e2", level, dataset, "without E2, held-out", "acc", without)
ablation = pd.DataFrame(ablation_rows)
ablation.round(4)

# %% [markdown]
# ## Ablation: the weights of Eq. (5)
#
# The labelled levels trained again with the other weighting (same seed, same labels): with
# `keras`, $E_1$ and $E_2$ as mean squared errors; with `equation`, as printed in Eq. (1)-(2).
# Clustering accuracy in the latent space and the classifier's accuracy, held out.

# %%
other_weighting = "equation" if loss_weights == "keras" else "keras"
weights_rows = []
if experiments and {"parent", "supervised"} <= set(table4_models):
    for level in ["parent", "supervised"]:
        other = evaluate(train_dcae(level, supervised_fraction, 0, f"weights-{level}-{other_weighting}",
                                    weighting=other_weighting))
        for weighting, found in [(loss_weights, table4.loc[level]), (other_weighting, other)]:
            weights_rows.append({"level": level, "weights": weighting, "clustering acc": found["acc held-out"],
                                 "classifier acc": found["classifier acc held-out"]})
            record.add("ablation_weights", level, dataset, f"weights={weighting}, held-out", "acc", found["acc held-out"])
            record.add("ablation_weights", level, dataset, f"weights={weighting}, held-out", "classifier_acc",
                       found["classifier acc held-out"])
weights_table = pd.DataFrame(weights_rows)
weights_table.round(4)

# %% [markdown]
# ## Reference runs
#
# The `paper` profile ({glue:text}`paper_epochs` epochs per model, every experiment) is meant for a
# GPU. Runs committed under `results/02_dcae/` (each with the `COMMAND` that made it) are shown here
# beside the paper's Table 4 and this build.

# %%
report.glue("paper_epochs", BUDGETS["paper"]["epochs"])


def table4_numbers(record_: dict) -> dict:
    """Held-out clustering accuracy per level, from a results record."""
    return {row["method"]: row["value"] for row in record_["rows"]
            if row["experiment"] == "table4" and row["metric"] == "acc" and row["setting"].endswith("held-out")}


reference_dir = Path("..") / "results" / "02_dcae"
references = {}
columns = {}
for path in sorted(reference_dir.glob("*/results.json")):
    reference = results.load(path)
    p_ = reference["parameters"]
    ref_data = reference["dataset"]["name"]
    references[path.parent.name] = reference
    columns[f"paper ({ref_data})"] = PAPER_TABLE4.get({"mnist5k": "mnist"}.get(ref_data, ref_data), {})
    ref_paper = columns[f"paper ({ref_data})"]
    ours = table4_numbers(reference)
    columns[f"reference: {path.parent.name} ({p_['epochs']} epochs, {len(reference['rows'])} rows, "
            f"{reference['wall_clock_seconds'] / 60:.0f} min, {reference['device']})"] = ours
    columns[f"{path.parent.name} - paper"] = {lv: ours[lv] - ref_paper[lv] for lv in ours if lv in ref_paper}
columns[f"paper ({paper_data})"] = paper_table4
this_build = table4_numbers(record.to_dict())
columns[f"this build ({profile}, {dataset}, {budget.epochs} epochs)"] = this_build
columns["this build - paper"] = {lv: this_build[lv] - paper_table4[lv] for lv in this_build if lv in paper_table4}
reference_table = pd.DataFrame(columns).reindex(list(params.SUPERVISION_LEVELS))
reference_table.round(4)

# %% [markdown]
# ## Targets
#
# The paper's ordering, supervised > parent > unsupervised > none in clustering accuracy, on every
# dataset we run (this build and each reference run); at the `book` profile on `mnist5k`, held-out
# clustering accuracy at least 0.95 supervised and at least 0.80 unsupervised; on the full
# Fashion-MNIST reference run, every level at least the paper's accuracy minus 3 points (shown as
# MISSED while no such run is committed). And the paper's reading of Fig. 3: the unsupervised
# model's features are more invariant than the supervised model's.

# %%
def ordering_holds(accs: dict) -> tuple[str, bool]:
    order = [accs.get(level, np.nan) for level in ["supervised", "parent", "unsupervised", "none"]]
    shown = " > ".join(f"{a:.3f}" for a in order)
    return shown, all(a > b for a, b in zip(order, order[1:]))


verdicts = []
runs_to_judge = {f"this build ({dataset}, {profile})": record.to_dict()}
runs_to_judge.update({f"reference {name}": ref for name, ref in references.items()})
for run_name, record_ in runs_to_judge.items():
    accs = table4_numbers(record_)
    if set(params.SUPERVISION_LEVELS) <= set(accs):
        shown, ok = ordering_holds(accs)
        verdicts.append((f"{run_name}: supervised > parent > unsupervised > none", shown, ok))
    if record_["dataset"]["name"] == "fashion-mnist" and record_["profile"] != "smoke":
        for level, paper_acc in PAPER_TABLE4["fashion-mnist"].items():
            if level in accs:
                verdicts.append((f"{run_name}: {level} >= paper - 0.03", f"{accs[level]:.4f} >= {paper_acc - 0.03:.4f}",
                                 accs[level] >= paper_acc - 0.03))
if not any(ref["dataset"]["name"] == "fashion-mnist" for ref in references.values()):
    verdicts.append(("full Fashion-MNIST reference run: every level >= paper - 0.03", "no reference run committed", False))
if len(fig3):  # the paper's reading of Fig. 3: "the features learned by the unsupervised model are more invariant"
    conv_layers = mean_over_transforms[mean_over_transforms.layer != "embedding"].groupby("model")["relative mse"].mean()
    verdicts.append(("Fig. 3: unsupervised features more invariant than supervised (relative MSE, mean over conv layers)",
                     f"{conv_layers['unsupervised']:.3f} < {conv_layers['supervised']:.3f}",
                     conv_layers["unsupervised"] < conv_layers["supervised"]))
if profile == "book" and dataset == "mnist5k":
    for level, target in [("supervised", 0.95), ("unsupervised", 0.80)]:
        if level in LEVELS:
            acc = table4.loc[level, "acc held-out"]
            verdicts.append((f"book, mnist5k: {level} held-out accuracy >= {target}", f"{acc:.4f}", acc >= target))
targets_table = pd.DataFrame([{"target": t, "ours": v, "verdict": "MET" if ok else "MISSED"} for t, v, ok in verdicts])
with pd.option_context("display.max_colwidth", None):
    display(targets_table)

# %%
# glued for the prose below (NaN where a level or an experiment was not run)
def glued(level: str, column: str = "acc held-out") -> float:
    return float(table4.loc[level, column]) if level in table4.index and column in table4 else float("nan")


report.glue("acc_none_", glued("none"))
report.glue("acc_unsupervised_", glued("unsupervised"))
report.glue("acc_parent_", glued("parent"))
report.glue("acc_supervised_", glued("supervised"))
report.glue("classifier_supervised_", glued("supervised", "classifier acc held-out"))
report.glue("classifier_parent_", glued("parent", "classifier acc held-out"))
if "parent" in table4_models:
    parent_clusters = nearest_centre(torch.from_numpy(embed_all(table4_models["parent"]["model"], x_test)),
                                     torch.from_numpy(table4_models["parent"]["centres"])).numpy()
    report.glue("parent_purity", metrics.purity(parent_labels(y_test, dataset), parent_clusters))
else:
    report.glue("parent_purity", float("nan"))
other_acc = {} if not len(weights_table) else weights_table[weights_table.weights == other_weighting].set_index("level")["clustering acc"]
report.glue("parent_other_weights", float(other_acc.get("parent", np.nan)) if len(weights_table) else float("nan"))
report.glue("supervised_other_weights", float(other_acc.get("supervised", np.nan)) if len(weights_table) else float("nan"))
report.glue("other_weighting", other_weighting)
fashion_reference = next((table4_numbers(r) for r in references.values() if r["dataset"]["name"] == "fashion-mnist"), {})
for level in params.SUPERVISION_LEVELS:
    report.glue(f"fashion_{level}", float(fashion_reference.get(level, np.nan)))
report.glue("invariance_unsupervised", float(conv_layers["unsupervised"]) if len(fig3) else float("nan"))
report.glue("invariance_supervised", float(conv_layers["supervised"]) if len(fig3) else float("nan"));
report.glue("parent_no_e2", float(ablation.set_index("level").loc["parent", "without E2"]) if len(ablation) else float("nan"))
report.glue("supervised_no_e2", float(ablation.set_index("level").loc["supervised", "without E2"]) if len(ablation) else float("nan"))

# %% [markdown]
# **What we found.** On this build, held-out clustering accuracy in the latent space is
# {glue:text}`acc_none_:.3f` for the plain autoencoder, {glue:text}`acc_unsupervised_:.3f` with
# embedded k-means, {glue:text}`acc_parent_:.3f` with parent labels and
# {glue:text}`acc_supervised_:.3f` with true labels; the targets table says which of the paper's
# claims hold. Three things stand out.
#
# * *Classifying is not clustering.* The classifier on the reconstruction is right on
#   {glue:text}`classifier_supervised_:.3f` of the held-out images (supervised) and on
#   {glue:text}`classifier_parent_:.3f` of their parent classes (parent); set these beside the
#   clustering accuracies of the same models: the paper's insistence on reporting clustering
#   matters.
# * *What parent labels do to the ten-way clustering.* The parent model's ten clusters are
#   {glue:text}`parent_purity:.3f` pure in the two parent classes but {glue:text}`acc_parent_:.3f`
#   accurate in the ten classes: where the first is high and the second low, its latent space
#   separates the two halves and little within them (Fig. 2). With the weights of Eq. (1)-(2) as printed
#   ({glue:text}`other_weighting`) it reaches {glue:text}`parent_other_weights:.3f`, and the
#   supervised level {glue:text}`supervised_other_weights:.3f`, against the plain autoencoder's
#   {glue:text}`acc_none_:.3f`. The paper does not state its training length or weights, so we
#   cannot tell which of the two its parent result ({glue:text}`paper_mnist_parent:.2%` on MNIST)
#   came from.
# * *Invariance.* Relative to each layer's scale, the convolutional features change by
#   {glue:text}`invariance_unsupervised:.3f` under rotations and flips for the unsupervised model
#   and by {glue:text}`invariance_supervised:.3f` for the supervised one (Fig. 3 of the paper:
#   the unsupervised features are the more invariant; the targets table gives the verdict).
#
# Without $E_2$ the parent level reaches {glue:text}`parent_no_e2:.3f` and the supervised level
# {glue:text}`supervised_no_e2:.3f` (the $E_2$ ablation). Where we stay below the paper, what we
# know: our models see {glue:text}`epochs` epochs of {glue:text}`n_train` images at the `book`
# profile, against the paper's unstated budget on 70,000 images (the loss curves above show
# whether they still fall when training stops).
#
# On the full Fashion-MNIST (the reference run, Table 4 only, 60,000 training images, fewer epochs
# than the `paper` profile: see its row in the reference table), held-out clustering accuracy is
# {glue:text}`fashion_supervised:.3f` supervised (the paper: {glue:text}`paper_fashion_mnist_supervised:.2%`),
# {glue:text}`fashion_parent:.3f` with parent labels ({glue:text}`paper_fashion_mnist_parent:.2%`,
# with a grouping the paper does not state), {glue:text}`fashion_unsupervised:.3f` unsupervised
# ({glue:text}`paper_fashion_mnist_unsupervised:.2%`) and
# {glue:text}`fashion_none:.3f` for the plain autoencoder; the targets table compares each with
# the paper's number minus 3 points.

# %% [markdown]
# ## Differences from the paper
#
# * **What the paper leaves open, and our choices.**
#   * *Epochs:* not given. The `paper` profile trains every model for 50 epochs; the `book` profile
#     for far fewer (the budget table above), so that all models of the chapter fit in minutes on
#     2 CPU cores.
#   * *Centre update rule:* "assigned to their new identical cluster centers and then cluster centers
#     are updated iteratively". Centres are constants within an epoch (each image's $E_2$ pulls it to
#     its nearest centre); after each epoch Lloyd's k-means is run on all training embeddings,
#     warm-started from the current centres. The centres start at the embeddings of $K$ random
#     training images.
#   * *Loss weights:* Eq. (5) weighs the three terms equally, but whether $E_1$ and $E_2$ are sums
#     (as Eq. (1)-(2) print) or means (as Keras' `mse`, the authors' framework) changes their
#     balance with $E_3$ by a factor of several hundred. We use the means (`loss_weights="keras"`),
#     because with the sums the labels barely reach the latent space (the ablation above shows
#     both); `loss_weights="equation"` runs the printed form.
#   * *Parent groups for non-digit data:* Fashion-MNIST's upper-body garments (T-shirt/top, Pullover,
#     Dress, Coat, Shirt) against the rest. The paper does not say its grouping, so its 63.59% on
#     Fashion-MNIST may come from another one: our parent number is not directly comparable.
#   * *Padding and Table 1's rows:* the first two convolutions padded ('same'), the third unpadded.
#     The text says the convolutions are "followed by two fully-connected layers, of which the
#     second layer has 10 neurons"; we read Table 1's "fully connected 1152" row as the flattened
#     convolution output (DCEC's layout), so our encoder has one dense layer (1152 → 10), not a
#     1152 → 1152 layer before it. Table 1 lists the deconvolutions with 128, 64 and 32 filters;
#     ours mirror the encoder's channels (128 → 64 → 32 → image), so the last one is the
#     reconstruction layer itself. Linear embedding and linear reconstruction.
#   * *Optimiser settings:* Adam with Keras' default learning rate $10^{-3}$ (the paper names Adam
#     and batches of 100 only).
#   * *What "semi-supervised" labels:* the parent level labels a share `supervised_fraction` of the
#     images (Table 4 here: all of them, as we read the paper's Table 4; Fig. 3: 20, 30, 50%).
# * **Data.** MNIST's 70,000 images are not available offline; `mnist5k` (5,000 MNIST digits) is
#   split 80% / 20% and everything is reported on both parts. The full Fashion-MNIST is clustered
#   by a reference run with a stratified held-out part of 10,000 images (not the official test
#   split). The paper clusters all images of each dataset.
# * **Table 3** labels that many of our training images and keeps the rest unlabelled (in $E_1$,
#   $E_2$), with the same number of epochs, rather than training on fewer images; our counts stop
#   at our training part's size.
# * **Fig. 3** reports the mean over the seven transformations per layer, and also relative to
#   each layer's scale; the parent-labelled models of Fig. 3 are extra models, the supervised and
#   unsupervised ones are Table 4's.
# * **NMI** is scikit-learn's default (arithmetic mean); the paper reports accuracy only.
# * **Fig. 2** uses scikit-learn's t-SNE (PCA initialisation, perplexity 30) on a sample of the
#   held-out images; the paper does not give its settings.
#
# ## What we could not reproduce, and why
#
# USPS and SVHN need torchvision's downloads: the chapter accepts `dataset=usps` and `dataset=svhn`
# (Table 1's 16×16 and 32×32×3 columns) at the `paper` profile where torchvision can fetch them
# (Colab), but they were not run offline. MNIST's full 70,000 images likewise (`dataset=mnist`).
# Table 3's 6,000 and 8,000 rows need more images than `mnist5k` holds. torchvision's USPS has
# 9,298 images, not the 11,000 of the paper's Table 2 (which lists the datasets; the book's
# {doc}`../book/datasets` page is our version of it). Fig. 1 is the paper's drawing of the
# architecture; the shape table under "The network of Table 1" stands for it here.
#
# All references are on the book's {doc}`../book/references` page.

# %%
record.write(output_dir)
print(f"wrote {Path(output_dir) / 'results.json'} with {len(record.rows)} rows")
