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
# # Evaluating a clustering
#
# A clustering has no class names, so its score depends on a protocol as much as on the clustering:
# which one-to-one map from clusters to classes is allowed, which normalisation of mutual
# information is used, and on which data the map is fitted. The five papers of this book do not
# agree on these choices: ClusterNet divides mutual information by the larger entropy, SPICE by the
# geometric mean, and Hsu and Kira's code by the arithmetic mean; Kingdra scores the very points it
# clustered, while ClusterNet holds 10% of the data out. This chapter derives the four metrics every
# later chapter reports (Hungarian accuracy, NMI under three normalisations, the adjusted Rand
# index and purity), checks each one against a hand computation and scikit-learn, and sets the
# k-means baselines on raw pixels and on PCA features that the deep models have to beat. It then
# shows how much the *same* clustering's score moves with the metric variant and with the
# evaluation protocol.

# %% tags=["remove-cell"]
import sys
if "google.colab" in sys.modules:  # on Colab: install reprolib (and its dependencies) from the repository
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprolib @ git+https://github.com/deep-clustering-reproduced/book@main"], check=True)

# %% [markdown]
# ## The metric map
#
# One row per metric: its definition (derived below), the `reprolib.metrics` function that
# computes it, and the papers that report it. $y$ are the true classes, $c$ the clusters,
# $n_{kj}$ the number of points of cluster $k$ and class $j$, $N$ the number of points.
#
# | metric | formula | reprolib | reported by |
# | --- | --- | --- | --- |
# | ACC | $\max_{m \text{ one-to-one}} \frac{1}{N}\sum_i \mathbb{1}[y_i = m(c_i)]$ | `cluster_acc`, `hungarian_mapping` | ClusterNet (10% held out), DCAE, Kingdra (transductive), SPICE; Hsu and Kira's successor code (map fitted on the training split, reused on the test split) |
# | NMI, max | $I(y; c) / \max(H(y), H(c))$ | `nmi(y, c, "max")` | ClusterNet, Eq. (18) |
# | NMI, geometric | $I(y; c) / \sqrt{H(y) H(c)}$ | `nmi(y, c, "geometric")` | SPICE; Strehl and Ghosh's definition, which Hsu and Kira cite; scikit-learn's default before 0.22 |
# | NMI, arithmetic | $I(y; c) / \tfrac{1}{2}(H(y) + H(c))$ | `nmi(y, c, "arithmetic")` | Hsu and Kira's successor code (scikit-learn's default since 0.22) |
# | ARI | pair counts agreeing, corrected for chance (below) | `ari` | SPICE |
# | purity | $\frac{1}{N}\sum_k \max_j n_{kj}$ | `purity` | Hsu and Kira |
#
# `metrics.evaluate(y, c)` returns all six numbers; every chapter reports all of them and marks
# the one its paper used.

# %% [markdown]
# ## Parameters
#
# `python -m reprolib run notebooks/00_evaluation.py --profile smoke|book|paper -p name=value`
# sets these; budgets left at `None` come from the profile.

# %% tags=["parameters"]
profile = "book"  # smoke | book | paper
dataset = "mnist5k"  # any dataset of reprolib.data.DATASETS that loads on this machine
seed = 0  # first random seed; the k-means runs use seed, seed + 1, ...
n_clusters = None  # None: the number of classes
n_samples = None  # None: the profile's value (a stratified subsample when the dataset is larger)
n_seeds = None  # None: the profile's value; k-means runs with different seeds, reported as mean +/- std
n_init = None  # None: the profile's value; k-means initialisations per run (scikit-learn's n_init)
n_components = None  # None: the profile's value; PCA features of the second baseline (no whitening)
output_dir = "runs/00_evaluation"  # results.json goes here (set by python -m reprolib run --out)

# %% [markdown]
# ## Validation and budgets
#
# `smoke` finishes in seconds, `book` in about a minute on two CPU cores, `paper` uses every point
# of the dataset and more restarts.

# %%
import inspect
import itertools
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.special import comb
from scipy.stats import entropy as scipy_entropy
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.model_selection import train_test_split

from reprolib import data, metrics, params, plotting, report, results

params.check({"profile": profile, "dataset": dataset, "seed": seed, "n_clusters": n_clusters,
              "n_samples": n_samples, "n_seeds": n_seeds, "n_init": n_init,
              "n_components": n_components})

BUDGETS = {
    "smoke": {"n_samples": 1000, "n_seeds": 2, "n_init": 1, "n_components": 10},
    "book": {"n_samples": 10000, "n_seeds": 5, "n_init": 10, "n_components": 50},
    "paper": {"n_samples": None, "n_seeds": 10, "n_init": 20, "n_components": 50},  # None: all points
}
budget = params.resolve(profile, BUDGETS, n_samples=n_samples, n_seeds=n_seeds, n_init=n_init,
                        n_components=n_components)
