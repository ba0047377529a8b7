"""Networks more than one chapter or benchmark uses.

* :class:`LeNetBN`: Hsu and Kira (2015), Sec. 3: the LeNet-like network of the pairwise-KL
  clustering experiments (Chapter 3), also timed by ``reprolib.benchmarks`` for the Siamese
  comparison of Sec. 2.2.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _conv_side(side: int, padding: int) -> int:
    """Side after a 5x5 convolution (stride 1) and a 2x2 max-pooling."""
    return (side - 4 + 2 * padding) // 2


class LeNetBN(nn.Module):
    """Hsu-Kira Sec. 3: conv 5x5 (20) - BN - ReLU - maxpool, conv 5x5 (50) - BN - ReLU - maxpool,
    FC 500 - BN - ReLU, FC K. The softmax (clustering) or the loss (classification) sits on top.

    ``padding=None`` chooses LeNet's unpadded convolutions for inputs of side 16 or more
    (28 -> 4 x 4 x 50, 32 -> 5 x 5 x 50) and 'same' padding for smaller ones (8 x 8 digits,
    which an unpadded pair of 5x5 convolutions cannot take).
    """

    def __init__(self, n_outputs: int, in_channels: int = 1, side: int = 28, padding: int | None = None):
        super().__init__()
        padding = (0 if side >= 16 else 2) if padding is None else padding
        s = _conv_side(_conv_side(side, padding), padding)
        if s < 1:
            raise ValueError(f"inputs of side {side} are too small for LeNetBN with padding {padding}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5, padding=padding), nn.BatchNorm2d(20), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5, padding=padding), nn.BatchNorm2d(50), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(50 * s * s, 500), nn.BatchNorm1d(500), nn.ReLU())
        self.head = nn.Linear(500, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The K outputs before any softmax (logits, or the Siamese embedding)."""
        return self.head(self.features(x))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (500-D), the features of "NNclustering feature + kmeans"."""
        return self.features(x)
