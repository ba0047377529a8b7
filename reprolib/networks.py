"""Networks more than one chapter or benchmark uses.

* :class:`LeNetBN`: Hsu and Kira (2015), Sec. 3: the LeNet-like network of the pairwise-KL
  clustering experiments (Chapter 3), also timed by ``reprolib.benchmarks`` for the Siamese
  comparison of Sec. 2.2.
* :class:`ConvNet`: the CPU-sized feature model of Chapter 5 (SPICE), our stand-in for the
  paper's ResNet-34 at the ``smoke`` and ``book`` profiles (not from the paper), also timed by
  ``benchmarks/bench_memory_format.py``.
* :class:`Dropout`: ``torch.nn.Dropout`` with its random masks drawn by numpy on the CPU, for
  Chapter 1's autoencoder (Shukla et al., Sec. 5.1: 10% dropout), timed by
  ``benchmarks/bench_dropout.py``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


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


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al., 2014), as ``torch.nn.Dropout(p)``: in training mode every
    element is zeroed with probability p and the others are scaled by 1 / (1 - p); in evaluation
    mode it is the identity.

    On the CPU the masks come from numpy's PCG64 generator, 32 random bits per element (an element
    is dropped when its bits fall below round(p 2^32), so p is exact to 2^-33), seeded for every
    call from torch's default generator: ``torch.manual_seed`` makes the masks reproducible, as it
    does for ``nn.Dropout``, though they are not the same masks. The reason is speed: torch's CPU
    Bernoulli sampler draws elements one at a time, and on the 2-core AMD machines of this
    project it took about a fifth of a training step of Chapter 1's autoencoder;
    ``benchmarks/bench_dropout.py`` prints both. Other devices use ``torch.nn.functional.dropout``.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
        self.p = float(p)
        self._cut = np.uint64(min(round(self.p * 2.0 ** 32), 2 ** 32))

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p == 1.0:
            return F.dropout(x, self.p, True)
        n = x.numel()
        seed = int(torch.randint(0, 2 ** 62, (1,)))
        bits = np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.uint32)[:n]
        dropped = torch.from_numpy(bits < self._cut).view(x.shape)
        return (x * (1.0 / (1.0 - self.p))).masked_fill_(dropped, 0.0)
