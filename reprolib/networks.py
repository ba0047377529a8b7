"""Networks more than one chapter or benchmark uses.

* :class:`LeNetBN`: Hsu and Kira (2015), Sec. 3: the LeNet-like network of the pairwise-KL
  clustering experiments (Chapter 3), also timed by ``reprolib.benchmarks`` for the Siamese
  comparison of Sec. 2.2.
* :class:`ConvNet`: the CPU-sized feature model of Chapter 5 (SPICE), our stand-in for the
  paper's ResNet-34 at the ``smoke`` and ``book`` profiles (not from the paper), also timed by
  ``benchmarks/bench_memory_format.py``.
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


class ConvNet(nn.Module):
    """Chapter 5's CPU feature model Phi, our stand-in for SPICE's ResNet-34 (Niu et al.; the
    architecture is ours, not the paper's): 4 x (3x3 conv, BN, ReLU), 2x2 max-pooling after the
    first three, global average pooling.

    ``channels_last=True`` keeps weights and activations in NHWC, which PyTorch's CPU (oneDNN)
    convolutions run faster than NCHW (``benchmarks/bench_memory_format.py`` prints the ratio); the
    outputs are the same function of the inputs either way.
    """

    def __init__(self, in_channels: int, widths: list[int], channels_last: bool = True):
        super().__init__()
        layers, channels = [], in_channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = width
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = channels
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, widths[-1]) features."""
        return self.body(x.contiguous(memory_format=self.memory_format))
