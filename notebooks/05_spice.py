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
# # Chapter 5: Pseudo-labels a model makes for itself (SPICE, Niu et al.)
#
# **Claim.** A clustering network splits into a *feature model*, which measures how similar two
# images are, and a *clustering head*, which tells clusters apart; trained in three stages
# without a single label, they cluster far better than either alone {cite}`niu2022spice`:
# (1) contrastive learning (MoCo {cite}`he2020moco`) trains the feature model; (2) with the
# feature model frozen, *prototype pseudo-labels* train several light heads (SPICE-Self);
# (3) *reliable pseudo-labels*, the predictions that (nearly) all nearest neighbours share, become
# the labelled set of a semi-supervised learner (FixMatch {cite}`sohn2020fixmatch`) that trains the
# whole network (SPICE). The paper reports 0.926 accuracy on CIFAR-10 against 0.838 without the
# third stage (Table II), and the third stage within 2 points of a supervised network.
#
# This chapter closes the book's supervision spectrum: no labels at all, only pseudo-labels the
# model makes for itself, and a rule (Eq. 6-7) for which of them to believe.

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
# | Eq. (1) | InfoNCE of MoCo: query, momentum key, queue of negatives, temperature | `moco_loss`, `train_feature_model`, {ref}`sec-sp-stage1` |
# | Eq. (2) | the $M$ most confident samples of each cluster | `prototype_pseudo_labels`, {ref}`sec-sp-prototype` |
# | Eq. (3) | a cluster's prototype: the mean embedding of those samples | `prototype_pseudo_labels`, {ref}`sec-sp-prototype` |
# | Eq. (4) | the samples nearest each prototype get its label (overlap allowed) | `prototype_pseudo_labels`, {ref}`sec-sp-prototype` |
# | Eq. (5) | cross-entropy of the softmax head's output on strong views (double softmax) | `head_loss`, {ref}`sec-sp-double` |
# | Eq. (A-1) - Eq. (A-6), Eq. (A-10) - Eq. (A-11) | the double softmax's gradient against the single one's, per cluster (Fig. A.1) | `double_softmax_gradient`, `gradient_ratio`, {ref}`sec-sp-double` |
# | Alg. 1 | E-step (Eq. 2-4) and M-step (Eq. 5) per big batch, many heads at once | `train_heads`, {ref}`sec-sp-alg1` |
# | Eq. (6) | semantically consistent ratio among the $N_s$ nearest neighbours | `reprolib.cluster.reliable_pseudo_labels`, {ref}`sec-sp-reliable` |
# | Eq. (7) | reliable when the ratio exceeds $\lambda_r$ | `reprolib.cluster.reliable_pseudo_labels`, {ref}`sec-sp-reliable` |
# | Eq. (8) | FixMatch pseudo-label: the weak view's prediction above a confidence threshold | `joint_loss`, {ref}`sec-sp-joint` |
# | Eq. (9) | reliable samples' cross-entropy plus the masked consistency term | `joint_loss`, {ref}`sec-sp-joint` |

# %% tags=["parameters"]
profile = "book"               # smoke | book | paper
dataset = "mnist5k"            # any image dataset of reprolib.data (cifar10 / stl10 need downloads: Colab)
seed = 0                       # seeds the split, the initialisation, the augmentations and the training
n_clusters = None              # K; None: the number of classes
n_samples = None               # a stratified subset of this many images; None: the profile's
held_out_fraction = 0.2        # images kept out of training for Table III (train / held-out split)
backbone = None                # cnn (CPU-sized) | resnet18 | resnet34 (the paper's); None: the profile's
moco_epochs = None             # stage 1 epochs; None: the profile's
queue_size = None              # MoCo's queue of negatives (at most a quarter of the images); None: the profile's
moco_batch = None              # stage 1 batch size (the paper's 256); None: the profile's
temperature = 0.2              # tau of Eq. (1) (MoCo v2)
n_heads = None                 # clustering heads trained at once (paper: 10); None: the profile's
head_epochs = None             # stage 2 epochs (Alg. 1); None: the profile's
big_batch_size = None          # B of Eq. (2)-(4) (official code: 5000); None: the profile's
center_ratio = 0.5             # M is center_ratio times B / K samples per prototype (Eq. 2; official code 0.5)
assignment = "overlap"         # overlap (the paper's choice) | non-overlap (Table VII)
head_loss = "double-softmax"   # double-softmax (Eq. 5) | ce | tce | entropy (Table VII)
n_neighbors = 100              # N_s of Eq. (6)
reliable_threshold = None      # lambda_r of Eq. (7); None: the official code's for the dataset (0.99 CIFAR-10, 0.9 STL10), else 0.9
confidence_threshold = 0.95    # Eq. (8) (FixMatch)
joint_epochs = None            # stage 3 epochs over the unlabelled images; None: the profile's
joint_head = "fitted"          # stage 3's head: fitted (a new D-D-K MLP fitted to the reliable labels on the frozen
                               # features) | fresh (a new, untrained one) | selected (stage 2's, whose logits are huge)
unlabelled_ratio = 7           # mu: unlabelled images per reliable one in a step (FixMatch)
precision = "auto"             # the feature model's arithmetic: auto (bf16 where the hardware has it natively, else
                               # fp32) | bf16 | fp32; see reprolib.device.autocast
experiments = True             # False: only the three stages and the headline, no ablation
side_experiments = None        # run Tables VII and VIII in the build; None: the profile's (book: shown from the committed book run)
output_dir = "runs/05_spice"   # results.json, figures and checkpoints (set by python -m reprolib run --out)

# %%
import copy
import json
import math
import subprocess
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from IPython.display import display
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from torchvision.ops import roi_align
from torchvision.transforms import v2
from tqdm.auto import tqdm

from reprolib import data, metrics, params, plotting, report, results, training
from reprolib.cluster import reliable_pseudo_labels
from reprolib.device import autocast, describe_device, pick_device, resolve_precision
from reprolib.networks import ConvNet

params.check(dict(profile=profile, dataset=dataset, seed=seed, n_clusters=n_clusters, n_samples=n_samples,
                  held_out_fraction=held_out_fraction, backbone=backbone, moco_epochs=moco_epochs,
                  moco_batch=moco_batch, queue_size=queue_size, n_heads=n_heads, head_epochs=head_epochs,
                  big_batch_size=big_batch_size, assignment=assignment, head_loss=head_loss, n_neighbors=n_neighbors,
                  joint_epochs=joint_epochs, joint_head=joint_head, side_experiments=side_experiments,
                  precision=precision))
LAMBDA_R = {"cifar10": 0.99, "stl10": 0.9}   # the official code's lambda_r per dataset; 0.9 (STL10's) elsewhere
lambda_r = LAMBDA_R.get(dataset, 0.9) if reliable_threshold is None else reliable_threshold
for name_, value_, low_, high_ in (("temperature", temperature, 0, None), ("center_ratio", center_ratio, 0, 1),
                                   ("reliable_threshold", lambda_r, 0, 1),
                                   ("confidence_threshold", confidence_threshold, 0, 1)):
    if not (isinstance(value_, (int, float)) and not isinstance(value_, bool) and value_ > low_
            and (high_ is None or value_ <= high_)):
        raise params.ParameterError(name_, f"must be a number in ({low_}, {high_ or 'inf'}]; got {value_!r}")
if not (isinstance(unlabelled_ratio, int) and unlabelled_ratio >= 1):
    raise params.ParameterError("unlabelled_ratio", f"must be an integer >= 1; got {unlabelled_ratio!r}")
if backbone not in (None, "cnn", "resnet18", "resnet34"):
    raise params.ParameterError("backbone", f"must be one of cnn, resnet18, resnet34; got {backbone!r}")

BUDGETS = {
    "smoke": dict(n_samples=1000, backbone="cnn", widths=[8, 16, 32, 64], moco_epochs=2, moco_batch=128, queue_size=128,
                  moco_momentum=0.99, moco_lr=0.06, n_heads=3, head_epochs=2, big_batch_size=400, num_repeat=2,
                  head_batch=128, n_views=1, joint_epochs=1, labelled_batch=16, ablation_epochs=1, ablation_heads=3,
                  joint_head_epochs=1, joint_mh_heads=3, knn_k=10, bench_n=5000, tsne_points=300, side_experiments=True),
    "book": dict(n_samples=None, backbone="cnn", widths=[32, 64, 128, 256], moco_epochs=70, moco_batch=256,
                 queue_size=1024, moco_momentum=0.99, moco_lr=0.06, n_heads=10, head_epochs=40, big_batch_size=2000,
                 num_repeat=4, head_batch=128, n_views=2, joint_epochs=8, labelled_batch=32, ablation_epochs=5, ablation_heads=3,
                 joint_head_epochs=1, joint_mh_heads=2, knn_k=20, bench_n=70000, tsne_points=700, side_experiments=False),
    "paper": dict(n_samples=None, backbone="resnet34", widths=[32, 64, 128, 256], moco_epochs=1000, moco_batch=256,
                  queue_size=12800, moco_momentum=0.999, moco_lr=0.06, n_heads=10, head_epochs=100,
                  big_batch_size=5000, num_repeat=8, head_batch=128, n_views=8, joint_epochs=200, labelled_batch=64,
                  ablation_epochs=100, ablation_heads=10, joint_head_epochs=30, joint_mh_heads=10, knn_k=20, bench_n=70000, tsne_points=3000,
                  side_experiments=True),
}
# The `book` profile where bfloat16 is not native: the stage lengths that fit six minutes in float32
# on the slowest two-core machine that has built this book (a Zen 3 AMD EPYC without AVX-512, where
# float32 at the bfloat16 lengths took 13 minutes: stage 1 6.8 s an epoch, stage 2 1.5 s, stage 3
# 16 s, and about 100 s for the rest of the chapter). Chosen from those seconds, with room for a CI
# machine's slower days; a first choice (12 MoCo, 40 head, 4 joint epochs) came to about 300 s of
# notebook time there, too close to the budget, and was shortened for time alone.
BOOK_FP32 = dict(moco_epochs=12, head_epochs=20, joint_epochs=3)
# The bfloat16 `book` profile's lengths before it moved most of stage 3's time to stage 1 (70 MoCo and
# 8 joint epochs since then; "The same minutes, given to stage 1" compares the two on three seeds).
# The comparisons of arithmetic and lengths were run at these.
PREVIOUS_BF16 = dict(moco_epochs=40, joint_epochs=24)
device = pick_device()
compute_precision = report.glue("compute_precision", resolve_precision(precision, device))
profile_budgets = BUDGETS | ({"book": BUDGETS["book"] | BOOK_FP32} if compute_precision == "fp32" else {})
budget = params.resolve(profile, profile_budgets, n_samples=n_samples, backbone=backbone, moco_epochs=moco_epochs,
                        moco_batch=moco_batch, queue_size=queue_size, n_heads=n_heads, head_epochs=head_epochs,
                        big_batch_size=big_batch_size, joint_epochs=joint_epochs, side_experiments=side_experiments)


def mixed():
    """The feature model's arithmetic (`precision`): bfloat16 mixed precision or float32 (reprolib.device.autocast)."""
    return autocast(device, compute_precision)


out = Path(output_dir)
plotting.use_style()
print(f"profile {profile}: {budget}\ndevice {describe_device(device)}, precision {compute_precision}")
report.glue("book_fp32_moco", BOOK_FP32["moco_epochs"])
report.glue("book_fp32_joint", BOOK_FP32["joint_epochs"])
report.glue("book_fp32_head", BOOK_FP32["head_epochs"])
report.glue("book_head_epochs", BUDGETS["book"]["head_epochs"])
report.glue("build_moco_epochs", budget.moco_epochs)
report.glue("build_joint_epochs", budget.joint_epochs)
report.glue("prev_bf16_moco", PREVIOUS_BF16["moco_epochs"])
report.glue("prev_bf16_joint", PREVIOUS_BF16["joint_epochs"])

# %% [markdown]
# The three profiles. The `paper` profile takes the official code's settings (ResNet-34; 1,000
# MoCo epochs and a queue of 12,800, its CIFAR values; ten heads for 100 epochs, its STL10 value,
# where CIFAR-10 has 30; big batches of 5,000) and is meant for a GPU;
# stage 3 runs 200 epochs there, not FixMatch's $2^{20}$ steps. The `book` profile fits six
# minutes on two CPU cores: a four-layer CNN (`widths` channels, 3x3 convolutions with batch
# normalisation, max-pooling, global average pooling; a 256-d feature; `reprolib.networks.ConvNet`)
# instead of ResNet-34, and every stage shortened. The CNN keeps its tensors in channels-last
# (NHWC) memory layout, which the CPU convolutions run faster: `make bench` prints the ratio
# (`benchmarks/bench_memory_format.py`).
#
# **Precision.** With `precision = "auto"` (the default) the feature model and the clustering
# network run in bfloat16 mixed precision where the hardware multiplies bfloat16 natively (a CPU
# with AVX512-BF16 or AMX instructions, a GPU such as the A100 or H100), and in float32 elsewhere:
# convolutions and matrix products in bfloat16; weights, optimiser state, batch-norm statistics
# and every loss in float32 (`reprolib.device.autocast`). This build ran in
# {glue:text}`compute_precision`. `benchmarks/bench_bf16.py` (in `make bench`) prints what it buys
# on one machine. bfloat16 rounds every product's inputs to 8 bits of mantissa, so a run in
# bfloat16 is not the same run as one in float32; the section on the `book` profile's time
# compares the two, and `-p precision=fp32` gives the float32 run anywhere.
#
# **The `book` profile's stage lengths follow the arithmetic.** In bfloat16 it runs
# {glue:text}`book_moco_epochs` MoCo epochs and {glue:text}`book_joint_epochs` joint epochs. In
# float32 (the column `book (float32)`) it runs {glue:text}`book_fp32_moco` and
# {glue:text}`book_fp32_joint`, and stage 2 {glue:text}`book_fp32_head` head epochs instead of
# {glue:text}`book_head_epochs`: on a two-core Zen 3 machine without AVX-512, float32 at the bfloat16
# profile's earlier lengths ({glue:text}`prev_bf16_moco` MoCo and {glue:text}`prev_bf16_joint` joint
# epochs, about as long as the present ones) took {glue:text}`pr_fp32long_fastest:.0f` minutes,
# against the six the chapter has.
# The section on the `book` profile's time compares the two arithmetics at the same lengths.
# This build ran {glue:text}`build_moco_epochs` MoCo epochs and
# {glue:text}`build_joint_epochs` joint epochs.

# %%
budget_table = pd.DataFrame({p: {k: str(v) for k, v in b.items()}
                             for p, b in (BUDGETS | {"book (float32)": BUDGETS["book"] | BOOK_FP32}).items()})
budget_table

# %% [markdown]
# ## Data
#
# The paper evaluates two ways: trained and scored on all images (Table II), and trained on the
# train split and scored on the test split (Table III). We train once, on a stratified
# `1 - held_out_fraction` of the images, and score both the images trained on (without their
# labels: Table II's transductive reading) and the held-out ones (Table III's). Labels are used
# for scoring only.

# %%
# The parameters that must fit the training set are checked before anything is loaded or downloaded,
# on the training-set size predicted from the registry's image count (the stratified splits can
# round a few images per class either way, so only a value beyond that stops here), then exactly.
def n_training_images(n_images: int) -> int:
    """About how many training images the data cell makes of a dataset of n_images (the same splits, one class)."""
    if budget.n_samples and budget.n_samples < n_images:   # ImageDataset.stratified_subset's rule
        n_images = len(data.stratified_split(np.zeros(n_images), 1 - budget.n_samples / n_images, seed=seed)[0])
    return len(data.stratified_split(np.zeros(n_images), held_out_fraction, seed=seed)[0])


def check_against_training_set(n_: int, slack: int = 0) -> None:
    """The parameters bounded by the number of training images n_ (give or take slack): one line."""
    images = f"{'about' if slack else 'the'} {n_} training images"
    if big_batch_size is not None and big_batch_size > n_ + slack:
        raise params.ParameterError("big_batch_size", f"must be at most {images}; got {big_batch_size}")
    if moco_batch is not None and not (isinstance(moco_batch, int) and 2 <= moco_batch <= n_ + slack):
        raise params.ParameterError("moco_batch", f"must be an integer from 2 to {images}; "
                                    f"got {moco_batch!r}")
    if n_neighbors >= n_ + slack:
        raise params.ParameterError("n_neighbors", f"must be below {images}; got {n_neighbors}")


