"""Tree assembly (children at ξ, then parents) on synthetic 384-d unit vectors.

Prints time and peak memory at each size, the growth against the smallest size,
and the ratio against a bare scikit-learn ``Birch.fit`` of the same vectors
measured in the same run.

Usage: python benchmarks/tree_clustering.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from sklearn.cluster import Birch

from dgprm.tree.cluster import Features, assign_clusters, birch_radius


def synthetic(n: int, dim: int = 384, topics: int | None = None, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``topics`` random directions (criteria paraphrasing shared ideas)."""
    rng = np.random.default_rng(seed)
    topics = topics or max(10, n // 20)
    centers = rng.normal(size=(topics, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(0, topics, n)] + rng.normal(scale=0.35 / np.sqrt(dim), size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def assemble(vectors: np.ndarray, xi: float, parent_xi: float) -> tuple[int, int]:
    labels, children = assign_clusters(Features.empty(vectors.shape[1]), vectors, xi)
    parent_labels, parents = assign_clusters(
        Features.empty(vectors.shape[1]), children.directions, parent_xi
    )
    return len(children), len(parents)


def measure(fn, *args):
    tracemalloc.start()
    started = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--xi", type=float, default=0.25)
    parser.add_argument("--parent-xi", type=float, default=0.6)
    args = parser.parse_args()
    print(
        f"{'n':>8} {'children':>9} {'parents':>8} {'dgprm s':>9} {'peak MiB':>9} "
        f"{'sk Birch s':>11} {'vs Birch':>9} {'growth':>8}"
    )
    base = None
    for n in args.sizes:
        vectors = synthetic(n)
        seconds, peak, (children, parents) = measure(assemble, vectors, args.xi, args.parent_xi)
        bare = Birch(threshold=birch_radius(args.xi), n_clusters=None)
        sk_seconds, _, _ = measure(bare.fit, vectors)
        base = base or (n, seconds)
        growth = (seconds / base[1]) / (n / base[0])
        print(
            f"{n:>8} {children:>9} {parents:>8} {seconds:>9.2f} {peak:>9.0f} "
            f"{sk_seconds:>11.2f} {seconds / sk_seconds:>8.2f}x {growth:>7.2f}x"
        )
    print("growth = (time / time at smallest n) / (n / smallest n); 1.00x is linear")


if __name__ == "__main__":
    main()
