"""Chapter 5's CPU feature model in NHWC (channels-last) against NCHW memory layout.

``reprolib.networks.ConvNet`` (our CPU stand-in for SPICE's ResNet-34) keeps its weights and
activations channels-last, because PyTorch's CPU convolutions (oneDNN) run it faster that way.
This benchmark times, in one run and alternating the two layouts, the step that dominates stage 1
of Chapter 5 at the ``book`` profile: a MoCo step of the query branch (forward and backward of a
batch of 256 views, SGD update) plus the key branch's forward of the same batch, on 1 x 28 x 28
(MNIST) and 3 x 32 x 32 (CIFAR-10-sized) inputs; it prints the median step time of each layout
and the ratio, and checks that the two layouts compute the same features from the same weights.
It also times the chapter's evaluation passes (features of 4,500 images without gradients, NHWC)
in batches of 1,000 and of 256, the chapter's ``EVAL_BATCH``.

Random images, stated plainly: speed does not depend on the pixel values. No result of the book
rests on them.

Usage: ``python benchmarks/bench_memory_format.py [--repeats R] [--batch B]``. Exits 1 only if the
two layouts disagree.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from reprolib.networks import ConvNet  # noqa: E402

WIDTHS = [32, 64, 128, 256]   # Chapter 5's `book` profile


def step_seconds(net: ConvNet, key_net: ConvNet, images: torch.Tensor, optimiser) -> float:
    """One MoCo-shaped step: query forward + backward + SGD on `images`, key forward of the same batch."""
    start = time.perf_counter()
    loss = net(images).square().mean()
    with torch.no_grad():
        key_net(images)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return time.perf_counter() - start


def compare(channels: int, side: int, batch: int, repeats: int) -> tuple[float, float, bool]:
    torch.manual_seed(0)
    images = torch.rand(batch, channels, side, side)
    nets = {}
    for name, channels_last in (("NCHW", False), ("NHWC", True)):
        torch.manual_seed(1)   # the same weights in both layouts
        nets[name] = (ConvNet(channels, WIDTHS, channels_last), ConvNet(channels, WIDTHS, channels_last))
    with torch.no_grad():   # in evaluation mode, then back to training mode as in MoCo
        same = torch.allclose(nets["NCHW"][1].eval()(images), nets["NHWC"][1].eval()(images), atol=1e-4, rtol=1e-4)
    for _, key_net in nets.values():
        key_net.train()
    optimisers = {name: torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9) for name, (net, _) in nets.items()}
    times = {name: [] for name in nets}
    for i in range(repeats + 2):   # alternate the layouts; the first two rounds warm up
        for name, (net, key_net) in nets.items():
            seconds = step_seconds(net, key_net, images, optimisers[name])
            if i >= 2:
                times[name].append(seconds)
    return statistics.median(times["NCHW"]), statistics.median(times["NHWC"]), same


def eval_seconds(net: ConvNet, images: torch.Tensor, batch: int) -> float:
    """Features of all `images` in evaluation mode, `batch` at a time."""
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            net(images[i:i + batch])
    return time.perf_counter() - start


def compare_eval_batches(repeats: int, batches=(1000, 256), n: int = 4500) -> dict[int, float]:
    """Median seconds per evaluation pass over n 1 x 28 x 28 images, for each batch size (alternated)."""
    torch.manual_seed(0)
    images = torch.rand(n, 1, 28, 28)
    net = ConvNet(1, WIDTHS, True).eval()
    times = {b: [] for b in batches}
    for i in range(repeats + 1):   # the first round warms up
        for b in batches:
            seconds = eval_seconds(net, images, b)
            if i >= 1:
                times[b].append(seconds)
    return {b: statistics.median(t) for b, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    print(f"ConvNet {WIDTHS} training step (batch {args.batch}), {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    ok = True
    for channels, side in ((1, 28), (3, 32)):
        nchw, nhwc, same = compare(channels, side, args.batch, args.repeats)
        ok &= same
        print(f"  {channels} x {side} x {side}: NCHW {nchw * 1000:7.1f} ms, NHWC {nhwc * 1000:7.1f} ms, "
              f"NCHW / NHWC = {nchw / nhwc:.2f}; same features: {'yes' if same else 'NO'}")
    evaluation = compare_eval_batches(max(3, args.repeats // 2))
    print(f"  evaluation of 4,500 images of 1 x 28 x 28 (NHWC, no gradients): batches of 1,000 "
          f"{evaluation[1000]:.2f} s, of 256 {evaluation[256]:.2f} s, ratio {evaluation[1000] / evaluation[256]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
