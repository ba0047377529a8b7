"""One figure style for the whole book (colour-blind-safe) and the plots chapters share."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

PALETTE = "colorblind"


def use_style() -> None:
    """The book's figure style: seaborn's colour-blind palette, readable fonts, tight layout."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "figure.autolayout": True,
                         "axes.titlesize": "medium", "image.cmap": "gray"})


def image_grid(images, titles=None, n_cols: int = 10, size: float = 1.0, title: str | None = None):
    """Show images (N x C x H x W tensor or array in [0, 1]) in a grid; returns the figure."""
    images = np.asarray(images)
    n_rows = int(np.ceil(len(images) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * size, n_rows * size * 1.15),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes.flat, images)):
        pixels = image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0]
        ax.imshow(np.clip(pixels, 0, 1), cmap=None if image.shape[0] == 3 else "gray", vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize="x-small")
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, output_dir, name: str) -> Path:
    """Save `fig` as output_dir/figures/name.png (the book shows the notebook's inline copy)."""
    path = Path(output_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path