registry_entry = data.DATASETS[dataset]
check_against_training_set(n_training_images(registry_entry.n_images), slack=2 * registry_entry.n_classes)
full = data.load(dataset).stratified_subset(budget.n_samples, seed=seed)
K = n_clusters or full.n_classes
train_index, test_index = data.stratified_split(full.labels.numpy(), held_out_fraction, seed=seed)
train_images, test_images = full.images[train_index], full.images[test_index]
y_train, y_test = full.labels.numpy()[train_index], full.labels.numpy()[test_index]
n, C, H, W = train_images.shape
check_against_training_set(n)
FLIPS = dataset in ("fashion-mnist", "cifar10", "stl10")  # a mirrored digit is another symbol
DIGITS = dataset in ("digits", "mnist5k", "mnist", "usps", "svhn")   # the crop: a fifth of a digit is often another digit
HANDWRITING = dataset in ("digits", "mnist5k", "mnist", "usps")      # strokes on a black background (svhn: photos)
MIN_CROP_AREA = 0.6 if DIGITS else 0.2   # MoCo v2's 0.2; a fifth of a digit is often another digit
budget.big_batch_size = min(budget.big_batch_size, n)  # the profile's B, on a small dataset all of it
QUEUE = min(budget.queue_size, n // 4)
record = results.Recorder("05_spice", profile,
                          dict(dataset=dataset, seed=seed, n_clusters=K, held_out_fraction=held_out_fraction,
                               temperature=temperature, center_ratio=center_ratio, assignment=assignment,
                               head_loss=head_loss, n_neighbors=n_neighbors, reliable_threshold=lambda_r,
                               confidence_threshold=confidence_threshold, unlabelled_ratio=unlabelled_ratio,
                               joint_head=joint_head,
                               experiments=experiments, queue_used=QUEUE, precision_used=compute_precision,
                               **vars(budget)),
                          seed, full, device=describe_device(device))
checkpoints = training.checkpoint_dir(out, record.parameters)  # other parameters never resume these
print(f"{full.name}: {n} training and {len(test_index)} held-out images of {C}x{H}x{W}, K = {K}, "
      f"horizontal flips {'on' if FLIPS else 'off'}, MoCo queue {QUEUE}")
report.glue("n_train", n)
report.glue("n_test", len(test_index))


def scores(y_true, y_pred) -> dict:
    """ACC (Hungarian), NMI (geometric mean, as SPICE's code), ARI."""
    return {"acc": metrics.cluster_acc(y_true, y_pred), "nmi": metrics.nmi(y_true, y_pred, average="geometric"),
            "ari": metrics.ari(y_true, y_pred)}

# %% [markdown]
# (sec-sp-augment)=
# ## Augmentations
#
# Three kinds, each drawn independently for every image:
#
# * **MoCo views** (stage 1): a random resized crop (area 20-100% as in MoCo v2, 60-100% on
#   digits, house numbers included, aspect 3/4-4/3, done for the whole batch at once with
#   torchvision's `roi_align`, one box per image), brightness and contrast jitter of up to 40% (not
#   on handwritten digits), and a horizontal flip where the data allow it. On handwritten digits
#   (strokes on a black background) the jitter is replaced by the ways handwriting varies: a
#   rotation of up to 20 degrees, a shear of up to 0.3, and the stroke width (a third of the
#   views dilated, a third eroded, by a 3x3 max-pool). In scratch trials on `mnist5k` (one seed
#   each, not recorded here) rotation with shear, and stroke width, each raised k-means on the
#   features well above what the crop alone gave, and both together most, with k-NN unchanged;
#   MoCo's shuffled batch norm, tried too, made no difference. The crop keeps at
#   least 60% of a digit: a fifth of a digit is often another digit. SVHN's house numbers are
#   colour photographs, not strokes: they get the 60% crop and the jitter (and, like all digits, no flip).
# * **Weak** (FixMatch's flip-and-shift): a shift of up to 12.5% of the side, and the flip where
#   allowed.
# * **Strong** (SCAN's, which the paper uses): the weak view, then torchvision's `RandAugment`
#   with four operations {cite}`cubuk2020randaugment`, then Cutout (`RandomErasing` of a square of
#   a quarter of the image, filled with zeros).
#
# MoCo views and weak views are vectorised; `RandAugment` runs image by image (about 1 ms each on
# one core), the cost that sets the size of the view bank below, and the reason stage 3 draws each
# step's views on a background thread while the previous step trains.

# %%
def _flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if not FLIPS:
        return images
    flip = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def _crop(images: torch.Tensor, x0, y0, w, h) -> torch.Tensor:
    """Resample box (x0, y0, w, h) of every image to the full size (zeros outside the image)."""
    boxes = torch.stack([torch.arange(len(images), dtype=torch.float32), x0, y0, x0 + w, y0 + h], dim=1)
    return roi_align(images, boxes, output_size=images.shape[-2:], spatial_scale=1.0, sampling_ratio=2,
                     aligned=True)


def _rotate_shear(images: torch.Tensor, generator: torch.Generator, angle: float = 0.35, shear: float = 0.3) -> torch.Tensor:
    """Rotate each image by up to `angle` radians (about 20 degrees) and shear it by up to `shear`."""
    m = len(images)
    a = torch.empty(m).uniform_(-angle, angle, generator=generator)
    s = torch.empty(m).uniform_(-shear, shear, generator=generator)
    theta = torch.zeros(m, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), s - a.sin(), a.sin(), a.cos()
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


def _stroke_width(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A third of the images thickened (3x3 dilation), a third thinned (3x3 erosion), a third unchanged."""
    r = torch.rand(len(images), generator=generator).view(-1, 1, 1, 1)
    thick, thin = F.max_pool2d(images, 3, 1, 1), -F.max_pool2d(-images, 3, 1, 1)
    return torch.where(r < 1 / 3, thick, torch.where(r > 2 / 3, thin, images))


def moco_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Stage 1's view: random resized crop, then rotation, shear, stroke width (handwriting) or jitter and flip."""
    m, side = len(images), images.shape[-1]
    area = side * side * torch.empty(m).uniform_(MIN_CROP_AREA, 1.0, generator=generator)
    log_ratio = torch.empty(m).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    w = (area * log_ratio.exp()).sqrt().clamp(max=side)
    h = (area / log_ratio.exp()).sqrt().clamp(max=side)
    x0, y0 = torch.rand(m, generator=generator) * (side - w), torch.rand(m, generator=generator) * (side - h)
    views = _crop(images, x0, y0, w, h)
    if HANDWRITING:   # strokes on a black background: no jitter; the ways handwriting varies instead
        return _stroke_width(_rotate_shear(views, generator), generator)
    brightness = 1 + torch.empty(m, 1, 1, 1).uniform_(-0.4, 0.4, generator=generator)
    contrast = 1 + torch.empty(m, 1, 1, 1).uniform_(-0.4, 0.4, generator=generator)
    mean = views.mean(dim=(1, 2, 3), keepdim=True)
    return _flip(((views - mean) * contrast + mean * brightness).clamp(0, 1), generator)


def weak_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """FixMatch's weak augmentation: shift by up to 1/8 of the side, flip where allowed."""
    m, side = len(images), images.shape[-1]
    shift = max(1, round(side / 8))
    dx = torch.randint(-shift, shift + 1, (m,), generator=generator).float()
    dy = torch.randint(-shift, shift + 1, (m,), generator=generator).float()
    return _flip(_crop(images, dx, dy, torch.full((m,), float(side)), torch.full((m,), float(side))), generator)


RAND_AUGMENT = v2.Compose([v2.RandAugment(num_ops=4), v2.ToDtype(torch.float32, scale=True),
                           v2.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0)])


def strong_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """SCAN's strong augmentation: weak view, RandAugment (4 ops), Cutout; image by image."""
    weak = (weak_view(images, generator) * 255).round().to(torch.uint8)
    torch_state = torch.get_rng_state()
    torch.manual_seed(int(torch.randint(2 ** 31, (1,), generator=generator)))  # RandAugment draws from torch's RNG
    views = torch.stack([RAND_AUGMENT(image) for image in weak])
    torch.set_rng_state(torch_state)
    return views


augment_rng = torch.Generator().manual_seed(seed)
sample = train_images[:8]
fig = plotting.image_grid(torch.cat([sample, moco_view(sample, augment_rng), weak_view(sample, augment_rng),
                                     strong_view(sample, augment_rng)]).numpy(), n_cols=8, size=0.9,
                          title="original / MoCo view / weak / strong")
plotting.save_figure(fig, out, "augmentations")
plt.show()

# %% [markdown]
# (sec-sp-stage1)=
# ## Stage 1: the feature model (Eq. 1)
#
# Two copies of the feature model $\Phi$ with a two-layer projection head $g$: the *query* branch
# $q = g(\Phi(T_1(x)))$ is trained, the *key* branch $k = g'(\Phi'(T_2(x)))$ is the momentum
# average of the query branch, $\theta' \leftarrow m\theta' + (1 - m)\theta$. With a queue
# $\{k_j^-\}$ of keys of earlier batches as negatives, Eq. (1) is MoCo's InfoNCE,
#
# $$L = -\log \frac{\exp(q \cdot k / \tau)}{\exp(q \cdot k / \tau) + \sum_j \exp(q \cdot k^-_j / \tau)},$$
#
# on L2-normalised $q, k$, i.e. a cross-entropy over $1 + |\text{queue}|$ logits whose right answer
# is the first. After each step the batch's keys replace the oldest in the queue. The embedding
# the later stages use is $\Phi(x)$, L2-normalised (the official code's 512-d backbone feature).
#
# *Checks:* `moco_loss` equals Eq. (1) written term by term, and with $q$ orthogonal to every key
# it equals $\log(1 + |\text{queue}|)$.
#
# A queue that holds most of the dataset holds each image's own older keys as "negatives": on
# `mnist5k` a queue of 4,096, about all of its training images, made the loss *rise* in our
# trials. The queue is therefore capped at a quarter of the training images (SPICE's CIFAR queue,
# 12,800, is about a quarter of CIFAR-10's 50,000 training images; the cap makes it 12,000 on our
# 80% of CIFAR-10's 60,000).

# %%
def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (1): InfoNCE of L2-normalised queries q (B, d) against their keys k (B, d) and queue (Q, d)."""
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


check_rng = torch.Generator().manual_seed(1)
q_, k_, queue_ = (F.normalize(torch.randn(s, 16, generator=check_rng), dim=1) for s in (4, 4, 9))
by_hand = torch.stack([-torch.log(torch.exp(q_[i] @ k_[i] / 0.2)
                                  / (torch.exp(q_[i] @ k_[i] / 0.2) + torch.exp(queue_ @ q_[i] / 0.2).sum()))
                       for i in range(4)]).mean()
assert torch.allclose(moco_loss(q_, k_, queue_, 0.2), by_hand, atol=1e-5)
orthogonal = torch.eye(16)
assert math.isclose(moco_loss(orthogonal[:1], orthogonal[1:2], orthogonal[2:11], 0.2).item(), math.log(10), rel_tol=1e-6)
print("Eq. (1): moco_loss equals the written-out InfoNCE; orthogonal keys give log(1 + |queue|)")


def make_backbone() -> nn.Module:
    """The feature model Phi of the profile: the CPU CNN, or a ResNet with the CIFAR stem (3x3, no max-pool)."""
    if budget.backbone == "cnn":
        return ConvNet(C, budget.widths)
    net = getattr(torchvision.models, budget.backbone)(num_classes=1)
    net.conv1 = nn.Conv2d(C, 64, 3, padding=1, bias=False)
    net.maxpool, net.fc = nn.Identity(), nn.Identity()
    net.dim = 512
    return net


class Moco(nn.Module):
    """Query branch (backbone + projection MLP), its momentum copy, and the queue of keys."""

    def __init__(self, backbone: nn.Module, queue_size: int, dim: int = 128):
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Sequential(nn.Linear(backbone.dim, backbone.dim), nn.ReLU(), nn.Linear(backbone.dim, dim))
        self.key_backbone, self.key_projection = copy.deepcopy(self.backbone), copy.deepcopy(self.projection)
        for p in [*self.key_backbone.parameters(), *self.key_projection.parameters()]:
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    def step(self, x1: torch.Tensor, x2: torch.Tensor, momentum: float) -> torch.Tensor:
        """Eq. (1) on one batch; updates the key branch (momentum) and the queue."""
        with mixed():
            q = F.normalize(self.projection(self.backbone(x1)).float(), dim=1)
        with torch.no_grad():
            for key, query in zip([*self.key_backbone.parameters(), *self.key_projection.parameters()],
                                  [*self.backbone.parameters(), *self.projection.parameters()]):
                key.mul_(momentum).add_(query.detach(), alpha=1 - momentum)
            with mixed():
                k = F.normalize(self.key_projection(self.key_backbone(x2)).float(), dim=1)
        loss = moco_loss(q, k, self.queue.clone(), temperature)
        with torch.no_grad():
            slots = (self.pointer + torch.arange(len(k), device=k.device)) % len(self.queue)
            self.queue[slots] = k
            self.pointer.copy_((self.pointer + len(k)) % len(self.queue))
        return loss


EVAL_BATCH = 256  # images per forward pass without gradients: faster than 1,000 on 2 CPU cores (make bench)


@torch.no_grad()
def embed(backbone: nn.Module, images: torch.Tensor, batch: int = EVAL_BATCH) -> torch.Tensor:
    """Phi(x), L2-normalised, in evaluation mode."""
    was_training = backbone.training
    backbone.eval()
    with mixed():
        feats = torch.cat([backbone(images[i:i + batch].to(device)).float().cpu() for i in range(0, len(images), batch)])
    backbone.train(was_training)
    return F.normalize(feats, dim=1)


def train_feature_model() -> tuple[nn.Module, list[dict]]:
    """Stage 1: MoCo v2 for `moco_epochs` (SGD, momentum 0.9, weight decay 5e-4, cosine learning rate)."""
    training.seed_everything(seed)
    moco = Moco(make_backbone(), QUEUE).to(device)
    optimiser = torch.optim.SGD([p for p in moco.parameters() if p.requires_grad], lr=budget.moco_lr,
                                momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = n // budget.moco_batch
    rng = torch.Generator().manual_seed(seed)

    def epoch_fn(epoch: int) -> dict:
        order, losses = torch.randperm(n, generator=rng), []
        for step in range(steps_per_epoch):
            progress_ = (epoch * steps_per_epoch + step) / max(1, budget.moco_epochs * steps_per_epoch)
            for group in optimiser.param_groups:
                group["lr"] = budget.moco_lr * 0.5 * (1 + math.cos(math.pi * progress_))
            x = train_images[order[step * budget.moco_batch:(step + 1) * budget.moco_batch]]
            loss = moco.step(moco_view(x, rng).to(device), moco_view(x, rng).to(device), budget.moco_momentum)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        return {"loss": float(np.mean(losses))}

    history = training.run_epochs(budget.moco_epochs, epoch_fn, checkpoints / "stage1_moco.pt",
                                  {"moco": moco, "optimiser": optimiser}, desc="stage 1: MoCo",
                                  extra_state=lambda: {"rng": rng.get_state()},
                                  load_extra=lambda s: rng.set_state(s["rng"]) if "rng" in s else None)
    return moco.backbone, history


started = time.perf_counter()
feature_model, moco_history = train_feature_model()
stage1_seconds = time.perf_counter() - started
emb_train, emb_test = embed(feature_model, train_images), embed(feature_model, test_images)
print(f"stage 1: {budget.moco_epochs} epochs in {stage1_seconds:.0f} s; embeddings {tuple(emb_train.shape)}")

# %% [markdown]
# **How good are the features?** Two label-using probes, for evaluation only: k-NN accuracy
# (cosine, held-out images classified by their `knn_k` nearest training images) and a linear
# classifier on the frozen features (Table VI's measure), and one label-free use: k-means on the
# embeddings, the paper's "MoCo + k-means" baseline (Table IV).

# %%
def feature_quality(train_feats: torch.Tensor, test_feats: torch.Tensor) -> dict:
    """k-NN and linear-probe accuracy of held-out images (labels used for evaluation only)."""
    knn = KNeighborsClassifier(budget.knn_k, metric="cosine").fit(train_feats.numpy(), y_train)
    linear = LogisticRegression(max_iter=500).fit(train_feats.numpy(), y_train)
    return {"knn": knn.score(test_feats.numpy(), y_test), "linear": linear.score(test_feats.numpy(), y_test)}


quality_before = feature_quality(emb_train, emb_test)
kmeans = KMeans(K, n_init=10, random_state=seed).fit(emb_train.numpy())
kmeans_scores = {"train": scores(y_train, kmeans.labels_), "held-out": scores(y_test, kmeans.predict(emb_test.numpy()))}
fig, ax = plt.subplots(figsize=(4, 2.5))
ax.plot([h["epoch"] + 1 for h in moco_history], [h["loss"] for h in moco_history], marker="o")
ax.set(xlabel="epoch", ylabel="Eq. (1) loss", title="stage 1: MoCo")
plotting.save_figure(fig, out, "moco_loss")
plt.show()
print(f"k-NN {quality_before['knn']:.4f}, linear {quality_before['linear']:.4f}; "
      f"k-means on the embeddings: ACC {kmeans_scores['train']['acc']:.4f} (train)")
report.glue("knn_before", quality_before["knn"])
report.glue("knn_minus_kmeans", quality_before["knn"] - kmeans_scores["held-out"]["acc"])   # the same held-out images
report.glue("kmeans_acc", kmeans_scores["train"]["acc"])

# %% [markdown]
# (sec-sp-prototype)=
# ## Stage 2: prototype pseudo-labels (Eq. 2-4)
#
# The clustering head $h$ maps a feature to $K$ probabilities. For a big batch of $B$ images with
# embeddings $E$ (original images, frozen feature model, L2-normalised) and head outputs $P$ on
# their weak views, Eq. (2) takes for each cluster $k$ the $M = $ `center_ratio` $\cdot B/K$
# samples with the largest $P_{:,k}$; Eq. (3) makes their mean embedding the prototype $c_k$;
# Eq. (4) gives label $k$ to the $B/K$ samples with the highest cosine similarity to $c_k$. A sample
# can be chosen by two prototypes and then carries both labels (the *overlap* assignment of the
# paper; Table VII compares the *non-overlap* one, in which each sample keeps only its most
# similar prototype and clusters fill up with farther samples).
#
# *Check:* a toy batch like the paper's Fig. 4, 10 samples and 3 clusters, worked by hand.

# %%
def prototype_pseudo_labels(probs: torch.Tensor, embeddings: torch.Tensor, n_confident: int, n_labelled: int,
                            overlap: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2)-(4): (sample indices, labels) of the prototype pseudo-labels of one big batch.

    probs (B, K) from the head on weak views; embeddings (B, d) L2-normalised. Eq. (2): the
    n_confident = M most confident samples of each column; Eq. (3): their mean embedding is the
    prototype; Eq. (4): the n_labelled samples most similar (cosine) to a prototype get its label.
    overlap=False: every sample at most once, to its most similar prototype (greedy by similarity).
    """
    top = probs.topk(n_confident, dim=0).indices                   # Eq. (2): (M, K)
    prototypes = F.normalize(embeddings[top].mean(dim=0), dim=1)   # Eq. (3): (K, d)
    similarity = embeddings @ prototypes.T                         # cosine, (B, K)
    K_ = probs.shape[1]
    if overlap:                                                    # Eq. (4)
        chosen = similarity.topk(n_labelled, dim=0).indices        # (N, K)
        return chosen.T.reshape(-1), torch.arange(K_).repeat_interleave(n_labelled)
    order = torch.argsort(similarity.reshape(-1), descending=True).tolist()
    taken, counts, index, labels = set(), [0] * K_, [], []
    for flat in order:
        i, k = divmod(flat, K_)
        if i in taken or counts[k] == n_labelled:
            continue
        taken.add(i), index.append(i), labels.append(k)
        counts[k] += 1
        if len(index) == n_labelled * K_:
            break
    return torch.tensor(index), torch.tensor(labels)


# Fig. 4's toy: 10 samples on a line, 3 clusters; the head is sure of samples 0, 4 and 8.
toy_emb = F.normalize(torch.tensor([[1.0, 0.0], [0.95, 0.3], [0.8, 0.6], [0.5, 0.85], [0.0, 1.0], [-0.5, 0.85],
                                    [-0.8, 0.6], [-0.95, 0.3], [-1.0, 0.0], [-0.9, -0.4]]), dim=1)
toy_probs = torch.full((10, 3), 0.2)
toy_probs[[0, 1, 2], 0], toy_probs[[3, 4, 5], 1], toy_probs[[7, 8, 9], 2] = 0.9, 0.9, 0.9
toy_index, toy_labels = prototype_pseudo_labels(toy_probs, toy_emb, 3, 3)
expected = {(i, 0) for i in (0, 1, 2)} | {(i, 1) for i in (3, 4, 5)} | {(i, 2) for i in (7, 8, 9)}
assert set(zip(toy_index.tolist(), toy_labels.tolist())) == expected
toy_probs[[2, 3, 4], 1], toy_probs[[3, 4, 5], 1] = 0.9, 0.2   # cluster 1's confident samples move towards cluster 0
toy_probs[5, 1] = 0.2
both = prototype_pseudo_labels(toy_probs, toy_emb, 3, 3)
single = prototype_pseudo_labels(toy_probs, toy_emb, 3, 3, overlap=False)
assert len(set(both[0].tolist())) < 9 and len(set(single[0].tolist())) == 9
print("Eq. (2)-(4): the toy batch gets the hand-worked labels; overlapping clusters share samples only with overlap=True")

# %% [markdown]
# (sec-sp-double)=
# ## The head's loss: Eq. (5) and the double softmax (Appendix A)
#
# The head ends in a softmax, $p = \mathrm{softmax}(z)$ (Eq. A-1), and Eq. (5) is PyTorch's
# cross-entropy, which applies a second softmax, $q = \mathrm{softmax}(p)$ (Eq. A-2), and takes
# $L = -\sum_i y_i \log q_i$ (Eq. A-3). With a single softmax the gradient is $\partial L / \partial z_j
# = p_j - y_j$ (Eq. A-4). Through both (Eq. A-5),
#
# $$\frac{\partial L}{\partial z_j} = \sum_i (q_i - y_i)\, p_i (\delta_{ij} - p_j),$$
#
# and Eq. (A-6) is the ratio of the two, $R_j = (\partial L/\partial z_j)_{double} / (p_j - y_j)$.
# For a cluster $j$ other than the pseudo-label $l$ ($y_j = 0$), Eq. (A-4) is $p_j$ and Eq. (A-5)
# is $p_j\,(q_j - \sum_i p_i q_i + p_l)$, so (Eq. A-10, A-11)
#
# $$R_j = q_j + \Big(p_l - \sum_i p_i q_i\Big), \qquad j \neq l,$$
#
# where the bracket is the same for every $j$ of one prediction: $R_j$ grows with $q_j$, hence with
# $p_j$. Appendix A's point is about these clusters. The double softmax slows learning overall, and
# among the wrong clusters it slows most the push-down of the *small* probabilities, which keeps
# imperfect pseudo-labels from driving them to zero, and least that of a *wrong high* probability,
# which therefore falls fastest and lets samples change clusters during training. *Checks:* Eq.
# (A-5) against autograd; Eq. (A-11) against the ratio of Eq. (A-5) to Eq. (A-4); $R_j$ increasing
# with $p_j$ over the wrong clusters of one prediction in the setting of the paper's Fig. A.1 (ten
# clusters, a small probability on the pseudo-label and a false high one elsewhere); and, as a second
# view, the labelled cluster's own ratio $R_l$ as its probability grows.

# %%
def head_loss_fn(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """The M-step loss of every head, (h, m, K) logits and (h, m) labels -> (h,) losses.

    double-softmax: Eq. (5), cross-entropy on the head's softmax output (softmax twice);
    ce: plain cross-entropy on the logits; tce: with temperature 0.2 (the paper's best);
    entropy: Eq. (5) minus the entropy of the mean prediction (Table VII).
    """
    h_, m_, k_ = logits.shape
    flat_labels = labels.reshape(-1)
    if kind in ("double-softmax", "entropy"):
        inputs = logits.softmax(-1)
    elif kind == "tce":
        inputs = logits / 0.2
    else:
        inputs = logits
    loss = F.cross_entropy(inputs.reshape(-1, k_), flat_labels, reduction="none").view(h_, m_).mean(1)
    if kind == "entropy":
        mean_p = logits.softmax(-1).mean(1)
        loss = loss + (mean_p * mean_p.clamp_min(1e-12).log()).sum(-1)   # minus H(mean prediction)
    return loss


def double_softmax_gradient(z: torch.Tensor, label: int) -> torch.Tensor:
    """Eq. (A-5): dL/dz of the double softmax cross-entropy, written out."""
    p = z.softmax(-1)                          # Eq. (A-1)
    q = p.softmax(-1)                          # Eq. (A-2)
    y = F.one_hot(torch.tensor(label), len(z)).to(z.dtype)
    jacobian = torch.diag(p) - torch.outer(p, p)   # dp_i / dz_j = p_i (delta_ij - p_j)
    return (q - y) @ jacobian


z_check = torch.randn(6, dtype=torch.float64, requires_grad=True)
loss_check = F.cross_entropy(z_check.softmax(-1)[None], torch.tensor([2]))   # Eq. (A-3) on q
loss_check.backward()
assert torch.allclose(z_check.grad, double_softmax_gradient(z_check.detach(), 2), atol=1e-12)
assert torch.autograd.gradcheck(lambda z: F.cross_entropy(z.softmax(-1)[None], torch.tensor([2])), (z_check.detach().clone().requires_grad_(),))
print("Eq. (A-5) equals autograd's gradient of Eq. (5); gradcheck passes")

def gradient_ratio(p: torch.Tensor, label: int) -> torch.Tensor:
    """Eq. (A-6): R_j, the double softmax's gradient (Eq. A-5) over the single one's (Eq. A-4), for every j."""
    z = p.log()                                  # any logits with softmax(z) = p
    return double_softmax_gradient(z, label) / (p - F.one_hot(torch.tensor(label), len(p)).to(p.dtype))


# Fig. A.1's setting: K = 10, pseudo-label l = 0 with a small probability, a false high one on cluster 1
FIG_A1_P = torch.tensor([0.05, 0.40, 0.20, 0.12, 0.08, 0.05, 0.04, 0.03, 0.02, 0.01], dtype=torch.float64)
R_fig = gradient_ratio(FIG_A1_P, 0)
q_fig = FIG_A1_P.softmax(-1)
others = torch.arange(1, 10)
assert torch.allclose(R_fig[others], q_fig[others] + FIG_A1_P[0] - (FIG_A1_P * q_fig).sum())   # Eq. (A-11)
by_p = others[FIG_A1_P[others].argsort()]
assert (R_fig < 1).all()                         # slower than the single softmax on every cluster ...
assert (R_fig[by_p].diff() > 0).all()            # ... a wrong cluster's R_j growing with its p_j ...
assert int(others[R_fig[others].argmax()]) == int(others[FIG_A1_P[others].argmax()])   # ... largest for the false high one
print("Eq. (A-11): R_j = q_j + (p_l - sum_i p_i q_i) for j != l, increasing with p_j; "
      "the false high probability has the largest ratio among the wrong clusters")

# the labelled cluster's own ratio as its probability p_l grows (the others equal)
ratio_rows = []
for p0 in np.linspace(0.05, 0.95, 19):
    p_ = torch.tensor([p0] + [(1 - p0) / 9] * 9, dtype=torch.float64)
    ratio_rows.append({"p_label": p0, "R_label (Eq. A-6)": float(gradient_ratio(p_, 0)[0])})
ratio_table = pd.DataFrame(ratio_rows)
fig, axes = plt.subplots(1, 2, figsize=(8.5, 2.8))
axes[0].bar(range(10), R_fig.numpy(), color=["C3"] + ["C0"] * 9)
axes[0].set_xticks(range(10), [f"{v:.2f}" for v in FIG_A1_P.tolist()], fontsize="small")
axes[0].set(xlabel="$p_j$ of cluster $j$ (red: the pseudo-label $l$)", ylabel="gradient ratio $R_j$ (Eq. A-6)",
            title="Fig. A.1: one prediction, every cluster")
axes[1].plot(ratio_table["p_label"], ratio_table["R_label (Eq. A-6)"], marker=".")
axes[1].set(xlabel="$p_l$, the pseudo-label's probability", ylabel="gradient ratio $R_l$ (Eq. A-6)",
            title="the pseudo-label's cluster")
plotting.save_figure(fig, out, "double_softmax_ratio")
plt.show()
for j_ in range(10):
    record.add("appendix_a", "double softmax", "analytic", f"Fig. A.1 prediction, cluster {j_}, p={float(FIG_A1_P[j_]):.2f}"
               + (" (pseudo-label)" if j_ == 0 else ""), "gradient_ratio", float(R_fig[j_]))
for row_ in ratio_rows[::6]:
    record.add("appendix_a", "double softmax", "analytic", f"p_label={row_['p_label']:.2f}", "gradient_ratio",
               row_["R_label (Eq. A-6)"])
report.glue("fig_a1_p_label", float(FIG_A1_P[0]))
report.glue("fig_a1_p_false", float(FIG_A1_P[1]))
report.glue("fig_a1_p_smallest", float(FIG_A1_P[-1]))
report.glue("ratio_false_high", float(R_fig[1]))
report.glue("ratio_smallest", float(R_fig[-1]))
report.glue("ratio_low", ratio_rows[0]["R_label (Eq. A-6)"])
report.glue("ratio_high", ratio_rows[-1]["R_label (Eq. A-6)"])
report.glue("ratio_p_low", float(ratio_rows[0]["p_label"]))
report.glue("ratio_p_high", float(ratio_rows[-1]["p_label"]))

# %% [markdown]
# (sec-sp-alg1)=
# ## Alg. 1: training the heads
#
# The feature model is frozen, so its features of every view can be computed once: a *view bank*
# of `n_views` weak and `n_views` strong views per image (its features, and the images as bytes for
# the variants that train the feature model). Each M-step draws one of the bank's views per sample.
# Then, as in the official code, per big batch of $B$ images: E-step, the pseudo-labels of Eq.
# (2)-(4) from the heads' outputs on weak views; M-step, `num_repeat` passes over the labelled
# samples in mini-batches of 128, Eq. (5) on their strong views, Adam at 0.005. The `n_heads` heads
# are trained side by side as one module (a leading head axis on every weight), each with its own
# initialisation and its own pseudo-labels.
#
# **Head selection** (Sec. III-B): the head whose Eq. (5) loss is lowest over the whole training set
# (the E-step with $B = n$ on the original images), never the one with the best accuracy.

# %%
class Heads(nn.Module):
    """n_heads MLPs [D, D, K] side by side (Linear, ReLU, Linear; softmax on top)."""

    def __init__(self, n_heads_: int, dim: int, k: int):
        super().__init__()
        def init(fan_in, *shape):
            return nn.Parameter(torch.empty(n_heads_, *shape).uniform_(-fan_in ** -0.5, fan_in ** -0.5))
        self.w1, self.b1 = init(dim, dim, dim), init(dim, 1, dim)
        self.w2, self.b2 = init(dim, dim, k), init(dim, 1, k)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, D) shared by all heads, or (h, B, D) per head -> (h, B, K)."""
        if feats.dim() == 2:
            feats = feats.expand(len(self.w1), *feats.shape)
        return torch.baddbmm(self.b2, F.relu(torch.baddbmm(self.b1, feats, self.w1)), self.w2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.logits(feats).softmax(-1)

    def single(self, head: int) -> nn.Sequential:
        """Head `head` as an ordinary MLP returning logits (stage 3 trains it)."""
        mlp = nn.Sequential(nn.Linear(self.w1.shape[1], self.w1.shape[2]), nn.ReLU(), nn.Linear(self.w2.shape[1], self.w2.shape[2]))
        with torch.no_grad():
            mlp[0].weight.copy_(self.w1[head].T), mlp[0].bias.copy_(self.b1[head, 0])
            mlp[2].weight.copy_(self.w2[head].T), mlp[2].bias.copy_(self.b2[head, 0])
        return mlp


@torch.no_grad()
def raw_features(backbone: nn.Module, images: torch.Tensor, batch: int = EVAL_BATCH) -> torch.Tensor:
    """Phi(x) (not normalised), evaluation mode; images float or uint8."""
    was_training = backbone.training
    backbone.eval()
    feats = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        with mixed():
            feats.append(backbone((x.float() / 255 if x.dtype == torch.uint8 else x).to(device)).float().cpu())
    backbone.train(was_training)
    return torch.cat(feats)


started = time.perf_counter()
bank_rng = torch.Generator().manual_seed(seed + 1)
bank_images = {"weak": torch.stack([(weak_view(train_images, bank_rng) * 255).round().to(torch.uint8)
                                    for _ in range(budget.n_views)]),
               "strong": torch.stack([strong_view(train_images, bank_rng) for _ in tqdm(range(budget.n_views), desc="strong views")])}
bank_features = {kind: torch.stack([raw_features(feature_model, views) for views in images_])
                 for kind, images_ in bank_images.items()}
features_train = raw_features(feature_model, train_images)
features_test = raw_features(feature_model, test_images)
D = features_train.shape[1]
B = budget.big_batch_size
M_CONFIDENT, N_LABELLED = max(1, int(center_ratio * B / K)), B // K
print(f"view bank: {budget.n_views} weak + {budget.n_views} strong views of {n} images in {time.perf_counter() - started:.0f} s; "
      f"B = {B}, M = {M_CONFIDENT}, N = {N_LABELLED}")


def train_heads(tag: str, n_heads_: int, epochs: int, assignment_: str = assignment, loss_: str = head_loss,
                branch2: str = "weak", branch3: str = "strong", joint_backbone: bool = False,
                num_repeat: int = budget.num_repeat):
    """Alg. 1 for `epochs`; returns (heads, the trained backbone or None, history).

    branch2 / branch3: the views the E-step (middle branch of Fig. 3b) and the M-step (bottom
    branch) see. joint_backbone: Table VII's Joint-SH / Joint-MH, the feature model trained too
    (its similarity branch stays the frozen stage-1 embedding).
    """
    training.seed_everything(seed + 2)
    heads = Heads(n_heads_, D, K).to(device)
    backbone_ = copy.deepcopy(feature_model).to(device) if joint_backbone else None
    groups = [{"params": heads.parameters(), "lr": 0.005}]
    if backbone_ is not None:
        groups.append({"params": backbone_.parameters(), "lr": 0.0005})
    optimiser = torch.optim.Adam(groups)
    rng = torch.Generator().manual_seed(seed + 3)

    def features(kind: str, index: torch.Tensor, views: torch.Tensor, grad: bool) -> torch.Tensor:
        if backbone_ is None:
            return bank_features[kind][views, index].to(device)
        x = bank_images[kind][views, index].float().div(255).to(device)
        if grad:
            with mixed():
                return backbone_(x).float()
        return raw_features(backbone_, x)

    def epoch_fn(epoch: int) -> dict:
        order, losses = torch.randperm(n, generator=rng), []
        for start in range(0, n - B + 1, B):
            index = order[start:start + B]
            with torch.no_grad():   # E-step: Eq. (2)-(4) per head
                probs = heads(features(branch2, index, torch.randint(budget.n_views, (B,), generator=rng), False))
                pairs = [prototype_pseudo_labels(probs[h].cpu(), emb_train[index], M_CONFIDENT, N_LABELLED,
                                                 assignment_ == "overlap") for h in range(n_heads_)]
            chosen = torch.stack([p[0] for p in pairs])            # (h, P) positions in the big batch
            labels = torch.stack([p[1] for p in pairs]).to(device)
            for _ in range(num_repeat):                            # M-step: Eq. (5) on strong views
                perm = torch.randperm(chosen.shape[1], generator=rng)
                for s in range(0, chosen.shape[1] - budget.head_batch + 1, budget.head_batch):
                    cols = perm[s:s + budget.head_batch]
                    images_ = index[chosen[:, cols]]                # (h, m) image indices
                    views = torch.randint(budget.n_views, images_.shape, generator=rng)
                    feats = features(branch3, images_.reshape(-1), views.reshape(-1), True).view(n_heads_, len(cols), -1)
                    loss = head_loss_fn(heads.logits(feats), labels[:, cols], loss_).mean()
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    losses.append(loss.item())
        return {"loss": float(np.mean(losses))}

    modules = {"heads": heads, "optimiser": optimiser, **({"backbone": backbone_} if backbone_ is not None else {})}
    history = training.run_epochs(epochs, epoch_fn, checkpoints / f"stage2_{tag}.pt", modules, desc=f"stage 2: {tag}",
                                  extra_state=lambda: {"rng": rng.get_state()},
                                  load_extra=lambda s: rng.set_state(s["rng"]) if "rng" in s else None)
    return heads, backbone_, history


@torch.no_grad()
def select_head(heads: Heads, backbone_: nn.Module | None = None) -> dict:
    """Sec. III-B: every head's Eq. (5) loss over the training set (E-step with B = n); the lowest wins.

    Accuracies are computed for the report (Fig. 6), never used to choose.
    """
    feats = features_train if backbone_ is None else raw_features(backbone_, train_images)
    probs = heads(feats.to(device)).cpu()
    losses = []
    for h in range(len(probs)):
        index, labels = prototype_pseudo_labels(probs[h], emb_train, max(1, int(center_ratio * n / K)), n // K)
        losses.append(F.cross_entropy(probs[h][index], labels).item())
    predictions = probs.argmax(-1).numpy()
    accuracies = [metrics.cluster_acc(y_train, p) for p in predictions]
    chosen_ = int(np.argmin(losses))
    return {"head": chosen_, "losses": losses, "accs": accuracies, "train_pred": predictions[chosen_],
            "backbone": backbone_}


def predict(heads: Heads, head: int, backbone_: nn.Module | None, images: torch.Tensor) -> np.ndarray:
    feats = (features_test if images is test_images else features_train) if backbone_ is None else raw_features(backbone_, images)
    with torch.no_grad():
        return heads(feats.to(device))[head].argmax(-1).cpu().numpy()


started = time.perf_counter()
heads, _, head_history = train_heads("spice_self", budget.n_heads, budget.head_epochs)
stage2_seconds = time.perf_counter() - started
selection = select_head(heads)
self_train_pred = selection["train_pred"]
self_test_pred = predict(heads, selection["head"], None, test_images)
self_scores = {"train": scores(y_train, self_train_pred), "held-out": scores(y_test, self_test_pred)}
print(f"stage 2: {budget.n_heads} heads, {budget.head_epochs} epochs in {stage2_seconds:.0f} s; selected head "
      f"{selection['head']} (loss {min(selection['losses']):.4f}): ACC {self_scores['train']['acc']:.4f}; "
      f"best head by ACC {max(selection['accs']):.4f}")

# %% [markdown]
# **Fig. 6: head selection.** Every head's selection loss against its accuracy; the chosen head
# (lowest loss) is marked. The paper finds the lowest-loss head close to the most accurate one.

# %%
fig, ax = plt.subplots(figsize=(4, 3))
ax.scatter(selection["losses"], selection["accs"], label="heads")
ax.scatter([selection["losses"][selection["head"]]], [selection["accs"][selection["head"]]], s=120,
           facecolors="none", edgecolors="C3", label="selected (lowest loss)")
ax.set(xlabel="Eq. (5) loss over the training images", ylabel="ACC (evaluation only)", title="Fig. 6: head selection")
ax.legend(fontsize="small")
plotting.save_figure(fig, out, "fig6_head_selection")
plt.show()
for h, (loss_h, acc_h) in enumerate(zip(selection["losses"], selection["accs"])):
    record.add("fig6", f"head {h}", dataset, "selection loss", "loss", loss_h)
    record.add("fig6", f"head {h}", dataset, "selection loss", "acc", acc_h)
report.glue("selected_acc", self_scores["train"]["acc"])
report.glue("best_head_acc", max(selection["accs"]))

# %% [markdown]
# (sec-sp-reliable)=
# ## Stage 3: reliable pseudo-labels (Eq. 6-7)
#
# For sample $i$ with predicted label $l_i$ (the selected head) and its $N_s$ nearest neighbours
# $\mathcal{N}_i$ by cosine similarity of the embeddings, Eq. (6) is the share of neighbours with
# the same label, $r_i = \frac{1}{N_s}\sum_{j \in \mathcal{N}_i} [l_j = l_i]$, and Eq. (7) keeps $i$
# when $r_i > \lambda_r$. `reprolib.cluster.reliable_pseudo_labels` computes it block by block,
# never holding the $n \times n$ matrix of the official code; its benchmark (below) checks it
# against brute force and times it on 70,000 points.
#
# What breaks the official code is handled, not hidden: the code then truncates every cluster to
# the size of the smallest, so one cluster without reliable samples empties the whole set. Here a
# cluster without reliable samples is reported and the others keep theirs; clusters of unequal
# size are kept whole, and the labelled batches of stage 3 draw every cluster that has reliable
# samples equally often (a sample of a small cluster more often than one of a large cluster); an
# empty reliable set is reported and stage 3 is skipped (SPICE is then SPICE-Self).
#
# $\lambda_r$ (`reliable_threshold`) is by default the official code's value for the dataset: 0.99
# on CIFAR-10 (the value the paper states) and 0.9 on STL10. On the other datasets the default is
# 0.9, and this build uses {glue:text}`lambda_r`. On this build's {glue:text}`n_train` training
# images the $N_s$ = {glue:text}`n_neighbors` neighbours are
# {glue:text}`neighbours_class_share:.0%` of an average class, and at 0.99 the reliable set of our
# early `book`-profile trials on `mnist5k` kept a few images of some clusters and none of others
# (the sweep below shows the share and accuracy at both). At 0.9 a cluster can still be left
# without reliable images (clusters without any in this build: {glue:text}`reliable_empty`);
# stage 3's classifier then sees no labelled image of such a cluster, and only Eq. (9)'s
# consistency term reaches it.

# %%
train_labels_self = self_train_pred
reliable = reliable_pseudo_labels(emb_train.numpy(), train_labels_self, n_neighbors, lambda_r)
reliable_index = np.flatnonzero(reliable)
reliable_counts = np.bincount(train_labels_self[reliable_index], minlength=K)
empty_clusters = [k for k in range(K) if reliable_counts[k] == 0]
reliable_acc = metrics.cluster_acc(y_train[reliable_index], train_labels_self[reliable_index]) if len(reliable_index) else float("nan")
print(f"Eq. (7) with N_s = {n_neighbors}, lambda_r = {lambda_r}: {len(reliable_index)} of {n} reliable "
      f"({len(reliable_index) / n:.1%}), accuracy {reliable_acc:.4f}; per cluster {reliable_counts.tolist()}")
if empty_clusters:
    print(f"WARNING: clusters {empty_clusters} have no reliable sample; the official code would keep none at all")
record.add("reliable", "Eq. (6)-(7)", dataset, f"lambda_r={lambda_r}", "size", len(reliable_index))
record.add("reliable", "Eq. (6)-(7)", dataset, f"lambda_r={lambda_r}", "acc", reliable_acc)
record.add("reliable", "Eq. (6)-(7)", dataset, f"lambda_r={lambda_r}", "empty_clusters", len(empty_clusters))
report.glue("reliable_size", len(reliable_index))
report.glue("reliable_share", len(reliable_index) / n)
report.glue("reliable_acc", reliable_acc)
report.glue("reliable_empty", len(empty_clusters))
report.glue("lambda_r", lambda_r)
report.glue("n_neighbors", n_neighbors)
report.glue("neighbours_class_share", n_neighbors / (n / K))   # N_s against the training images per cluster

# %% [markdown]
# **The reliable set against the threshold.** Its size and the accuracy of its pseudo-labels for
# $\lambda_r$ from 0.5 to 0.99 (the paper's Table VI: reliable labels 96.5% accurate on CIFAR-10
# and 97.7% on STL10, against 84.5% and 86.2% for all of SPICE-Self's labels on the same split;
# Fig. 7, on the whole of CIFAR-10: 95.9% against 83.8%).

# %%
threshold_rows = []
for lam in [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]:
    mask_ = reliable_pseudo_labels(emb_train.numpy(), train_labels_self, n_neighbors, lam)
    acc_ = metrics.cluster_acc(y_train[mask_], train_labels_self[mask_]) if mask_.any() else float("nan")
    threshold_rows.append({"lambda_r": lam, "reliable share": mask_.mean(), "ACC of its labels": acc_})
    record.add("reliable_threshold", "Eq. (6)-(7)", dataset, f"lambda_r={lam}", "share", float(mask_.mean()))
    record.add("reliable_threshold", "Eq. (6)-(7)", dataset, f"lambda_r={lam}", "acc", acc_)
threshold_table = pd.DataFrame(threshold_rows)
fig, ax = plt.subplots(figsize=(4.5, 2.8))
ax.plot(threshold_table["lambda_r"], threshold_table["reliable share"], marker="o", label="share of images")
ax.plot(threshold_table["lambda_r"], threshold_table["ACC of its labels"], marker="s", label="ACC of their labels")
ax.axhline(self_scores["train"]["acc"], color="grey", ls=":", label="SPICE-Self ACC, all images")
ax.set(xlabel=r"$\lambda_r$ (Eq. 7)", ylabel="share of training images / ACC", ylim=(0, 1.02),
       title="reliable pseudo-labels")
ax.legend(fontsize="small")
plotting.save_figure(fig, out, "reliable_threshold")
plt.show()
threshold_table.round(4)

# %% [markdown]
# **Benchmark** (`benchmarks/bench_reliable_pseudo_labels.py`, issue 10's target): at $n = 70{,}000$
# and 128-d embeddings at most 20 s and 2 GB of extra memory, and the same mask as the brute-force
# computation at small $n$; printed as measured in this run (the `smoke` profile times a smaller $n$).
# The time is for the function's defaults, the paper's $N_s = 100$ and $\lambda_r = 0.99$. There all
# $N_s$ neighbours must share the label, and the function takes an exact shortcut: $i$ is reliable
# when at least $N_s$ samples of its own label are more similar to it than its most similar sample
# of another label. That needs no top-$N_s$ search and only about half of the similarity matrix's
# products. With this chapter's $\lambda_r = 0.9$, or when one cluster dominates, the function
# searches each row's top $N_s$ instead, which is slower; the benchmark checks that route against
# brute force at small $n$ but does not time it at 70,000.

# %%
bench_script = Path("..") / "benchmarks" / "bench_reliable_pseudo_labels.py"
bench_json = out / "bench_reliable.json"
bench = subprocess.run([sys.executable, str(bench_script), "--n", str(budget.bench_n), "--small", "1000", "2000",
                        "--json", str(bench_json)], capture_output=True, text=True, check=True)
print(bench.stdout)
bench_figures = json.loads(bench_json.read_text())
record.add("benchmark", "reliable_pseudo_labels", "synthetic embeddings", f"n={budget.bench_n}, d=128", "seconds",
           bench_figures["seconds"])
record.add("benchmark", "reliable_pseudo_labels", "synthetic embeddings", f"n={budget.bench_n}, d=128", "extra_gb",
           bench_figures["extra_bytes"] / 1e9)
_ = record.add("benchmark", "reliable_pseudo_labels", "synthetic embeddings", "small n", "same_as_brute_force",
           float(bench_figures["same"]))

# %% [markdown]
# (sec-sp-joint)=
# ## Stage 3: joint training (Eq. 8-9)
#
# The network is now the feature model and the selected head, trained together as FixMatch
# trains a classifier: the reliable samples are the labelled set, every training image is
# unlabelled. Per step, $B_l$ = `labelled_batch` reliable images (weak views) and $\mu B_l$
# unlabelled ones (a weak and a strong view each). Eq. (8): the weak view's prediction is the
# strong view's target when its confidence reaches `confidence_threshold`; Eq. (9):
#
# $$L = \frac{1}{B_l}\sum_{i} \mathrm{CE}(y_i, f(\alpha(x_i))) + \frac{1}{\mu B_l} \sum_j
# [\max f(\alpha(u_j)) \geq \tau_c]\, \mathrm{CE}(\arg\max f(\alpha(u_j)), f(\mathcal{A}(u_j))),$$
#
# with SGD (learning rate 0.03, Nesterov momentum 0.9, weight decay 5e-4) and FixMatch's cosine
# decay. *Check:* `joint_loss` against Eq. (9) written out on one batch.
#
# **Which head.** Stage 3 can start from three heads (`joint_head`). Stage 2's selected head
# (`selected`) has learned very large logits (its softmax must be near one-hot for the second
# softmax to matter), which makes it a poor start for FixMatch's cross-entropy (the comparison
# below gives its first-epoch loss and what joint training does to the features). A
# new, untrained head (`fresh`, as the official code starts a new network from the reliable
# labels) is confident about nothing: Eq. (8) keeps almost no unlabelled image in the first
# epochs, so Eq. (9)'s consistency term hardly acts, and the first epochs go into fitting the
# head. The default (`fitted`) starts from a new head fitted first to the
# reliable pseudo-labels on the frozen stage-1 features (`fitted_head`: 300 full-batch Adam steps
# of cluster-balanced cross-entropy, about two seconds), so that joint training starts from a
# classifier of the reliable set, confident where Eq. (8) needs it. Stage 2's head passes on its
# knowledge through the reliable pseudo-labels in every case. The comparison after this stage's
# run shows the three starts, with the share of images above $\tau_c$ epoch by epoch.

# %%
class ClusteringNetwork(nn.Module):
    """Feature model + one clustering head (logits)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def joint_loss(logits_l, labels_l, logits_weak_u, logits_strong_u, threshold: float):
    """Eq. (8)-(9): supervised CE on reliable samples + masked consistency CE on unlabelled ones."""
    supervised = F.cross_entropy(logits_l, labels_l)
    with torch.no_grad():
        confidence, pseudo = logits_weak_u.softmax(-1).max(-1)      # Eq. (8)
        mask = (confidence >= threshold).float()
    consistency = (F.cross_entropy(logits_strong_u, pseudo, reduction="none") * mask).mean()
    return supervised + consistency, mask.mean()


g_ = torch.Generator().manual_seed(3)
l_l, l_w, l_s = torch.randn(4, 5, generator=g_), torch.randn(6, 5, generator=g_) * 4, torch.randn(6, 5, generator=g_)
y_l = torch.tensor([0, 1, 2, 3])
p_w = l_w.softmax(-1)
written = -l_l.log_softmax(-1)[range(4), y_l].mean() + sum(
    -l_s.log_softmax(-1)[j, p_w[j].argmax()] for j in range(6) if p_w[j].max() >= 0.95) / 6
assert torch.allclose(joint_loss(l_l, y_l, l_w, l_s, 0.95)[0], written)
print("Eq. (9): joint_loss equals the written-out sum")


@torch.no_grad()
def network_predictions(net: nn.Module, images: torch.Tensor) -> np.ndarray:
    net.eval()
    with mixed():
        pred = torch.cat([net(images[i:i + EVAL_BATCH].to(device)).float().argmax(-1).cpu()
                          for i in range(0, len(images), EVAL_BATCH)])
    net.train()
    return pred.numpy()


def cluster_balance(labels_: torch.Tensor) -> torch.Tensor:
    """Per-sample weights that give every cluster with reliable samples the same total weight."""
    return 1.0 / torch.bincount(labels_, minlength=K).double()[labels_]


def fitted_head(reliable_index_: np.ndarray, labels_: np.ndarray, steps: int = 300) -> nn.Module:
    """A new D-D-K head fitted to the reliable pseudo-labels on the frozen stage-1 features
    (cluster-balanced cross-entropy, full batch, Adam at 1e-3): stage 3's starting head."""
    head_ = Heads(1, D, K).single(0).to(device)
    x, y = features_train[reliable_index_].to(device), torch.as_tensor(labels_, dtype=torch.long, device=device)
    weights = cluster_balance(y).float()
    optimiser = torch.optim.Adam(head_.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = (F.cross_entropy(head_(x), y, reduction="none") * weights).sum() / weights.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return head_


def joint_steps_per_epoch(n_images: int, labelled_batch: int) -> int:
    """FixMatch steps in one stage-3 epoch: one pass of the unlabelled images in batches of mu * B (Eq. 9)."""
    return max(1, n_images // (unlabelled_ratio * labelled_batch))


def train_joint(reliable_index_: np.ndarray, labels_: np.ndarray, head_index: int):
    """Stage 3 (FixMatch with the reliable set as labels); returns (network, history)."""
    training.seed_everything(seed + 4)
    head_ = {"selected": lambda: heads.single(head_index), "fresh": lambda: Heads(1, D, K).single(0),
             "fitted": lambda: fitted_head(reliable_index_, labels_)}[joint_head]()
    net = ClusteringNetwork(copy.deepcopy(feature_model), head_).to(device)
    start_pred = network_predictions(net, train_images)
    if joint_head == "selected":   # the copy predicts what the selected head predicted
        assert np.array_equal(start_pred[:500], self_train_pred[:500])
    record.add("stage3", f"{joint_head} head", dataset, "before joint training, train images", "acc",
               scores(y_train, start_pred)["acc"])
    optimiser = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9, nesterov=True, weight_decay=5e-4)
    b_l = budget.labelled_batch
    b_u = unlabelled_ratio * b_l
    steps_per_epoch = joint_steps_per_epoch(n, b_l)
    total = budget.joint_epochs * steps_per_epoch
    rng = torch.Generator().manual_seed(seed + 5)
    reliable_t = torch.as_tensor(reliable_index_)
    labels_t = torch.as_tensor(labels_, dtype=torch.long)
    # each cluster with reliable samples equally often in the labelled batches (not each sample)
    weights = cluster_balance(labels_t)

    def epoch_fn(epoch: int) -> dict:
        order, losses, masks = torch.randperm(n, generator=rng), [], []

        def make_batch(step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
            """Step `step`'s labelled weak views, unlabelled weak views and strong views, and the labels."""
            pick = torch.multinomial(weights, b_l, replacement=True, generator=rng)
            x_l = weak_view(train_images[reliable_t[pick]], rng)
            u = train_images[order[step * b_u:(step + 1) * b_u]]
            return torch.cat([x_l, weak_view(u, rng), strong_view(u, rng)]), labels_t[pick], len(u)

        # the next step's views are drawn on a background thread while this step trains, in the same
        # order from the same generator, so the numbers are those of a plain loop
        for step, (batch, labels_l, n_u) in enumerate(training.prefetched(make_batch, steps_per_epoch)):
            k_ = epoch * steps_per_epoch + step
            for group in optimiser.param_groups:
                group["lr"] = 0.03 * math.cos(7 * math.pi * k_ / (16 * total))
            with mixed():
                logits = net(batch.to(device)).float()
            loss, mask_rate = joint_loss(logits[:b_l], labels_l.to(device), logits[b_l:b_l + n_u].detach(),
                                         logits[b_l + n_u:], confidence_threshold)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item()), masks.append(mask_rate.item())
        # monitoring only (labels never enter training): ACC of the training images after the epoch
        return {"loss": float(np.mean(losses)), "mask": float(np.mean(masks)),
                "acc": scores(y_train, network_predictions(net, train_images))["acc"]}

    history = training.run_epochs(budget.joint_epochs, epoch_fn, checkpoints / "stage3_joint.pt",
                                  {"net": net, "optimiser": optimiser}, desc="stage 3: joint",
                                  extra_state=lambda: {"rng": rng.get_state()},
                                  load_extra=lambda s: rng.set_state(s["rng"]) if "rng" in s else None)
    return net, history


started = time.perf_counter()
if len(reliable_index) == 0:
    print("WARNING: the reliable set is empty; stage 3 is skipped and SPICE equals SPICE-Self")
    spice_net, joint_history = None, []
    spice_train_pred, spice_test_pred = self_train_pred, self_test_pred
    quality_after = quality_before
else:
    spice_net, joint_history = train_joint(reliable_index, train_labels_self[reliable_index], selection["head"])
    spice_train_pred = network_predictions(spice_net, train_images)
    spice_test_pred = network_predictions(spice_net, test_images)
    quality_after = feature_quality(embed(spice_net.backbone, train_images), embed(spice_net.backbone, test_images))
stage3_seconds = report.glue("stage3_seconds", time.perf_counter() - started)
for h_ in joint_history:   # the share of unlabelled images above tau_c: how much of Eq. (9)'s second term acts
    for metric_ in ("loss", "mask", "acc"):
        record.add("stage3", f"{joint_head} head", dataset, f"epoch {h_['epoch'] + 1}", metric_, h_[metric_])
spice_scores = {"train": scores(y_train, spice_train_pred), "held-out": scores(y_test, spice_test_pred)}
print(f"stage 3: {budget.joint_epochs} epochs in {stage3_seconds:.0f} s: ACC {spice_scores['train']['acc']:.4f} "
      f"(train), {spice_scores['held-out']['acc']:.4f} (held-out)")
if joint_history:
    epochs_ = [h["epoch"] + 1 for h in joint_history]
    fig, (ax_loss, ax_mask, ax_acc) = plt.subplots(1, 3, figsize=(10.5, 2.5))
    ax_loss.plot(epochs_, [h["loss"] for h in joint_history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="Eq. (9) loss", title="stage 3: joint training")
    ax_mask.plot(epochs_, [h["mask"] for h in joint_history], marker="s", color="C1")
    ax_mask.set(xlabel="epoch", ylabel="share of unlabelled images", ylim=(0, 1.02),
                title="weak-view confidence above $\\tau_c$ (Eq. 8)")
    ax_acc.plot(epochs_, [h["acc"] for h in joint_history], marker="^", color="C2")
    ax_acc.axhline(self_scores["train"]["acc"], color="grey", ls="--", lw=1, label="SPICE-Self")
    ax_acc.set(xlabel="epoch", ylabel="ACC, training images", title="accuracy (monitoring only)")
    ax_acc.legend(loc="lower right")
    plotting.save_figure(fig, out, "joint_training")
    plt.show()

# %% [markdown]
# **Three starting heads, compared.** One committed run per `joint_head` at the `book` profile
# as it was then ({glue:text}`jh_joint_epochs` joint epochs; stages 1 and 2 identical in all
# three, without the ablations), under
# `results/05_spice/joint-head-book/` with the `COMMAND` that made them. The share of unlabelled
# images above $\tau_c$ is the label-free sign of whether Eq. (9)'s consistency term acts; the
# accuracies are scored with the labels.

# %%
def key_numbers(record_: dict) -> dict:
    """Table II and III accuracies of a run."""
    return {f"{row['method']} ({row['setting']})": row["value"] for row in record_["rows"]
            if row["experiment"] in ("table2", "table3") and row["metric"] == "acc"}


def linear_probes(run_: dict) -> dict:
    """A run's held-out linear-probe accuracy of the feature model (Table VI), by "before" / "after" joint training."""
    return {row["method"].removeprefix("feature model, "): row["value"] for row in run_["rows"]
            if row["experiment"] == "table6" and row["setting"] == "linear probe, held-out"}


def stage3_summary(run_: dict) -> dict:
    """A committed run's stage-3 start and end: the starting head's accuracy, the share above tau_c per epoch, SPICE."""
    head_ = run_["parameters"]["joint_head"]
    numbers_ = key_numbers(run_)
    start_ = [r["value"] for r in run_["rows"] if r["experiment"] == "stage3" and r["metric"] == "acc"]
    shares_ = [r["value"] for r in run_["rows"] if r["experiment"] == "stage3" and r["metric"] == "mask"]
    return {"joint_head": head_, "joint epochs": run_["parameters"]["joint_epochs"],
            "SPICE-Self (train)": numbers_.get("SPICE-Self (train)", np.nan),
            "starting head (train)": start_[0] if start_ else np.nan,
            "share above tau_c, epoch 1": shares_[0] if shares_ else np.nan,
            "share above tau_c, epoch by epoch": " / ".join(f"{v:.2f}" for v in shares_),
            "loss, epoch 1": next((r["value"] for r in run_["rows"] if r["experiment"] == "stage3"
                                   and r["metric"] == "loss"), np.nan),
            **{f"linear probe {stage_} (held-out)": linear_probes(run_).get(stage_, np.nan) for stage_ in ("before", "after")},
            "SPICE (train)": numbers_.get("SPICE (train)", np.nan),
            "SPICE (held-out)": numbers_.get("SPICE (held-out)", np.nan)}


joint_head_runs = sorted((Path("..") / "results" / "05_spice" / "joint-head-book").glob("*/results.json"))
joint_head_table = pd.DataFrame([stage3_summary(results.load(path)) for path in joint_head_runs])
by_head = joint_head_table.set_index("joint_head") if len(joint_head_table) else pd.DataFrame()
for head_name_ in ("fresh", "fitted", "selected"):   # NaN until the comparison is committed
    row_ = by_head.loc[head_name_] if head_name_ in by_head.index else {}
    report.glue(f"jh_{head_name_}_spice", float(row_.get("SPICE (train)", np.nan)))
    report.glue(f"jh_{head_name_}_start", float(row_.get("starting head (train)", np.nan)))
    report.glue(f"jh_{head_name_}_first_share", float(row_.get("share above tau_c, epoch 1", np.nan)))
    report.glue(f"jh_{head_name_}_first_loss", float(row_.get("loss, epoch 1", np.nan)))
    report.glue(f"jh_{head_name_}_probe_after", float(row_.get("linear probe after (held-out)", np.nan)))
report.glue("jh_probe_before", float(joint_head_table["linear probe before (held-out)"].iloc[0])
            if len(joint_head_table) else np.nan)
report.glue("jh_self", float(joint_head_table["SPICE-Self (train)"].iloc[0]) if len(joint_head_table) else np.nan)
report.glue("jh_joint_epochs", int(joint_head_table["joint epochs"].iloc[0]) if len(joint_head_table) else 0)
joint_head_table.round(4)

# %% [markdown]
# From the same SPICE-Self ({glue:text}`jh_self:.3f` on the training images), stage 3 gives
# SPICE {glue:text}`jh_fresh_spice:.3f` from an untrained head, {glue:text}`jh_fitted_spice:.3f`
# from the fitted head and {glue:text}`jh_selected_spice:.3f` from the selected one. In the first
# epoch Eq. (8) keeps a share of {glue:text}`jh_fresh_first_share:.2f` of the unlabelled images with
# the untrained head, {glue:text}`jh_fitted_first_share:.2f` with the fitted one and
# {glue:text}`jh_selected_first_share:.2f` with the selected one. The selected head's first epoch
# has a loss of {glue:text}`jh_selected_first_loss:.1f` (the fitted head's:
# {glue:text}`jh_fitted_first_loss:.2f`), and its joint training takes the feature model's
# linear-probe accuracy from {glue:text}`jh_probe_before:.3f` to
# {glue:text}`jh_selected_probe_after:.3f` (fitted: {glue:text}`jh_fitted_probe_after:.3f`). The fitted head scores
# {glue:text}`jh_fitted_start:.3f` before any joint step (a classifier of the reliable set on the
# frozen features), and the joint epochs take it to {glue:text}`jh_fitted_spice:.3f`.

# %% [markdown]
# ## Tables II and III: clustering without labels
#
# SPICE-Self (stage 2, the selected head) and SPICE (stage 3) beside k-means on the stage-1
# embeddings, on the images trained on (Table II's setting: no labels seen, all images scored) and
# on the held-out images (Table III's). The paper has no MNIST or Fashion-MNIST column; its
# CIFAR-10 and STL10 numbers are shown for scale, and filled into the record's `paper_value` when
# the chapter runs on those datasets.

# %%
PAPER = {  # (ACC, NMI, ARI) from Table II (whole data) and Table III (train / test split)
    "table2": {"cifar10": {"SPICE-Self": (0.838, 0.734, 0.705), "SPICE": (0.926, 0.865, 0.852)},
               "stl10": {"SPICE-Self": (0.908, 0.817, 0.812), "SPICE": (0.938, 0.872, 0.870)}},
    "table3": {"cifar10": {"SPICE-Self": (0.845, 0.739, 0.709), "SPICE": (0.918, 0.850, 0.836)},
               "stl10": {"SPICE-Self": (0.862, 0.756, 0.732), "SPICE": (0.920, 0.852, 0.836)}},
}
METHODS = {"k-means (stage-1 features)": kmeans_scores, "SPICE-Self": self_scores, "SPICE": spice_scores}
table_rows = []
for experiment, setting in (("table2", "train"), ("table3", "held-out")):
    for method, by_setting in METHODS.items():
        paper_ = PAPER[experiment].get(dataset, {}).get(method)
        for i, metric in enumerate(("acc", "nmi", "ari")):
            record.add(experiment, method, dataset, setting, metric, by_setting[setting][metric],
                       paper=None if paper_ is None else paper_[i])
        table_rows.append({"table": experiment, "images": setting, "method": method,
                           **{m_: by_setting[setting][m_] for m_ in ("acc", "nmi", "ari")},
                           **{f"paper CIFAR-10 {m_}": PAPER[experiment]["cifar10"].get(method, (np.nan,) * 3)[i]
                              for i, m_ in enumerate(("acc", "nmi", "ari"))}})
record.headline("SPICE", "acc", spice_scores["train"]["acc"], setting="training images, no labels (Table II)",
                paper=PAPER["table2"].get(dataset, {}).get("SPICE", (None,))[0])
with pd.option_context("display.max_columns", None):
    display(pd.DataFrame(table_rows).round(4))
for method, key in (("SPICE", "spice"), ("SPICE-Self", "self")):
    for setting, suffix in (("train", "train"), ("held-out", "test")):
        report.glue(f"{key}_acc_{suffix}", METHODS[method][setting]["acc"])
report.glue("kmeans_acc_test", kmeans_scores["held-out"]["acc"])

# %% [markdown]
# ## Table VI: the features before and after joint training
#
# Linear-probe and k-NN accuracy of the feature model's embeddings on the held-out images (labels
# used to evaluate only), after stage 1 and after stage 3. The paper finds the joint training
# improves the features when the reliable labels are accurate (CIFAR-10, STL10) and not when they
# are not (CIFAR-100-20).

# %%
table6 = pd.DataFrame({"before joint training": quality_before, "after joint training": quality_after})
for stage_, quality_ in (("before", quality_before), ("after", quality_after)):
    for probe, value in quality_.items():
        record.add("table6", f"feature model, {stage_}", dataset, f"{probe} probe, held-out", "acc", value)
report.glue("linear_before", quality_before["linear"])
report.glue("linear_after", quality_after["linear"])
table6.round(4)

# %% [markdown]
# ## Table VII and Table VIII: ablations of SPICE-Self
#
# Each row changes one thing in stage 2 and trains `ablation_heads` fresh heads for `ablation_epochs`
# epochs (the reference row, SPICE-Self, is retrained at the same budget so that the rows compare):
# the non-overlap assignment; the feature model trained together with one head (Joint-SH) or with
# `joint_mh_heads` heads (Joint-MH), for `joint_head_epochs` epochs with one M-step pass per big batch (the
# similarity branch stays the frozen stage-1 embedding, as in the paper); an entropy term added to
# Eq. (5); plain cross-entropy (CE) and cross-entropy with temperature 0.2 (TCE) instead of the
# double softmax (Appendix A's experiment); and Table VIII's weak / strong views on the labelling
# (middle) and training (bottom) branches. The paper's numbers are STL10's (5 trials each); ours
# are one trial. To fit its six minutes, the `book` build does not train these rows: they come from
# {glue:text}`side_source` (its stage 1 checked equal to this build's below).

# %%
PAPER_TABLE7 = {"Non-overlap": (0.885, 0.788, 0.771), "Joint-SH": (0.622, 0.513, 0.437), "Joint-MH": (0.687, 0.577, 0.512),
                "Entropy": (0.907, 0.817, 0.810), "CE": (0.875, 0.784, 0.764), "TCE": (0.895, 0.794, 0.787),
                "SPICE-Self": (0.908, 0.817, 0.812)}
PAPER_TABLE8 = {("weak", "weak"): (0.905, 0.815, 0.808), ("strong", "weak"): (0.883, 0.799, 0.781),
                ("strong", "strong"): (0.902, 0.812, 0.803), ("weak", "strong"): (0.908, 0.817, 0.812)}
# the committed book runs shown when the build skips Tables VII and VIII: one per arithmetic (the book
# profile's stage lengths follow it) and kind of machine (float32 sums in another order there), so
# the build shows the one whose stage 1 is its own: k-means on the stage-1 features equal to the build's
run_side = experiments and budget.side_experiments
side_runs = (results.committed_variants(Path("..") / "results" / "05_spice", "book-side-experiments")
             if experiments and not run_side else {})
build_kmeans = key_numbers(record.to_dict()).get("k-means (stage-1 features) (train)")
SIDE_RUN = next((name_ for name_, run_ in side_runs.items()
                 if key_numbers(run_).get("k-means (stage-1 features) (train)") == build_kmeans),
                next((name_ for name_, run_ in side_runs.items()
                      if run_["parameters"].get("precision_used", "fp32") == compute_precision),
                     next(iter(side_runs), "book-side-experiments")))
side_record = side_runs.get(SIDE_RUN)
if run_side:
    side_source = "this build"
elif side_record:
    side_source = (f"the committed run results/05_spice/{SIDE_RUN}/ ({results.provenance(side_record)}); "
                   f"-p side_experiments=True trains them in the build")
else:
    side_source = "no run: -p side_experiments=True trains them"
report.glue("side_source", side_source)
print(f"Tables VII and VIII: {side_source}")
ablation_rows = []
if side_record:  # its rows stand for this build's only if its stage 1 is this build's
    kmeans_ = "k-means (stage-1 features) (train)"
    theirs_, ours_ = (key_numbers(run_).get(kmeans_, np.nan) for run_ in (side_record, record.to_dict()))
    print(f"its k-means on the stage-1 features {theirs_:.4f}, this build's {ours_:.4f}: "
          f"{'the same feature model' if theirs_ == ours_ else 'NOT the same feature model (another profile, dataset, seed, code, thread count, precision or kind of machine)'}")
    committed_ = {}
    for row in side_record["rows"]:
        if row["experiment"] in ("table7", "table8"):
            committed_.setdefault((row["experiment"], row["method"], row["setting"]), {})[row["metric"]] = row["value"]
    for (experiment_, name_, setting_), values_ in committed_.items():
        table_ = "VII" if experiment_ == "table7" else "VIII"
        paper_ = PAPER_TABLE7.get(name_) if table_ == "VII" else PAPER_TABLE8.get(
            tuple(part.split()[1] for part in name_.split(", ")))
        variant_ = name_ + (" (= SPICE-Self)" if name_ == "Aug1 weak, Aug2 strong" else "")
        ablation_rows.append({"table": table_, "variant": variant_, **values_, "epochs": int(setting_.split()[0]),
                              **{f"paper STL10 {m_}": paper_[i] for i, m_ in enumerate(("acc", "nmi", "ari"))}})
if run_side:
    variants = {"SPICE-Self": {}, "Non-overlap": {"assignment_": "non-overlap"},
                "Joint-SH": {"joint_backbone": True, "n_heads_": 1}, "Joint-MH": {"joint_backbone": True, "n_heads_": budget.joint_mh_heads},
                "Entropy": {"loss_": "entropy"}, "CE": {"loss_": "ce"}, "TCE": {"loss_": "tce"}}
    for name_, options in variants.items():
        epochs_ = budget.joint_head_epochs if options.get("joint_backbone") else budget.ablation_epochs
        options = {"n_heads_": budget.ablation_heads, **options}
        if options.get("joint_backbone"):
            options["num_repeat"] = 1
        started = time.perf_counter()
        heads_v, backbone_v, _ = train_heads(f"table7_{name_}", epochs=epochs_, **options)
        chosen_v = select_head(heads_v, backbone_v)
        s_ = scores(y_train, chosen_v["train_pred"])
        ablation_rows.append({"table": "VII", "variant": name_, **s_, "epochs": epochs_,
                              "seconds": time.perf_counter() - started,
                              **{f"paper STL10 {m_}": PAPER_TABLE7[name_][i] for i, m_ in enumerate(("acc", "nmi", "ari"))}})
        for i, metric in enumerate(("acc", "nmi", "ari")):
            record.add("table7", name_, dataset, f"{epochs_} epochs, train images", metric, s_[metric],
                       paper=PAPER_TABLE7[name_][i] if dataset == "stl10" else None)
    for aug1, aug2 in PAPER_TABLE8:
        if (aug1, aug2) == ("weak", "strong"):   # SPICE-Self's own setting: the Table VII reference row
            s_ = {m_: ablation_rows[0][m_] for m_ in ("acc", "nmi", "ari")}
            ablation_rows.append({**ablation_rows[0], "table": "VIII", "variant": "Aug1 weak, Aug2 strong (= SPICE-Self)"})
            for i, metric in enumerate(("acc", "nmi", "ari")):
                record.add("table8", "Aug1 weak, Aug2 strong", dataset, f"{budget.ablation_epochs} epochs, train images",
                           metric, s_[metric], paper=PAPER_TABLE8[(aug1, aug2)][i] if dataset == "stl10" else None)
            continue
        started = time.perf_counter()
        heads_v, _, _ = train_heads(f"table8_{aug1}_{aug2}", budget.ablation_heads, budget.ablation_epochs, branch2=aug1, branch3=aug2)
        s_ = scores(y_train, select_head(heads_v)["train_pred"])
        ablation_rows.append({"table": "VIII", "variant": f"Aug1 {aug1}, Aug2 {aug2}", **s_,
                              "epochs": budget.ablation_epochs, "seconds": time.perf_counter() - started,
                              **{f"paper STL10 {m_}": PAPER_TABLE8[(aug1, aug2)][i] for i, m_ in enumerate(("acc", "nmi", "ari"))}})
        for i, metric in enumerate(("acc", "nmi", "ari")):
            record.add("table8", f"Aug1 {aug1}, Aug2 {aug2}", dataset, f"{budget.ablation_epochs} epochs, train images",
                       metric, s_[metric], paper=PAPER_TABLE8[(aug1, aug2)][i] if dataset == "stl10" else None)
ablation = pd.DataFrame(ablation_rows)
# each row against its table's reference row (SPICE-Self at the same budget), ours and the paper's
REFERENCE_ROW = {"VII": "SPICE-Self", "VIII": "Aug1 weak, Aug2 strong (= SPICE-Self)"}
agree_, disagree_ = [], []
if len(ablation):
    reference_ = ablation.set_index("variant").loc[[REFERENCE_ROW[t_] for t_ in ablation["table"]]]
    ablation["ACC - reference"] = ablation["acc"].to_numpy() - reference_["acc"].to_numpy()
    ablation["paper: ACC - reference"] = (ablation["paper STL10 acc"].to_numpy()
                                          - reference_["paper STL10 acc"].to_numpy())
    is_reference_ = ablation["variant"].isin(REFERENCE_ROW.values())
    same_sign_ = np.sign(ablation["ACC - reference"]) == np.sign(ablation["paper: ACC - reference"])
    ablation["direction as the paper's"] = np.where(is_reference_, "(reference)", np.where(same_sign_, "yes", "no"))
    for variant_, same_ in zip(ablation["variant"][~is_reference_], same_sign_[~is_reference_]):
        (agree_ if same_ else disagree_).append(variant_)
    acc_of_ = ablation.set_index("variant")["acc"]
    ablation_run_ = side_record["parameters"] if side_record else record.parameters   # the run that made the rows
    main_self_ = key_numbers(side_record)["SPICE-Self (train)"] if side_record else self_scores["train"]["acc"]
    report.glue("ablation_ref_acc", float(acc_of_["SPICE-Self"]))
    report.glue("ablation_ref_epochs", int(ablation.set_index("variant").loc["SPICE-Self", "epochs"]))
    report.glue("ablation_heads_run", int(ablation_run_["ablation_heads"]))
    report.glue("ablation_main_self", float(main_self_))
    report.glue("ablation_main_epochs", int(ablation_run_["head_epochs"]))
    report.glue("ablation_main_heads", int(ablation_run_["n_heads"]))
    report.glue("ablation_tce_words", "above" if acc_of_["TCE"] > acc_of_["CE"] else "not above")
else:
    for name_ in ("ablation_ref_acc", "ablation_main_self"):
        report.glue(name_, np.nan)
    for name_ in ("ablation_ref_epochs", "ablation_heads_run", "ablation_main_epochs", "ablation_main_heads"):
        report.glue(name_, 0)
    report.glue("ablation_tce_words", "(not run)")
report.glue("ablation_n_rows", len(agree_) + len(disagree_))
report.glue("ablation_n_agree", len(agree_))
report.glue("ablation_disagree", "; ".join(disagree_) or "none")
with pd.option_context("display.max_columns", None):
    display(ablation.round(4))

# %% [markdown]
# Every variant of the paper's two tables falls below SPICE-Self on STL10. In the rows above,
# {glue:text}`ablation_n_agree` of the {glue:text}`ablation_n_rows` variants move ACC away from
# their reference row in the paper's direction; those that do not: {glue:text}`ablation_disagree`.
# The paper also finds TCE above CE (and both below the double softmax); here TCE is
# {glue:text}`ablation_tce_words` CE. These are short runs of one trial each: the reference row
# reaches {glue:text}`ablation_ref_acc:.3f` after {glue:text}`ablation_ref_epochs` epochs with
# {glue:text}`ablation_heads_run` heads, where the same run's SPICE-Self reaches
# {glue:text}`ablation_main_self:.3f` after {glue:text}`ablation_main_epochs` epochs with
# {glue:text}`ablation_main_heads` heads. They compare the variants early in stage 2, not where
# training ends, and the seeds section below shows how far a seed alone moves SPICE-Self.

# %% [markdown]
# ## The clusters
#
# A t-SNE map of the embeddings before and after joint training (a subset of `tsne_points`
# training images), coloured by SPICE-Self's clusters (left) and SPICE's (right), with the
# reliable samples of Eq. (7) drawn solid
# (the paper's Fig. 7).

# %%
from sklearn.manifold import TSNE  # noqa: E402

shown = np.random.default_rng(seed).choice(n, size=min(budget.tsne_points, n), replace=False)
after_emb = embed(spice_net.backbone, train_images[shown]) if spice_net is not None else emb_train[shown]
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, emb_, labels_, title in ((axes[0], emb_train[shown], self_train_pred[shown], "stage 1 features, SPICE-Self clusters"),
                                 (axes[1], after_emb, spice_train_pred[shown], "after joint training, SPICE clusters")):
    xy = TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(shown) - 1)).fit_transform(emb_.numpy())
    solid = reliable[shown]
    ax.scatter(xy[~solid, 0], xy[~solid, 1], c=labels_[~solid], cmap="tab10", s=6, alpha=0.25, vmin=0, vmax=max(K - 1, 9))
    ax.scatter(xy[solid, 0], xy[solid, 1], c=labels_[solid], cmap="tab10", s=6, vmin=0, vmax=max(K - 1, 9))
    ax.set(title=title, xticks=[], yticks=[])
fig.suptitle("solid: reliable samples (Eq. 7); faint: the rest")
plotting.save_figure(fig, out, "tsne")
plt.show()

# %% [markdown]
# ## How much one `book` run says: seeds and stage 1's batch
#
# MoCo's batch of 256 comes from long runs
# on large datasets. At the {glue:text}`batch_moco_epochs` epochs of the `book` profile of the time, over
# {glue:text}`n_train` images it makes only {glue:text}`moco_updates_256` updates; a batch of 64
# makes four times as many in about the same time, and MoCo's queue keeps the number of negatives
# per update the same. One scratch run (seed 0) made 64 look much better, so before changing
# anything we ran three seeds at each batch size, the three stages each (`moco_batch`, `seed`),
# committed under `results/05_spice/moco-batch-book/` with its `COMMAND`. They ran the `book`
# profile of their time, with {glue:text}`batch_joint_epochs` joint epochs in stage 3 (the next
# section says why the profile now runs more).

# %%
def batch_point(run_: dict) -> dict:
    """One committed run of the batch comparison: its batch, seed and accuracies."""
    numbers_ = key_numbers(run_)
    reliable_ = {row["metric"]: row["value"] for row in run_["rows"] if row["experiment"] == "reliable"}
    return {"moco_batch": run_["parameters"]["moco_batch"], "seed": run_["parameters"]["seed"],
            "MoCo epochs": run_["parameters"]["moco_epochs"], "joint epochs": run_["parameters"]["joint_epochs"],
            "k-means (train)": numbers_.get("k-means (stage-1 features) (train)", np.nan),
            "SPICE-Self (train)": numbers_.get("SPICE-Self (train)", np.nan),
            "reliable set": reliable_.get("size", np.nan), "reliable acc": reliable_.get("acc", np.nan),
            "clusters without reliable images": reliable_.get("empty_clusters", np.nan),
            "SPICE (train)": numbers_.get("SPICE (train)", np.nan),
            "SPICE (held-out)": numbers_.get("SPICE (held-out)", np.nan)}


batch_columns = ["moco_batch", "seed", "MoCo epochs", "joint epochs", "k-means (train)", "SPICE-Self (train)", "reliable set", "reliable acc",
                 "clusters without reliable images", "SPICE (train)", "SPICE (held-out)"]
batch_runs = sorted((Path("..") / "results" / "05_spice" / "moco-batch-book").glob("*/results.json"))
batch_table = pd.DataFrame([batch_point(results.load(path)) for path in batch_runs], columns=batch_columns)
batch_means = batch_table.drop(columns=["seed", "MoCo epochs", "joint epochs"]).groupby("moco_batch").mean()
batch_joint_epochs = report.glue("batch_joint_epochs", int(batch_table["joint epochs"].max()) if len(batch_table) else 0)
batch_moco_epochs = report.glue("batch_moco_epochs", int(batch_table["MoCo epochs"].max()) if len(batch_table) else 0)
report.glue("moco_updates_256", batch_moco_epochs * (n // 256))
for batch_ in (64, 256):   # NaN until the comparison is committed
    for key_, column_ in (("self", "SPICE-Self (train)"), ("spice", "SPICE (train)"), ("kmeans", "k-means (train)")):
        report.glue(f"batch{batch_}_{key_}", float(batch_means[column_].get(batch_, np.nan)))
spice_range = batch_table["SPICE (train)"]
report.glue("batch_spice_min", float(spice_range.min()) if len(batch_table) else np.nan)
report.glue("batch_spice_max", float(spice_range.max()) if len(batch_table) else np.nan)
report.glue("batch_runs", len(batch_table))
spread_ = batch_table.groupby("moco_batch")["SPICE (train)"].agg(lambda v: v.max() - v.min())
report.glue("batch_spread_64", float(spread_.get(64, np.nan)))
report.glue("batch_spread_256", float(spread_.get(256, np.nan)))
spread_max = report.glue("batch_spread_max", float(spread_.max()) if len(spread_) else np.nan)
mean_gap = report.glue("batch_mean_gap", abs(float(batch_means["SPICE (train)"].get(64, np.nan))
                                            - float(batch_means["SPICE (train)"].get(256, np.nan))))
report.glue("batch_verdict",
            "no such runs are committed in this checkout" if not len(batch_table) else
            f"more than the two means differ ({mean_gap:.3f}): three seeds cannot tell the batch sizes apart"
            if spread_max > mean_gap else
            f"less than the two means differ ({mean_gap:.3f}), though three seeds are few to tell the batch sizes apart")
ranges_ = {column_: float(batch_table[column_].max() - batch_table[column_].min()) if len(batch_table) else np.nan
           for column_ in ("SPICE-Self (train)", "SPICE (train)")}
report.glue("batch_self_range", ranges_["SPICE-Self (train)"])
report.glue("batch_spice_range", ranges_["SPICE (train)"])
report.glue("batch_self_share_words",
            "most of" if ranges_["SPICE-Self (train)"] >= 0.5 * ranges_["SPICE (train)"] else "less than half of")
report.glue("batch_spice_above_self", int((batch_table["SPICE (train)"] > batch_table["SPICE-Self (train)"]).sum()))
TARGETS = {"book": 0.85, "paper": 0.95}  # issue 10's SPICE ACC targets on mnist5k (the Targets section)
report.glue("batch_at_book_target", int((batch_table["SPICE (train)"] >= TARGETS["book"]).sum()))
# this build beside the committed seed-0 runs: the same settings, unless a parameter differs
# and the same numbers: another machine's float32 sums in another order, so its stage 1 is not theirs
committed_kmeans_ = batch_table[(batch_table.moco_batch == 256) & (batch_table.seed == 0)]["k-means (train)"]
same_stage1 = (profile == "book" and dataset == "mnist5k" and seed == 0 and budget.moco_batch == 256
               and n_samples is None and budget.moco_epochs == batch_moco_epochs and compute_precision == "fp32"
               and len(committed_kmeans_) > 0 and float(committed_kmeans_.iloc[0])
               == key_numbers(record.to_dict()).get("k-means (stage-1 features) (train)"))
same_as_committed = (same_stage1 and joint_head == "fitted" and lambda_r == 0.9 and n_neighbors == 100
                     and budget.joint_epochs == batch_joint_epochs)
report.glue("build_vs_committed",
            f"this build has those settings and gives SPICE-Self {self_scores['train']['acc']:.3f} and SPICE "
            f"{spice_scores['train']['acc']:.3f}" if same_as_committed else
            f"this build has the same stages 1 and 2 and gives SPICE-Self {self_scores['train']['acc']:.3f} (its "
            f"stage 3 runs {budget.joint_epochs} joint epochs, not {batch_joint_epochs})" if same_stage1 else
            "this build's settings differ from theirs")
display(batch_table.sort_values(["moco_batch", "seed"]).round(4))
batch_means.round(4)

# %% [markdown]
# Averaged over the three seeds, SPICE-Self is {glue:text}`batch64_self:.3f` with a batch of 64
# and {glue:text}`batch256_self:.3f` with 256, and SPICE {glue:text}`batch64_spice:.3f` and
# {glue:text}`batch256_spice:.3f`. The seeds alone move SPICE by {glue:text}`batch_spread_64:.3f`
# at 64 and {glue:text}`batch_spread_256:.3f` at 256 (from {glue:text}`batch_spice_min:.3f` to
# {glue:text}`batch_spice_max:.3f` over all {glue:text}`batch_runs` runs), {glue:text}`batch_verdict`.
# The `book` profile keeps the paper's 256: taking the batch that scored higher on seed 0 would be
# choosing by the labels we score with. SPICE ends above SPICE-Self in
# {glue:text}`batch_spice_above_self` of the {glue:text}`batch_runs` runs. What to take away is
# the spread: at this budget a single run's accuracy, this build's included, is one draw from a
# range. Over all the runs SPICE-Self spans {glue:text}`batch_self_range:.3f` and SPICE
# {glue:text}`batch_spice_range:.3f`, so {glue:text}`batch_self_share_words` the run-to-run
# differences are already there in SPICE-Self, before stage 3 starts.
#
# These runs, and the three starting heads above, were made before commit bedc258 moved the CPU
# network to channels-last memory layout. The same settings now compute the same functions in
# another order of floating-point operations, and at this budget that moves a run as far as
# another seed does: the committed seed-0 run at batch 256 (stage 3 from the fitted head) has
# SPICE-Self {glue:text}`jh_self:.3f` and SPICE {glue:text}`jh_fitted_spice:.3f`, and
# {glue:text}`build_vs_committed`.

# %% [markdown]
# ## Where the `book` profile spends its time
#
# The `book` build of this chapter first ran stage 3 for {glue:text}`je_old` joint epochs, which
# left most of its six minutes unused. Two committed `book` runs of that time (seed 0, the three
# stages only) each spent more on one stage: {glue:text}`budget_moco_epochs` MoCo epochs instead
# of {glue:text}`budget_base_moco_epochs`, or {glue:text}`budget_joint_epochs` joint epochs instead of
# {glue:text}`je_old`. They are under `results/05_spice/book-budget/` with their `COMMAND`, and are
# shown here beside this build (the table gives each run's minutes).

# %%
def budget_point(name_: str, run_: dict) -> dict:
    """A run's stage lengths and accuracies on its training images."""
    numbers_ = key_numbers(run_)
    return {"run": name_, "MoCo epochs": run_["parameters"]["moco_epochs"],
            "joint epochs": run_["parameters"]["joint_epochs"],
            "k-means (train)": numbers_.get("k-means (stage-1 features) (train)", np.nan),
            "SPICE-Self (train)": numbers_.get("SPICE-Self (train)", np.nan),
            "SPICE (train)": numbers_.get("SPICE (train)", np.nan), "minutes": run_["wall_clock_seconds"] / 60}


budget_runs = {path.parent.name: results.load(path)
               for path in sorted((Path("..") / "results" / "05_spice" / "book-budget").glob("*/results.json"))}
budget_table = pd.DataFrame([budget_point(f"this build ({profile}, {dataset})", record.to_dict()) | {"minutes": np.nan}]
                            + [budget_point(name_, run_) for name_, run_ in budget_runs.items()]).set_index("run")
for name_, key_ in (("moco_epochs=20", "moco"), ("joint_epochs=6", "joint")):  # NaN where not committed
    for column_, suffix_ in (("k-means (train)", "kmeans"), ("SPICE (train)", "spice")):
        report.glue(f"budget_{key_}_{suffix_}",
                    float(budget_table.loc[name_, column_]) if name_ in budget_table.index else float("nan"))
committed_spice = budget_table["SPICE (train)"].iloc[1:]
near_ = len(committed_spice) and not (committed_spice < TARGETS["book"] - 0.05).all()
report.glue("budget_verdict", "Neither came near the target" if len(committed_spice) and not near_ else
            "At least one of them came within 0.05 of the target" if near_ else
            "No such runs are committed in this checkout")
report.glue("book_target", TARGETS["book"])
report.glue("book_moco_epochs", BUDGETS["book"]["moco_epochs"])
report.glue("budget_base_moco_epochs", int(budget_table.loc["joint_epochs=6", "MoCo epochs"])
            if "joint_epochs=6" in budget_table.index else 0)   # the profile's stage 1 when they ran
report.glue("book_joint_epochs", BUDGETS["book"]["joint_epochs"])
for name_, key_ in (("moco_epochs=20", "moco_epochs"), ("joint_epochs=6", "joint_epochs")):  # the runs' own settings
    report.glue(f"budget_{key_}", int(budget_table.loc[name_, key_.replace("_", " ").replace("moco", "MoCo")])
                if name_ in budget_table.index else 0)
# the profile's MoCo epochs: this build when it has the committed runs' stage 1, else the committed
# joint_epochs=6 run (the profile's stage 1; only its stage 3 is longer)
if same_stage1:
    baseline_kmeans, baseline_words = float(budget_table["k-means (train)"].iloc[0]), "this build's"
elif "joint_epochs=6" in budget_table.index:
    baseline_kmeans = float(budget_table.loc["joint_epochs=6", "k-means (train)"])
    baseline_words = "the committed joint_epochs=6 run's (its stage 1 is the profile's)"
else:
    baseline_kmeans, baseline_words = np.nan, "(no committed baseline)"
report.glue("budget_build_kmeans", baseline_kmeans)
report.glue("budget_kmeans_baseline", baseline_words)
longer_kmeans_ = budget_table.loc["moco_epochs=20", "k-means (train)"] if "moco_epochs=20" in budget_table.index else np.nan
report.glue("budget_kmeans_words", "lifted" if longer_kmeans_ > baseline_kmeans else "did not lift"
            if longer_kmeans_ <= baseline_kmeans else "(not committed here) cannot show whether it lifted")
budget_table.round(4)

# %% [markdown]
# With {glue:text}`budget_moco_epochs` MoCo epochs SPICE reached {glue:text}`budget_moco_spice:.3f`,
# and k-means on the stage-1 features {glue:text}`budget_moco_kmeans:.3f`; with
# {glue:text}`budget_joint_epochs` joint epochs SPICE reached
# {glue:text}`budget_joint_spice:.3f`. {glue:text}`budget_verdict` of {glue:text}`book_target`.
# The longer stage 1 {glue:text}`budget_kmeans_words` k-means on its features
# ({glue:text}`budget_moco_kmeans:.3f` against {glue:text}`budget_kmeans_baseline`
# {glue:text}`budget_build_kmeans:.3f`); the `paper`-budget reference runs below show how much
# longer stage 1 has to run.
#
# Stage 3 is where the spare time went first (the section after next moves most of it to stage 1). An epoch of it is
# {glue:text}`joint_steps_per_epoch` FixMatch steps on `mnist5k`, so {glue:text}`je_old` epochs
# are {glue:text}`je_old_steps` steps, and stage 3 now records the training images' accuracy after
# every epoch (monitoring only; the labels never enter training). In one scratch run (seed 0, not
# committed) that accuracy was still rising when stage 3 stopped, so the `book` profile went to
# {glue:text}`je_long` joint epochs ({glue:text}`je_long_steps` steps), a number we took from the
# time the build had left, not from the accuracies below. That left too little room: the CI
# machine runs some builds much slower than others, and one clean-clone CI build of this chapter
# took longer than its six minutes. The profile then ran {glue:text}`je_new` joint epochs
# ({glue:text}`je_new_steps` steps), and each FixMatch step's views are drawn on a background
# thread while the previous step trains (`reprolib.training.prefetched`: the same generator in the
# same order, so the same numbers; `benchmarks/bench_prefetch.py` times an epoch both ways).
# To see what each length buys beyond one seed, three seeds at each of {glue:text}`je_old`,
# {glue:text}`je_new` and {glue:text}`je_long` joint epochs (`joint_epochs`, `seed`; the three
# stages each) are committed under `results/05_spice/joint-epochs-book/` with their `COMMAND`.

# %%
def stage_times(run_: dict) -> dict:
    """A committed run's wall time of each stage in seconds (its benchmark rows), by stage name."""
    return {r["method"].removesuffix(" wall time"): r["value"] for r in run_["rows"]
            if r["experiment"] == "benchmark" and r["method"].endswith(" wall time")}


def joint_epochs_point(run_: dict) -> dict:
    """One committed run of the joint-epochs comparison: its stage-3 length, seed, accuracies and minutes."""
    numbers_ = key_numbers(run_)
    stage3_seconds_ = stage_times(run_).get("stage 3", np.nan)
    return {"joint epochs": run_["parameters"]["joint_epochs"], "seed": run_["parameters"]["seed"],
            "k-means (train)": numbers_.get("k-means (stage-1 features) (train)", np.nan),
            "SPICE-Self (train)": numbers_.get("SPICE-Self (train)", np.nan),
            "SPICE (train)": numbers_.get("SPICE (train)", np.nan),
            "SPICE (held-out)": numbers_.get("SPICE (held-out)", np.nan),
            "minutes": run_["wall_clock_seconds"] / 60, "stage 3 s/epoch": stage3_seconds_ / run_["parameters"]["joint_epochs"]}


def joint_accuracy_curve(run_: dict) -> list[float]:
    """A run's training-image ACC from the starting head (epoch 0) through each joint epoch (stage 3's monitoring rows)."""
    rows_ = [r for r in run_["rows"] if r["experiment"] == "stage3" and r["metric"] == "acc"]
    start_ = [r["value"] for r in rows_ if r["setting"].startswith("before joint training")]
    epochs_ = sorted((r for r in rows_ if r["setting"].startswith("epoch ")), key=lambda r: int(r["setting"].split()[1]))
    return start_[:1] + [r["value"] for r in epochs_] if start_ and epochs_ else []


je_runs = [results.load(path) for path in
           sorted((Path("..") / "results" / "05_spice" / "joint-epochs-book").glob("*/results.json"))]
je_table = pd.DataFrame([joint_epochs_point(run_) for run_ in je_runs],
                        columns=["joint epochs", "seed", "k-means (train)", "SPICE-Self (train)", "SPICE (train)",
                                 "SPICE (held-out)", "minutes", "stage 3 s/epoch"])
je_lengths = sorted(int(e_) for e_ in je_table["joint epochs"].unique())
# the shortest length (the profile's first), the one the float32 profile ended with, and a longer one it ran before
je_old = report.glue("je_old", je_lengths[0] if len(je_lengths) > 1 else 0)
je_new = report.glue("je_new", je_lengths[1] if len(je_lengths) > 2 else 0)
je_long = report.glue("je_long", je_lengths[-1] if je_lengths and je_lengths[-1] > je_new > 0 else 0)
mnist5k_train = len(data.stratified_split(np.zeros(data.DATASETS["mnist5k"].n_images), held_out_fraction, seed=0)[0])
steps_per_joint_epoch = report.glue("joint_steps_per_epoch",
                                    joint_steps_per_epoch(mnist5k_train, BUDGETS["book"]["labelled_batch"]))
report.glue("je_old_steps", je_old * steps_per_joint_epoch)
report.glue("je_new_steps", je_new * steps_per_joint_epoch)
report.glue("je_long_steps", je_long * steps_per_joint_epoch)
report.glue("book_joint_steps", BUDGETS["book"]["joint_epochs"] * steps_per_joint_epoch)
je_means = je_table.drop(columns="seed").groupby("joint epochs").mean()
for which_, epochs_ in (("old", je_old), ("new", je_new), ("long", je_long)):
    report.glue(f"je_mean_{which_}", float(je_means["SPICE (train)"].get(epochs_, np.nan)))
    report.glue(f"je_minutes_{which_}", float(je_means["minutes"].get(epochs_, np.nan)))
    report.glue(f"je_epoch_seconds_{which_}", float(je_means["stage 3 s/epoch"].get(epochs_, np.nan)))
thread_gain_ = 1 - je_means["stage 3 s/epoch"].get(je_new, np.nan) / je_means["stage 3 s/epoch"].get(je_long, np.nan)
report.glue("je_thread_words", "no gain shows in these runs" if thread_gain_ <= 0 else
            f"an epoch took {thread_gain_:.0%} less in these runs" if thread_gain_ > 0 else "(no runs to compare)")
for which_, epochs_ in (("new", je_new), ("long", je_long)):
    spice_ = je_table.loc[je_table["joint epochs"] == epochs_, "SPICE (train)"]
    report.glue(f"je_min_{which_}", float(spice_.min()) if len(spice_) else np.nan)
    report.glue(f"je_max_{which_}", float(spice_.max()) if len(spice_) else np.nan)
    report.glue(f"je_at_target_{which_}", f"{int((spice_ >= TARGETS['book']).sum())} of {len(spice_)}")
paired_ = je_table.pivot(index="seed", columns="joint epochs", values="SPICE (train)").dropna()


def paired_gains(shorter: int, longer: int) -> pd.Series:
    """Per seed, SPICE (train) with `longer` joint epochs minus with `shorter` (empty where not committed)."""
    return (paired_[longer] - paired_[shorter]) if shorter and longer and len(paired_) else pd.Series(dtype=float)


je_gains, je_long_gains = paired_gains(je_old, je_new), paired_gains(je_new, je_long)
report.glue("je_gain_min", float(je_gains.min()) if len(je_gains) else np.nan)
report.glue("je_gain_max", float(je_gains.max()) if len(je_gains) else np.nan)
report.glue("je_long_gain_min", float(je_long_gains.min()) if len(je_long_gains) else np.nan)
report.glue("je_long_gain_max", float(je_long_gains.max()) if len(je_long_gains) else np.nan)
report.glue("je_long_verdict", "(no longer runs are committed here)" if not len(je_long_gains) else
            "every seed gains" if (je_long_gains > 0).all() else "no seed gains" if (je_long_gains <= 0).all() else
            f"{int((je_long_gains > 0).sum())} of {len(je_long_gains)} seeds gain")
report.glue("je_verdict", "no such runs are committed in this checkout" if not len(je_gains) else
            "every seed gains" if (je_gains > 0).all() else
            f"{int((je_gains > 0).sum())} of {len(je_gains)} seeds gain")
spreads_ = je_table.groupby("joint epochs")["SPICE (train)"].agg(lambda v: v.max() - v.min())
report.glue("je_spread_old", float(spreads_.get(je_old, np.nan)))
report.glue("je_spread_new", float(spreads_.get(je_new, np.nan)))
report.glue("je_spread_words", "does not narrow" if spreads_.get(je_new, np.nan) >= spreads_.get(je_old, np.nan)
            else "narrows" if len(spreads_) > 1 else "(not committed here) cannot show whether it narrows")
curves_ = [joint_accuracy_curve(run_) for run_ in je_runs]
dips_ = [c_[1] < c_[0] for c_ in curves_ if len(c_) > 1]
report.glue("je_dip_words", "in every run" if dips_ and all(dips_) else
            f"in {sum(dips_)} of {len(dips_)} runs" if dips_ else "(no committed runs)")
self_gap_ = je_table.loc[je_table["joint epochs"] == je_new].set_index("seed")
report.glue("je_self_words", "" if not len(self_gap_) else
            "SPICE ends below SPICE-Self in at least one seed" if (self_gap_["SPICE (train)"] < self_gap_["SPICE-Self (train)"]).any()
            else "SPICE ends above SPICE-Self in every seed")
if len(je_runs):
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for run_ in je_runs:
        curve_ = joint_accuracy_curve(run_)
        p_ = run_["parameters"]
        if curve_:
            ax.plot(range(len(curve_)), curve_, marker="o", ms=3, color=f"C{p_['seed']}",
                    ls={je_new: "-", je_long: "--"}.get(p_["joint_epochs"], ":"),
                    label=f"seed {p_['seed']}, {p_['joint_epochs']} epochs")
    ax.axhline(TARGETS["book"], color="grey", ls="--", lw=1, label="book target")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set(xlabel="joint epoch (0: the fitted head)", ylabel="ACC, training images",
           title="stage 3 at the book profile, three seeds")
    ax.legend(fontsize=7, ncol=3)
    plotting.save_figure(fig, out, "joint_epochs_book")
    plt.show()
je_table.sort_values(["joint epochs", "seed"]).round(4)

# %% [markdown]
# Averaged over the three seeds, SPICE on the training images goes from
# {glue:text}`je_mean_old:.3f` with {glue:text}`je_old` joint epochs to {glue:text}`je_mean_new:.3f`
# with {glue:text}`je_new` (from {glue:text}`je_minutes_old:.1f` to {glue:text}`je_minutes_new:.1f`
# minutes a run): {glue:text}`je_verdict`, by {glue:text}`je_gain_min:+.3f` to
# {glue:text}`je_gain_max:+.3f`. With {glue:text}`je_new` epochs the seeds end between
# {glue:text}`je_min_new:.3f` and {glue:text}`je_max_new:.3f`, and {glue:text}`je_at_target_new` reach
# the `book` target of {glue:text}`book_target`; {glue:text}`je_self_words`. The first joint epoch
# takes the accuracy below the fitted head's {glue:text}`je_dip_words` (the figure's epoch 1), while
# Eq. (9) starts moving the feature model, and the later epochs climb back. The longer stage 3
# {glue:text}`je_spread_words` the spread between seeds (from {glue:text}`je_spread_old:.3f` to
# {glue:text}`je_spread_new:.3f`), which stages 1 and 2 make (the seeds section above): the
# seeds share the `book` profile's time, not its outcome, and one seed reaching the target says
# little about the next. The profile's earlier {glue:text}`je_long` epochs, against its
# {glue:text}`je_new` at the same seeds: {glue:text}`je_long_verdict`, by
# {glue:text}`je_long_gain_min:+.3f` to {glue:text}`je_long_gain_max:+.3f` (mean
# {glue:text}`je_mean_long:.3f`, {glue:text}`je_at_target_long` at the target). Stage 3 took
# {glue:text}`je_epoch_seconds_new:.1f` s an epoch in the {glue:text}`je_new`-epoch runs, with the
# background thread, and {glue:text}`je_epoch_seconds_long:.1f` s in the {glue:text}`je_long`-epoch
# ones, without it: {glue:text}`je_thread_words`. On two cores that the training step already keeps
# busy there is little to overlap, and these runs come from different sessions of a shared machine
# whose speed varies (the benchmark times both ways in one run); the thread is for machines where
# the training step runs on a GPU and the views are the CPU's only work. The shorter stage 3 is what
# brought the chapter back within its budget, in float32; the next section says what the profile
# runs now. All these runs computed in float32.

# %% [markdown]
# ### bfloat16, and what the time it saves buys
#
# The chapter's CNN now computes in bfloat16 where the machine has native bfloat16 instructions
# (`precision`; the data section says what stays in float32). {glue:text}`pr_bench_words`
# Three committed runs per setting (seeds 0, 1 and 2, the
# three stages each, `results/05_spice/precision-book/` with its `COMMAND`) show what the change
# does to the accuracy and what the time it frees buys:
#
# * the float32 profile ({glue:text}`pr_fp32_moco` MoCo epochs, {glue:text}`pr_fp32_joint` joint
#   epochs: the {glue:text}`je_new`-epoch runs of the comparison above);
# * the same stage lengths in bfloat16;
# * the profile that followed where bfloat16 is native: {glue:text}`prev_bf16_moco` MoCo epochs and
#   {glue:text}`prev_bf16_joint` joint epochs (the next section moves most of its stage 3 to stage 1). We chose these lengths from the time bfloat16
#   freed, before any run of them was scored: stage 1, which the paper runs a thousand epochs and
#   the reference runs below show to matter most, gets most of it;
# * float32 at those lengths, run later on a two-core Zen 3 machine without AVX-512 (no bfloat16
#   there), to separate the arithmetic from the lengths.

# %%
PRECISION_RUNS = Path("..") / "results" / "05_spice" / "precision-book"
BENCH_FILE = PRECISION_RUNS / "bf16-benchmark.json"   # benchmarks/bench_bf16.py --json, on the machine of the runs
BENCH_BF16 = json.loads(BENCH_FILE.read_text()) if BENCH_FILE.exists() else None


def precision_point(run_: dict) -> dict:
    """One committed `book` run: its arithmetic (float32 before the parameter existed), stage lengths,
    seed, accuracies and stage times."""
    p_, numbers_ = run_["parameters"], key_numbers(run_)
    seconds_ = stage_times(run_)
    return {"precision": p_.get("precision_used", "fp32"), "MoCo epochs": p_["moco_epochs"],
            "joint epochs": p_["joint_epochs"], "seed": p_["seed"],
            "k-means (train)": numbers_.get("k-means (stage-1 features) (train)", np.nan),
            "SPICE-Self (train)": numbers_.get("SPICE-Self (train)", np.nan),
            "SPICE (train)": numbers_.get("SPICE (train)", np.nan),
            "SPICE (held-out)": numbers_.get("SPICE (held-out)", np.nan),
            "stage 1 s/epoch": seconds_.get("stage 1", np.nan) / p_["moco_epochs"],
            "stage 3 s/epoch": seconds_.get("stage 3", np.nan) / p_["joint_epochs"],
            "minutes": run_["wall_clock_seconds"] / 60}


precision_table = pd.DataFrame(
    [precision_point(run_) for run_ in je_runs if run_["parameters"]["joint_epochs"] == je_new]
    + [precision_point(results.load(path)) for path in sorted(PRECISION_RUNS.glob("*/results.json"))],
    columns=["precision", "MoCo epochs", "joint epochs", "seed", "k-means (train)", "SPICE-Self (train)",
             "SPICE (train)", "SPICE (held-out)", "stage 1 s/epoch", "stage 3 s/epoch", "minutes"])
SETTING = ["precision", "MoCo epochs", "joint epochs"]
precision_table["setting"] = precision_table[SETTING].apply(tuple, axis=1) if len(precision_table) else None
fp32_rows = precision_table[precision_table.precision == "fp32"]
fp32_setting = (("fp32", int(fp32_rows["MoCo epochs"].iloc[0]), int(fp32_rows["joint epochs"].iloc[0]))
                if len(fp32_rows) else None)
settings_ = {"fp32": fp32_setting, "bf16": ("bf16", *fp32_setting[1:]) if fp32_setting else None,
             "book": ("bf16", PREVIOUS_BF16["moco_epochs"], PREVIOUS_BF16["joint_epochs"]),
             "fp32long": ("fp32", PREVIOUS_BF16["moco_epochs"], PREVIOUS_BF16["joint_epochs"])}
report.glue("pr_fp32_moco", fp32_setting[1] if fp32_setting else 0)
report.glue("pr_fp32_joint", fp32_setting[2] if fp32_setting else 0)
report.glue("pr_bench_words",
            f"On a 2-core AMD machine with AVX512-BF16, `benchmarks/bench_bf16.py` timed a MoCo step "
            f"{BENCH_BF16['moco']['ratio']:.1f} times and a FixMatch step {BENCH_BF16['fixmatch']['ratio']:.1f} "
            "times as fast as in float32 (one run of it, both precisions alternating)." if BENCH_BF16 else
            "`benchmarks/bench_bf16.py` (in `make bench`) times a MoCo step and a FixMatch step in both "
            "precisions on the machine it runs on; no run of it is committed here, so the stage times of the "
            "runs below are this section's measure of the speed.")
by_setting_ = {key_: precision_table[precision_table.setting == setting_] if setting_ else precision_table.iloc[:0]
               for key_, setting_ in settings_.items()}
for key_, rows_ in by_setting_.items():   # NaN where a setting is not committed
    spice_ = rows_["SPICE (train)"]
    report.glue(f"pr_{key_}_mean", float(spice_.mean()) if len(rows_) else np.nan)
    report.glue(f"pr_{key_}_min", float(spice_.min()) if len(rows_) else np.nan)
    report.glue(f"pr_{key_}_max", float(spice_.max()) if len(rows_) else np.nan)
    report.glue(f"pr_{key_}_self", float(rows_["SPICE-Self (train)"].mean()) if len(rows_) else np.nan)
    report.glue(f"pr_{key_}_kmeans", float(rows_["k-means (train)"].mean()) if len(rows_) else np.nan)
    report.glue(f"pr_{key_}_minutes", float(rows_["minutes"].mean()) if len(rows_) else np.nan)
    report.glue(f"pr_{key_}_at_target", f"{int((spice_ >= TARGETS['book']).sum())} of {len(spice_)}")
for stage_ in ("stage 1", "stage 3"):
    ratio_ = (by_setting_["fp32"][f"{stage_} s/epoch"].mean() / by_setting_["bf16"][f"{stage_} s/epoch"].mean()
              if len(by_setting_["bf16"]) else np.nan)
    report.glue(f"pr_{stage_.replace(' ', '')}_ratio", float(ratio_))
paired_pr_ = precision_table.pivot(index="seed", columns="setting", values="SPICE (train)")


def setting_gains(before: str, after: str) -> pd.Series:
    """Per seed, SPICE (train) in setting `after` minus in `before` (empty where either is not committed)."""
    a_, b_ = settings_[after], settings_[before]
    if a_ not in paired_pr_.columns or b_ not in paired_pr_.columns:
        return pd.Series(dtype=float)
    return (paired_pr_[a_] - paired_pr_[b_]).dropna()


def gains_words(gains: pd.Series) -> str:
    return ("(not committed here)" if not len(gains) else "every seed gains" if (gains > 0).all() else
            "every seed loses" if (gains < 0).all() else f"{int((gains > 0).sum())} of {len(gains)} seeds gain")


for name_, (before_, after_) in {"arith": ("fp32", "bf16"), "longer": ("bf16", "book"), "total": ("fp32", "book"),
                                 "arithlong": ("book", "fp32long")}.items():
    gains_ = setting_gains(before_, after_)
    report.glue(f"pr_{name_}_words", gains_words(gains_))
    report.glue(f"pr_{name_}_gain_min", float(gains_.min()) if len(gains_) else np.nan)
    report.glue(f"pr_{name_}_gain_max", float(gains_.max()) if len(gains_) else np.nan)
spread_pr_ = {key_: float(rows_["SPICE (train)"].max() - rows_["SPICE (train)"].min()) if len(rows_) else np.nan
              for key_, rows_ in by_setting_.items()}
report.glue("pr_fp32_spread", spread_pr_["fp32"])
report.glue("pr_book_spread", spread_pr_["book"])
report.glue("pr_fp32long_spread", spread_pr_["fp32long"])
# the fastest run: other work shared the machine during some of them
report.glue("pr_fp32long_fastest", float(by_setting_["fp32long"]["minutes"].min()) if len(by_setting_["fp32long"]) else np.nan)
stage_diffs_ = {key_: float(by_setting_["fp32long"][column_].mean() - by_setting_["book"][column_].mean())
                for key_, column_ in (("kmeans", "k-means (train)"), ("self", "SPICE-Self (train)"),
                                      ("spice", "SPICE (train)"))}
for key_, value_ in stage_diffs_.items():
    report.glue(f"pr_diff_{key_}", value_)
arithlong_ = setting_gains("book", "fp32long")
report.glue("pr_arithlong_verdict",
            "(The float32 runs at these lengths are not committed here.)" if not len(arithlong_) else
            "So at these lengths the arithmetic, not the stage lengths, holds the bfloat16 profile back; "
            "most of the difference appears after stage 1. Which step of stages 2 and 3 loses accuracy to "
            "bfloat16's rounding we have not isolated: the features the heads are trained on, the heads' "
            "probabilities against the confidence threshold of 0.95 and the reliable labels' neighbours are "
            "all computed in it." if (arithlong_ > spread_pr_["book"]).all()
            and abs(stage_diffs_["kmeans"]) < min(stage_diffs_["self"], stage_diffs_["spice"]) else
            "So at these lengths float32 scores higher on every seed, by more than the spread between "
            "bfloat16 seeds." if (arithlong_ > spread_pr_["book"]).all() else
            f"On {int((arithlong_ <= spread_pr_['book']).sum())} of {len(arithlong_)} seeds the difference is not "
            "larger than the spread between the bfloat16 seeds, so three seeds do not show that the arithmetic, "
            "rather than the draw, holds the bfloat16 profile back.")
if len(precision_table):
    labels_pr_ = {setting_: f"{setting_[0]}\n{setting_[1]} MoCo + {setting_[2]} joint" for setting_ in settings_.values()
                  if setting_}
    order_pr_ = [setting_ for setting_ in labels_pr_ if setting_ in set(precision_table.setting)]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    x_of_ = {setting_: i_ for i_, setting_ in enumerate(order_pr_)}
    for seed_, rows_ in precision_table.groupby("seed"):
        rows_ = rows_.assign(x=rows_.setting.map(x_of_)).dropna(subset=["x"]).sort_values("x")
        ax.plot(rows_.x, rows_["SPICE (train)"], marker="o", color=f"C{seed_}", label=f"seed {seed_}: SPICE")
        ax.plot(rows_.x, rows_["SPICE-Self (train)"], marker="o", mfc="none", ls=":", color=f"C{seed_}",
                label=f"seed {seed_}: SPICE-Self")
    ax.axhline(TARGETS["book"], color="grey", ls="--", lw=1, label="book target")
    ax.set_xticks(range(len(order_pr_)), [labels_pr_[setting_] for setting_ in order_pr_])
    ax.set(ylabel="ACC, training images", title="book profile on mnist5k: arithmetic and stage lengths")
    ax.legend(fontsize=7, ncol=2)
    plotting.save_figure(fig, out, "precision_book")
    plt.show()
precision_table.drop(columns="setting").sort_values(SETTING + ["seed"]).round(4)

# %% [markdown]
# In bfloat16 at the float32 profile's stage lengths, stage 1 took {glue:text}`pr_stage1_ratio:.1f`
# times and stage 3 {glue:text}`pr_stage3_ratio:.1f` times less time an epoch than in float32
# (these runs come from different sessions of a shared machine; the benchmark's ratios are from one
# run). The arithmetic alone moved SPICE on the training images by {glue:text}`pr_arith_gain_min:+.3f`
# to {glue:text}`pr_arith_gain_max:+.3f` ({glue:text}`pr_arith_words`; mean
# {glue:text}`pr_fp32_mean:.3f` in float32, {glue:text}`pr_bf16_mean:.3f` in bfloat16): at this
# budget a change in rounding lands stage 2's heads elsewhere, as a new seed does (the seeds section
# above saw the same when the network moved to channels-last). The freed time, given to the
# longer stages, moved SPICE by {glue:text}`pr_longer_gain_min:+.3f` to
# {glue:text}`pr_longer_gain_max:+.3f` against bfloat16 at the old lengths
# ({glue:text}`pr_longer_words`), and by {glue:text}`pr_total_gain_min:+.3f` to
# {glue:text}`pr_total_gain_max:+.3f` against the float32 profile ({glue:text}`pr_total_words`).
# That profile gave SPICE {glue:text}`pr_book_mean:.3f` on average (from
# {glue:text}`pr_book_min:.3f` to {glue:text}`pr_book_max:.3f`; SPICE-Self {glue:text}`pr_book_self:.3f`,
# k-means on the stage-1 features {glue:text}`pr_book_kmeans:.3f`), against
# {glue:text}`pr_fp32_mean:.3f` (from {glue:text}`pr_fp32_min:.3f` to {glue:text}`pr_fp32_max:.3f`)
# for the float32 profile: the spread between seeds went from {glue:text}`pr_fp32_spread:.3f` to
# {glue:text}`pr_book_spread:.3f`. Seeds at the `book` target of {glue:text}`book_target`:
# {glue:text}`pr_book_at_target` with it, {glue:text}`pr_fp32_at_target` with the float32 profile, whose
# one seed there was the build's seed 0. A run took {glue:text}`pr_book_minutes:.1f` minutes
# against {glue:text}`pr_fp32_minutes:.1f`.
#
# **The arithmetic at the longer lengths.** Float32 at those bfloat16 lengths gives SPICE
# {glue:text}`pr_fp32long_mean:.3f` on average (from {glue:text}`pr_fp32long_min:.3f` to
# {glue:text}`pr_fp32long_max:.3f`; SPICE-Self {glue:text}`pr_fp32long_self:.3f`, k-means on the
# stage-1 features {glue:text}`pr_fp32long_kmeans:.3f`); seed by seed, float32 minus bfloat16 is
# {glue:text}`pr_arithlong_gain_min:+.3f` to {glue:text}`pr_arithlong_gain_max:+.3f`
# ({glue:text}`pr_arithlong_words`). On average the difference is {glue:text}`pr_diff_kmeans:+.3f`
# after stage 1 (k-means), {glue:text}`pr_diff_self:+.3f` after stage 2 (SPICE-Self) and
# {glue:text}`pr_diff_spice:+.3f` after stage 3. {glue:text}`pr_arithlong_verdict` Seeds at the
# target: {glue:text}`pr_fp32long_at_target` in float32 at these lengths. A float32 run of them took
# {glue:text}`pr_fp32long_fastest:.1f` minutes on that machine (the fastest of the three), more than twice the chapter's six,
# which is why the float32 `book` profile is shorter ({glue:text}`book_fp32_moco` MoCo and
# {glue:text}`book_fp32_joint` joint epochs).
#
# This build's stage 3 took {glue:text}`stage3_seconds:.0f` s.

# %% [markdown]
# ### The same minutes, given to stage 1
#
# In the bfloat16 runs at those lengths ({glue:text}`prev_bf16_moco` MoCo and
# {glue:text}`prev_bf16_joint` joint epochs), stage 3 takes {glue:text}`s1_stage3_share:.0%` of
# the three stages' time and lifts SPICE above the fitted head it starts from by
# {glue:text}`s1_lift_min:+.3f` to {glue:text}`s1_lift_max:+.3f`, while the reference runs below
# owe most of their accuracy to a longer stage 1. So we asked, before any run of it was scored,
# whether the same minutes do more in stage 1: {glue:text}`s1_moco` MoCo epochs and
# {glue:text}`s1_joint` joint epochs, chosen so that the three stages take about as long as before
# (an epoch of stage 3 took about twice as long as one of stage 1 in those runs), the same three
# seeds, the three stages each, committed under `results/05_spice/stage1-share-book/` with its
# `COMMAND`. These are the `book` profile's lengths now where bfloat16 is native: we adopted them
# once the three seeds were in (the float32 profile keeps its own, above).

# %%
STAGE1_SHARE_RUNS = Path("..") / "results" / "05_spice" / "stage1-share-book"


def stage_seconds(run_: dict) -> float:
    """The three stages' wall time of a committed run."""
    return sum(stage_times(run_).values())


def stage3_share(run_: dict) -> float:
    return stage_times(run_).get("stage 3", np.nan) / stage_seconds(run_)


def setting_of(run_: dict) -> tuple:
    """(precision, MoCo epochs, joint epochs) of a committed run."""
    return tuple(precision_point(run_)[key_] for key_ in SETTING)


def share_point(name_: str, run_: dict) -> dict:
    """One run of the comparison: its stage lengths, seed, the fitted head's and the stages' accuracies, time."""
    curve_ = joint_accuracy_curve(run_)
    return precision_point(run_) | {"run": name_, "fitted head (train)": curve_[0] if curve_ else np.nan,
                                    "stages, s": stage_seconds(run_)}


def committed_setting(folder: Path, setting_: tuple) -> list[dict]:
    """The committed runs in `folder` with this (precision, MoCo epochs, joint epochs)."""
    runs_ = [results.load(path) for path in sorted(folder.glob("*/results.json"))]
    return [run_ for run_ in runs_ if setting_of(run_) == setting_]


profile_runs_ = committed_setting(PRECISION_RUNS, settings_["book"])
share_runs_ = [results.load(path) for path in sorted(STAGE1_SHARE_RUNS.glob("*/results.json"))]
# the folder also holds a rerun of seed 0 at the earlier lengths, made beside the others to time both on one machine
rerun_ = next((run_ for run_ in share_runs_ if setting_of(run_) == settings_["book"]), None)
more_runs_ = [run_ for run_ in share_runs_ if run_ is not rerun_]
share_table = pd.DataFrame([share_point("profile", run_) for run_ in profile_runs_]
                           + [share_point("more stage 1", run_) for run_ in more_runs_],
                           columns=["run", "precision", "MoCo epochs", "joint epochs", "seed", "k-means (train)",
                                    "SPICE-Self (train)", "fitted head (train)", "SPICE (train)", "SPICE (held-out)",
                                    "stages, s"])
profile_share_ = share_table[share_table.run == "profile"]
more_share_ = share_table[share_table.run == "more stage 1"]
lifts_ = profile_share_["SPICE (train)"] - profile_share_["fitted head (train)"]
report.glue("s1_lift_min", float(lifts_.min()) if len(lifts_) else np.nan)
report.glue("s1_lift_max", float(lifts_.max()) if len(lifts_) else np.nan)
report.glue("s1_stage3_share", float(np.mean([stage3_share(run_) for run_ in profile_runs_])) if profile_runs_ else np.nan)
report.glue("s1_moco", int(more_share_["MoCo epochs"].iloc[0]) if len(more_share_) else 0)
report.glue("s1_joint", int(more_share_["joint epochs"].iloc[0]) if len(more_share_) else 0)
paired_share_ = share_table.pivot(index="seed", columns="run", values=["k-means (train)", "SPICE-Self (train)", "SPICE (train)",
                                                                       "stages, s"]).dropna()
share_gains_ = {}
for column_, key_ in (("k-means (train)", "kmeans"), ("SPICE-Self (train)", "self"), ("SPICE (train)", "spice")):
    gains_ = share_gains_[key_] = ((paired_share_[(column_, "more stage 1")] - paired_share_[(column_, "profile")])
                                   if len(paired_share_) else pd.Series(dtype=float))
    report.glue(f"s1_{key_}_words", gains_words(gains_))
    report.glue(f"s1_{key_}_gain_min", float(gains_.min()) if len(gains_) else np.nan)
    report.glue(f"s1_{key_}_gain_max", float(gains_.max()) if len(gains_) else np.nan)
    report.glue(f"s1_{key_}_mean", float(more_share_[column_].mean()) if len(more_share_) else np.nan)
spice_gains_ = share_gains_["spice"]
more_seed0_ = next((run_ for run_ in more_runs_ if run_["seed"] == 0), None)
report.glue("s1_time_ratio", stage_seconds(more_seed0_) / stage_seconds(rerun_) if rerun_ and more_seed0_ else np.nan)
committed_seed0_ = profile_share_[profile_share_.seed == 0]["SPICE (train)"]
rerun_spice_ = key_numbers(rerun_).get("SPICE (train)", np.nan) if rerun_ else np.nan
report.glue("s1_rerun_words",
            "(no rerun at the earlier lengths is committed here)" if rerun_ is None else
            f"it gave SPICE {rerun_spice_:.4f}, as the committed run of those lengths did" if len(committed_seed0_)
            and rerun_spice_ == float(committed_seed0_.iloc[0]) else
            f"it gave SPICE {rerun_spice_:.4f}, where the committed run of those lengths gave "
            f"{float(committed_seed0_.iloc[0]) if len(committed_seed0_) else np.nan:.4f}")
report.glue("s1_spice_min", float(more_share_["SPICE (train)"].min()) if len(more_share_) else np.nan)
report.glue("s1_spice_max", float(more_share_["SPICE (train)"].max()) if len(more_share_) else np.nan)
report.glue("s1_at_target", f"{int((more_share_['SPICE (train)'] >= TARGETS['book']).sum())} of {len(more_share_)}")
report.glue("s1_verdict",
            "(The runs are not committed here.)" if not len(spice_gains_) else
            f"Every seed gains by more than the spread between the seeds at the earlier lengths ({spread_pr_['book']:.3f})."
            if (spice_gains_ > spread_pr_["book"]).all() else
            f"On {int((spice_gains_.abs() <= spread_pr_['book']).sum())} of {len(spice_gains_)} seeds the change is no larger "
            f"than the spread between the seeds at the earlier lengths ({spread_pr_['book']:.3f}), so three seeds do not show that the "
            "time does more in stage 1." if (spice_gains_.abs() <= spread_pr_["book"]).any() else
            f"Every seed moves by more than the spread between the seeds at the earlier lengths ({spread_pr_['book']:.3f}), not all "
            "the same way.")
if len(share_table):
    stages_ = ["k-means (train)", "SPICE-Self (train)", "fitted head (train)", "SPICE (train)"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (run_name_, seed_), row_ in share_table.set_index(["run", "seed"]).iterrows():
        ax.plot(range(len(stages_)), row_[stages_].to_numpy(dtype=float), marker="o", color=f"C{seed_}",
                ls="-" if run_name_ == "more stage 1" else ":",
                label=f"seed {seed_}: {int(row_['MoCo epochs'])} MoCo + {int(row_['joint epochs'])} joint")
    ax.axhline(TARGETS["book"], color="grey", ls="--", lw=1, label="book target")
    ax.set_xticks(range(len(stages_)), ["k-means on\nstage-1 features", "SPICE-Self", "fitted head\n(stage 3 starts)",
                                        "SPICE"])
    ax.set(ylabel="ACC, training images", title="the same minutes in stage 3 (dotted) or stage 1 (solid)")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.28))
    plotting.save_figure(fig, out, "stage1_share_book")
    plt.show()
share_table.sort_values(["run", "seed"]).round(4)

# %% [markdown]
# With {glue:text}`s1_moco` MoCo and {glue:text}`s1_joint` joint epochs, k-means on the
# stage-1 features moves by {glue:text}`s1_kmeans_gain_min:+.3f` to
# {glue:text}`s1_kmeans_gain_max:+.3f` seed by seed ({glue:text}`s1_kmeans_words`), SPICE-Self by
# {glue:text}`s1_self_gain_min:+.3f` to {glue:text}`s1_self_gain_max:+.3f`
# ({glue:text}`s1_self_words`) and SPICE by {glue:text}`s1_spice_gain_min:+.3f` to
# {glue:text}`s1_spice_gain_max:+.3f` ({glue:text}`s1_spice_words`; mean
# {glue:text}`s1_spice_mean:.3f` against {glue:text}`pr_book_mean:.3f` at the earlier lengths; seeds at the
# target: {glue:text}`s1_at_target`; from {glue:text}`s1_spice_min:.3f` to
# {glue:text}`s1_spice_max:.3f`). {glue:text}`s1_verdict` The time stayed about the same: on the
# machine and in the session of these runs, seed 0's three stages took
# {glue:text}`s1_time_ratio:.2f` times as long as a rerun of seed 0 at the earlier lengths
# (committed beside them; {glue:text}`s1_rerun_words`). The committed runs at the earlier lengths
# come from another session, on a faster day: their minutes are not comparable with these.

# %% [markdown]
# ## Reference runs
#
# Runs committed under `results/05_spice/` (each with the `COMMAND` that made it), beside this
# build and the paper's CIFAR-10 numbers.

# %%
reference_dir = Path("..") / "results" / "05_spice"
references = {path.parent.name: results.load(path) for path in sorted(reference_dir.glob("*/results.json"))}
columns = {"paper (CIFAR-10)": {f"{m_} ({s_})": PAPER[t_]["cifar10"][m_][0] for t_, s_ in (("table2", "train"), ("table3", "held-out"))
                                for m_ in ("SPICE-Self", "SPICE")}}
for name_, reference_run in references.items():
    p_ = reference_run["parameters"]
    columns[f"reference: {name_} ({p_['backbone']}, {p_['moco_epochs']} + {p_['head_epochs']} + "
            f"{p_['joint_epochs']} epochs, {p_['joint_head']} head, {reference_run['wall_clock_seconds'] / 60:.0f} min, "
            f"{reference_run['device']}, {p_.get('precision_used', 'fp32')})"] = key_numbers(reference_run)
columns[f"this build ({profile}, {dataset})"] = key_numbers(record.to_dict())
print(f"{len(columns) - 2} committed reference runs")


def glue_reference(prefix: str, run_: dict | None) -> None:
    """Glue a committed run's numbers for the prose as `<prefix>_...` (NaN / 0 where the run is absent)."""
    numbers_ = key_numbers(run_) if run_ else {}
    rows_ = run_["rows"] if run_ else []
    reliable_ = {row["metric"]: row["value"] for row in rows_ if row["experiment"] == "reliable"}
    probe_ = linear_probes(run_) if run_ else {}
    for key_, column_ in (("kmeans_acc", "k-means (stage-1 features) (train)"), ("self_acc", "SPICE-Self (train)"),
                          ("spice_acc", "SPICE (train)"), ("spice_acc_test", "SPICE (held-out)")):
        report.glue(f"{prefix}_{key_}", float(numbers_.get(column_, float("nan"))))
    for key_ in ("moco_epochs", "head_epochs", "joint_epochs"):
        report.glue(f"{prefix}_{key_}", run_["parameters"][key_] if run_ else 0)
    report.glue(f"{prefix}_reliable_acc", float(reliable_.get("acc", float("nan"))))
    report.glue(f"{prefix}_reliable_size", int(reliable_.get("size", 0)))
    report.glue(f"{prefix}_empty_clusters", int(reliable_.get("empty_clusters", 0)))
    report.glue(f"{prefix}_linear_after", float(probe_.get("after", float("nan"))))


glue_reference("ref", references.get("paper-mnist5k"))
glue_reference("ref_long", references.get("paper-mnist5k-moco200"))  # the same with stage 1 doubled
glue_reference("ref_fashion", references.get("book-fashion-mnist"))   # our extension
glue_reference("ref_fitted", references.get("paper-mnist5k-moco200-fitted"))  # stage 3 from the fitted head
glue_reference("ref_400", references.get("paper-mnist5k-moco400-fitted"))  # and stage 1 doubled again


def glue_verdicts(prefix: str, run_: dict | None) -> None:
    """Glue, in words, what a committed run shows: reliable labels against SPICE-Self's, SPICE against SPICE-Self."""
    numbers_ = key_numbers(run_) if run_ else {}
    reliable_ = {row["metric"]: row["value"] for row in run_["rows"] if row["experiment"] == "reliable"} if run_ else {}
    self_, spice_ = numbers_.get("SPICE-Self (train)", np.nan), numbers_.get("SPICE (train)", np.nan)
    report.glue(f"{prefix}_reliable_words", "more accurate than" if reliable_.get("acc", np.nan) > self_ else
                "not more accurate than" if run_ else "(no committed run)")
    report.glue(f"{prefix}_spice_words", "a better classifier than SPICE-Self" if spice_ > self_ else
                "no better a classifier than SPICE-Self" if run_ else "(no committed run)")
    report.glue(f"{prefix}_spice_minus_self", float(spice_ - self_))


def glue_gains(prefix: str, before: dict | None, after: dict | None) -> None:
    """Glue what a longer stage 1 changes between two committed runs: each accuracy's gain and the largest."""
    columns_ = {"kmeans": "k-means (stage-1 features) (train)", "self": "SPICE-Self (train)", "spice": "SPICE (train)",
                "spice_test": "SPICE (held-out)"}
    words_ = {"kmeans": "k-means on the features", "self": "SPICE-Self", "spice": "SPICE",
              "spice_test": "SPICE on the held-out images"}
    gains_ = {key_: (key_numbers(after).get(column_, np.nan) - key_numbers(before).get(column_, np.nan)
                     if before and after else np.nan) for key_, column_ in columns_.items()}
    for key_, gain_ in gains_.items():
        report.glue(f"{prefix}_gain_{key_}", float(gain_))
    train_gains_ = {key_: gains_[key_] for key_ in ("kmeans", "self", "spice")}
    report.glue(f"{prefix}_largest_gain", words_[max(train_gains_, key=train_gains_.get)] if before and after
                else "(no committed pair of runs)")


glue_verdicts("ref", references.get("paper-mnist5k"))
glue_gains("ref_long", references.get("paper-mnist5k"), references.get("paper-mnist5k-moco200"))
glue_verdicts("ref_long", references.get("paper-mnist5k-moco200"))
glue_gains("ref_400", references.get("paper-mnist5k-moco200-fitted"), references.get("paper-mnist5k-moco400-fitted"))
pd.DataFrame(columns).round(4)

# %% [markdown]
# ## Targets
#
# Issue 10 sets, on `mnist5k`: SPICE at least 0.85 ACC at the `book` profile and 0.95 at the
# `paper` profile (on the CPU, the largest budget that fits, stated); the paper's ordering SPICE >
# SPICE-Self > k-means on the stage-1 features; on Fashion-MNIST, SPICE above every other
# chapter's unsupervised number; and the reliable-label step's benchmark.

# %%
targets = TARGETS
ref_400_ = references.get("paper-mnist5k-moco400-fitted")  # glued for the prose below
ref_400_spice_ = results.headline(ref_400_)["value"] if ref_400_ else np.nan
report.glue("ref_400_margin", float(ref_400_spice_ - targets["paper"]))
report.glue("ref_400_verdict", "meets" if ref_400_spice_ >= targets["paper"] else "does not meet")
verdicts = []
if dataset == "mnist5k" and profile in targets:
    verdicts.append((f"SPICE ACC >= {targets[profile]} ({profile}, this build, training images)",
                     f"{spice_scores['train']['acc']:.4f} (held-out {spice_scores['held-out']['acc']:.4f})",
                     spice_scores["train"]["acc"] >= targets[profile]))
for name_, reference_run in references.items():
    if reference_run["dataset"]["name"] == "mnist5k" and reference_run["profile"] in targets:
        value, held_out_ = results.headline(reference_run)["value"], key_numbers(reference_run).get("SPICE (held-out)")
        verdicts.append((f"SPICE ACC >= {targets[reference_run['profile']]} (reference {name_}, training images)",
                         f"{value:.4f}" + (f" (held-out {held_out_:.4f})" if held_out_ is not None else ""),
                         value >= targets[reference_run["profile"]]))
ordered = (spice_scores["train"]["acc"], self_scores["train"]["acc"], kmeans_scores["train"]["acc"])
verdicts.append(("SPICE > SPICE-Self > k-means on stage-1 features (this build, train images)",
                 " / ".join(f"{v:.4f}" for v in ordered), ordered[0] > ordered[1] > ordered[2]))
for name_, reference_run in references.items():
    numbers_ = key_numbers(reference_run)
    trio = [numbers_.get(k_) for k_ in ("SPICE (train)", "SPICE-Self (train)", "k-means (stage-1 features) (train)")]
    if None not in trio:
        verdicts.append((f"SPICE > SPICE-Self > k-means on stage-1 features (reference {name_}, train images)",
                         " / ".join(f"{v:.4f}" for v in trio), trio[0] > trio[1] > trio[2]))
# Fashion-MNIST: SPICE against the other chapters' unsupervised numbers (their committed runs, training images)
other_unsupervised = {}
kingdra_fashion = Path("..") / "results" / "04_kingdra" / "book-fashion-mnist" / "results.json"
if kingdra_fashion.exists():
    other_unsupervised["Kingdra-Ladder-IM (Chapter 4)"] = results.headline(results.load(kingdra_fashion))["value"]
dcae_fashion = Path("..") / "results" / "02_dcae" / "paper-fashion-mnist" / "results.json"
if dcae_fashion.exists():
    other_unsupervised.update({f"DCAE, {row['method']} (Chapter 2)": row["value"] for row in results.load(dcae_fashion)["rows"]
                               if row["experiment"] == "table4" and row["method"] in ("none", "unsupervised")
                               and row["metric"] == "acc" and row["setting"].endswith(", train")})
spice_fashion = [(f"reference {name_}", results.headline(reference_run)["value"])
                 for name_, reference_run in references.items() if reference_run["dataset"]["name"] == "fashion-mnist"]
if dataset == "fashion-mnist":
    spice_fashion.append(("this build", spice_scores["train"]["acc"]))
best_other = max(other_unsupervised.items(), key=lambda item: item[1]) if other_unsupervised else ("none committed", float("nan"))
report.glue("best_other_fashion_acc", best_other[1])
report.glue("best_other_fashion_name", best_other[0])
fashion_run_ = references.get("book-fashion-mnist")
fashion_numbers_ = key_numbers(fashion_run_) if fashion_run_ else {}
fashion_self_, fashion_kmeans_ = (fashion_numbers_.get(k_, np.nan) for k_ in
                                  ("SPICE-Self (train)", "k-means (stage-1 features) (train)"))
report.glue("ref_fashion_order_words",
            "SPICE-Self ends above k-means on the same features" if fashion_self_ > fashion_kmeans_ else
            "SPICE-Self ends below k-means on the same features, against the paper's ordering, and only stage 3 "
            "lifts SPICE above both" if fashion_self_ <= fashion_kmeans_ else "(no run committed)")
if other_unsupervised:
    for where, value in spice_fashion:
        verdicts.append((f"Fashion-MNIST: SPICE ({where}) above every other chapter's unsupervised number "
                         f"(best: {best_other[0]}, {best_other[1]:.3f})", f"{value:.4f}", value > best_other[1]))
    if not spice_fashion:
        verdicts.append((f"Fashion-MNIST: SPICE above every other chapter's unsupervised number (best: {best_other[0]}, "
                         f"{best_other[1]:.3f})", "no run yet", None))
verdicts.append((f"reliable_pseudo_labels at n = {budget.bench_n}: <= 20 s", f"{bench_figures['seconds']:.2f} s",
                 bench_figures["time_met"]))
verdicts.append((f"reliable_pseudo_labels at n = {budget.bench_n}: <= 2 GB extra", f"{bench_figures['extra_bytes'] / 1e9:.3f} GB",
                 bench_figures["memory_met"]))
verdicts.append(("reliable_pseudo_labels: same mask as brute force (small n)", "yes" if bench_figures["same"] else "no",
                 bench_figures["same"]))
targets_table = pd.DataFrame([{"target": t, "ours": v, "verdict": "NOT RUN" if ok is None else "MET" if ok else "MISSED"}
                              for t, v, ok in verdicts])
for stage_, seconds in (("stage 1", stage1_seconds), ("stage 2", stage2_seconds), ("stage 3", stage3_seconds)):
    record.add("benchmark", f"{stage_} wall time", dataset, profile, "seconds", seconds)
with pd.option_context("display.max_colwidth", None):
    display(targets_table)
report.glue("moco_epochs_run", budget.moco_epochs)
report.glue("head_epochs_run", budget.head_epochs)
report.glue("joint_epochs_run", budget.joint_epochs)
_ = report.glue("joint_steps_run", budget.joint_epochs * joint_steps_per_epoch(n, budget.labelled_batch))

# %% [markdown]
# **What we found.** After {glue:text}`moco_epochs_run` MoCo epochs the k-NN accuracy of the
# features on held-out images is {glue:text}`knn_before:.3f`, and k-means on the features scores
# {glue:text}`kmeans_acc_test:.3f` on the same images ({glue:text}`kmeans_acc:.3f` on the training
# images): the difference, {glue:text}`knn_minus_kmeans:+.3f`, is how much of what the
# neighbourhoods know about the classes does not show as $K$ round clusters. The heads,
# trained on prototype pseudo-labels alone, reach {glue:text}`self_acc_train:.3f` (selected by the
# label-free loss; the best head by accuracy {glue:text}`best_head_acc:.3f`). Eq. (7) keeps
# {glue:text}`reliable_size` images ({glue:text}`reliable_share:.1%`) whose pseudo-labels are
# {glue:text}`reliable_acc:.3f` accurate, and joint training on them gives SPICE
# {glue:text}`spice_acc_train:.3f` on the training images and {glue:text}`spice_acc_test:.3f` on
# held-out ones. The linear probe moves from {glue:text}`linear_before:.3f` to
# {glue:text}`linear_after:.3f`. In the setting of Fig. A.1 (the pseudo-label's cluster at
# {glue:text}`fig_a1_p_label:.2f`, a wrong one at {glue:text}`fig_a1_p_false:.2f`), the double
# softmax keeps a share {glue:text}`ratio_false_high:.3f` of the single softmax's gradient on the
# wrong high probability and {glue:text}`ratio_smallest:.3f` on the smallest one
# ({glue:text}`fig_a1_p_smallest:.2f`): it slows all learning, and the push-down of small
# probabilities most, as Appendix A says. The pseudo-label's own ratio goes from
# {glue:text}`ratio_low:.3f` when the head gives it {glue:text}`ratio_p_low:.2f` to
# {glue:text}`ratio_high:.3f` at {glue:text}`ratio_p_high:.2f`.
#
# The committed reference run (the `paper` profile's heads, views and FixMatch batch on the CPU
# network, {glue:text}`ref_moco_epochs` MoCo epochs; its budget is in the reference table) gives
# k-means {glue:text}`ref_kmeans_acc:.3f`, SPICE-Self {glue:text}`ref_self_acc:.3f` and SPICE
# {glue:text}`ref_spice_acc:.3f` ({glue:text}`ref_spice_acc_test:.3f` on held-out images). Its
# reliable set holds {glue:text}`ref_reliable_size` images, {glue:text}`ref_empty_clusters`
# clusters without any, and their pseudo-labels are {glue:text}`ref_reliable_acc:.3f` accurate:
# in the paper Eq. (7) picks out labels more accurate than SPICE-Self's on all images (95.9% against
# 83.8% on CIFAR-10, Fig. 7); here they are {glue:text}`ref_reliable_words` SPICE-Self's
# {glue:text}`ref_self_acc:.3f`, and stage 3 turns them into {glue:text}`ref_spice_words`
# ({glue:text}`ref_spice_minus_self:+.3f`). The same run
# with stage 1 doubled to {glue:text}`ref_long_moco_epochs` MoCo epochs (reference
# `paper-mnist5k-moco200`, everything else unchanged) gives k-means {glue:text}`ref_long_kmeans_acc:.3f`,
# SPICE-Self {glue:text}`ref_long_self_acc:.3f` and SPICE {glue:text}`ref_long_spice_acc:.3f`
# ({glue:text}`ref_long_spice_acc_test:.3f` held-out), with a reliable set of
# {glue:text}`ref_long_reliable_size` images, {glue:text}`ref_long_reliable_acc:.3f` accurate.
# Against the shorter run, k-means on the training images changes by
# {glue:text}`ref_long_gain_kmeans:+.3f`, SPICE-Self by {glue:text}`ref_long_gain_self:+.3f`, SPICE
# by {glue:text}`ref_long_gain_spice:+.3f` and SPICE on the held-out images by
# {glue:text}`ref_long_gain_spice_test:+.3f` (most: {glue:text}`ref_long_largest_gain`), and SPICE
# ends {glue:text}`ref_long_spice_minus_self:+.3f` from SPICE-Self; the targets table says whether
# it reaches the 0.95 target. Those two runs started stage 3 from an untrained head (`joint_head = "fresh"`, the
# default when they were made). The 200-epoch run again with the fitted head, everything else the
# same (reference `paper-mnist5k-moco200-fitted`), gives SPICE {glue:text}`ref_fitted_spice_acc:.4f`
# ({glue:text}`ref_fitted_spice_acc_test:.3f` held-out) from SPICE-Self
# {glue:text}`ref_fitted_self_acc:.4f`, and its feature model's linear probe after joint training
# reaches {glue:text}`ref_fitted_linear_after:.3f`. Stage 1 doubled again, to
# {glue:text}`ref_400_moco_epochs` MoCo epochs with the fitted head (reference
# `paper-mnist5k-moco400-fitted`, everything else the same), gives k-means
# {glue:text}`ref_400_kmeans_acc:.3f`, SPICE-Self {glue:text}`ref_400_self_acc:.4f` and SPICE
# {glue:text}`ref_400_spice_acc:.4f` ({glue:text}`ref_400_spice_acc_test:.3f` held-out), from a
# reliable set of {glue:text}`ref_400_reliable_size` images, {glue:text}`ref_400_reliable_acc:.3f`
# accurate; its linear probe after joint training reaches {glue:text}`ref_400_linear_after:.3f`.
# This run {glue:text}`ref_400_verdict` the `paper` profile's 0.95 target (by
# {glue:text}`ref_400_margin:+.4f`), with one seed: at the `book` profile the seeds alone moved
# SPICE by up to {glue:text}`batch_spread_max:.2f` (the seeds section above), so we do not claim that
# another seed would land on the same side of 0.95. Of the three accuracies on the training images
# the longer stage 1 moves {glue:text}`ref_400_largest_gain` most: k-means on the features goes
# from {glue:text}`ref_fitted_kmeans_acc:.3f` at {glue:text}`ref_fitted_moco_epochs` epochs to
# {glue:text}`ref_400_kmeans_acc:.3f`, SPICE-Self from {glue:text}`ref_fitted_self_acc:.4f` to
# {glue:text}`ref_400_self_acc:.4f` and SPICE from {glue:text}`ref_fitted_spice_acc:.4f` to
# {glue:text}`ref_400_spice_acc:.4f`. The `book` profile has far fewer epochs: compare this
# build's k-means, reliable set and SPICE above with these runs'. This build's stage 3 ran
# {glue:text}`joint_epochs_run` joint epochs ({glue:text}`joint_steps_run` FixMatch steps); the
# committed comparison of starting heads (after stage 3, with {glue:text}`jh_joint_epochs` joint
# epochs) gives SPICE {glue:text}`jh_fresh_spice:.3f` from an untrained head and
# {glue:text}`jh_fitted_spice:.3f` from the head fitted to the reliable set first, against
# SPICE-Self's {glue:text}`jh_self:.3f`. The printed numbers above show where this
# build stands. The paper puts SPICE within 2 points of a supervised network after a thousand MoCo
# epochs and a million FixMatch steps on a GPU; our reference runs had at most
# {glue:text}`ref_400_moco_epochs` MoCo epochs and {glue:text}`ref_joint_epochs` joint epochs on two
# CPU cores, and the targets table above says which targets they meet. Users of the official code
# report SPICE-Self at 65-70% on CIFAR-10 (not 84%) with a MoCo model they trained themselves:
# the feature model decides most of it.
#
# On the full Fashion-MNIST (our extension: the paper has no Fashion-MNIST column; the `book`
# profile's network and heads, {glue:text}`ref_fashion_moco_epochs` MoCo epochs over its
# training split, budget in the reference table) the committed run gives k-means
# {glue:text}`ref_fashion_kmeans_acc:.3f`, SPICE-Self {glue:text}`ref_fashion_self_acc:.3f` and
# SPICE {glue:text}`ref_fashion_spice_acc:.3f`; the best unsupervised number among the other
# chapters' committed Fashion-MNIST runs is {glue:text}`best_other_fashion_acc:.3f`
# ({glue:text}`best_other_fashion_name`). There {glue:text}`ref_fashion_order_words` (stage 2 had
# {glue:text}`ref_fashion_head_epochs` head epochs; its `COMMAND` gives the budget).

# %% [markdown]
# ## Differences from the paper
#
# * **Data and protocol.** `mnist5k` and Fashion-MNIST instead of the paper's six datasets (which
#   need downloads). One training run on a stratified 80% of the images, scored on those images
#   (Table II's transductive reading) and on the held-out 20% (Table III's), where the paper trains
#   twice (all images; train split). With `dataset=stl10` the chapter uses only STL10's 13,000
#   labelled images (what `reprolib.data` loads); the paper's MoCo also trained on its 100,000
#   unlabelled ones.
# * **Feature model.** On the CPU profiles a four-layer CNN, not ResNet-34, and
#   {glue:text}`book_moco_epochs` MoCo epochs at the `book` profile in bfloat16 and
#   {glue:text}`book_fp32_moco` in float32 (100 to 400 in the CPU reference runs), not a thousand; the queue is capped
#   at a quarter of the training images (see stage 1; on STL10's labelled images a few thousand
#   keys, where the official code keeps 65,536), the key
#   encoder's momentum is 0.99 (MoCo's CIFAR setting for short runs; 0.999 at the `paper` profile),
#   and batch normalisation is not shuffled across devices (one device). The `paper` profile uses
#   torchvision's ResNet-34 with the CIFAR stem (3x3 first convolution, no max-pooling).
# * **Augmentations.** torchvision's `RandAugment` (four operations, default magnitude) and
#   `RandomErasing` as Cutout, not SCAN's own operation list; no flips on digits. The MoCo view
#   has no grey-scale, blur or colour jitter beyond brightness and contrast (the images are
#   grey-scale and small); on handwritten digits it adds rotation, shear and stroke width, which
#   MoCo v2's list does not have (our choice: without them k-means on the features stayed far
#   lower). The MoCo and weak views are our own tensor operations on a whole batch at once (one
#   `roi_align` box per image for the crops and shifts), not torchvision's transforms, which draw
#   their randomness once per call and so would run image by image: at about a millisecond per
#   image on one core that is the cost `RandAugment`, the one torchvision transform used, still has.
# * **Precision.** Where the hardware has native bfloat16 (this build's machine does) the feature
#   model and the stage-3 network compute in bfloat16 mixed precision (`precision = "auto"`); the
#   paper does not say, and the official code trains in float32. The reference runs record the
#   precision they ran in (`precision_used`; runs made before it was a parameter ran in float32).
# * **View bank.** Stage 2 draws each sample's weak and strong views from `n_views` views made
#   once per image (the frozen feature model makes this exact for the features), where the official
#   code draws fresh views every time.
# * **Head selection.** The selection loss (Sec. III-B) runs the E-step and Eq. (5) on the original
#   training images, once, where Alg. 1 labels weak views and trains on strong ones: the loss that
#   ranks the heads has no augmentation noise in it.
# * **Heads.** Linear-ReLU-Linear (the paper's "D-D-K" MLP), Adam at 0.005, big batches of
#   `big_batch_size` (official 5,000), `num_repeat` passes per big batch (official 8), mini-batches
#   of 128; $N = B/K$ samples per prototype as in the official code.
# * **Joint training.** The stage-1 feature model and a new clustering head are trained
#   together (Fig. 3(c) draws the feature model and the head; the official code trains a new
#   WideResNet from the reliable labels with FixMatch). The new head is first fitted to the
#   reliable pseudo-labels on the frozen features (`joint_head = "fitted"`), a step neither the
#   paper nor the official code has; `fresh` starts it untrained and `selected` from stage 2's
#   selected head (stage 3 says why neither is the default, and compares the three). The
#   reference runs made before this default (their `joint_head` is in the reference table's
#   column names) started from an untrained head. No exponential moving average of the weights (FixMatch evaluates an EMA with decay
#   0.999, which a few hundred steps would leave near the initial weights); FixMatch's $2^{20}$
#   steps are {glue:text}`book_joint_steps` at the `book` profile in bfloat16 ({glue:text}`book_joint_epochs` joint
#   epochs on `mnist5k`; {glue:text}`book_fp32_joint` in float32). The official code's extra condition (largest probability above 0.99) is not
#   applied; Eq. (7) alone decides.
# * **Reliable set and labelled batches.** $\lambda_r$ is the official code's value where it has
#   one (0.99 on CIFAR-10, the value the paper states; 0.9 on STL10) and 0.9 on the other datasets,
#   not the paper's 0.99 everywhere; and labelled batches that draw each cluster equally often rather
#   than each reliable sample (the paper does not say; FixMatch's labelled sets are balanced by
#   construction). Our choice, from scratch trials at the `book` profile (one seed, not recorded
#   here): with 0.99 and uniform draws SPICE fell to less than half of SPICE-Self's accuracy, the
#   few reliable images of small clusters being almost never drawn; balanced draws recovered most
#   of the loss, and 0.9 with balanced draws the rest. At 0.9 a cluster can still have no reliable
#   image (see stage 3 and the seeds table).
# * **Ablations.** One trial per row (the paper: five), at `ablation_epochs` epochs with
#   `ablation_heads` heads (three at the `book` profile, against SPICE-Self's ten, to keep the
#   chapter within its six minutes; the head chosen by the lowest loss among fewer heads); Joint-SH and
#   Joint-MH with one M-step pass per big batch and a learning rate of 5e-4 for the feature model
#   (the paper gives neither); Joint-MH with `joint_mh_heads` heads (two at the `book` profile,
#   where each head's mini-batch passes through the feature model, so its time grows with the heads).
#   The `book` build shows these rows from a committed `book` run (`side_experiments`) instead of
#   training them itself, and says so above the table.
#
# ## What we could not reproduce, and why
#
# * **The paper's datasets** (STL10, CIFAR-10, CIFAR-100-20, ImageNet-10, ImageNet-Dog,
#   Tiny-ImageNet) are downloads; the chapter accepts `dataset=cifar10` and `dataset=stl10` (the
#   `paper` profile is meant for them, on Colab) but they were not run offline.
# * **Table IV** (five trials of MoCo + k-means, SCAN and SPICE on STL10) and **Table V** (the
#   semi-supervised methods) compare with other papers' methods on STL10 and CIFAR-10; k-means on the
#   stage-1 features is our one baseline, and the book's other chapters are the comparison.
# * **Fashion-MNIST at the `paper` profile.** The committed Fashion-MNIST run has the `book`
#   profile's network and {glue:text}`ref_fashion_moco_epochs` MoCo epochs, most of its time on two
#   CPU cores (the reference table gives it); ResNet-34 and a thousand epochs need a GPU. A GPU was
#   lent to this issue once, for 15 minutes shared by five chapters' runs: a ResNet-34 run on
#   `mnist5k` with 200 MoCo epochs started there and was stopped in stage 2.
# * **The `book` profile's 0.85 target where bfloat16 is not native.** The targets table gives
#   this build's verdict. Where bfloat16 is native, the profile's lengths
#   ({glue:text}`book_moco_epochs` MoCo and {glue:text}`book_joint_epochs` joint epochs) bring
#   {glue:text}`s1_at_target` seeds of the committed comparison to it (SPICE from
#   {glue:text}`s1_spice_min:.3f` to {glue:text}`s1_spice_max:.3f`), against
#   {glue:text}`pr_book_at_target` at the earlier {glue:text}`prev_bf16_moco` + {glue:text}`prev_bf16_joint`.
#   In float32 the six minutes hold {glue:text}`book_fp32_moco` MoCo and
#   {glue:text}`book_fp32_joint` joint epochs on a two-core machine without AVX-512, and a small CNN
#   after so few MoCo epochs gives features that k-means clusters far below the reference runs'
#   (see "What we found"); most of the spread between runs is already there in SPICE-Self. Float32
#   at the earlier bfloat16 lengths brought {glue:text}`pr_fp32long_at_target` seeds to the target
#   (SPICE from {glue:text}`pr_fp32long_min:.3f` to {glue:text}`pr_fp32long_max:.3f`), in
#   {glue:text}`pr_fp32long_fastest:.0f` minutes a run on such a machine.
# * **Fig. 5** (prototype images and attention maps) needs convolutional feature maps of the
#   paper's ResNet; not regenerated.
#
# All references are on the book's {doc}`../book/references` page.

# %%
record.write(output_dir)
print(f"wrote {Path(output_dir) / 'results.json'} with {len(record.rows)} rows")