seeds = [seed + i for i in range(budget.n_seeds)]
plotting.use_style()
budget

# %% [markdown]
# ## Data
#
# The dataset comes from `reprolib.data` (see the Datasets page); a dataset larger than the
# profile's `n_samples` is subsampled with the class proportions kept. The record of this run
# carries the checksum of exactly the points used.

# %%
full = data.load(dataset)
if budget.n_samples is not None and budget.n_samples < len(full):
    keep, _ = train_test_split(np.arange(len(full)), train_size=budget.n_samples,
                               stratify=full.labels.numpy(), random_state=seed)
    ds = full.subset(np.sort(keep))
else:
    ds = full
del full
X = ds.flat()  # N x D pixels in [0, 1]
y = ds.labels.numpy()
K = n_clusters or ds.n_classes  # the number of clusters
class_names = ds.class_names

record = results.Recorder("00_evaluation", profile,
                          {"profile": profile, "dataset": dataset, "seed": seed, "n_clusters": n_clusters,
                           "n_samples": budget.n_samples, "n_seeds": budget.n_seeds,
                           "n_init": budget.n_init, "n_components": budget.n_components},
                          seed, ds)
pd.DataFrame({"dataset": [ds.name], "points": [len(ds)], "image shape": [ds.image_shape],
              "classes": [ds.n_classes], "clusters K": [K], "checksum": [ds.checksum[:23] + "..."],
              "source": [ds.source]})


