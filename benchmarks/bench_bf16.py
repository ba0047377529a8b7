"""Chapter 5's CPU feature model in bfloat16 mixed precision against float32.

Chapter 5 runs its CNN (``reprolib.networks.ConvNet``, our CPU stand-in for SPICE's ResNet-34)
inside ``reprolib.device.autocast`` with ``precision="auto"``: in bfloat16 where the hardware has
native bfloat16 instructions (``reprolib.device.native_bf16``: AVX512-BF16 or AMX on a CPU,
compute capability 8 or more on a GPU), else in float32. This benchmark times, in one run and
alternating the two precisions, the two steps that dominate the chapter's ``book`` profile:

* stage 1, a MoCo step: the query branch's forward and backward on 256 views, SGD update, and the
  key branch's forward of 256 views;
* stage 3, a FixMatch step: forward and backward of 32 labelled weak views plus 224 unlabelled
  images' weak and strong views (480 images), SGD update;

and the features of 4,000 images without gradients (the chapter's evaluation passes). It prints
the median time of each in each precision and the ratio, and how far the bfloat16 features are
from the float32 ones (per image, the norm of their difference over that of the float32 feature,
both centred on the float32 features' mean, from the same weights): bfloat16 keeps 8 bits of
mantissa, so the two are close, not equal.

Random images, stated plainly: speed does not depend on the pixel values. No result of the book
rests on them. Where the hardware has no native bfloat16 the ratio is printed all the same (it is
then usually below 1, which is why "auto" keeps float32 there).

Usage: ``python benchmarks/bench_bf16.py [--repeats R] [--device D] [--json PATH]``; with
``--json`` it also writes the figures there (Chapter 5 reads a committed copy).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from reprolib.device import autocast, describe_device, native_bf16, pick_device  # noqa: E402
from reprolib.networks import ConvNet  # noqa: E402

WIDTHS = [32, 64, 128, 256]   # Chapter 5's `book` profile


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def moco_step(net, key_net, optimiser, x1, x2, precision, device) -> None:
    with autocast(device, precision):
        q = F.normalize(net(x1).float(), dim=1)
        with torch.no_grad():
            k = F.normalize(key_net(x2).float(), dim=1)
    loss = -(q * k).sum(1).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


def fixmatch_step(net, optimiser, batch, labels, precision, device) -> None:
    with autocast(device, precision):
        logits = net(batch).float()
    loss = F.cross_entropy(logits[:, :10], labels)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


@torch.no_grad()
def features(net, images, precision, device, batch: int = 256) -> torch.Tensor:
    with autocast(device, precision):
        return torch.cat([net(images[i:i + batch]).float() for i in range(0, len(images), batch)])


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"device: {describe_device(device)}; native bfloat16: {native_bf16(device)}")
    generator = torch.Generator().manual_seed(0)
    x1, x2 = (torch.rand(256, 1, 28, 28, generator=generator).to(device) for _ in range(2))
    batch = torch.rand(480, 1, 28, 28, generator=generator).to(device)
    labels = torch.randint(10, (480,), generator=generator).to(device)
    images = torch.rand(4000, 1, 28, 28, generator=generator).to(device)
    torch.manual_seed(1)
    net, key_net = ConvNet(1, WIDTHS).to(device), ConvNet(1, WIDTHS).to(device)
    optimiser = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
    steps = {"moco": ("stage 1: MoCo step (256 + 256 views)",
                      lambda p: moco_step(net, key_net, optimiser, x1, x2, p, device)),
             "fixmatch": ("stage 3: FixMatch step (480 views)",
                          lambda p: fixmatch_step(net, optimiser, batch, labels, p, device)),
             "features": ("features of 4,000 images", lambda p: features(key_net.eval(), images, p, device))}
    figures = {"device": describe_device(device), "native_bf16": native_bf16(device), "repeats": args.repeats}
    print(f"{'':40s} {'fp32 s':>8s} {'bf16 s':>8s} {'fp32/bf16':>10s}")
    for key, (name, step) in steps.items():
        times = {"fp32": [], "bf16": []}
        for precision in times:   # warm-up: oneDNN builds its kernels on the first call
            step(precision)
        for _ in range(args.repeats):
            for precision in times:   # alternating, so a slow minute of the machine hits both
                times[precision].append(timed(lambda: step(precision), device))
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        print(f"{name:40s} {fp32:8.3f} {bf16:8.3f} {fp32 / bf16:9.2f}x")
        figures[key] = {"fp32_seconds": fp32, "bf16_seconds": bf16, "ratio": fp32 / bf16}
    key_net.eval()
    fp32, bf16 = features(key_net, images[:1000], "fp32", device), features(key_net, images[:1000], "bf16", device)
    fp32, bf16 = fp32 - fp32.mean(0), bf16 - fp32.mean(0)   # centred: ReLU features share a large mean
    error = (bf16 - fp32).norm(dim=1) / fp32.norm(dim=1)
    print(f"features of the same weights, bf16 against fp32 (centred): relative difference median "
          f"{error.median():.4f}, largest {error.max():.4f}")
    figures["feature_difference"] = {"median": float(error.median()), "largest": float(error.max())}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
