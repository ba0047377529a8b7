"""Speed and memory of Hsu-Kira's pairwise KL in matrix form against enumerated pairs and Siamese.

The measurements live in ``reprolib.benchmarks`` (synthetic inputs, stated plainly: random
cluster distributions, random normal 1 x 28 x 28 "images" and random labels over 10 classes; speed
and memory do not depend on the values, and no result of the book rests on them).

Hsu and Kira (2015), Sec. 2.2: the cost of Eq. (1)-(3) over all pairs of a mini-batch is computed
from one N x N matrix, each sample fed forward once. Compared in one run (issue 8, point 2):

* loss + backward over all ordered pairs of a batch of N = 1,000 with K = 10: the matrix form
  (``reprolib.losses.pairwise_kl``) against (a) enumerating the pairs as N^2 x K tensors the way
  the PyTorch successor (L2C's KCL) does; target: matrix form at least 10x faster;
* the whole step with LeNetBN (forward, loss, backward) against (b) a Siamese network that feeds
  both images of every pair forward, timed on a sample of pairs and extrapolated to all
  N(N-1)/2 pairs;
* the extra peak memory of loss + backward, each in a fresh process, at K = 10 and K = 100:
  the matrix form is O(N^2) (does not grow with K), (a) is O(N^2 K).

Usage: ``python benchmarks/bench_pairwise_kl.py [--check] [--n N] [--k K] [--repeats R]
[--memory-ks K ...]``; prints the table with ``MET`` / ``MISSED`` against each target. Exits 0
unless ``--check`` is given and a target is missed or the two forms disagree.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib.benchmarks import (  # noqa: E402
    PAIRWISE_AGREEMENT_RTOL, PAIRWISE_MEMORY_GROWTH_MAX, PAIRWISE_TARGET_RATIO, memory_growth,
    pairwise_kl_peak_memory, pairwise_kl_speed,
)


def _verdict(passed: bool) -> str:
    return "MET" if passed else "MISSED"


def print_speed(result: dict) -> bool:
    """Prints the speed rows; returns whether the ratio target is met and the two forms agree."""
    ratio_met = result["loss_ratio"] >= PAIRWISE_TARGET_RATIO
    print(f"batch N = {result['n']}, K = {result['k']}, {result['n'] * (result['n'] - 1):,} "
          f"ordered pairs, {100 * result['similar_fraction']:.1f}% similar; "
          f"median of {result['repeats']} runs")
    print("loss + backward over all pairs")
    print(f"  matrix form (pairwise_kl)            {1e3 * result['loss_matrix_s']:10.2f} ms")
    print(f"  (a) enumerated N^2 x K (KCL style)   {1e3 * result['loss_enumerated_s']:10.2f} ms")
    print(f"  ratio (a) / matrix                   {result['loss_ratio']:10.1f} x   "
          f"target >= {PAIRWISE_TARGET_RATIO:g} x: {_verdict(ratio_met)}")
    print(f"  same loss and gradient: value rel. diff {result['value_rel_diff']:.1e}, gradient "
          f"{result['grad_rel_diff']:.1e} (tolerance {PAIRWISE_AGREEMENT_RTOL:g}): "
          f"{'yes' if result['values_agree'] else 'NO'}")
    print("whole step with LeNetBN (forward + loss + backward)")
    print(f"  matrix form, {result['n']} images fed once     {result['step_matrix_s']:10.3f} s")
    print(f"  (b) Siamese, per pair                {1e3 * result['siamese_s_per_pair']:10.3f} ms "
          f"(measured on {result['siamese_pairs']:,} pairs: {result['siamese_measured_s']:.2f} s)")
    print(f"  (b) Siamese, all {result['siamese_all_pairs']:,} pairs "
          f"{result['siamese_extrapolated_s']:10.1f} s (extrapolated)")
    print(f"  ratio (b) / matrix                   {result['step_ratio']:10.0f} x")
    return ratio_met and result["values_agree"]


def print_memory(rows: list[dict]) -> bool:
    """Prints the memory rows and growth with K; returns whether the matrix form is O(N^2)."""
    print("extra peak memory of loss + backward (fresh process each, MiB)")
    print(f"  {'method':<12}{'N':>6}{'K':>6}{'extra peak':>12}{'N^2 x 4 B':>12}{'N^2 K x 4 B':>14}")
    for row in rows:
        print(f"  {row['method']:<12}{row['n']:>6}{row['k']:>6}{row['extra_peak_mb']:>12.1f}"
              f"{row['n2_float32_mb']:>12.1f}{row['n2k_float32_mb']:>14.1f}")
    growth = memory_growth(rows)
    ks = sorted({row["k"] for row in rows})
    if len(ks) < 2:
        return True
    met = growth["matrix"] < PAIRWISE_MEMORY_GROWTH_MAX
    print(f"  growth from K = {ks[0]} to K = {ks[-1]}: matrix x{growth['matrix']:.2f}, "
          f"(a) enumerated x{growth['enumerated']:.2f}")
    print(f"  target: matrix form O(N^2), growth < {PAIRWISE_MEMORY_GROWTH_MAX:g} x: {_verdict(met)}")
    return met


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-ks", type=int, nargs="+", default=[10, 100])
    args = parser.parse_args(argv)
    print("Hsu-Kira pairwise KL (Sec. 2.2): matrix form vs (a) enumerated pairs vs (b) Siamese")
    print("synthetic inputs (random distributions, random normal images): a speed benchmark only")
    start = time.perf_counter()
    speed_ok = print_speed(pairwise_kl_speed(n=args.n, k=args.k, repeats=args.repeats))
    print(f"  (speed measurement: {time.perf_counter() - start:.0f} s wall)")
    start = time.perf_counter()
    memory_ok = print_memory(pairwise_kl_peak_memory(n=args.n, ks=tuple(args.memory_ks)))
    print(f"  (memory measurement: {time.perf_counter() - start:.0f} s wall)")
    return 1 if (args.check and not (speed_ok and memory_ok)) else 0


if __name__ == "__main__":
    sys.exit(main())