# %%
def samples_per_class(labels, per_class, rng):
    """Indices of `per_class` random points of every class, class by class."""
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen.extend(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.array(chosen)


per_class = 8
shown = samples_per_class(y, per_class, np.random.default_rng(seed))
titles = [class_names[y[i]] if k % per_class == 0 else "" for k, i in enumerate(shown)]
fig = plotting.image_grid(ds.images[shown].numpy(), titles=titles, n_cols=per_class, size=0.9,
                          title=f"{ds.name}: {per_class} random images per class (one class per row)")
plt.show()

# %% [markdown]
# ## Accuracy under the best one-to-one map
#
# Cluster indices are arbitrary, so accuracy is taken under the best one-to-one map $m$ from
# clusters to classes:
#
# $$\mathrm{ACC}(y, c) = \max_{m \text{ one-to-one}} \frac{1}{N}\sum_{i=1}^{N} \mathbb{1}[y_i = m(c_i)]
#   = \max_{m} \frac{1}{N}\sum_{k} n_{k, m(k)},$$
#
# where $n_{kj}$ counts the points of cluster $k$ that belong to class $j$ (the contingency
# table). The right-hand side is a linear assignment problem on the $K \times J$ table: choose at
# most one entry per row and per column so that their sum is largest. Enumerating all maps costs
# $K!$; the Hungarian method {cite}`kuhn1955hungarian` solves it in $O(K^3)$. `reprolib` uses
# scipy's solver (`linear_sum_assignment(..., maximize=True)`). When there are more clusters than
# classes, the map leaves $K - J$ clusters unmatched and their points count as wrong. The map is a
# value of its own (`hungarian_mapping`), so it can be fitted on one split and reused on another
# (the held-out protocol below).

# %%
print(inspect.getsource(metrics.hungarian_mapping))
print(inspect.getsource(metrics.cluster_acc))

# %% [markdown]
# A small example: ten points of three classes in three clusters. The contingency table, the map
# the Hungarian method finds, and the accuracy it gives.

# %%
tiny_y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
tiny_c = np.array([2, 2, 2, 1, 0, 0, 0, 1, 1, 2])
print("map cluster -> class:", metrics.hungarian_mapping(tiny_y, tiny_c))
print("ACC:", metrics.cluster_acc(tiny_y, tiny_c))
pd.DataFrame(contingency_matrix(tiny_c, tiny_y), index=[f"cluster {k}" for k in range(3)],
             columns=[f"class {j}" for j in range(3)])


# %% [markdown]
# Checks: (1) relabelling the true classes by any permutation scores 1.0 on every metric;
# (2) on small random examples, brute force over every one-to-one map gives the same accuracy as
# the Hungarian method, with as many, fewer, or more clusters than classes; (3) with more clusters
# than classes an unmatched cluster counts as wrong, so accuracy drops below 1 although every
# cluster is pure: purity (many clusters may vote for one class) stays at 1.

# %% tags=["hide-input"]
def brute_force_acc(y_true, y_pred):
    """ACC by enumerating every one-to-one map between clusters and classes (tiny inputs only)."""
    classes, clusters = list(np.unique(y_true)), list(np.unique(y_pred))
    best = 0
    if len(clusters) >= len(classes):  # each class gets a distinct cluster
        for chosen in itertools.permutations(clusters, len(classes)):
            best = max(best, sum(np.sum((y_pred == k) & (y_true == j)) for k, j in zip(chosen, classes)))
    else:  # each cluster gets a distinct class
        for chosen in itertools.permutations(classes, len(clusters)):
            best = max(best, sum(np.sum((y_pred == k) & (y_true == j)) for k, j in zip(clusters, chosen)))
    return best / len(y_true)


permutation = np.random.default_rng(seed).permutation(ds.n_classes)
permuted_scores = metrics.evaluate(y, permutation[y])
assert all(np.isclose(value, 1.0) for value in permuted_scores.values()), permuted_scores

rng = np.random.default_rng(seed)
for n_pred_clusters in (2, 3, 4, 5):
    for _ in range(40):
        small_y, small_c = rng.integers(3, size=12), rng.integers(n_pred_clusters, size=12)
        assert np.isclose(brute_force_acc(small_y, small_c), metrics.cluster_acc(small_y, small_c))

over_y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
over_c = np.array([0, 0, 3, 3, 1, 1, 1, 2, 2, 2])  # class 0 split into clusters 0 and 3
over_acc, over_purity = metrics.cluster_acc(over_y, over_c), metrics.purity(over_y, over_c)
assert np.isclose(over_acc, brute_force_acc(over_y, over_c)) and np.isclose(over_acc, 0.8)
assert over_purity == 1.0 and over_purity > over_acc
report.glue("split_cluster_acc", float(over_acc))
report.glue("split_cluster_purity", float(over_purity))
print("permuted labels:", {k: round(v, 4) for k, v in permuted_scores.items()})
print(f"class 0 split in two clusters: ACC {over_acc:.2f}, purity {over_purity:.2f}")

# %% [markdown]
# Splitting one class into two pure clusters gives ACC {glue:text}`split_cluster_acc:.2f` but
# purity {glue:text}`split_cluster_purity:.2f`: the Hungarian map must leave one of the two
# clusters unmatched.
#
# ## Normalised mutual information, three ways
#
# With $p_j$ the fraction of points in class $j$, $p'_k$ in cluster $k$ and $p_{jk}$ in both,
#
# $$H(y) = -\sum_j p_j \log p_j, \qquad
#   I(y; c) = \sum_{j,k} p_{jk} \log \frac{p_{jk}}{p_j\, p'_k}.$$
#
# $0 \le I(y; c) \le \min(H(y), H(c))$, so dividing by any mean of the two entropies gives a
# number in $[0, 1]$. The papers divide by different means:
#
# $$\mathrm{NMI}_{\max} = \frac{I(y;c)}{\max(H(y), H(c))}, \qquad
#   \mathrm{NMI}_{\mathrm{geo}} = \frac{I(y;c)}{\sqrt{H(y)\,H(c)}}, \qquad
#   \mathrm{NMI}_{\mathrm{arith}} = \frac{2\, I(y;c)}{H(y) + H(c)}:$$
#
# the first is ClusterNet's Eq. (18), the second Strehl and Ghosh's definition
# {cite}`strehl2002cluster` and SPICE's, the third scikit-learn's default.
#
# **The ordering.** For $a, b \ge 0$, $\sqrt{ab} \le \frac{a+b}{2} \le \max(a, b)$ (the
# inequality of arithmetic and geometric means, and a mean of two numbers is at most the larger).
# Dividing the same $I \ge 0$ by a larger number gives a smaller result, hence
#
# $$\mathrm{NMI}_{\max} \le \mathrm{NMI}_{\mathrm{arith}} \le \mathrm{NMI}_{\mathrm{geo}},$$
#
# with equality exactly when $H(y) = H(c)$ (or $I = 0$). The variants therefore differ only as far as
# the entropies of classes and clusters differ: little for balanced classes and clusters of about
# equal size, a lot when a method makes many clusters or very unequal ones
# {cite}`vinh2010information`.
#
# `metrics.nmi` calls scikit-learn; `metrics.entropy` and `metrics.mutual_information` compute the
# two ingredients from the contingency table. The check below recomputes all three variants by
# hand on a deliberately unbalanced labelling: the true classes with 30% of the points moved to one
# of $K + 5$ clusters at random.

# %% tags=["hide-input"]
rng = np.random.default_rng(seed)
noisy = y.copy()
moved = rng.random(len(y)) < 0.3
noisy[moved] = rng.integers(K + 5, size=moved.sum())

H_y, H_c = metrics.entropy(y), metrics.entropy(noisy)
mi = metrics.mutual_information(y, noisy)
joint = contingency_matrix(y, noisy) / len(y)  # p_{jk}
p_class, p_cluster = joint.sum(1), joint.sum(0)
nz = joint > 0
mi_by_hand = float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(p_class, p_cluster)[nz])))
assert np.isclose(mi, mi_by_hand)
assert np.isclose(H_y, scipy_entropy(p_class)) and np.isclose(H_c, scipy_entropy(p_cluster))
by_hand = {"max": mi / max(H_y, H_c), "geometric": mi / np.sqrt(H_y * H_c),
           "arithmetic": mi / ((H_y + H_c) / 2), "min": mi / min(H_y, H_c)}
