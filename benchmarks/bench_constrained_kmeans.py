"""Speed of reprolib's ConstrainedKMeans against scikit-learn's Lloyd k-means, per iteration.

The measurement lives in ``reprolib.benchmarks`` (synthetic data, stated plainly: this is a speed benchmark only, so the points come from
``sklearn.datasets.make_blobs`` (70,000 x 32 float32, 10 overlapping Gaussian blobs, fixed seed),
the size of MNIST with a ClusterNet-sized 32-d latent space. No result of the book rests on it).

Setting: K = 10, 2% of the points labelled (stratified per blob), initial centres = labelled class
means (ClusterNet Alg. 1 step 2). Both implementations start from the same centres and run in the
same process with ``tol=0`` and the same ``max_iter``; the blobs overlap enough that neither
converges early. Each is timed `repeats` times (whole ``fit``: validation, iterations, final
assignment); the median time divided by ``n_iter_`` is the time per iteration. scikit-learn is
``KMeans(n_clusters=k, init=<same centres>, n_init=1, algorithm="lloyd", tol=0)``.

Usage: ``python benchmarks/bench_constrained_kmeans.py [--check]``; prints both per-iteration
times, their ratio and ``target: ratio <= 3.0: PASS/FAIL``. Exits 0 unless ``--check`` is given
and the target fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib.benchmarks import TARGET_RATIO, constrained_kmeans_vs_sklearn  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the target fails")
    parser.add_argument("--n", type=int, default=70000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = constrained_kmeans_vs_sklearn(n=args.n, repeats=args.repeats)
    passed = result["ratio"] <= TARGET_RATIO
    print(f"data: synthetic make_blobs {result['n']} x {result['d']} float32, K = {result['k']}, "
          f"2% labelled, median of {result['repeats']} fits")
    print(f"ConstrainedKMeans: {1e3 * result['ours_s_per_iter']:.2f} ms/iteration "
          f"({result['ours_n_iter']} iterations)")
    print(f"sklearn KMeans (lloyd): {1e3 * result['sklearn_s_per_iter']:.2f} ms/iteration "
          f"({result['sklearn_n_iter']} iterations)")
    print(f"ratio (ours / sklearn): {result['ratio']:.2f}")
    print(f"target: ratio <= {TARGET_RATIO}: {'PASS' if passed else 'FAIL'}")
    return 1 if (args.check and not passed) else 0


if __name__ == "__main__":
    sys.exit(main())
