"""Chapter 5's stage 3 (FixMatch) with each step's views drawn ahead on a background thread.

A FixMatch step of Chapter 5 at the ``book`` profile has two costs of similar size on 2 CPU cores:
the strong views of the 224 unlabelled images (``RandAugment`` with four operations and Cutout,
image by image, mostly Python) and the forward and backward pass of the 480 views through the CPU
feature model and a head. ``reprolib.training.prefetched`` builds step i + 1's views while step i
trains. This benchmark times one stage-3 epoch of that shape (17 steps) both ways, alternating
them, and prints the median of each and the ratio; it checks that both ways draw the same views
from the same generator.

Random images, stated plainly: speed does not depend on the pixel values. No result of the book
rests on them.

Usage: ``python benchmarks/bench_prefetch.py [--repeats R]``. Exits 1 only if the two ways draw
different views.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from reprolib import training  # noqa: E402
from reprolib.networks import ConvNet  # noqa: E402

WIDTHS, K = [32, 64, 128, 256], 10         # Chapter 5's `book` profile
LABELLED, UNLABELLED, STEPS = 32, 224, 17  # B_l, mu * B_l, and 4,000 training images / (mu * B_l)
STRONG = v2.Compose([v2.RandAugment(num_ops=4), v2.ToDtype(torch.float32, scale=True),
                     v2.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0)])


def make_batch(images: torch.Tensor, rng: torch.Generator):
    """Step i's batch as Chapter 5 draws it: labelled and unlabelled images, the strong views image by image."""
    def batch(i: int) -> torch.Tensor:
        labelled = images[torch.randint(len(images), (LABELLED,), generator=rng)]
        unlabelled = images[i * UNLABELLED:(i + 1) * UNLABELLED]
        torch.manual_seed(int(torch.randint(2 ** 31, (1,), generator=rng)))
        strong = torch.stack([STRONG(image) for image in (unlabelled * 255).to(torch.uint8)])
        return torch.cat([labelled, unlabelled, strong])
    return batch


def epoch_seconds(net: torch.nn.Module, optimiser, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        loss = F.cross_entropy(net(batch), torch.zeros(len(batch), dtype=torch.long))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.rand(STEPS * UNLABELLED, 1, 28, 28)
    net = torch.nn.Sequential(ConvNet(1, WIDTHS), torch.nn.Linear(WIDTHS[-1], WIDTHS[-1]), torch.nn.ReLU(),
                              torch.nn.Linear(WIDTHS[-1], K))
    optimiser = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    plain_rng, ahead_rng = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    plain = [make_batch(images, plain_rng)(i) for i in range(3)]
    ahead = list(training.prefetched(make_batch(images, ahead_rng), 3))
    same = all(torch.equal(a, b) for a, b in zip(plain, ahead))

    timings: dict[str, list[float]] = {"plain loop": [], "prefetched": []}
    rng = torch.Generator().manual_seed(2)
    for _ in range(args.repeats):   # alternate, so that a slower moment of the machine hits both
        make = make_batch(images, rng)
        timings["plain loop"].append(epoch_seconds(net, optimiser, (make(i) for i in range(STEPS))))
        timings["prefetched"].append(epoch_seconds(net, optimiser, training.prefetched(make, STEPS)))
    plain_s, ahead_s = (statistics.median(timings[k]) for k in ("plain loop", "prefetched"))
    print(f"stage-3 epoch shape: {STEPS} steps of {LABELLED} + 2 x {UNLABELLED} views, CNN {WIDTHS}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  plain loop   {plain_s:6.2f} s")
    print(f"  prefetched   {ahead_s:6.2f} s   ({plain_s / ahead_s:.2f}x faster)")
    print(f"  same views from the same generator: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