for average, value in by_hand.items():
    assert np.isclose(value, metrics.nmi(y, noisy, average))
    assert np.isclose(value, normalized_mutual_info_score(y, noisy, average_method=average))
assert by_hand["max"] <= by_hand["arithmetic"] <= by_hand["geometric"] <= by_hand["min"]
assert np.isclose(metrics.nmi(y, noisy), normalized_mutual_info_score(y, noisy))  # default: arithmetic
for name in ("max", "geometric", "arithmetic"):
    report.glue(f"noisy_nmi_{name}", float(by_hand[name]))
pd.DataFrame({"H(y)": [H_y], "H(c)": [H_c], "I(y;c)": [mi],
              **{f"NMI {name}": [value] for name, value in by_hand.items()}}).round(4)

# %% [markdown]
# On this labelling $\mathrm{NMI}_{\max}$ = {glue:text}`noisy_nmi_max:.4f`,
# $\mathrm{NMI}_{\mathrm{arith}}$ = {glue:text}`noisy_nmi_arithmetic:.4f` and
# $\mathrm{NMI}_{\mathrm{geo}}$ = {glue:text}`noisy_nmi_geometric:.4f`, in the order the inequality
# predicts, and each equals scikit-learn's `normalized_mutual_info_score` with that
# `average_method`.
#
# ## Adjusted Rand index
#
# The Rand index counts the pairs of points on which two labellings agree (together in both, or
# apart in both). Its expected value under random labellings with the same cluster sizes is not
# zero, so Hubert and Arabie {cite}`hubert1985ari` subtract it. With $a_j = \sum_k n_{jk}$ and
# $b_k = \sum_j n_{jk}$ the class and cluster sizes,
#
# $$\mathrm{ARI} = \frac{\sum_{jk} \binom{n_{jk}}{2} - E}{\tfrac{1}{2}\left[\sum_j \binom{a_j}{2} + \sum_k \binom{b_k}{2}\right] - E},
#   \qquad E = \frac{\sum_j \binom{a_j}{2} \sum_k \binom{b_k}{2}}{\binom{N}{2}}.$$
#
# It is 1 for identical partitions, about 0 for a random one, and can be negative.

# %%
def ari_by_hand(y_true, y_pred):
    """Hubert and Arabie's ARI from the contingency table, term by term."""
    table = contingency_matrix(y_true, y_pred)
    pairs_both = comb(table, 2).sum()  # sum_jk C(n_jk, 2)
    pairs_class, pairs_cluster = comb(table.sum(1), 2).sum(), comb(table.sum(0), 2).sum()
    expected = pairs_class * pairs_cluster / comb(table.sum(), 2)  # E
    return float((pairs_both - expected) / ((pairs_class + pairs_cluster) / 2 - expected))


assert np.isclose(ari_by_hand(y, noisy), metrics.ari(y, noisy))
assert np.isclose(metrics.ari(y, noisy), adjusted_rand_score(y, noisy))
assert np.isclose(ari_by_hand(tiny_y, tiny_c), adjusted_rand_score(tiny_y, tiny_c))
print(f"ARI of the noisy labelling: by hand {ari_by_hand(y, noisy):.6f}, "
      f"reprolib {metrics.ari(y, noisy):.6f}, scikit-learn {adjusted_rand_score(y, noisy):.6f}")

# %% [markdown]
# **Chance.** NMI is not corrected for chance: a labelling drawn at random, independent of the
# classes, has a small but positive mutual information with them in any finite sample, and with
# many clusters it grows large {cite}`vinh2010information`. ARI (and the adjusted mutual
# information, AMI, of Vinh et al., shown for comparison) stay near 0. This is why an NMI reached
# with more clusters than classes (Hsu and Kira's "unknown number of clusters" experiment) is not
# comparable with one reached at $K$ clusters.

