"""Dropout on the CPU: ``reprolib.networks.Dropout`` (numpy's PCG64 masks) against ``torch.nn.Dropout``.

Chapter 1's autoencoder (Shukla et al., Sec. 5.1) has 10% dropout after every convolution block
and around its fully connected layers. On the 2-core machines of this project, torch's CPU
Bernoulli sampler made those masks a large share of a training step. This benchmark times, in one
run and alternating the two, the forward and backward pass of all seven dropout sites of one
fine-tuning step of Chapter 1 at the ``book`` profile (256 unlabelled + 90 labelled images of
32 x 32), and prints the median time of each and the ratio. It also checks that both drop a share
p of the elements and scale the others by 1 / (1 - p).

Random activations, stated plainly: speed does not depend on their values. No result of the book
rests on them.

Usage: ``python benchmarks/bench_dropout.py [--repeats R] [--batch B]``. Exits 1 only if a
dropped share is off by more than 5 binomial standard deviations or the scale is wrong.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from reprolib.networks import Dropout  # noqa: E402

P = 0.1   # Chapter 1's dropout rate


def site_shapes(batch: int) -> list[tuple[int, ...]]:
    """The inputs of Chapter 1's seven dropout layers for 32 x 32 images: three encoder blocks,
    the latent code and the first fully connected layer of the decoder, two decoder blocks."""
    return [(batch, 32, 16, 16), (batch, 64, 8, 8), (batch, 128, 4, 4), (batch, 32), (batch, 2048),
            (batch, 64, 8, 8), (batch, 32, 16, 16)]


def pass_seconds(layer: nn.Module, inputs: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    for x in inputs:
        layer(x).sum().backward()
    return time.perf_counter() - start


def check(layer: nn.Module, n: int = 2_000_000) -> tuple[float, bool]:
    """(dropped share, whether the share and the scale are right) on one large input."""
    x = torch.rand(n) + 0.5
    y = layer(x)
    dropped = float((y == 0).float().mean())
    kept = y != 0
    sigma = math.sqrt(P * (1 - P) / n)
    right_scale = torch.allclose(y[kept], x[kept] / (1 - P))
    return dropped, abs(dropped - P) < 5 * sigma and right_scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=346)
    args = parser.parse_args()
    torch.manual_seed(0)
    inputs = [torch.randn(shape, requires_grad=True) for shape in site_shapes(args.batch)]
    layers = {"torch.nn.Dropout": nn.Dropout(P), "reprolib Dropout": Dropout(P)}
    times = {name: [] for name in layers}
    for i in range(args.repeats + 2):   # alternate; the first two rounds warm up
        for name, layer in layers.items():
            seconds = pass_seconds(layer, inputs)
            if i >= 2:
                times[name].append(seconds)
    print(f"Chapter 1's seven dropout sites (p = {P}, batch {args.batch}), forward + backward, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    ok = True
    for name, layer in layers.items():
        dropped, right = check(layer)
        ok &= right
        print(f"  {name:17s} {1000 * statistics.median(times[name]):7.1f} ms; dropped share {dropped:.4f}, "
              f"share and scale right: {'yes' if right else 'NO'}")
    ratio = statistics.median(times["torch.nn.Dropout"]) / statistics.median(times["reprolib Dropout"])
    print(f"  torch.nn.Dropout / reprolib Dropout = {ratio:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