# %%
cluster_counts = [k for k in (2, 5, 10, 20, 50, 100, 200, 500) if k <= len(y) // 2]
rng = np.random.default_rng(seed)
random_rows = []
for k in cluster_counts:
    guess = rng.integers(k, size=len(y))
    random_rows.append({"clusters": k, **{f"nmi_{a}": metrics.nmi(y, guess, a) for a in ("max", "geometric", "arithmetic")},
                        "ari": metrics.ari(y, guess), "ami": float(adjusted_mutual_info_score(y, guess)),
                        "acc": metrics.cluster_acc(y, guess), "purity": metrics.purity(y, guess)})
random_table = pd.DataFrame(random_rows).set_index("clusters")
for k, row in random_table.iterrows():
    for metric in ("nmi_max", "nmi_geometric", "nmi_arithmetic", "ari", "ami", "purity"):
        record.add("random_labelling", "uniform random labels", ds.name, f"{k} clusters", metric, row[metric])

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for metric, label in [("nmi_max", "NMI (max)"), ("nmi_geometric", "NMI (geometric)"),
                      ("nmi_arithmetic", "NMI (arithmetic)"), ("ari", "ARI"), ("ami", "AMI")]:
    ax.plot(random_table.index, random_table[metric], marker="o", label=label)
ax.set_xscale("log")
ax.set_xlabel("number of clusters of a uniformly random labelling")
ax.set_ylabel("score against the true classes")
ax.set_title(f"Random labellings of {ds.name} (N = {len(y)}): NMI grows with K, ARI and AMI stay at 0")
ax.legend()
plt.show()
random_table.round(4)

# %% tags=["hide-input"]
assert (random_table["ari"].abs() < 0.02).all()
assert (random_table["ami"].abs() < 0.02).all()
largest = random_table.index.max()
assert random_table.loc[largest, "nmi_arithmetic"] > 0.05
assert random_table.loc[largest, "nmi_arithmetic"] > random_table["nmi_arithmetic"].iloc[0]  # grows with K
report.glue("random_max_clusters", float(largest))
report.glue("random_nmi_geo_at_max", float(random_table.loc[largest, "nmi_geometric"]))
report.glue("random_ari_at_max", float(random_table.loc[largest, "ari"]));

# %% [markdown]
# With {glue:text}`random_max_clusters:.0f` random clusters, the geometric NMI is
# {glue:text}`random_nmi_geo_at_max:.3f` although the labelling knows nothing about the images;
# ARI is {glue:text}`random_ari_at_max:.1e`.
#
# ## Purity
#
# Every cluster votes for its majority class, and several clusters may vote for the same one:
#
# $$\mathrm{purity}(y, c) = \frac{1}{N}\sum_k \max_j n_{kj} \;\ge\; \frac{1}{N}\sum_k n_{k, m(k)} = \mathrm{ACC}(y, c)$$
#
# for any one-to-one map $m$ (including the best one), since each term on the right is at most the
# row maximum on the left. Purity is cheap to game: one cluster per point makes every cluster pure,
# so purity is 1 while the clustering says nothing. It is only comparable at equal $K$, which is how
# Hsu and Kira use it.

# %% tags=["hide-input"]
one_per_point = np.arange(len(y))
assert metrics.purity(y, one_per_point) == 1.0
assert metrics.cluster_acc(y, one_per_point) <= ds.n_classes / len(y) + 1e-12  # J matched points at most
assert (random_table["purity"] >= random_table["acc"] - 1e-12).all()
assert metrics.purity(y, noisy) >= metrics.cluster_acc(y, noisy)
print(f"one cluster per point: purity {metrics.purity(y, one_per_point):.3f}, "
      f"ACC {metrics.cluster_acc(y, one_per_point):.4f}, "
      f"NMI (arithmetic) {metrics.nmi(y, one_per_point):.3f}, ARI {metrics.ari(y, one_per_point):.4f}")

# %% [markdown]
# ## Baselines: k-means on pixels and on PCA features
#
# k-means (scikit-learn, k-means++ initialisation, the best of `n_init` initialisations by
# inertia, which needs no labels) with $K$ clusters, once on the raw pixels and once on the first
# principal components of the pixels (PCA fitted on the same points, no whitening). Each runs with
# `n_seeds` seeds; the table gives the mean and the standard deviation over seeds.

# %%
METRICS = ["acc", "nmi_max", "nmi_geometric", "nmi_arithmetic", "ari", "purity"]
RAW, PCA_METHOD = "k-means (raw pixels)", "k-means (PCA features)"
components_used = min(budget.n_components, X.shape[1], int(0.9 * len(X)) - 1)
seeds_text = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"


def kmeans_fit(features, n_clusters_, run_seed):
    """k-means with k-means++ initialisation and the profile's n_init restarts."""
    return KMeans(n_clusters=n_clusters_, n_init=budget.n_init, random_state=run_seed).fit(features)


def std_over_seeds(values):
    """Sample standard deviation over seeds (0 for a single seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


pca = PCA(n_components=components_used, whiten=False, random_state=seed).fit(X)
Z = pca.transform(X)
features = {RAW: X, PCA_METHOD: Z}
models, runs = {}, []
for method, feats in features.items():
    for run_seed in seeds:
        start = time.perf_counter()
        model = kmeans_fit(feats, K, run_seed)
        seconds = time.perf_counter() - start
        models[method, run_seed] = model
        runs.append({"method": method, "seed": run_seed, **metrics.evaluate(y, model.labels_), "seconds": seconds})
runs = pd.DataFrame(runs)
baselines = runs.groupby("method", sort=False)[METRICS + ["seconds"]].agg(["mean", std_over_seeds])
baselines = baselines.rename(columns={"std_over_seeds": "std"}, level=1)
print(f"PCA: {components_used} components keep {pca.explained_variance_ratio_.sum():.3f} of the pixel variance")
baselines.round(4)

# %%
settings = {RAW: f"{K} clusters, n_init={budget.n_init}, {seeds_text}, N={len(y)}",
            PCA_METHOD: f"{K} clusters, {components_used} PCA components, n_init={budget.n_init}, "
                        f"{seeds_text}, N={len(y)}"}
for method in features:
    for metric in METRICS:
        record.add("baselines", method, ds.name, "transductive, mean over seeds; " + settings[method],
                   metric, baselines.loc[method, (metric, "mean")])
        record.add("baselines", method, ds.name, "transductive, std over seeds; " + settings[method],
                   f"{metric}_std", baselines.loc[method, (metric, "std")])
for key, method in (("raw", RAW), ("pca", PCA_METHOD)):
    report.glue(f"kmeans_{key}_acc", float(baselines.loc[method, ("acc", "mean")]))
    report.glue(f"kmeans_{key}_acc_std", float(baselines.loc[method, ("acc", "std")]))
    report.glue(f"kmeans_{key}_seconds", float(baselines.loc[method, ("seconds", "mean")]))
report.glue("pca_variance_kept", float(pca.explained_variance_ratio_.sum()))
report.glue("n_seeds", float(len(seeds)));

# %% [markdown]
# Over {glue:text}`n_seeds:.0f` seeds, k-means on raw pixels reaches ACC
# {glue:text}`kmeans_raw_acc:.3f` ± {glue:text}`kmeans_raw_acc_std:.3f` and on PCA features
# {glue:text}`kmeans_pca_acc:.3f` ± {glue:text}`kmeans_pca_acc_std:.3f`; the principal components
# keep {glue:text}`pca_variance_kept:.2f` of the pixel variance and make one k-means run take
# {glue:text}`kmeans_pca_seconds:.2f` s instead of {glue:text}`kmeans_raw_seconds:.2f` s. For
# comparison, Kingdra's Table 2 quotes k-means on the full MNIST at 53.3% accuracy.
#
# ## The same clustering, six scores
#
# One clustering per row (the run with the first seed), scored six ways. A third row clusters the
# PCA features into $2K$ clusters: more clusters than classes is where the metric variants drift
# apart.

# %%
over_model = kmeans_fit(Z, 2 * K, seed)
same_clustering = {RAW: models[RAW, seed].labels_, PCA_METHOD: models[PCA_METHOD, seed].labels_,
                   f"k-means (PCA features), {2 * K} clusters": over_model.labels_}
six = pd.DataFrame({name: metrics.evaluate(y, labels) for name, labels in same_clustering.items()}).T[METRICS]
six["nmi_geometric - nmi_max"] = six["nmi_geometric"] - six["nmi_max"]
for name, row in six.iterrows():
    clusters = 2 * K if name.endswith("clusters") else K
    for metric in METRICS:
        record.add("metric_variants", name, ds.name, f"seed {seed}, {clusters} clusters, transductive",
                   metric, row[metric])
report.glue("nmi_spread_pca", float(six.loc[PCA_METHOD, "nmi_geometric - nmi_max"]))
report.glue("nmi_spread_over", float(six.iloc[2]["nmi_geometric - nmi_max"]))
report.glue("acc_vs_nmi_max_pca", float(six.loc[PCA_METHOD, "acc"] - six.loc[PCA_METHOD, "nmi_max"]))
six.round(4)

# %%
long = six[METRICS].reset_index(names="clustering").melt(id_vars="clustering", var_name="metric", value_name="score")
fig, ax = plt.subplots(figsize=(9, 3.8))
sns.barplot(data=long, x="metric", y="score", hue="clustering", ax=ax)
ax.set_ylim(0, 1)
ax.set_xlabel("metric")
ax.set_ylabel("score")
ax.set_title(f"The same clusterings of {ds.name}, scored six ways")
ax.legend(fontsize="small", loc="upper left")
plt.show()

# %% [markdown]
# With $K$ clusters on (nearly) balanced classes the entropies of classes and clusters are close,
# and the three NMI variants differ by only {glue:text}`nmi_spread_pca:.4f` (geometric minus max)
# for the PCA baseline: far less than the gap between ACC and NMI
# ({glue:text}`acc_vs_nmi_max_pca:.3f`), or between NMI and ARI. With $2K$ clusters the cluster
# entropy grows and the spread becomes {glue:text}`nmi_spread_over:.4f`. So the NMI variant matters
# little for comparing methods at $K$ clusters, but a table that mixes variants, or a method with
# unequal cluster sizes, can move by more than the differences papers report between methods.
#
# ## Transductive versus held-out evaluation
#
# Kingdra clusters a dataset and scores the same points (transductive). ClusterNet (Sec. 5.3)
# splits every dataset except MNIST 90/10 with stratified sampling and scores the unseen 10%. For the held-out score
# the cluster-to-class map matters: fitted on the training split and reused on the held-out split
# (what Hsu and Kira's code does), no held-out label is used before scoring; refitted on the
# held-out labels, the map itself is tuned on the test data and can only score higher. Per seed we
# draw a stratified split (`data.stratified_split`), fit PCA and k-means on the 90%, assign the
# held-out 10% to the nearest centre (`KMeans.predict`), and score:
#
# * (a) held-out ACC with the Hungarian map fitted on the training split (the honest protocol);
# * (b) held-out ACC with the map refitted on the held-out labels (optimistic);
# * (c) transductive ACC: fit and score on all points (the baseline above);
#
# and, for reference, the ACC of the training split itself.

# %%
PROTOCOLS = {
    "(a) held-out, map fitted on the training split": ("90%", "90% (training)", "10% held out"),
    "(b) held-out, map refitted on the held-out labels": ("90%", "10% (held out)", "10% held out"),
    "(c) transductive": ("100%", "100%", "100%"),
    "training split, its own map": ("90%", "90% (training)", "90% (training)"),
}


def heldout_run(run_seed):
    """ACC of one PCA + k-means run under the protocols (a), (b) and on its training split."""
    train, test = data.stratified_split(y, test_fraction=0.1, seed=run_seed)
    pca_train = PCA(n_components=components_used, whiten=False, random_state=run_seed).fit(X[train])
    model = kmeans_fit(pca_train.transform(X[train]), K, run_seed)
    clusters_train, clusters_test = model.labels_, model.predict(pca_train.transform(X[test]))
    train_map = metrics.hungarian_mapping(y[train], clusters_train)
    names = list(PROTOCOLS)
    return {names[0]: metrics.cluster_acc(y[test], clusters_test, mapping=train_map),
            names[1]: metrics.cluster_acc(y[test], clusters_test),
            names[3]: metrics.cluster_acc(y[train], clusters_train),
            "held-out NMI (arithmetic)": metrics.nmi(y[test], clusters_test),
            "held-out points": len(test)}


heldout_runs = pd.DataFrame([heldout_run(s) for s in seeds], index=seeds)
heldout_runs[list(PROTOCOLS)[2]] = runs.loc[runs["method"] == PCA_METHOD, "acc"].to_numpy()
assert (heldout_runs[list(PROTOCOLS)[1]] >= heldout_runs[list(PROTOCOLS)[0]] - 1e-12).all()
heldout = pd.DataFrame(
    [{"protocol": name, "k-means fitted on": fit, "map fitted on": mapped, "scored on": scored,
      "acc mean": heldout_runs[name].mean(), "acc std": std_over_seeds(heldout_runs[name])}
     for name, (fit, mapped, scored) in PROTOCOLS.items()]).set_index("protocol")
for name, row in heldout.iterrows():
    setting = f"{name}; {settings[PCA_METHOD]}"
    record.add("heldout", PCA_METHOD, ds.name, setting, "acc", row["acc mean"])
    record.add("heldout", PCA_METHOD, ds.name, setting, "acc_std", row["acc std"])
names = list(PROTOCOLS)
report.glue("heldout_honest_acc", float(heldout.loc[names[0], "acc mean"]))
report.glue("heldout_refit_acc", float(heldout.loc[names[1], "acc mean"]))
report.glue("transductive_acc", float(heldout.loc[names[2], "acc mean"]))
report.glue("heldout_optimism", float((heldout_runs[names[1]] - heldout_runs[names[0]]).mean()))
report.glue("heldout_points", float(heldout_runs["held-out points"].iloc[0]))
heldout.round(4)

# %% [markdown]
# On {glue:text}`heldout_points:.0f` held-out points, the honest protocol (a) gives ACC
# {glue:text}`heldout_honest_acc:.3f`, refitting the map on the held-out labels (b) gives
# {glue:text}`heldout_refit_acc:.3f` (on average {glue:text}`heldout_optimism:.4f` higher; it can
# never be lower, as the assertion above checks), and the transductive score (c) is
# {glue:text}`transductive_acc:.3f`. For k-means the gaps are small: it has few parameters and
# its clusters generalise to new points. A deep model that memorises its training points can
# show a much larger gap between (c) and (a), which is why the book reports held-out numbers where
# the paper does. NMI needs no map, so (a) and (b) share one held-out NMI; it is in the per-seed
# table below.

# %% tags=["hide-input"]
heldout_runs.round(4)

# %% [markdown]
# ## What the best baseline gets wrong
#
# The confusion matrix of the better baseline (higher mean ACC) for the first seed, after mapping
# clusters to classes with the Hungarian method, and the centres of the PCA k-means, mapped back to
# pixel space with the inverse PCA transform and titled with the class their cluster is mapped to.

# %%
best_method = baselines[("acc", "mean")].idxmax()
best_labels = models[best_method, seed].labels_
best_map = metrics.hungarian_mapping(y, best_labels)
mapped_names = np.array([class_names[best_map[k]] if k in best_map else f"unmatched {k}" for k in best_labels])
unmatched = sorted(set(mapped_names) - set(class_names))
confusion = pd.crosstab(pd.Categorical(np.array(class_names)[y], categories=class_names),
                        pd.Categorical(mapped_names, categories=list(class_names) + unmatched), dropna=False)
assert np.isclose(np.trace(confusion.to_numpy()[:, :len(class_names)]) / len(y), metrics.cluster_acc(y, best_labels))
fig, ax = plt.subplots(figsize=(7.5, 6))
sns.heatmap(confusion, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
ax.set_xlabel("predicted class (cluster mapped by the Hungarian method)")
ax.set_ylabel("true class")
ax.set_title(f"{best_method}, seed {seed}: confusion matrix after mapping (ACC {metrics.cluster_acc(y, best_labels):.3f})")
plt.show()
off_diagonal = confusion.to_numpy()[:, :len(class_names)] * (1 - np.eye(len(class_names), dtype=int))
worst = np.unravel_index(off_diagonal.argmax(), off_diagonal.shape)
print(f"most frequent confusion: {off_diagonal[worst]} points of class {class_names[worst[0]]!r} "
      f"are in the cluster mapped to {class_names[worst[1]]!r}")

# %%
pca_model = models[PCA_METHOD, seed]
pca_map = metrics.hungarian_mapping(y, pca_model.labels_)
order = sorted(range(K), key=lambda k: pca_map.get(k, K + k))
centres = pca.inverse_transform(pca_model.cluster_centers_[order]).reshape(K, *ds.image_shape)
centre_titles = [class_names[pca_map[k]] if k in pca_map else "unmatched" for k in order]
fig = plotting.image_grid(centres, titles=centre_titles, n_cols=min(K, 10), size=1.1,
                          title="k-means centres on PCA features, mapped back to pixels")
plt.show()

# %% [markdown]
# A centre that looks like a blend of two digits (or two garments) marks a cluster that mixes them,
# and the same pair shows up off the diagonal of the confusion matrix: k-means with Euclidean
# distance on pixels separates classes by average shape and stroke thickness, not by identity.
#
# ## How later chapters use this
#
# Every chapter scores a clustering with `metrics.evaluate`, which returns ACC, the three NMI
# variants, ARI and purity, and writes all of them into its `results.json`. Beside a paper's table
# it compares the variant that paper used:
#
# * ClusterNet: ACC and $\mathrm{NMI}_{\max}$ (Eq. 18), on a stratified 10% held-out split; its
#   clusters are seeded by labelled points, so the Hungarian map fitted on the training split is
#   close to the identity, and we still use the fitted map (protocol a);
# * DCAE: ACC;
# * Hsu and Kira: purity and NMI; the paper cites Strehl and Ghosh (geometric) while the successor
#   code calls scikit-learn's default (arithmetic since scikit-learn 0.22, geometric before); the
#   map for ACC is fitted on the training split and reused on the test split;
# * Kingdra: ACC, transductive (protocol c);
# * SPICE: ACC, $\mathrm{NMI}_{\mathrm{geo}}$ and ARI, on the whole dataset and on a train/test
#   split.
#
# The baselines above (k-means on pixels and on PCA features, same $K$, same data) are the floor a
# deep method has to clear.
#
# ## Choices this chapter makes
#
# There is no paper to reproduce here, so no paper column: every row of `results.json` has
# `paper_value` null. The choices that affect the numbers: k-means keeps the best of `n_init`
# initialisations by inertia (label-free); PCA is not whitened; a dataset larger than the
# profile's `n_samples` (Fashion-MNIST at the book profile) is subsampled with stratification, and
# the recorded checksum is that of the subsample; standard deviations are over k-means seeds (and,
# for the held-out table, over splits), with one degree of freedom removed.
#
# ## References
#
# Hungarian method {cite}`kuhn1955hungarian`; NMI with the geometric mean {cite}`strehl2002cluster`;
# ARI {cite}`hubert1985ari`; NMI variants, their normalisations and chance correction
# {cite}`vinh2010information`.

# %%
record.headline(PCA_METHOD, "acc", baselines.loc[PCA_METHOD, ("acc", "mean")],
                setting="transductive, mean over seeds; " + settings[PCA_METHOD])
record.write(output_dir)
